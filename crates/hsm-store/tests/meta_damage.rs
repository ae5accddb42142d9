//! What a store answers when its `meta` records are lost or crafted, on real RocksDB
//! stores: ROBUSTNESS F4 (a store that lost its schema version, store id or `meta` family
//! is refused, never given a fresh store id) and A3 (crafted Argon2 costs in a token
//! record answer a clear error at once: no out-of-memory abort, no hours-long login).

mod common;

use common::*;
use hsm_store::backend::rocks::{OpenMode, RocksBackend};
use hsm_store::backend::{Batch, KvBackend};
use hsm_store::cf::Cf;
use hsm_store::keys;
use hsm_store::records::{self, TokenRecord};
use hsm_store::{KdfParams, Query, Store, StoreError};
use hsm_types::{TokenId, UserKind};
use std::path::Path;
use std::time::{Duration, Instant};

/// A store with a token and a few objects.
fn make(dir: &Path) -> TokenId {
    let store = Store::open_dir(dir).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    for i in 0..5u8 {
        store
            .create_object(&k, data_object(&[b'o', i], &[i; 64], i % 2 == 0))
            .unwrap();
    }
    t
}

fn raw(dir: &Path, cf: Cf, key: &[u8]) -> Option<Vec<u8>> {
    RocksBackend::open(dir, OpenMode::ReadWrite)
        .unwrap()
        .get(cf, key)
        .unwrap()
}

fn write(dir: &Path, f: impl FnOnce(&mut Batch)) {
    let kv = RocksBackend::open(dir, OpenMode::ReadWrite).unwrap();
    let mut b = Batch::new();
    f(&mut b);
    kv.write(b).unwrap();
}

fn object_count(dir: &Path, t: TokenId) -> usize {
    let store = Store::open_dir_read_only(dir).unwrap();
    let k = store
        .login_read_only(t, UserKind::User, &pin(USER_PIN))
        .unwrap();
    store.find(&k, &Query::default()).unwrap().len()
}

fn assert_refused(dir: &Path, expect: &str) {
    for (how, e) in [
        ("read-write", Store::open_dir(dir).err()),
        ("read-only", Store::open_dir_read_only(dir).err()),
    ] {
        let e = e.unwrap_or_else(|| panic!("{how} open must refuse"));
        assert!(matches!(e, StoreError::Corruption { .. }), "{how}: {e}");
        assert!(e.to_string().contains(expect), "{how}: {e}");
        assert!(e.to_string().contains("restore"), "{how}: {e}");
    }
}

#[test]
fn a_store_without_its_schema_version_is_refused_not_reinitialised() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let t = make(&dir);
    let id = raw(&dir, Cf::Meta, keys::meta::STORE_ID).unwrap();
    let version = raw(&dir, Cf::Meta, keys::meta::SCHEMA_VERSION).unwrap();
    write(&dir, |b| {
        b.delete(Cf::Meta, keys::meta::SCHEMA_VERSION.to_vec())
    });

    assert_refused(&dir, "schema version record is missing");
    // Nothing was written: no new version, the same store id, every record still there.
    assert_eq!(raw(&dir, Cf::Meta, keys::meta::SCHEMA_VERSION), None);
    assert_eq!(raw(&dir, Cf::Meta, keys::meta::STORE_ID), Some(id.clone()));
    assert!(raw(&dir, Cf::Meta, &keys::meta::token(t)).is_some());

    // Put back, the store is whole again.
    write(&dir, |b| {
        b.put(Cf::Meta, keys::meta::SCHEMA_VERSION.to_vec(), version)
    });
    assert_eq!(object_count(&dir, t), 5);
    assert_eq!(Store::open_dir(&dir).unwrap().store_id().to_vec(), id);
}

#[test]
fn a_store_without_its_store_id_is_refused_and_keeps_its_records() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let t = make(&dir);
    let id = raw(&dir, Cf::Meta, keys::meta::STORE_ID).unwrap();
    write(&dir, |b| b.delete(Cf::Meta, keys::meta::STORE_ID.to_vec()));
    assert_refused(&dir, "store id record is missing");
    assert_eq!(raw(&dir, Cf::Meta, keys::meta::STORE_ID), None, "no new id");

    // Both lost: still refused, because the other families hold records.
    let version = raw(&dir, Cf::Meta, keys::meta::SCHEMA_VERSION).unwrap();
    write(&dir, |b| {
        b.delete(Cf::Meta, keys::meta::SCHEMA_VERSION.to_vec())
    });
    assert_refused(&dir, "schema version record is missing");
    assert_eq!(raw(&dir, Cf::Meta, keys::meta::STORE_ID), None, "no new id");

    write(&dir, |b| {
        b.put(Cf::Meta, keys::meta::SCHEMA_VERSION.to_vec(), version);
        b.put(Cf::Meta, keys::meta::STORE_ID.to_vec(), id);
    });
    assert_eq!(object_count(&dir, t), 5);
}

