//! `libferrohsm_pkcs11.so`: the PKCS#11 module.
//!
//! Every `C_*` export is a short shim: check pointers, call a function returning
//! `Result`, map the error to `CK_RV` in one exhaustive match ([`boundary::Error::rv`]),
//! all inside a panic boundary ([`boundary::ffi`]). This is the only crate with `unsafe`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod boundary;
pub mod entry;
mod label;
mod state;
pub mod stubs;
pub mod template;

use boundary::{Error, ffi, out_ref, pad};
use cryptoki_sys::*;
use hsm_core::config::Config;
use std::ffi::c_void;

/// The token runtime behind the exports, for in-process tests that look at state no
/// `C_*` call shows (the key cache, say). Not part of the C interface.
#[doc(hidden)]
pub fn runtime() -> Result<std::sync::Arc<hsm_core::Hsm>, Error> {
    state::hsm()
}

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
    if config.mode != hsm_core::config::Mode::Embedded {
        return Err(Error::Config(format!(
            "{}: mode \"client\" (ferrohsm-server) is not built yet",
            path.display()
        )));
    }
    let store = config.store.clone();
    state::initialize(|| hsm_core::Hsm::open(config).map_err(Error::from))?;
    tracing::info!(config = %path.display(), store = %store.display(), "FerroHSM module initialised");
    Ok(())
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

/// # Safety
/// `reserved` must be null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    ffi("C_Finalize", || {
        if !reserved.is_null() {
            // Checked after the state so an uninitialised module answers NOT_INITIALIZED.
            state::hsm()?;
            return Err(Error::bad("pReserved must be NULL"));
        }
        state::finalize()
    })
}

/// # Safety
/// `info` is null or points to a writable `CK_INFO`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    ffi("C_GetInfo", || {
        state::hsm()?;
        // SAFETY: the caller passes null or a valid CK_INFO; null is rejected.
        let info = unsafe { out_ref(info, "pInfo is NULL") }?;
        // The 3.0 function table is offered through C_GetInterface.
        info.cryptokiVersion = CK_VERSION { major: 3, minor: 0 };
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

use entry::*;
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

macro_rules! function_list_3_0 {
    ($($name:ident),* $(,)?) => {
        CK_FUNCTION_LIST_3_0 {
            version: CK_VERSION { major: 3, minor: 0 },
            $($name: Some($name),)*
        }
    };
}

static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = function_list_3_0!(
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
    C_GetInterfaceList,
    C_GetInterface,
    C_LoginUser,
    C_SessionCancel,
    C_MessageEncryptInit,
    C_EncryptMessage,
    C_EncryptMessageBegin,
    C_EncryptMessageNext,
    C_MessageEncryptFinal,
    C_MessageDecryptInit,
    C_DecryptMessage,
    C_DecryptMessageBegin,
    C_DecryptMessageNext,
    C_MessageDecryptFinal,
    C_MessageSignInit,
    C_SignMessage,
    C_SignMessageBegin,
    C_SignMessageNext,
    C_MessageSignFinal,
    C_MessageVerifyInit,
    C_VerifyMessage,
    C_VerifyMessageBegin,
    C_VerifyMessageNext,
    C_MessageVerifyFinal,
);

/// `CK_INTERFACE` holds raw pointers; these point to statics that are never written.
struct Interface(CK_INTERFACE);
// SAFETY: the pointers refer to immutable statics (a C string and function tables).
unsafe impl Sync for Interface {}

static INTERFACE_NAME: &[u8; 8] = b"PKCS 11\0";
static INTERFACES: [Interface; 2] = [
    Interface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: std::ptr::addr_of!(FUNCTION_LIST_3_0) as *mut c_void,
        flags: 0,
    }),
    Interface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: std::ptr::addr_of!(FUNCTION_LIST) as *mut c_void,
        flags: 0,
    }),
];

/// # Safety
/// `list` is null or writable for `*count` interfaces; `count` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterfaceList(
    list: *mut CK_INTERFACE,
    count: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_GetInterfaceList", || {
        // SAFETY: null rejected; valid per the contract.
        let n = unsafe { out_ref(count, "pulCount is NULL") }?;
        let have = INTERFACES.len();
        if list.is_null() {
            *n = have as CK_ULONG;
            return Ok(());
        }
        if (*n as usize) < have {
            *n = have as CK_ULONG;
            return Err(hsm_core::Error::BufferTooSmall(have).into());
        }
        for (i, iface) in INTERFACES.iter().enumerate() {
            // SAFETY: list is writable for *n >= have entries.
            unsafe { *list.add(i) = CK_INTERFACE { ..iface.0 } };
        }
        *n = have as CK_ULONG;
        Ok(())
    })
}

/// # Safety
/// `name` is null or a NUL-terminated string; `version` is null or valid; `out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    out: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    ffi("C_GetInterface", || {
        // SAFETY: null rejected; valid per the contract.
        let out = unsafe { out_ref(out, "ppInterface is NULL") }?;
        if !name.is_null() {
            // SAFETY: a NUL-terminated string per the contract.
            let n = unsafe { std::ffi::CStr::from_ptr(name as *const std::ffi::c_char) };
            if n.to_bytes() != b"PKCS 11" {
                return Err(Error::bad("unknown interface name"));
            }
        }
        // SAFETY: null or valid per the contract.
        let wanted = unsafe { version.as_ref() }.map(|v| (v.major, v.minor));
        let found = INTERFACES.iter().find(|i| {
            // SAFETY: both tables start with a CK_VERSION.
            let v = unsafe { &*(i.0.pFunctionList as *const CK_VERSION) };
            wanted.is_none_or(|w| w == (v.major, v.minor)) && flags & !i.0.flags == 0
        });
        match found {
            Some(i) => {
                *out = &i.0 as *const CK_INTERFACE as *mut CK_INTERFACE;
                Ok(())
            }
            None => Err(Error::bad("no interface with that version and flags")),
        }
    })
}

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
        for name in crate::entry::IMPLEMENTED {
            assert!(
                status(name).starts_with("supported"),
                "{name}: {}",
                status(name)
            );
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `C_")).count();
        assert_eq!(
            rows,
            crate::stubs::NOT_SUPPORTED.len() + crate::entry::IMPLEMENTED.len()
        );
    }
}
