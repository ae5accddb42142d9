//! The audit room. The tamper-evident log lives in the store (`hsm_store::audit`): each
//! change's record is written in the change's own batch. What the core adds is who acts
//! and through which call (`Hsm::audit_scope`, once per call at `Hsm::run`), the
//! records of calls that wrote nothing — a refused management operation, a key wrapped
//! out, and at level `all` every use of a key (`Hsm::audit_outcome`) — and
//! [`AuditSink`], an observer hook for shipping events elsewhere (it is not the log).
//! The log's model is `hsm_types::audit`; `docs/audit.md` describes it.

use crate::error::{Error, Result};
use crate::objects::attrs::Actor;
use crate::ops::{Action, OpKind};
use crate::runtime::{Call, Hsm};
use hsm_store::audit::{self as log, Context, Event, Scope};
use std::borrow::Cow;

pub use hsm_store::audit::{AuditLevel, AuditSettings, set_client_pid};
pub use hsm_store::{AuditStats, AuditVerification};

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

/// Where audit events go besides the log. Implementations must not block for long: the
/// runtime calls `record` on the caller's thread after every operation.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: &AuditEvent<'_>);
}

/// How a call is audited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Changes, logins, exports: the store records a success in its batch; a refusal
    /// (or a success that wrote nothing, like an export) is recorded here.
    Management(&'static str),
    /// A use of a key: recorded at level `all` only.
    Use(&'static str),
    /// Reads, searches, digests, randomness, logouts: not recorded.
    Quiet,
}

/// The PKCS#11 function (or front-end call) an action is, for the records.
pub fn call_name(action: Action) -> &'static str {
    match action {
        Action::Login => "C_Login",
        Action::Logout => "C_Logout",
        Action::InitToken => "C_InitToken",
        Action::InitPin => "C_InitPIN",
        Action::SetPin => "C_SetPIN",
        Action::CreateObject => "C_CreateObject",
        Action::CopyObject => "C_CopyObject",
        Action::DestroyObject => "C_DestroyObject",
        Action::ReadObject => "C_GetAttributeValue",
        Action::SetAttributes => "C_SetAttributeValue",
        Action::GenerateKey => "C_GenerateKey",
        Action::GenerateKeyPair => "C_GenerateKeyPair",
        Action::WrapKey => "C_WrapKey",
        Action::UnwrapKey => "C_UnwrapKey",
        Action::DeriveKey => "C_DeriveKey",
        Action::Start(k) => match k {
            OpKind::Sign => "C_SignInit",
            OpKind::Verify => "C_VerifyInit",
            OpKind::Encrypt => "C_EncryptInit",
            OpKind::Decrypt => "C_DecryptInit",
            OpKind::MessageEncrypt => "C_MessageEncryptInit",
            OpKind::MessageDecrypt => "C_MessageDecryptInit",
            OpKind::Digest => "C_DigestInit",
            OpKind::Find => "C_FindObjectsInit",
        },
        // Updates, finals, single-part calls and length queries of an operation.
        Action::Continue(k) => match k {
            OpKind::Sign => "C_Sign",
            OpKind::Verify => "C_Verify",
            OpKind::Encrypt => "C_Encrypt",
            OpKind::Decrypt => "C_Decrypt",
            OpKind::MessageEncrypt => "C_EncryptMessage",
            OpKind::MessageDecrypt => "C_DecryptMessage",
            OpKind::Digest => "C_Digest",
            OpKind::Find => "C_FindObjects",
        },
        Action::Random => "C_GenerateRandom",
        Action::SeedRandom => "C_SeedRandom",
        Action::Lifecycle => "lifecycle",
    }
}

