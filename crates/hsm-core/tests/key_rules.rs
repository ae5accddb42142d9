//! The token's policy engine through the runtime the PKCS#11 module drives, on a real
//! on-disk store: a code-signing key whose every signature needs 2 of 3 approvals bound
//! to the data signed; a use limit that holds across a restart; a usage window; a
//! mechanism allow-list; the import rule on `C_CreateObject` and `C_UnwrapKey`; a
//! per-key rule raising the token's; and that a key's rules change only with the quorum.

mod common;

use common::*;
use hsm_core::policy::quorum::QuorumCommand;
use hsm_core::types::quorum::{Guarded, KeyRules, QuorumPolicy};
use hsm_core::types::{AttrValue, AttributeSet, AttributeType as A, MechanismType as M};
use hsm_core::{Error, Hsm, Mechanism};
use std::collections::BTreeSet;

const DATA: [u8; 32] = [0x5a; 32];

/// A P-256 key pair on the token: (public, private, key id).
fn ec_pair(hsm: &Hsm, h: u64, label: &str) -> (u64, u64, u64) {
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut pt = AttributeSet::new();
    pt.set(A::TOKEN, AttrValue::Bool(true));
    pt.set(A::EC_PARAMS, AttrValue::Bytes(p256));
    pt.set(A::VERIFY, AttrValue::Bool(true));
    pt.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
    let mut st = AttributeSet::new();
    st.set(A::TOKEN, AttrValue::Bool(true));
    st.set(A::SIGN, AttrValue::Bool(true));
    st.set(A::PRIVATE, AttrValue::Bool(true));
    st.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
    let mech = Mechanism::Plain(M::EC_KEY_PAIR_GEN);
    let (public, private) = hsm.generate_key_pair(h, &mech, pt, st).unwrap();
    (public, private, key_id(hsm, h, label))
}

/// The key id `ferrohsm key list` shows for the key labelled `label`.
fn key_id(hsm: &Hsm, h: u64, label: &str) -> u64 {
    let keys = hsm.lifecycle(h, |km| km.list()).unwrap();
    keys.iter()
        .find(|k| k.label == label)
        .map(|k| k.key.0)
        .expect("the key is listed")
}

fn sign(hsm: &Hsm, h: u64, key: u64, data: &[u8]) -> Result<Vec<u8>, Error> {
    hsm.sign_init(h, &Mechanism::Plain(M::ECDSA), key)?;
    hsm.sign(h, data)
}

fn verifies(hsm: &Hsm, h: u64, public: u64, data: &[u8], sig: &[u8]) -> bool {
    hsm.verify_init(h, &Mechanism::Plain(M::ECDSA), public)
        .unwrap();
    hsm.verify(h, data, sig).is_ok()
}

fn set_key_rules(hsm: &Hsm, so: u64, key: u64, rules: KeyRules) -> Result<(), Error> {
    hsm.quorum_command(
        so,
        QuorumCommand::SetKeyRules {
            key,
            rules: Some(rules),
        },
    )
    .map(|_| ())
}

/// Approvers `which` (indices into `kps`; approver ids are one more) approve `request`.
fn approve(
    hsm: &Hsm,
    h: u64,
    request: u64,
    kps: &[aws_lc_rs::signature::Ed25519KeyPair],
    which: std::ops::Range<usize>,
) {
    for i in which {
        let v = verdict(hsm, h, request, i as u32 + 1, &kps[i], true);
        hsm.submit_verdict(h, v).unwrap();
    }
}

