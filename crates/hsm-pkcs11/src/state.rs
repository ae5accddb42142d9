//! Process-wide module state: the token runtime once `C_Initialize` ran, and the process
//! that ran it (a forked child must initialise again).
//!
//! Which process is asked per call without a system call: a `pthread_atfork` handler
//! raises [`FORKS`] in every child, and the state remembers the count it was made at.
//! (`getpid` is a system call in glibc ≥ 2.25; asking it on every `C_*` cost a tenth of
//! a 4 KiB encryption.) `C_Initialize` also compares the process id, for a child made
//! without the handlers running (a raw `clone`).
//!
//! The token is a [`Token`]: the store in this process ([`hsm_core::Local`]) or a
//! `ferrohsm-server` reached over its socket. Each call holds a read guard on the state
//! for its length ([`TokenRef`]) rather than cloning the `Arc` (whose count every call of
//! every thread would write); `C_Finalize` takes the write lock, so it waits for the
//! calls in flight and then takes the state away — no use after free, and new calls get
//! NOT_INITIALIZED. No entry point blocks (C_WaitForSlotEvent does not wait), and none
//! asks for the state again while holding it.

use crate::boundary::Error;
use hsm_core::{Hsm, Token};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, RwLock, RwLockReadGuard};

/// Forks since the module was loaded, as this process sees it (raised in each child).
static FORKS: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn forked_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// This process, as the state tells processes apart.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Process {
    forks: u64,
    pid: u32,
}

impl Process {
    fn now() -> Process {
        Process {
            forks: FORKS.load(Ordering::Relaxed),
            pid: std::process::id(),
        }
    }

    /// Whether the state was made in this process (no system call).
    fn is_current(self) -> bool {
        self.forks == FORKS.load(Ordering::Relaxed)
    }
}

struct Module {
    made_in: Process,
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

/// The token for the length of one call (see the module's documentation).
pub struct TokenRef(RwLockReadGuard<'static, Option<Module>>);

impl std::ops::Deref for TokenRef {
    type Target = dyn Token;

    fn deref(&self) -> &Self::Target {
        match &*self.0 {
            Some(m) => &*m.token,
            // `token()` made this guard only over a module.
            None => unreachable!("a TokenRef holds an initialised module"),
        }
    }
}

/// The token, or `CKR_CRYPTOKI_NOT_INITIALIZED` unless this process initialised it.
pub fn token() -> Result<TokenRef, Error> {
    let g = MODULE.read().unwrap_or_else(|p| p.into_inner());
    match &*g {
        Some(m) if m.made_in.is_current() => Ok(TokenRef(g)),
        _ => Err(Error::NotInitialized),
    }
}

/// The in-process runtime (embedded mode only), for tests that look inside.
pub fn hsm() -> Result<Arc<Hsm>, Error> {
    match &*MODULE.read().unwrap_or_else(|p| p.into_inner()) {
        Some(m) if m.made_in.is_current() => m.hsm.clone().ok_or(Error::NotInitialized),
        _ => Err(Error::NotInitialized),
    }
}

pub fn is_initialized() -> bool {
    token().is_ok()
}

pub fn initialize(make: impl FnOnce() -> Result<Opened, Error>) -> Result<(), Error> {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic; it runs in the child
        // right after fork(), where only async-signal-safe work is allowed, which an
        // atomic add is.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
    let mut g = MODULE.write().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = &*g {
        if m.made_in == Process::now() {
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
        made_in: Process::now(),
        token: opened.token,
        hsm: opened.hsm,
    });
    Ok(())
}

pub fn finalize() -> Result<(), Error> {
    let taken = {
        let mut g = MODULE.write().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(m) if m.made_in.is_current() => g.take(),
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
