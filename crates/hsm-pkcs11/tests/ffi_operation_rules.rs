//! Operations end the way PKCS#11 says (a failure other than a small buffer ends them),
//! ECB and CBC hand back whole blocks part by part, `CKA_ALWAYS_AUTHENTICATE` guards every
//! private-key operation, public objects need no login, and `C_FindObjects` takes any
//! count.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn aes_key(h: CK_SESSION_HANDLE, value: &[u8]) -> CK_OBJECT_HANDLE {
    create(h, &aes_template(value, &[])).unwrap()
}

fn init(h: CK_SESSION_HANDLE, m: &mut Mech, key: CK_OBJECT_HANDLE, encrypt: bool) -> CK_RV {
    let mut raw = m.raw();
    // SAFETY: a valid mechanism.
    unsafe {
        if encrypt {
            C_EncryptInit(h, &mut raw, key)
        } else {
            C_DecryptInit(h, &mut raw, key)
        }
    }
}

/// One `C_EncryptUpdate`/`C_DecryptUpdate` with a buffer of `room` bytes.
fn update(h: CK_SESSION_HANDLE, part: &[u8], room: usize, encrypt: bool) -> Result<Vec<u8>, CK_RV> {
    let mut part = part.to_vec();
    let mut out = vec![0u8; room];
    let mut n = room as CK_ULONG;
    // SAFETY: valid buffers.
    let rv = unsafe {
        if encrypt {
            C_EncryptUpdate(
                h,
                part.as_mut_ptr(),
                part.len() as _,
                out.as_mut_ptr(),
                &mut n,
            )
        } else {
            C_DecryptUpdate(
                h,
                part.as_mut_ptr(),
                part.len() as _,
                out.as_mut_ptr(),
                &mut n,
            )
        }
    };
    out.truncate(n as usize);
    rv_result(rv, out)
}

fn final_part(h: CK_SESSION_HANDLE, encrypt: bool) -> Result<Vec<u8>, CK_RV> {
    let mut out = vec![0u8; 64];
    let mut n = out.len() as CK_ULONG;
    // SAFETY: valid buffers.
    let rv = unsafe {
        if encrypt {
            C_EncryptFinal(h, out.as_mut_ptr(), &mut n)
        } else {
            C_DecryptFinal(h, out.as_mut_ptr(), &mut n)
        }
    };
    out.truncate(n as usize);
    rv_result(rv, out)
}

