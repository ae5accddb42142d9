//! PKCS#11 3.0 message-based AES-GCM (`C_MessageEncryptInit`, `C_EncryptMessage`, …):
//! one key, many messages, each with its own IV, AAD and tag; IVs the token generates;
//! the length-query convention; and the refusals.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

const KEY: [u8; 16] = [0x42; 16];

fn aes_key(h: CK_SESSION_HANDLE, encrypt: bool) -> CK_OBJECT_HANDLE {
    create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_AES)),
            (CKA_VALUE, Val::Bytes(KEY.to_vec())),
            (CKA_ENCRYPT, Val::Bool(encrypt)),
            (CKA_DECRYPT, Val::Bool(true)),
        ],
    )
    .unwrap()
}

fn init(
    h: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    encrypt: bool,
) -> CK_RV {
    let mut m = Mech::plain(mechanism).raw();
    // SAFETY: a valid mechanism.
    unsafe {
        if encrypt {
            C_MessageEncryptInit(h, &mut m, key)
        } else {
            C_MessageDecryptInit(h, &mut m, key)
        }
    }
}

/// One message's parameters, owning the IV and tag buffers they point to.
struct Message {
    iv: Vec<u8>,
    tag: Vec<u8>,
    fixed_bits: CK_ULONG,
    generator: CK_GENERATOR_FUNCTION,
}

impl Message {
    fn new(
        iv: &[u8],
        tag_len: usize,
        fixed_bits: CK_ULONG,
        generator: CK_GENERATOR_FUNCTION,
    ) -> Message {
        Message {
            iv: iv.to_vec(),
            tag: vec![0; tag_len],
            fixed_bits,
            generator,
        }
    }

    fn params(&mut self) -> CK_GCM_MESSAGE_PARAMS {
        CK_GCM_MESSAGE_PARAMS {
            pIv: self.iv.as_mut_ptr(),
            ulIvLen: self.iv.len() as _,
            ulIvFixedBits: self.fixed_bits,
            ivGenerator: self.generator,
            pTag: self.tag.as_mut_ptr(),
            ulTagBits: (self.tag.len() * 8) as _,
        }
    }

    /// `C_EncryptMessage` or `C_DecryptMessage` with a buffer of `out_len` bytes (`None`:
    /// a NULL buffer, the length query); returns the output and the reported length.
    fn run(
        &mut self,
        h: CK_SESSION_HANDLE,
        encrypt: bool,
        aad: &[u8],
        input: &[u8],
        out_len: Option<usize>,
    ) -> Result<(Vec<u8>, CK_ULONG), CK_RV> {
        let mut p = self.params();
        let (mut aad, mut input) = (aad.to_vec(), input.to_vec());
        let mut out = vec![0u8; out_len.unwrap_or(0)];
        let mut n = out.len() as CK_ULONG;
        let out_ptr = if out_len.is_some() {
            out.as_mut_ptr()
        } else {
            null_mut()
        };
        let size = std::mem::size_of::<CK_GCM_MESSAGE_PARAMS>() as CK_ULONG;
        // SAFETY: valid parameters and buffers of the stated lengths.
        let rv = unsafe {
            let f = if encrypt {
                C_EncryptMessage
            } else {
                C_DecryptMessage
            };
            f(
                h,
                &mut p as *mut _ as *mut _,
                size,
                aad.as_mut_ptr(),
                aad.len() as _,
                input.as_mut_ptr(),
                input.len() as _,
                out_ptr,
                &mut n,
            )
        };
        out.truncate(n as usize);
        rv_result(rv, (out, n))
    }
}

fn oracle_open(iv: &[u8; 12], aad: &[u8], ct: &[u8], tag: &[u8]) -> Vec<u8> {
    let mut sealed = ct.to_vec();
    sealed.extend_from_slice(tag);
    aes_gcm::Aes128Gcm::new_from_slice(&KEY)
        .unwrap()
        .decrypt(iv.into(), Payload { msg: &sealed, aad })
        .expect("RustCrypto opens the message")
}

