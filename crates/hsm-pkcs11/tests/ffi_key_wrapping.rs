//! Keys leaving and entering the token: RSA-OAEP and PKCS#1 v1.5 wrapping of secret keys,
//! private keys as PKCS#8 under AES key wrap with padding, and the rule that a key never
//! leaves under a weaker one. What the token wraps is opened by independent code
//! (RustCrypto `rsa`, `aes-kw`, `p256`, `p384`); what they wrap, the token opens and uses.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use aes_kw::KeyInit as _;
use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use rsa::pkcs8::DecodePrivateKey as _;

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn b(t: CK_ATTRIBUTE_TYPE, v: bool) -> (CK_ATTRIBUTE_TYPE, Val) {
    (t, Val::Bool(v))
}
fn u(t: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> (CK_ATTRIBUTE_TYPE, Val) {
    (t, Val::Ulong(v))
}
fn bytes(t: CK_ATTRIBUTE_TYPE, v: &[u8]) -> (CK_ATTRIBUTE_TYPE, Val) {
    (t, Val::Bytes(v.to_vec()))
}

/// A secret key whose value the test knows and may read back.
fn known_secret(h: CK_SESSION_HANDLE, key_type: CK_ULONG, value: &[u8]) -> CK_OBJECT_HANDLE {
    create(
        h,
        &[
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, key_type),
            bytes(CKA_VALUE, value),
            b(CKA_SENSITIVE, false),
            b(CKA_EXTRACTABLE, true),
        ],
    )
    .unwrap()
}

/// An AES key-encryption key of the given value, for wrapping and unwrapping only.
fn kek(h: CK_SESSION_HANDLE, value: &[u8]) -> CK_OBJECT_HANDLE {
    create(
        h,
        &[
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            bytes(CKA_VALUE, value),
            b(CKA_WRAP, true),
            b(CKA_UNWRAP, true),
        ],
    )
    .unwrap()
}

/// The RSA key an outside party holds: generated here, its public half imported as a
/// wrapping key (and its private half as an unwrapping key), its private half also given
/// to RustCrypto to open what the token wraps.
fn outside_rsa(
    h: CK_SESSION_HANDLE,
    bits: u32,
) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, rsa::PrivateKey) {
    use hsm_core::crypto::{PrivateKey, generate_rsa, private_key_to_pkcs8};
    let parts = generate_rsa(bits, None).unwrap();
    let public = create(
        h,
        &[
            u(CKA_CLASS, CKO_PUBLIC_KEY),
            u(CKA_KEY_TYPE, CKK_RSA),
            bytes(CKA_MODULUS, &parts.modulus),
            bytes(CKA_PUBLIC_EXPONENT, &parts.public_exponent),
            b(CKA_WRAP, true),
            b(CKA_ENCRYPT, false),
        ],
    )
    .unwrap();
    let private = create(
        h,
        &[
            u(CKA_CLASS, CKO_PRIVATE_KEY),
            u(CKA_KEY_TYPE, CKK_RSA),
            bytes(CKA_MODULUS, &parts.modulus),
            bytes(CKA_PUBLIC_EXPONENT, &parts.public_exponent),
            bytes(CKA_PRIVATE_EXPONENT, parts.private_exponent.expose()),
            bytes(CKA_PRIME_1, parts.prime_1.expose()),
            bytes(CKA_PRIME_2, parts.prime_2.expose()),
            bytes(CKA_EXPONENT_1, parts.exponent_1.expose()),
            bytes(CKA_EXPONENT_2, parts.exponent_2.expose()),
            bytes(CKA_COEFFICIENT, parts.coefficient.expose()),
            b(CKA_UNWRAP, true),
            b(CKA_DECRYPT, false),
            b(CKA_SIGN, false),
        ],
    )
    .unwrap();
    let der = private_key_to_pkcs8(&PrivateKey::Rsa(parts)).unwrap();
    (
        public,
        private,
        rsa::PrivateKey::from_pkcs8_der(&der).expect("RustCrypto reads the key"),
    )
}

/// `CK_RSA_PKCS_OAEP_PARAMS` with the hash as its own MGF1 hash; `label` must outlive the
/// mechanism.
fn oaep(hash: CK_MECHANISM_TYPE, mgf: CK_ULONG, label: &mut [u8]) -> Mech {
    let params = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: hash,
        mgf,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: if label.is_empty() {
            std::ptr::null_mut()
        } else {
            label.as_mut_ptr() as *mut _
        },
        ulSourceDataLen: label.len() as _,
    };
    Mech::with(CKM_RSA_PKCS_OAEP, &params)
}

