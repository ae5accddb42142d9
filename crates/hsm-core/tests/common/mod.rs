//! What the dual-control runtime tests share: a token with an SO and a user, three
//! registered approvers, rules, and approvers' signed verdicts.

#![allow(dead_code)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use hsm_core::config::Config;
use hsm_core::policy::quorum::QuorumCommand;
use hsm_core::types::quorum::{Guarded, Standing, Verdict, approval_message};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, MechanismType as M, SecretString,
};
use hsm_core::{Error, Hsm, LoginKind, Mechanism};

pub fn config(dir: &std::path::Path) -> Config {
    Config::parse(&format!(
        "store = {:?}\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n",
        dir.join("store")
    ))
    .unwrap()
}

/// The SO's and the user's read-write sessions on a fresh token.
pub fn token(hsm: &Hsm) -> (u64, u64) {
    let slot = hsm.slot_list(true).unwrap()[0];
    let app = hsm.new_app();
    hsm.init_token(slot, SecretString::from("so-pin-1"), "dual".into())
        .unwrap();
    let so = hsm.open_session(app, slot, true).unwrap();
    hsm.login(so, LoginKind::So, SecretString::from("so-pin-1"))
        .unwrap();
    hsm.init_pin(so, SecretString::from("user-pin")).unwrap();
    let other = hsm.new_app();
    let user = hsm.open_session(other, slot, true).unwrap();
    hsm.login(user, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    (so, user)
}

/// A new read-write session of a new application with the user logged in.
pub fn user_session(hsm: &Hsm) -> u64 {
    let slot = hsm.slot_list(true).unwrap()[0];
    let user = hsm.open_session(hsm.new_app(), slot, true).unwrap();
    hsm.login(user, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    user
}

pub fn approvers(hsm: &Hsm, so: u64) -> Vec<Ed25519KeyPair> {
    let rng = SystemRandom::new();
    (0..3)
        .map(|i| {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            hsm.quorum_command(
                so,
                QuorumCommand::AddApprover {
                    name: format!("approver-{i}"),
                    public_key: kp.public_key().as_ref().to_vec(),
                },
            )
            .unwrap();
            kp
        })
        .collect()
}

pub fn set_rule(hsm: &Hsm, so: u64, op: Guarded, m: u32) -> Result<(), Error> {
    let mut policy = hsm.quorum_view(so).unwrap().state.policy;
    policy.rules.insert(op, m);
    hsm.quorum_command(so, QuorumCommand::SetPolicy { policy })
        .map(|_| ())
}

pub fn aes(hsm: &Hsm, h: u64, label: &str) -> u64 {
    let mut t = AttributeSet::new();
    t.set(A::TOKEN, AttrValue::Bool(true));
    t.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
    t.set(A::VALUE_LEN, AttrValue::Ulong(32));
    hsm.generate_key(h, &Mechanism::Plain(M::AES_KEY_GEN), t)
        .unwrap()
}

/// Approver `who` (1-based id) signs `approve` on `request` with key `kp`.
pub fn verdict(
    hsm: &Hsm,
    h: u64,
    request: u64,
    who: u32,
    kp: &Ed25519KeyPair,
    approve: bool,
) -> Verdict {
    let view = hsm.quorum_view(h).unwrap();
    let digest = &view.state.request(request).unwrap().digest;
    let mut v = Verdict {
        request,
        approver: who,
        approve,
        at: view.now,
        signature: Vec::new(),
    };
    let msg = approval_message(&view.store_id, view.token, &v, digest);
    v.signature = kp.sign(&msg).as_ref().to_vec();
    v
}

pub fn pending_request(hsm: &Hsm, h: u64) -> u64 {
    hsm.quorum_view(h)
        .unwrap()
        .requests
        .iter()
        .rev()
        .find(|r| matches!(r.standing, Standing::Pending { .. }))
        .map(|r| r.request.id)
        .expect("a pending request")
}

pub fn needs_approval(r: Result<(), Error>) -> bool {
    matches!(r, Err(Error::ApprovalRequired(_)))
}
