//! `ferrohsm audit …` against real stores: an untouched log verifies and reads back, and
//! each way of tampering with it on disk — a record edited, deleted, moved, the log cut
//! short, a checkpoint forged, the whole log rolled back to an older copy — is caught by
//! `audit verify` (exit 5) with a message naming what and where.

mod common;

use common::*;
use hsm_core::store::Store;
use hsm_core::store::backend::{self, Batch, KvBackend, OpenMode};
use hsm_core::store::cf::Cf;
use hsm_core::store::keys;
use hsm_core::types::{AttrValue, AttributeSet, AttributeType as A, ObjectId, TokenId};
use std::path::Path;

/// A store whose log holds the token's creation, the key's, then `n` label changes, with
/// a checkpoint signed over all of them.
fn audited_store(dir: &Path, n: usize) -> u64 {
    let key = store_with_key(dir);
    let s = Store::open_dir(dir).unwrap();
    let k = login(&s);
    for i in 0..n {
        let mut a = s.read_object(&k, ObjectId(key)).unwrap().attrs;
        a.set(
            A::LABEL,
            AttrValue::Bytes(format!("payments-{i}").into_bytes()),
        );
        s.update_object(&k, ObjectId(key), a).unwrap();
    }
    s.audit_checkpoint(&k).unwrap();
    key
}

fn verify(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "verify", "--store", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    ferrohsm(&args)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `f` on the store's raw families (what someone with the files can do).
fn tamper(dir: &Path, f: impl FnOnce(&dyn KvBackend)) {
    let kv = backend::open_dir(dir, OpenMode::ReadWrite).unwrap();
    f(kv.as_ref());
}

fn record(kv: &dyn KvBackend, seq: u64) -> Vec<u8> {
    kv.get(Cf::Audit, &keys::audit::record(TokenId(1), seq))
        .unwrap()
        .expect("the record exists")
}

fn put(kv: &dyn KvBackend, cf: Cf, k: Vec<u8>, v: Vec<u8>) {
    let mut b = Batch::new();
    b.put(cf, k, v);
    kv.write(b).unwrap();
}

fn caught(o: &std::process::Output, what: &str) {
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(o), stderr(o));
    assert!(stdout(o).contains(what), "{what:?} not in:\n{}", stdout(o));
}

#[test]
fn an_untouched_log_verifies_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    audited_store(&store, 3);
    let s = store.to_str().unwrap();
    let o = verify(&store, &[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok"), "{}", stdout(&o));

    let tail = json(&ferrohsm(&[
        "--json", "audit", "tail", "--store", s, "-n", "3",
    ]));
    let ops: Vec<&str> = tail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["object.update"; 3]);
    let first = json(&ferrohsm(&["--json", "audit", "show", "--store", s, "0"]));
    assert_eq!(first[0]["op"], "token.init");
    assert_eq!(first[0]["actor"]["role"], "cli");
    assert_eq!(first[0]["call"], "ferrohsm token init");
    let export = ferrohsm(&["audit", "export", "--store", s, "--from", "1"]);
    assert!(export.status.success(), "{}", stderr(&export));
    let lines: Vec<serde_json::Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["seq"], 1);
    assert!(lines.iter().any(|r| r["op"] == "object.create"));

    // The keys saved elsewhere verify it too; another token's keys do not.
    let keys = ferrohsm(&["--json", "audit", "keys", "--store", s]);
    let key_file = dir.path().join("keys.json");
    std::fs::write(&key_file, &keys.stdout).unwrap();
    let o = verify(&store, &["--keys", key_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stdout(&o));
    let other = dir.path().join("other");
    audited_store(&other, 0);
    let foreign = ferrohsm(&[
        "--json",
        "audit",
        "keys",
        "--store",
        other.to_str().unwrap(),
    ]);
    std::fs::write(&key_file, &foreign.stdout).unwrap();
    caught(
        &verify(&store, &["--keys", key_file.to_str().unwrap()]),
        "not signed by the audit key",
    );
}

#[test]
fn an_edited_record_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    audited_store(&store, 3);
    tamper(&store, |kv| {
        let mut r = hsm_core::store::audit::decode_record(&record(kv, 2)).unwrap();
        r.op = "object.read".into();
        let bytes = rmp_serde::to_vec_named(&r).unwrap();
        put(kv, Cf::Audit, keys::audit::record(TokenId(1), 2), bytes);
    });
    caught(
        &verify(&store, &[]),
        "do not give the root their checkpoint signed",
    );
}

#[test]
fn a_deleted_record_is_caught_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    audited_store(&store, 3);
    tamper(&store, |kv| {
        let mut b = Batch::new();
        b.delete(Cf::Audit, keys::audit::record(TokenId(1), 2));
        kv.write(b).unwrap();
    });
    caught(&verify(&store, &[]), "record 2 says it is record 3");
}

