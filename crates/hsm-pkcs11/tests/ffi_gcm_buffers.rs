//! Single-part AES-GCM through the raw `C_*` functions, where the module seals and opens
//! in the caller's buffer: the output against RustCrypto's `aes-gcm` at sizes from empty
//! to over a MiB, with session and token keys; a bad tag leaves no plaintext in the
//! caller's buffer; a short buffer keeps the operation; in-place encryption (output over
//! the input) still gives the right answer; short tags; and prepared session keys that
//! follow changes to the key.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;

const KEY: [u8; 32] = [0x3c; 32];
const AAD: &[u8] = b"header";

fn oracle(iv: &[u8; 12], pt: &[u8]) -> Vec<u8> {
    aes_gcm::Aes256Gcm::new_from_slice(&KEY)
        .unwrap()
        .encrypt(iv.into(), Payload { msg: pt, aad: AAD })
        .unwrap()
}

/// A GCM mechanism over `iv` and `AAD` (both must outlive its use).
fn gcm(params: &mut CK_GCM_PARAMS) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as _,
    }
}

fn params(iv: &mut [u8], tag_bits: CK_ULONG) -> CK_GCM_PARAMS {
    CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: iv.len() as _,
        ulIvBits: (iv.len() * 8) as _,
        pAAD: AAD.as_ptr() as *mut _,
        ulAADLen: AAD.len() as _,
        ulTagBits: tag_bits,
    }
}

fn key(h: CK_SESSION_HANDLE, token: bool) -> CK_OBJECT_HANDLE {
    create(
        h,
        &aes_template(
            &KEY,
            &[
                (CKA_TOKEN, Val::Bool(token)),
                (CKA_ENCRYPT, Val::Bool(true)),
                (CKA_DECRYPT, Val::Bool(true)),
            ],
        ),
    )
    .expect("C_CreateObject (AES-256 key)")
}

/// `C_*Init` then one `C_Encrypt`/`C_Decrypt` into a buffer of exactly `cap` bytes
/// filled with 0xEE beforehand; the return code and the whole buffer come back.
fn once(
    h: CK_SESSION_HANDLE,
    k: CK_OBJECT_HANDLE,
    iv: &mut [u8; 12],
    tag_bits: CK_ULONG,
    input: &[u8],
    cap: usize,
    encrypt: bool,
) -> (CK_RV, Vec<u8>, CK_ULONG) {
    let mut p = params(iv, tag_bits);
    let mut m = gcm(&mut p);
    let mut input = input.to_vec();
    let mut out = vec![0xEEu8; cap];
    let mut n = cap as CK_ULONG;
    // SAFETY: valid mechanism and buffers of the stated lengths.
    unsafe {
        let rv = if encrypt {
            C_EncryptInit(h, &mut m, k)
        } else {
            C_DecryptInit(h, &mut m, k)
        };
        assert_eq!(rv, CKR_OK);
        let (i, il, o) = (
            input.as_mut_ptr(),
            input.len() as CK_ULONG,
            out.as_mut_ptr(),
        );
        let rv = if encrypt {
            C_Encrypt(h, i, il, o, &mut n)
        } else {
            C_Decrypt(h, i, il, o, &mut n)
        };
        (rv, out, n)
    }
}

#[test]
fn gcm_into_the_callers_buffer_matches_the_oracle_at_every_size() {
    let _env = setup();
    let h = token_session();
    for token in [false, true] {
        let k = key(h, token);
        for (i, len) in [0usize, 1, 15, 64, 4096, (1 << 20) + 3]
            .into_iter()
            .enumerate()
        {
            let pt: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let mut iv = [i as u8 + 1; 12];
            let want = oracle(&iv, &pt);
            let (rv, out, n) = once(h, k, &mut iv, 128, &pt, len + 16, true);
            assert_eq!(rv, CKR_OK, "{len} bytes, token key: {token}");
            assert_eq!(n as usize, len + 16);
            assert!(
                out == want,
                "ciphertext of {len} bytes differs from aes-gcm's"
            );
            let (rv, back, n) = once(h, k, &mut iv, 128, &want, len, false);
            assert_eq!(rv, CKR_OK);
            assert_eq!(n as usize, len);
            assert!(back == pt, "{len} bytes did not come back");
        }
    }
}

#[test]
fn a_bad_tag_leaves_no_plaintext_in_the_callers_buffer() {
    let _env = setup();
    let h = token_session();
    let k = key(h, false);
    let pt = vec![0x41u8; 4096];
    let mut iv = [9u8; 12];
    let mut ct = oracle(&iv, &pt);
    *ct.last_mut().unwrap() ^= 1;
    let (rv, out, _) = once(h, k, &mut iv, 128, &ct, pt.len(), false);
    assert_eq!(rv, CKR_ENCRYPTED_DATA_INVALID);
    assert!(
        !out.windows(16).any(|w| w == &pt[..16]),
        "unauthenticated plaintext was left in the caller's buffer"
    );
    // A changed byte of ciphertext is refused the same way.
    let mut ct = oracle(&iv, &pt);
    ct[100] ^= 0x80;
    let (rv, out, _) = once(h, k, &mut iv, 128, &ct, pt.len(), false);
    assert_eq!(rv, CKR_ENCRYPTED_DATA_INVALID);
    assert!(out.iter().all(|b| *b != 0x41));
}

