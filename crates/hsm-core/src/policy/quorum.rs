//! Dual control in the running token: the guard every guarded operation passes
//! ([`admit`]), the approvers' side (listing requests, recording a signed verdict,
//! [`Hsm::submit_verdict`]) and the SO's management of approvers and rules
//! ([`Hsm::quorum_command`]), itself guarded by the largest quorum of any rule. The model
//! is `hsm_types::quorum`; `docs/approvals.md` is the prose.

use super::engine::Guard;
use crate::error::{Error, Result};
use crate::lifecycle::now;
use crate::objects::attrs::Actor;
use crate::ops::Action;
use crate::runtime::Hsm;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use hsm_store::{Store, TokenKeys};
use hsm_types::quorum::{
    Admission, Decision, Guarded, KeyRules, Operation, QuorumError, QuorumPolicy, QuorumState,
    Request, Role, Standing, Verdict, approval_message, canonical_key_rules, canonical_policy,
    request_preimage,
};

/// The digest a request is bound to: SHA-256 of the operation's class and fields.
pub fn request_digest(op: Guarded, fields: &[&[u8]]) -> Vec<u8> {
    digest(&SHA256, &request_preimage(op, fields))
        .as_ref()
        .to_vec()
}

/// Whether `v`'s signature verifies under the registered approver's key.
pub fn verdict_signed(state: &QuorumState, store_id: &[u8], token: u64, v: &Verdict) -> bool {
    let (Some(a), Some(r)) = (state.approver(v.approver), state.request(v.request)) else {
        return false;
    };
    let msg = approval_message(store_id, token, v, &r.digest);
    UnparsedPublicKey::new(&ED25519, &a.public_key)
        .verify(&msg, &v.signature)
        .is_ok()
}

/// A request as approvers see it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RequestView {
    pub request: Request,
    pub standing: Standing,
    /// Approvers whose verdict on it verified.
    pub approvals: Vec<u32>,
    pub denials: Vec<u32>,
}

/// The SO's dual-control commands (`ferrohsm quorum …`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum QuorumCommand {
    AddApprover {
        name: String,
        public_key: Vec<u8>,
    },
    RemoveApprover {
        id: u32,
    },
    SetPolicy {
        policy: QuorumPolicy,
    },
    /// One key's rules (`None` clears them).
    SetKeyRules {
        key: u64,
        rules: Option<KeyRules>,
    },
}

impl QuorumCommand {
    fn digest(&self) -> Vec<u8> {
        match self {
            QuorumCommand::AddApprover { name, public_key } => {
                request_digest(Guarded::Quorum, &[b"add", name.as_bytes(), public_key])
            }
            QuorumCommand::RemoveApprover { id } => {
                request_digest(Guarded::Quorum, &[b"remove", &id.to_be_bytes()])
            }
            QuorumCommand::SetPolicy { policy } => {
                request_digest(Guarded::Quorum, &[b"rules", &canonical_policy(policy)])
            }
            QuorumCommand::SetKeyRules { key, rules } => {
                let r = rules.as_ref().map(canonical_key_rules).unwrap_or_default();
                request_digest(Guarded::Quorum, &[b"key-rules", &key.to_be_bytes(), &r])
            }
        }
    }

    fn subject(&self) -> String {
        match self {
            QuorumCommand::AddApprover { name, .. } => format!("register approver {name:?}"),
            QuorumCommand::RemoveApprover { id } => format!("remove approver {id}"),
            QuorumCommand::SetPolicy { policy } => format!(
                "set the rules to {:?} (mechanisms {:?})",
                policy.rules, policy.mechanisms
            ),
            QuorumCommand::SetKeyRules { key, rules: None } => {
                format!("clear key {key}'s rules")
            }
            QuorumCommand::SetKeyRules {
                key,
                rules: Some(r),
            } => format!("set key {key}'s rules to {r:?}"),
        }
    }
}

/// What the approvers' side reads: the state and every request with its standing.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct QuorumView {
    pub state: QuorumState,
    pub requests: Vec<RequestView>,
    /// What approvers sign with: the store id and the token's number.
    pub store_id: Vec<u8>,
    pub token: u64,
    pub now: u64,
}

/// The name a request records its requester by.
fn requester(r: Role) -> &'static str {
    match r {
        Role::So => "so",
        Role::User => "user",
        Role::Public => "public",
        Role::Auditor => "auditor",
    }
}

fn valid_verdicts(store: &Store, keys: &TokenKeys, state: &QuorumState) -> Result<Vec<Verdict>> {
    let store_id = store.store_id();
    let token = u64::from(keys.token().0);
    Ok(store
        .verdicts(keys)?
        .into_iter()
        .filter(|v| verdict_signed(state, &store_id, token, v))
        .collect())
}