fn secret_template(key_type: CK_ULONG) -> Vec<(CK_ATTRIBUTE_TYPE, Val)> {
    vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, key_type),
        b(CKA_SENSITIVE, false),
        b(CKA_EXTRACTABLE, true),
        b(CKA_ENCRYPT, true),
    ]
}

fn mechanism_flags(m: CK_MECHANISM_TYPE) -> CK_FLAGS {
    let mut info = CK_MECHANISM_INFO {
        ulMinKeySize: 0,
        ulMaxKeySize: 0,
        flags: 0,
    };
    // SAFETY: a valid output.
    assert_eq!(unsafe { C_GetMechanismInfo(1, m, &mut info) }, CKR_OK);
    info.flags
}

#[test]
fn rsa_wraps_secret_keys_that_are_no_stronger_than_itself() {
    let _env = setup();
    let h = token_session();
    assert_eq!(
        mechanism_flags(CKM_RSA_PKCS_OAEP) & (CKF_WRAP | CKF_UNWRAP),
        CKF_WRAP | CKF_UNWRAP
    );
    assert_eq!(
        mechanism_flags(CKM_RSA_PKCS) & (CKF_WRAP | CKF_UNWRAP),
        CKF_WRAP,
        "v1.5 unwrap is off by default"
    );
    let (public, private, oracle) = outside_rsa(h, 3072);
    let aes128 = [0x11u8; 16];
    let k128 = known_secret(h, CKK_AES, &aes128);

    // OAEP with SHA-256 and a label: RustCrypto opens the blob; the token opens it too.
    let mut label = *b"ferrohsm wrap";
    let blob = wrap_with(
        h,
        &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut label),
        public,
        k128,
    )
    .unwrap();
    assert_eq!(blob.len(), 384);
    let opened = oracle
        .decrypt(
            rsa::Oaep::<sha2::Sha256>::new_with_label(label.to_vec()),
            &blob,
        )
        .expect("RustCrypto opens the OAEP blob");
    assert_eq!(opened, aes128);
    let back = unwrap_with(
        h,
        &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut label),
        private,
        &blob,
        &secret_template(CKK_AES),
    )
    .unwrap();
    assert_eq!(attribute(h, back, CKA_VALUE).unwrap(), aes128);
    assert_eq!(attribute(h, back, CKA_LOCAL).unwrap(), [0]);

    // SHA-384 with SHA-384 MGF1 and no label.
    let blob = wrap_with(
        h,
        &mut oaep(CKM_SHA384, CKG_MGF1_SHA384, &mut []),
        public,
        k128,
    )
    .unwrap();
    let opened = oracle
        .decrypt(rsa::Oaep::<sha2::Sha384>::new(), &blob)
        .expect("RustCrypto opens the SHA-384 OAEP blob");
    assert_eq!(opened, aes128);

    // PKCS#1 v1.5 wrapping (encryption) works; its unwrap is off by default.
    let blob = wrap_with(h, &mut Mech::plain(CKM_RSA_PKCS), public, k128).unwrap();
    assert_eq!(oracle.decrypt(rsa::Pkcs1v15Encrypt, &blob).unwrap(), aes128);
    assert_eq!(
        unwrap_with(
            h,
            &mut Mech::plain(CKM_RSA_PKCS),
            private,
            &blob,
            &secret_template(CKK_AES)
        ),
        Err(CKR_MECHANISM_INVALID)
    );

    // RSA-3072 is 128-bit strong (SP 800-57): AES-256 and a 32-byte HMAC key stay in.
    let k256 = known_secret(h, CKK_AES, &[0x22; 32]);
    let hmac = known_secret(h, CKK_GENERIC_SECRET, &[0x33; 32]);
    for k in [k256, hmac] {
        assert_eq!(
            wrap_with(
                h,
                &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut []),
                public,
                k
            ),
            Err(CKR_KEY_NOT_WRAPPABLE)
        );
    }
    // RSA-2048 is 112-bit strong: not even AES-128 leaves under it.
    let (public_2048, _, _) = outside_rsa(h, 2048);
    assert_eq!(
        wrap_with(
            h,
            &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut []),
            public_2048,
            k128
        ),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );

    // The wrong half, a private key to wrap, and a key that is not extractable.
    assert_eq!(
        wrap_with(
            h,
            &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut []),
            private,
            k128
        ),
        Err(CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
    );
    let (_, ec_private) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[bytes(CKA_EC_PARAMS, P256)],
        &[b(CKA_SIGN, true), b(CKA_EXTRACTABLE, true)],
    )
    .unwrap();
    assert_eq!(
        wrap_with(
            h,
            &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut []),
            public,
            ec_private
        ),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );
    let sealed = create(
        h,
        &[
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            bytes(CKA_VALUE, &aes128),
            b(CKA_EXTRACTABLE, false),
        ],
    )
    .unwrap();
    assert_eq!(
        wrap_with(
            h,
            &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut []),
            public,
            sealed
        ),
        Err(CKR_KEY_UNEXTRACTABLE)
    );
    // OAEP does not bring private keys in.
    let mut private_template = vec![u(CKA_CLASS, CKO_PRIVATE_KEY), b(CKA_SIGN, true)];
    private_template.push(u(CKA_KEY_TYPE, CKK_EC));
    assert_eq!(
        unwrap_with(
            h,
            &mut oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut []),
            private,
            &[0u8; 384],
            &private_template
        ),
        Err(CKR_TEMPLATE_INCONSISTENT)
    );
}

