//! The audit log through the runtime the PKCS#11 module drives, on a real on-disk store:
//! each record names the call, the role, the session and the process; key generation
//! names its mechanism; at level `all` every signature is a record naming its key and
//! mechanism; a refused change is a record with its `CKR_*`; a key wrapped out is a
//! record; and the log verifies afterwards.

mod common;

use common::*;
use hsm_core::config::Config;
use hsm_core::types::{AttrValue, AttributeSet, AttributeType as A, MechanismType as M};
use hsm_core::{Error, Hsm, Mechanism};
use hsm_store::Store;
use hsm_store::audit::decode_record;
use hsm_store::backend::Flow;
use hsm_types::TokenId;
use hsm_types::audit::AuditRecord;

fn audited_config(dir: &std::path::Path, level: &str) -> Config {
    Config::parse(&format!(
        "store = {:?}\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n[audit]\nlevel = {level:?}\n",
        dir.join("store")
    ))
    .unwrap()
}

fn records(store: &Store) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    store
        .audit_records(TokenId(1), 0, &mut |_, b| {
            out.push(decode_record(b)?);
            Ok(Flow::Continue)
        })
        .unwrap();
    out
}

fn p256_pair(hsm: &Hsm, h: u64) -> (u64, u64) {
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut pt = AttributeSet::new();
    pt.set(A::TOKEN, AttrValue::Bool(true));
    pt.set(A::EC_PARAMS, AttrValue::Bytes(p256));
    pt.set(A::VERIFY, AttrValue::Bool(true));
    let mut st = AttributeSet::new();
    st.set(A::TOKEN, AttrValue::Bool(true));
    st.set(A::SIGN, AttrValue::Bool(true));
    st.set(A::PRIVATE, AttrValue::Bool(true));
    hsm.generate_key_pair(h, &Mechanism::Plain(M::EC_KEY_PAIR_GEN), pt, st)
        .unwrap()
}

#[test]
fn calls_are_recorded_with_who_what_and_how_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(audited_config(dir.path(), "all")).unwrap();
    let (so, user) = token(&hsm);
    let (public, private) = p256_pair(&hsm, user);
    for _ in 0..3 {
        hsm.sign_init(user, &Mechanism::Plain(M::ECDSA), private)
            .unwrap();
        hsm.sign(user, &[7u8; 32]).unwrap();
    }
    // A refused change: a read-only session may not destroy a token object.
    let slot = hsm.slot_list(true).unwrap()[0];
    let ro = hsm.open_session(hsm.new_app(), slot, false).unwrap();
    let refused = hsm.destroy_object(ro, public);
    assert!(
        matches!(refused, Err(Error::SessionReadOnly)),
        "{refused:?}"
    );
    let mut st = AttributeSet::new();
    st.set(A::TOKEN, AttrValue::Bool(true));
    st.set(A::EXTRACTABLE, AttrValue::Bool(true));
    st.set(A::VALUE_LEN, AttrValue::Ulong(32));
    let secret = hsm
        .generate_key(user, &Mechanism::Plain(M::AES_KEY_GEN), st)
        .unwrap();
    let mut wt = AttributeSet::new();
    wt.set(A::TOKEN, AttrValue::Bool(true));
    wt.set(A::WRAP, AttrValue::Bool(true));
    wt.set(A::VALUE_LEN, AttrValue::Ulong(32));
    let kek = hsm
        .generate_key(user, &Mechanism::Plain(M::AES_KEY_GEN), wt)
        .unwrap();
    let wrapped = hsm.wrap_key(user, &Mechanism::Plain(M::AES_KEY_WRAP_KWP), kek, secret);
    assert!(wrapped.is_ok(), "{wrapped:?}");
    let _ = so;

    let recs = records(hsm.store());
    let login = recs
        .iter()
        .find(|r| r.op == "login.user" && r.result == 0)
        .expect("the user's login");
    assert_eq!(login.call.as_deref(), Some("C_Login"));
    assert_eq!(
        login.actor.role, "public",
        "the login is made before the role is"
    );
    assert_eq!(login.actor.session, Some(user));
    assert_eq!(login.actor.pid, Some(std::process::id()));
    let created: Vec<_> = recs
        .iter()
        .filter(|r| r.call.as_deref() == Some("C_GenerateKeyPair"))
        .collect();
    assert_eq!(created.len(), 2, "one record per object of the pair");
    assert!(created.iter().all(|r| r.op == "object.create"
        && r.mechanism == Some(M::EC_KEY_PAIR_GEN.0)
        && r.actor.role == "user"));
    let signs: Vec<_> = recs.iter().filter(|r| r.op == "key.sign").collect();
    assert_eq!(signs.len(), 3);
    assert!(
        signs
            .iter()
            .all(|r| r.mechanism == Some(M::ECDSA.0) && r.result == 0)
    );
    let destroy = recs
        .iter()
        .find(|r| r.op == "object.destroy")
        .expect("the refused destroy");
    assert_eq!(destroy.result, Error::SessionReadOnly.ckr());
    assert_eq!(destroy.actor.session, Some(ro));
    let wrap = recs
        .iter()
        .find(|r| r.op == "key.wrap")
        .expect("the export");
    assert_eq!(wrap.mechanism, Some(M::AES_KEY_WRAP_KWP.0));
    assert!(wrap.object.is_some());
    let v = hsm.store().verify_audit(TokenId(1), None, None).unwrap();
    assert!(v.ok(), "{v:?}");
}

#[test]
fn at_the_default_level_uses_are_not_recorded_but_changes_are() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(audited_config(dir.path(), "management")).unwrap();
    let (_, user) = token(&hsm);
    let (_, private) = p256_pair(&hsm, user);
    hsm.sign_init(user, &Mechanism::Plain(M::ECDSA), private)
        .unwrap();
    hsm.sign(user, &[7u8; 32]).unwrap();
    let recs = records(hsm.store());
    assert!(recs.iter().all(|r| r.op != "key.sign"));
    assert_eq!(recs.iter().filter(|r| r.op == "object.create").count(), 2);
    assert!(recs.iter().any(|r| r.op == "token.init"));
    assert!(
        recs.iter()
            .any(|r| r.op == "pin.init" && r.actor.role == "so")
    );
}

#[test]
fn a_destroy_waiting_for_approvals_records_the_request_and_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(audited_config(dir.path(), "management")).unwrap();
    let (so, user) = token(&hsm);
    approvers(&hsm, so);
    set_rule(&hsm, so, hsm_core::types::quorum::Guarded::Destroy, 2).unwrap();
    let key = aes(&hsm, user, "guarded");
    assert!(needs_approval(hsm.destroy_object(user, key)));
    let recs = records(hsm.store());
    let request = recs
        .iter()
        .find(|r| r.op == "approval.request.destroy")
        .expect("the request opened");
    assert!(request.request.is_some());
    let refused = recs
        .iter()
        .find(|r| r.op == "object.destroy")
        .expect("the refusal");
    assert_eq!(refused.result, Error::ApprovalRequired(String::new()).ckr());
    assert!(refused.seq > request.seq);
    assert_eq!(recs.iter().filter(|r| r.op == "approver.add").count(), 3);
    assert!(recs.iter().any(|r| r.op == "policy.update"));
}
