//! Black-box tests of dual control from the command line: a 2-of-3 rule on destroy, the
//! built `ferrohsm` driving a store held by a real `ferrohsm-server` (and then the store
//! itself after the server stopped), with approver keys made by openssl.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn openssl(args: &[&str]) {
    let o = Command::new("openssl").args(args).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

/// An approver's key pair: `NAME.pem` (private) and `NAME.pub.pem`.
fn approver_key(dir: &Path, name: &str) -> (String, String) {
    let private = dir.join(format!("{name}.pem")).display().to_string();
    let public = dir.join(format!("{name}.pub.pem")).display().to_string();
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &private]);
    openssl(&["pkey", "-in", &private, "-pubout", "-out", &public]);
    (private, public)
}

fn run(store: &Path, args: &[&str]) -> Output {
    let mut a = args.to_vec();
    a.extend(["--store", store.to_str().unwrap()]);
    ferrohsm(&a)
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn two_of_three_approvals_release_one_destroy_through_the_server() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let id = store_with_key(&store).to_string();
    let keys: Vec<_> = ["alice", "bob", "carol", "mallory"]
        .iter()
        .map(|n| approver_key(d.path(), n))
        .collect();
    let server = Server::start(d.path(), &store);

    for (name, (_, public)) in ["alice", "bob", "carol"].iter().zip(&keys) {
        let o = run(
            &store,
            &[
                "quorum",
                "add-approver",
                "--name",
                name,
                "--public-key",
                public,
                "--so-pin-env",
                "T_SO",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(
        &store,
        &[
            "quorum",
            "add-approver",
            "--name",
            "x",
            "--public-key",
            &keys[3].1,
            "--so-pin-env",
            "T_USER",
        ],
    );
    assert_eq!(
        code(&o),
        Some(4),
        "the user's PIN is not the SO's: {}",
        stderr(&o)
    );
    let o = run(
        &store,
        &[
            "quorum",
            "set",
            "--rule",
            "destroy=2",
            "--so-pin-env",
            "T_SO",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let destroy = || {
        ferrohsm(&[
            "key",
            "destroy",
            &id,
            "--version",
            "1",
            "--store",
            store.to_str().unwrap(),
            "--user-pin-env",
            "T_USER",
        ])
    };
    let o = destroy();
    assert_eq!(code(&o), Some(8), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs 2 approvals: request 1 is pending"),
        "{}",
        stderr(&o)
    );
    let list = json(&run(&store, &["approvals", "list", "--json"]));
    assert_eq!(list[0]["request"]["id"], 1);
    assert_eq!(list[0]["standing"]["Pending"]["approvals"], 0);

    let approve = |key: &str| run(&store, &["approvals", "approve", "1", "--key", key]);
    assert!(approve(&keys[0].0).status.success());
    let o = approve(&keys[0].0);
    assert_eq!(code(&o), Some(7), "twice by alice: {}", stderr(&o));
    let o = approve(&keys[3].0);
    assert_eq!(
        code(&o),
        Some(7),
        "mallory is not registered: {}",
        stderr(&o)
    );
    assert_eq!(code(&destroy()), Some(8), "one approval of two");
    let shown = run(&store, &["approvals", "show", "1"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("1/2: alice (#1)"), "{text}");
    assert!(
        text.contains(&format!("destroy key {id} version 1")),
        "{text}"
    );
    let o = approve(&keys[1].0);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("approved"),
        "{}",
        stderr(&o)
    );
    let o = destroy();
    assert!(o.status.success(), "approved: {}", stderr(&o));
    // Lowering the rule needs the quorum it guards.
    let o = run(
        &store,
        &[
            "quorum",
            "set",
            "--rule",
            "destroy=1",
            "--so-pin-env",
            "T_SO",
        ],
    );
    assert_eq!(code(&o), Some(8), "{}", stderr(&o));
    drop(server);

    // The store itself, the server gone: the spent request and the new one are there.
    let list = json(&run(&store, &["approvals", "list", "--json"]));
    let standing: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["standing"].as_object().map_or_else(
                || r["standing"].to_string(),
                |o| o.keys().next().unwrap().clone(),
            )
        })
        .collect();
    assert_eq!(standing, ["Used", "Pending"], "{list}");
    let shown = run(&store, &["quorum", "show"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("rule: destroy needs 2 approvals"), "{text}");
}
