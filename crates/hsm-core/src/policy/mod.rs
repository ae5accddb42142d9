//! The policy room: [`PolicyEngine::evaluate`] is asked before every call but the
//! continuation of an operation it already allowed (`Hsm::begin`, without a key) and again for the key an operation
//! uses (the one key-usage check, `objects::usage`). The attribute rules of PKCS#11
//! (`CKA_SIGN`, `CKA_ALLOWED_MECHANISMS`, …) are not policy: they hold whatever the engine
//! says. M-of-N approvals (dual control) are [`quorum`]: guarded operations call
//! [`quorum::admit`] with the digest of what they would do. The engine itself is still
//! [`AllowAll`]; usage windows and mechanism allow-lists are the next step.

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
