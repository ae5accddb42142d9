//! Dual control through the runtime the PKCS#11 module drives, on a real on-disk store:
//! a 2-of-3 destroy (refused with a request, two approvers sign, the repeated
//! `C_DestroyObject` succeeds once); an approval bound to one key does not release
//! another; one approver cannot approve twice; a forged signature is refused; requests
//! and verdicts survive a restart; the rules change only with the quorum.

mod common;

use common::*;
use hsm_core::policy::quorum::QuorumCommand;
use hsm_core::types::quorum::{Guarded, Standing};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, MechanismType as M, SecretString,
};
use hsm_core::{Error, Hsm, Mechanism};

#[test]
fn a_two_of_three_destroy_runs_once_after_two_approvers_sign() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    set_rule(&hsm, so, Guarded::Destroy, 2).unwrap();
    let k = aes(&hsm, user, "doomed");
    let other = aes(&hsm, user, "kept");

    let e = hsm.destroy_object(user, k).unwrap_err();
    assert!(e.to_string().contains("needs 2 approvals: request"), "{e}");
    let r = pending_request(&hsm, user);
    // Asking again names the same request.
    assert!(needs_approval(hsm.destroy_object(user, k)));
    assert_eq!(pending_request(&hsm, user), r);

    let first = verdict(&hsm, so, r, 1, &kps[0], true);
    assert!(matches!(
        hsm.submit_verdict(so, first.clone()).unwrap(),
        Standing::Pending {
            approvals: 1,
            needed: 2
        }
    ));
    // The same approver twice, and a signature by the wrong key, count for nothing.
    let again = verdict(&hsm, so, r, 1, &kps[0], true);
    assert!(hsm.submit_verdict(so, again).is_err());
    let forged = verdict(&hsm, so, r, 2, &kps[0], true);
    let e = hsm.submit_verdict(so, forged).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert!(needs_approval(hsm.destroy_object(user, k)));

    // Requests and verdicts survive a restart.
    drop(hsm);
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let user = user_session(&hsm);
    assert_eq!(pending_request(&hsm, user), r);
    let second = verdict(&hsm, user, r, 3, &kps[2], true);
    assert!(matches!(
        hsm.submit_verdict(user, second).unwrap(),
        Standing::Approved { .. }
    ));

    // The approval releases this key only, and only once.
    assert!(needs_approval(hsm.destroy_object(user, other)));
    hsm.destroy_object(user, k).unwrap();
    assert!(matches!(
        hsm.object_attributes(user, k),
        Err(Error::ObjectHandleInvalid)
    ));
    let view = hsm.quorum_view(user).unwrap();
    let spent = view.requests.iter().find(|x| x.request.id == r).unwrap();
    assert!(
        matches!(spent.standing, Standing::Used { .. }),
        "{:?}",
        spent.standing
    );
    let late = verdict(&hsm, user, r, 2, &kps[1], true);
    assert!(
        hsm.submit_verdict(user, late).is_err(),
        "a spent request takes no verdict"
    );
}

#[test]
fn the_rules_change_only_with_the_largest_quorum_and_a_denial_closes_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    set_rule(&hsm, so, Guarded::Destroy, 2).unwrap();
    // Lowering the rule is itself a request needing two approvals.
    assert!(needs_approval(set_rule(&hsm, so, Guarded::Destroy, 1)));
    let r = pending_request(&hsm, so);
    assert_eq!(
        hsm.quorum_view(so)
            .unwrap()
            .state
            .request(r)
            .unwrap()
            .requester,
        "so"
    );
    for (i, kp) in kps.iter().take(2).enumerate() {
        let v = verdict(&hsm, so, r, i as u32 + 1, kp, true);
        hsm.submit_verdict(so, v).unwrap();
    }
    set_rule(&hsm, so, Guarded::Destroy, 1).unwrap();
    assert_eq!(
        hsm.quorum_view(so)
            .unwrap()
            .state
            .required(Guarded::Destroy),
        1
    );
    // The user cannot manage approvers.
    assert!(matches!(
        hsm.quorum_command(user, QuorumCommand::RemoveApprover { id: 1 }),
        Err(Error::UserNotLoggedIn)
    ));
    // A denial closes the request; the operation stays refused.
    let k = aes(&hsm, user, "k");
    assert!(needs_approval(hsm.destroy_object(user, k)));
    let r = pending_request(&hsm, user);
    let no = verdict(&hsm, user, r, 2, &kps[1], false);
    assert!(matches!(
        hsm.submit_verdict(user, no).unwrap(),
        Standing::Denied { by: 2 }
    ));
    let yes = verdict(&hsm, user, r, 1, &kps[0], true);
    assert!(hsm.submit_verdict(user, yes).is_err());
    assert!(
        needs_approval(hsm.destroy_object(user, k)),
        "a new request opens"
    );
    assert_ne!(pending_request(&hsm, user), r);
}

