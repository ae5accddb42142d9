//! Black-box tests of `ferrohsm backup …`: the built binary, real stores, JSON parsed.

use hsm_core::store::{KdfParams, PinPolicy, Store, TokenSpec};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, ObjectClass, SecretString, UserKind,
};
use std::path::Path;
use std::process::{Command, Output};

fn ferrohsm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrohsm"))
        .args(args)
        .env("BK_PASS", "correct horse battery")
        .env("BK_WRONG", "wrong horse battery")
        .output()
        .unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", err(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn make_store(dir: &Path, n: usize) {
    let store = Store::open_dir(dir).unwrap();
    let t = store
        .init_token(TokenSpec {
            label: "bk".into(),
            so_pin: SecretString::from("so-pin-1"),
            user_pin: Some(SecretString::from("user-pin-1")),
            kdf: KdfParams::INSECURE_FAST,
            pin_policy: PinPolicy::default(),
        })
        .unwrap();
    let k = store
        .login(t, UserKind::User, &SecretString::from("user-pin-1"))
        .unwrap();
    let objs = (0..n)
        .map(|i| {
            AttributeSet::new()
                .with(A::CLASS, AttrValue::Ulong(ObjectClass::DATA.0))
                .with(A::PRIVATE, AttrValue::Bool(i % 2 == 0))
                .with(A::LABEL, AttrValue::Bytes(format!("o{i}").into_bytes()))
                .with(A::VALUE, AttrValue::Bytes(vec![1; 100]))
        })
        .collect();
    store.create_objects(&k, objs).unwrap();
}

/// The floor for a backup passphrase (OWASP's m = 19 MiB, t = 2): the cheapest accepted.
const KDF: [&str; 4] = ["--kdf-memory-kib", "19456", "--kdf-iterations", "2"];

#[test]
fn create_verify_show_restore_with_json() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    make_store(&src, 50);
    let file = d.path().join("b.fhb");
    let (s, f) = (src.to_str().unwrap(), file.to_str().unwrap());
    let mut args = vec![
        "--json",
        "backup",
        "create",
        "--store",
        s,
        "--out",
        f,
        "--passphrase-env",
        "BK_PASS",
        "--no-progress",
    ];
    args.extend(KDF);
    let created = json(&ferrohsm(&args));
    assert_eq!(created["manifest"]["tokens"][0]["objects"], 50);
    assert_eq!(
        created["manifest"]["schema_version"],
        hsm_core::store::migrate::CURRENT
    );
    let store_id = created["manifest"]["store_id"].as_str().unwrap().to_owned();
    let families = created["manifest"]["families"].as_array().unwrap();
    assert_eq!(
        families.iter().find(|f| f["name"] == "objects").unwrap()["records"],
        50
    );
    assert!(
        families
            .iter()
            .all(|f| f["sha256"].as_str().unwrap().len() == 64)
    );

    let verified = json(&ferrohsm(&[
        "--json",
        "backup",
        "verify",
        f,
        "--passphrase-env",
        "BK_PASS",
        "--store",
        s,
        "--no-progress",
    ]));
    assert_eq!(verified["manifest"]["store_id"], store_id.as_str());
    let shown = json(&ferrohsm(&[
        "--json",
        "backup",
        "show",
        f,
        "--passphrase-env",
        "BK_PASS",
    ]));
    assert_eq!(shown["manifest"], created["manifest"]);

    let dst = d.path().join("dst");
    let restored = json(&ferrohsm(&[
        "--json",
        "backup",
        "restore",
        f,
        "--store",
        dst.to_str().unwrap(),
        "--passphrase-env",
        "BK_PASS",
        "--no-progress",
    ]));
    assert!(
        restored["check"].as_str().unwrap().starts_with("clean"),
        "{restored}"
    );
    let listed = json(&ferrohsm(&[
        "--json",
        "token",
        "list",
        "--store",
        dst.to_str().unwrap(),
    ]));
    assert_eq!(listed["store_id"], store_id.as_str());
    assert_eq!(listed["tokens"][0]["label"], "bk");
    // The restored store opens with the same PIN and holds the private objects.
    let store = Store::open_dir(&dst).unwrap();
    let k = store
        .login(
            hsm_core::types::TokenId(1),
            UserKind::User,
            &SecretString::from("user-pin-1"),
        )
        .unwrap();
    assert_eq!(store.find(&k, &Default::default()).unwrap().len(), 50);
}

#[test]
fn every_refusal_names_the_problem_and_exits_non_zero() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    make_store(&src, 20);
    let other = d.path().join("other");
    make_store(&other, 1);
    let file = d.path().join("b.fhb");
    let (s, f) = (src.to_str().unwrap(), file.to_str().unwrap());
    let mut args = vec![
        "backup",
        "create",
        "--store",
        s,
        "--out",
        f,
        "--passphrase-env",
        "BK_PASS",
        "--no-progress",
    ];
    args.extend(KDF);
    assert!(ferrohsm(&args).status.success());

    let o = ferrohsm(&["backup", "verify", f, "--passphrase-env", "BK_WRONG"]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(err(&o).contains("wrong passphrase"), "{}", err(&o));

    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0x10;
    let flipped = d.path().join("flipped.fhb");
    std::fs::write(&flipped, &bytes).unwrap();
    let o = ferrohsm(&[
        "backup",
        "verify",
        flipped.to_str().unwrap(),
        "--passphrase-env",
        "BK_PASS",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("failed authentication"), "{}", err(&o));

    let truncated = d.path().join("truncated.fhb");
    std::fs::write(&truncated, &std::fs::read(&file).unwrap()[..n - 7]).unwrap();
    let target = d.path().join("t1");
    let o = ferrohsm(&[
        "backup",
        "restore",
        truncated.to_str().unwrap(),
        "--store",
        target.to_str().unwrap(),
        "--passphrase-env",
        "BK_PASS",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("truncated"), "{}", err(&o));
    assert!(!target.exists(), "a failed restore leaves nothing behind");

    let o = ferrohsm(&[
        "backup",
        "verify",
        f,
        "--passphrase-env",
        "BK_PASS",
        "--store",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(
        err(&o).contains("not of"),
        "an archive of another store: {}",
        err(&o)
    );

    let busy = d.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("x"), b"keep").unwrap();
    let o = ferrohsm(&[
        "backup",
        "restore",
        f,
        "--store",
        busy.to_str().unwrap(),
        "--passphrase-env",
        "BK_PASS",
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("not empty"), "{}", err(&o));
    assert_eq!(std::fs::read(busy.join("x")).unwrap(), b"keep");

    let o = ferrohsm(&[
        "backup",
        "verify",
        d.path().join("nope.fhb").to_str().unwrap(),
        "--passphrase-env",
        "BK_PASS",
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("nope.fhb"), "{}", err(&o));

    let short_key = d.path().join("short.key");
    std::fs::write(&short_key, b"too short").unwrap();
    let o = ferrohsm(&[
        "backup",
        "verify",
        f,
        "--key-file",
        short_key.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
fn a_passphrase_cost_below_the_floor_is_refused_and_nothing_written() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    make_store(&src, 2);
    let file = d.path().join("weak.fhb");
    let o = ferrohsm(&[
        "backup",
        "create",
        "--store",
        src.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
        "--passphrase-env",
        "BK_PASS",
        "--no-progress",
        "--kdf-memory-kib",
        "256",
        "--kdf-iterations",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("below the floor"), "{}", err(&o));
    assert!(err(&o).contains("19456"), "says what would do: {}", err(&o));
    assert!(!file.exists());
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