#[test]
fn configuration_allows_weaker_wrapping_keys_and_v15_unwrap() {
    let _env = setup_with(
        None,
        "allow_weaker_wrapping_key = true\nallow_rsa_pkcs1_v15_decrypt = true\n",
    );
    let h = token_session();
    assert_eq!(
        mechanism_flags(CKM_RSA_PKCS) & (CKF_WRAP | CKF_UNWRAP),
        CKF_WRAP | CKF_UNWRAP
    );
    // What the cryptoki crate's own test does: AES-256 under a generated RSA-2048 pair.
    let (public, private) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[u(CKA_MODULUS_BITS, 2048), b(CKA_WRAP, true)],
        &[b(CKA_UNWRAP, true)],
    )
    .unwrap();
    let value = [0x44u8; 32];
    let k = known_secret(h, CKK_AES, &value);
    for mut m in [
        oaep(CKM_SHA256, CKG_MGF1_SHA256, &mut []),
        Mech::plain(CKM_RSA_PKCS),
    ] {
        let blob = wrap_with(h, &mut m, public, k).unwrap();
        let back = unwrap_with(h, &mut m, private, &blob, &secret_template(CKK_AES)).unwrap();
        assert_eq!(attribute(h, back, CKA_VALUE).unwrap(), value);
    }
}

#[test]
fn a_generated_pair_wraps_with_one_half_and_decrypts_with_the_other_only_when_asked() {
    let _env = setup();
    let h = token_session();
    // CKA_DECRYPT defaults to TRUE on an RSA private key; a wrapping public half wins.
    let (_, private) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[u(CKA_MODULUS_BITS, 2048), b(CKA_WRAP, true)],
        &[b(CKA_UNWRAP, true)],
    )
    .unwrap();
    assert_eq!(attribute(h, private, CKA_DECRYPT).unwrap(), [0]);
    // Asked for both (PyKCS11's template), the pair has both under the standard rule.
    let (_, both) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[u(CKA_MODULUS_BITS, 2048), b(CKA_WRAP, true)],
        &[b(CKA_DECRYPT, true)],
    )
    .unwrap();
    assert_eq!(attribute(h, both, CKA_DECRYPT).unwrap(), [1]);
    // Without a wrapping public half, the default stands.
    let (_, plain) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[u(CKA_MODULUS_BITS, 2048)],
        &[b(CKA_SIGN, true)],
    )
    .unwrap();
    assert_eq!(attribute(h, plain, CKA_DECRYPT).unwrap(), [1]);
}

#[test]
fn strict_separation_refuses_a_pair_that_wraps_with_one_half_and_decrypts_with_the_other() {
    let _env = setup_with(None, "key_separation = \"strict\"\n");
    let h = token_session();
    assert_eq!(
        generate_pair(
            h,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &[u(CKA_MODULUS_BITS, 2048), b(CKA_WRAP, true)],
            &[b(CKA_DECRYPT, true)],
        ),
        Err(CKR_TEMPLATE_INCONSISTENT)
    );
    let (_, private) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[u(CKA_MODULUS_BITS, 2048), b(CKA_WRAP, true)],
        &[b(CKA_UNWRAP, true)],
    )
    .unwrap();
    assert_eq!(attribute(h, private, CKA_DECRYPT).unwrap(), [0]);
}