#[test]
fn moved_records_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    audited_store(&store, 3);
    tamper(&store, |kv| {
        let (a, b) = (record(kv, 2), record(kv, 3));
        put(kv, Cf::Audit, keys::audit::record(TokenId(1), 2), b);
        put(kv, Cf::Audit, keys::audit::record(TokenId(1), 3), a);
    });
    caught(&verify(&store, &[]), "record 2 says it is record 3");
}

#[test]
fn a_log_cut_short_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    audited_store(&store, 3);
    let size = Store::open_dir_read_only(&store)
        .unwrap()
        .audit_size(TokenId(1))
        .unwrap();
    tamper(&store, |kv| {
        let mut b = Batch::new();
        b.delete(Cf::Audit, keys::audit::record(TokenId(1), size - 1));
        kv.write(b).unwrap();
    });
    let o = verify(&store, &[]);
    caught(&o, "records were cut off its end");
    assert!(stdout(&o).contains("the log head says"), "{}", stdout(&o));
}

#[test]
fn a_forged_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    audited_store(&store, 3);
    let (size, note) = Store::open_dir_read_only(&store)
        .unwrap()
        .audit_checkpoints(TokenId(1))
        .unwrap()
        .pop()
        .unwrap();
    tamper(&store, |kv| {
        // Claim more records than were signed: the signature no longer holds.
        let forged = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 9), 1);
        put(
            kv,
            Cf::Audit,
            keys::audit::checkpoint(TokenId(1), size),
            forged.into_bytes(),
        );
    });
    // The finding names the checkpoint by the size it claims.
    caught(
        &verify(&store, &[]),
        &format!("checkpoint at size {} is not signed", size + 9),
    );
}

#[test]
fn a_log_rolled_back_to_an_older_copy_is_caught_by_a_pinned_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let key = audited_store(&store, 1);
    // An old but genuine copy of the whole store, self-consistent and signed.
    let old = dir.path().join("old");
    copy_dir(&store, &old);
    {
        let s = Store::open_dir(&store).unwrap();
        let k = login(&s);
        let mut a: AttributeSet = s.read_object(&k, ObjectId(key)).unwrap().attrs;
        a.set(A::LABEL, AttrValue::Bytes(b"after the copy".to_vec()));
        s.update_object(&k, ObjectId(key), a).unwrap();
    }
    let sign = ferrohsm(&[
        "audit",
        "checkpoint",
        "--store",
        store.to_str().unwrap(),
        "--sign",
        "--pin-env",
        "T_USER",
    ]);
    assert!(sign.status.success(), "{}", stderr(&sign));
    let pinned = dir.path().join("pinned.txt");
    std::fs::write(&pinned, &sign.stdout).unwrap();
    let p = pinned.to_str().unwrap();
    let o = verify(&store, &["--pinned", p]);
    assert!(o.status.success(), "{}", stdout(&o));
    // The attacker puts the old copy back: on its own it verifies...
    std::fs::remove_dir_all(&store).unwrap();
    copy_dir(&old, &store);
    assert!(verify(&store, &[]).status.success());
    // ...but not against what the operator pinned.
    caught(&verify(&store, &["--pinned", p]), "the log was rolled back");
}

#[test]
fn search_finds_the_records_a_test_made() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let key = audited_store(&store, 3);
    {
        let s = Store::open_dir(&store).unwrap();
        let wrong = s.login(
            TokenId(1),
            hsm_core::types::UserKind::User,
            &hsm_core::types::SecretString::from("not-the-pin"),
        );
        assert!(wrong.is_err());
    }
    let index = dir.path().join("index");
    let search = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "audit",
            "search",
            "--store",
            store.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let found = json(&ferrohsm(&args));
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["seq"].as_u64().unwrap(),
                    r["op"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let updates = search(&["--op", "object.update"]);
    assert_eq!(updates.len(), 3, "{updates:?}");
    let k = key.to_string();
    let of_the_key = search(&["--object", &k, "--from", "1h"]);
    assert_eq!(
        of_the_key.len(),
        4,
        "created and changed three times: {of_the_key:?}"
    );
    let refused = search(&["--failed"]);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].1, "login.user");
    assert_eq!(search(&["--result", "0xa0", "--role", "local"]), refused);
    assert!(
        search(&["--until", "1h"]).is_empty(),
        "nothing is an hour old"
    );
    // The index follows the log as it grows.
    {
        let s = Store::open_dir(&store).unwrap();
        let k = login(&s);
        s.destroy_object(&k, ObjectId(key)).unwrap();
    }
    assert_eq!(search(&["--op", "object.destroy"]).len(), 1);
    let bad = ferrohsm(&[
        "audit",
        "search",
        "--store",
        store.to_str().unwrap(),
        "--from",
        "soon",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "ferrohsm.lock" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
