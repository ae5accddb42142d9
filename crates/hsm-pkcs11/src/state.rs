//! Process-wide module state: the token runtime once `C_Initialize` ran, and the process
//! that ran it (a forked child must initialise again).
//!
//! Each call clones the `Arc<Hsm>` under a short read lock and works without any global
//! lock held; `C_Finalize` takes the state away, and calls still in flight finish on
//! their own clone — no use after free, and new calls get NOT_INITIALIZED.

use crate::boundary::Error;
use hsm_core::Hsm;
use std::sync::{Arc, RwLock};

struct Module {
    pid: u32,
    hsm: Arc<Hsm>,
}

static MODULE: RwLock<Option<Module>> = RwLock::new(None);

/// The runtime, or `CKR_CRYPTOKI_NOT_INITIALIZED` unless this process initialised it.
pub fn hsm() -> Result<Arc<Hsm>, Error> {
    match &*MODULE.read().unwrap_or_else(|p| p.into_inner()) {
        Some(m) if m.pid == std::process::id() => Ok(m.hsm.clone()),
        _ => Err(Error::NotInitialized),
    }
}

pub fn is_initialized() -> bool {
    hsm().is_ok()
}

pub fn initialize(make: impl FnOnce() -> Result<Hsm, Error>) -> Result<(), Error> {
    let mut g = MODULE.write().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = &*g {
        if m.pid == std::process::id() {
            return Err(Error::AlreadyInitialized);
        }
        // State inherited through fork() belongs to the parent. Forget it without
        // dropping it: the child must not close the parent's store handles.
        if let Some(m) = g.take() {
            std::mem::forget(m.hsm);
        }
    }
    let hsm = make()?;
    *g = Some(Module {
        pid: std::process::id(),
        hsm: Arc::new(hsm),
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
    // Dropped outside the lock: closing the store may take a moment. When no call is in
    // flight the store closes here, and RocksDB's worker threads are ended too, so no
    // thread of ours outlives C_Finalize.
    if let Some(m) = taken
        && let Ok(hsm) = Arc::try_unwrap(m.hsm)
    {
        drop(hsm);
        hsm_core::store::backend::release_background_threads();
    }
    Ok(())
}
