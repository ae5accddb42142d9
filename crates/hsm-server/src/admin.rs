//! Starting the admin HTTPS API (`hsm-admin`) beside the socket, when `[server.admin]`
//! configures it: bound before the server says it serves, so a bad address, certificate
//! or issuer key stops the start with a message rather than a silent absence.

use hsm_core::Hsm;
use hsm_core::config::AdminConfig;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Binds the API's address, loads its keys and starts serving on `rt` (nothing when
/// the configuration has no `[server.admin]`).
pub fn start(
    hsm: &Arc<Hsm>,
    c: Option<&AdminConfig>,
    rt: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let Some(c) = c else {
        return Ok(());
    };
    let addr: SocketAddr = c
        .listen
        .parse()
        .map_err(|e| format!("[server.admin] listen = {:?}: {e}", c.listen))?;
    if !addr.ip().is_loopback() && !c.allow_remote {
        return Err(format!(
            "[server.admin] listen = {addr} is not a loopback address: set allow_remote = true \
             to serve other hosts"
        ));
    }
    let admin = Arc::new(hsm_admin::Admin::new(hsm.clone(), c).map_err(|e| e.to_string())?);
    let std_listener = TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("admin API: cannot listen on {addr}: {e}"))?;
    let _in_runtime = rt.enter();
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .map_err(|e| format!("admin API: {addr}: {e}"))?;
    tracing::info!(%addr, "admin API listening (HTTPS)");
    drop(rt.spawn(admin.serve(listener)));
    Ok(())
}

/// Both HTTP listeners the configuration asks for: the admin API and `/metrics`.
pub fn start_http(
    hsm: &Arc<Hsm>,
    c: &hsm_core::config::ServerConfig,
    rt: &tokio::runtime::Runtime,
) -> Result<(), String> {
    start(hsm, c.admin.as_deref(), rt)?;
    start_metrics(hsm, c, rt)
}

/// Binds `server.metrics_listen` and serves `/metrics` on `rt` (nothing when unset).
pub fn start_metrics(
    hsm: &Arc<Hsm>,
    c: &hsm_core::config::ServerConfig,
    rt: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let Some(listen) = &c.metrics_listen else {
        return Ok(());
    };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("[server] metrics_listen = {listen:?}: {e}"))?;
    if !addr.ip().is_loopback() && !c.metrics_allow_remote {
        return Err(format!(
            "[server] metrics_listen = {addr} is not a loopback address: set \
             metrics_allow_remote = true to be scraped from other hosts"
        ));
    }
    let std_listener = TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("metrics: cannot listen on {addr}: {e}"))?;
    let _in_runtime = rt.enter();
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .map_err(|e| format!("metrics: {addr}: {e}"))?;
    tracing::info!(%addr, "metrics listening (HTTP, /metrics)");
    drop(rt.spawn(hsm_admin::metrics::serve(hsm.clone(), listener)));
    Ok(())
}
