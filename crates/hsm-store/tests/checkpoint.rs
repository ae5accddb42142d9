//! `RocksBackend::checkpoint`, which `ferrohsm migrate run` takes before it changes a
//! store: a copy that opens as the store it was, and stays so while the original moves on.

mod common;

use common::*;
use hsm_store::Store;
use hsm_store::backend::rocks::{OpenMode, RocksBackend};
use hsm_types::UserKind;

#[test]
fn a_checkpoint_is_the_store_as_it_was() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let store = Store::open_dir(&dir).unwrap();
    let token = new_token(&store);
    let keys = store.login(token, UserKind::User, &pin(USER_PIN)).unwrap();
    let before = store
        .create_object(&keys, data_object(b"before", b"kept", true))
        .unwrap();
    drop(keys);
    drop(store);

    let kv = RocksBackend::open(&dir, OpenMode::ReadWrite).unwrap();
    let copy = d.path().join("copy");
    kv.checkpoint(&copy).unwrap();
    assert!(
        kv.checkpoint(&copy).is_err(),
        "a second checkpoint into the same directory is refused, not merged"
    );
    let store = Store::open(Box::new(kv)).unwrap();
    let keys = store.login(token, UserKind::User, &pin(USER_PIN)).unwrap();
    let after = store
        .create_object(&keys, data_object(b"after", b"new", true))
        .unwrap();

    let old = Store::open_dir(&copy).unwrap();
    assert_eq!(
        old.store_id(),
        store.store_id(),
        "the same store, as it was"
    );
    let old_keys = old.login(token, UserKind::User, &pin(USER_PIN)).unwrap();
    assert_eq!(
        old.read_object(&old_keys, before).unwrap().attrs.label(),
        Some(&b"before"[..])
    );
    assert!(
        old.read_object(&old_keys, after).is_err(),
        "later writes are not in it"
    );
}

/// The same checkpoint through the backend trait, as the CLI takes it without naming
/// RocksDB; a store in memory has no files to copy and says so.
#[test]
fn a_checkpoint_through_the_trait_needs_a_store_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let store = Store::open_dir(&dir).unwrap();
    let token = new_token(&store);
    drop(store);

    let kv = hsm_store::backend::open_dir(&dir, OpenMode::ReadWrite).unwrap();
    let copy = d.path().join("copy");
    kv.checkpoint(&copy).unwrap();
    drop(kv);
    let old = Store::open_dir(&copy).unwrap();
    assert_eq!(old.tokens().unwrap()[0].id, token);

    let mem = hsm_store::backend::mem::MemBackend::new();
    let e =
        hsm_store::backend::KvBackend::checkpoint(&mem, &d.path().join("mem-copy")).unwrap_err();
    assert!(
        e.to_string().contains("on-disk store"),
        "a clear refusal, not a silent success: {e}"
    );
    assert!(!d.path().join("mem-copy").exists());
}
