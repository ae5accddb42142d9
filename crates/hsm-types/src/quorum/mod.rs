//! Dual control: operations that need M of N approvals. This module is the model alone —
//! no I/O, no clock, no cryptography: the core hashes what an operation would do into a
//! request digest and checks approvers' Ed25519 signatures; the store keeps a
//! [`QuorumState`] bound to the token's master key and each approval as its own record.
//! `docs/approvals.md` is the prose.
//!
//! The flow: an operation a rule guards is *admitted* ([`QuorumState::admit`]) with the
//! digest of exactly what it would do. Without a rule it goes ahead. Otherwise a request
//! for that digest is opened (or the open one named again) and the caller is refused;
//! approvers sign the request; once `m` distinct registered approvers have approved and
//! none denied, the same operation repeated within the approval's lifetime is admitted
//! once and the request is spent.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod rules;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;

pub use rules::{Decision, KeyRules, Operation, Role, canonical_key_rules, canonical_policy};

/// The classes of operations a rule can guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Guarded {
    /// Destroying a key or a version (`C_DestroyObject`, `ferrohsm key destroy`).
    Destroy,
    /// A key leaving the token: `C_WrapKey` of it, reading an extractable key's value.
    Export,
    /// `ferrohsm key rollback`.
    Rollback,
    /// `ferrohsm key trim`.
    Trim,
    /// A key's lifecycle policy changed (`ferrohsm key policy … --set`).
    KeyPolicy,
    /// Registering or removing an approver, or changing the rules. Never set directly:
    /// it needs the largest quorum any rule asks for (see [`QuorumState::required`]).
    Quorum,
    /// Every use of one key's secret half (sign, decrypt, unwrap with it, derive from
    /// it), each approval bound to the input: a per-key rule only ([`KeyRules`]).
    Use,
    /// A private or secret key brought into the token: `C_UnwrapKey` or `C_CreateObject`
    /// of one (a token rule only: the key does not exist yet).
    Import,
}

impl Guarded {
    /// The classes a token-wide rule can guard.
    pub const SETTABLE: [Guarded; 6] = [
        Guarded::Destroy,
        Guarded::Export,
        Guarded::Rollback,
        Guarded::Trim,
        Guarded::KeyPolicy,
        Guarded::Import,
    ];

    /// The classes a per-key rule can guard.
    pub const PER_KEY: [Guarded; 6] = [
        Guarded::Destroy,
        Guarded::Export,
        Guarded::Rollback,
        Guarded::Trim,
        Guarded::KeyPolicy,
        Guarded::Use,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guarded::Destroy => "destroy",
            Guarded::Export => "export",
            Guarded::Rollback => "rollback",
            Guarded::Trim => "trim",
            Guarded::KeyPolicy => "key-policy",
            Guarded::Quorum => "quorum",
            Guarded::Use => "use",
            Guarded::Import => "import",
        }
    }

    pub fn parse(s: &str) -> Option<Guarded> {
        Guarded::SETTABLE
            .into_iter()
            .chain([Guarded::Quorum, Guarded::Use])
            .find(|g| g.name() == s)
    }

    /// A number for digests and signed messages (stable across releases).
    pub fn code(self) -> u8 {
        match self {
            Guarded::Destroy => 1,
            Guarded::Export => 2,
            Guarded::Rollback => 3,
            Guarded::Trim => 4,
            Guarded::KeyPolicy => 5,
            Guarded::Quorum => 6,
            Guarded::Use => 7,
            Guarded::Import => 8,
        }
    }
}

/// A person who approves: a name and an Ed25519 public key (the private key stays with
/// them). Ids are never reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub id: u32,
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    pub added: u64,
}

/// The rules: how many approvals each guarded class needs (absent: none), and how long
/// requests and approvals live (seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumPolicy {
    pub rules: BTreeMap<Guarded, u32>,
    /// A request not approved this long after it was opened expires.
    pub request_ttl: u64,
    /// An approved request not used this long after its last approval expires.
    pub approved_ttl: u64,
    /// The mechanisms any key of the token may be used with (`None`: any the key's own
    /// `CKA_ALLOWED_MECHANISMS` allows). A key's [`KeyRules::mechanisms`] replaces it.
    #[serde(default)]
    pub mechanisms: Option<std::collections::BTreeSet<u64>>,
}

/// One hour to gather approvals, ten minutes to use them (CloudHSM's quorum tokens are
/// of the same order).
pub const DEFAULT_REQUEST_TTL: u64 = 3600;
pub const DEFAULT_APPROVED_TTL: u64 = 600;

impl Default for QuorumPolicy {
    fn default() -> Self {
        QuorumPolicy {
            rules: BTreeMap::new(),
            request_ttl: DEFAULT_REQUEST_TTL,
            approved_ttl: DEFAULT_APPROVED_TTL,
            mechanisms: None,
        }
    }
}

