//! The policy room: [`PolicyEngine::evaluate`] is asked before every call but the
//! continuation of an operation it already allowed (`Hsm::begin`, without a key) and again for the key an operation
//! uses (the one key-usage check, `objects::usage`). The attribute rules of PKCS#11
//! (`CKA_SIGN`, `CKA_ALLOWED_MECHANISMS`, …) are not policy: they hold whatever the engine
//! says. The token's own rules — M-of-N approvals (dual control, [`quorum`]), per-key
//! rules, usage windows, use limits and mechanism allow-lists — are its built-in engine
//! ([`engine`], over `hsm_types::quorum::QuorumState::evaluate`), asked at the key-usage
//! check and by every guarded operation ([`quorum::admit`]). The [`PolicyEngine`] hook
//! here is for a deployment's further rules; by default it is [`AllowAll`].

pub mod engine;
pub mod quorum;

use crate::objects::attrs::Actor;
use crate::ops::Action;
use hsm_types::AttributeSet;

/// What the engine is asked.
pub struct Request<'a> {
    pub actor: Actor,
    pub action: Action,
    pub slot: u64,
    /// The key the operation uses, once it is known.
    pub key: Option<&'a AttributeSet>,
}

/// An approval the operation waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingApproval {
    /// What the caller is told (no secret in it).
    pub reason: String,
}

/// The engine's answer. `Deny` and `NeedsApproval` reach PKCS#11 callers as
/// `CKR_ACTION_PROHIBITED`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    NeedsApproval(PendingApproval),
}

pub trait PolicyEngine: Send + Sync {
    fn evaluate(&self, request: &Request<'_>) -> Decision;
}

/// No policy beyond the attribute rules: today's behaviour.
pub struct AllowAll;

impl PolicyEngine for AllowAll {
    fn evaluate(&self, _: &Request<'_>) -> Decision {
        Decision::Allow
    }
}