#[test]
fn only_objects_without_any_meta_record_are_refused_too() {
    // Every `meta` record gone (a family emptied): the objects still tell it is damage.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    make(&dir);
    let kv = RocksBackend::open(&dir, OpenMode::ReadWrite).unwrap();
    let all = hsm_store::backend::collect_prefix(&kv, Cf::Meta, &[]).unwrap();
    let mut b = Batch::new();
    for (k, _) in all {
        b.delete(Cf::Meta, k);
    }
    kv.write(b).unwrap();
    drop(kv);
    assert_refused(&dir, "holds records (in `objects`)");
}

#[test]
fn a_store_that_lost_its_meta_family_is_refused_and_not_recreated() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    make(&dir);
    {
        let names: Vec<&str> = Cf::ALL.iter().map(|c| c.name()).collect();
        let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &dir, names).unwrap();
        db.drop_cf("meta").unwrap();
    }
    let listed = || rocksdb::DB::list_cf(&rocksdb::Options::default(), &dir).unwrap();
    assert!(!listed().iter().any(|n| n == "meta"));
    for e in [
        RocksBackend::open(&dir, OpenMode::ReadWrite).err(),
        RocksBackend::open(&dir, OpenMode::ReadOnly).err(),
    ] {
        let e = e.expect("must refuse");
        assert!(matches!(e, StoreError::Corruption { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("meta") && msg.contains("missing"), "{msg}");
        assert!(msg.contains("`objects` holds records"), "{msg}");
    }
    assert!(
        !listed().iter().any(|n| n == "meta"),
        "the refused open must not create the family"
    );
}

#[test]
fn a_new_store_whose_families_were_cut_short_by_a_crash_is_completed() {
    // RocksDB creates a new store's families one by one: a crash between two leaves a
    // database with some of them and no record. That is a new store, not a damaged one.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&dir)
        .unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        rocksdb::DB::open_cf(&opts, &dir, ["meta", "objects"]).unwrap();
    }
    assert!(matches!(
        Store::open_dir_read_only(&dir),
        Err(StoreError::NotAStore)
    ));
    let store = Store::open_dir(&dir).unwrap();
    new_token(&store);
}

/// Rewrites token `t`'s record with another Argon2 cost, and clears its PIN counters
/// (each refused attempt was counted before the cost was looked at).
fn set_kdf(dir: &Path, t: TokenId, kdf: KdfParams) {
    let key = keys::meta::token(t);
    let bytes = raw(dir, Cf::Meta, &key).unwrap();
    let mut rec: TokenRecord = records::decode(&bytes, String::new).unwrap();
    rec.kdf = kdf;
    write(dir, |b| {
        b.put(Cf::Meta, key, records::encode(&rec));
        for who in [UserKind::So, UserKind::User] {
            b.put(
                Cf::Meta,
                keys::meta::pin_failures(t, who),
                0u32.to_be_bytes().to_vec(),
            );
        }
    });
}

#[test]
fn crafted_kdf_costs_in_a_token_record_answer_at_once() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let t = make(&dir);
    for (m_kib, t_cost, p_cost) in [
        (u32::MAX, 3, 1),
        (65_536, u32::MAX, 1),
        (65_536, 3, u32::MAX),
        (u32::MAX, u32::MAX, u32::MAX),
        // Each under its own cap, together hours of work.
        (KdfParams::MAX_M_KIB, KdfParams::MAX_T_COST, 1),
    ] {
        let kdf = KdfParams {
            m_kib,
            t_cost,
            p_cost,
        };
        set_kdf(&dir, t, kdf);
        let store = Store::open_dir(&dir).unwrap();
        let started = Instant::now();
        let answers = [
            store.login(t, UserKind::User, &pin(USER_PIN)).err(),
            store.login(t, UserKind::So, &pin(SO_PIN)).err(),
            store
                .change_pin(t, UserKind::User, &pin(USER_PIN), &pin("new-user-pin"))
                .err(),
        ];
        drop(store);
        let ro = Store::open_dir_read_only(&dir).unwrap();
        let ro_answer = ro.login_read_only(t, UserKind::User, &pin(USER_PIN)).err();
        for e in answers.into_iter().chain([ro_answer]) {
            let e = e.unwrap_or_else(|| panic!("{kdf:?}: must refuse"));
            assert!(matches!(e, StoreError::Corruption { .. }), "{kdf:?}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains("token record") && msg.contains("cap"),
                "{kdf:?}: {msg}"
            );
        }
        // A hang guard, not a benchmark: four refusals, no derivation.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{kdf:?}: took {:?}",
            started.elapsed()
        );
    }
    // The real cost back, the token works again.
    set_kdf(&dir, t, KdfParams::INSECURE_FAST);
    let store = Store::open_dir(&dir).unwrap();
    store.login(t, UserKind::So, &pin(SO_PIN)).unwrap();
    store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
}
