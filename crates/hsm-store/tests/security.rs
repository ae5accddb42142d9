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

#[test]
fn thirty_two_wrong_pins_at_once_are_at_most_max_failures_guesses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store); // max_failures = 5
    let barrier = std::sync::Barrier::new(32);
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    store.login(t, UserKind::User, &pin("wrong-pin")).err()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let tried = answers
        .iter()
        .filter(|e| matches!(e, Some(StoreError::PinIncorrect { .. })))
        .count();
    let locked = answers
        .iter()
        .filter(|e| matches!(e, Some(StoreError::PinLocked)))
        .count();
    assert_eq!((tried, locked), (5, 27), "{answers:?}");
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 5);
    assert!(matches!(
        store.login(t, UserKind::User, &pin(USER_PIN)),
        Err(StoreError::PinLocked)
    ));
}

// ------------------------------------------------------------------ a file writer's attacks
//
// What someone who can write the store's files but knows no PIN can do: the token record
// holds the public-record key in clear, so headers and public objects can be opened and
// re-sealed exactly as the store does. These helpers do that, through the documented
// scheme (schema/sealing.md), and the tests check the token refuses the result.

use hsm_store::crypto::{self, Key32, Purpose};
use hsm_store::records::{self, AttributesBody, ObjectHeader, TokenRecord};

/// The public-record key's derivations and the token's generation, from the clear record.
fn attacker_keys(store: &Store, t: TokenId) -> (Key32, Key32, u64) {
    let raw = store
        .backend()
        .get(Cf::Meta, &keys::meta::token(t))
        .unwrap()
        .unwrap();
    let rec: TokenRecord = records::decode(&raw, String::new).unwrap();
    let public = Key32::from_bytes(&rec.public_key).unwrap();
    (
        public.derive(b"header"),
        public.derive(b"public-wrap"),
        rec.generation as u64,
    )
}

fn forge_header(store: &Store, t: TokenId, o: ObjectId, edit: impl FnOnce(&mut ObjectHeader)) {
    let (header_key, _, generation) = attacker_keys(store, t);
    let aad = crypto::aad(
        Purpose::Header,
        &store.store_id(),
        &[t.0 as u64, generation, o.0],
    );
    let k = keys::object(t, o);
    let sealed = store.backend().get(Cf::Objects, &k).unwrap().unwrap();
    let plain = crypto::open(&header_key, &aad, &sealed, String::new).unwrap();
    let mut h: ObjectHeader = records::decode(&plain, String::new).unwrap();
    edit(&mut h);
    let forged = crypto::seal(&header_key, &aad, &records::encode(&h)).unwrap();
    raw_put(store, Cf::Objects, k, forged);
}

/// Re-seals the readable attributes of a public object's current version.
fn forge_public_attrs(
    store: &Store,
    t: TokenId,
    o: ObjectId,
    edit: impl FnOnce(&mut hsm_types::AttributeSet),
) {
    let (header_key, public_wrap, generation) = attacker_keys(store, t);
    let id = store.store_id();
    let place = [t.0 as u64, generation, o.0];
    let sealed = store
        .backend()
        .get(Cf::Objects, &keys::object(t, o))
        .unwrap()
        .unwrap();
    let plain = crypto::open(
        &header_key,
        &crypto::aad(Purpose::Header, &id, &place),
        &sealed,
        String::new,
    )
    .unwrap();
    let h: ObjectHeader = records::decode(&plain, String::new).unwrap();
    let ok = crypto::unwrap(
        &public_wrap,
        &crypto::aad(Purpose::WrapObjectKey, &id, &place),
        &h.wrapped_object_key,
        String::new,
    )
    .unwrap();
    let v = VersionNo(h.current);
    let attrs_aad = crypto::aad(
        Purpose::Attributes,
        &id,
        &[t.0 as u64, generation, o.0, v.0 as u64],
    );
    let k = keys::version(t, o, v);
    let rec = store.backend().get(Cf::Attributes, &k).unwrap().unwrap();
    let plain = crypto::open(&ok, &attrs_aad, &rec, String::new).unwrap();
    let mut body: AttributesBody = records::decode(&plain, String::new).unwrap();
    let mut attrs = hsm_types::AttributeSet::decode(&body.attrs).unwrap();
    edit(&mut attrs);
    body.attrs = attrs.encode();
    let forged = crypto::seal(&ok, &attrs_aad, &records::encode(&body)).unwrap();
    raw_put(store, Cf::Attributes, k, forged);
}

fn tampered(r: hsm_store::Result<hsm_store::StoredObject>) -> String {
    match r {
        Err(e @ StoreError::Tampered { .. }) => e.to_string(),
        other => panic!("expected a tampered-record refusal, got {other:?}"),
    }
}

#[test]
fn an_old_header_put_back_is_refused() {
    let (_d, store, k, a, _) = setup_two_objects();
    let t = k.token();
    // The same for a private key and for a public key holding key material.
    let public = store
        .create_object(&k, secret_key(b"p", b"p", b"value-p", false))
        .unwrap();
    for o in [a, public] {
        let old = store
            .backend()
            .get(Cf::Objects, &keys::object(t, o))
            .unwrap()
            .unwrap();
        let private = o == a;
        store
            .update_object(&k, o, secret_key(b"renamed", b"x", b"value-x", private))
            .unwrap();
        raw_put(&store, Cf::Objects, keys::object(t, o), old);
        let msg = tampered(store.read_object(&k, o));
        assert!(msg.contains("version 1 but version 2 exists"), "{msg}");
        // Nor can the replayed state be changed on from.
        assert!(matches!(
            store.update_object(&k, o, secret_key(b"again", b"x", b"v", private)),
            Err(StoreError::Tampered { .. })
        ));
    }
}

