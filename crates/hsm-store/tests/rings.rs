//! Key rings on a real RocksDB store: a transition is all or nothing with the objects it
//! makes and erases, a ring put back from earlier or edited is refused, erased material leaves the files, and re-initialising the token takes the
//! rings with it.

mod common;

use common::*;
use hsm_store::cf::Cf;
use hsm_store::{RingWrites, Store, StoreError, keys};
use hsm_types::lifecycle::{KeyId, KeyPolicy, KeyRing, VersionState};
use hsm_types::{AttrValue, AttributeType as A, ObjectId, UserKind};

fn raw_put(store: &Store, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
    let mut b = hsm_store::backend::Batch::new();
    b.put(cf, key, value);
    store.backend().write(b).unwrap();
}

/// A store with one AES key (version 1) and its ring after a first rotation.
fn rotated(dir: &std::path::Path) -> (Store, hsm_store::TokenKeys, ObjectId, KeyRing) {
    let store = Store::open_dir(dir).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let v1 = store
        .create_object(
            &k,
            secret_key(b"wrap-key", b"w", b"VERSION-ONE-MATERIAL-0001", true),
        )
        .unwrap();
    let mut ring = KeyRing::first(KeyId(v1.0), vec![v1], 0, KeyPolicy::default());
    ring.rotate(Vec::new(), 10).unwrap();
    let mut marked = store.read_object(&k, v1).unwrap().attrs;
    marked.set(A::FERRO_KEY_ID, AttrValue::Ulong(v1.0));
    marked.set(A::FERRO_KEY_VERSION, AttrValue::Ulong(1));
    let mut v2 = secret_key(b"wrap-key", b"w", b"VERSION-TWO-MATERIAL-0002", true);
    v2.set(A::FERRO_KEY_ID, AttrValue::Ulong(v1.0));
    v2.set(A::FERRO_KEY_VERSION, AttrValue::Ulong(2));
    let w = RingWrites {
        create: vec![v2],
        into_version: Some(2),
        update: vec![(v1, marked)],
        erase: Vec::new(),
        what: Some("rotate"),
    };
    let (ring, ids) = store.commit_ring(&k, ring, w).unwrap();
    assert_eq!(ring.version(2).unwrap().objects, ids);
    (store, k, v1, ring)
}

#[test]
fn a_rotation_writes_ring_objects_and_marks_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k, v1, ring) = rotated(dir.path());
    drop(store);
    let store = Store::open_dir(dir.path()).unwrap();
    let back = store.ring(&k, KeyId(v1.0)).unwrap().unwrap();
    assert_eq!(back, ring, "the ring survives a reopen as written");
    let new = back.version(2).unwrap().objects[0];
    let o = store.read_object(&k, new).unwrap();
    assert_eq!(
        o.attrs.bytes(A::VALUE),
        Some(&b"VERSION-TWO-MATERIAL-0002"[..])
    );
    let old = store.read_object(&k, v1).unwrap();
    assert_eq!(old.attrs.ulong(A::FERRO_KEY_VERSION), Some(1));
    assert_eq!(store.rings(&k).unwrap(), vec![back]);
}

#[test]
fn a_stale_transition_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k, v1, ring) = rotated(dir.path());
    let objects = store.all_objects(&k).unwrap();
    // Another writer's view from before the rotation: its seq no longer follows.
    let mut stale = ring.clone();
    stale.seq = 0;
    stale.disable(1).unwrap();
    let e = store
        .commit_ring(&k, stale, RingWrites::default())
        .unwrap_err();
    assert!(e.to_string().contains("changed meanwhile"), "{e}");
    assert_eq!(store.ring(&k, KeyId(v1.0)).unwrap().unwrap(), ring);
    assert_eq!(store.all_objects(&k).unwrap(), objects);
}

#[test]
fn a_ring_put_back_from_earlier_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k, v1, mut ring) = rotated(dir.path());
    let place = keys::meta::ring(k.token(), KeyId(v1.0));
    let enabled = store.backend().get(Cf::Meta, &place).unwrap().unwrap();
    ring.disable(1).unwrap();
    store.commit_ring(&k, ring, RingWrites::default()).unwrap();
    // The attack: the record from when version 1 was still enabled, put back.
    raw_put(&store, Cf::Meta, place, enabled);
    for reader in [
        store.ring(&k, KeyId(v1.0)).map(|_| ()),
        store.rings(&k).map(|_| ()),
    ] {
        let e = reader.unwrap_err();
        assert!(
            matches!(e, StoreError::Tampered { ref location } if location.contains("transition 2 happened")),
            "{e}"
        );
    }
}

