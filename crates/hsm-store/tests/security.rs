//! The store's security properties on a real RocksDB store: nothing secret at rest,
//! tampering detected, wrong PINs unwrap nothing, destroyed data leaves the disk, and a
//! second process is kept out with a message naming the holder.

mod common;

use common::*;
use hsm_store::cf::Cf;
use hsm_store::{Query, Store, StoreError, keys};
use hsm_types::{AttributeType as A, ObjectId, TokenId, UserKind, VersionNo};
use std::process::Command;

const SECRET_LABEL: &[u8] = b"payroll-signing-key-LABEL";
const SECRET_ID: &[u8] = b"\xde\xad\xbe\xef-CKA-ID-7f3a";
const SECRET_VALUE: &[u8] = b"SUPER-SECRET-KEY-MATERIAL-0123456789";
const PUBLIC_KEY_VALUE: &[u8] = b"PUBLIC-OBJECT-SECRET-VALUE-abcdef";
const DATA_VALUE: &[u8] = b"private-data-object-value-XYZ";

fn populate(dir: &std::path::Path) {
    let store = Store::open_dir(dir).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    store
        .create_object(&k, secret_key(SECRET_LABEL, SECRET_ID, SECRET_VALUE, true))
        .unwrap();
    // A public secret key: its label is public, its key material still sealed.
    store
        .create_object(
            &k,
            secret_key(b"public-aes", b"pub-id", PUBLIC_KEY_VALUE, false),
        )
        .unwrap();
    let d = store
        .create_object(&k, data_object(b"private-data-label", DATA_VALUE, true))
        .unwrap();
    // Old versions must not leak either.
    store
        .update_object(
            &k,
            d,
            data_object(b"private-data-label-v2", DATA_VALUE, true),
        )
        .unwrap();
}

fn assert_nothing_secret_on_disk(dir: &std::path::Path) {
    for needle in [
        SECRET_LABEL,
        SECRET_ID,
        SECRET_VALUE,
        PUBLIC_KEY_VALUE,
        DATA_VALUE,
        b"private-data-label",
        USER_PIN.as_bytes(),
        SO_PIN.as_bytes(),
    ] {
        let hits = files_containing(dir, needle);
        assert!(
            hits.is_empty(),
            "{:?} found in {hits:?}",
            String::from_utf8_lossy(needle)
        );
    }
    assert!(
        all_files(dir).len() > 3,
        "the scan must have seen the store's files"
    );
}

#[test]
fn at_rest_no_secret_in_any_file_wal_or_sst() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    // Closed without a flush: the records sit in the WAL.
    assert!(
        all_files(dir.path())
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "log")),
        "expected a WAL file"
    );
    assert_nothing_secret_on_disk(dir.path());
    // Reopen (WAL replayed and flushed into SST files) and scan again.
    {
        let store = Store::open_dir(dir.path()).unwrap();
        let t = TokenId(1);
        let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
        // Purging with an empty range list still flushes every family to SST.
        store.backend().purge(&[]).unwrap();
        assert_eq!(
            store
                .find(
                    &k,
                    &Query {
                        label: Some(SECRET_LABEL.to_vec()),
                        ..Default::default()
                    }
                )
                .unwrap()
                .len(),
            1
        );
    }
    assert!(
        all_files(dir.path())
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "sst")),
        "expected SST files"
    );
    assert_nothing_secret_on_disk(dir.path());
}

#[test]
fn public_labels_are_readable_without_pin_but_private_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let store = Store::open_dir(dir.path()).unwrap();
    let public = store.public_access(TokenId(1)).unwrap();
    let found = store.find(&public, &Query::default()).unwrap();
    assert_eq!(
        found.len(),
        1,
        "only the public object is visible without a PIN"
    );
    let obj = store.read_object(&public, found[0]).unwrap();
    assert_eq!(obj.attrs.label(), Some(&b"public-aes"[..]));
    assert!(obj.secrets_withheld && obj.attrs.bytes(A::VALUE).is_none());
}

fn setup_two_objects() -> (
    tempfile::TempDir,
    Store,
    hsm_store::TokenKeys,
    ObjectId,
    ObjectId,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let a = store
        .create_object(&k, secret_key(b"a", b"a", b"value-a", true))
        .unwrap();
    let b = store
        .create_object(&k, secret_key(b"b", b"b", b"value-b", true))
        .unwrap();
    (dir, store, k, a, b)
}

fn raw_put(store: &Store, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
    let mut b = hsm_store::backend::Batch::new();
    b.put(cf, key, value);
    store.backend().write(b).unwrap();
}