#[test]
fn a_short_buffer_keeps_the_operation_and_names_the_length() {
    let _env = setup();
    let h = token_session();
    let k = key(h, false);
    let pt = vec![7u8; 1000];
    let mut iv = [3u8; 12];
    let (rv, out, n) = once(h, k, &mut iv, 128, &pt, 1000, true);
    assert_eq!(rv, CKR_BUFFER_TOO_SMALL);
    assert_eq!(n, 1016);
    assert!(
        out.iter().all(|b| *b == 0xEE),
        "nothing written on a short buffer"
    );
    // The same operation goes on with a buffer that fits.
    let mut input = pt.clone();
    let mut out = vec![0u8; 1016];
    let mut n = out.len() as CK_ULONG;
    // SAFETY: valid buffers.
    let rv = unsafe { C_Encrypt(h, input.as_mut_ptr(), 1000, out.as_mut_ptr(), &mut n) };
    assert_eq!(rv, CKR_OK);
    assert_eq!(out, oracle(&iv, &pt));
}

#[test]
fn in_place_encryption_and_decryption_give_the_right_answer() {
    let _env = setup();
    let h = token_session();
    let k = key(h, false);
    let pt: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let mut iv = [5u8; 12];
    let want = oracle(&iv, &pt);
    // One buffer: the plaintext at its start, room for the tag after it.
    let mut buf = pt.clone();
    buf.resize(pt.len() + 16, 0);
    let mut p = params(&mut iv, 128);
    let mut m = gcm(&mut p);
    let mut n = buf.len() as CK_ULONG;
    // SAFETY: the input and output are the same valid buffer, as in-place callers do.
    unsafe {
        assert_eq!(C_EncryptInit(h, &mut m, k), CKR_OK);
        let b = buf.as_mut_ptr();
        assert_eq!(C_Encrypt(h, b, pt.len() as _, b, &mut n), CKR_OK);
    }
    assert_eq!(n as usize, want.len());
    assert!(buf == want, "in-place ciphertext differs");
    let mut n = buf.len() as CK_ULONG;
    // SAFETY: as above.
    unsafe {
        assert_eq!(C_DecryptInit(h, &mut m, k), CKR_OK);
        let b = buf.as_mut_ptr();
        assert_eq!(C_Decrypt(h, b, want.len() as _, b, &mut n), CKR_OK);
    }
    assert_eq!(n as usize, pt.len());
    assert!(buf[..pt.len()] == pt[..], "in-place decryption differs");
}

#[test]
fn short_tags_are_the_full_tags_leading_bytes() {
    let _env = setup();
    let h = token_session();
    let k = key(h, true);
    let pt = b"ninety-six bit tag".to_vec();
    let mut iv = [6u8; 12];
    let full = oracle(&iv, &pt);
    let (rv, out, n) = once(h, k, &mut iv, 96, &pt, 64, true);
    assert_eq!(rv, CKR_OK);
    assert_eq!(&out[..n as usize], &full[..pt.len() + 12]);
    let (rv, back, n) = once(h, k, &mut iv, 96, &out[..n as usize], 64, false);
    assert_eq!(rv, CKR_OK);
    assert_eq!(&back[..n as usize], &pt[..]);
}

/// A private P-256 session key that may sign (its public half is not used).
fn session_signer(h: CK_SESSION_HANDLE) -> CK_OBJECT_HANDLE {
    let public = [(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))];
    let private = [(CKA_SIGN, Val::Bool(true)), (CKA_PRIVATE, Val::Bool(true))];
    generate_pair(h, CKM_EC_KEY_PAIR_GEN, &public, &private)
        .expect("a session P-256 pair")
        .1
}

#[test]
fn prepared_session_keys_follow_changes_logout_and_destruction() {
    let _env = setup();
    let h = token_session();
    // Signing: used once (prepared), then its CKA_SIGN taken away.
    let private = session_signer(h);
    assert!(sign(h, CKM_ECDSA_SHA256, private, b"first").is_ok());
    assert!(sign(h, CKM_ECDSA_SHA256, private, b"cached").is_ok());
    assert_eq!(
        set_attributes(h, private, &[(CKA_SIGN, Val::Bool(false))]),
        CKR_OK
    );
    assert_eq!(
        sign(h, CKM_ECDSA_SHA256, private, b"after").unwrap_err(),
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
    // Encryption: a prepared GCM key whose CKA_ENCRYPT goes away.
    let k = key(h, false);
    let mut iv = [1u8; 12];
    assert_eq!(once(h, k, &mut iv, 128, b"x", 17, true).0, CKR_OK);
    assert_eq!(
        set_attributes(h, k, &[(CKA_ENCRYPT, Val::Bool(false))]),
        CKR_OK
    );
    let mut p = params(&mut iv, 128);
    let mut m = gcm(&mut p);
    // SAFETY: valid mechanism.
    let rv = unsafe { C_EncryptInit(h, &mut m, k) };
    assert_eq!(rv, CKR_KEY_FUNCTION_NOT_PERMITTED);
    // A private session key is out of reach after C_Logout, cached or not.
    let other = session_signer(h);
    assert!(sign(h, CKM_ECDSA_SHA256, other, b"cache me").is_ok());
    assert_eq!(C_Logout(h), CKR_OK);
    assert_eq!(
        sign(h, CKM_ECDSA_SHA256, other, b"logged out").unwrap_err(),
        CKR_USER_NOT_LOGGED_IN
    );
    // SAFETY: valid PIN buffer.
    let rv = unsafe { C_Login(h, CKU_USER, USER.as_ptr() as *mut _, USER.len() as _) };
    assert_eq!(rv, CKR_OK);
    assert!(sign(h, CKM_ECDSA_SHA256, other, b"back").is_ok());
    // Destroyed: its handle is gone, prepared form and all.
    assert_eq!(C_DestroyObject(h, other), CKR_OK);
    assert_eq!(
        sign(h, CKM_ECDSA_SHA256, other, b"gone").unwrap_err(),
        CKR_KEY_HANDLE_INVALID
    );
}