/// Lets a guarded operation through, or opens (or names) the request it waits for and
/// refuses it with [`Error::ApprovalRequired`] (`CKR_ACTION_PROHIBITED`). The policy
/// engine ([`QuorumState::evaluate`]) decides whether and how many approvals it needs
/// (a per-key rule before the token's). An approved request is spent durably before the
/// operation runs: a crash between the two loses the approval, never lets it be used
/// twice. Every front end passes here: the PKCS#11 module, the server and the CLI.
pub fn admit(store: &Store, keys: &TokenKeys, g: &Guard<'_>, now: u64) -> Result<()> {
    let shared = store.quorum_shared(keys)?;
    let needed = match shared.evaluate(g.role, Operation::Manage(g.op), g.key, now) {
        Decision::Allow => return Ok(()),
        Decision::Deny(why) => return Err(Error::PolicyDenied(why)),
        Decision::NeedsApproval { needed, .. } => needed,
    };
    if !keys.has_master() {
        return Err(Error::UserNotLoggedIn);
    }
    let mut state = (*shared).clone();
    let verdicts = valid_verdicts(store, keys, &state)?;
    let who = requester(g.role);
    match state.admit_needing(needed, g.op, g.digest, g.subject, who, &verdicts, now) {
        Admission::Allow => Ok(()),
        Admission::Spend(id) => {
            state.seq += 1;
            store.commit_quorum(keys, &state)?;
            tracing::info!(request = id, "{}: approved request {id} spent", g.subject);
            Ok(())
        }
        Admission::Wait { request, opened } => {
            if opened {
                state.seq += 1;
                store.commit_quorum(keys, &state)?;
            }
            tracing::warn!(
                request,
                "{}: needs {needed} approvals (request {request}; \
                 `ferrohsm approvals approve {request}`)",
                g.subject
            );
            Err(Error::ApprovalRequired(format!(
                "{} needs {needed} approvals: request {request} is pending",
                g.subject
            )))
        }
    }
}

/// The dual-control state and every request's standing at `now`.
pub fn view(store: &Store, keys: &TokenKeys, now: u64) -> Result<QuorumView> {
    let state = store.quorum(keys)?;
    let verdicts = valid_verdicts(store, keys, &state)?;
    let requests = state
        .requests
        .iter()
        .map(|r| {
            let on = |approve: bool| -> Vec<u32> {
                verdicts
                    .iter()
                    .filter(|v| v.request == r.id && v.approve == approve)
                    .map(|v| v.approver)
                    .collect()
            };
            RequestView {
                standing: state.standing(r, &verdicts, now),
                approvals: on(true),
                denials: on(false),
                request: r.clone(),
            }
        })
        .collect();
    Ok(QuorumView {
        requests,
        store_id: store.store_id().to_vec(),
        token: u64::from(keys.token().0),
        now,
        state,
    })
}

/// Records an approver's signed verdict, refused unless it verifies under the registered
/// key, the request is pending, and the approver has given no verdict on it yet. Needs
/// no PIN: the signature is the approver's credential.
pub fn submit(store: &Store, keys: &TokenKeys, v: Verdict, now: u64) -> Result<Standing> {
    let state = store.quorum(keys)?;
    if !verdict_signed(&state, &store.store_id(), u64::from(keys.token().0), &v) {
        return Err(Error::ActionProhibited(
            format!(
                "the signature on the verdict for request {} does not verify under approver \
                 {}'s registered key",
                v.request, v.approver
            )
            .into(),
        ));
    }
    let mut verdicts = valid_verdicts(store, keys, &state)?;
    state
        .check_verdict(&v, &verdicts, now)
        .map_err(|e| Error::ActionProhibited(e.to_string().into()))?;
    store.put_verdict(keys, &v)?;
    tracing::info!(
        request = v.request,
        approver = v.approver,
        "request {}: approver {} {}",
        v.request,
        v.approver,
        if v.approve { "approved" } else { "denied" }
    );
    let id = v.request;
    verdicts.push(v);
    let r = state
        .request(id)
        .ok_or(Error::General("the request left the state".into()))?;
    Ok(state.standing(r, &verdicts, now))
}

/// Registers or removes an approver, or sets the rules, as the SO (the keys must be the
/// SO's); guarded by the largest quorum any rule asks for (none while no rule is set).
pub fn command(
    store: &Store,
    keys: &TokenKeys,
    cmd: QuorumCommand,
    now: u64,
) -> Result<QuorumState> {
    let digest = cmd.digest();
    let g = Guard {
        op: Guarded::Quorum,
        key: None,
        digest: &digest,
        subject: &cmd.subject(),
        role: Role::So,
    };
    admit(store, keys, &g, now)?;
    let mut state = store.quorum(keys)?;
    let refused = |e: QuorumError| Error::ActionProhibited(e.to_string().into());
    match cmd {
        QuorumCommand::AddApprover { name, public_key } => {
            state
                .add_approver(&name, public_key, now)
                .map_err(refused)?;
        }
        QuorumCommand::RemoveApprover { id } => state.remove_approver(id).map_err(refused)?,
        QuorumCommand::SetPolicy { policy } => state.set_policy(policy).map_err(refused)?,
        QuorumCommand::SetKeyRules { key, rules } => {
            state.set_key_rules(key, rules).map_err(refused)?
        }
    }
    state.seq += 1;
    store.commit_quorum(keys, &state)?;
    Ok(state)
}

impl Hsm {
    /// [`view`]; needs no login (approvers read it to know what they sign).
    pub fn quorum_view(&self, h: u64) -> Result<QuorumView> {
        self.run(h, Action::ReadObject, |c| {
            let keys = self.keys(&c.slot, c.token)?;
            view(&self.store, &keys, now(&self.config.lifecycle))
        })
    }

    /// [`submit`]; needs no login.
    pub fn submit_verdict(&self, h: u64, v: Verdict) -> Result<Standing> {
        self.run(h, Action::ReadObject, |c| {
            let keys = self.keys(&c.slot, c.token)?;
            submit(&self.store, &keys, v, now(&self.config.lifecycle))
        })
    }

    /// [`command`], as the SO on a read-write session.
    pub fn quorum_command(&self, h: u64, cmd: QuorumCommand) -> Result<QuorumState> {
        self.run(h, Action::Lifecycle, |c| {
            if c.slot.actor() != Actor::So {
                return Err(Error::UserNotLoggedIn);
            }
            if !c.session.rw {
                return Err(Error::SessionReadOnly);
            }
            let keys = self.keys(&c.slot, c.token)?;
            command(&self.store, &keys, cmd, now(&self.config.lifecycle))
        })
    }
}
