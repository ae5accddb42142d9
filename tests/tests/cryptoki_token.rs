//! The shipped module through the `cryptoki` crate: a token's whole life — init, PINs,
//! key generation, signing checked by an independent implementation (RustCrypto), search,
//! persistence across processes — and the login and attribute semantics of
//! ROBUSTNESS.md. Each scenario runs in its own process (PKCS#11 state is global).

use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use ferrohsm_tests::p11::{P256, SO_PIN, USER_PIN, ec_point, init, pin, rv};
use ferrohsm_tests::{TestEnv, is_child, run_child};

/// Initialises the first token with both PINs and returns its slot.
fn fresh_token(p: &Pkcs11) -> Slot {
    let slots = p.get_slots_with_token().unwrap();
    let slot = slots[0];
    assert!(
        !p.get_token_info(slot).unwrap().token_initialized(),
        "a new store starts with an uninitialised token"
    );
    p.init_token(slot, &pin(SO_PIN), "cryptoki-test").unwrap();
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    s.init_pin(&pin(USER_PIN)).unwrap();
    s.logout().unwrap();
    slot
}

fn user_session(p: &Pkcs11, slot: Slot) -> Session {
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    s
}

fn oracle_verify_p256(point: &[u8], msg: &[u8], sig: &[u8]) {
    use p256::ecdsa::signature::Verifier;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).expect("valid P-256 point");
    let sig = p256::ecdsa::Signature::from_slice(sig).expect("r||s signature");
    vk.verify(msg, &sig)
        .expect("RustCrypto verifies FerroHSM's ECDSA signature");
}

fn find_one(s: &Session, template: &[Attribute]) -> ObjectHandle {
    let found = s.find_objects(template).unwrap();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one object for {template:?}"
    );
    found[0]
}

// ------------------------------------------------------------------ lifecycle

#[test]
fn token_lifecycle_and_persistence_across_processes() {
    let env = TestEnv::new();
    run_child("child_make_keys", &[("FERROHSM_CONF", &env.config)]);
    run_child(
        "child_use_keys_in_new_process",
        &[("FERROHSM_CONF", &env.config)],
    );
}

#[test]
fn child_make_keys() {
    if !is_child("child_make_keys") {
        return;
    }
    let p = init();
    let slot = fresh_token(&p);
    let info = p.get_token_info(slot).unwrap();
    assert!(info.token_initialized() && info.user_pin_initialized() && info.login_required());
    assert_eq!(info.label(), "cryptoki-test");
    let s = user_session(&p, slot);

    let (ec_pub, ec_priv) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256.to_vec()),
                Attribute::Label(b"persist-ec".to_vec()),
                Attribute::Id(vec![1]),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Label(b"persist-ec".to_vec()),
                Attribute::Id(vec![1]),
                Attribute::Sign(true),
            ],
        )
        .unwrap();
    let msg = b"signed in the first process";
    let sig = s.sign(&Mechanism::EcdsaSha256, ec_priv, msg).unwrap();
    assert_eq!(sig.len(), 64);
    s.verify(&Mechanism::EcdsaSha256, ec_pub, msg, &sig)
        .unwrap();
    oracle_verify_p256(&ec_point(&s, ec_pub), msg, &sig);
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert_eq!(
        rv(s.verify(&Mechanism::EcdsaSha256, ec_pub, msg, &bad)),
        RvError::SignatureInvalid
    );

    // Key material of a sensitive private key never comes out (the crate drops entries
    // the token marks unavailable; the raw CKR is checked by the Python tests).
    assert!(
        s.get_attributes(ec_priv, &[AttributeType::Value])
            .unwrap()
            .is_empty()
    );
    let attrs = s
        .get_attributes(
            ec_priv,
            &[
                AttributeType::Local,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
            ],
        )
        .unwrap();
    assert_eq!(
        attrs,
        vec![
            Attribute::Local(true),
            Attribute::AlwaysSensitive(true),
            Attribute::NeverExtractable(true)
        ]
    );

    let (rsa_pub, rsa_priv) = s
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::Label(b"persist-rsa".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Label(b"persist-rsa".to_vec()),
            ],
        )
        .unwrap();
    let rsa_sig = s.sign(&Mechanism::Sha256RsaPkcs, rsa_priv, msg).unwrap();
    assert_eq!(rsa_sig.len(), 256);
    s.verify(&Mechanism::Sha256RsaPkcs, rsa_pub, msg, &rsa_sig)
        .unwrap();

    let aes = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::ValueLen(32.into()),
                Attribute::Label(b"persist-aes".to_vec()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .unwrap();
    let iv = [7u8; 12];
    let ct = s
        .encrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv.clone(), b"aad", 128.into()).unwrap()),
            aes,
            b"plaintext",
        )
        .unwrap();
    assert_eq!(ct.len(), 9 + 16);
    let pt = s
        .decrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv.clone(), b"aad", 128.into()).unwrap()),
            aes,
            &ct,
        )
        .unwrap();
    assert_eq!(pt, b"plaintext");
    let mut tampered = ct.clone();
    tampered[0] ^= 1;
    assert_eq!(
        rv(s.decrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv.clone(), b"aad", 128.into()).unwrap()),
            aes,
            &tampered
        )),
        RvError::EncryptedDataInvalid
    );

    // Search by class, label and CKA_ID goes through the indexes.
    assert_eq!(s.find_objects(&[Attribute::Id(vec![1])]).unwrap().len(), 2);
    assert_eq!(
        find_one(
            &s,
            &[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(vec![1])
            ]
        ),
        ec_priv
    );
    assert_eq!(
        s.find_objects(&[Attribute::KeyType(KeyType::RSA)])
            .unwrap()
            .len(),
        2
    );
    s.logout().unwrap();
    p.finalize().unwrap();
}

