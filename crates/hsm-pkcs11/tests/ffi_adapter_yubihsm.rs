//! A FerroHSM slot over a YubiHSM 2 — the `yubihsm` crate's MockHsm, which keeps its keys
//! in memory, so each test makes and uses its keys in one run of the module. Through the
//! C ABI: P-256 and Ed25519 pairs made in the device, signatures checked by RustCrypto
//! (P-256) and by the module's own verification (aws-lc-rs, which shares no code with the
//! mock's ed25519-dalek), the reference naming the device; what the adapter does not offer
//! (RSA) is refused, and a connector nobody answers on leaves the slot without a token.
#![allow(unsafe_code)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

/// The `CKA_EC_PARAMS` of Ed25519 (the OID 1.3.101.112).
const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn slot_table(connector: &str) -> String {
    format!(
        "[[slots]]\ntoken = 1\nadapter = \"yubihsm\"\nconnector = {connector:?}\n{}",
        if connector == "mockhsm" {
            ""
        } else {
            "password_env = \"FERROHSM_TEST_YUBIHSM_PASSWORD\"\n"
        }
    )
}

fn pair(
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    params: &[u8],
    label: &str,
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
    generate_pair(
        h,
        mech,
        &[
            (CKA_EC_PARAMS, Val::Bytes(params.to_vec())),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(label.into())),
        ],
        &[
            (CKA_SIGN, Val::Bool(true)),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(label.into())),
        ],
    )
}

#[test]
fn pairs_are_made_and_sign_in_the_yubihsm() {
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    let _env = setup_with_tables(dir.path(), &slot_table("mockhsm"));
    let h = user_session();
    let msg = b"signed in a YubiHSM through FerroHSM";

    let (ec_pub, ec_priv) = pair(h, CKM_EC_KEY_PAIR_GEN, P256, "yh-ec").expect("a P-256 pair");
    for mech in [CKM_ECDSA_SHA256, CKM_ECDSA_SHA384] {
        let sig = sign(h, mech, ec_priv, msg).unwrap();
        assert_eq!(sig.len(), 64, "r || s");
        assert_eq!(verify(h, mech, ec_pub, msg, &sig), Ok(()));
        if mech == CKM_ECDSA_SHA256 {
            use p256::ecdsa::signature::Verifier as _;
            let der = attribute(h, ec_pub, CKA_EC_POINT).unwrap();
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&der[2..]).unwrap();
            vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
                .expect("RustCrypto accepts the YubiHSM's signature");
        }
    }
    let reference = attribute(h, ec_priv, 0x8F45_0006).expect("CKA_FERRO_DEVICE_KEY");
    assert!(reference.starts_with(b"\x01\x07yubihsm"), "{reference:?}");
    assert_eq!(
        attribute(h, ec_priv, CKA_VALUE),
        Err(CKR_ATTRIBUTE_SENSITIVE)
    );
    assert_eq!(attribute(h, ec_priv, CKA_NEVER_EXTRACTABLE), Ok(vec![1]));

    let (ed_pub, ed_priv) =
        pair(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, ED25519, "yh-ed").expect("an Ed25519 pair");
    let sig = sign(h, CKM_EDDSA, ed_priv, msg).unwrap();
    assert_eq!(verify(h, CKM_EDDSA, ed_pub, msg, &sig), Ok(()));
    let mut forged = sig.clone();
    forged[10] ^= 1;
    assert_eq!(
        verify(h, CKM_EDDSA, ed_pub, msg, &forged),
        Err(CKR_SIGNATURE_INVALID)
    );

    // Destroyed (the adapter's own test checks the device no longer has it).
    assert_eq!(C_DestroyObject(h, ed_priv), CKR_OK);
    assert!(find_by_label(h, CKO_PRIVATE_KEY, "yh-ed").is_empty());
    assert_eq!(find_by_label(h, CKO_PRIVATE_KEY, "yh-ec").len(), 1);
}

#[test]
fn what_the_yubihsm_adapter_does_not_offer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    let _env = setup_with_tables(dir.path(), &slot_table("mockhsm"));
    let h = user_session();
    let rsa = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[
            (CKA_MODULUS_BITS, Val::Ulong(2048)),
            (CKA_TOKEN, Val::Bool(true)),
        ],
        &[(CKA_SIGN, Val::Bool(true)), (CKA_TOKEN, Val::Bool(true))],
    );
    assert_eq!(rsa.err(), Some(CKR_MECHANISM_INVALID));
    let mut count: CK_ULONG = 0;
    // SAFETY: a count query, then a buffer of that count.
    let list = unsafe {
        assert_eq!(C_GetMechanismList(1, null_mut(), &mut count), CKR_OK);
        let mut v = vec![0; count as usize];
        assert_eq!(C_GetMechanismList(1, v.as_mut_ptr(), &mut count), CKR_OK);
        v
    };
    assert!(list.contains(&CKM_EC_KEY_PAIR_GEN) && list.contains(&CKM_EDDSA));
    assert!(!list.contains(&CKM_RSA_PKCS_KEY_PAIR_GEN), "{list:x?}");
    assert!(
        !list.contains(&CKM_AES_GCM),
        "no secret keys in a device slot yet"
    );
}

#[test]
fn a_connector_nobody_answers_on_leaves_the_slot_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // SAFETY: read by the adapter inside C_Initialize below; no other thread reads it.
    unsafe { std::env::set_var("FERROHSM_TEST_YUBIHSM_PASSWORD", "password") };
    let _env = setup_with_tables(dir.path(), &slot_table(&format!("http://127.0.0.1:{port}")));
    // SAFETY: CK_SLOT_INFO is a plain C struct of bytes and integers: zeros are valid.
    let mut info: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: valid outputs.
    unsafe {
        assert_eq!(C_GetSlotInfo(1, &mut info), CKR_OK);
        assert_eq!(info.flags & CKF_TOKEN_PRESENT, 0);
        let mut h = 0;
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, &mut h),
            CKR_TOKEN_NOT_PRESENT
        );
    }
}
