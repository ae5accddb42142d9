//! `libferrohsm_pkcs11.so`: the PKCS#11 module.
//!
//! Every `C_*` export is a short shim: check pointers, call a function returning
//! `Result`, map the error to `CK_RV` in one exhaustive match ([`boundary::Error::rv`]),
//! all inside a panic boundary ([`boundary::ffi`]). This is the only crate with `unsafe`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod boundary;
mod state;
pub mod stubs;

use boundary::{Error, ffi, out_ref, pad};
use cryptoki_sys::*;
use hsm_core::config::Config;
use std::ffi::c_void;

/// Library version reported by `C_GetInfo` (major, minor).
pub const LIBRARY_VERSION: (u8, u8) = (0, 1);
pub const MANUFACTURER: &str = "FerroHSM";
pub const DESCRIPTION: &str = "FerroHSM software token";

/// # Safety
/// `args` is null or points to a `CK_C_INITIALIZE_ARGS`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    // SAFETY: PKCS#11 defines the argument as null or a CK_C_INITIALIZE_ARGS.
    let args = unsafe { (args as *const CK_C_INITIALIZE_ARGS).as_ref() };
    ffi("C_Initialize", || initialize(args))
}

fn initialize(args: Option<&CK_C_INITIALIZE_ARGS>) -> Result<(), Error> {
    if let Some(a) = args {
        if !a.pReserved.is_null() {
            return Err(Error::ArgumentsBad("pReserved must be NULL"));
        }
        let given = [
            a.CreateMutex.is_some(),
            a.DestroyMutex.is_some(),
            a.LockMutex.is_some(),
            a.UnlockMutex.is_some(),
        ];
        let all = given.iter().all(|g| *g);
        if given.iter().any(|g| *g) && !all {
            return Err(Error::ArgumentsBad(
                "mutex callbacks must be given all four or none",
            ));
        }
        // We lock with the OS's primitives only. Callbacks alone (without permission to
        // use OS locking) cannot be honoured.
        if all && a.flags & CKF_OS_LOCKING_OK == 0 {
            return Err(Error::CantLock);
        }
    }
    let (config, path) = match Config::discover() {
        Ok(found) => found,
        Err(e) => {
            init_logging("warn");
            return Err(Error::Config(e.to_string()));
        }
    };
    init_logging(&config.log_level);
    tracing::info!(config = %path.display(), store = %config.store.display(), "FerroHSM module initialised");
    state::initialize(state::Module {
        pid: std::process::id(),
        config: (config, path),
    })
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERROHSM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// # Safety
/// `reserved` must be null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    ffi("C_Finalize", || {
        if !reserved.is_null() {
            // Checked after the state so an uninitialised module answers NOT_INITIALIZED.
            state::require_initialized()?;
            return Err(Error::ArgumentsBad("pReserved must be NULL"));
        }
        state::finalize()
    })
}

/// # Safety
/// `info` is null or points to a writable `CK_INFO`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    ffi("C_GetInfo", || {
        state::require_initialized()?;
        // SAFETY: the caller passes null or a valid CK_INFO; null is rejected.
        let info = unsafe { out_ref(info, "pInfo is NULL") }?;
        info.cryptokiVersion = CK_VERSION {
            major: 2,
            minor: 40,
        };
        pad(&mut info.manufacturerID, MANUFACTURER);
        info.flags = 0;
        pad(&mut info.libraryDescription, DESCRIPTION);
        info.libraryVersion = CK_VERSION {
            major: LIBRARY_VERSION.0,
            minor: LIBRARY_VERSION.1,
        };
        Ok(())
    })
}

/// # Safety
/// `list` is null or points to writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    ffi("C_GetFunctionList", || {
        // SAFETY: the caller passes null or a valid pointer slot; null is rejected.
        let out = unsafe { out_ref(list, "ppFunctionList is NULL") }?;
        // The table is never written through this pointer (PKCS#11 treats it read-only).
        *out = std::ptr::addr_of!(FUNCTION_LIST) as *mut CK_FUNCTION_LIST;
        Ok(())
    })
}

macro_rules! function_list {
    ($($name:ident),* $(,)?) => {
        CK_FUNCTION_LIST {
            version: CK_VERSION { major: 2, minor: 40 },
            $($name: Some($name),)*
        }
    };
}

use stubs::*;

static FUNCTION_LIST: CK_FUNCTION_LIST = function_list!(
    C_Initialize,
    C_Finalize,
    C_GetInfo,
    C_GetFunctionList,
    C_GetSlotList,
    C_GetSlotInfo,
    C_GetTokenInfo,
    C_GetMechanismList,
    C_GetMechanismInfo,
    C_InitToken,
    C_InitPIN,
    C_SetPIN,
    C_OpenSession,
    C_CloseSession,
    C_CloseAllSessions,
    C_GetSessionInfo,
    C_GetOperationState,
    C_SetOperationState,
    C_Login,
    C_Logout,
    C_CreateObject,
    C_CopyObject,
    C_DestroyObject,
    C_GetObjectSize,
    C_GetAttributeValue,
    C_SetAttributeValue,
    C_FindObjectsInit,
    C_FindObjects,
    C_FindObjectsFinal,
    C_EncryptInit,
    C_Encrypt,
    C_EncryptUpdate,
    C_EncryptFinal,
    C_DecryptInit,
    C_Decrypt,
    C_DecryptUpdate,
    C_DecryptFinal,
    C_DigestInit,
    C_Digest,
    C_DigestUpdate,
    C_DigestKey,
    C_DigestFinal,
    C_SignInit,
    C_Sign,
    C_SignUpdate,
    C_SignFinal,
    C_SignRecoverInit,
    C_SignRecover,
    C_VerifyInit,
    C_Verify,
    C_VerifyUpdate,
    C_VerifyFinal,
    C_VerifyRecoverInit,
    C_VerifyRecover,
    C_DigestEncryptUpdate,
    C_DecryptDigestUpdate,
    C_SignEncryptUpdate,
    C_DecryptVerifyUpdate,
    C_GenerateKey,
    C_GenerateKeyPair,
    C_WrapKey,
    C_UnwrapKey,
    C_DeriveKey,
    C_SeedRandom,
    C_GenerateRandom,
    C_GetFunctionStatus,
    C_CancelFunction,
    C_WaitForSlotEvent,
);

#[cfg(test)]
mod tests {
    #[test]
    fn functions_doc_lists_every_entry_point() {
        let doc = include_str!("../../../docs/pkcs11/functions.md");
        let status = |name: &str| {
            doc.lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .map(|l| l.split('|').nth(2).unwrap_or("").trim().to_owned())
                .unwrap_or_else(|| panic!("docs/pkcs11/functions.md has no row for {name}"))
        };
        for name in crate::stubs::NOT_SUPPORTED {
            assert_eq!(status(name), "not supported", "{name}");
        }
        for name in [
            "C_Initialize",
            "C_Finalize",
            "C_GetInfo",
            "C_GetFunctionList",
        ] {
            assert_eq!(status(name), "supported", "{name}");
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `C_")).count();
        assert_eq!(rows, crate::stubs::NOT_SUPPORTED.len() + 4);
    }
}