#[test]
fn child_use_keys_in_new_process() {
    if !is_child("child_use_keys_in_new_process") {
        return;
    }
    let p = init();
    let slot = p.get_slots_with_initialized_token().unwrap()[0];
    let s = p.open_ro_session(slot).unwrap();
    // Before login the private key is invisible; the public key is not.
    assert!(
        s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .unwrap()
            .is_empty()
    );
    let ec_pub = find_one(
        &s,
        &[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(b"persist-ec".to_vec()),
        ],
    );
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let ec_priv = find_one(
        &s,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"persist-ec".to_vec()),
        ],
    );
    let msg = b"signed in a second process";
    // Multi-part signing gives a signature the single-part verifier accepts.
    s.sign_init(&Mechanism::EcdsaSha256, ec_priv).unwrap();
    s.sign_update(b"signed in a ").unwrap();
    s.sign_update(b"second process").unwrap();
    let sig = s.sign_final().unwrap();
    oracle_verify_p256(&ec_point(&s, ec_pub), msg, &sig);
    let rsa_priv = find_one(
        &s,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"persist-rsa".to_vec()),
        ],
    );
    let rsa_pub = find_one(
        &s,
        &[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(b"persist-rsa".to_vec()),
        ],
    );
    let sig = s.sign(&Mechanism::Sha256RsaPkcs, rsa_priv, msg).unwrap();
    s.verify(&Mechanism::Sha256RsaPkcs, rsa_pub, msg, &sig)
        .unwrap();
    // A read-only session cannot write token objects.
    assert_eq!(rv(s.destroy_object(rsa_pub)), RvError::SessionReadOnly);
    p.finalize().unwrap();
}

// ------------------------------------------------------------------ login semantics

#[test]
fn pin_lockout_survives_restart_and_so_unlocks() {
    let env = TestEnv::with_max_failures(3);
    run_child("child_lock_pin", &[("FERROHSM_CONF", &env.config)]);
    run_child(
        "child_locked_after_restart",
        &[("FERROHSM_CONF", &env.config)],
    );
}