/// An operation waiting for approvals, bound to the digest of what it will do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub op: Guarded,
    /// What the operation is, in words for approvers (no secret in it).
    pub subject: String,
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
    /// Who asked: `user` or `so`.
    pub requester: String,
    pub created: u64,
    /// The approvals it needs (the rule when it was opened).
    pub needed: u32,
    /// Set once the operation ran: a request is used at most once.
    pub used: Option<u64>,
}

/// One approver's verdict on a request, as its own record, signed over
/// [`approval_message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub request: u64,
    pub approver: u32,
    pub approve: bool,
    pub at: u64,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The token's dual-control state: approvers, rules, requests. Written whole, one
/// `seq` after the other (the store refuses a replayed one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QuorumState {
    pub seq: u64,
    pub next_approver: u32,
    pub next_request: u64,
    pub approvers: Vec<Approver>,
    pub policy: QuorumPolicy,
    pub requests: Vec<Request>,
    /// Per-key rules, by key id (the id `ferrohsm key list` shows).
    #[serde(default)]
    pub keys: BTreeMap<u64, KeyRules>,
    /// Uses counted for keys whose rules set `max_uses`.
    #[serde(default)]
    pub uses: BTreeMap<u64, u64>,
}

/// Where a request stands, from its record and the verdicts whose signatures held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    Pending {
        approvals: u32,
        needed: u32,
    },
    /// Approved; usable until `until`.
    Approved {
        until: u64,
    },
    Denied {
        by: u32,
    },
    Expired,
    Used {
        at: u64,
    },
}

impl Standing {
    pub fn name(&self) -> &'static str {
        match self {
            Standing::Pending { .. } => "pending",
            Standing::Approved { .. } => "approved",
            Standing::Denied { .. } => "denied",
            Standing::Expired => "expired",
            Standing::Used { .. } => "used",
        }
    }
}

/// What [`QuorumState::admit`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// No rule guards the operation.
    Allow,
    /// An approved request for this digest was spent on it: write the state, then run.
    Spend(u64),
    /// A request for this digest waits (`opened`: made by this call; write the state).
    Wait { request: u64, opened: bool },
}

/// Why a change or a verdict is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuorumError {
    NoSuchRequest(u64),
    NoSuchApprover(u32),
    /// The request cannot take verdicts any more.
    Closed {
        request: u64,
        standing: &'static str,
    },
    AlreadyGiven {
        request: u64,
        approver: u32,
    },
    /// A rule would need more approvers than are registered.
    Unreachable {
        op: Guarded,
        m: u32,
        approvers: usize,
    },
    Invalid(String),
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuorumError::NoSuchRequest(r) => write!(f, "no request {r}"),
            QuorumError::NoSuchApprover(a) => write!(f, "no approver {a}"),
            QuorumError::Closed { request, standing } => {
                write!(
                    f,
                    "request {request} is {standing}: it takes no more verdicts"
                )
            }
            QuorumError::AlreadyGiven { request, approver } => {
                write!(
                    f,
                    "approver {approver} already gave a verdict on request {request}"
                )
            }
            QuorumError::Unreachable { op, m, approvers } => write!(
                f,
                "{} would need {m} approvals but {approvers} approver(s) are registered",
                op.name()
            ),
            QuorumError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for QuorumError {}

/// How far a verdict's signed time may be from the token's clock.
pub const MAX_SKEW: u64 = 300;

/// At most this many requests are kept; older spent and expired ones go first.
pub const MAX_REQUESTS: usize = 256;

impl QuorumState {
    /// How many approvals `op` needs now. Changing the quorum itself needs the largest
    /// number any rule asks for, so no single person can lower a rule to get past it.
    pub fn required(&self, op: Guarded) -> u32 {
        self.required_for(op, None)
    }

    /// How many approvals `op` on key `key` needs: the key's own rule for the class if
    /// it has one, else the token's. Changing the quorum needs the largest number any
    /// rule, token-wide or per key, asks for.
    pub fn required_for(&self, op: Guarded, key: Option<u64>) -> u32 {
        if op == Guarded::Quorum {
            let per_key = self.keys.values().flat_map(|k| k.approvals.values());
            return self
                .policy
                .rules
                .values()
                .chain(per_key)
                .copied()
                .max()
                .unwrap_or(0);
        }
        if let Some(m) = key
            .and_then(|k| self.keys.get(&k))
            .and_then(|r| r.approvals.get(&op))
        {
            return *m;
        }
        self.policy.rules.get(&op).copied().unwrap_or(0)
    }

    pub fn approver(&self, id: u32) -> Option<&Approver> {
        self.approvers.iter().find(|a| a.id == id)
    }

    pub fn request(&self, id: u64) -> Option<&Request> {
        self.requests.iter().find(|r| r.id == id)
    }

