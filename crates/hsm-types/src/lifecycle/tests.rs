//! The state machine against a model written apart from it: a table of which transition
//! each state allows, and the invariants every ring must keep whatever is asked of it.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Rotate,
    Rollback(u32),
    Disable(u32),
    Enable(u32),
    Schedule(u32),
    Restore(u32),
    DestroyNow(u32),
    Sweep,
    Trim(u32),
    Wait(u64),
    Delay(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let v = 0u32..8;
    prop_oneof![
        2 => Just(Op::Rotate),
        1 => v.clone().prop_map(Op::Rollback),
        2 => v.clone().prop_map(Op::Disable),
        2 => v.clone().prop_map(Op::Enable),
        2 => v.clone().prop_map(Op::Schedule),
        2 => v.clone().prop_map(Op::Restore),
        1 => v.clone().prop_map(Op::DestroyNow),
        1 => Just(Op::Sweep),
        1 => v.prop_map(Op::Trim),
        2 => (0u64..200).prop_map(Op::Wait),
        1 => prop_oneof![Just(0u64), 1u64..100].prop_map(Op::Delay),
    ]
}

/// What the model says a state becomes under an operation, or `None` when the
/// operation must be refused. Written from `docs/lifecycle.md`'s table, not from the code.
fn legal(state: VersionState, op: &Op, delay: u64, now: u64) -> Option<&'static str> {
    use VersionState as S;
    let live = |s| matches!(s, S::DestroyScheduled { deadline } if deadline > now);
    match (op, state) {
        (Op::Rollback(_), S::Enabled) => Some("enabled"),
        (Op::Disable(_), S::Enabled) => Some("disabled"),
        (Op::Enable(_), S::Disabled) => Some("enabled"),
        (Op::Schedule(_), S::Enabled | S::Disabled) if delay == 0 => Some("destroyed"),
        (Op::Schedule(_), S::Enabled | S::Disabled) => Some("destroy-scheduled"),
        (Op::Restore(_), s) if live(s) => Some("disabled"),
        (Op::DestroyNow(_), S::Destroyed { .. }) => None,
        (Op::DestroyNow(_), S::DestroyScheduled { deadline }) if deadline <= now => {
            Some("destroyed")
        }
        (Op::DestroyNow(_), _) if delay == 0 => Some("destroyed"),
        _ => None,
    }
}