#[test]
fn child_lock_pin() {
    if !is_child("child_lock_pin") {
        return;
    }
    let p = init();
    let slot = fresh_token(&p);
    let s = p.open_ro_session(slot).unwrap();
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin("wrong-pin")))),
        RvError::PinIncorrect
    );
    assert!(p.get_token_info(slot).unwrap().user_pin_count_low());
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin("wrong-pin")))),
        RvError::PinIncorrect
    );
    assert!(p.get_token_info(slot).unwrap().user_pin_final_try());
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin("wrong-pin")))),
        RvError::PinIncorrect
    );
    assert!(p.get_token_info(slot).unwrap().user_pin_locked());
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin(USER_PIN)))),
        RvError::PinLocked,
        "locked even with the right PIN"
    );
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin("ab")))),
        RvError::PinLenRange
    );
    p.finalize().unwrap();
}

#[test]
fn child_locked_after_restart() {
    if !is_child("child_locked_after_restart") {
        return;
    }
    let p = init();
    let slot = p.get_slots_with_initialized_token().unwrap()[0];
    assert!(
        p.get_token_info(slot).unwrap().user_pin_locked(),
        "the lockout is durable"
    );
    let s = p.open_rw_session(slot).unwrap();
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin(USER_PIN)))),
        RvError::PinLocked
    );
    s.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin(USER_PIN)))),
        RvError::UserAnotherAlreadyLoggedIn
    );
    assert_eq!(
        rv(s.login(UserType::So, Some(&pin(SO_PIN)))),
        RvError::UserAlreadyLoggedIn
    );
    s.init_pin(&pin("new-user-pin")).unwrap();
    s.logout().unwrap();
    assert!(!p.get_token_info(slot).unwrap().user_pin_locked());
    s.login(UserType::User, Some(&pin("new-user-pin"))).unwrap();
    p.finalize().unwrap();
}

#[test]
fn session_and_object_rules() {
    let env = TestEnv::new();
    run_child("child_session_rules", &[("FERROHSM_CONF", &env.config)]);
}

#[test]
fn child_session_rules() {
    if !is_child("child_session_rules") {
        return;
    }
    let p = init();
    let slot = fresh_token(&p);
    let ro = p.open_ro_session(slot).unwrap();
    // Private objects need a login; token objects need a R/W session.
    let data = [
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(b"d".to_vec()),
        Attribute::Value(b"v".to_vec()),
    ];
    assert_eq!(rv(ro.create_object(&data)), RvError::UserNotLoggedIn);
    let rw = p.open_rw_session(slot).unwrap();
    // The SO cannot log in while a read-only session exists.
    assert_eq!(
        rv(rw.login(UserType::So, Some(&pin(SO_PIN)))),
        RvError::SessionReadOnlyExists
    );
    ro.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    assert_eq!(rv(ro.create_object(&data)), RvError::SessionReadOnly);
    let obj = rw.create_object(&data).unwrap();
    // Sticky attributes.
    let key = rw
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Value(vec![9; 16]),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(b"sticky".to_vec()),
        ])
        .unwrap();
    assert_eq!(
        rv(rw.update_attributes(key, &[Attribute::Sensitive(false)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(rw.update_attributes(key, &[Attribute::Extractable(true)])),
        RvError::AttributeReadOnly
    );
    rw.update_attributes(key, &[Attribute::Label(b"renamed".to_vec())])
        .unwrap();
    find_one(&rw, &[Attribute::Label(b"renamed".to_vec())]);
    // No equality oracle on a sensitive value.
    assert!(
        rw.find_objects(&[Attribute::Value(vec![9; 16])])
            .unwrap()
            .is_empty()
    );
    // Imported keys are never "always sensitive" or "local".
    let a = rw
        .get_attributes(key, &[AttributeType::Local, AttributeType::AlwaysSensitive])
        .unwrap();
    assert_eq!(
        a,
        vec![Attribute::Local(false), Attribute::AlwaysSensitive(false)]
    );
    // Templates: missing class, unknown attribute, wrong-size value.
    assert_eq!(
        rv(rw.create_object(&[Attribute::Label(b"x".to_vec())])),
        RvError::TemplateIncomplete
    );
    assert_eq!(
        rv(rw.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![1; 5])
        ])),
        RvError::AttributeValueInvalid
    );
    // Operations.
    assert_eq!(rv(rw.sign_final()), RvError::OperationNotInitialized);
    let (_, ec_priv) = rw
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256.to_vec())],
            &[Attribute::Sign(true)],
        )
        .unwrap();
    rw.sign_init(&Mechanism::Ecdsa, ec_priv).unwrap();
    assert_eq!(
        rv(rw.sign_init(&Mechanism::Ecdsa, ec_priv)),
        RvError::OperationActive
    );
    let other = p.open_rw_session(slot).unwrap();
    // A key without the usage bit, and a key of the wrong type.
    let (_, no_sign) = other
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256.to_vec())],
            &[Attribute::Sign(false)],
        )
        .unwrap();
    assert_eq!(
        rv(other.sign_init(&Mechanism::Ecdsa, no_sign)),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv(other.sign_init(&Mechanism::Sha256RsaPkcs, ec_priv)),
        RvError::KeyTypeInconsistent
    );
    rw.destroy_object(obj).unwrap();
    assert_eq!(
        rv(rw.get_attributes(obj, &[AttributeType::Label])),
        RvError::ObjectHandleInvalid
    );
    p.finalize().unwrap();
}