#[test]
fn an_edited_ring_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k, v1, _) = rotated(dir.path());
    let place = keys::meta::ring(k.token(), KeyId(v1.0));
    let mut sealed = store.backend().get(Cf::Meta, &place).unwrap().unwrap();
    // A file writer flips a byte of the sealed record (say, to turn a state around).
    let mid = sealed.len() / 2;
    sealed[mid] ^= 0x40;
    raw_put(&store, Cf::Meta, place, sealed);
    let e = store.ring(&k, KeyId(v1.0)).unwrap_err();
    assert!(matches!(e, StoreError::Tampered { .. }), "{e}");
}

#[test]
fn an_erased_version_leaves_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k, v1, mut ring) = rotated(dir.path());
    let p = KeyPolicy {
        destroy_delay: 0,
        ..ring.policy
    };
    ring.set_policy(p, true).unwrap();
    let (mut ring, _) = store.commit_ring(&k, ring, RingWrites::default()).unwrap();
    let erase = ring.schedule_destroy(1, 20).unwrap();
    assert_eq!(erase, vec![v1]);
    let w = RingWrites {
        erase,
        ..RingWrites::default()
    };
    let (ring, _) = store.commit_ring(&k, ring, w).unwrap();
    assert!(matches!(
        ring.version(1).unwrap().state,
        VersionState::Destroyed { .. }
    ));
    assert!(matches!(
        store.read_object(&k, v1),
        Err(StoreError::ObjectNotFound(..))
    ));
    drop(store);
    let hits = files_containing(dir.path(), b"VERSION-ONE-MATERIAL-0001");
    assert!(hits.is_empty(), "{hits:?}");
    assert!(
        files_containing(dir.path(), b"VERSION-TWO").is_empty(),
        "sealed, never in clear"
    );
}

#[test]
fn reinitialising_the_token_drops_its_rings() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k, _, _) = rotated(dir.path());
    store
        .reinit_token(k.token(), &pin(SO_PIN), "fresh".into())
        .unwrap();
    let so = store.login(k.token(), UserKind::So, &pin(SO_PIN)).unwrap();
    assert!(store.rings(&so).unwrap().is_empty());
    let mut left = 0;
    store
        .backend()
        .scan_prefix(
            Cf::Meta,
            &keys::meta::ring_seq_prefix(k.token()),
            &mut |_, _| {
                left += 1;
                Ok(hsm_store::backend::Flow::Continue)
            },
        )
        .unwrap();
    assert_eq!(left, 0, "no transition marker survives");
}

#[test]
fn a_restored_store_keeps_every_version_and_its_deadline() {
    use hsm_store::archive::{self, BackupSecret, NoProgress};
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let (store, k, v1, mut ring) = rotated(&src);
    ring.schedule_destroy(1, 1_000).unwrap();
    let (ring, _) = store.commit_ring(&k, ring, RingWrites::default()).unwrap();
    drop(store);
    let pass = BackupSecret::Passphrase(hsm_types::SecretString::from("backup-passphrase"));
    let file = d.path().join("a.fhb");
    archive::create(
        &src,
        &file,
        &pass,
        hsm_store::KdfParams::BACKUP_MINIMUM,
        &NoProgress,
    )
    .unwrap();
    let dst = d.path().join("dst");
    archive::restore(&file, &pass, &dst, &NoProgress).unwrap();
    let b = Store::open_dir(&dst).unwrap();
    let k = b.login(k.token(), UserKind::User, &pin(USER_PIN)).unwrap();
    let back = b.ring(&k, KeyId(v1.0)).unwrap().unwrap();
    assert_eq!(back, ring, "every version, state and deadline");
    assert_eq!(
        back.version(1).unwrap().state,
        VersionState::DestroyScheduled {
            deadline: 1_000 + hsm_types::lifecycle::DEFAULT_DESTROY_DELAY
        }
    );
    for v in &back.versions {
        for o in &v.objects {
            b.read_object(&k, *o).unwrap();
        }
    }
}
