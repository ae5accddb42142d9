//! Digests and MACs through the raw `C_*` functions of the rlib: HMAC against RFC 4231,
//! the SHA-n HMAC key types, AES-CMAC against SP 800-38B, and `C_DigestKey` against a
//! SHA-256 computed here; with the refusals of each.
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
fn hmac_sign_and_verify_with_generic_secret_keys() {
    let _env = setup();
    let h = token_session();
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_GENERIC_SECRET;
    let mut value = *b"Jefe";
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
    ];
    let mut key = 0;
    let mut data = *b"what do ya want for nothing?";
    let rfc4231 = [
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75,
        0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec,
        0x38, 0x43,
    ];
    // SAFETY: valid templates and buffers.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 3, &mut key), CKR_OK);
        let mut m = CK_MECHANISM {
            mechanism: CKM_SHA256_HMAC,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_SignInit(h, &mut m, key), CKR_OK);
        let mut n: CK_ULONG = 0;
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), data.len() as _, null_mut(), &mut n),
            CKR_OK
        );
        assert_eq!(n, 32);
        let mut tag = [0u8; 32];
        assert_eq!(
            C_Sign(
                h,
                data.as_mut_ptr(),
                data.len() as _,
                tag.as_mut_ptr(),
                &mut n
            ),
            CKR_OK
        );
        assert_eq!(tag, rfc4231, "RFC 4231 test case 2");
        // Multi-part gives the same tag.
        assert_eq!(C_SignInit(h, &mut m, key), CKR_OK);
        assert_eq!(C_SignUpdate(h, data.as_mut_ptr(), 10), CKR_OK);
        assert_eq!(
            C_SignUpdate(h, data.as_mut_ptr().add(10), data.len() as CK_ULONG - 10),
            CKR_OK
        );
        let mut tag2 = [0u8; 32];
        let mut n2: CK_ULONG = 32;
        assert_eq!(C_SignFinal(h, tag2.as_mut_ptr(), &mut n2), CKR_OK);
        assert_eq!(tag2, rfc4231);
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, tag.as_mut_ptr(), 32),
            CKR_OK
        );
        tag[3] ^= 1;
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, tag.as_mut_ptr(), 32),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, tag.as_mut_ptr(), 31),
            CKR_SIGNATURE_LEN_RANGE
        );
        // HMAC wants a generic secret, not an AES key.
        let mut aes_kt: CK_ULONG = CKK_AES;
        let mut aes_value = [1u8; 16];
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            ulong_attr(CKA_KEY_TYPE, &mut aes_kt),
            bytes_attr(CKA_VALUE, &mut aes_value),
        ];
        let mut aes = 0;
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 3, &mut aes), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, aes), CKR_KEY_TYPE_INCONSISTENT);
    }
}

