//! Dual-function cryptographic operations (PKCS#11 3.0 §5.17): none is built, each
//! answers `CKR_FUNCTION_NOT_SUPPORTED` once the module is initialised.

use cryptoki_sys::*;

not_supported! {
    C_DigestEncryptUpdate(
        a1: CK_SESSION_HANDLE,
        a2: *mut CK_BYTE,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: *mut CK_ULONG,
    );
    C_DecryptDigestUpdate(
        a1: CK_SESSION_HANDLE,
        a2: *mut CK_BYTE,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: *mut CK_ULONG,
    );
    C_SignEncryptUpdate(
        a1: CK_SESSION_HANDLE,
        a2: *mut CK_BYTE,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: *mut CK_ULONG,
    );
    C_DecryptVerifyUpdate(
        a1: CK_SESSION_HANDLE,
        a2: *mut CK_BYTE,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: *mut CK_ULONG,
    );
}
