//! Process-wide module state: the token runtime once `C_Initialize` ran, and the process
//! that ran it (a forked child must initialise again).
//!
//! The token is a [`Token`]: the store in this process ([`hsm_core::Local`]) or a
//! `ferrohsm-server` reached over its socket. Each call clones the `Arc` under a short read lock and works without any global
//! lock held; `C_Finalize` takes the state away, and calls still in flight finish on
//! their own clone — no use after free, and new calls get NOT_INITIALIZED.

use crate::boundary::Error;
use hsm_core::{Hsm, Token};
use std::sync::{Arc, RwLock};

struct Module {
    pid: u32,
    token: Arc<dyn Token>,
    /// The runtime, when the store is open in this process (embedded).
    hsm: Option<Arc<Hsm>>,
}

/// What `C_Initialize` made: the token, and the runtime behind it when embedded.
pub struct Opened {
    pub token: Arc<dyn Token>,
    pub hsm: Option<Arc<Hsm>>,
}

static MODULE: RwLock<Option<Module>> = RwLock::new(None);

/// The token, or `CKR_CRYPTOKI_NOT_INITIALIZED` unless this process initialised it.
pub fn token() -> Result<Arc<dyn Token>, Error> {
    match &*MODULE.read().unwrap_or_else(|p| p.into_inner()) {
        Some(m) if m.pid == std::process::id() => Ok(m.token.clone()),
        _ => Err(Error::NotInitialized),
    }
}

/// The in-process runtime (embedded mode only), for tests that look inside.
pub fn hsm() -> Result<Arc<Hsm>, Error> {
    match &*MODULE.read().unwrap_or_else(|p| p.into_inner()) {
        Some(m) if m.pid == std::process::id() => m.hsm.clone().ok_or(Error::NotInitialized),
        _ => Err(Error::NotInitialized),
    }
}

pub fn is_initialized() -> bool {
    token().is_ok()
}

pub fn initialize(make: impl FnOnce() -> Result<Opened, Error>) -> Result<(), Error> {
    let mut g = MODULE.write().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = &*g {
        if m.pid == std::process::id() {
            return Err(Error::AlreadyInitialized);
        }
        // State inherited through fork() belongs to the parent. Forget it without
        // dropping it: the child must not close the parent's store handles.
        if let Some(m) = g.take() {
            std::mem::forget(m);
        }
    }
    let opened = make()?;
    *g = Some(Module {
        pid: std::process::id(),
        token: opened.token,
        hsm: opened.hsm,
    });
    Ok(())
}

pub fn finalize() -> Result<(), Error> {
    let taken = {
        let mut g = MODULE.write().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(m) if m.pid == std::process::id() => g.take(),
            _ => return Err(Error::NotInitialized),
        }
    };
    // Dropped outside the lock: closing the store or the connection may take a moment.
    // When no call is in flight the store closes here, and RocksDB's worker threads are
    // ended too, so no thread of ours outlives C_Finalize.
    if let Some(m) = taken {
        let Module { token, hsm, .. } = m;
        drop(token);
        if let Some(hsm) = hsm
            && let Ok(hsm) = Arc::try_unwrap(hsm)
        {
            drop(hsm);
            hsm_core::store::backend::release_background_threads();
        }
    }
    Ok(())
}
