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
                crate::state::require_initialized()?;
                Err(Error::FunctionNotSupported)
            })
        }
    )*};
}

/// Every entry point of the 2.40 function list that is not built yet.
pub const NOT_SUPPORTED: &[&str] = &[
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_GetObjectSize",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_SignInit",
    "C_Sign",
    "C_SignUpdate",
    "C_SignFinal",
    "C_SignRecoverInit",
    "C_SignRecover",
    "C_VerifyInit",
    "C_Verify",
    "C_VerifyUpdate",
    "C_VerifyFinal",
    "C_VerifyRecoverInit",
    "C_VerifyRecover",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_GenerateKey",
    "C_GenerateKeyPair",
    "C_WrapKey",
    "C_UnwrapKey",
    "C_DeriveKey",
    "C_SeedRandom",
    "C_GenerateRandom",
    "C_GetFunctionStatus",
    "C_CancelFunction",
    "C_WaitForSlotEvent",
];

not_supported! {
    C_GetSlotList(a1: CK_BBOOL, a2: *mut CK_SLOT_ID, a3: *mut CK_ULONG);
    C_GetSlotInfo(a1: CK_SLOT_ID, a2: *mut CK_SLOT_INFO);
    C_GetTokenInfo(a1: CK_SLOT_ID, a2: *mut CK_TOKEN_INFO);
    C_GetMechanismList(a1: CK_SLOT_ID, a2: *mut CK_MECHANISM_TYPE, a3: *mut CK_ULONG);
    C_GetMechanismInfo(a1: CK_SLOT_ID, a2: CK_MECHANISM_TYPE, a3: *mut CK_MECHANISM_INFO);
    C_InitToken(a1: CK_SLOT_ID, a2: *mut CK_UTF8CHAR, a3: CK_ULONG, a4: *mut CK_UTF8CHAR);
    C_InitPIN(a1: CK_SESSION_HANDLE, a2: *mut CK_UTF8CHAR, a3: CK_ULONG);
    C_SetPIN(a1: CK_SESSION_HANDLE, a2: *mut CK_UTF8CHAR, a3: CK_ULONG, a4: *mut CK_UTF8CHAR, a5: CK_ULONG);
    C_OpenSession(a1: CK_SLOT_ID, a2: CK_FLAGS, a3: *mut c_void, a4: CK_NOTIFY, a5: *mut CK_SESSION_HANDLE);
    C_CloseSession(a1: CK_SESSION_HANDLE);
    C_CloseAllSessions(a1: CK_SLOT_ID);
    C_GetSessionInfo(a1: CK_SESSION_HANDLE, a2: *mut CK_SESSION_INFO);
    C_GetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: CK_OBJECT_HANDLE, a5: CK_OBJECT_HANDLE);
    C_Login(a1: CK_SESSION_HANDLE, a2: CK_USER_TYPE, a3: *mut CK_UTF8CHAR, a4: CK_ULONG);
    C_Logout(a1: CK_SESSION_HANDLE);
    C_CreateObject(a1: CK_SESSION_HANDLE, a2: *mut CK_ATTRIBUTE, a3: CK_ULONG, a4: *mut CK_OBJECT_HANDLE);
    C_CopyObject(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_OBJECT_HANDLE);
    C_DestroyObject(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE);
    C_GetObjectSize(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ULONG);
    C_GetAttributeValue(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG);
    C_SetAttributeValue(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG);
    C_FindObjectsInit(a1: CK_SESSION_HANDLE, a2: *mut CK_ATTRIBUTE, a3: CK_ULONG);
    C_FindObjects(a1: CK_SESSION_HANDLE, a2: *mut CK_OBJECT_HANDLE, a3: CK_ULONG, a4: *mut CK_ULONG);
    C_FindObjectsFinal(a1: CK_SESSION_HANDLE);
    C_EncryptInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Encrypt(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_EncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_EncryptFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_DecryptInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Decrypt(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_DigestInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM);
    C_Digest(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DigestUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_DigestKey(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE);
    C_DigestFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SignInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Sign(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_SignUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_SignFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SignRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_SignRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_VerifyInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Verify(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG);
    C_VerifyUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_VerifyFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_VerifyRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_VerifyRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DigestEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptDigestUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_SignEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptVerifyUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_GenerateKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_OBJECT_HANDLE);
    C_GenerateKeyPair(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_ATTRIBUTE, a6: CK_ULONG, a7: *mut CK_OBJECT_HANDLE, a8: *mut CK_OBJECT_HANDLE);
    C_WrapKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: CK_OBJECT_HANDLE, a5: *mut CK_BYTE, a6: *mut CK_ULONG);
    C_UnwrapKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_ATTRIBUTE, a7: CK_ULONG, a8: *mut CK_OBJECT_HANDLE);
    C_DeriveKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: *mut CK_ATTRIBUTE, a5: CK_ULONG, a6: *mut CK_OBJECT_HANDLE);
    C_SeedRandom(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_GenerateRandom(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_GetFunctionStatus(a1: CK_SESSION_HANDLE);
    C_CancelFunction(a1: CK_SESSION_HANDLE);
    C_WaitForSlotEvent(a1: CK_FLAGS, a2: *mut CK_SLOT_ID, a3: *mut c_void);
}