    /// Where request `id` stands at `now`, given the verdicts on it whose signatures
    /// verified (by registered approvers; each approver counted once).
    pub fn standing(&self, r: &Request, verdicts: &[Verdict], now: u64) -> Standing {
        if let Some(at) = r.used {
            return Standing::Used { at };
        }
        let mut approvals: Vec<(u32, u64)> = Vec::new();
        for v in verdicts.iter().filter(|v| v.request == r.id) {
            if self.approver(v.approver).is_none() {
                continue;
            }
            if !v.approve {
                return Standing::Denied { by: v.approver };
            }
            if !approvals.iter().any(|(a, _)| *a == v.approver) {
                approvals.push((v.approver, v.at.max(r.created)));
            }
        }
        let n = approvals.len() as u32;
        if n >= r.needed {
            let last = approvals
                .iter()
                .map(|(_, at)| *at)
                .max()
                .unwrap_or(r.created);
            let until = last.saturating_add(self.policy.approved_ttl);
            if last < r.created.saturating_add(self.policy.request_ttl) && now < until {
                return Standing::Approved { until };
            }
            return Standing::Expired;
        }
        if now >= r.created.saturating_add(self.policy.request_ttl) {
            return Standing::Expired;
        }
        Standing::Pending {
            approvals: n,
            needed: r.needed,
        }
    }

    /// Admits an operation of class `op` whose digest is `digest`, asked by `requester`.
    /// `verdicts` are the verified verdicts on open requests. A pending request for the
    /// same digest is named again rather than doubled.
    pub fn admit(
        &mut self,
        op: Guarded,
        digest: &[u8],
        subject: &str,
        requester: &str,
        verdicts: &[Verdict],
        now: u64,
    ) -> Admission {
        let needed = self.required(op);
        self.admit_needing(needed, op, digest, subject, requester, verdicts, now)
    }

    /// [`QuorumState::admit`] with the number of approvals already worked out (a
    /// per-key rule, [`QuorumState::required_for`]).
    #[allow(clippy::too_many_arguments)]
    pub fn admit_needing(
        &mut self,
        needed: u32,
        op: Guarded,
        digest: &[u8],
        subject: &str,
        requester: &str,
        verdicts: &[Verdict],
        now: u64,
    ) -> Admission {
        if needed == 0 {
            return Admission::Allow;
        }
        let mut waiting = None;
        for r in &self.requests {
            if r.op != op || r.digest != digest || r.requester != requester {
                continue;
            }
            match self.standing(r, verdicts, now) {
                Standing::Approved { .. } => {
                    let id = r.id;
                    self.spend(id, now);
                    return Admission::Spend(id);
                }
                Standing::Pending { .. } => waiting = Some(r.id),
                _ => {}
            }
        }
        if let Some(request) = waiting {
            return Admission::Wait {
                request,
                opened: false,
            };
        }
        let id = self.next_request.max(1);
        self.next_request = id + 1;
        self.prune(verdicts, now);
        self.requests.push(Request {
            id,
            op,
            subject: subject.to_owned(),
            digest: digest.to_vec(),
            requester: requester.to_owned(),
            created: now,
            needed,
            used: None,
        });
        Admission::Wait {
            request: id,
            opened: true,
        }
    }

    fn spend(&mut self, id: u64, now: u64) {
        if let Some(r) = self.requests.iter_mut().find(|r| r.id == id) {
            r.used = Some(now);
        }
    }

    /// Drops spent, denied and expired requests, oldest first, while more than
    /// [`MAX_REQUESTS`] − 1 are kept; then, if all are open, the oldest open ones.
    fn prune(&mut self, verdicts: &[Verdict], now: u64) {
        while self.requests.len() >= MAX_REQUESTS {
            let closed = self.requests.iter().position(|r| {
                !matches!(
                    self.standing(r, verdicts, now),
                    Standing::Pending { .. } | Standing::Approved { .. }
                )
            });
            self.requests.remove(closed.unwrap_or(0));
        }
    }

    /// Checks that `v` may be recorded: the request exists and is pending, the approver
    /// is registered and has given no verdict on it yet. The signature is the caller's.
    pub fn check_verdict(
        &self,
        v: &Verdict,
        verdicts: &[Verdict],
        now: u64,
    ) -> Result<(), QuorumError> {
        let r = self
            .request(v.request)
            .ok_or(QuorumError::NoSuchRequest(v.request))?;
        if v.at > now.saturating_add(MAX_SKEW) || v.at.saturating_add(MAX_SKEW) < now {
            return Err(QuorumError::Invalid(format!(
                "the verdict is dated {} but it is {now}: sign it again now",
                v.at
            )));
        }
        self.approver(v.approver)
            .ok_or(QuorumError::NoSuchApprover(v.approver))?;
        if verdicts
            .iter()
            .any(|o| o.request == v.request && o.approver == v.approver)
        {
            return Err(QuorumError::AlreadyGiven {
                request: v.request,
                approver: v.approver,
            });
        }
        match self.standing(r, verdicts, now) {
            Standing::Pending { .. } => Ok(()),
            s => Err(QuorumError::Closed {
                request: v.request,
                standing: s.name(),
            }),
        }
    }

