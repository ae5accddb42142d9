//! The runtime's seams on a real on-disk store: every call goes through `Hsm::run`, so a
//! policy engine's refusal holds, and the audit and metrics sinks see each call with its
//! outcome.

use hsm_core::audit::{AuditEvent, AuditSink};
use hsm_core::config::Config;
use hsm_core::metrics::{Metrics, Observation};
use hsm_core::objects::attrs::Actor;
use hsm_core::policy::{Decision, PendingApproval, PolicyEngine, Request};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, MechanismType as M, SecretString,
};
use hsm_core::{Action, Error, Hooks, Hsm, LoginKind, Mechanism, OpKind};
use std::sync::{Arc, Mutex};

/// Refuses signing with any key labelled "root", and asks for approvals before any key
/// generation by the user.
struct CodeSigningPolicy;

impl PolicyEngine for CodeSigningPolicy {
    fn evaluate(&self, r: &Request<'_>) -> Decision {
        if r.action == Action::Start(OpKind::Sign)
            && r.key.and_then(|k| k.label()) == Some(b"root".as_slice())
        {
            return Decision::Deny("the root key signs only with approvals".into());
        }
        if r.action == Action::GenerateKey && r.actor == Actor::User {
            return Decision::NeedsApproval(PendingApproval {
                reason: "2 of 3 approvers".into(),
            });
        }
        Decision::Allow
    }
}

/// What the audit sink saw of one call: the action, slot, actor and whether it succeeded.
type Seen = (Action, Option<u64>, Option<Actor>, bool);

#[derive(Default)]
struct Recorder {
    audit: Mutex<Vec<Seen>>,
    metrics: Mutex<Vec<(Action, bool)>>,
}

impl AuditSink for Recorder {
    fn record(&self, e: &AuditEvent<'_>) {
        self.audit
            .lock()
            .unwrap()
            .push((e.action, e.slot, e.actor, e.outcome.is_ok()));
    }
}

struct Measured(Arc<Recorder>);

impl Metrics for Measured {
    fn observe(&self, o: &Observation<'_>) {
        self.0
            .metrics
            .lock()
            .unwrap()
            .push((o.action, o.outcome.is_ok()));
    }
}

fn config(dir: &std::path::Path) -> Config {
    Config::parse(&format!(
        "store = {:?}\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n[pin_policy]\nmin_len = 4\nmax_len = 16\nmax_failures = 5\n",
        dir.join("store")
    ))
    .unwrap()
}

fn ec_template(label: &str) -> (AttributeSet, AttributeSet) {
    let mut public = AttributeSet::new();
    public.set(A::TOKEN, AttrValue::Bool(true));
    public.set(
        A::EC_PARAMS,
        AttrValue::Bytes(vec![
            0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]),
    );
    let mut private = AttributeSet::new();
    private.set(A::TOKEN, AttrValue::Bool(true));
    private.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
    (public, private)
}

#[test]
fn policy_refusals_hold_and_every_call_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let hooks = Hooks {
        policy: Arc::new(CodeSigningPolicy),
        audit: Some(rec.clone()),
        metrics: Some(Arc::new(Measured(rec.clone()))),
        ..Hooks::default()
    };
    let hsm = Hsm::open_with(config(dir.path()), hooks).unwrap();
    let slot = hsm.slot_list(true).unwrap()[0];
    let app = hsm.new_app();
    hsm.init_token(slot, SecretString::from("so-pin-1"), "hooks".into())
        .unwrap();
    let h = hsm.open_session(app, slot, true).unwrap();
    hsm.login(h, LoginKind::So, SecretString::from("so-pin-1"))
        .unwrap();
    hsm.init_pin(h, SecretString::from("user-pin")).unwrap();
    hsm.logout(h).unwrap();
    hsm.login(h, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();

    let ecdsa = Mechanism::Plain(M::ECDSA);
    let pair_gen = Mechanism::Plain(M::EC_KEY_PAIR_GEN);
    let (pt, st) = ec_template("root");
    let (_, root) = hsm.generate_key_pair(h, &pair_gen, pt, st).unwrap();
    let (pt, st) = ec_template("leaf");
    let (_, leaf) = hsm.generate_key_pair(h, &pair_gen, pt, st).unwrap();

    // The attack: sign with the root key through the shipped API. Refused at init, and no
    // operation is left behind.
    let e = hsm.sign_init(h, &ecdsa, root).unwrap_err();
    assert!(
        matches!(e, Error::PolicyDenied(ref r) if r.contains("approvals")),
        "{e}"
    );
    assert!(!hsm.has_operation(h, OpKind::Sign).unwrap());
    assert!(matches!(
        hsm.sign(h, &[0u8; 32]),
        Err(Error::OperationNotInitialized)
    ));
    // Another key signs.
    hsm.sign_init(h, &ecdsa, leaf).unwrap();
    assert_eq!(hsm.sign(h, &[7u8; 32]).unwrap().len(), 64);
    // Approval needed before the call even looks at its arguments.
    let mut t = AttributeSet::new();
    t.set(A::VALUE_LEN, AttrValue::Ulong(32));
    let e = hsm
        .generate_key(h, &Mechanism::Plain(M::AES_KEY_GEN), t)
        .unwrap_err();
    assert!(
        matches!(e, Error::ApprovalRequired(ref r) if r == "2 of 3 approvers"),
        "{e}"
    );

    let audit = rec.audit.lock().unwrap().clone();
    let find = |a: Action, ok: bool| audit.iter().filter(|e| e.0 == a && e.3 == ok).count();
    assert_eq!(find(Action::InitToken, true), 1, "{audit:?}");
    assert_eq!(find(Action::InitPin, true), 1);
    assert_eq!(find(Action::Login, true), 2);
    assert_eq!(find(Action::GenerateKeyPair, true), 2);
    assert_eq!(find(Action::Start(OpKind::Sign), false), 1);
    assert_eq!(find(Action::Start(OpKind::Sign), true), 1);
    assert_eq!(find(Action::Continue(OpKind::Sign), false), 1);
    assert_eq!(find(Action::Continue(OpKind::Sign), true), 1);
    assert_eq!(find(Action::GenerateKey, false), 1);
    let signer = audit
        .iter()
        .find(|e| e.0 == Action::Start(OpKind::Sign) && e.3)
        .unwrap();
    assert_eq!((signer.1, signer.2), (Some(slot), Some(Actor::User)));
    // Metrics see the session calls (token initialisation has no session).
    let m = rec.metrics.lock().unwrap().clone();
    assert_eq!(m.len(), audit.len() - 1, "{m:?}");
    assert!(m.contains(&(Action::GenerateKey, false)));
}

#[test]
fn a_bad_session_is_reported_without_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let hooks = Hooks {
        audit: Some(rec.clone()),
        ..Hooks::default()
    };
    let hsm = Hsm::open_with(config(dir.path()), hooks).unwrap();
    let mut out = [0u8; 8];
    assert!(matches!(
        hsm.generate_random(99, &mut out),
        Err(Error::SessionHandleInvalid)
    ));
    let audit = rec.audit.lock().unwrap().clone();
    assert_eq!(audit, vec![(Action::Random, None, None, false)]);
}
