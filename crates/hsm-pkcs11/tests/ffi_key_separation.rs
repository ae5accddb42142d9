//! The templates real clients send are accepted (`key_separation = "standard"`, the
//! default), the Clulow/Tookan sequences still fail at their wrap step, and the strict
//! rule refuses what it always refused.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;

fn all_four() -> Vec<(CK_ATTRIBUTE_TYPE, Val)> {
    vec![
        (CKA_ENCRYPT, Val::Bool(true)),
        (CKA_DECRYPT, Val::Bool(true)),
        (CKA_WRAP, Val::Bool(true)),
        (CKA_UNWRAP, Val::Bool(true)),
    ]
}

/// PyKCS11's documented RSA pair template (and most tutorials').
fn pykcs11_rsa(h: CK_SESSION_HANDLE) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
    generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_MODULUS_BITS, Val::Ulong(2048)),
            (CKA_PUBLIC_EXPONENT, Val::Bytes(vec![1, 0, 1])),
            (CKA_VERIFY, Val::Bool(true)),
            (CKA_ENCRYPT, Val::Bool(true)),
            (CKA_WRAP, Val::Bool(true)),
        ],
        &[
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_SIGN, Val::Bool(true)),
            (CKA_DECRYPT, Val::Bool(true)),
            (CKA_UNWRAP, Val::Bool(true)),
        ],
    )
}

fn aes_generate(
    h: CK_SESSION_HANDLE,
    extra: &[(CK_ATTRIBUTE_TYPE, Val)],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut m = Mech::plain(CKM_AES_KEY_GEN).raw();
    let mut t = vec![(CKA_VALUE_LEN, Val::Ulong(32))];
    t.extend_from_slice(extra);
    let mut t = Template::new(&t);
    let (p, n) = t.raw();
    let mut k = 0;
    // SAFETY: valid mechanism, template and output.
    let rv = unsafe { C_GenerateKey(h, &mut m, p, n, &mut k) };
    rv_result(rv, k)
}

#[test]
fn the_templates_clients_send_are_accepted_and_work() {
    let _env = setup();
    let h = token_session();
    let (public, private) = pykcs11_rsa(h).unwrap();
    for (o, a) in [
        (public, CKA_WRAP),
        (public, CKA_ENCRYPT),
        (private, CKA_DECRYPT),
        (private, CKA_UNWRAP),
    ] {
        assert_eq!(attribute(h, o, a).unwrap(), vec![1], "{a:#x}");
    }
    let oaep = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: std::ptr::null_mut(),
        ulSourceDataLen: 0,
    };
    let mut m = Mech::with(CKM_RSA_PKCS_OAEP, &oaep);
    // The pair encrypts and decrypts ...
    let mut raw = m.raw();
    let mut data = *b"hello";
    let mut ct = vec![0u8; 256];
    let mut n = ct.len() as CK_ULONG;
    let mut pt = vec![0u8; 256];
    let mut pn = pt.len() as CK_ULONG;
    // SAFETY: valid mechanism and buffers.
    unsafe {
        assert_eq!(C_EncryptInit(h, &mut raw, public), CKR_OK);
        assert_eq!(
            C_Encrypt(h, data.as_mut_ptr(), 5, ct.as_mut_ptr(), &mut n),
            CKR_OK
        );
        assert_eq!(C_DecryptInit(h, &mut raw, private), CKR_OK);
        assert_eq!(
            C_Decrypt(h, ct.as_mut_ptr(), n, pt.as_mut_ptr(), &mut pn),
            CKR_OK
        );
    }
    assert_eq!(&pt[..pn as usize], b"hello");
    // ... and moves an extractable secret out and back in (112 bits: RSA-2048's strength).
    let k = create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_GENERIC_SECRET)),
            (CKA_VALUE, Val::Bytes(vec![9; 14])),
            (CKA_SENSITIVE, Val::Bool(false)),
            (CKA_EXTRACTABLE, Val::Bool(true)),
        ],
    )
    .unwrap();
    let secret_back = [
        (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
        (CKA_KEY_TYPE, Val::Ulong(CKK_GENERIC_SECRET)),
        (CKA_SENSITIVE, Val::Bool(false)),
        (CKA_EXTRACTABLE, Val::Bool(true)),
    ];
    let blob = wrap_with(h, &mut m, public, k).unwrap();
    let back = unwrap_with(h, &mut m, private, &blob, &secret_back).unwrap();
    assert_eq!(attribute(h, back, CKA_VALUE).unwrap(), vec![9; 14]);

    // An AES key with all four usages, created and generated, and used for each.
    let w = create(h, &aes_template(&[3; 32], &all_four())).unwrap();
    let g = aes_generate(h, &all_four()).unwrap();
    for key in [w, g] {
        for a in [CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP] {
            assert_eq!(attribute(h, key, a).unwrap(), vec![1], "{a:#x}");
        }
        let ct = crypt_once(h, &mut Mech::plain(CKM_AES_ECB), key, &[7; 16], true).unwrap();
        assert_eq!(
            crypt_once(h, &mut Mech::plain(CKM_AES_ECB), key, &ct, false).unwrap(),
            vec![7; 16]
        );
        let blob = wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP_KWP), key, k).unwrap();
        let back = unwrap_with(
            h,
            &mut Mech::plain(CKM_AES_KEY_WRAP_KWP),
            key,
            &blob,
            &secret_back,
        )
        .unwrap();
        assert_eq!(attribute(h, back, CKA_VALUE).unwrap(), vec![9; 14]);
    }
    // A role asked for later is accepted too.
    let d = create(
        h,
        &aes_template(&[4; 32], &[(CKA_DECRYPT, Val::Bool(true))]),
    )
    .unwrap();
    assert_eq!(set_attributes(h, d, &[(CKA_WRAP, Val::Bool(true))]), CKR_OK);
}