fn check_invariants(r: &KeyRing, issued: &BTreeMap<u32, Vec<ObjectId>>) {
    if let Some(p) = r.primary {
        assert_eq!(
            r.version(p).map(|v| v.state),
            Ok(VersionState::Enabled),
            "the primary is enabled: {r:?}"
        );
    }
    let mut last = 0;
    for v in &r.versions {
        assert!(v.number > last, "versions ascend, numbers unique: {r:?}");
        last = v.number;
        assert!(v.number < r.next_version && v.number >= r.trimmed_below);
        match v.state {
            VersionState::Destroyed { .. } => {
                assert!(v.objects.is_empty(), "destroyed material is gone: {r:?}")
            }
            _ => assert_eq!(Some(&v.objects), issued.get(&v.number)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn transitions_follow_the_table_and_keep_the_invariants(ops in prop::collection::vec(op(), 1..60)) {
        let mut now = 1_000u64;
        let mut policy = KeyPolicy { destroy_delay: 50, ..KeyPolicy::default() };
        let mut ring = KeyRing::first(KeyId(7), vec![ObjectId(7)], now, policy);
        let mut issued = BTreeMap::from([(1u32, vec![ObjectId(7)])]);
        let mut next_object = 8u64;
        let mut erased_all: Vec<ObjectId> = Vec::new();
        for op in ops {
            let before = ring.clone();
            let target = match &op {
                Op::Rollback(v) | Op::Disable(v) | Op::Enable(v) | Op::Schedule(v)
                | Op::Restore(v) | Op::DestroyNow(v) => Some(*v),
                _ => None,
            };
            let prior = target.and_then(|v| before.version(v).ok().map(|x| x.state));
            let expected = prior.and_then(|s| legal(s, &op, policy.destroy_delay, now));
            let accepted = match &op {
                Op::Rotate => {
                    let objs = vec![ObjectId(next_object), ObjectId(next_object + 1)];
                    next_object += 2;
                    let n = ring.rotate(objs.clone(), now).unwrap();
                    prop_assert!(!issued.contains_key(&n), "number {n} reused");
                    prop_assert_eq!(ring.primary, Some(n));
                    issued.insert(n, objs);
                    true
                }
                Op::Rollback(v) => ring.rollback(*v).is_ok(),
                Op::Disable(v) => ring.disable(*v).is_ok(),
                Op::Enable(v) => ring.enable(*v).is_ok(),
                Op::Restore(v) => ring.restore(*v, now).is_ok(),
                Op::Schedule(v) => match ring.schedule_destroy(*v, now) {
                    Ok(e) => { erased_all.extend(e); true }
                    Err(_) => false,
                },
                Op::DestroyNow(v) => match ring.destroy_now(*v, now) {
                    Ok(e) => {
                        prop_assert_eq!(&e, &issued[v], "destroy erases that version's objects");
                        erased_all.extend(e);
                        true
                    }
                    Err(_) => false,
                },
                Op::Sweep => { erased_all.extend(ring.sweep(now)); true }
                Op::Trim(f) => match ring.trim(*f) {
                    Ok(e) => {
                        prop_assert!(ring.versions.iter().all(|v| v.number >= *f));
                        erased_all.extend(e);
                        true
                    }
                    Err(_) => false,
                },
                Op::Wait(s) => { now += s; true }
                Op::Delay(d) => {
                    let p = KeyPolicy { destroy_delay: *d, ..ring.policy };
                    let ok = ring.set_policy(p, true).is_ok();
                    if ok { policy = p; }
                    ok
                }
            };
            if target.is_some() {
                let got = accepted.then(|| ring.version(target.unwrap()).unwrap().state.name());
                prop_assert_eq!(got, expected, "{:?} on {:?}", op, prior);
            }
            if !accepted {
                prop_assert_eq!(&ring, &before, "a refused transition changes nothing");
            } else if ring != before {
                prop_assert!(ring.seq > before.seq || matches!(op, Op::Wait(_)));
            }
            check_invariants(&ring, &issued);
            for v in &ring.versions {
                for o in &v.objects {
                    prop_assert!(!erased_all.contains(o), "erased material came back");
                }
            }
        }
    }
}

#[test]
fn uses_follow_state_and_the_minimum_versions() {
    let mut r = KeyRing::first(KeyId(1), vec![ObjectId(1)], 0, KeyPolicy::default());
    r.rotate(vec![ObjectId(2)], 10).unwrap();
    r.rotate(vec![ObjectId(3)], 20).unwrap();
    assert_eq!(r.allows(1, Direction::Encrypt, 30), Ok(()));
    let p = KeyPolicy {
        min_encrypt_version: 3,
        min_decrypt_version: 2,
        ..r.policy
    };
    r.set_policy(p, false).unwrap();
    assert!(r.allows(2, Direction::Encrypt, 30).is_err());
    assert_eq!(r.allows(2, Direction::Decrypt, 30), Ok(()));
    assert!(r.allows(1, Direction::Decrypt, 30).is_err());
    assert_eq!(r.allows(3, Direction::Encrypt, 30), Ok(()));
    r.disable(2).unwrap();
    assert!(matches!(
        r.allows(2, Direction::Decrypt, 30),
        Err(Refusal::WrongState { .. })
    ));
    // A rollback below min_encrypt_version would leave a primary that cannot encrypt.
    r.enable(2).unwrap();
    assert!(r.rollback(2).is_err());
}

#[test]
fn a_scheduled_destruction_counts_as_done_at_its_deadline() {
    let mut r = KeyRing::first(KeyId(1), vec![ObjectId(1)], 0, KeyPolicy::default());
    r.rotate(vec![ObjectId(2)], 0).unwrap();
    assert!(r.schedule_destroy(1, 100).unwrap().is_empty());
    let deadline = 100 + DEFAULT_DESTROY_DELAY;
    assert!(r.allows(1, Direction::Decrypt, deadline - 1).is_err());
    assert_eq!(
        r.state_at(1, deadline),
        Ok(VersionState::Destroyed { at: deadline })
    );
    assert!(matches!(
        r.restore(1, deadline),
        Err(Refusal::DeadlinePassed { .. })
    ));
    assert!(r.sweep(deadline - 1).is_empty(), "not due yet");
    assert_eq!(r.sweep(deadline), vec![ObjectId(1)]);
    assert!(r.sweep(deadline + 1).is_empty(), "a sweep erases once");
}

#[test]
fn zero_delay_and_deletion_allowed_are_enforced() {
    let mut r = KeyRing::first(KeyId(1), vec![ObjectId(1)], 0, KeyPolicy::default());
    let zero = KeyPolicy {
        destroy_delay: 0,
        ..r.policy
    };
    assert!(
        r.set_policy(zero, false).is_err(),
        "0 needs the configuration"
    );
    assert!(
        r.destroy_now(1, 5).is_err(),
        "a 30-day key is not destroyed now"
    );
    let locked = KeyPolicy {
        deletion_allowed: false,
        ..r.policy
    };
    r.set_policy(locked, false).unwrap();
    assert!(r.schedule_destroy(1, 5).is_err());
    r.rotate(vec![ObjectId(2)], 6).unwrap();
    assert!(r.trim(2).is_err(), "trimming erases material too");
    assert_eq!(r.versions.len(), 2);
}

#[test]
fn rotation_falls_due_after_the_period() {
    let mut r = KeyRing::first(KeyId(1), vec![ObjectId(1)], 100, KeyPolicy::default());
    assert!(!r.rotation_due(u64::MAX), "no period, never due");
    let p = KeyPolicy {
        auto_rotate_period: Some(50),
        ..r.policy
    };
    r.set_policy(p, false).unwrap();
    assert!(!r.rotation_due(149));
    assert!(r.rotation_due(150));
    r.rotate(vec![ObjectId(2)], 150).unwrap();
    assert!(!r.rotation_due(199));
}