#[test]
fn many_messages_under_one_key_with_caller_and_token_ivs() {
    let _env = setup();
    let h = token_session();
    let key = aes_key(h, true);
    assert_eq!(init(h, CKM_AES_GCM, key, true), CKR_OK);
    assert_eq!(init(h, CKM_AES_GCM, key, true), CKR_OPERATION_ACTIVE);

    // Caller's IVs: RustCrypto opens each message.
    for (i, aad) in [&b""[..], b"header one", b"header two"].iter().enumerate() {
        let iv = [i as u8 + 1; 12];
        let mut m = Message::new(&iv, 16, 96, 0);
        let pt = format!("message number {i}");
        let (ct, _) = m.run(h, true, aad, pt.as_bytes(), Some(64)).unwrap();
        assert_eq!(ct.len(), pt.len());
        assert_eq!(m.iv, iv, "a caller's IV stays as given");
        assert_eq!(oracle_open(&iv, aad, &ct, &m.tag), pt.as_bytes());
    }

    // The length query answers the length and generates nothing; too small likewise.
    let mut m = Message::new(&[0xaa; 16], 16, 32, CKG_GENERATE_RANDOM);
    assert_eq!(m.run(h, true, b"", b"twelve bytes", None).unwrap().1, 12);
    assert_eq!(
        m.run(h, true, b"", b"twelve bytes", Some(4)),
        Err(CKR_BUFFER_TOO_SMALL)
    );
    assert_eq!(m.iv, [0xaa; 16]);
    assert_eq!(m.tag, [0; 16]);

    // Token IVs: the fixed leading bits stay, the rest is fresh for every message.
    let mut ivs = Vec::new();
    let mut sealed = Vec::new();
    for _ in 0..3 {
        let mut m = Message::new(&[0xaa; 16], 16, 32, CKG_GENERATE_RANDOM);
        let (ct, _) = m.run(h, true, b"aad", b"token iv", Some(8)).unwrap();
        assert_eq!(m.iv[..4], [0xaa; 4]);
        ivs.push(m.iv.clone());
        sealed.push((m, ct));
    }
    ivs.dedup();
    assert_eq!(ivs.len(), 3, "three messages, three IVs");
    // Fewer than 96 random bits, and counter IVs, are refused.
    for (iv_len, fixed, generator) in [
        (12, 32, CKG_GENERATE_RANDOM),
        (16, 200, CKG_GENERATE_RANDOM),
        (12, 32, CKG_GENERATE_COUNTER),
    ] {
        let mut m = Message::new(&vec![0; iv_len], 16, fixed, generator);
        assert_eq!(
            m.run(h, true, b"", b"x", Some(1)),
            Err(CKR_MECHANISM_PARAM_INVALID),
            "{iv_len}-byte IV, {fixed} fixed bits, generator {generator}"
        );
    }
    assert_eq!(C_MessageEncryptFinal(h), CKR_OK);
    assert_eq!(C_MessageEncryptFinal(h), CKR_OPERATION_NOT_INITIALIZED);
    assert_eq!(
        Message::new(&[0; 12], 16, 96, 0).run(h, true, b"", b"x", Some(1)),
        Err(CKR_OPERATION_NOT_INITIALIZED)
    );

    // The token opens its own messages; a damaged tag fails that message only.
    assert_eq!(init(h, CKM_AES_GCM, key, false), CKR_OK);
    for (m, ct) in &mut sealed {
        let (pt, _) = m.run(h, false, b"aad", ct, Some(8)).unwrap();
        assert_eq!(pt, b"token iv");
    }
    let (m, ct) = &mut sealed[0];
    m.tag[15] ^= 1;
    assert_eq!(
        m.run(h, false, b"aad", ct, Some(8)),
        Err(CKR_ENCRYPTED_DATA_INVALID)
    );
    m.tag[15] ^= 1;
    assert_eq!(
        m.run(h, false, b"other aad", ct, Some(8)),
        Err(CKR_ENCRYPTED_DATA_INVALID)
    );
    assert!(
        m.run(h, false, b"aad", ct, Some(8)).is_ok(),
        "the operation goes on"
    );
    assert_eq!(C_SessionCancel(h, CKF_MESSAGE_DECRYPT), CKR_OK);
    assert_eq!(C_MessageDecryptFinal(h), CKR_OPERATION_NOT_INITIALIZED);
}

#[test]
fn message_based_refusals() {
    let _env = setup();
    let h = token_session();
    let no_encrypt = aes_key(h, false);
    assert_eq!(
        init(h, CKM_AES_GCM, no_encrypt, true),
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
    assert_eq!(
        init(h, CKM_AES_CBC, no_encrypt, false),
        CKR_MECHANISM_INVALID
    );
    let key = aes_key(h, true);
    assert_eq!(init(h, CKM_AES_GCM, key, true), CKR_OK);
    // Parameters of the wrong size, a missing tag buffer, tags that are not whole bytes.
    let encrypt_one = |p: &mut CK_GCM_MESSAGE_PARAMS, size: CK_ULONG| {
        let (mut pt, mut out, mut n) = (*b"x", [0u8; 1], 1 as CK_ULONG);
        // SAFETY: valid buffers; `p` and `size` are what the test wants to send.
        unsafe {
            C_EncryptMessage(
                h,
                p as *mut _ as *mut _,
                size,
                null_mut(),
                0,
                pt.as_mut_ptr(),
                1,
                out.as_mut_ptr(),
                &mut n,
            )
        }
    };
    let size = std::mem::size_of::<CK_GCM_MESSAGE_PARAMS>() as CK_ULONG;
    let mut m = Message::new(&[1; 12], 16, 96, 0);
    assert_eq!(encrypt_one(&mut m.params(), 8), CKR_MECHANISM_PARAM_INVALID);
    let mut no_tag = m.params();
    no_tag.pTag = null_mut();
    assert_eq!(encrypt_one(&mut no_tag, size), CKR_MECHANISM_PARAM_INVALID);
    let mut odd = m.params();
    odd.ulTagBits = 100;
    assert_eq!(encrypt_one(&mut odd, size), CKR_MECHANISM_PARAM_INVALID);
    assert_eq!(
        encrypt_one(&mut m.params(), size),
        CKR_OK,
        "the operation goes on"
    );
    // An empty IV and a 64-bit tag are refused by the GCM rules themselves.
    assert_eq!(
        Message::new(&[], 16, 0, 0).run(h, true, b"", b"x", Some(1)),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    assert_eq!(
        Message::new(&[1; 12], 8, 96, 0).run(h, true, b"", b"x", Some(1)),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    // Logging out ends the operation.
    assert_eq!(C_Logout(h), CKR_OK);
    assert_eq!(C_MessageEncryptFinal(h), CKR_OPERATION_NOT_INITIALIZED);
}
