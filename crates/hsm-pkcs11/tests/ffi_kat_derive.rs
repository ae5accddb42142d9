//! Key derivation through the raw `C_*` functions of the rlib: ECDH on P-256 (both sides
//! agree, the sensitivity of the base and the new key carries over, the X9.63 SHA KDFs
//! against a SHA computed here) and HKDF against RFC 5869; with the refusals of each.
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

fn ecdh_derive(
    h: CK_SESSION_HANDLE,
    base: CK_OBJECT_HANDLE,
    peer: &[u8],
    sensitive: CK_BBOOL,
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut peer = peer.to_vec();
    let mut params = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: null_mut(),
        ulPublicDataLen: peer.len() as _,
        pPublicData: peer.as_mut_ptr(),
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_ECDH1_DERIVE,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>() as _,
    };
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut len: CK_ULONG = 32;
    let (mut e, mut d, mut s) = (1 as CK_BBOOL, 1 as CK_BBOOL, sensitive);
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        ulong_attr(CKA_VALUE_LEN, &mut len),
        bool_attr(CKA_ENCRYPT, &mut e),
        bool_attr(CKA_DECRYPT, &mut d),
        bool_attr(CKA_SENSITIVE, &mut s),
    ];
    let mut out = 0;
    // SAFETY: valid mechanism, template and output.
    match unsafe { C_DeriveKey(h, &mut m, base, t.as_mut_ptr(), t.len() as _, &mut out) } {
        CKR_OK => Ok(out),
        rv => Err(rv),
    }
}

