//! The audit room: what the runtime tells an audit log about each call. The signed,
//! verifiable log's model (Merkle tree, checkpoints, verification) is
//! `hsm_types::audit`, and its cryptography in the core is [`log`]. The records in the
//! store's write batches are not built yet; until they are,
//! [`crate::runtime::Hooks::audit`] is empty and nothing is recorded.

pub mod log;

use crate::objects::attrs::Actor;
use crate::ops::Action;

/// One call as the audit log sees it: never a secret, a PIN or key material.
#[derive(Debug)]
pub struct AuditEvent<'a> {
    pub action: Action,
    /// The session, for calls through one (the CLI's administration has none).
    pub session: Option<u64>,
    /// The slot (= token number), when the call got far enough to know it.
    pub slot: Option<u64>,
    pub actor: Option<Actor>,
    /// Success, or the error the caller got.
    pub outcome: Result<(), &'a dyn std::error::Error>,
}

/// Where audit events go. Implementations must not block for long: the runtime calls
/// `record` on the caller's thread after every operation.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: &AuditEvent<'_>);
}
