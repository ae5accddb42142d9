//! Serving: open the store (this process becomes its one writer), bind the socket, accept
//! clients until a signal or the idle time, then close everything in order.

use crate::conn::{self, Shared};
use crate::{EXIT_STORE_HELD, logging, socket};
use hsm_core::config::Config;
use hsm_core::store::{Store, StoreError};
use hsm_core::{Hooks, Hsm};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// A fatal error: to the log and to standard error (where a starter reads it).
fn fail(msg: String) -> ExitCode {
    tracing::error!("{msg}");
    eprintln!("ferrohsm-server: {msg}");
    ExitCode::FAILURE
}

pub fn run(config: Config, idle_exit: u64, log_file: Option<PathBuf>) -> ExitCode {
    logging::init(&config.log_level);
    let socket_path = match config.socket_path() {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let store = match Store::open_dir(&config.store) {
        Ok(s) => s,
        Err(StoreError::Locked { holder }) => {
            eprintln!(
                "ferrohsm-server: the store {} is held by another process: {holder}",
                config.store.display()
            );
            return ExitCode::from(EXIT_STORE_HELD);
        }
        Err(e) => {
            return fail(format!(
                "cannot open the store {}: {e}",
                config.store.display()
            ));
        }
    };
    if let Some(f) = &log_file
        && let Err(e) = logging::to_file(f)
    {
        return fail(format!("cannot write the log file {}: {e}", f.display()));
    }
    let owner = match std::fs::metadata(&config.store) {
        Ok(m) => m.uid(),
        Err(e) => return fail(format!("cannot read {}: {e}", config.store.display())),
    };
    let allow_uids = if config.server.allow_uids.is_empty() {
        vec![owner]
    } else {
        config.server.allow_uids.clone()
    };
    store.set_login_cache(Some(Duration::from_secs(config.server.login_cache_secs)));
    let store_dir = config.store.clone();
    let server_config = config.server.clone();
    let sweep_every = config.lifecycle.sweep_interval_secs;
    let hsm = match Hsm::with_store(config, store, hooks()) {
        Ok(h) => Arc::new(h),
        Err(e) => return fail(format!("cannot start the token runtime: {e}")),
    };
    let bound = match socket::bind(&socket_path, owner) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot listen on {}: {e}", socket_path.display())),
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    if let Err(e) = crate::admin::start_http(&hsm, &server_config, &runtime) {
        return fail(e);
    }
    tracing::info!(
        store = %store_dir.display(),
        socket = %socket_path.display(),
        pid = std::process::id(),
        ?allow_uids,
        idle_exit_secs = idle_exit,
        "serving"
    );
    let shared = Arc::new(Shared::new(hsm, allow_uids, hsm_proto::MAX_FRAME));
    let idle = (idle_exit > 0).then(|| Duration::from_secs(idle_exit));
    let outcome = runtime.block_on(accept(&bound, shared.clone(), idle, sweep_every));
    // The socket goes first, so no client connects to a server on its way out; then the
    // connections (their applications end) and, with the last reference, the store.
    drop(bound);
    shared.close_all();
    drop(shared);
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(why) => {
            tracing::info!("stopped: {why}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The runtime's hooks: the adapters this build has besides the software one.
fn hooks() -> Hooks {
    let adapters = hsm_adapter_pkcs11::register(Default::default());
    #[cfg(feature = "yubihsm")]
    let adapters = hsm_adapter_yubihsm::register(adapters);
    Hooks {
        adapters,
        ..Hooks::default()
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrohsm-server")
        // One thread per connected client (see conn.rs), parked while it is idle.
        .max_blocking_threads(4096)
        .build()
}

/// Accepts clients until SIGTERM, SIGINT or `idle` without a client.
async fn accept(
    bound: &socket::Bound,
    shared: Arc<Shared>,
    idle: Option<Duration>,
    sweep_every: u64,
) -> Result<&'static str, String> {
    let std_listener = bound
        .listener
        .try_clone()
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("socket: {e}"))?;
    let listener =
        tokio::net::UnixListener::from_std(std_listener).map_err(|e| format!("socket: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut expire = tokio::time::interval(Duration::from_secs(1));
    let mut sweep = tokio::time::interval(Duration::from_secs(sweep_every.max(1)));
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(conn::handle(stream, shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait, the clients we have go on.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = expire.tick() => {
                shared.hsm.store().expire_login_cache();
                let hsm = shared.hsm.clone();
                tokio::task::spawn_blocking(move || hsm.audit_tick());
            }
            _ = sweep.tick(), if sweep_every > 0 => {
                let hsm = shared.hsm.clone();
                tokio::task::spawn_blocking(move || hsm.lifecycle_tick());
            }
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = tick.tick(), if idle.is_some() => {
                if let (Some(limit), Some(quiet)) = (idle, shared.idle_for())
                    && quiet >= limit
                {
                    return Ok("no client for the idle time");
                }
            }
        }
    }
}