#[test]
fn c_init_token_does_not_wipe_a_token_under_dual_control() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    approvers(&hsm, so);
    set_rule(&hsm, so, Guarded::Destroy, 2).unwrap();
    let k = aes(&hsm, user, "kept");
    hsm.close_session(so).unwrap();
    hsm.close_session(user).unwrap();
    let slot = hsm.slot_list(true).unwrap()[0];
    let e = hsm
        .init_token(slot, SecretString::from("so-pin-1"), "wiped".into())
        .unwrap_err();
    assert!(matches!(e, Error::ActionProhibited(_)), "{e}");
    assert!(e.to_string().contains("dual control"), "{e}");
    let user = user_session(&hsm);
    hsm.object_attributes(user, k).unwrap();
}

#[test]
fn under_the_export_rule_a_token_key_leaves_only_wrapped_with_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    let key = |label: &str, extra: &[(A, bool)]| {
        let mut t = AttributeSet::new();
        t.set(A::TOKEN, AttrValue::Bool(true));
        t.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
        t.set(A::VALUE_LEN, AttrValue::Ulong(32));
        for (a, v) in extra {
            t.set(*a, AttrValue::Bool(*v));
        }
        hsm.generate_key(user, &Mechanism::Plain(M::AES_KEY_GEN), t)
            .unwrap()
    };
    let kek = key("kek", &[(A::WRAP, true)]);
    let open = [(A::EXTRACTABLE, true), (A::SENSITIVE, false)];
    let k = key("exportable", &open);
    let other = key("exportable-too", &open);
    assert!(
        hsm.object_attributes(user, k)
            .unwrap()
            .get(A::VALUE)
            .is_some()
    );
    set_rule(&hsm, so, Guarded::Export, 1).unwrap();

    // Its value no longer reads in the clear.
    let seen = hsm.object_attributes(user, k).unwrap();
    assert!(seen.get(A::VALUE).is_none());
    assert_eq!(seen.bool(A::SENSITIVE), Some(true));
    let wrap = |key: u64| hsm.wrap_key(user, &Mechanism::Plain(M::AES_KEY_WRAP), kek, key);
    assert!(matches!(wrap(k), Err(Error::ApprovalRequired(_))));
    let r = pending_request(&hsm, user);
    let v = verdict(&hsm, user, r, 2, &kps[1], true);
    hsm.submit_verdict(user, v).unwrap();
    assert!(
        matches!(wrap(other), Err(Error::ApprovalRequired(_))),
        "bound to the key"
    );
    assert_eq!(wrap(k).unwrap().len(), 40);
    assert!(matches!(wrap(k), Err(Error::ApprovalRequired(_))), "once");

    // A session key is not the rule's concern.
    let mut t = AttributeSet::new();
    t.set(A::TOKEN, AttrValue::Bool(false));
    t.set(A::VALUE_LEN, AttrValue::Ulong(16));
    t.set(A::EXTRACTABLE, AttrValue::Bool(true));
    let s = hsm
        .generate_key(user, &Mechanism::Plain(M::AES_KEY_GEN), t)
        .unwrap();
    assert_eq!(wrap(s).unwrap().len(), 24);
}

#[test]
fn an_expired_approval_releases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    set_rule(&hsm, so, Guarded::Destroy, 2).unwrap();
    let k = aes(&hsm, user, "k");
    assert!(needs_approval(hsm.destroy_object(user, k)));
    let r = pending_request(&hsm, user);
    for (i, kp) in kps.iter().take(2).enumerate() {
        let v = verdict(&hsm, user, r, i as u32 + 1, kp, true);
        hsm.submit_verdict(user, v).unwrap();
    }
    drop(hsm);
    // Eleven minutes later (the clock moved by the configuration, no sleeping): the
    // approved request was not used within approved_ttl (ten minutes).
    let mut cfg = config(dir.path());
    cfg.lifecycle.clock_offset_secs = 11 * 60;
    let hsm = Hsm::open(cfg).unwrap();
    let user = user_session(&hsm);
    let view = hsm.quorum_view(user).unwrap();
    assert_eq!(view.requests[0].standing, Standing::Expired);
    assert!(needs_approval(hsm.destroy_object(user, k)));
    assert_ne!(pending_request(&hsm, user), r, "a new request");
    hsm.object_attributes(user, k).unwrap();
    // A verdict on the expired request is refused.
    let late = verdict(&hsm, user, r, 3, &kps[2], true);
    assert!(hsm.submit_verdict(user, late).is_err());
}