#[test]
fn every_signature_of_a_code_signing_key_needs_two_approvals_bound_to_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    let (root_pub, root, root_id) = ec_pair(&hsm, user, "code-signing-root");
    let (_, leaf, _) = ec_pair(&hsm, user, "leaf");
    let mut rules = KeyRules::default();
    rules.approvals.insert(Guarded::Use, 2);
    set_key_rules(&hsm, so, root_id, rules).unwrap();

    // The attack: sign with the root through the shipped API. Refused, with a request.
    let e = sign(&hsm, user, root, &DATA).unwrap_err();
    assert!(matches!(e, Error::ApprovalRequired(_)), "{e}");
    assert!(e.to_string().contains("needs 2 approvals"), "{e}");
    let r = pending_request(&hsm, user);
    let subject = hsm
        .quorum_view(user)
        .unwrap()
        .state
        .request(r)
        .unwrap()
        .subject
        .clone();
    assert!(subject.contains(&format!("key {root_id}")), "{subject}");
    // Multi-part signing of the same data names the same request: the digest binds the
    // input, not the way it was fed.
    hsm.sign_init(user, &Mechanism::Plain(M::ECDSA), root)
        .unwrap();
    hsm.sign_update(user, &DATA[..10]).unwrap();
    hsm.sign_update(user, &DATA[10..]).unwrap();
    assert!(matches!(
        hsm.sign_final(user),
        Err(Error::ApprovalRequired(_))
    ));
    assert_eq!(pending_request(&hsm, user), r);
    // Other keys sign as before.
    sign(&hsm, user, leaf, &DATA).unwrap();

    approve(&hsm, user, r, &kps, 0..1);
    assert!(matches!(
        sign(&hsm, user, root, &DATA),
        Err(Error::ApprovalRequired(_))
    ));
    let v = verdict(&hsm, user, r, 2, &kps[1], true);
    hsm.submit_verdict(user, v).unwrap();
    // The approval releases other data for nothing; this data once.
    assert!(matches!(
        sign(&hsm, user, root, &[1u8; 32]),
        Err(Error::ApprovalRequired(_))
    ));
    let sig = sign(&hsm, user, root, &DATA).unwrap();
    assert!(verifies(&hsm, user, root_pub, &DATA, &sig));
    assert!(
        matches!(
            sign(&hsm, user, root, &DATA),
            Err(Error::ApprovalRequired(_))
        ),
        "a spent approval signs nothing more"
    );
}

#[test]
fn a_use_limit_holds_across_a_restart_and_a_window_closes_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let (_, k, id) = ec_pair(&hsm, user, "limited");
    let (_, later, later_id) = ec_pair(&hsm, user, "not-yet");
    let now = hsm.quorum_view(user).unwrap().now;
    let limited = KeyRules {
        max_uses: Some(3),
        ..KeyRules::default()
    };
    set_key_rules(&hsm, so, id, limited).unwrap();
    let window = KeyRules {
        not_before: Some(now + 3600),
        not_after: Some(now + 7200),
        ..KeyRules::default()
    };
    set_key_rules(&hsm, so, later_id, window).unwrap();

    sign(&hsm, user, k, &DATA).unwrap();
    sign(&hsm, user, k, &DATA).unwrap();
    drop(hsm);
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let user = user_session(&hsm);
    sign(&hsm, user, k, &DATA).unwrap();
    let e = sign(&hsm, user, k, &DATA).unwrap_err();
    assert!(
        matches!(e, Error::PolicyDenied(ref w) if w.contains("3 times of 3")),
        "{e}"
    );
    assert_eq!(hsm.quorum_view(user).unwrap().state.uses[&id], 3);

    let e = sign(&hsm, user, later, &DATA).unwrap_err();
    assert!(
        matches!(e, Error::PolicyDenied(ref w) if w.contains("before")),
        "{e}"
    );
    drop(hsm);
    // An hour and a half later (the clock moved by the configuration): inside the window.
    let mut cfg = config(dir.path());
    cfg.lifecycle.clock_offset_secs = 5400;
    let hsm = Hsm::open(cfg).unwrap();
    let user = user_session(&hsm);
    sign(&hsm, user, later, &DATA).unwrap();
    drop(hsm);
    let mut cfg = config(dir.path());
    cfg.lifecycle.clock_offset_secs = 7300;
    let hsm = Hsm::open(cfg).unwrap();
    let user = user_session(&hsm);
    let e = sign(&hsm, user, later, &DATA).unwrap_err();
    assert!(
        matches!(e, Error::PolicyDenied(ref w) if w.contains("from")),
        "{e}"
    );
}

