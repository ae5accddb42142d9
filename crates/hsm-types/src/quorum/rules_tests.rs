//! The policy engine's evaluation: roles, windows, use limits, mechanism lists, per-key
//! approval rules, what changing them needs, and that records written before these
//! rules existed still decode.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const SIGN: Operation = Operation::Use {
    mechanism: 0x1041,
    secret: true,
};

fn three_approvers() -> QuorumState {
    let mut s = QuorumState::default();
    for i in 0..3u8 {
        s.add_approver(&format!("a{i}"), vec![i; 32], 0).unwrap();
    }
    s
}

#[test]
fn an_auditor_operates_nothing() {
    let s = QuorumState::default();
    assert!(matches!(
        s.evaluate(Role::Auditor, SIGN, Some(1), 0),
        Decision::Deny(_)
    ));
    assert!(matches!(
        s.evaluate(Role::Auditor, Operation::Manage(Guarded::Destroy), None, 0),
        Decision::Deny(_)
    ));
    assert_eq!(s.evaluate(Role::User, SIGN, Some(1), 0), Decision::Allow);
}

#[test]
fn a_key_is_used_only_inside_its_window() {
    let mut s = QuorumState::default();
    let rules = KeyRules {
        not_before: Some(100),
        not_after: Some(200),
        ..KeyRules::default()
    };
    s.set_key_rules(7, Some(rules)).unwrap();
    let at = |t| s.evaluate(Role::User, SIGN, Some(7), t);
    assert!(matches!(at(99), Decision::Deny(w) if w.contains("before 100")));
    assert_eq!(at(100), Decision::Allow);
    assert_eq!(at(199), Decision::Allow);
    assert!(matches!(at(200), Decision::Deny(w) if w.contains("from 200")));
    assert_eq!(
        s.evaluate(Role::User, SIGN, Some(8), 99),
        Decision::Allow,
        "another key's window is its own"
    );
}

#[test]
fn a_use_limit_counts_and_then_holds() {
    let mut s = QuorumState::default();
    let rules = KeyRules {
        max_uses: Some(2),
        ..KeyRules::default()
    };
    s.set_key_rules(7, Some(rules)).unwrap();
    assert!(s.counts_uses(7) && !s.counts_uses(8));
    for _ in 0..2 {
        assert_eq!(s.evaluate(Role::User, SIGN, Some(7), 0), Decision::Allow);
        s.count_use(7);
    }
    assert!(matches!(
        s.evaluate(Role::User, SIGN, Some(7), 0),
        Decision::Deny(w) if w.contains("2 times of 2")
    ));
}

#[test]
fn mechanism_lists_token_wide_and_per_key() {
    let mut s = QuorumState::default();
    let p = QuorumPolicy {
        mechanisms: Some(BTreeSet::from([0x1041])),
        ..QuorumPolicy::default()
    };
    s.set_policy(p).unwrap();
    let with = |s: &QuorumState, m, key| {
        s.evaluate(
            Role::User,
            Operation::Use {
                mechanism: m,
                secret: false,
            },
            Some(key),
            0,
        )
    };
    assert_eq!(with(&s, 0x1041, 1), Decision::Allow);
    assert!(matches!(with(&s, 0x1, 1), Decision::Deny(w) if w.contains("0x1 ")));
    let rules = KeyRules {
        mechanisms: Some(BTreeSet::from([0x1])),
        ..KeyRules::default()
    };
    s.set_key_rules(2, Some(rules)).unwrap();
    assert_eq!(with(&s, 0x1, 2), Decision::Allow, "the key's list replaces");
    assert!(matches!(with(&s, 0x1041, 2), Decision::Deny(_)));
}

#[test]
fn per_key_approvals_replace_the_token_rule_and_raise_the_quorum() {
    let mut s = three_approvers();
    let mut p = QuorumPolicy::default();
    p.rules.insert(Guarded::Destroy, 1);
    s.set_policy(p).unwrap();
    let mut rules = KeyRules::default();
    rules.approvals.insert(Guarded::Destroy, 3);
    rules.approvals.insert(Guarded::Use, 2);
    s.set_key_rules(9, Some(rules)).unwrap();
    let destroy = Operation::Manage(Guarded::Destroy);
    assert_eq!(
        s.evaluate(Role::User, destroy, Some(9), 0),
        Decision::NeedsApproval {
            op: Guarded::Destroy,
            needed: 3
        }
    );
    assert_eq!(
        s.evaluate(Role::User, destroy, Some(4), 0),
        Decision::NeedsApproval {
            op: Guarded::Destroy,
            needed: 1
        }
    );
    assert_eq!(
        s.evaluate(Role::User, SIGN, Some(9), 0),
        Decision::NeedsApproval {
            op: Guarded::Use,
            needed: 2
        }
    );
    let verify = Operation::Use {
        mechanism: 0x1041,
        secret: false,
    };
    assert_eq!(s.evaluate(Role::User, verify, Some(9), 0), Decision::Allow);
    assert_eq!(s.evaluate(Role::User, SIGN, Some(4), 0), Decision::Allow);
    assert_eq!(
        s.required(Guarded::Quorum),
        3,
        "a key's rule counts for changes of the quorum"
    );
}