#[test]
fn a_failed_call_ends_its_operation_and_a_small_buffer_does_not() {
    let _env = setup();
    let h = token_session();
    let k = aes_key(h, &[1; 16]);
    let mut cbc = Mech::with(CKM_AES_CBC, &[0u8; 16]);
    // SAFETY: every pointer below is valid or deliberately NULL.
    unsafe {
        // C_Encrypt with NULL data of a claimed length: ARGUMENTS_BAD, and it is over.
        assert_eq!(init(h, &mut cbc, k, true), CKR_OK);
        let mut out = [0u8; 32];
        let mut n = 32;
        assert_eq!(
            C_Encrypt(h, null_mut(), 16, out.as_mut_ptr(), &mut n),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(init(h, &mut cbc, k, true), CKR_OK, "the next init succeeds");
        // A small buffer keeps it; the retry with room succeeds.
        let mut data = [7u8; 32];
        let mut n = 8;
        assert_eq!(
            C_Encrypt(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut n),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(n, 32);
        assert_eq!(init(h, &mut cbc, k, true), CKR_OPERATION_ACTIVE);
        assert_eq!(
            C_Encrypt(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut n),
            CKR_OK
        );
        // C_Decrypt of a length CBC cannot have: over.
        assert_eq!(init(h, &mut cbc, k, false), CKR_OK);
        let mut n = 32;
        assert_eq!(
            C_Decrypt(h, data.as_mut_ptr(), 15, out.as_mut_ptr(), &mut n),
            CKR_ENCRYPTED_DATA_LEN_RANGE
        );
        assert_eq!(init(h, &mut cbc, k, false), CKR_OK);
        assert_eq!(C_SessionCancel(h, CKF_DECRYPT), CKR_OK);

        // C_Sign with NULL data; C_Verify with a NULL signature; C_Verify of a bad one.
        let (_, private) = generate_pair(
            h,
            CKM_EC_KEY_PAIR_GEN,
            &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
            &[],
        )
        .unwrap();
        let public = {
            let (p, _) = generate_pair(
                h,
                CKM_EC_KEY_PAIR_GEN,
                &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
                &[],
            )
            .unwrap();
            p
        };
        let mut ecdsa = Mech::plain(CKM_ECDSA_SHA256).raw();
        assert_eq!(C_SignInit(h, &mut ecdsa, private), CKR_OK);
        let mut sig = [0u8; 64];
        let mut n = 64;
        assert_eq!(
            C_Sign(h, null_mut(), 4, sig.as_mut_ptr(), &mut n),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(C_SignInit(h, &mut ecdsa, private), CKR_OK);
        assert_eq!(C_SignUpdate(h, null_mut(), 4), CKR_ARGUMENTS_BAD);
        assert_eq!(C_SignInit(h, &mut ecdsa, private), CKR_OK);
        assert_eq!(
            C_SignFinal(h, sig.as_mut_ptr(), null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(C_SignInit(h, &mut ecdsa, private), CKR_OK);
        assert_eq!(C_SessionCancel(h, CKF_SIGN), CKR_OK);
        assert_eq!(C_VerifyInit(h, &mut ecdsa, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 4, null_mut(), 64),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(C_VerifyInit(h, &mut ecdsa, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 4, sig.as_mut_ptr(), 64),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(C_VerifyInit(h, &mut ecdsa, public), CKR_OK);
        assert_eq!(C_SessionCancel(h, CKF_VERIFY), CKR_OK);

        // C_Digest: a failure ends it; a finished digest is finished.
        let mut sha = Mech::plain(CKM_SHA256).raw();
        assert_eq!(C_DigestInit(h, &mut sha), CKR_OK);
        let mut d = [0u8; 32];
        let mut n = 32;
        assert_eq!(
            C_Digest(h, null_mut(), 4, d.as_mut_ptr(), &mut n),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(C_DigestInit(h, &mut sha), CKR_OK);
        assert_eq!(
            C_Digest(h, data.as_mut_ptr(), 4, d.as_mut_ptr(), &mut n),
            CKR_OK
        );
        assert_eq!(
            C_Digest(h, data.as_mut_ptr(), 4, d.as_mut_ptr(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            C_DigestFinal(h, d.as_mut_ptr(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(C_DigestInit(h, &mut sha), CKR_OK);
        assert_eq!(C_DigestUpdate(h, null_mut(), 4), CKR_ARGUMENTS_BAD);
        assert_eq!(
            C_DigestInit(h, &mut sha),
            CKR_OK,
            "the failed update ended it"
        );
    }
}

#[test]
fn ecb_and_cbc_return_whole_blocks_part_by_part() {
    let _env = setup();
    let h = token_session();
    let k = aes_key(h, &[2; 32]);
    let data: Vec<u8> = (0..80u8).collect();
    for (mechanism, padded) in [
        (CKM_AES_ECB, false),
        (CKM_AES_CBC, false),
        (CKM_AES_CBC_PAD, true),
    ] {
        let mut m = if mechanism == CKM_AES_ECB {
            Mech::plain(mechanism)
        } else {
            Mech::with(mechanism, &[9u8; 16])
        };
        let whole = crypt_once(h, &mut m, k, &data, true).unwrap();
        // Parts of 20, 12, 40 and 8 bytes: 16, 16, 32 and 16 come back at once.
        assert_eq!(init(h, &mut m, k, true), CKR_OK);
        let mut streamed = Vec::new();
        for (range, back) in [(0..20, 16), (20..32, 16), (32..72, 32), (72..80, 16)] {
            // The length query says what the part will give and consumes nothing.
            let mut n: CK_ULONG = 0;
            let mut part = data[range.clone()].to_vec();
            // SAFETY: a NULL output buffer asks for the length.
            let rv = unsafe {
                C_EncryptUpdate(h, part.as_mut_ptr(), part.len() as _, null_mut(), &mut n)
            };
            assert_eq!((rv, n), (CKR_OK, back), "{mechanism:#x} {range:?}");
            assert_eq!(
                update(h, &part, back as usize - 1, true),
                Err(CKR_BUFFER_TOO_SMALL),
                "a small buffer keeps the operation"
            );
            let out = update(h, &part, 64, true).unwrap();
            assert_eq!(out.len() as CK_ULONG, back);
            streamed.extend(out);
        }
        streamed.extend(final_part(h, true).unwrap());
        assert_eq!(
            streamed, whole,
            "{mechanism:#x}: parts give what one call gives"
        );

        // Decryption streams too; CBC-PAD keeps the last block back until the end.
        assert_eq!(init(h, &mut m, k, false), CKR_OK);
        let mut plain = Vec::new();
        for chunk in whole.chunks(16) {
            let out = update(h, chunk, 64, false).unwrap();
            if padded {
                assert!(out.len() == 16 || plain.is_empty(), "one block behind");
            } else {
                assert_eq!(out.len(), 16);
            }
            plain.extend(out);
        }
        plain.extend(final_part(h, false).unwrap());
        assert_eq!(plain, data, "{mechanism:#x}");
    }
    // Unpadded modes refuse a partial last block at the end.
    let mut ecb = Mech::plain(CKM_AES_ECB);
    assert_eq!(init(h, &mut ecb, k, true), CKR_OK);
    assert_eq!(update(h, &[1; 20], 64, true).unwrap().len(), 16);
    assert_eq!(final_part(h, true), Err(CKR_DATA_LEN_RANGE));
    assert_eq!(init(h, &mut ecb, k, true), CKR_OK, "and that ended it");
}

#[test]
fn always_authenticate_guards_decrypt_unwrap_and_derive() {
    let _env = setup();
    let h = token_session();
    let (public, private) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[(CKA_MODULUS_BITS, Val::Ulong(2048))],
        &[
            (CKA_DECRYPT, Val::Bool(true)),
            (CKA_UNWRAP, Val::Bool(true)),
            (CKA_ALWAYS_AUTHENTICATE, Val::Bool(true)),
        ],
    )
    .unwrap();
    let oaep = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: null_mut(),
        ulSourceDataLen: 0,
    };
    let mut m = Mech::with(CKM_RSA_PKCS_OAEP, &oaep);
    let ct = crypt_once(h, &mut m, public, b"secret", true).unwrap();
    let decrypt = |ct: &[u8]| -> CK_RV {
        let mut ct = ct.to_vec();
        let mut out = [0u8; 256];
        let mut n = 256;
        // SAFETY: valid buffers.
        unsafe { C_Decrypt(h, ct.as_mut_ptr(), ct.len() as _, out.as_mut_ptr(), &mut n) }
    };
    let context_login = |pin: &[u8]| -> CK_RV {
        // SAFETY: a valid PIN buffer.
        unsafe {
            C_Login(
                h,
                CKU_CONTEXT_SPECIFIC,
                pin.as_ptr() as *mut _,
                pin.len() as _,
            )
        }
    };
    // Without the context-specific login the decryption is refused, and that ends it.
    assert_eq!(init(h, &mut m, private, false), CKR_OK);
    assert_eq!(decrypt(&ct), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(decrypt(&ct), CKR_OPERATION_NOT_INITIALIZED);
    // With it, one decryption.
    assert_eq!(init(h, &mut m, private, false), CKR_OK);
    assert_eq!(context_login(b"wrong-pin"), CKR_PIN_INCORRECT);
    assert_eq!(context_login(USER), CKR_OK);
    assert_eq!(decrypt(&ct), CKR_OK);
    assert_eq!(init(h, &mut m, private, false), CKR_OK);
    assert_eq!(decrypt(&ct), CKR_USER_NOT_LOGGED_IN, "each use asks again");
    // PKCS#11 has no context login for unwrap or derive: such keys do neither.
    assert_eq!(
        unwrap_with(
            h,
            &mut m,
            private,
            &ct,
            &[
                (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
                (CKA_KEY_TYPE, Val::Ulong(CKK_GENERIC_SECRET)),
            ],
        ),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    let (peer, _) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
        &[],
    )
    .unwrap();
    let (_, ec) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
        &[
            (CKA_DERIVE, Val::Bool(true)),
            (CKA_ALWAYS_AUTHENTICATE, Val::Bool(true)),
        ],
    )
    .unwrap();
    let mut point = attribute(h, peer, CKA_EC_POINT).unwrap();
    let params = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: null_mut(),
        ulPublicDataLen: point.len() as _,
        pPublicData: point.as_mut_ptr(),
    };
    let mut m = Mech::with(CKM_ECDH1_DERIVE, &params).raw();
    let mut t = Template::new(&[
        (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
        (CKA_KEY_TYPE, Val::Ulong(CKK_GENERIC_SECRET)),
        (CKA_VALUE_LEN, Val::Ulong(32)),
    ]);
    let (p, n) = t.raw();
    let mut out = 0;
    // SAFETY: valid mechanism (the point outlives the call), template and output.
    assert_eq!(
        // SAFETY: the mechanism, template and output handle are live locals.
        unsafe { C_DeriveKey(h, &mut m, ec, p, n, &mut out) },
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
}

#[test]
fn public_objects_need_no_login_private_ones_do() {
    let _env = setup();
    let h = token_session();
    let (made, _) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
        &[],
    )
    .unwrap();
    let point = attribute(h, made, CKA_EC_POINT).unwrap();
    // SAFETY: plain calls with valid buffers.
    let public_rw = unsafe {
        assert_eq!(C_Logout(h), CKR_OK);
        let mut s = 0;
        assert_eq!(
            C_OpenSession(
                1,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                null_mut(),
                None,
                &mut s
            ),
            CKR_OK
        );
        s
    };
    let data = create(
        public_rw,
        &[
            (CKA_CLASS, Val::Ulong(CKO_DATA)),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(b"note".to_vec())),
            (CKA_VALUE, Val::Bytes(b"hello".to_vec())),
        ],
    )
    .unwrap();
    assert_eq!(
        attribute(public_rw, data, CKA_VALUE).unwrap(),
        b"hello".to_vec()
    );
    // A public key is a public object too, and verifies without a login.
    let key = create(
        public_rw,
        &[
            (CKA_CLASS, Val::Ulong(CKO_PUBLIC_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_EC)),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_EC_PARAMS, Val::Bytes(P256.to_vec())),
            (CKA_EC_POINT, Val::Bytes(point)),
        ],
    )
    .unwrap();
    assert_eq!(attribute(public_rw, key, CKA_PRIVATE).unwrap(), vec![0]);
    let mut m = Mech::plain(CKM_ECDSA_SHA256).raw();
    // SAFETY: a valid mechanism.
    assert_eq!(unsafe { C_VerifyInit(public_rw, &mut m, key) }, CKR_OK);
    // A public session pair lives in memory: generated without a login, it signs.
    let (_, session_private) = generate_pair(
        public_rw,
        CKM_EC_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
        &[(CKA_PRIVATE, Val::Bool(false))],
    )
    .unwrap();
    assert_eq!(
        sign(public_rw, CKM_ECDSA_SHA256, session_private, b"x")
            .unwrap()
            .len(),
        64
    );
    // Key material on the token is sealed under the master key, which only a login
    // opens: a public token key pair or secret key cannot be stored without one.
    assert_eq!(
        generate_pair(
            public_rw,
            CKM_EC_KEY_PAIR_GEN,
            &[
                (CKA_EC_PARAMS, Val::Bytes(P256.to_vec())),
                (CKA_TOKEN, Val::Bool(true)),
            ],
            &[
                (CKA_PRIVATE, Val::Bool(false)),
                (CKA_TOKEN, Val::Bool(true))
            ],
        ),
        Err(CKR_USER_NOT_LOGGED_IN)
    );
    assert_eq!(
        create(
            public_rw,
            &[
                (CKA_CLASS, Val::Ulong(CKO_DATA)),
                (CKA_TOKEN, Val::Bool(true)),
                (CKA_PRIVATE, Val::Bool(true)),
            ],
        ),
        Err(CKR_USER_NOT_LOGGED_IN)
    );
    // Key material is sealed under the master key, which only a login opens: a public
    // secret key cannot be made without one.
    assert_eq!(
        create(
            public_rw,
            &[
                (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
                (CKA_KEY_TYPE, Val::Ulong(CKK_AES)),
                (CKA_TOKEN, Val::Bool(true)),
                (CKA_PRIVATE, Val::Bool(false)),
                (CKA_VALUE, Val::Bytes(vec![1; 16])),
            ],
        ),
        Err(CKR_USER_NOT_LOGGED_IN)
    );
    // A read-only public session writes nothing.
    // SAFETY: plain calls.
    let ro = unsafe {
        let mut s = 0;
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, &mut s),
            CKR_OK
        );
        s
    };
    assert_eq!(
        create(
            ro,
            &[
                (CKA_CLASS, Val::Ulong(CKO_DATA)),
                (CKA_TOKEN, Val::Bool(true))
            ],
        ),
        Err(CKR_SESSION_READ_ONLY)
    );
}

#[test]
fn find_objects_takes_any_count_after_a_partial_read() {
    let _env = setup();
    let h = token_session();
    for i in 0..5u8 {
        create(
            h,
            &[
                (CKA_CLASS, Val::Ulong(CKO_DATA)),
                (CKA_LABEL, Val::Bytes(vec![b'a' + i])),
            ],
        )
        .unwrap();
    }
    let mut t = Template::new(&[(CKA_CLASS, Val::Ulong(CKO_DATA))]);
    let (p, n) = t.raw();
    let mut out = [0 as CK_OBJECT_HANDLE; 8];
    let mut count: CK_ULONG = 0;
    // SAFETY: `out` holds 8 handles; the module writes at most as many as it has.
    unsafe {
        assert_eq!(C_FindObjectsInit(h, p, n), CKR_OK);
        assert_eq!(C_FindObjects(h, out.as_mut_ptr(), 2, &mut count), CKR_OK);
        assert_eq!(count, 2);
        // The remaining three fit in `out`; the claimed maximum is ULONG_MAX.
        assert_eq!(
            C_FindObjects(h, out.as_mut_ptr().add(2), CK_ULONG::MAX, &mut count),
            CKR_OK
        );
        assert_eq!(count, 3);
        assert_eq!(
            C_FindObjects(h, out.as_mut_ptr(), CK_ULONG::MAX, &mut count),
            CKR_OK
        );
        assert_eq!(count, 0);
        assert_eq!(C_FindObjectsFinal(h), CKR_OK);
    }
}