#[test]
fn a_mechanism_allow_list_refuses_every_other_mechanism() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let (_, ec, _) = ec_pair(&hsm, user, "ec");
    let k = aes(&hsm, user, "aes");
    let policy = QuorumPolicy {
        mechanisms: Some(BTreeSet::from([M::ECDSA.0, M::AES_GCM.0])),
        ..hsm.quorum_view(so).unwrap().state.policy
    };
    hsm.quorum_command(so, QuorumCommand::SetPolicy { policy })
        .unwrap();
    sign(&hsm, user, ec, &DATA).unwrap();
    let gcm = Mechanism::Gcm {
        iv: vec![0; 12],
        aad: vec![],
        tag_bits: 128,
    };
    hsm.encrypt_init(user, &gcm, k).unwrap();
    hsm.encrypt(user, b"hello").unwrap();
    let cbc = Mechanism::Iv {
        mechanism: M::AES_CBC_PAD,
        iv: vec![0; 16],
    };
    let e = hsm.encrypt_init(user, &cbc, k).unwrap_err();
    assert!(
        matches!(e, Error::PolicyDenied(ref w) if w.contains("not among")),
        "{e}"
    );
    let e = sign(&hsm, user, ec, &DATA);
    assert!(e.is_ok());
    let sha = Mechanism::Plain(M::ECDSA_SHA256);
    assert!(matches!(
        hsm.sign_init(user, &sha, ec),
        Err(Error::PolicyDenied(_))
    ));
}

#[test]
fn importing_a_key_into_the_token_needs_approvals_under_the_import_rule() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    let kek = {
        let mut t = AttributeSet::new();
        t.set(A::TOKEN, AttrValue::Bool(true));
        t.set(A::WRAP, AttrValue::Bool(true));
        t.set(A::UNWRAP, AttrValue::Bool(true));
        t.set(A::VALUE_LEN, AttrValue::Ulong(32));
        hsm.generate_key(user, &Mechanism::Plain(M::AES_KEY_GEN), t)
            .unwrap()
    };
    set_rule(&hsm, so, Guarded::Import, 2).unwrap();
    let secret = |token: bool| {
        let mut t = AttributeSet::new();
        t.set(A::CLASS, AttrValue::Ulong(4));
        t.set(A::KEY_TYPE, AttrValue::Ulong(0x1f));
        t.set(A::TOKEN, AttrValue::Bool(token));
        t.set(A::VALUE, AttrValue::Bytes(vec![0x42; 32]));
        t
    };
    // Session keys are no import into the token.
    hsm.create_object(user, secret(false)).unwrap();
    let e = hsm.create_object(user, secret(true)).unwrap_err();
    assert!(matches!(e, Error::ApprovalRequired(_)), "{e}");
    let r = pending_request(&hsm, user);
    approve(&hsm, user, r, &kps, 0..2);
    let imported = hsm.create_object(user, secret(true)).unwrap();
    hsm.object_attributes(user, imported).unwrap();
    assert!(matches!(
        hsm.create_object(user, secret(true)),
        Err(Error::ApprovalRequired(_))
    ));

    // C_UnwrapKey of a token key is an import too.
    let mut t = AttributeSet::new();
    t.set(A::TOKEN, AttrValue::Bool(true));
    t.set(A::EXTRACTABLE, AttrValue::Bool(true));
    t.set(A::VALUE_LEN, AttrValue::Ulong(32));
    let session_key = {
        let mut s = t.clone();
        s.set(A::TOKEN, AttrValue::Bool(false));
        hsm.generate_key(user, &Mechanism::Plain(M::AES_KEY_GEN), s)
            .unwrap()
    };
    let wrap = Mechanism::Plain(M::AES_KEY_WRAP_KWP);
    let blob = hsm.wrap_key(user, &wrap, kek, session_key).unwrap();
    let mut into = AttributeSet::new();
    into.set(A::CLASS, AttrValue::Ulong(4));
    into.set(A::KEY_TYPE, AttrValue::Ulong(0x1f));
    into.set(A::TOKEN, AttrValue::Bool(true));
    let e = hsm
        .unwrap_key(user, &wrap, kek, &blob, into.clone())
        .unwrap_err();
    assert!(matches!(e, Error::ApprovalRequired(_)), "{e}");
    let r = pending_request(&hsm, user);
    approve(&hsm, user, r, &kps, 1..3);
    hsm.unwrap_key(user, &wrap, kek, &blob, into).unwrap();
}

