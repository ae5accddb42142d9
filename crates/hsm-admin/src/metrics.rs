//! `/metrics`: the core's Prometheus text exposition (`Hsm::metrics_text`) over plain
//! HTTP/1.1 on its own local address. Nothing in it is secret (no key label, PIN or
//! handle is ever a label), so it needs no TLS or token, like node_exporter; anything but
//! `GET /metrics` answers 404.

use http_body_util::Full;
use hyper::body::Bytes;

use hsm_core::Hsm;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves scrapes until the task is dropped.
pub async fn serve(hsm: Arc<Hsm>, listener: TcpListener) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let hsm = hsm.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let hsm = hsm.clone();
                async move { Ok::<_, std::convert::Infallible>(scrape(hsm, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "metrics connection: {e}");
            }
        });
    }
}

async fn scrape(hsm: Arc<Hsm>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: u16, kind: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .body(Full::new(Bytes::from(body)))
            .expect("a static response")
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return reply(
            404,
            "text/plain",
            "only GET /metrics is served here\n".into(),
        );
    }
    // The gauges read the store: off the async threads.
    match tokio::task::spawn_blocking(move || hsm.metrics_text()).await {
        Ok(Some(text)) => reply(200, "text/plain; version=0.0.4; charset=utf-8", text),
        Ok(None) => reply(404, "text/plain", "metrics are not configured\n".into()),
        Err(_) => reply(500, "text/plain", "rendering the metrics failed\n".into()),
    }
}
