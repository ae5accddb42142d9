//! Crash test: a child process creates, changes, rolls back and destroys objects and
//! records wrong-PIN attempts on a real RocksDB store, printing a line after each
//! operation returns (the acknowledgement); the audit log runs at level `all`, so it also
//! records uses of a key (group commit: written at once, fsynced by a thread of the
//! store's). The parent kills it with SIGKILL at a random
//! moment, reopens the store, and checks that every acknowledged operation is there,
//! none is half-applied, destroyed objects stay gone and the indexes agree.
//!
//! `FERROHSM_CRASH_ITERATIONS` sets the number of kills (default 200).

mod common;

use common::*;
use hsm_store::{Query, Store};
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, ObjectClass, ObjectId, TokenId, UserKind,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: TokenId = TokenId(1);

fn attrs(nonce: u64, generation: u64) -> AttributeSet {
    AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
        .with(
            A::KEY_TYPE,
            AttrValue::Ulong(hsm_types::KeyType::GENERIC_SECRET.0),
        )
        .with(A::PRIVATE, AttrValue::Bool(!nonce.is_multiple_of(3)))
        .with(A::ID, bytes(&nonce.to_be_bytes()))
        .with(
            A::LABEL,
            bytes(format!("obj-{nonce}-gen-{generation}").as_bytes()),
        )
        .with(A::APPLICATION, bytes(&generation.to_be_bytes()))
        .with(A::VALUE, bytes(format!("secret-{nonce}").as_bytes()))
}

fn generation_of(a: &AttributeSet) -> u64 {
    u64::from_be_bytes(a.bytes(A::APPLICATION).unwrap().try_into().unwrap())
}

fn nonce_of(a: &AttributeSet) -> u64 {
    u64::from_be_bytes(a.id().unwrap().try_into().unwrap())
}

/// The child: endless random operations, one acknowledgement line after each.
#[test]
fn crash_child_worker() {
    let Ok(dir) = std::env::var("FERROHSM_CRASH_DIR") else {
        return;
    };
    let seed: u64 = std::env::var("FERROHSM_CRASH_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let store = Store::open_dir(std::path::Path::new(&dir)).unwrap();
    if store.tokens().unwrap().is_empty() {
        let mut s = spec("crash");
        s.pin_policy.max_failures = 1_000_000;
        store.init_token(s).unwrap();
    }
    let k = store.login(TOKEN, UserKind::User, &pin(USER_PIN)).unwrap();
    store.set_audit(hsm_store::audit::AuditSettings {
        level: hsm_store::audit::AuditLevel::All,
        ..Default::default()
    });
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "@@ READY").unwrap();
    out.flush().unwrap();
    loop {
        let live = store.find(&k, &Query::default()).unwrap();
        let roll = next() % 100;
        let line = if live.is_empty() || roll < 35 {
            let nonce = next() >> 1;
            let id = store.create_object(&k, attrs(nonce, 0)).unwrap();
            format!("C {} {nonce}", id.0)
        } else if roll < 65 {
            let id = live[(next() as usize) % live.len()];
            let cur = store.read_object(&k, id).unwrap();
            let g = generation_of(&cur.attrs) + 1;
            let v = store
                .update_object(&k, id, attrs(nonce_of(&cur.attrs), g))
                .unwrap();
            format!("U {} {} {g}", id.0, v.0)
        } else if roll < 75 {
            let id = live[(next() as usize) % live.len()];
            let v = store.rollback(&k, id, hsm_types::VersionNo(1)).unwrap();
            format!("R {} {}", id.0, v.0)
        } else if roll < 85 {
            let id = live[(next() as usize) % live.len()];
            store.destroy_object(&k, id).unwrap();
            format!("D {}", id.0)
        } else if roll < 92 {
            store
                .audit_use(&k, hsm_store::audit::Event::new("key.sign"))
                .unwrap();
            "S".to_string()
        } else {
            match store.login(TOKEN, UserKind::User, &pin("wrong-pin")) {
                Err(hsm_store::StoreError::PinIncorrect { failures, .. }) => {
                    format!("P {failures}")
                }
                other => panic!("wrong PIN answered {other:?}"),
            }
        };
        writeln!(out, "@@ {line}").unwrap();
        out.flush().unwrap();
    }
}

