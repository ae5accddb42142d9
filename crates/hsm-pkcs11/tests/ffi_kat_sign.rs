//! Signatures through the raw `C_*` functions of the rlib: Ed25519 keys sign and verify,
//! and the mechanisms that do not fit a key or take Ed25519ph are refused. (ECDSA's
//! output-length rules are in `ffi_bad_args_pointers.rs`; HMAC and CMAC in
//! `ffi_kat_digest_mac.rs`.)
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

#[test]
fn ed25519_keys_sign_and_verify() {
    let _env = setup();
    let h = token_session();
    let mut params = [0x06, 0x03, 0x2b, 0x65, 0x70];
    let mut pt = [bytes_attr(CKA_EC_PARAMS, &mut params)];
    let mut keygen = CK_MECHANISM {
        mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let (mut public, mut private) = (0, 0);
    let mut point = [0u8; 34];
    let mut q = [bytes_attr(CKA_EC_POINT, &mut point)];
    let mut data = *b"signed with Ed25519";
    let mut sig = [0u8; 64];
    let mut n: CK_ULONG = 64;
    let mut m = CK_MECHANISM {
        mechanism: CKM_EDDSA,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    // SAFETY: valid templates and buffers.
    unsafe {
        assert_eq!(
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.as_mut_ptr(),
                1,
                null_mut(),
                0,
                &mut public,
                &mut private
            ),
            CKR_OK
        );
        assert_eq!(C_GetAttributeValue(h, public, q.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(
            &point[..2],
            &[0x04, 0x20],
            "CKA_EC_POINT is a DER OCTET STRING of 32 bytes"
        );
        assert_eq!(C_SignInit(h, &mut m, private), CKR_OK);
        assert_eq!(
            C_Sign(
                h,
                data.as_mut_ptr(),
                data.len() as _,
                sig.as_mut_ptr(),
                &mut n
            ),
            CKR_OK
        );
        assert_eq!(n, 64);
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, sig.as_mut_ptr(), 64),
            CKR_OK
        );
        sig[0] ^= 1;
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, sig.as_mut_ptr(), 64),
            CKR_SIGNATURE_INVALID
        );
        // ECDSA on an Edwards key, EdDSA on a Weierstrass key: both refused.
        let mut ecdsa = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(
            C_SignInit(h, &mut ecdsa, private),
            CKR_KEY_TYPE_INCONSISTENT
        );
        let (_, p256) = ec_pair(h);
        assert_eq!(C_SignInit(h, &mut m, p256), CKR_KEY_TYPE_INCONSISTENT);
        // Pre-hashed Ed25519ph is not offered.
        let mut ph = CK_EDDSA_PARAMS {
            phFlag: 1,
            ulContextDataLen: 0,
            pContextData: null_mut(),
        };
        let mut mph = CK_MECHANISM {
            mechanism: CKM_EDDSA,
            pParameter: &mut ph as *mut _ as *mut _,
            ulParameterLen: std::mem::size_of::<CK_EDDSA_PARAMS>() as _,
        };
        assert_eq!(
            C_SignInit(h, &mut mph, private),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
}
