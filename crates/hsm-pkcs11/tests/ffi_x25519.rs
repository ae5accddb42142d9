//! X25519 (`CKK_EC_MONTGOMERY`, RFC 7748): key pairs, `CKM_ECDH1_DERIVE` with the null and
//! X9.63 KDFs, the RFC's own vector through an imported key, and the refusals.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;

const X25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];

fn pair(h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    generate_pair(
        h,
        CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(X25519.to_vec()))],
        &[],
    )
    .unwrap()
}

/// `C_DeriveKey` with `CKM_ECDH1_DERIVE`: a non-sensitive generic secret of `len` bytes.
fn agree(
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    peer: &[u8],
    kdf: CK_EC_KDF_TYPE,
    len: CK_ULONG,
) -> Result<Vec<u8>, CK_RV> {
    let mut peer = peer.to_vec();
    let mut m = Mech::with(
        CKM_ECDH1_DERIVE,
        &CK_ECDH1_DERIVE_PARAMS {
            kdf,
            ulSharedDataLen: 0,
            pSharedData: std::ptr::null_mut(),
            ulPublicDataLen: peer.len() as _,
            pPublicData: peer.as_mut_ptr(),
        },
    );
    let mut raw = m.raw();
    let mut t = Template::new(&[
        (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
        (CKA_KEY_TYPE, Val::Ulong(CKK_GENERIC_SECRET)),
        (CKA_VALUE_LEN, Val::Ulong(len)),
        (CKA_SENSITIVE, Val::Bool(false)),
        (CKA_EXTRACTABLE, Val::Bool(true)),
    ]);
    let (tp, tn) = t.raw();
    let mut out = 0;
    // SAFETY: valid mechanism (peer lives until the call returns), template and output.
    let rv = unsafe { C_DeriveKey(h, &mut raw, private, tp, tn, &mut out) };
    rv_result(rv, out).map(|k| attribute(h, k, CKA_VALUE).unwrap())
}

#[test]
fn x25519_pairs_agree_and_match_rfc7748() {
    let _env = setup();
    let h = token_session();
    let (a_pub, a_priv) = pair(h);
    let (b_pub, b_priv) = pair(h);
    let a_point = attribute(h, a_pub, CKA_EC_POINT).unwrap();
    let b_point = attribute(h, b_pub, CKA_EC_POINT).unwrap();
    assert_eq!(a_point.len(), 34, "a DER OCTET STRING of 32 bytes");
    for kdf in [CKD_NULL, CKD_SHA256_KDF] {
        let ab = agree(h, a_priv, &b_point, kdf, 32).unwrap();
        let ba = agree(h, b_priv, &a_point[2..], kdf, 32).unwrap();
        assert_eq!(
            ab, ba,
            "both sides agree (kdf {kdf}), raw or DER public data"
        );
    }
    // An X25519 private key derives by default and never signs.
    assert_eq!(attribute(h, a_priv, CKA_DERIVE).unwrap(), [1]);
    assert_eq!(attribute(h, a_priv, CKA_SIGN).unwrap(), [0]);
    assert_eq!(attribute(h, a_pub, CKA_VERIFY).unwrap(), [0]);
    assert_eq!(
        sign(h, CKM_EDDSA, a_priv, b"no"),
        Err(CKR_KEY_TYPE_INCONSISTENT),
        "an X25519 key is no Ed25519 key"
    );

    // RFC 7748 §6.1: Alice's key imported, Bob's public value as the peer.
    let alice = create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_PRIVATE_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_EC_MONTGOMERY)),
            (CKA_EC_PARAMS, Val::Bytes(X25519.to_vec())),
            (
                CKA_VALUE,
                Val::Bytes(hexv(
                    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
                )),
            ),
            (CKA_DERIVE, Val::Bool(true)),
        ],
    )
    .unwrap();
    let bob_public = hexv("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    assert_eq!(
        agree(h, alice, &bob_public, CKD_NULL, 32).unwrap(),
        hexv("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    );

    // The private key leaves as RFC 8410 PKCS#8 under AES key wrap and comes back working.
    let kek = create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_AES)),
            (CKA_VALUE, Val::Bytes(vec![7; 32])),
            (CKA_WRAP, Val::Bool(true)),
            (CKA_UNWRAP, Val::Bool(true)),
        ],
    )
    .unwrap();
    let (_, movable) = generate_pair(
        h,
        CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(X25519.to_vec()))],
        &[(CKA_EXTRACTABLE, Val::Bool(true))],
    )
    .unwrap();
    let kwp = || Mech::plain(CKM_AES_KEY_WRAP_KWP);
    let blob = wrap_with(h, &mut kwp(), kek, movable).unwrap();
    let back = unwrap_with(
        h,
        &mut kwp(),
        kek,
        &blob,
        &[
            (CKA_CLASS, Val::Ulong(CKO_PRIVATE_KEY)),
            (CKA_DERIVE, Val::Bool(true)),
        ],
    )
    .unwrap();
    assert_eq!(
        attribute(h, back, CKA_KEY_TYPE).unwrap(),
        CKK_EC_MONTGOMERY.to_ne_bytes()
    );
    assert_eq!(
        agree(h, back, &b_point, CKD_NULL, 32).unwrap(),
        agree(h, movable, &b_point, CKD_NULL, 32).unwrap(),
        "the unwrapped key is the same key"
    );

    // A low-order peer value, a P-256 point, and a short value are refused.
    let p256_point = [&[0x04u8][..], &[7u8; 64]].concat();
    for bad in [&[0u8; 32][..], &p256_point, &[9u8; 31]] {
        assert_eq!(
            agree(h, alice, bad, CKD_NULL, 32),
            Err(CKR_MECHANISM_PARAM_INVALID),
            "{} bytes",
            bad.len()
        );
    }
    // X25519 key material that is not 32 bytes is refused at import.
    assert_eq!(
        create(
            h,
            &[
                (CKA_CLASS, Val::Ulong(CKO_PRIVATE_KEY)),
                (CKA_KEY_TYPE, Val::Ulong(CKK_EC_MONTGOMERY)),
                (CKA_EC_PARAMS, Val::Bytes(X25519.to_vec())),
                (CKA_VALUE, Val::Bytes(vec![1; 31])),
            ],
        ),
        Err(CKR_ATTRIBUTE_VALUE_INVALID)
    );
}
