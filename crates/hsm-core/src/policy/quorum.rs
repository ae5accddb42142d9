//! Dual control in the running token: the guard every guarded operation passes
//! ([`admit`]), the approvers' side (listing requests, recording a signed verdict,
//! [`Hsm::submit_verdict`]) and the SO's management of approvers and rules
//! ([`Hsm::quorum_command`]), itself guarded by the largest quorum of any rule. The model
//! is `hsm_types::quorum`; `docs/approvals.md` is the prose.

use crate::error::{Error, Result};
use crate::lifecycle::now;
use crate::objects::attrs::Actor;
use crate::ops::Action;
use crate::runtime::{Call, Hsm};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use hsm_store::{Store, TokenKeys};
use hsm_types::quorum::{
    Admission, Guarded, QuorumError, QuorumPolicy, QuorumState, Request, Standing, Verdict,
    approval_message, request_preimage,
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
    AddApprover { name: String, public_key: Vec<u8> },
    RemoveApprover { id: u32 },
    SetPolicy { policy: QuorumPolicy },
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
                let mut rules = Vec::new();
                for (op, m) in &policy.rules {
                    rules.push(op.code());
                    rules.extend_from_slice(&m.to_be_bytes());
                }
                let ttls = [policy.request_ttl, policy.approved_ttl];
                let ttls: Vec<u8> = ttls.iter().flat_map(|t| t.to_be_bytes()).collect();
                request_digest(Guarded::Quorum, &[b"rules", &rules, &ttls])
            }
        }
    }

    fn subject(&self) -> String {
        match self {
            QuorumCommand::AddApprover { name, .. } => format!("register approver {name:?}"),
            QuorumCommand::RemoveApprover { id } => format!("remove approver {id}"),
            QuorumCommand::SetPolicy { policy } => format!("set the rules to {:?}", policy.rules),
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

fn requester(c: &Call) -> &'static str {
    match c.slot.actor() {
        Actor::So => "so",
        Actor::User => "user",
        Actor::Public => "public",
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
/// refuses it with [`Error::ApprovalRequired`] (`CKR_ACTION_PROHIBITED`). An approved
/// request is spent durably before the operation runs: a crash between the two loses the
/// approval, never lets it be used twice. Every front end passes here: the PKCS#11
/// module, the server and the embedded CLI.
pub fn admit(
    store: &Store,
    keys: &TokenKeys,
    op: Guarded,
    digest: &[u8],
    subject: &str,
    requester: &str,
    now: u64,
) -> Result<()> {
    let mut state = store.quorum(keys)?;
    if state.required(op) == 0 {
        return Ok(());
    }
    if !keys.has_master() {
        return Err(Error::UserNotLoggedIn);
    }
    let verdicts = valid_verdicts(store, keys, &state)?;
    match state.admit(op, digest, subject, requester, &verdicts, now) {
        Admission::Allow => Ok(()),
        Admission::Spend(id) => {
            state.seq += 1;
            store.commit_quorum(keys, &state)?;
            tracing::info!(request = id, "{subject}: approved request {id} spent");
            Ok(())
        }
        Admission::Wait { request, opened } => {
            if opened {
                state.seq += 1;
                store.commit_quorum(keys, &state)?;
            }
            let needed = state.request(request).map_or(0, |r| r.needed);
            tracing::warn!(
                request,
                "{subject}: needs {needed} approvals (request {request}; \
                 `ferrohsm approvals approve {request}`)"
            );
            Err(Error::ApprovalRequired(format!(
                "{subject} needs {needed} approvals: request {request} is pending"
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
    admit(
        store,
        keys,
        Guarded::Quorum,
        &cmd.digest(),
        &cmd.subject(),
        "so",
        now,
    )?;
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
    }
    state.seq += 1;
    store.commit_quorum(keys, &state)?;
    Ok(state)
}

impl Hsm {
    /// [`admit`] for a call of this runtime (its caller's role and keys).
    pub(crate) fn guard(&self, c: &Call, op: Guarded, digest: &[u8], subject: &str) -> Result<()> {
        let keys = self.keys(&c.slot, c.token)?;
        let t = now(&self.config.lifecycle);
        admit(&self.store, &keys, op, digest, subject, requester(c), t)
    }

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
