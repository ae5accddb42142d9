//! The admin API of `ferrohsm-server`: HTTPS (rustls, TLS 1.2 and 1.3) on localhost by
//! default, every endpoint but `/v1/health` behind a bearer JWT from a configured issuer
//! ([`jwt`]), endpoints for keys and versions, the token's rules, approvals and health
//! ([`api`]). `docs/server.md` and `docs/admin-api.yaml` (OpenAPI) describe it. Its own
//! crate so the module and the CLI never build an HTTP stack.

pub mod api;
pub mod jwt;
pub mod metrics;

use hsm_core::Hsm;
use hsm_core::config::AdminConfig;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The largest request body taken (rules, a verdict: a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// A configuration that cannot start the API.
#[derive(Debug, thiserror::Error)]
#[error("admin API: {0}")]
pub struct SetupError(pub String);

/// What serving needs, loaded once from the configuration.
pub struct Admin {
    hsm: Arc<Hsm>,
    verifier: jwt::Verifier,
    tls: TlsAcceptor,
}

fn pem_blocks(path: &std::path::Path, what: &str) -> Result<String, SetupError> {
    std::fs::read_to_string(path)
        .map_err(|e| SetupError(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The raw public key of an issuer's PEM `PUBLIC KEY` (Ed25519 or P-256 SPKI).
fn issuer_key(path: &std::path::Path, alg: jwt::Algorithm) -> Result<Vec<u8>, SetupError> {
    use rustls::pki_types::SubjectPublicKeyInfoDer;
    use rustls::pki_types::pem::PemObject;
    let text = pem_blocks(path, "issuer key")?;
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(text.as_bytes())
        .map_err(|e| SetupError(format!("{}: not a PEM public key: {e}", path.display())))?;
    let der: &[u8] = spki.as_ref();
    // The key is the BIT STRING at the end of the SPKI: 32 bytes for Ed25519, the
    // 65-byte uncompressed point for P-256.
    let len = match alg {
        jwt::Algorithm::EdDsa => 32,
        jwt::Algorithm::Es256 => 65,
    };
    if der.len() < len + 3 || der[der.len() - len - 1] != 0 {
        return Err(SetupError(format!(
            "{}: not a key for {alg:?}",
            path.display()
        )));
    }
    Ok(der[der.len() - len..].to_vec())
}

fn tls_config(c: &AdminConfig) -> Result<rustls::ServerConfig, SetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.certificate)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| SetupError(format!("certificate {}: {e}", c.certificate.display())))?;
    let key = PrivateKeyDer::from_pem_file(&c.private_key)
        .map_err(|e| SetupError(format!("private key {}: {e}", c.private_key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| SetupError(format!("certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Admin {
    /// Loads the TLS certificate and key and the issuers' keys.
    pub fn new(hsm: Arc<Hsm>, c: &AdminConfig) -> Result<Admin, SetupError> {
        let mut issuers = Vec::new();
        for i in &c.issuers {
            let algorithm = jwt::Algorithm::parse(&i.algorithm).ok_or_else(|| {
                SetupError(format!(
                    "issuer {:?}: algorithm {:?}: EdDSA or ES256",
                    i.issuer, i.algorithm
                ))
            })?;
            issuers.push(jwt::Issuer {
                name: i.issuer.clone(),
                algorithm,
                public_key: issuer_key(&i.public_key, algorithm)?,
            });
        }
        if issuers.is_empty() {
            return Err(SetupError(
                "no [[server.admin.issuers]]: nobody could call it".into(),
            ));
        }
        Ok(Admin {
            hsm,
            verifier: jwt::Verifier {
                issuers,
                audience: c.audience.clone(),
                roles_claim: c.roles_claim.clone(),
            },
            tls: TlsAcceptor::from(Arc::new(tls_config(c)?)),
        })
    }

    /// Accepts connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("admin API accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), me.tls.accept(tcp)).await;
                let tls = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, "admin API: TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, std::convert::Infallible>(me.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tls), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "admin API connection: {e}");
                }
            });
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let token = query_token(req.uri().query());
        if method == "GET" && path == "/v1/health" {
            return respond(self.health());
        }
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let bearer =
            header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
        let pin = header("x-ferrohsm-pin").map(zeroize::Zeroizing::new);
        let Some(bearer) = bearer else {
            return respond(api::Reply::error(
                401,
                "unauthenticated",
                "give a bearer token (Authorization: Bearer JWT)",
            ));
        };
        let principal = match self.verifier.verify(&bearer, unix_now()) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(%path, "admin API: token refused: {why}");
                return respond(api::Reply::error(401, "unauthenticated", why.0));
            }
        };
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return respond(api::Reply::error(
                    413,
                    "too_large",
                    format!("bodies are at most {MAX_BODY} bytes"),
                ));
            }
        };
        let me = self.clone();
        let reply = tokio::task::spawn_blocking(move || {
            let call = api::Call {
                method: &method,
                path: &path,
                token,
                principal: &principal,
                pin,
                body: &body,
            };
            let r = api::dispatch(&me.hsm, call);
            tracing::info!(
                subject = %principal.subject,
                issuer = %principal.issuer,
                status = r.status,
                "admin API: {method} {path}"
            );
            r
        })
        .await
        .unwrap_or_else(|_| api::Reply::error(500, "core", "the call failed"));
        respond(reply)
    }

    fn health(&self) -> api::Reply {
        let error_state = self
            .hsm
            .token_slots()
            .ok()
            .and_then(|t| t.first().map(|(_, s)| *s))
            .and_then(|s| self.hsm.token_info(s).ok())
            .is_some_and(|i| i.error_state);
        api::Reply {
            status: if error_state { 503 } else { 200 },
            body: serde_json::json!({
                "status": if error_state { "error" } else { "ok" },
                "version": env!("CARGO_PKG_VERSION"),
            }),
        }
    }
}

fn query_token(q: Option<&str>) -> Option<u32> {
    q?.split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .and_then(|v| v.parse().ok())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn respond(r: api::Reply) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(&r.body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", "application/json".parse().expect("static"));
    if r.status == 401 {
        h.insert("www-authenticate", "Bearer".parse().expect("static"));
    }
    resp
}
