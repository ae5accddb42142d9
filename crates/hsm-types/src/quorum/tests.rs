//! The dual-control model: rules, standing, single use, expiry, and a property test that
//! no sequence of admissions and verdicts spends a request without `m` distinct
//! registered approvers, or spends one twice.

use super::*;
use proptest::prelude::*;

fn state(m: u32, approvers: u32) -> QuorumState {
    let mut s = QuorumState::default();
    for i in 0..approvers {
        s.add_approver(&format!("a{i}"), vec![i as u8; 32], 0)
            .unwrap();
    }
    let mut p = QuorumPolicy::default();
    p.rules.insert(Guarded::Destroy, m);
    s.set_policy(p).unwrap();
    s
}

fn verdict(request: u64, approver: u32, approve: bool, at: u64) -> Verdict {
    Verdict {
        request,
        approver,
        approve,
        at,
        signature: Vec::new(),
    }
}

fn opened(a: Admission) -> u64 {
    match a {
        Admission::Wait {
            request,
            opened: true,
        } => request,
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_of_three_spends_once_and_then_asks_again() {
    let mut s = state(2, 3);
    let r = opened(s.admit(Guarded::Destroy, b"d1", "destroy 7", "user", &[], 10));
    let mut vs = vec![verdict(r, 1, true, 11)];
    s.check_verdict(&vs[0], &[], 11).unwrap();
    assert_eq!(
        s.admit(Guarded::Destroy, b"d1", "destroy 7", "user", &vs, 12),
        Admission::Wait {
            request: r,
            opened: false
        }
    );
    let e = s
        .check_verdict(&verdict(r, 1, true, 12), &vs, 12)
        .unwrap_err();
    assert_eq!(
        e,
        QuorumError::AlreadyGiven {
            request: r,
            approver: 1
        }
    );
    vs.push(verdict(r, 2, true, 13));
    // Another digest is not released by these approvals.
    let other = opened(s.admit(Guarded::Destroy, b"d2", "destroy 8", "user", &vs, 14));
    assert_ne!(other, r);
    assert_eq!(
        s.admit(Guarded::Destroy, b"d1", "destroy 7", "user", &vs, 14),
        Admission::Spend(r)
    );
    let again = opened(s.admit(Guarded::Destroy, b"d1", "destroy 7", "user", &vs, 15));
    assert!(again > other);
    assert_eq!(
        s.standing(s.request(r).unwrap(), &vs, 15),
        Standing::Used { at: 14 }
    );
}

#[test]
fn unguarded_operations_pass_and_the_quorum_needs_the_largest_rule() {
    let mut s = state(2, 3);
    assert_eq!(
        s.admit(Guarded::Trim, b"t", "trim", "user", &[], 1),
        Admission::Allow
    );
    assert_eq!(s.required(Guarded::Quorum), 2);
    let mut p = s.policy.clone();
    p.rules.insert(Guarded::Trim, 3);
    s.set_policy(p.clone()).unwrap();
    assert_eq!(s.required(Guarded::Quorum), 3);
    p.rules.insert(Guarded::Export, 4);
    assert!(matches!(
        s.set_policy(p),
        Err(QuorumError::Unreachable { m: 4, .. })
    ));
    assert!(matches!(
        s.remove_approver(1),
        Err(QuorumError::Unreachable { .. })
    ));
    let mut p = QuorumPolicy::default();
    p.rules.insert(Guarded::Quorum, 1);
    assert!(
        s.set_policy(p).is_err(),
        "the quorum rule is implied, never set"
    );
}

#[test]
fn a_denial_closes_and_requests_and_approvals_expire() {
    let mut s = state(2, 3);
    let r = opened(s.admit(Guarded::Destroy, b"d", "x", "user", &[], 100));
    let vs = vec![verdict(r, 1, true, 101), verdict(r, 3, false, 102)];
    assert_eq!(
        s.standing(s.request(r).unwrap(), &vs, 103),
        Standing::Denied { by: 3 }
    );
    assert!(matches!(
        s.check_verdict(&verdict(r, 2, true, 103), &vs, 103),
        Err(QuorumError::Closed {
            standing: "denied",
            ..
        })
    ));
    // Not approved within the request's lifetime: expired, and a new request opens.
    let r2 = opened(s.admit(Guarded::Destroy, b"e", "y", "user", &[], 200));
    let late = 200 + DEFAULT_REQUEST_TTL;
    assert_eq!(
        s.standing(s.request(r2).unwrap(), &[], late),
        Standing::Expired
    );
    let vs = vec![verdict(r2, 1, true, late), verdict(r2, 2, true, late)];
    assert_eq!(
        s.standing(s.request(r2).unwrap(), &vs, late),
        Standing::Expired
    );
    // Approved, but not used within the approval's lifetime.
    let r3 = opened(s.admit(Guarded::Destroy, b"f", "z", "user", &[], 1000));
    let vs = vec![verdict(r3, 1, true, 1001), verdict(r3, 2, true, 1002)];
    let until = 1002 + DEFAULT_APPROVED_TTL;
    assert_eq!(
        s.standing(s.request(r3).unwrap(), &vs, until - 1),
        Standing::Approved { until }
    );
    assert_eq!(
        s.standing(s.request(r3).unwrap(), &vs, until),
        Standing::Expired
    );
    assert!(matches!(
        s.admit(Guarded::Destroy, b"f", "z", "user", &vs, until),
        Admission::Wait { opened: true, .. }
    ));
}

#[test]
fn verdicts_of_unknown_approvers_and_far_dated_ones_count_for_nothing() {
    let mut s = state(2, 3);
    let r = opened(s.admit(Guarded::Destroy, b"d", "x", "user", &[], 1000));
    let vs = vec![verdict(r, 1, true, 1001), verdict(r, 9, true, 1001)];
    assert!(matches!(
        s.standing(s.request(r).unwrap(), &vs, 1002),
        Standing::Pending { approvals: 1, .. }
    ));
    assert!(matches!(
        s.check_verdict(&verdict(r, 9, true, 1002), &[], 1002),
        Err(QuorumError::NoSuchApprover(9))
    ));
    assert!(
        s.check_verdict(&verdict(r, 2, true, 1002 + 2 * MAX_SKEW), &[], 1002)
            .is_err()
    );
    // The requester must be the one who asked.
    let vs = vec![verdict(r, 1, true, 1001), verdict(r, 2, true, 1001)];
    assert!(matches!(
        s.admit(Guarded::Destroy, b"d", "x", "so", &vs, 1002),
        Admission::Wait { opened: true, .. }
    ));
}

#[test]
fn requests_stay_bounded() {
    let mut s = state(1, 1);
    for i in 0..(MAX_REQUESTS as u64 + 40) {
        s.admit(Guarded::Destroy, &i.to_be_bytes(), "x", "user", &[], i);
    }
    assert!(s.requests.len() <= MAX_REQUESTS);
    assert_eq!(
        s.next_request,
        MAX_REQUESTS as u64 + 41,
        "ids are never reused"
    );
}

#[derive(Clone, Debug)]
enum Step {
    Admit(u8),
    Verdict {
        request: u8,
        approver: u8,
        approve: bool,
    },
    Wait(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3).prop_map(Step::Admit),
        (0u8..6, 0u8..5, prop::bool::weighted(0.85)).prop_map(|(request, approver, approve)| {
            Step::Verdict {
                request,
                approver,
                approve,
            }
        }),
        (0u16..2000).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn nothing_is_spent_without_m_distinct_approvers_or_spent_twice(
        m in 1u32..4,
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut s = state(m, 3);
        let mut vs: Vec<Verdict> = Vec::new();
        let mut now = 0u64;
        let mut spent = std::collections::HashSet::new();
        for st in steps {
            now += 1;
            match st {
                Step::Admit(d) => {
                    if let Admission::Spend(r) = s.admit(Guarded::Destroy, &[d], "x", "user", &vs, now) {
                        prop_assert!(spent.insert(r), "request {} spent twice", r);
                        let req = s.request(r).unwrap().clone();
                        prop_assert_eq!(&req.digest, &vec![d]);
                        let mut who: Vec<u32> = vs.iter()
                            .filter(|v| v.request == r && v.approve && (1..=3).contains(&v.approver))
                            .map(|v| v.approver).collect();
                        who.sort();
                        who.dedup();
                        prop_assert!(who.len() as u32 >= m);
                        prop_assert!(!vs.iter().any(|v| v.request == r && !v.approve));
                    }
                }
                Step::Verdict { request, approver, approve } => {
                    let v = verdict(u64::from(request), u32::from(approver), approve, now);
                    if s.check_verdict(&v, &vs, now).is_ok() {
                        vs.push(v);
                    }
                }
                Step::Wait(t) => now += u64::from(t),
            }
        }
    }
}