#[test]
fn clulow_and_tookan_sequences_still_fail_at_the_wrap_step() {
    let _env = setup();
    let h = token_session();
    // W wraps and decrypts, as the user asked.
    let w = create(h, &aes_template(&[1; 32], &all_four())).unwrap();
    // K with default attributes: unextractable. Wrapping it under W, the first step of
    // "wrap, then decrypt the blob", is refused.
    let k = aes_generate(h, &[]).unwrap();
    assert_eq!(attribute(h, k, CKA_EXTRACTABLE).unwrap(), vec![0]);
    assert_eq!(
        wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP), w, k),
        Err(CKR_KEY_UNEXTRACTABLE)
    );
    // The other direction: a key of known value planted with "encrypt, then unwrap" (or
    // simply imported) wraps nothing that is unextractable either.
    let known = [0x5a; 32];
    let planted_blob = crypt_once(h, &mut Mech::plain(CKM_AES_ECB), w, &known, true).unwrap();
    assert_eq!(planted_blob.len(), 32);
    let planted = create(h, &aes_template(&known, &[(CKA_WRAP, Val::Bool(true))])).unwrap();
    assert_eq!(
        wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP), planted, k),
        Err(CKR_KEY_UNEXTRACTABLE)
    );
    // An extractable key marked CKA_WRAP_WITH_TRUSTED leaves under no untrusted key.
    let picky = create(
        h,
        &aes_template(
            &[2; 32],
            &[
                (CKA_EXTRACTABLE, Val::Bool(true)),
                (CKA_WRAP_WITH_TRUSTED, Val::Bool(true)),
            ],
        ),
    )
    .unwrap();
    for wrapper in [w, planted] {
        assert_eq!(
            wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP), wrapper, picky),
            Err(CKR_KEY_NOT_WRAPPABLE)
        );
    }
    // Nothing came out in clear.
    assert_eq!(attribute(h, k, CKA_VALUE), Err(CKR_ATTRIBUTE_SENSITIVE));
    assert_eq!(attribute(h, picky, CKA_VALUE), Err(CKR_ATTRIBUTE_SENSITIVE));
}

#[test]
fn strict_separation_refuses_both_roles_on_one_key() {
    let _env = setup_with(None, "key_separation = \"strict\"\n");
    let h = token_session();
    assert_eq!(pykcs11_rsa(h), Err(CKR_TEMPLATE_INCONSISTENT));
    assert_eq!(
        create(h, &aes_template(&[1; 32], &all_four())),
        Err(CKR_TEMPLATE_INCONSISTENT)
    );
    assert_eq!(aes_generate(h, &all_four()), Err(CKR_TEMPLATE_INCONSISTENT));
    for (a, b) in [(CKA_WRAP, CKA_DECRYPT), (CKA_UNWRAP, CKA_ENCRYPT)] {
        assert_eq!(
            create(
                h,
                &aes_template(&[1; 32], &[(a, Val::Bool(true)), (b, Val::Bool(true))])
            ),
            Err(CKR_TEMPLATE_INCONSISTENT)
        );
    }
    // Asking for one role only: the conflicting default yields.
    let w = create(h, &aes_template(&[1; 32], &[(CKA_WRAP, Val::Bool(true))])).unwrap();
    assert_eq!(attribute(h, w, CKA_DECRYPT).unwrap(), vec![0]);
    assert_eq!(
        set_attributes(h, w, &[(CKA_DECRYPT, Val::Bool(true))]),
        CKR_ATTRIBUTE_READ_ONLY
    );
    let d = create(
        h,
        &aes_template(&[2; 32], &[(CKA_DECRYPT, Val::Bool(true))]),
    )
    .unwrap();
    assert_eq!(
        set_attributes(h, d, &[(CKA_WRAP, Val::Bool(true))]),
        CKR_ATTRIBUTE_READ_ONLY
    );
    let mut c = 0;
    let mut t = Template::new(&[(CKA_WRAP, Val::Bool(true))]);
    let (p, n) = t.raw();
    // SAFETY: a valid template.
    assert_eq!(
        // SAFETY: the template and handle pointers are live locals of the right lengths.
        unsafe { C_CopyObject(h, d, p, n, &mut c) },
        CKR_ATTRIBUTE_READ_ONLY
    );
    // Clulow's first sequence fails at its first step: W cannot decrypt.
    let k = create(
        h,
        &aes_template(&[3; 32], &[(CKA_EXTRACTABLE, Val::Bool(true))]),
    )
    .unwrap();
    let blob = wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP), w, k).unwrap();
    assert_eq!(
        crypt_once(h, &mut Mech::plain(CKM_AES_ECB), w, &blob[..32], false),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
}
