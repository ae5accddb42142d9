//! Encryption through the raw `C_*` functions of the rlib: the AES block modes against
//! SP 800-38A, RSA-OAEP, and RSA PKCS#1 v1.5 decryption (off unless configured); with the
//! bad lengths and parameters of each.
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
fn aes_block_modes_match_sp800_38a() {
    let _env = setup();
    let h = token_session();
    let value = hexv("2b7e151628aed2a6abf7158809cf4f3c");
    let key = aes_key(h, &value);
    let pt = hexv("6bc1bee22e409f96e93d7e117393172a");
    let mut iv = hexv("000102030405060708090a0b0c0d0e0f");
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    assert_eq!(
        crypt(h, &mut cbc, key, &pt, true).unwrap(),
        hexv("7649abac8119b246cee98e9b12e9197d")
    );
    assert_eq!(
        crypt(
            h,
            &mut cbc,
            key,
            &hexv("7649abac8119b246cee98e9b12e9197d"),
            false
        )
        .unwrap(),
        pt
    );
    let mut ecb = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        crypt(h, &mut ecb, key, &pt, true).unwrap(),
        hexv("3ad77bb40d7a3660a89ecaf32466ef97")
    );
    let mut ctr = CK_AES_CTR_PARAMS {
        ulCounterBits: 128,
        cb: hexv("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().unwrap(),
    };
    let mut mctr = CK_MECHANISM {
        mechanism: CKM_AES_CTR,
        pParameter: &mut ctr as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_AES_CTR_PARAMS>() as _,
    };
    assert_eq!(
        crypt(h, &mut mctr, key, &pt, true).unwrap(),
        hexv("874d6191b620e3261bef6864990db6ce")
    );
    // CBC-PAD: any length in, whole blocks out, the padding removed on the way back.
    let mut pad = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    let ct = crypt(h, &mut pad, key, b"seventeen bytes!!", true).unwrap();
    assert_eq!(ct.len(), 32);
    assert_eq!(
        crypt(h, &mut pad, key, &ct, false).unwrap(),
        b"seventeen bytes!!"
    );
    // Bad lengths and parameters.
    assert_eq!(
        crypt(h, &mut cbc, key, &[0u8; 15], true),
        Err(CKR_DATA_LEN_RANGE)
    );
    assert_eq!(
        crypt(h, &mut pad, key, &[0u8; 15], false),
        Err(CKR_ENCRYPTED_DATA_LEN_RANGE)
    );
    let mut short_iv = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 8,
    };
    assert_eq!(
        crypt(h, &mut short_iv, key, &pt, true),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    let mut no_iv = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        crypt(h, &mut no_iv, key, &pt, true),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

#[test]
fn rsa_oaep_encrypt_and_decrypt() {
    let _env = setup();
    let h = token_session();
    let (public, private) = rsa_pair(h);
    let oaep = |label: &mut [u8], mgf: CK_ULONG| CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: label.as_mut_ptr() as *mut _,
        ulSourceDataLen: label.len() as _,
    };
    let mut label = *b"ferrohsm";
    let mut params = oaep(&mut label, CKG_MGF1_SHA256);
    let mut m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as _,
    };
    let ct = crypt(h, &mut m, public, b"key material", true).unwrap();
    assert_eq!(ct.len(), 256);
    assert_eq!(
        crypt(h, &mut m, private, &ct, false).unwrap(),
        b"key material"
    );
    let mut other = *b"another!";
    let mut wrong_label = oaep(&mut other, CKG_MGF1_SHA256);
    let mut m2 = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut wrong_label as *mut _ as *mut _,
        ulParameterLen: m.ulParameterLen,
    };
    assert_eq!(
        crypt(h, &mut m2, private, &ct, false),
        Err(CKR_ENCRYPTED_DATA_INVALID)
    );
    let mut mismatched = oaep(&mut label, CKG_MGF1_SHA1);
    let mut m3 = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut mismatched as *mut _ as *mut _,
        ulParameterLen: m.ulParameterLen,
    };
    assert_eq!(
        crypt(h, &mut m3, public, b"x", true),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    let mut null_label = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: null_mut(),
        ulSourceDataLen: 4,
    };
    let mut m4 = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut null_label as *mut _ as *mut _,
        ulParameterLen: m.ulParameterLen,
    };
    assert_eq!(
        crypt(h, &mut m4, public, b"x", true),
        Err(CKR_MECHANISM_PARAM_INVALID),
        "NULL label with a length"
    );
    assert_eq!(
        crypt(h, &mut m, private, b"x", true),
        Err(CKR_KEY_TYPE_INCONSISTENT),
        "encrypt with the private half"
    );
    assert_eq!(
        crypt(h, &mut m, public, &[1u8; 300], true),
        Err(CKR_DATA_LEN_RANGE)
    );
}

fn rsa_pair(h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[(CKA_MODULUS_BITS, Val::Ulong(2048))],
        &[],
    )
    .unwrap()
}

#[test]
fn rsa_pkcs1_v15_decryption_is_off_unless_configured() {
    {
        let _env = setup();
        let h = token_session();
        let (public, private) = rsa_pair(h);
        let mut m = CK_MECHANISM {
            mechanism: CKM_RSA_PKCS,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let ct = crypt(h, &mut m, public, b"legacy", true).unwrap();
        assert_eq!(ct.len(), 256);
        assert_eq!(
            crypt(h, &mut m, private, &ct, false),
            Err(CKR_MECHANISM_INVALID),
            "off by default"
        );
        // SAFETY: CK_MECHANISM_INFO is a plain C struct of integers: all zeros is valid.
        let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(
            // SAFETY: valid output.
            unsafe { C_GetMechanismInfo(1, CKM_RSA_PKCS, &mut info) },
            CKR_OK
        );
        assert_eq!(info.flags & CKF_DECRYPT, 0);
    }
    let _env = setup_with(None, "allow_rsa_pkcs1_v15_decrypt = true\n");
    let h = token_session();
    let (public, private) = rsa_pair(h);
    let mut m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let ct = crypt(h, &mut m, public, b"legacy", true).unwrap();
    assert_eq!(crypt(h, &mut m, private, &ct, false).unwrap(), b"legacy");
}
