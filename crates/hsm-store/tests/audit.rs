//! The audit log in the store, on RocksDB: every change is a record in its own batch, in
//! order, under signed checkpoints that verify; a required log fails closed; the levels
//! record what they say; a re-initialised token keeps its log under a new key; and no
//! record carries a label or a PIN.

mod common;

use common::*;
use hsm_store::audit::{AuditLevel, AuditSettings, Event, decode_record};
use hsm_store::backend::{Batch, Flow};
use hsm_store::cf::Cf;
use hsm_store::{Store, StoreError};
use hsm_types::audit::{AuditRecord, Finding, ckr};
use hsm_types::{TokenId, UserKind, VersionNo};

fn records(store: &Store, token: TokenId) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    store
        .audit_records(token, 0, &mut |_, bytes| {
            out.push(decode_record(bytes)?);
            Ok(Flow::Continue)
        })
        .unwrap();
    out
}

fn ops(store: &Store, token: TokenId) -> Vec<String> {
    records(store, token).into_iter().map(|r| r.op).collect()
}

#[test]
fn every_change_is_a_record_in_order_and_the_log_verifies() {
    let (store, _dir) = store(Kind::Rocks);
    let t = new_token(&store);
    // The token's creation is record 0, and its first checkpoint is signed with it.
    assert_eq!(store.audit_checkpoints(t).unwrap().len(), 1);
    assert_eq!(store.audit_public_keys(t).unwrap().len(), 1);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let id = store
        .create_object(&k, secret_key(b"payroll", b"k1", b"v1", true))
        .unwrap();
    store
        .update_object(&k, id, secret_key(b"payroll", b"k1", b"v2", true))
        .unwrap();
    store.rollback(&k, id, VersionNo(1)).unwrap();
    store.destroy_object(&k, id).unwrap();
    assert!(matches!(
        store.login(t, UserKind::User, &pin("wrong-pin")),
        Err(StoreError::PinIncorrect { .. })
    ));
    assert_eq!(
        ops(&store, t),
        [
            "token.init",
            "login.user",
            "object.create",
            "object.update",
            "object.rollback",
            "object.destroy",
            "login.user"
        ]
    );
    let recs = records(&store, t);
    assert!(recs.iter().enumerate().all(|(i, r)| r.seq == i as u64));
    assert_eq!(recs[2].object, Some(id.0));
    assert_eq!(recs[3].version, Some(2));
    assert_eq!(recs[4].version, Some(3));
    assert_eq!(recs[6].result, ckr::PIN_INCORRECT);
    assert!(
        recs.iter()
            .all(|r| r.boot == store.boot() && r.actor.role == "local")
    );

    // A checkpoint over all of it, then verification: with the store's key and with the
    // key the operator exported, and not with another token's key.
    let note = store.audit_checkpoint(&k).unwrap();
    assert!(note.contains(&format!("\n{}\n", recs.len())), "{note}");
    let v = store.verify_audit(t, None, Some(&note)).unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.report.latest_good, Some(recs.len() as u64));
    let exported: Vec<Vec<u8>> = store
        .audit_public_keys(t)
        .unwrap()
        .into_iter()
        .map(|k| k.public)
        .collect();
    assert!(store.verify_audit(t, Some(&exported), None).unwrap().ok());
    let other = new_token(&store);
    let foreign: Vec<Vec<u8>> = vec![store.audit_public_keys(other).unwrap()[0].public.clone()];
    let v = store.verify_audit(t, Some(&foreign), None).unwrap();
    assert!(!v.ok());
    assert!(
        v.report
            .findings
            .iter()
            .all(|f| matches!(f, Finding::BadSignature { .. }))
    );
}