    /// Registers an approver (the caller has admitted [`Guarded::Quorum`]).
    pub fn add_approver(
        &mut self,
        name: &str,
        public_key: Vec<u8>,
        now: u64,
    ) -> Result<u32, QuorumError> {
        if public_key.len() != 32 {
            return Err(QuorumError::Invalid(format!(
                "an Ed25519 public key is 32 bytes, not {}",
                public_key.len()
            )));
        }
        if name.is_empty() || name.len() > 64 {
            return Err(QuorumError::Invalid(
                "an approver's name is 1 to 64 bytes".into(),
            ));
        }
        if self
            .approvers
            .iter()
            .any(|a| a.public_key == public_key || a.name == name)
        {
            return Err(QuorumError::Invalid(format!(
                "an approver with this name or key is registered already ({name})"
            )));
        }
        let id = self.next_approver.max(1);
        self.next_approver = id + 1;
        self.approvers.push(Approver {
            id,
            name: name.to_owned(),
            public_key,
            added: now,
        });
        Ok(id)
    }

    /// Removes an approver, unless a rule would then need more approvers than remain.
    pub fn remove_approver(&mut self, id: u32) -> Result<(), QuorumError> {
        let at = self
            .approvers
            .iter()
            .position(|a| a.id == id)
            .ok_or(QuorumError::NoSuchApprover(id))?;
        let mut next = self.clone();
        next.approvers.remove(at);
        next.check_reachable()?;
        *self = next;
        Ok(())
    }

    /// Sets the rules (the caller has admitted [`Guarded::Quorum`]).
    pub fn set_policy(&mut self, policy: QuorumPolicy) -> Result<(), QuorumError> {
        if policy.rules.contains_key(&Guarded::Quorum) {
            return Err(QuorumError::Invalid(
                "changes of the quorum need the largest quorum of any rule; it is not set".into(),
            ));
        }
        if policy.rules.contains_key(&Guarded::Use) {
            return Err(QuorumError::Invalid(
                "approvals for every use are a rule of one key (`ferrohsm quorum key`), \
                 not of the whole token"
                    .into(),
            ));
        }
        rules::check_mechanisms(policy.mechanisms.as_ref())?;
        if policy.request_ttl == 0 || policy.approved_ttl == 0 {
            return Err(QuorumError::Invalid(
                "lifetimes must be at least one second".into(),
            ));
        }
        let mut next = self.clone();
        next.policy = policy;
        next.policy.rules.retain(|_, m| *m > 0);
        next.check_reachable()?;
        *self = next;
        Ok(())
    }

    fn check_reachable(&self) -> Result<(), QuorumError> {
        let per_key = self.keys.values().flat_map(|k| k.approvals.iter());
        for (&op, &m) in self.policy.rules.iter().chain(per_key) {
            if m as usize > self.approvers.len() {
                return Err(QuorumError::Unreachable {
                    op,
                    m,
                    approvers: self.approvers.len(),
                });
            }
        }
        Ok(())
    }
}

/// What an approver signs: a domain string, the store and token, the request, the
/// verdict and its time, and the request's digest. Binding the store and token keeps an
/// approval from being replayed on another token with a request of the same number.
pub fn approval_message(store_id: &[u8], token: u64, v: &Verdict, digest: &[u8]) -> Vec<u8> {
    let mut m = b"ferrohsm approval v1\0".to_vec();
    m.extend_from_slice(&(store_id.len() as u32).to_be_bytes());
    m.extend_from_slice(store_id);
    m.extend_from_slice(&token.to_be_bytes());
    m.extend_from_slice(&v.request.to_be_bytes());
    m.extend_from_slice(&v.approver.to_be_bytes());
    m.push(u8::from(v.approve));
    m.extend_from_slice(&v.at.to_be_bytes());
    m.extend_from_slice(&(digest.len() as u32).to_be_bytes());
    m.extend_from_slice(digest);
    m
}

/// The bytes a request digest is the SHA-256 of: a domain string, the class, then the
/// operation's fields, each length-prefixed (key id, version, mechanism, parameters,
/// the input's hash — whatever the operation has).
pub fn request_preimage(op: Guarded, fields: &[&[u8]]) -> Vec<u8> {
    let mut m = b"ferrohsm request v1\0".to_vec();
    m.push(op.code());
    for f in fields {
        m.extend_from_slice(&(f.len() as u32).to_be_bytes());
        m.extend_from_slice(f);
    }
    m
}
