//! Black-box tests of `ferrohsm key …`: the built binary on a real store, a key made
//! the way the module makes one, and its lifecycle driven from the command line; a
//! deadline is passed with the configuration's clock offset, not by waiting.

mod common;

use common::*;
use hsm_core::store::Store;
use std::path::Path;
use std::process::Output;

fn key(args: &[&str], store: &Path, extra: &[&str]) -> Output {
    let mut a = vec!["key"];
    a.extend(args);
    a.extend([
        "--store",
        store.to_str().unwrap(),
        "--user-pin-env",
        "T_USER",
    ]);
    a.extend(extra);
    ferrohsm(&a)
}

#[test]
fn rotate_disable_schedule_restore_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let id = store_with_key(&store).to_string();
    let listed = json(&key(&["list", "--json"], &store, &[]));
    assert_eq!(listed[0]["key"], id.parse::<u64>().unwrap());
    assert_eq!(listed[0]["label"], "payments");
    assert_eq!(listed[0]["stored"], false, "no transition yet");

    let ring = json(&key(&["rotate", &id, "--json"], &store, &[]));
    assert_eq!(ring["primary"], 2);
    let table = key(&["versions", &id], &store, &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("VERSION") && text.lines().count() == 3,
        "{text}"
    );

    // Version 1 disabled, then scheduled: its material stays until the deadline.
    json(&key(
        &["disable", &id, "--version", "1", "--json"],
        &store,
        &[],
    ));
    let ring = json(&key(
        &["destroy", &id, "--version", "1", "--json"],
        &store,
        &[],
    ));
    let deadline = ring["versions"][0]["state"]["DestroyScheduled"]["deadline"]
        .as_u64()
        .unwrap();
    // Destroying at once under a 30-day delay is refused, with the rule named: exit 7.
    let o = key(&["destroy", &id, "--version", "1", "--now"], &store, &[]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("destroy_delay"), "{}", stderr(&o));
    let ring = json(&key(
        &["restore", &id, "--version", "1", "--json"],
        &store,
        &[],
    ));
    assert_eq!(ring["versions"][0]["state"], "Disabled");

    // Offline inspection, no PIN: the object's history and its key version's state.
    let v = json(&ferrohsm(&[
        "inspect",
        "--store",
        store.to_str().unwrap(),
        "versions",
        &id,
        "--json",
    ]));
    assert_eq!(v["key_version"]["state"], "disabled", "{v}");
    assert_eq!(v["key_version"]["version"], 1);
    assert_eq!(v["key_version"]["primary"], false);
    // Scheduled again; with the clock moved past the deadline, the next command's sweep
    // erases it and a restore is refused.
    json(&key(
        &["destroy", &id, "--version", "1", "--json"],
        &store,
        &[],
    ));
    let conf = d.path().join("later.toml");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        &conf,
        format!(
            "store = {:?}\n[lifecycle]\nclock_offset_secs = {}\n",
            store,
            deadline - now + 3600
        ),
    )
    .unwrap();
    let later = ["--config", conf.to_str().unwrap()];
    let o = key(&["restore", &id, "--version", "1"], &store, &later);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let ring = json(&key(&["rotate", &id, "--json"], &store, &later));
    assert!(
        ring["versions"][0]["state"]["Destroyed"].is_object(),
        "{ring}"
    );
    assert_eq!(ring["versions"][0]["objects"], serde_json::json!([]));
    assert_eq!(ring["primary"], 3);
    // The erased version's object is gone from the store.
    let s = Store::open_dir(&store).unwrap();
    let k = login(&s);
    assert!(
        s.read_object(&k, hsm_core::types::ObjectId(id.parse().unwrap()))
            .is_err()
    );
}

#[test]
fn bad_requests_name_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let id = store_with_key(&store).to_string();
    let o = key(&["enable", &id, "--version", "1"], &store, &[]);
    assert_eq!(o.status.code(), Some(7));
    assert!(
        stderr(&o).contains("version 1 is enabled"),
        "{}",
        stderr(&o)
    );
    let o = key(&["rollback", &id, "--version", "9"], &store, &[]);
    assert_eq!(o.status.code(), Some(7));
    assert!(stderr(&o).contains("no version 9"), "{}", stderr(&o));
    let o = key(&["rotate", "999"], &store, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("no such key") || stderr(&o).contains("not found"),
        "{}",
        stderr(&o)
    );
    let o = key(&["policy", &id, "--destroy-delay", "0"], &store, &[]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("allow_immediate_destroy"),
        "{}",
        stderr(&o)
    );
    let o = ferrohsm(&[
        "key",
        "list",
        "--store",
        store.to_str().unwrap(),
        "--user-pin-env",
        "NOPE",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The store held by a running `ferrohsm-server`: `ferrohsm key` goes through it.
#[test]
fn through_a_running_server_when_the_store_is_held() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let id = store_with_key(&store).to_string();
    let server = Server::start(d.path(), &store);
    // The store is held: an embedded open would fail; the command goes to the server.
    assert!(Store::open_dir(&store).is_err());
    let ring = json(&key(&["rotate", &id, "--json"], &store, &[]));
    assert_eq!(ring["primary"], 2);
    let listed = json(&key(&["list", "--json"], &store, &[]));
    assert_eq!(listed[0]["stored"], true);
    let o = key(&["enable", &id, "--version", "2"], &store, &[]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "refusals keep their code: {}",
        stderr(&o)
    );
    let o = ferrohsm(&[
        "key",
        "list",
        "--store",
        store.to_str().unwrap(),
        "--user-pin-env",
        "T_SO",
    ]);
    assert_eq!(o.status.code(), Some(4), "a wrong PIN: {}", stderr(&o));
    drop(server);
    let s = Store::open_dir(&store).unwrap();
    let k = login(&s);
    let r = s.rings(&k).unwrap();
    assert_eq!(
        (r.len(), r[0].primary),
        (1, Some(2)),
        "the server wrote the ring"
    );
}