#[test]
fn a_forged_or_stripped_header_is_refused() {
    let (_d, store, k, a, _) = setup_two_objects();
    let t = k.token();
    store
        .update_object(&k, a, secret_key(b"a2", b"a", b"value-a", true))
        .unwrap();
    // Point the header back at version 1 and delete version 2's records: the binding,
    // made over version 2's record with the master key, no longer verifies.
    forge_header(&store, t, a, |h| h.current = 1);
    let mut b = hsm_store::backend::Batch::new();
    b.delete(Cf::Versions, keys::version(t, a, VersionNo(2)));
    b.delete(Cf::Attributes, keys::version(t, a, VersionNo(2)));
    store.backend().write(b).unwrap();
    let msg = tampered(store.read_object(&k, a));
    assert!(msg.contains("binding"), "{msg}");
    // Dropping the binding altogether is no way round it: private objects need one.
    forge_header(&store, t, a, |h| h.binding = None);
    let msg = tampered(store.read_object(&k, a));
    assert!(msg.contains("binding"), "{msg}");
}

#[test]
fn a_file_writer_cannot_flip_the_flags_or_trust_of_a_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    // A public secret key: readable attributes under the public keys, the value sealed
    // under the master key.
    let key = store
        .create_object(&k, secret_key(b"pub", b"pub", b"value-pub", false))
        .unwrap();
    forge_public_attrs(&store, t, key, |a| {
        a.set(A::SENSITIVE, hsm_types::AttrValue::Bool(false));
        a.set(A::EXTRACTABLE, hsm_types::AttrValue::Bool(true));
    });
    let msg = tampered(store.read_object(&k, key));
    assert!(msg.contains("binding"), "{msg}");
    // Putting the key material among the readable attributes is refused too.
    let key2 = store
        .create_object(&k, secret_key(b"pub2", b"pub2", b"value-2", false))
        .unwrap();
    forge_public_attrs(&store, t, key2, |a| {
        a.set(
            A::VALUE,
            hsm_types::AttrValue::Bytes(b"attacker-known".to_vec()),
        )
    });
    tampered(store.read_object(&k, key2));
    // A public object without key material becomes "trusted": refused with the master
    // key, binding or not.
    let cert = store
        .create_object(&k, data_object(b"d", b"data", false))
        .unwrap();
    forge_public_attrs(&store, t, cert, |a| {
        a.set(A::LABEL, hsm_types::AttrValue::Bytes(b"edited".to_vec()))
    });
    tampered(store.read_object(&k, cert));
    forge_header(&store, t, cert, |h| h.binding = None);
    assert_eq!(
        store.read_object(&k, cert).unwrap().attrs.label(),
        Some(&b"edited"[..]),
        "an ordinary public object is as public to write as to read (schema/sealing.md)"
    );
    forge_public_attrs(&store, t, cert, |a| {
        a.set(A::TRUSTED, hsm_types::AttrValue::Bool(true))
    });
    tampered(store.read_object(&k, cert));
}

#[test]
fn tightening_a_one_way_attribute_removes_the_weaker_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let weak = secret_key(b"k", b"k", b"value-k", true)
        .with(A::SENSITIVE, hsm_types::AttrValue::Bool(false));
    let o = store.create_object(&k, weak.clone()).unwrap();
    store
        .update_object(&k, o, weak.clone().with(A::LABEL, bytes(b"k2")))
        .unwrap();
    let old_header = store
        .backend()
        .get(Cf::Objects, &keys::object(t, o))
        .unwrap()
        .unwrap();
    let old_record = store
        .backend()
        .get(Cf::Attributes, &keys::version(t, o, VersionNo(2)))
        .unwrap()
        .unwrap();
    store
        .update_object(
            &k,
            o,
            weak.with(A::SENSITIVE, hsm_types::AttrValue::Bool(true)),
        )
        .unwrap();
    for v in [1, 2] {
        assert!(
            matches!(
                store.read_version(&k, o, VersionNo(v)),
                Err(StoreError::VersionNotFound(..))
            ),
            "version {v} (CKA_SENSITIVE = FALSE) is gone"
        );
    }
    assert_eq!(store.versions(&k, o).unwrap().len(), 3, "the history stays");
    // The attack: the old header back, the newer version's records deleted. The record
    // it points at is no longer anywhere.
    raw_put(&store, Cf::Objects, keys::object(t, o), old_header);
    let mut b = hsm_store::backend::Batch::new();
    b.delete(Cf::Versions, keys::version(t, o, VersionNo(3)));
    b.delete(Cf::Attributes, keys::version(t, o, VersionNo(3)));
    store.backend().write(b).unwrap();
    assert!(store.read_object(&k, o).is_err());
    // Not in any file either (the purge compacted the range; the WAL was flushed).
    drop(store);
    for f in all_files(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(old_record.len()).any(|w| w == old_record),
            "{} still holds the weaker version's record",
            f.display()
        );
    }
}

#[test]
fn a_store_whose_version_was_lowered_is_refused_and_not_rebound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    store
        .create_object(&k, secret_key(b"a", b"a", b"value-a", true))
        .unwrap();
    raw_put(
        &store,
        Cf::Meta,
        keys::meta::SCHEMA_VERSION.to_vec(),
        1u32.to_be_bytes().to_vec(),
    );
    drop(k);
    drop(store);
    assert!(matches!(
        Store::open_dir(dir.path()),
        Err(StoreError::Migration { from: 1, .. })
    ));
    let kv = hsm_store::backend::rocks::RocksBackend::open(
        dir.path(),
        hsm_store::backend::rocks::OpenMode::ReadWrite,
    )
    .unwrap();
    let e = Store::upgrade_with_so_pin(Box::new(kv), &pin(SO_PIN))
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("already carries a schema-2 binding"),
        "{e}"
    );
}