#[test]
fn bad_key_rules_are_refused_and_change_nothing() {
    let mut s = three_approvers();
    let before = s.clone();
    let bad = [
        KeyRules {
            approvals: [(Guarded::Import, 1)].into(),
            ..KeyRules::default()
        },
        KeyRules {
            approvals: [(Guarded::Destroy, 4)].into(),
            ..KeyRules::default()
        },
        KeyRules {
            not_before: Some(5),
            not_after: Some(5),
            ..KeyRules::default()
        },
        KeyRules {
            max_uses: Some(0),
            ..KeyRules::default()
        },
        KeyRules {
            mechanisms: Some(BTreeSet::new()),
            ..KeyRules::default()
        },
    ];
    for r in bad {
        assert!(s.set_key_rules(1, Some(r.clone())).is_err(), "{r:?}");
        assert_eq!(s, before);
    }
    let mut p = QuorumPolicy::default();
    p.rules.insert(Guarded::Use, 1);
    assert!(s.set_policy(p).is_err(), "use is a per-key rule");
}

#[test]
fn removing_an_approver_a_key_rule_needs_is_refused() {
    let mut s = three_approvers();
    let mut rules = KeyRules::default();
    rules.approvals.insert(Guarded::Use, 3);
    s.set_key_rules(1, Some(rules)).unwrap();
    assert!(matches!(
        s.remove_approver(1),
        Err(QuorumError::Unreachable {
            op: Guarded::Use,
            ..
        })
    ));
    s.set_key_rules(1, None).unwrap();
    assert!(s.keys.is_empty());
    s.remove_approver(1).unwrap();
}

#[test]
fn records_from_before_key_rules_decode() {
    #[derive(serde::Serialize)]
    struct OldPolicy {
        rules: BTreeMap<Guarded, u32>,
        request_ttl: u64,
        approved_ttl: u64,
    }
    #[derive(serde::Serialize)]
    struct OldState {
        seq: u64,
        next_approver: u32,
        next_request: u64,
        approvers: Vec<Approver>,
        policy: OldPolicy,
        requests: Vec<Request>,
    }
    let old = OldState {
        seq: 4,
        next_approver: 2,
        next_request: 1,
        approvers: vec![],
        policy: OldPolicy {
            rules: [(Guarded::Destroy, 2)].into(),
            request_ttl: 10,
            approved_ttl: 5,
        },
        requests: vec![],
    };
    let bytes = rmp_serde::to_vec_named(&old).unwrap();
    let s: QuorumState = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(s.seq, 4);
    assert_eq!(s.required(Guarded::Destroy), 2);
    assert!(s.keys.is_empty() && s.uses.is_empty() && s.policy.mechanisms.is_none());
}

fn key_rules() -> impl Strategy<Value = KeyRules> {
    (
        prop::collection::btree_map(
            prop::sample::select(Guarded::PER_KEY.to_vec()),
            1u32..4,
            0..3,
        ),
        prop::option::of(0u64..4),
        prop::option::of(0u64..4),
        prop::option::of(1u64..4),
        prop::option::of(prop::collection::btree_set(0u64..4, 1..3)),
    )
        .prop_map(
            |(approvals, not_before, not_after, max_uses, mechanisms)| KeyRules {
                approvals,
                not_before,
                not_after,
                max_uses,
                mechanisms,
            },
        )
}

proptest! {
    #[test]
    fn the_canonical_form_tells_rules_apart(a in key_rules(), b in key_rules()) {
        prop_assert_eq!(a == b, canonical_key_rules(&a) == canonical_key_rules(&b));
    }

    #[test]
    fn a_denied_use_is_never_allowed_later_by_counting(max in 1u64..5, uses in 0u64..10) {
        let mut s = QuorumState::default();
        s.set_key_rules(3, Some(KeyRules { max_uses: Some(max), ..KeyRules::default() })).unwrap();
        let mut allowed = 0;
        for _ in 0..uses {
            if s.evaluate(Role::User, SIGN, Some(3), 0) == Decision::Allow {
                allowed += 1;
                s.count_use(3);
            }
        }
        prop_assert_eq!(allowed, uses.min(max));
    }
}