#[test]
fn ecdh_derive_agrees_and_propagates_sensitivity() {
    let _env = setup();
    let h = token_session();
    let (a_point, a) = derive_pair(h, 1);
    let (b_point, b) = derive_pair(h, 1);
    let ka = ecdh_derive(h, a, &b_point, 1).unwrap();
    let kb = ecdh_derive(h, b, &a_point, 1).unwrap();
    // Both sides hold the same key: what one encrypts the other decrypts.
    let mut iv = [1u8; 16];
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    let ct = crypt(h, &mut cbc, ka, &[7u8; 32], true).unwrap();
    assert_eq!(crypt(h, &mut cbc, kb, &ct, false).unwrap(), vec![7u8; 32]);
    // Generated base (always sensitive, never extractable) AND a sensitive new key.
    let (mut always, mut never, mut local) = (0 as CK_BBOOL, 0 as CK_BBOOL, 1 as CK_BBOOL);
    let mut q = [
        bool_attr(CKA_ALWAYS_SENSITIVE, &mut always),
        bool_attr(CKA_NEVER_EXTRACTABLE, &mut never),
        bool_attr(CKA_LOCAL, &mut local),
    ];
    assert_eq!(
        // SAFETY: valid template.
        unsafe { C_GetAttributeValue(h, ka, q.as_mut_ptr(), 3) },
        CKR_OK
    );
    assert_eq!((always, never, local), (1, 1, 0));
    // A non-sensitive derived key is not "always sensitive".
    let kc = ecdh_derive(h, a, &b_point, 0).unwrap();
    let mut q = [bool_attr(CKA_ALWAYS_SENSITIVE, &mut always)];
    assert_eq!(
        // SAFETY: valid template.
        unsafe { C_GetAttributeValue(h, kc, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(always, 0);
    // Refusals.
    let (_, no_derive) = derive_pair(h, 0);
    assert_eq!(
        ecdh_derive(h, no_derive, &b_point, 1),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        ecdh_derive(h, a, &[4u8; 65], 1),
        Err(CKR_MECHANISM_PARAM_INVALID),
        "a point off the curve"
    );
}

/// ECDH into an extractable, non-sensitive generic secret with the given KDF; returns
/// the derived value.
fn ecdh_value(
    h: CK_SESSION_HANDLE,
    base: CK_OBJECT_HANDLE,
    peer: &[u8],
    kdf: CK_ULONG,
    shared: &[u8],
    len: Option<CK_ULONG>,
) -> Result<Vec<u8>, CK_RV> {
    let mut peer = peer.to_vec();
    let mut shared = shared.to_vec();
    let mut params = CK_ECDH1_DERIVE_PARAMS {
        kdf,
        ulSharedDataLen: shared.len() as _,
        pSharedData: if shared.is_empty() {
            null_mut()
        } else {
            shared.as_mut_ptr()
        },
        ulPublicDataLen: peer.len() as _,
        pPublicData: peer.as_mut_ptr(),
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_ECDH1_DERIVE,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>() as _,
    };
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_GENERIC_SECRET;
    let mut n = len.unwrap_or(0);
    let (mut s, mut x) = (0 as CK_BBOOL, 1 as CK_BBOOL);
    let mut t = vec![
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bool_attr(CKA_SENSITIVE, &mut s),
        bool_attr(CKA_EXTRACTABLE, &mut x),
    ];
    if len.is_some() {
        t.push(ulong_attr(CKA_VALUE_LEN, &mut n));
    }
    let mut out = 0;
    // SAFETY: valid mechanism, template and output.
    match unsafe { C_DeriveKey(h, &mut m, base, t.as_mut_ptr(), t.len() as _, &mut out) } {
        CKR_OK => {}
        rv => return Err(rv),
    }
    let mut value = vec![0u8; 512];
    let mut q = [bytes_attr(CKA_VALUE, &mut value)];
    assert_eq!(
        // SAFETY: valid template, 512-byte buffer.
        unsafe { C_GetAttributeValue(h, out, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    let got = q[0].ulValueLen as usize;
    value.truncate(got);
    Ok(value)
}

#[test]
fn ecdh_with_the_x963_sha_kdfs() {
    use sha2::Digest as _;
    let _env = setup();
    let h = token_session();
    let (a_point, a) = derive_pair(h, 1);
    let (b_point, b) = derive_pair(h, 1);
    let z = ecdh_value(h, a, &b_point, CKD_NULL, &[], None).unwrap();
    assert_eq!(z.len(), 32, "CKD_NULL gives the P-256 shared x-coordinate");
    // SHA-256 X9.63 with shared info, two hash blocks cut to 40 bytes, on both sides.
    let ka = ecdh_value(h, a, &b_point, CKD_SHA256_KDF, b"ferrohsm", Some(40)).unwrap();
    let kb = ecdh_value(h, b, &a_point, CKD_SHA256_KDF, b"ferrohsm", Some(40)).unwrap();
    assert_eq!(ka, kb);
    let block = |i: u32| {
        let mut d = sha2::Sha256::new();
        d.update(&z);
        d.update(i.to_be_bytes());
        d.update(b"ferrohsm");
        d.finalize().to_vec()
    };
    assert_eq!(ka, [block(1), block(2)].concat()[..40]);
    // Without CKA_VALUE_LEN a generic secret takes one hash output.
    assert_eq!(
        ecdh_value(h, a, &b_point, CKD_SHA512_KDF, &[], None)
            .unwrap()
            .len(),
        64
    );
    // Refusals: the ASN.1 and concatenation variants, shared data with CKD_NULL.
    for kdf in [CKD_SHA1_KDF_ASN1, CKD_SHA1_KDF_CONCATENATE, 0x99] {
        assert_eq!(
            ecdh_value(h, a, &b_point, kdf, &[], Some(16)),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
    }
    assert_eq!(
        ecdh_value(h, a, &b_point, CKD_NULL, b"info", Some(16)),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

#[test]
fn hkdf_derive_matches_rfc5869() {
    let _env = setup();
    let h = token_session();
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_GENERIC_SECRET;
    let mut ikm = hexv("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
    let mut derive: CK_BBOOL = 1;
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut ikm),
        bool_attr(CKA_DERIVE, &mut derive),
    ];
    let mut base = 0;
    let mut salt = hexv("000102030405060708090a0b0c");
    let mut info = hexv("f0f1f2f3f4f5f6f7f8f9");
    let mut params = CK_HKDF_PARAMS {
        bExtract: 1,
        bExpand: 1,
        prfHashMechanism: CKM_SHA256,
        ulSaltType: CKF_HKDF_SALT_DATA,
        pSalt: salt.as_mut_ptr(),
        ulSaltLen: salt.len() as _,
        hSaltKey: 0,
        pInfo: info.as_mut_ptr(),
        ulInfoLen: info.len() as _,
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_HKDF_DERIVE,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_HKDF_PARAMS>() as _,
    };
    let mut len: CK_ULONG = 42;
    let (mut sensitive, mut extractable) = (0 as CK_BBOOL, 1 as CK_BBOOL);
    let mut dt = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        ulong_attr(CKA_VALUE_LEN, &mut len),
        bool_attr(CKA_SENSITIVE, &mut sensitive),
        bool_attr(CKA_EXTRACTABLE, &mut extractable),
    ];
    let mut okm = [0u8; 42];
    let mut q = [bytes_attr(CKA_VALUE, &mut okm)];
    let mut derived = 0;
    // SAFETY: valid templates, parameters and buffers.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 4, &mut base), CKR_OK);
        assert_eq!(
            C_DeriveKey(
                h,
                &mut m,
                base,
                dt.as_mut_ptr(),
                dt.len() as _,
                &mut derived
            ),
            CKR_OK
        );
        assert_eq!(C_GetAttributeValue(h, derived, q.as_mut_ptr(), 1), CKR_OK);
    }
    assert_eq!(
        okm.to_vec(),
        hexv(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        )
    );
    // A salt from a key object is not supported.
    params.ulSaltType = CKF_HKDF_SALT_KEY;
    // The write above went through `params` itself: hand the module a fresh pointer.
    m.pParameter = &mut params as *mut _ as *mut _;
    assert_eq!(
        // SAFETY: as above.
        unsafe {
            C_DeriveKey(
                h,
                &mut m,
                base,
                dt.as_mut_ptr(),
                dt.len() as _,
                &mut derived,
            )
        },
        CKR_MECHANISM_PARAM_INVALID
    );
}
