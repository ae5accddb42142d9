//! Black-box tests of `ferrohsm migrate …`: the built binary against real stores, among
//! them a copy of the golden schema-1 store, and stores whose recorded schema the test
//! sets to a version this build cannot reach.

use hsm_core::store::backend::{self, Batch, OpenMode};
use hsm_core::store::cf::Cf;
use hsm_core::store::keys::meta::SCHEMA_VERSION;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferrohsm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrohsm"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the golden schema-1 store (written once by an early build, never changed).
fn golden_copy(into: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/store-v1");
    let to = into.join("store");
    std::fs::create_dir_all(&to).unwrap();
    // A store directory must be its owner's alone (ROBUSTNESS A1), whatever the umask.
    std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

/// Rewrites the schema version the store records.
fn set_schema(store: &Path, version: u32) {
    let kv = backend::open_dir(store, OpenMode::ReadWrite).unwrap();
    let mut b = Batch::new();
    b.put(
        Cf::Meta,
        SCHEMA_VERSION.to_vec(),
        version.to_be_bytes().to_vec(),
    );
    kv.write(b).unwrap();
}

fn status_json(store: &Path) -> serde_json::Value {
    let o = ferrohsm(&[
        "--json",
        "migrate",
        "status",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn checkpoints(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("pre-migrate"))
        .collect()
}

#[test]
fn the_golden_store_is_upgraded_with_the_so_pin() {
    let d = tempfile::tempdir().unwrap();
    let store = golden_copy(d.path());
    let s = status_json(&store);
    assert_eq!(s["found"], 1);
    assert_eq!(s["current"], hsm_core::store::migrate::CURRENT);
    assert_eq!(s["state"], "migration pending");
    assert_eq!(s["pending"][0]["from"], 1);
    assert_eq!(s["pending"][1]["from"], 2, "then the key-rings step");
    assert_eq!(s["pending"][2]["from"], 3, "then the dual-control step");
    let o = ferrohsm(&["migrate", "status", "--store", store.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("SO PIN"),
        "the step says what it needs: {}",
        stdout(&o)
    );
    // Without the SO PIN (and no terminal to ask on) nothing happens.
    let o = ferrohsm(&["migrate", "run", "--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("SO PIN"), "{}", stderr(&o));
    assert!(
        checkpoints(d.path()).is_empty(),
        "no checkpoint without the PIN"
    );
    assert_eq!(status_json(&store)["found"], 1);
    // A wrong one: refused, nothing upgraded (the checkpoint stays for the record).
    let wrong = d.path().join("wrong.pin");
    std::fs::write(&wrong, "wrong-so-pin\n").unwrap();
    let checkpoint = d.path().join("before");
    let o = ferrohsm(&[
        "migrate",
        "run",
        "--store",
        store.to_str().unwrap(),
        "--so-pin-file",
        wrong.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("incorrect PIN"), "{}", stderr(&o));
    assert_eq!(status_json(&store)["found"], 1);
    std::fs::remove_dir_all(&checkpoint).unwrap();
    let right = d.path().join("so.pin");
    std::fs::write(&right, "golden-so-pin\n").unwrap();
    let o = ferrohsm(&[
        "migrate",
        "run",
        "--store",
        store.to_str().unwrap(),
        "--so-pin-file",
        right.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("migrated"), "{}", stdout(&o));
    assert_eq!(
        checkpoints(d.path()).len(),
        1,
        "a checkpoint of the schema-1 store"
    );
    let s = status_json(&store);
    assert_eq!(
        (s["found"].clone(), s["state"].clone()),
        (
            hsm_core::store::migrate::CURRENT.into(),
            "up to date".into()
        )
    );
    let o = ferrohsm(&["migrate", "run", "--store", store.to_str().unwrap()]);
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
}

#[test]
fn a_newer_store_is_refused_by_both_commands() {
    let d = tempfile::tempdir().unwrap();
    let store = golden_copy(d.path());
    set_schema(&store, 99);
    for cmd in ["status", "run"] {
        let o = ferrohsm(&["migrate", cmd, "--store", store.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(6), "{cmd}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("99")
                && stderr(&o).contains(&format!("({})", hsm_core::store::migrate::CURRENT)),
            "{cmd}: the message names both versions: {}",
            stderr(&o)
        );
    }
    assert!(checkpoints(d.path()).is_empty());
}

#[test]
fn a_store_this_build_cannot_reach_is_left_untouched() {
    let d = tempfile::tempdir().unwrap();
    let store = golden_copy(d.path());
    set_schema(&store, 0);
    let o = ferrohsm(&["migrate", "status", "--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("no migration step"), "{}", stderr(&o));
    let o = ferrohsm(&["migrate", "run", "--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(
        checkpoints(d.path()).is_empty(),
        "refused before any checkpoint"
    );
    let kv = backend::open_dir(&store, OpenMode::ReadOnly).unwrap();
    assert_eq!(
        hsm_core::store::migrate::stored_version(kv.as_ref()).unwrap(),
        Some(0),
        "the recorded version did not move"
    );
}

#[test]
fn run_needs_the_store_to_itself_and_status_does_not() {
    let d = tempfile::tempdir().unwrap();
    let store = golden_copy(d.path());
    let _held = backend::open_dir(&store, OpenMode::ReadWrite).unwrap();
    let o = ferrohsm(&["migrate", "run", "--store", store.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&std::process::id().to_string()),
        "names the holder: {}",
        stderr(&o)
    );
    assert_eq!(status_json(&store)["state"], "migration pending");
    let o = ferrohsm(&[
        "migrate",
        "status",
        "--store",
        d.path().join("nowhere").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a FerroHSM store"),
        "{}",
        stderr(&o)
    );
}
