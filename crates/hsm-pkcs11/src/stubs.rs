//! Entry points not built yet. Each answers `CKR_FUNCTION_NOT_SUPPORTED` after the usual
//! initialisation check, and is listed as such in `docs/pkcs11/functions.md`.

use crate::boundary::{Error, ffi};
use cryptoki_sys::*;
use std::ffi::c_void;

macro_rules! not_supported {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) -> CK_RV {
            $(let _ = $arg;)*
            ffi(stringify!($name), || {
                crate::state::hsm()?;
                Err(Error::FunctionNotSupported)
            })
        }
    )*};
}

/// Every entry point (2.40 and 3.0 tables) that is not built yet.
pub const NOT_SUPPORTED: &[&str] = &[
    "C_GetOperationState",
    "C_SetOperationState",
    "C_SignRecoverInit",
    "C_SignRecover",
    "C_VerifyRecoverInit",
    "C_VerifyRecover",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_LoginUser",
    "C_EncryptMessageBegin",
    "C_EncryptMessageNext",
    "C_DecryptMessageBegin",
    "C_DecryptMessageNext",
    "C_MessageSignInit",
    "C_SignMessage",
    "C_SignMessageBegin",
    "C_SignMessageNext",
    "C_MessageSignFinal",
    "C_MessageVerifyInit",
    "C_VerifyMessage",
    "C_VerifyMessageBegin",
    "C_VerifyMessageNext",
    "C_MessageVerifyFinal",
];

not_supported! {
    C_GetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: CK_OBJECT_HANDLE, a5: CK_OBJECT_HANDLE);
    C_SignRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_SignRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_VerifyRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_VerifyRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DigestEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptDigestUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_SignEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptVerifyUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_LoginUser(a1: CK_SESSION_HANDLE, a2: CK_USER_TYPE, a3: *mut CK_UTF8CHAR, a4: CK_ULONG, a5: *mut CK_UTF8CHAR, a6: CK_ULONG);
    C_EncryptMessageBegin(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG);
    C_EncryptMessageNext(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_BYTE, a7: *mut CK_ULONG, a8: CK_FLAGS);
    C_DecryptMessageBegin(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG);
    C_DecryptMessageNext(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_BYTE, a7: *mut CK_ULONG, a8: CK_FLAGS);
    C_MessageSignInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_SignMessage(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_BYTE, a7: *mut CK_ULONG);
    C_SignMessageBegin(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG);
    C_SignMessageNext(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_BYTE, a7: *mut CK_ULONG);
    C_MessageSignFinal(a1: CK_SESSION_HANDLE);
    C_MessageVerifyInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_VerifyMessage(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_BYTE, a7: CK_ULONG);
    C_VerifyMessageBegin(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG);
    C_VerifyMessageNext(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_BYTE, a7: CK_ULONG);
    C_MessageVerifyFinal(a1: CK_SESSION_HANDLE);
}
