//! The built module, loaded through the `cryptoki` crate the way Rust clients load it.
//! PKCS#11 state is process-global, so each scenario runs in a child process with its
//! own configuration.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use ferrohsm_tests::{TestEnv, is_child, module_path, run_child};

#[test]
fn initialize_info_finalize_and_unsupported_calls() {
    let env = TestEnv::new();
    run_child(
        "child_initialize_info_finalize",
        &[("FERROHSM_CONF", &env.config)],
    );
}

#[test]
fn child_initialize_info_finalize() {
    if !is_child("child_initialize_info_finalize") {
        return;
    }
    let p = Pkcs11::new(module_path()).expect("load the module");
    match p.get_library_info() {
        Err(Error::Pkcs11(RvError::CryptokiNotInitialized, _)) => {}
        other => panic!("C_GetInfo before C_Initialize: {other:?}"),
    }
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    match p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        other => panic!("second C_Initialize: {other:?}"),
    }
    let info = p.get_library_info().expect("C_GetInfo");
    assert_eq!(info.manufacturer_id(), "FerroHSM");
    assert_eq!(info.library_description(), "FerroHSM software token");
    assert_eq!(info.cryptoki_version().major(), 3);
    // A fresh store shows one slot with an uninitialised token.
    let slots = p.get_slots_with_token().expect("C_GetSlotList");
    assert_eq!(slots.len(), 1);
    assert!(
        !p.get_token_info(slots[0])
            .expect("C_GetTokenInfo")
            .token_initialized()
    );
    p.init_token(
        slots[0],
        &cryptoki::types::AuthPin::new("so-pin-1".into()),
        "basics",
    )
    .expect("C_InitToken");
    let s = p.open_ro_session(slots[0]).expect("C_OpenSession");
    // Not built yet: a clear CKR_FUNCTION_NOT_SUPPORTED, never a fake success.
    use cryptoki::object::{Attribute, ObjectClass};
    let h = s
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Value(b"x".to_vec()),
        ])
        .expect("session data object");
    // Message-based AES-GCM takes whole messages; its multi-part form is not built.
    let (mut iv, mut tag) = ([0u8; 12], [0u8; 16]);
    let params = cryptoki::mechanism::aead::GcmMessageParams::new(
        &mut iv,
        96.into(),
        cryptoki::mechanism::aead::GeneratorFunction::NoGenerate,
        &mut tag,
    )
    .expect("GCM message parameters");
    match s.encrypt_message_begin(
        cryptoki::mechanism::MessageParam::AesGcmMessage(params),
        b"",
    ) {
        Err(Error::Pkcs11(RvError::FunctionNotSupported, _)) => {}
        other => panic!("C_EncryptMessageBegin: {other:?}"),
    }
    // And a refusal names its reason: a data object is not a key to digest.
    s.digest_init(&cryptoki::mechanism::Mechanism::Sha256)
        .expect("C_DigestInit");
    match s.digest_key(h) {
        Err(Error::Pkcs11(RvError::KeyIndigestible, _)) => {}
        other => panic!("C_DigestKey: {other:?}"),
    }
    drop(s);
    p.finalize().expect("C_Finalize");
}

#[test]
fn missing_configuration_fails_initialize() {
    let env = TestEnv::new();
    let missing = env.dir.path().join("no-such.toml");
    let out = run_child(
        "child_missing_configuration",
        &[("FERROHSM_CONF", &missing)],
    );
    assert!(
        out.contains("no-such.toml"),
        "the log names the file:\n{out}"
    );
}

#[test]
fn child_missing_configuration() {
    if !is_child("child_missing_configuration") {
        return;
    }
    let p = Pkcs11::new(module_path()).expect("load the module");
    match p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(Error::Pkcs11(rv, _)) => assert_eq!(rv, RvError::FunctionFailed),
        Ok(()) => panic!("C_Initialize succeeded without a configuration"),
        Err(other) => panic!("{other:?}"),
    }
}