#[derive(Debug, Clone)]
struct Expect {
    nonce: u64,
    version: u32,
    generation: u64,
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_operation() {
    let iterations: u32 = std::env::var("FERROHSM_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<u64, Expect> = BTreeMap::new();
    let mut destroyed: Vec<u64> = Vec::new();
    let mut rng: u64 = 0x9e3779b97f4a7c15 ^ std::process::id() as u64;
    let mut total_acks = 0usize;
    let mut acked_pin_failures = 0u64;
    let mut acked_uses = 0u64;
    for iter in 0..iterations {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child_worker",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FERROHSM_CRASH_DIR", dir.path())
            .env("FERROHSM_CRASH_SEED", rng.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    // Only the child's own lines, which start with "@@ " (the test harness
                    // may print its banner on the same line).
                    Ok(l) => {
                        if let Some(pos) = l.find("@@ ")
                            && tx.send(l[pos + 3..].to_owned()).is_err()
                        {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        // Wait until the child is working, then let it run 5-120 ms before the kill.
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l == "READY" => {}
            Ok(other) => panic!("iteration {iter}: child printed {other:?} before READY"),
            Err(e) => panic!("iteration {iter}: child never got ready: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5 + rng % 116));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let mut last_pin_failures = 0u32;
        let mut acked_now = 0u64;
        for line in rx.try_iter() {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["C", id, nonce] => {
                    model.insert(
                        id.parse().unwrap(),
                        Expect {
                            nonce: nonce.parse().unwrap(),
                            version: 1,
                            generation: 0,
                        },
                    );
                }
                ["U", id, v, g] => {
                    let e = model
                        .get_mut(&id.parse().unwrap())
                        .expect("update of a known object");
                    e.version = v.parse().unwrap();
                    e.generation = g.parse().unwrap();
                }
                ["R", id, v] => {
                    let e = model
                        .get_mut(&id.parse().unwrap())
                        .expect("rollback of a known object");
                    e.version = v.parse().unwrap();
                    e.generation = 0;
                }
                ["D", id] => {
                    let id: u64 = id.parse().unwrap();
                    model.remove(&id).expect("destroy of a known object");
                    destroyed.push(id);
                }
                ["S"] => acked_uses += 1,
                ["P", n] => {
                    last_pin_failures = n.parse().unwrap();
                    acked_now += 1;
                }
                _ => panic!("unexpected child line {line:?}"),
            }
            total_acks += 1;
        }
        acked_pin_failures += acked_now;
        // Reopen and compare. At most one operation was in flight; it may or may not have
        // landed, but it must have landed whole.
        let store = Store::open_dir(dir.path()).unwrap();
        if store.tokens().unwrap().is_empty() {
            assert!(model.is_empty(), "iteration {iter}: token lost");
            continue;
        }
        assert!(
            store.pin_failures(TOKEN, UserKind::User).unwrap() >= last_pin_failures,
            "iteration {iter}: acknowledged PIN failures lost"
        );
        let k = store.login(TOKEN, UserKind::User, &pin(USER_PIN)).unwrap();
        let live: Vec<u64> = store
            .find(&k, &Query::default())
            .unwrap()
            .into_iter()
            .map(|o| o.0)
            .collect();
        let mut surprises = 0;
        for id in &destroyed {
            assert!(
                !live.contains(id),
                "iteration {iter}: destroyed object {id} came back"
            );
        }
        for (id, e) in &model {
            if !live.contains(id) {
                surprises += 1; // only allowed as the single in-flight destroy
                continue;
            }
            let obj = store.read_object(&k, ObjectId(*id)).unwrap();
            assert_eq!(
                nonce_of(&obj.attrs),
                e.nonce,
                "iteration {iter}: object {id} has another object's attributes"
            );
            let versions = store.versions(&k, ObjectId(*id)).unwrap();
            assert_eq!(
                versions.len() as u32,
                obj.version.0,
                "iteration {iter}: object {id} version chain has holes"
            );
            if obj.version.0 != e.version {
                assert_eq!(
                    obj.version.0,
                    e.version + 1,
                    "iteration {iter}: object {id} lost an acknowledged version"
                );
                surprises += 1;
            } else {
                assert_eq!(
                    generation_of(&obj.attrs),
                    e.generation,
                    "iteration {iter}: object {id} content does not match its version"
                );
            }
            assert_eq!(
                obj.attrs.label(),
                Some(format!("obj-{}-gen-{}", e.nonce, generation_of(&obj.attrs)).as_bytes()),
                "iteration {iter}: half-applied attributes"
            );
        }
        for id in &live {
            if !model.contains_key(id) {
                surprises += 1; // the in-flight create
                let obj = store.read_object(&k, ObjectId(*id)).unwrap();
                assert_eq!(obj.version.0, 1);
            }
        }
        assert!(
            surprises <= 1,
            "iteration {iter}: {surprises} unacknowledged changes, at most one can be in flight"
        );
        let problems = store.check_indexes(&k).unwrap();
        assert!(problems.is_empty(), "iteration {iter}: {problems:?}");
        let acked = Acked {
            pin_failures: acked_pin_failures,
            uses: acked_uses,
        };
        audit_agrees(&store, &k, &live, iter, acked);
        // Adopt what actually landed, so the next round starts from the truth.
        destroyed.extend(model.keys().filter(|id| !live.contains(id)));
        model.clear();
        for id in live {
            let obj = store.read_object(&k, ObjectId(id)).unwrap();
            model.insert(
                id,
                Expect {
                    nonce: nonce_of(&obj.attrs),
                    version: obj.version.0,
                    generation: generation_of(&obj.attrs),
                },
            );
        }
    }
    assert!(
        total_acks > iterations as usize,
        "the children did real work ({total_acks} acknowledgements)"
    );
    eprintln!(
        "crash test: {iterations} kills, {total_acks} acknowledged operations, {} objects live, {} destroyed",
        model.len(),
        destroyed.len()
    );
}

/// The audit log after a kill: it verifies (tree, sequence, checkpoints, head), and
/// replaying its records gives exactly the objects and versions the store holds — no
/// change landed without its record, no record without its change — and it holds every
/// acknowledged wrong PIN and every acknowledged use of a key.
fn audit_agrees(store: &Store, k: &hsm_store::TokenKeys, live: &[u64], iter: u32, acked: Acked) {
    let v = store.verify_audit(TOKEN, None, None).unwrap();
    assert!(
        v.ok(),
        "iteration {iter}: the audit log does not verify: {v:?}"
    );
    let mut current: BTreeMap<u64, u32> = BTreeMap::new();
    let (mut wrong_pins, mut uses) = (0u64, 0u64);
    store
        .audit_records(TOKEN, 0, &mut |_, bytes| {
            let r = hsm_store::audit::decode_record(bytes)?;
            match (r.op.as_str(), r.object, r.version) {
                ("object.create", Some(o), Some(v)) => assert!(current.insert(o, v).is_none()),
                ("object.update" | "object.rollback", Some(o), Some(v)) => {
                    assert!(
                        current.insert(o, v).is_some(),
                        "a record of an unknown object"
                    )
                }
                ("object.destroy", Some(o), _) => assert!(current.remove(&o).is_some()),
                ("login.user", _, _) if r.result == hsm_types::audit::ckr::PIN_INCORRECT => {
                    wrong_pins += 1
                }
                ("key.sign", _, _) => uses += 1,
                _ => {}
            }
            Ok(hsm_store::backend::Flow::Continue)
        })
        .unwrap();
    let logged: Vec<u64> = current.keys().copied().collect();
    let mut live = live.to_vec();
    live.sort_unstable();
    assert_eq!(
        logged, live,
        "iteration {iter}: the log and the objects disagree"
    );
    for (o, v) in current {
        let obj = store.read_object(k, ObjectId(o)).unwrap();
        assert_eq!(
            obj.version.0, v,
            "iteration {iter}: object {o}'s version per the log"
        );
    }
    assert!(
        wrong_pins >= acked.pin_failures,
        "iteration {iter}: {} wrong PINs acknowledged, {wrong_pins} in the log",
        acked.pin_failures
    );
    assert!(
        uses >= acked.uses && uses <= acked.uses + iter as u64 + 1,
        "iteration {iter}: {} uses of a key acknowledged, {uses} in the log",
        acked.uses
    );
}

/// What the children acknowledged, in all their runs so far.
#[derive(Clone, Copy)]
struct Acked {
    pin_failures: u64,
    uses: u64,
}

/// The child of `spooled_uses_survive_a_kill`: records `FERROHSM_SPOOL_USES` uses of a
/// key at level `all` (spooled: no management write follows them), says so, and waits
/// to be killed.
#[test]
fn spool_child_worker() {
    let (Ok(dir), Ok(n)) = (
        std::env::var("FERROHSM_SPOOL_DIR"),
        std::env::var("FERROHSM_SPOOL_USES"),
    ) else {
        return;
    };
    let store = Store::open_dir(std::path::Path::new(&dir)).unwrap();
    let k = store.login(TOKEN, UserKind::User, &pin(USER_PIN)).unwrap();
    store.set_audit(hsm_store::audit::AuditSettings {
        level: hsm_store::audit::AuditLevel::All,
        group_commit: Duration::from_secs(3600),
        ..Default::default()
    });
    for _ in 0..n.parse::<u32>().unwrap() {
        store
            .audit_use(&k, hsm_store::audit::Event::new("key.sign"))
            .unwrap();
    }
    println!("@@ DONE");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Records of key use that were still in the spool when the process was killed reach
/// the log at the next open: all of them, in order, and the log verifies.
#[test]
fn spooled_uses_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = Store::open_dir(dir.path()).unwrap();
        let mut s = spec("spool");
        s.pin_policy.max_failures = 100;
        store.init_token(s).unwrap();
        store.audit_size(TOKEN).unwrap()
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "spool_child_worker",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FERROHSM_SPOOL_DIR", dir.path())
        .env("FERROHSM_SPOOL_USES", "700")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let done = out.lines().any(|l| l.is_ok_and(|l| l.contains("@@ DONE")));
    assert!(done, "the child recorded its uses");
    let spooled = std::fs::metadata(dir.path().join("audit-spool"))
        .unwrap()
        .len();
    assert!(
        spooled > 700 * 40,
        "the uses wait in the spool ({spooled} bytes)"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let k = store.login(TOKEN, UserKind::User, &pin(USER_PIN)).unwrap();
    let mut uses = Vec::new();
    store
        .audit_records(TOKEN, 0, &mut |seq, bytes| {
            let r = hsm_store::audit::decode_record(bytes)?;
            if r.op == "key.sign" {
                uses.push(seq);
            }
            Ok(hsm_store::backend::Flow::Continue)
        })
        .unwrap();
    assert_eq!(uses.len(), 700, "every acknowledged use is in the log");
    assert!(
        uses.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap"
    );
    // The login after the reopen is a record of its own, after the uses.
    assert!(store.audit_size(TOKEN).unwrap() > before + 700);
    let v = store.verify_audit(TOKEN, None, None).unwrap();
    assert!(v.ok(), "{v:?}");
    drop(k);
    assert_eq!(
        std::fs::metadata(dir.path().join("audit-spool"))
            .unwrap()
            .len(),
        24,
        "the spool is empty again (its header only)"
    );
}