#[test]
fn tamper_flipped_byte_is_refused() {
    let (_d, store, k, a, _) = setup_two_objects();
    let key = keys::version(k.token(), a, VersionNo(1));
    let mut rec = store.backend().get(Cf::Attributes, &key).unwrap().unwrap();
    let mid = rec.len() / 2;
    rec[mid] ^= 0x01;
    raw_put(&store, Cf::Attributes, key, rec);
    let e = store.read_object(&k, a).unwrap_err();
    assert!(matches!(e, StoreError::Tampered { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("attributes/{}/{a}/1", k.token())),
        "names the record: {e}"
    );
}

#[test]
fn tamper_swapped_records_are_refused() {
    let (_d, store, k, a, b) = setup_two_objects();
    let ka = keys::version(k.token(), a, VersionNo(1));
    let kb = keys::version(k.token(), b, VersionNo(1));
    let ra = store.backend().get(Cf::Attributes, &ka).unwrap().unwrap();
    let rb = store.backend().get(Cf::Attributes, &kb).unwrap().unwrap();
    raw_put(&store, Cf::Attributes, ka, rb);
    raw_put(&store, Cf::Attributes, kb, ra);
    assert!(matches!(
        store.read_object(&k, a),
        Err(StoreError::Tampered { .. })
    ));
    assert!(matches!(
        store.read_object(&k, b),
        Err(StoreError::Tampered { .. })
    ));
    // Headers (which carry the wrapped per-object keys) are bound to their object too.
    let ha = store
        .backend()
        .get(Cf::Objects, &keys::object(k.token(), a))
        .unwrap()
        .unwrap();
    raw_put(&store, Cf::Objects, keys::object(k.token(), b), ha);
    assert!(matches!(
        store.read_object(&k, b),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn tamper_replayed_old_version_is_refused() {
    let (_d, store, k, a, _) = setup_two_objects();
    let v1 = store
        .backend()
        .get(Cf::Attributes, &keys::version(k.token(), a, VersionNo(1)))
        .unwrap()
        .unwrap();
    store
        .update_object(&k, a, secret_key(b"a-renamed", b"a", b"value-a", true))
        .unwrap();
    // Replay: put version 1's sealed record where version 2 is expected.
    raw_put(
        &store,
        Cf::Attributes,
        keys::version(k.token(), a, VersionNo(2)),
        v1.clone(),
    );
    let e = store.read_object(&k, a).unwrap_err();
    assert!(matches!(e, StoreError::Tampered { .. }), "{e}");
    assert!(
        store.read_version(&k, a, VersionNo(1)).is_ok(),
        "the untouched old version still opens"
    );
}

#[test]
fn destroyed_object_can_still_be_destroyed_when_damaged() {
    let (_d, store, k, a, _) = setup_two_objects();
    let key = keys::version(k.token(), a, VersionNo(1));
    let mut rec = store.backend().get(Cf::Attributes, &key).unwrap().unwrap();
    rec[20] ^= 0xff;
    raw_put(&store, Cf::Attributes, key, rec);
    store.destroy_object(&k, a).unwrap();
    assert!(store.check_indexes(&k).unwrap().is_empty());
}

#[test]
fn wrong_pin_unwraps_nothing_and_counts() {
    let (_d, store, k, a, _) = setup_two_objects();
    let t = k.token();
    drop(k);
    let e = store
        .login(t, UserKind::User, &pin("not-the-pin"))
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::PinIncorrect {
                failures: 1,
                max: 5
            }
        ),
        "{e}"
    );
    let e = store.login(t, UserKind::So, &pin(USER_PIN)).unwrap_err();
    assert!(
        matches!(e, StoreError::PinIncorrect { .. }),
        "the user PIN is not the SO PIN: {e}"
    );
    let public = store.public_access(t).unwrap();
    assert!(matches!(
        store.read_object(&public, a),
        Err(StoreError::NotLoggedIn)
    ));
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 1);
    // The counter is durable: it survives closing the store.
    let dir = _d.path().to_owned();
    drop(store);
    let store = Store::open_dir(&dir).unwrap();
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 1);
    store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 0);
}