fn kind(action: Action) -> Kind {
    match action {
        Action::Login => Kind::Management("login"),
        Action::InitToken => Kind::Management("token.init"),
        Action::InitPin => Kind::Management("pin.init"),
        Action::SetPin => Kind::Management("pin.change"),
        Action::CreateObject
        | Action::CopyObject
        | Action::GenerateKey
        | Action::GenerateKeyPair
        | Action::UnwrapKey
        | Action::DeriveKey => Kind::Management("object.create"),
        Action::DestroyObject => Kind::Management("object.destroy"),
        Action::SetAttributes => Kind::Management("object.update"),
        Action::WrapKey => Kind::Management("key.wrap"),
        Action::Lifecycle => Kind::Management("key.transition"),
        Action::Start(OpKind::Sign) => Kind::Use("key.sign"),
        Action::Start(OpKind::Verify) => Kind::Use("key.verify"),
        Action::Start(OpKind::Encrypt | OpKind::MessageEncrypt) => Kind::Use("key.encrypt"),
        Action::Start(OpKind::Decrypt | OpKind::MessageDecrypt) => Kind::Use("key.decrypt"),
        Action::Start(OpKind::Digest | OpKind::Find)
        | Action::Continue(_)
        | Action::ReadObject
        | Action::Logout
        | Action::Random
        | Action::SeedRandom => Kind::Quiet,
    }
}

/// The role name records carry.
pub fn role_name(actor: Actor) -> &'static str {
    match actor {
        Actor::Public => "public",
        Actor::User => "user",
        Actor::So => "so",
    }
}

/// A scope for work outside a session (the CLI, the admin API): `role` acting through
/// `call`, with an optional subject (a signed-in name).
pub fn scope(
    role: impl Into<Cow<'static, str>>,
    call: impl Into<Cow<'static, str>>,
    subject: Option<String>,
) -> Scope {
    log::scope(Context {
        subject,
        ..Context::new(role, Some(call.into()))
    })
}

impl Hsm {
    /// Signs the checkpoints that fell due and syncs records of key use (group commit),
    /// for every token a user or the SO is logged in to: a running server calls it every
    /// second. Failures are logged.
    pub fn audit_tick(&self) {
        let mut seen = std::collections::BTreeSet::new();
        for a in crate::runtime::read(&self.app_slots).values() {
            if let crate::runtime::Login::User(k) | crate::runtime::Login::So(k) = &*a.login()
                && seen.insert(k.token())
                && let Err(e) = self.store.audit_tick(k)
            {
                tracing::error!(token = k.token().0, "audit checkpoint failed: {e}");
            }
        }
    }

    /// Who acts in this call, for every record its writes make.
    pub(crate) fn audit_scope(&self, call: &Call, session: u64) -> Scope {
        log::scope(Context {
            session: Some(session),
            ..Context::new(
                role_name(call.slot.actor()),
                Some(call_name(call.action).into()),
            )
        })
    }

    /// The records of a call that its own writes did not make. Fails (closed) only when
    /// auditing is required and the record of a key's use cannot be written: the
    /// operation that started is cancelled.
    pub(crate) fn audit_outcome<T>(&self, call: &Call, h: u64, result: &Result<T>) -> Result<()> {
        let ckr = result.as_ref().map_or_else(Error::ckr, |_| 0);
        match (kind(call.action), result) {
            (Kind::Use(op), _) => {
                if self.store.audit_settings().level != hsm_types::audit::AuditLevel::All {
                    return Ok(());
                }
                let keys = self.keys(&call.slot, call.token)?;
                let written = self.store.audit_use(&keys, Event::new(op).result(ckr));
                if written.is_err()
                    && result.is_ok()
                    && let Action::Start(k) = call.action
                {
                    let _ = self.cancel(h, &[k]);
                }
                written.map_err(Error::from)
            }
            (Kind::Management(op), Err(_)) => {
                let ev = Event::new(op).result(ckr);
                if let Err(e) = self.store.audit_alone(call.token, None, ev) {
                    tracing::error!("a refused {op} is not in the audit log: {e}");
                }
                Ok(())
            }
            (Kind::Management(op @ "key.wrap"), Ok(_)) => {
                let keys = self.keys(&call.slot, call.token)?;
                self.store
                    .audit_alone(call.token, Some(&keys), Event::new(op))
                    .map_err(Error::from)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_the_store_writes_are_the_module_s() {
        use hsm_types::audit::ckr;
        assert_eq!(ckr::PIN_INCORRECT, Error::PinIncorrect.ckr());
        assert_eq!(ckr::PIN_LOCKED, Error::PinLocked.ckr());
    }
}