#[test]
fn hmac_key_types_generate_and_serve_only_their_own_hash() {
    let _env = setup();
    let h = token_session();
    let keygen = |mech: CK_MECHANISM_TYPE, len: CK_ULONG| {
        let mut m = CK_MECHANISM {
            mechanism: mech,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut len = len;
        let (mut s, mut v): (CK_BBOOL, CK_BBOOL) = (1, 1);
        let mut t = [
            ulong_attr(CKA_VALUE_LEN, &mut len),
            bool_attr(CKA_SIGN, &mut s),
            bool_attr(CKA_VERIFY, &mut v),
        ];
        let mut key = 0;
        // SAFETY: valid mechanism and template.
        match unsafe { C_GenerateKey(h, &mut m, t.as_mut_ptr(), 3, &mut key) } {
            CKR_OK => Ok(key),
            rv => Err(rv),
        }
    };
    let mac = |mech: CK_MECHANISM_TYPE, key: CK_OBJECT_HANDLE| {
        let mut m = CK_MECHANISM {
            mechanism: mech,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        // SAFETY: valid mechanism.
        match unsafe { C_SignInit(h, &mut m, key) } {
            CKR_OK => {}
            rv => return Err(rv),
        }
        let mut data = *b"sha2 hmac key";
        let mut tag = [0u8; 64];
        let mut n = tag.len() as CK_ULONG;
        // SAFETY: buffers of the given lengths.
        let rv = unsafe {
            C_Sign(
                h,
                data.as_mut_ptr(),
                data.len() as _,
                tag.as_mut_ptr(),
                &mut n,
            )
        };
        assert_eq!(rv, CKR_OK);
        Ok(n)
    };
    for (gen_mech, kt, own, tag_len, other) in [
        (
            CKM_SHA_1_KEY_GEN,
            CKK_SHA_1_HMAC,
            CKM_SHA_1_HMAC,
            20,
            CKM_SHA256_HMAC,
        ),
        (
            CKM_SHA224_KEY_GEN,
            CKK_SHA224_HMAC,
            CKM_SHA224_HMAC,
            28,
            CKM_SHA_1_HMAC,
        ),
        (
            CKM_SHA256_KEY_GEN,
            CKK_SHA256_HMAC,
            CKM_SHA256_HMAC,
            32,
            CKM_SHA512_HMAC,
        ),
        (
            CKM_SHA384_KEY_GEN,
            CKK_SHA384_HMAC,
            CKM_SHA384_HMAC,
            48,
            CKM_SHA256_HMAC,
        ),
        (
            CKM_SHA512_KEY_GEN,
            CKK_SHA512_HMAC,
            CKM_SHA512_HMAC,
            64,
            CKM_SHA384_HMAC,
        ),
    ] {
        let key = keygen(gen_mech, 256).unwrap();
        let mut got: CK_ULONG = 0;
        let mut q = [ulong_attr(CKA_KEY_TYPE, &mut got)];
        assert_eq!(
            // SAFETY: valid template.
            unsafe { C_GetAttributeValue(h, key, q.as_mut_ptr(), 1) },
            CKR_OK
        );
        assert_eq!(got, kt, "key type of {gen_mech:#x}");
        assert_eq!(mac(own, key), Ok(tag_len));
        assert_eq!(mac(other, key), Err(CKR_KEY_TYPE_INCONSISTENT));
    }
    assert_eq!(keygen(CKM_SHA256_KEY_GEN, 0), Err(CKR_KEY_SIZE_RANGE));
    assert_eq!(keygen(CKM_SHA256_KEY_GEN, 513), Err(CKR_KEY_SIZE_RANGE));
}

#[test]
fn aes_cmac_matches_sp800_38b() {
    let _env = setup();
    let h = token_session();
    let mut value = hexv("2b7e151628aed2a6abf7158809cf4f3c");
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
    ];
    let mut key = 0;
    let mut data = hexv("6bc1bee22e409f96e93d7e117393172a");
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_CMAC,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut tag = [0u8; 16];
    let mut n: CK_ULONG = 16;
    // SAFETY: valid template and buffers.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 3, &mut key), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 16, tag.as_mut_ptr(), &mut n),
            CKR_OK
        );
        assert_eq!(tag.to_vec(), hexv("070a16b46b4d4144f79bdd9dd04a287c"));
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 16, tag.as_mut_ptr(), 16),
            CKR_OK
        );
        tag[0] ^= 1;
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 16, tag.as_mut_ptr(), 16),
            CKR_SIGNATURE_INVALID
        );
    }
}

#[test]
fn digest_key_feeds_a_secret_value_into_the_digest() {
    use sha2::Digest as _;
    let _env = setup();
    let h = token_session();
    let value = [0x3cu8; 32];
    let key = secret(h, &value, &[(CKA_SENSITIVE, 0), (CKA_EXTRACTABLE, 1)]).unwrap();
    let mut m = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut abc = *b"abc";
    let mut out = [0u8; 32];
    let mut n: CK_ULONG = 32;
    // SAFETY: valid mechanism and buffers.
    unsafe {
        assert_eq!(C_DigestKey(h, key), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(C_DigestInit(h, &mut m), CKR_OK);
        assert_eq!(C_DigestUpdate(h, abc.as_mut_ptr(), 3), CKR_OK);
        assert_eq!(C_DigestKey(h, key), CKR_OK);
        assert_eq!(C_DigestKey(h, 0xdead), CKR_KEY_HANDLE_INVALID);
        assert_eq!(C_DigestFinal(h, out.as_mut_ptr(), &mut n), CKR_OK);
    }
    let mut want = sha2::Sha256::new();
    want.update(b"abc");
    want.update(value);
    assert_eq!(out.as_slice(), want.finalize().as_slice());
    // Only non-sensitive, extractable secret keys are digested: a long HMAC key's digest
    // is the key HMAC uses.
    let (point, private) = derive_pair(h, 0);
    assert_eq!(point.len(), 65);
    let sensitive = secret(h, &value, &[(CKA_SENSITIVE, 1), (CKA_EXTRACTABLE, 1)]).unwrap();
    let sealed = secret(h, &value, &[(CKA_SENSITIVE, 0), (CKA_EXTRACTABLE, 0)]).unwrap();
    // SAFETY: valid mechanism.
    unsafe {
        assert_eq!(C_DigestInit(h, &mut m), CKR_OK);
        for k in [private, sensitive, sealed] {
            assert_eq!(C_DigestKey(h, k), CKR_KEY_INDIGESTIBLE);
        }
    }
}
