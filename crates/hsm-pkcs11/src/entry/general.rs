//! General-purpose functions (PKCS#11 3.0 §5.4): initialisation, library information and
//! the function tables. None needs the token runtime to be there already.

use super::function_list::{FUNCTION_LIST, INTERFACES};
use super::two_call;
use crate::boundary::{Error, pad};
use crate::{guard, state};
use cryptoki_sys::*;
use hsm_core::config::{Config, Mode};
use std::ffi::c_void;
use std::sync::Arc;

entry_points! {
    /// # Safety
    /// `args` is null or points to a `CK_C_INITIALIZE_ARGS`.
    pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV = || {
        let args = args as *const CK_C_INITIALIZE_ARGS;
        // SAFETY: PKCS#11 defines the argument as null or a CK_C_INITIALIZE_ARGS.
        let args = unsafe { guard::optional(args, "pInitArgs is misaligned") }?;
        initialize(args)
    }

    /// # Safety
    /// `reserved` must be null.
    pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV = || {
        if !reserved.is_null() {
            // Checked after the state so an uninitialised module answers NOT_INITIALIZED.
            state::hsm()?;
            return Err(Error::bad("pReserved must be NULL"));
        }
        // No runtime held here: the store closes in finalize when no call is in flight.
        state::finalize()
    }

    /// # Safety
    /// `info` is null or points to a writable `CK_INFO`.
    pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV = |_| {
        // SAFETY: the caller passes null or a valid CK_INFO; null is rejected.
        let info = unsafe { guard::out_ref(info, "pInfo is NULL") }?;
        // The 3.0 function table is offered through C_GetInterface.
        info.cryptokiVersion = CK_VERSION { major: 3, minor: 0 };
        pad(&mut info.manufacturerID, crate::MANUFACTURER);
        info.flags = 0;
        pad(&mut info.libraryDescription, crate::DESCRIPTION);
        info.libraryVersion = CK_VERSION {
            major: crate::LIBRARY_VERSION.0,
            minor: crate::LIBRARY_VERSION.1,
        };
        Ok(())
    }

    /// # Safety
    /// `list` is null or points to writable storage for one pointer.
    pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV = || {
        // SAFETY: the caller passes null or a valid pointer slot; null is rejected.
        let out = unsafe { guard::out_ref(list, "ppFunctionList is NULL") }?;
        // The table is never written through this pointer (PKCS#11 treats it read-only).
        *out = std::ptr::addr_of!(FUNCTION_LIST) as *mut CK_FUNCTION_LIST;
        Ok(())
    }

    /// # Safety
    /// `list` is null or writable for `*count` interfaces; `count` is valid.
    pub unsafe extern "C" fn C_GetInterfaceList(
        list: *mut CK_INTERFACE,
        count: *mut CK_ULONG,
    ) -> CK_RV = || {
        let all: Vec<CK_INTERFACE> = INTERFACES.iter().map(|i| i.iface).collect();
        // SAFETY: forwarded contract.
        unsafe { two_call(list, count, "pulCount is NULL", all.len(), || Ok(&all)) }
    }

    /// # Safety
    /// `name` is null or a NUL-terminated string; `version` is null or valid; `out` is
    /// valid.
    pub unsafe extern "C" fn C_GetInterface(
        name: *mut CK_UTF8CHAR,
        version: *mut CK_VERSION,
        out: *mut *mut CK_INTERFACE,
        flags: CK_FLAGS,
    ) -> CK_RV = || {
        // SAFETY: null rejected; valid per the contract.
        let out = unsafe { guard::out_ref(out, "ppInterface is NULL") }?;
        // SAFETY: null or a NUL-terminated string per the contract.
        if let Some(n) = unsafe { guard::c_str(name) }
            && n.to_bytes() != b"PKCS 11"
        {
            return Err(Error::bad("unknown interface name"));
        }
        // SAFETY: null or valid per the contract; misaligned is refused.
        let wanted = unsafe { guard::optional(version, "pVersion is misaligned") }?;
        let wanted = wanted.map(|v| (v.major, v.minor));
        let found = INTERFACES.iter().find(|i| {
            let v = (i.version.major, i.version.minor);
            wanted.is_none_or(|w| w == v) && flags & !i.iface.flags == 0
        });
        match found {
            Some(i) => {
                *out = &i.iface as *const CK_INTERFACE as *mut CK_INTERFACE;
                Ok(())
            }
            None => Err(Error::bad("no interface with that version and flags")),
        }
    }
}

