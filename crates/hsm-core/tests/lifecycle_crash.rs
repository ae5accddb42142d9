//! Crash test of the key lifecycle: a child process creates keys and runs random
//! transitions on them (rotate, disable, enable, schedule destruction, restore, destroy,
//! trim, policy changes) on a real RocksDB store, printing a line after each one returns.
//! The parent kills it with SIGKILL at a random moment, reopens the store and checks that
//! every acknowledged transition is there, at most one more landed, and it landed whole:
//! every ring's live versions have their objects, marked as theirs; destroyed versions
//! have none; no object claims a ring that does not list it; the indexes agree.
//!
//! `FERROHSM_LIFECYCLE_CRASH_ITERATIONS` sets the number of kills (default 60).

use hsm_core::config::LifecycleConfig;
use hsm_core::lifecycle::{KeyManager, KeyPolicy, VersionState};
use hsm_core::provider::SoftwareProvider;
use hsm_core::store::{KdfParams, PinPolicy, Query, Store, TokenSpec};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, ObjectClass, SecretString, TokenId,
    UserKind,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: TokenId = TokenId(1);
const PIN: &str = "user-pin-5678";

fn settings() -> LifecycleConfig {
    LifecycleConfig {
        destroy_delay_secs: 100,
        allow_immediate_destroy: true,
        clock_offset_secs: 0,
        sweep_interval_secs: 0,
        ..LifecycleConfig::default()
    }
}

fn aes(n: u64) -> AttributeSet {
    AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
        .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::AES.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(A::PRIVATE, AttrValue::Bool(true))
        .with(A::LABEL, AttrValue::Bytes(format!("key-{n}").into_bytes()))
        .with(A::VALUE_LEN, AttrValue::Ulong(32))
        .with(A::VALUE, AttrValue::Bytes(vec![(n % 251) as u8; 32]))
}