#[test]
fn a_required_log_fails_closed_and_an_optional_one_counts_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let t = {
        let store = Store::open_dir(dir.path()).unwrap();
        let t = new_token(&store);
        // Damage the log head: no record can be appended after it.
        let mut b = Batch::new();
        let mut head_key = vec![0x09];
        head_key.extend_from_slice(&t.0.to_be_bytes());
        b.put(Cf::Meta, head_key, b"not a head".to_vec());
        store.backend().write(b).unwrap();
        t
    };
    let store = Store::open_dir(dir.path()).unwrap();
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let before = store.object_count(t).unwrap();

    store.set_audit(AuditSettings {
        required: true,
        ..AuditSettings::default()
    });
    let refused = store.create_object(&k, secret_key(b"x", b"1", b"v", true));
    assert!(
        matches!(refused, Err(StoreError::AuditUnavailable(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.object_count(t).unwrap(),
        before,
        "nothing was written"
    );

    store.set_audit(AuditSettings::default());
    let failures = store.audit_stats().failures;
    store
        .create_object(&k, secret_key(b"x", b"1", b"v", true))
        .unwrap();
    assert_eq!(store.object_count(t).unwrap(), before + 1);
    assert_eq!(store.audit_stats().failures, failures + 1);
}

#[test]
fn levels_record_what_they_say_and_uses_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t = {
        let store = Store::open_dir(dir.path()).unwrap();
        let t = new_token(&store);
        let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
        let size = store.audit_size(t).unwrap();
        let sign = || Event::new("key.sign").mechanism(Some(0x1041));
        store.audit_use(&k, sign()).unwrap();
        assert_eq!(store.audit_size(t).unwrap(), size, "management: no use");
        store.set_audit(AuditSettings {
            level: AuditLevel::Off,
            ..AuditSettings::default()
        });
        store
            .create_object(&k, secret_key(b"quiet", b"1", b"v", true))
            .unwrap();
        assert_eq!(store.audit_size(t).unwrap(), size, "off: nothing");
        store.set_audit(AuditSettings {
            level: AuditLevel::All,
            ..AuditSettings::default()
        });
        for _ in 0..50 {
            store.audit_use(&k, sign()).unwrap();
        }
        assert_eq!(store.audit_size(t).unwrap(), size + 50);
        t
    };
    let store = Store::open_dir(dir.path()).unwrap();
    let recs = records(&store, t);
    let uses: Vec<_> = recs.iter().filter(|r| r.op == "key.sign").collect();
    assert_eq!(uses.len(), 50);
    assert!(uses.iter().all(|r| r.mechanism == Some(0x1041)));
    // The reopen raised the boot counter.
    assert!(store.boot() > recs.last().unwrap().boot);
    assert!(store.verify_audit(t, None, None).unwrap().ok());
}

#[test]
fn a_reinitialised_token_keeps_its_log_under_a_new_key() {
    let (store, _dir) = store(Kind::Rocks);
    let t = new_token(&store);
    store
        .reinit_token(t, &pin(SO_PIN), "second life".into())
        .unwrap();
    let so = store.login(t, UserKind::So, &pin(SO_PIN)).unwrap();
    store.audit_checkpoint(&so).unwrap();
    assert_eq!(ops(&store, t), ["token.init", "token.reinit", "login.so"]);
    let keys = store.audit_public_keys(t).unwrap();
    assert_eq!(keys.len(), 2, "one key per generation");
    assert_ne!(keys[0].public, keys[1].public);
    let v = store.verify_audit(t, None, None).unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.report.checkpoints, 3);
}

#[test]
fn no_record_holds_a_label_or_a_pin() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let _ = store.login(t, UserKind::User, &pin("wrong-pin-value"));
    store
        .create_object(
            &k,
            secret_key(b"private-label-xyz", b"id-77", b"key-bytes-q", true),
        )
        .unwrap();
    store.audit_checkpoint(&k).unwrap();
    let mut all = Vec::new();
    store
        .audit_records(t, 0, &mut |_, v| {
            all.extend_from_slice(v);
            Ok(Flow::Continue)
        })
        .unwrap();
    for needle in [
        &b"private-label-xyz"[..],
        b"id-77",
        b"key-bytes-q",
        USER_PIN.as_bytes(),
        b"wrong-pin-value",
    ] {
        assert!(
            !all.windows(needle.len()).any(|w| w == needle),
            "a record holds {:?}",
            String::from_utf8_lossy(needle)
        );
    }
}