fn initialize(args: Option<&CK_C_INITIALIZE_ARGS>) -> Result<(), Error> {
    let no_threads = args.is_some_and(|a| a.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS != 0);
    if let Some(a) = args {
        if !a.pReserved.is_null() {
            return Err(Error::bad("pReserved must be NULL"));
        }
        let given = [
            a.CreateMutex.is_some(),
            a.DestroyMutex.is_some(),
            a.LockMutex.is_some(),
            a.UnlockMutex.is_some(),
        ];
        let all = given.iter().all(|g| *g);
        if given.iter().any(|g| *g) && !all {
            return Err(Error::bad("mutex callbacks must be given all four or none"));
        }
        // We lock with the OS's primitives only. Callbacks alone (without permission to
        // use OS locking) cannot be honoured.
        if all && a.flags & CKF_OS_LOCKING_OK == 0 {
            return Err(Error::CantLock);
        }
    }
    if state::is_initialized() {
        return Err(Error::AlreadyInitialized);
    }
    let (config, path) = match Config::discover() {
        Ok(found) => found,
        Err(e) => {
            init_logging("warn");
            return Err(Error::Config(e.to_string()));
        }
    };
    init_logging(&config.log_level);
    let store = config.store.clone();
    let mut mode = config.mode;
    if mode == Mode::Embedded && no_threads {
        // RocksDB runs worker threads, which this caller forbids; a client of the server
        // starts none. GnuTLS and p11-kit callers pass the flag routinely.
        tracing::info!(
            "the caller forbids threads (CKF_LIBRARY_CANT_CREATE_OS_THREADS) and the store \
             runs worker threads: it opens in ferrohsm-server instead (mode \"auto\")"
        );
        mode = Mode::Auto;
    }
    let mut config = config;
    config.mode = mode;
    state::initialize(|| match mode {
        Mode::Embedded => embedded(config, &path),
        Mode::Auto | Mode::Client => client(&config, &path),
    })?;
    tracing::info!(config = %path.display(), store = %store.display(), ?mode, "FerroHSM module initialised");
    Ok(())
}

/// The store in this process; or, when a `ferrohsm-server` holds it (one that a caller
/// without threads, or a process in mode "auto", started), that server's client. A second
/// process is refused only when the holder is not a server.
fn embedded(config: Config, path: &std::path::Path) -> Result<state::Opened, Error> {
    use hsm_core::store::{Store, StoreError};
    let store = match Store::open_dir(&config.store) {
        Ok(s) => s,
        Err(e @ StoreError::Locked { .. }) => {
            let mut served = config.clone();
            served.mode = Mode::Client;
            if let Ok(opened) = client(&served, path) {
                tracing::info!("{e}: a ferrohsm-server; using it as its client");
                return Ok(opened);
            }
            tracing::error!(store = %config.store.display(), "cannot open the store: {e}");
            return Err(hsm_core::Error::from(e).into());
        }
        Err(e) => {
            tracing::error!(store = %config.store.display(), "cannot open the store: {e}");
            return Err(hsm_core::Error::from(e).into());
        }
    };
    let hooks = hsm_core::Hooks {
        adapters: adapters(),
        ..Default::default()
    };
    let hsm = Arc::new(hsm_core::Hsm::with_store(config, store, hooks)?);
    Ok(state::Opened {
        token: Arc::new(hsm_core::Local::new(hsm.clone())),
        hsm: Some(hsm),
    })
}

/// The adapters this build has besides the software one (`docs/adapters.md`).
fn adapters() -> hsm_core::hardware::Adapters {
    let a = hsm_adapter_pkcs11::register(Default::default());
    #[cfg(feature = "yubihsm")]
    let a = hsm_adapter_yubihsm::register(a);
    a
}

fn client(config: &Config, path: &std::path::Path) -> Result<state::Opened, Error> {
    let client = crate::client::Client::connect(config, path)?;
    Ok(state::Opened {
        token: Arc::new(hsm_core::api::Remote(client)),
        hsm: None,
    })
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERROHSM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}