/// A private key pair to move: (public, private, signing mechanism).
fn movable_pair(
    h: CK_SESSION_HANDLE,
    kind: &str,
) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, CK_MECHANISM_TYPE) {
    let private = [b(CKA_SIGN, true), b(CKA_EXTRACTABLE, true)];
    let (mechanism, public, sign) = match kind {
        "rsa" => (
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![u(CKA_MODULUS_BITS, 2048)],
            CKM_SHA256_RSA_PKCS,
        ),
        "p256" => (
            CKM_EC_KEY_PAIR_GEN,
            vec![bytes(CKA_EC_PARAMS, P256)],
            CKM_ECDSA_SHA256,
        ),
        "p384" => (
            CKM_EC_KEY_PAIR_GEN,
            vec![bytes(CKA_EC_PARAMS, P384)],
            CKM_ECDSA_SHA384,
        ),
        "p521" => (
            CKM_EC_KEY_PAIR_GEN,
            vec![bytes(CKA_EC_PARAMS, P521)],
            CKM_ECDSA_SHA512,
        ),
        _ => (
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            vec![bytes(CKA_EC_PARAMS, ED25519)],
            CKM_EDDSA,
        ),
    };
    let (p, s) = generate_pair(h, mechanism, &public, &private).unwrap();
    (p, s, sign)
}

fn kwp() -> Mech {
    Mech::plain(CKM_AES_KEY_WRAP_KWP)
}

fn open_kwp(kek: &[u8; 32], blob: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; blob.len()];
    aes_kw::KwpAes256::new_from_slice(kek)
        .unwrap()
        .unwrap_key(blob, &mut buf)
        .expect("aes-kw opens the blob")
        .to_vec()
}

#[test]
fn private_keys_leave_as_pkcs8_and_come_back_usable() {
    let _env = setup();
    let h = token_session();
    let kek_value = [0x5au8; 32];
    let w = kek(h, &kek_value);
    for kind in ["rsa", "p256", "p384", "p521", "ed25519"] {
        let (public, private, sign_mech) = movable_pair(h, kind);
        let blob = wrap_with(h, &mut kwp(), w, private).unwrap();
        let der = open_kwp(&kek_value, &blob);
        // An independent reader finds the same key inside.
        match kind {
            "rsa" => {
                let key = rsa::PrivateKey::from_pkcs8_der(&der).expect("PKCS#8 RSA");
                let n = attribute(h, public, CKA_MODULUS).unwrap();
                assert_eq!(
                    rsa::traits::PublicKeyParts::n_bytes(&key).as_ref(),
                    n.as_slice()
                );
            }
            "p256" => {
                let key = p256::SecretKey::from_pkcs8_der(&der).expect("PKCS#8 P-256");
                let point = attribute(h, public, CKA_EC_POINT).unwrap();
                assert_eq!(&point[2..], key.public_key().to_sec1_bytes().as_ref());
            }
            "p384" => {
                let key = p384::SecretKey::from_pkcs8_der(&der).expect("PKCS#8 P-384");
                let point = attribute(h, public, CKA_EC_POINT).unwrap();
                assert_eq!(&point[2..], key.public_key().to_sec1_bytes().as_ref());
            }
            _ => assert_eq!(der[0], 0x30, "{kind}: a DER SEQUENCE"),
        }
        // Back in (without CKA_KEY_TYPE: the blob says what it is), it signs for the old
        // public key.
        let back = unwrap_with(
            h,
            &mut kwp(),
            w,
            &blob,
            &[u(CKA_CLASS, CKO_PRIVATE_KEY), b(CKA_SIGN, true)],
        )
        .unwrap_or_else(|rv| panic!("{kind}: unwrap gave {rv:#x}"));
        let signature = sign(h, sign_mech, back, b"moved key").unwrap();
        assert_eq!(
            verify(h, sign_mech, public, b"moved key", &signature),
            Ok(()),
            "{kind}"
        );
        let expected_type = match kind {
            "rsa" => CKK_RSA,
            "ed25519" => CKK_EC_EDWARDS,
            _ => CKK_EC,
        };
        assert_eq!(
            attribute(h, back, CKA_KEY_TYPE).unwrap(),
            expected_type.to_ne_bytes()
        );
        // Imported: not local, not always sensitive, not never extractable; sensitive by
        // default, so its secret parts stay unreadable.
        for a in [CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE] {
            assert_eq!(attribute(h, back, a).unwrap(), [0], "{kind} {a:#x}");
        }
        let secret_part = if kind == "rsa" {
            CKA_PRIVATE_EXPONENT
        } else {
            CKA_VALUE
        };
        assert_eq!(
            attribute(h, back, secret_part),
            Err(CKR_ATTRIBUTE_SENSITIVE)
        );
    }
}