// ------------------------------------------------------------------ threads

#[test]
fn eight_threads_sign_without_errors() {
    let env = TestEnv::new();
    run_child("child_threads", &[("FERROHSM_CONF", &env.config)]);
}

#[test]
fn child_threads() {
    if !is_child("child_threads") {
        return;
    }
    let p = init();
    let slot = fresh_token(&p);
    let setup = user_session(&p, slot);
    let (ec_pub, ec_priv) = setup
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::Token(true), Attribute::EcParams(P256.to_vec())],
            &[Attribute::Token(true), Attribute::Sign(true)],
        )
        .unwrap();
    let point = ec_point(&setup, ec_pub);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let counts: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let p = &p;
                let point = &point;
                scope.spawn(move || {
                    let s = p.open_ro_session(slot).unwrap();
                    let mut n = 0;
                    while std::time::Instant::now() < deadline {
                        let msg = format!("thread {t} message {n}");
                        let sig = s
                            .sign(&Mechanism::EcdsaSha256, ec_priv, msg.as_bytes())
                            .expect("sign");
                        if n % 50 == 0 {
                            oracle_verify_p256(point, msg.as_bytes(), &sig);
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no thread failed"))
            .collect()
    });
    assert!(
        counts.iter().all(|c| *c > 0),
        "every thread signed: {counts:?}"
    );
    println!("signatures per thread in 3 s: {counts:?}");
    p.finalize().unwrap();
}

// ------------------------------------------------------------------ quiet by default

#[test]
fn sessions_on_every_slot_log_no_warning() {
    let env = TestEnv::new(); // log_level = "warn"
    let out = run_child(
        "child_sessions_on_every_slot",
        &[("FERROHSM_CONF", &env.config)],
    );
    assert!(
        !out.contains("WARN"),
        "opening sessions the way NSS and p11-kit do logged warnings:\n{out}"
    );
}

#[test]
fn child_sessions_on_every_slot() {
    if !is_child("child_sessions_on_every_slot") {
        return;
    }
    let p = init();
    fresh_token(&p);
    let slots = p.get_all_slots().unwrap();
    assert_eq!(slots.len(), 2, "the token's slot and the spare one");
    // NSS and p11-kit try every slot each time they start; the spare slot's token is
    // not initialised and answers so, quietly.
    for _ in 0..3 {
        let mut refused = 0;
        for &slot in &slots {
            match p.open_ro_session(slot) {
                Ok(s) => drop(s),
                Err(e) => {
                    assert_eq!(rv(Err::<(), _>(e)), RvError::TokenNotRecognized);
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 1);
    }
}
