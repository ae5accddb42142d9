//! The function tables: `CK_FUNCTION_LIST` (2.40) from `C_GetFunctionList`, and the
//! `CK_INTERFACE`s of `C_GetInterfaceList` / `C_GetInterface`, which offer the 3.0 table
//! first and the 2.40 one second.

use super::general::*;
use super::{
    decrypt::*, digest::*, dual::*, encrypt::*, key_management::*, message::*, object::*,
    random::*, session::*, sign::*, slot_token::*, verify::*,
};
use cryptoki_sys::*;
use std::ffi::c_void;

const VERSION_2_40: CK_VERSION = CK_VERSION {
    major: 2,
    minor: 40,
};
const VERSION_3_0: CK_VERSION = CK_VERSION { major: 3, minor: 0 };

macro_rules! function_list {
    ($($name:ident),* $(,)?) => {
        CK_FUNCTION_LIST {
            version: VERSION_2_40,
            $($name: Some($name),)*
        }
    };
}

pub(super) static FUNCTION_LIST: CK_FUNCTION_LIST = function_list!(
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
            version: VERSION_3_0,
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

/// One interface: `CK_INTERFACE` holds raw pointers, to statics that are never written;
/// `version` is the version its function table starts with.
pub(super) struct Interface {
    pub(super) iface: CK_INTERFACE,
    pub(super) version: CK_VERSION,
}
// SAFETY: the pointers refer to immutable statics (a C string and function tables).
unsafe impl Sync for Interface {}

static INTERFACE_NAME: &[u8; 8] = b"PKCS 11\0";
pub(super) static INTERFACES: [Interface; 2] = [
    Interface {
        iface: CK_INTERFACE {
            pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
            pFunctionList: std::ptr::addr_of!(FUNCTION_LIST_3_0) as *mut c_void,
            flags: 0,
        },
        version: VERSION_3_0,
    },
    Interface {
        iface: CK_INTERFACE {
            pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
            pFunctionList: std::ptr::addr_of!(FUNCTION_LIST) as *mut c_void,
            flags: 0,
        },
        version: VERSION_2_40,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_interface_names_its_tables_version() {
        for i in &INTERFACES {
            // SAFETY: both tables are statics that start with a CK_VERSION.
            let v = unsafe { &*(i.iface.pFunctionList as *const CK_VERSION) };
            assert_eq!((v.major, v.minor), (i.version.major, i.version.minor));
        }
    }
}
