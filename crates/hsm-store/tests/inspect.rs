//! `check` and the counts behind `ferrohsm inspect`, on real RocksDB stores.

mod common;

use common::*;
use hsm_store::backend::Batch;
use hsm_store::cf::Cf;
use hsm_store::{Store, keys};
use hsm_types::{ObjectId, UserKind, VersionNo};

fn populated() -> (
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
    let private = store
        .create_object(&k, secret_key(b"k", b"1", b"secret-value-000", true))
        .unwrap();
    let public = store
        .create_object(&k, data_object(b"d", b"v", false))
        .unwrap();
    store
        .update_object(&k, public, data_object(b"d2", b"v", false))
        .unwrap();
    (dir, store, k, private, public)
}

fn put(store: &Store, cf: Cf, k: Vec<u8>, v: Vec<u8>) {
    let mut b = Batch::new();
    b.put(cf, k, v);
    store.backend().write(b).unwrap();
}

#[test]
fn a_clean_store_checks_clean_and_counts_through_indexes() {
    let (_d, store, k, _, _) = populated();
    let r = store.check_token(&k).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!((r.objects, r.versions, r.private_unverified), (2, 3, 0));
    assert!(store.check_store().unwrap().is_empty());
    let c = store.counts(&k).unwrap();
    assert_eq!((c.objects, c.private_objects, c.versions), (2, 1, 3));
    assert_eq!(c.by_class.get("SECRET_KEY"), Some(&1));
    assert_eq!(c.by_class.get("DATA"), Some(&1));
    assert_eq!(c.by_key_type.get("AES"), Some(&1));
    // Without the PIN: private records are not opened, and private counts stay hidden.
    let public = store.public_access(k.token()).unwrap();
    let r = store.check_token(&public).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.private_unverified, 1);
    let c = store.counts(&public).unwrap();
    assert_eq!(c.by_class.get("SECRET_KEY"), None);
    assert_eq!(c.private_objects, 1);
}

#[test]
fn check_names_a_damaged_record() {
    let (_d, store, k, private, _) = populated();
    let key = keys::version(k.token(), private, VersionNo(1));
    let mut rec = store.backend().get(Cf::Attributes, &key).unwrap().unwrap();
    rec[30] ^= 0x40;
    put(&store, Cf::Attributes, key, rec);
    let r = store.check_token(&k).unwrap();
    let loc = format!("attributes/{}/{}/1", k.token(), private);
    assert!(
        r.problems
            .iter()
            .any(|p| p.location == loc && p.problem.contains("failed authentication")),
        "{:?}",
        r.problems
    );
}

#[test]
fn check_finds_an_index_entry_without_a_record_and_a_missing_version() {
    let (_d, store, k, _, public) = populated();
    put(
        &store,
        Cf::IdxLabel,
        keys::index(k.token(), keys::Visibility::Public, &[7; 16], ObjectId(999)),
        vec![],
    );
    let mut b = Batch::new();
    b.delete(Cf::Versions, keys::version(k.token(), public, VersionNo(1)));
    store.backend().write(b).unwrap();
    let r = store.check_token(&k).unwrap();
    assert!(
        r.problems.iter().any(|p| p
            .problem
            .contains("idx_label: entry for object 999 matches no record")),
        "{:?}",
        r.problems
    );
    let loc = format!("versions/{}/{}/1", k.token(), public);
    assert!(
        r.problems
            .iter()
            .any(|p| p.location == loc && p.problem.starts_with("missing")),
        "{:?}",
        r.problems
    );
}

#[test]
fn check_store_finds_records_of_no_token() {
    let (_d, store, _, _, _) = populated();
    put(
        &store,
        Cf::Objects,
        keys::object(hsm_types::TokenId(42), ObjectId(1)),
        vec![1, 2, 3],
    );
    let p = store.check_store().unwrap();
    assert!(
        p.iter()
            .any(|p| p.location == "objects" && p.problem.contains("belong to no token")),
        "{p:?}"
    );
}

#[test]
fn read_only_login_checks_without_writing_and_respects_lockout() {
    let (d, store, k, private, _) = populated();
    let t = k.token();
    drop((k, store));
    let ro = Store::open_dir_read_only(d.path()).unwrap();
    assert!(matches!(
        ro.login_read_only(t, UserKind::User, &pin("wrong-pin")),
        Err(hsm_store::StoreError::PinIncorrect { failures: 0, .. })
    ));
    assert_eq!(
        ro.pin_failures(t, UserKind::User).unwrap(),
        0,
        "nothing written"
    );
    let k = ro
        .login_read_only(t, UserKind::User, &pin(USER_PIN))
        .unwrap();
    assert!(ro.read_object(&k, private).is_ok());
    drop((k, ro));
    // Lock the PIN through a writer; the read-only check then refuses even the right PIN.
    let rw = Store::open_dir(d.path()).unwrap();
    for _ in 0..5 {
        let _ = rw.login(t, UserKind::User, &pin("wrong-pin"));
    }
    drop(rw);
    let ro = Store::open_dir_read_only(d.path()).unwrap();
    assert!(matches!(
        ro.login_read_only(t, UserKind::User, &pin(USER_PIN)),
        Err(hsm_store::StoreError::PinLocked)
    ));
}