#[test]
fn a_key_rule_raises_the_token_rule_and_changes_only_with_the_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    let k = aes(&hsm, user, "precious");
    let plain = aes(&hsm, user, "plain");
    let id = key_id(&hsm, user, "precious");
    set_rule(&hsm, so, Guarded::Destroy, 1).unwrap();
    // With a rule in force, setting a key's rules is itself a request.
    let mut rules = KeyRules::default();
    rules.approvals.insert(Guarded::Destroy, 3);
    assert!(matches!(
        set_key_rules(&hsm, so, id, rules.clone()),
        Err(Error::ApprovalRequired(_))
    ));
    let r = pending_request(&hsm, so);
    approve(&hsm, so, r, &kps, 0..1);
    set_key_rules(&hsm, so, id, rules).unwrap();

    let e = hsm.destroy_object(user, k).unwrap_err();
    assert!(e.to_string().contains("needs 3 approvals"), "{e}");
    let e = hsm.destroy_object(user, plain).unwrap_err();
    assert!(e.to_string().contains("needs 1 approvals"), "{e}");
    // Lowering the key's rule now needs the largest quorum: 3.
    let e = hsm
        .quorum_command(
            so,
            QuorumCommand::SetKeyRules {
                key: id,
                rules: None,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("needs 3 approvals"), "{e}");
    // The user cannot set rules.
    assert!(matches!(
        set_key_rules(&hsm, user, id, KeyRules::default()),
        Err(Error::UserNotLoggedIn)
    ));
}

#[test]
fn changing_a_keys_roles_needs_the_key_policy_approvals_and_a_label_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (so, user) = token(&hsm);
    let kps = approvers(&hsm, so);
    let k = aes(&hsm, user, "roles");
    set_rule(&hsm, so, Guarded::KeyPolicy, 2).unwrap();
    let mut relabel = AttributeSet::new();
    relabel.set(A::LABEL, AttrValue::Bytes(b"renamed".to_vec()));
    hsm.set_attributes(user, k, relabel).unwrap();

    let mut widen = AttributeSet::new();
    widen.set(A::WRAP, AttrValue::Bool(true));
    let e = hsm.set_attributes(user, k, widen.clone()).unwrap_err();
    assert!(matches!(e, Error::ApprovalRequired(_)), "{e}");
    let r = pending_request(&hsm, user);
    let subject = hsm
        .quorum_view(user)
        .unwrap()
        .state
        .request(r)
        .unwrap()
        .subject
        .clone();
    assert!(subject.contains("WRAP = TRUE"), "{subject}");
    let attrs = |hsm: &Hsm| hsm.object_attributes(user, k).unwrap();
    assert_ne!(attrs(&hsm).bool(A::WRAP), Some(true), "nothing changed");
    approve(&hsm, user, r, &kps, 0..2);
    hsm.set_attributes(user, k, widen.clone()).unwrap();
    assert_eq!(attrs(&hsm).bool(A::WRAP), Some(true));
    let mut back = AttributeSet::new();
    back.set(A::WRAP, AttrValue::Bool(false));
    assert!(matches!(
        hsm.set_attributes(user, k, back),
        Err(Error::ApprovalRequired(_))
    ));
}