#[test]
fn a_private_key_wrapped_elsewhere_signs_here() {
    use p256::ecdsa::signature::Verifier as _;
    let _env = setup();
    let h = token_session();
    let kek_value = [0x6bu8; 32];
    let w = kek(h, &kek_value);
    let outside = p256::SecretKey::from_slice(&[0x17; 32]).unwrap();
    let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&outside).unwrap();
    let mut buf = vec![0u8; der.as_bytes().len() + 16];
    let blob = aes_kw::KwpAes256::new_from_slice(&kek_value)
        .unwrap()
        .wrap_key(der.as_bytes(), &mut buf)
        .unwrap()
        .to_vec();
    let k = unwrap_with(
        h,
        &mut kwp(),
        w,
        &blob,
        &[
            u(CKA_CLASS, CKO_PRIVATE_KEY),
            u(CKA_KEY_TYPE, CKK_EC),
            bytes(CKA_EC_PARAMS, P256),
            b(CKA_SIGN, true),
        ],
    )
    .unwrap();
    let signature = sign(h, CKM_ECDSA_SHA256, k, b"signed inside").unwrap();
    p256::ecdsa::VerifyingKey::from(outside.public_key())
        .verify(
            b"signed inside",
            &p256::ecdsa::Signature::from_slice(&signature).unwrap(),
        )
        .expect("the outside public key verifies the token's signature");

    // What the blob holds decides; a template naming something else is refused.
    let private = |extra: Vec<(CK_ATTRIBUTE_TYPE, Val)>| {
        let mut t = vec![u(CKA_CLASS, CKO_PRIVATE_KEY), b(CKA_SIGN, true)];
        t.extend(extra);
        t
    };
    for extra in [
        vec![u(CKA_KEY_TYPE, CKK_RSA)],
        vec![u(CKA_KEY_TYPE, CKK_EC), bytes(CKA_EC_PARAMS, P384)],
        vec![bytes(CKA_VALUE, &[0x17; 32])],
    ] {
        assert_eq!(
            unwrap_with(h, &mut kwp(), w, &blob, &private(extra.clone())),
            Err(CKR_TEMPLATE_INCONSISTENT),
            "{extra:?}"
        );
    }
    // A blob that opens but holds no PKCS#8 key, and a damaged blob.
    let mut buf = vec![0u8; 64];
    let not_a_key = aes_kw::KwpAes256::new_from_slice(&kek_value)
        .unwrap()
        .wrap_key(&[0x30; 40], &mut buf)
        .unwrap()
        .to_vec();
    assert_eq!(
        unwrap_with(h, &mut kwp(), w, &not_a_key, &private(vec![])),
        Err(CKR_WRAPPED_KEY_INVALID)
    );
    let mut damaged = blob.clone();
    damaged[5] ^= 0x01;
    assert_eq!(
        unwrap_with(h, &mut kwp(), w, &damaged, &private(vec![])),
        Err(CKR_WRAPPED_KEY_INVALID)
    );
}

#[test]
fn private_keys_do_not_leave_under_weaker_or_wrong_keys() {
    let _env = setup();
    let h = token_session();
    let aes128 = kek(h, &[0x01; 16]);
    let aes256 = kek(h, &[0x02; 32]);
    // P-384 is 192-bit strong, P-521 256-bit: AES-128 wraps neither; AES-256 wraps both.
    for kind in ["p384", "p521"] {
        let (_, private, _) = movable_pair(h, kind);
        assert_eq!(
            wrap_with(h, &mut kwp(), aes128, private),
            Err(CKR_KEY_NOT_WRAPPABLE),
            "{kind}"
        );
        assert!(wrap_with(h, &mut kwp(), aes256, private).is_ok(), "{kind}");
    }
    // RSA-2048 (112) and P-256 (128) leave under AES-128.
    for kind in ["rsa", "p256", "ed25519"] {
        let (_, private, _) = movable_pair(h, kind);
        assert!(wrap_with(h, &mut kwp(), aes128, private).is_ok(), "{kind}");
    }
    // A private key generated without CKA_EXTRACTABLE stays in.
    let (_, sealed) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[bytes(CKA_EC_PARAMS, P256)],
        &[b(CKA_SIGN, true)],
    )
    .unwrap();
    assert_eq!(
        wrap_with(h, &mut kwp(), aes256, sealed),
        Err(CKR_KEY_UNEXTRACTABLE)
    );
}
