//! Backup and restore through the shipped parts: keys made with the module before a
//! backup of a store holding 10k objects sign after the restore, in a new process on the
//! restored store, and verify with the public key read before the backup.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use ferrohsm_tests::{TestEnv, cli_path, config_for, is_child, module_path, run_child};

const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OBJECTS: usize = 10_000;
const MESSAGE: &[u8] = b"signed before and after the restore";

fn init() -> Pkcs11 {
    let p = Pkcs11::new(module_path()).expect("load the module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    p
}

fn verify(point_hex: &str, sig: &[u8]) {
    use p256::ecdsa::signature::Verifier;
    let point = hex::decode(point_hex).expect("hex P-256 point");
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).expect("P-256 point");
    vk.verify(
        MESSAGE,
        &p256::ecdsa::Signature::from_slice(sig).expect("r||s"),
    )
    .expect("signature verifies");
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

#[test]
fn keys_sign_after_restore_of_a_10k_object_store() {
    let env = TestEnv::new();
    let out = run_child("child_fill_store", &[("FERROHSM_CONF", &env.config)]);
    let point = out
        .lines()
        .find_map(|l| l.find("POINT=").map(|p| l[p + 6..].trim().to_owned()))
        .expect("child printed the public point");

    let archive = env.dir.path().join("store.fhb");
    let pass = env.dir.path().join("pass.txt");
    std::fs::write(&pass, "a backup passphrase\n").unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(cli_path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ferrohsm {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let store = env.store.to_str().unwrap();
    let (a, p) = (archive.to_str().unwrap(), pass.to_str().unwrap());
    let created = run(&[
        "--json",
        "backup",
        "create",
        "--store",
        store,
        "--out",
        a,
        "--passphrase-file",
        p,
        "--no-progress",
        // The lowest passphrase cost a backup accepts (OWASP's Argon2id minimum).
        "--kdf-memory-kib",
        "19456",
        "--kdf-iterations",
        "2",
    ]);
    assert!(
        created.contains(&format!("\"objects\": {}", OBJECTS + 2)),
        "{created}"
    );
    run(&[
        "backup",
        "verify",
        a,
        "--passphrase-file",
        p,
        "--no-progress",
    ]);
    let restored_dir = env.dir.path().join("restored");
    run(&[
        "backup",
        "restore",
        a,
        "--store",
        restored_dir.to_str().unwrap(),
        "--passphrase-file",
        p,
        "--no-progress",
    ]);
    let conf = config_for(&restored_dir, &env.dir.path().join("restored.toml"));
    // The original store is set aside: the restored one stands on its own.
    std::fs::rename(&env.store, env.dir.path().join("original-moved")).unwrap();
    let out = run_child("child_use_restored", &[("FERROHSM_CONF", &conf)]);
    let sig = out
        .lines()
        .find_map(|l| l.find("SIG=").map(|p| l[p + 4..].trim().to_owned()))
        .expect("child printed a signature");
    let sig = hex::decode(&sig).expect("hex signature");
    verify(&point, &sig);
}

#[test]
fn child_fill_store() {
    if !is_child("child_fill_store") {
        return;
    }
    let p = init();
    let slot = p.get_slots_with_token().unwrap()[0];
    p.init_token(slot, &AuthPin::new("so-pin-1".into()), "backup")
        .unwrap();
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::So, Some(&AuthPin::new("so-pin-1".into())))
        .unwrap();
    s.init_pin(&AuthPin::new("user-pin-1".into())).unwrap();
    s.logout().unwrap();
    s.login(UserType::User, Some(&AuthPin::new("user-pin-1".into())))
        .unwrap();
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256.to_vec()),
                Attribute::Label(b"bk-ec".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Label(b"bk-ec".to_vec()),
            ],
        )
        .unwrap();
    let sig = s.sign(&Mechanism::EcdsaSha256, private, MESSAGE).unwrap();
    let Some(Attribute::EcPoint(der)) = s
        .get_attributes(public, &[AttributeType::EcPoint])
        .unwrap()
        .into_iter()
        .next()
    else {
        panic!("no point")
    };
    let point = hex(&der[2..]);
    verify(&point, &sig);
    for i in 0..OBJECTS {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(i % 2 == 0),
            Attribute::Label(format!("data-{i}").into_bytes()),
            Attribute::Value(vec![7; 64]),
        ])
        .unwrap();
    }
    println!("POINT={point}");
    p.finalize().unwrap();
}

#[test]
fn child_use_restored() {
    if !is_child("child_use_restored") {
        return;
    }
    let p = init();
    let slot = p.get_slots_with_initialized_token().unwrap()[0];
    let s = p.open_ro_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::new("user-pin-1".into())))
        .unwrap();
    assert_eq!(
        s.find_objects(&[Attribute::Class(ObjectClass::DATA)])
            .unwrap()
            .len(),
        OBJECTS
    );
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"bk-ec".to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    let sig = s.sign(&Mechanism::EcdsaSha256, found[0], MESSAGE).unwrap();
    println!("SIG={}", hex(&sig));
    p.finalize().unwrap();
}
