//! Process-wide module state: whether `C_Initialize` ran, and in which process (a forked
//! child must initialise again).

use crate::boundary::Error;
use hsm_core::config::Config;
use std::sync::RwLock;

pub struct Module {
    pub pid: u32,
    /// The configuration and the file it came from; the token layer reads it.
    #[allow(dead_code)]
    pub config: (Config, std::path::PathBuf),
}

static MODULE: RwLock<Option<Module>> = RwLock::new(None);

fn read() -> std::sync::RwLockReadGuard<'static, Option<Module>> {
    MODULE.read().unwrap_or_else(|p| p.into_inner())
}

fn write() -> std::sync::RwLockWriteGuard<'static, Option<Module>> {
    MODULE.write().unwrap_or_else(|p| p.into_inner())
}

/// Fails with `CKR_CRYPTOKI_NOT_INITIALIZED` unless this process initialised the module.
pub fn require_initialized() -> Result<(), Error> {
    match &*read() {
        Some(m) if m.pid == std::process::id() => Ok(()),
        _ => Err(Error::NotInitialized),
    }
}

pub fn initialize(m: Module) -> Result<(), Error> {
    let mut g = write();
    match &*g {
        Some(existing) if existing.pid == std::process::id() => Err(Error::AlreadyInitialized),
        // State inherited through fork() belongs to the parent: replace it.
        _ => {
            *g = Some(m);
            Ok(())
        }
    }
}

pub fn finalize() -> Result<(), Error> {
    let mut g = write();
    match &*g {
        Some(m) if m.pid == std::process::id() => {
            *g = None;
            Ok(())
        }
        _ => Err(Error::NotInitialized),
    }
}