/// The child: endless random transitions, one acknowledgement line after each.
#[test]
fn lifecycle_crash_child_worker() {
    let Ok(dir) = std::env::var("FERROHSM_LIFECYCLE_CRASH_DIR") else {
        return;
    };
    let mut rng: u64 = std::env::var("FERROHSM_LIFECYCLE_CRASH_SEED")
        .unwrap()
        .parse::<u64>()
        .unwrap()
        | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let store = Store::open_dir(std::path::Path::new(&dir)).unwrap();
    if store.tokens().unwrap().is_empty() {
        store
            .init_token(TokenSpec {
                label: "crash".into(),
                so_pin: SecretString::from("so-pin-1234"),
                user_pin: Some(SecretString::from(PIN)),
                kdf: KdfParams::INSECURE_FAST,
                pin_policy: PinPolicy::default(),
            })
            .unwrap();
    }
    let keys = store
        .login(TOKEN, UserKind::User, &SecretString::from(PIN))
        .unwrap();
    let km = KeyManager::new(&store, &keys, &SoftwareProvider, settings());
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ READY").unwrap();
    out.flush().unwrap();
    loop {
        let listed = km.list().unwrap();
        if listed.len() < 3 || next() % 10 == 0 {
            let id = store.create_object(&keys, aes(next())).unwrap();
            writeln!(out, "@@ C {}", id.0).unwrap();
            out.flush().unwrap();
            continue;
        }
        let k = &listed[(next() as usize) % listed.len()];
        let key = k.key;
        let v = k.ring.versions[(next() as usize) % k.ring.versions.len()].number;
        let done = match next() % 9 {
            0 | 1 => km.rotate(key),
            2 => km.disable(key, v),
            3 => km.enable(key, v),
            4 => km.schedule_destroy(key, v),
            5 => km.restore(key, v),
            6 => km.destroy_now(key, v),
            7 => km.trim(key, v),
            _ => km.set_policy(
                key,
                KeyPolicy {
                    destroy_delay: [0, 100][(next() % 2) as usize],
                    ..k.ring.policy
                },
            ),
        };
        // A refusal (the state machine said no) writes nothing and is not acknowledged;
        // anything else is a failure the parent must see.
        match done {
            Ok(ring) => writeln!(out, "@@ T {} {}", key.0, ring.seq).unwrap(),
            Err(hsm_core::Error::ActionProhibited(_)) => {}
            Err(e) => writeln!(out, "@@ FAIL {e}").unwrap(),
        }
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_during_transitions_loses_none_and_half_applies_none() {
    let iterations: u32 = std::env::var("FERROHSM_LIFECYCLE_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut rng: u64 = 0x9e3779b97f4a7c15 ^ std::process::id() as u64;
    let mut transitions = 0usize;
    for iter in 0..iterations {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let lines = run_child(dir.path(), rng, 10 + rng % 150);
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["C", _] => {}
                ["FAIL", ..] => panic!("iteration {iter}: the child failed: {line}"),
                ["T", key, seq] => {
                    acked.insert(key.parse().unwrap(), seq.parse().unwrap());
                    transitions += 1;
                }
                _ => panic!("unexpected child line {line:?}"),
            }
        }
        acked = check(dir.path(), &acked, iter);
    }
    assert!(transitions > 0, "the child never completed a transition");
}

/// Runs the child for `ms` after it is ready, kills it, and returns its acknowledgements.
fn run_child(dir: &std::path::Path, seed: u64, ms: u64) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "lifecycle_crash_child_worker",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FERROHSM_LIFECYCLE_CRASH_DIR", dir)
        .env("FERROHSM_LIFECYCLE_CRASH_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pos) = l.find("@@ ")
                && tx.send(l[pos + 3..].to_owned()).is_err()
            {
                break;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(l) if l == "READY" => {}
        other => panic!("child never got ready: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(ms));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    rx.try_iter().collect()
}

/// The store after a kill: acknowledged transitions kept, at most one more, each whole.
/// Returns what landed, which the next round starts from.
fn check(dir: &std::path::Path, acked: &BTreeMap<u64, u64>, iter: u32) -> BTreeMap<u64, u64> {
    let store = Store::open_dir(dir).unwrap();
    let keys = store
        .login(TOKEN, UserKind::User, &SecretString::from(PIN))
        .unwrap();
    let rings: BTreeMap<u64, _> = store
        .rings(&keys)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.0, r))
        .collect();
    let mut ahead = 0;
    for (key, seq) in acked {
        let stored = rings.get(key).map_or(0, |r| r.seq);
        assert!(
            stored >= *seq,
            "iteration {iter}: key {key} lost transition {seq}"
        );
        ahead += stored - seq;
    }
    ahead += rings
        .iter()
        .filter(|(k, _)| !acked.contains_key(k))
        .map(|(_, r)| r.seq)
        .sum::<u64>();
    assert!(
        ahead <= 1,
        "iteration {iter}: {ahead} unacknowledged transitions"
    );
    for r in rings.values() {
        for v in &r.versions {
            let destroyed = matches!(v.state, VersionState::Destroyed { .. });
            assert_eq!(destroyed, v.objects.is_empty(), "iteration {iter}: {r:?}");
            for o in &v.objects {
                let a = store.read_object(&keys, *o).unwrap().attrs;
                assert_eq!(a.ulong(A::FERRO_KEY_ID), Some(r.key.0), "iteration {iter}");
                assert_eq!(a.ulong(A::FERRO_KEY_VERSION), Some(u64::from(v.number)));
            }
        }
    }
    for id in store.find(&keys, &Query::default()).unwrap() {
        let a = store.read_object(&keys, id).unwrap().attrs;
        if let Some(k) = a.ulong(A::FERRO_KEY_ID) {
            let r = rings
                .get(&k)
                .unwrap_or_else(|| panic!("iteration {iter}: object {id} claims missing ring {k}"));
            assert!(
                r.version_of(id).is_some(),
                "iteration {iter}: object {id} orphaned from key {k}"
            );
        }
    }
    assert!(
        store.check_indexes(&keys).unwrap().is_empty(),
        "iteration {iter}"
    );
    let km = KeyManager::new(&store, &keys, &SoftwareProvider, settings());
    km.list().unwrap();
    rings.into_iter().map(|(k, r)| (k, r.seq)).collect()
}