#[test]
fn destroy_removes_sealed_records_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let keep = store
        .create_object(&k, secret_key(b"keep", b"k", b"keep-value", true))
        .unwrap();
    let gone = store
        .create_object(&k, secret_key(b"gone", b"g", b"gone-value", true))
        .unwrap();
    store
        .update_object(&k, gone, secret_key(b"gone-2", b"g", b"gone-value", true))
        .unwrap();
    // Push everything into SST files first, so the destroy has to reach them.
    store.backend().purge(&[]).unwrap();
    let header = store
        .backend()
        .get(Cf::Objects, &keys::object(t, gone))
        .unwrap()
        .unwrap();
    let attrs_v1 = store
        .backend()
        .get(Cf::Attributes, &keys::version(t, gone, VersionNo(1)))
        .unwrap()
        .unwrap();
    let attrs_v2 = store
        .backend()
        .get(Cf::Attributes, &keys::version(t, gone, VersionNo(2)))
        .unwrap()
        .unwrap();
    let keep_attrs = store
        .backend()
        .get(Cf::Attributes, &keys::version(t, keep, VersionNo(1)))
        .unwrap()
        .unwrap();
    // The sealed bytes are distinctive: take a 24-byte window from the ciphertext.
    let sample = |r: &[u8]| r[13..37].to_vec();
    assert!(
        !files_containing(dir.path(), &sample(&attrs_v1)).is_empty(),
        "precondition: the record is on disk"
    );
    store.destroy_object(&k, gone).unwrap();
    for (what, rec) in [("header", &header), ("v1", &attrs_v1), ("v2", &attrs_v2)] {
        let hits = files_containing(dir.path(), &sample(rec));
        assert!(
            hits.is_empty(),
            "destroyed {what} still on disk in {hits:?}"
        );
    }
    assert!(
        !files_containing(dir.path(), &sample(&keep_attrs)).is_empty(),
        "other objects stay"
    );
    drop(store);
    let store = Store::open_dir(dir.path()).unwrap();
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    assert!(matches!(
        store.read_object(&k, gone),
        Err(StoreError::ObjectNotFound(..))
    ));
    assert_eq!(
        store.read_object(&k, keep).unwrap().attrs.bytes(A::VALUE),
        Some(&b"keep-value"[..])
    );
}

/// Child half of `second_process_is_refused_with_the_holders_name`.
#[test]
fn child_try_open_store() {
    let Ok(dir) = std::env::var("FERROHSM_TEST_CHILD_OPEN") else {
        return;
    };
    match Store::open_dir(std::path::Path::new(&dir)) {
        Ok(_) => println!("CHILD-RESULT: opened"),
        Err(e) => println!("CHILD-RESULT: {e}"),
    }
}

#[test]
fn second_process_is_refused_with_the_holders_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    new_token(&store);
    let started = std::time::Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_try_open_store",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FERROHSM_TEST_CHILD_OPEN", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("CHILD-RESULT:").map(|p| &l[p..]))
        .unwrap_or_else(|| panic!("child said nothing: {stdout}"));
    assert!(line.contains("in use by another process"), "{line}");
    assert!(
        line.contains(&format!("pid {}", std::process::id())),
        "names the holder: {line}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "fails at once, no waiting"
    );
    // The holder is unaffected.
    assert_eq!(store.tokens().unwrap().len(), 1);
    drop(store);
    // Once released, the store opens again.
    Store::open_dir(dir.path()).unwrap();
}

#[test]
fn same_process_second_open_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open_dir(dir.path()).unwrap();
    assert!(matches!(
        Store::open_dir(dir.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn read_only_open_works_beside_the_writer_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    store
        .create_object(&k, data_object(b"visible", b"v", false))
        .unwrap();
    let ro = Store::open_dir_read_only(dir.path()).unwrap();
    let pk = ro.public_access(t).unwrap();
    assert_eq!(
        ro.find(
            &pk,
            &Query {
                label: Some(b"visible".to_vec()),
                ..Default::default()
            }
        )
        .unwrap()
        .len(),
        1
    );
    let e = ro
        .create_object(&pk, data_object(b"x", b"y", false))
        .unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[test]
fn newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_dir(dir.path()).unwrap();
        raw_put(
            &store,
            Cf::Meta,
            keys::meta::SCHEMA_VERSION.to_vec(),
            99u32.to_be_bytes().to_vec(),
        );
    }
    let e = Store::open_dir(dir.path()).err().expect("must refuse");
    assert!(
        matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("newer than this build supports"),
        "{e}"
    );
}

#[test]
fn missing_directory_is_not_a_store_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let e = Store::open_dir_read_only(&dir.path().join("nope"))
        .err()
        .expect("must fail");
    assert!(matches!(e, StoreError::NotAStore), "{e}");
}

#[test]
fn concurrent_logins_with_the_right_pin_never_lock_and_wrong_ones_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store); // max_failures = 5
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..24)
            .map(|_| s.spawn(|| store.login(t, UserKind::User, &pin(USER_PIN)).map(|_| ())))
            .collect();
        for h in handles {
            h.join()
                .unwrap()
                .expect("every right-PIN login succeeds, however many run at once");
        }
    });
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 0);
    // Wrong PINs racing right ones are still counted.
    std::thread::scope(|s| {
        let wrong: Vec<_> = (0..3)
            .map(|_| s.spawn(|| store.login(t, UserKind::User, &pin("wrong-pin")).is_err()))
            .collect();
        for w in wrong {
            assert!(w.join().unwrap());
        }
    });
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 3);
}
