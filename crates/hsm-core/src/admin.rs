//! Token and PIN administration, one path for every front end: `C_InitToken`,
//! `C_InitPIN` and `C_SetPIN` through [`crate::runtime::Hsm`], and `ferrohsm token init`
//! in the CLI. The label rule lives here once, and every change is reported to the audit
//! sink the caller passes (the module's hooks; the CLI's once it has one).

use crate::audit::{AuditEvent, AuditSink};
use crate::objects::attrs::Actor;
use crate::ops::Action;
use hsm_store::{KdfParams, PinPolicy, Store, StoreError, TokenKeys, TokenSpec};
use hsm_types::{SecretString, TokenId, UserKind};

/// The longest label PKCS#11 can show (`CK_TOKEN_INFO.label` is 32 bytes).
pub const MAX_LABEL: usize = 32;

/// A token label that breaks the one rule.
#[derive(Debug, thiserror::Error)]
#[error("label must be at most {MAX_LABEL} bytes, got {0}")]
pub struct LabelTooLong(pub usize);

/// The label rule: trailing blanks are dropped (PKCS#11 pads labels with them, so
/// `"ci "` and `"ci"` are one label), and what remains fits in 32 bytes.
pub fn label(raw: &str) -> Result<String, LabelTooLong> {
    let l = raw.trim_end_matches(' ');
    if l.len() > MAX_LABEL {
        return Err(LabelTooLong(l.len()));
    }
    Ok(l.to_owned())
}

/// What a new token is made of.
pub struct NewToken {
    pub label: String,
    pub so_pin: SecretString,
    pub user_pin: Option<SecretString>,
    pub kdf: KdfParams,
    pub pin_policy: PinPolicy,
}

/// Token and PIN administration over one store.
pub struct TokenAdmin<'a> {
    store: &'a Store,
    audit: Option<&'a dyn AuditSink>,
    /// Who asks, for the audit record.
    actor: Actor,
}

impl<'a> TokenAdmin<'a> {
    pub fn new(store: &'a Store, audit: Option<&'a dyn AuditSink>, actor: Actor) -> Self {
        TokenAdmin {
            store,
            audit,
            actor,
        }
    }

    fn report<T>(
        &self,
        action: Action,
        slot: Option<u64>,
        r: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(a) = self.audit {
            a.record(&AuditEvent {
                action,
                session: None,
                slot,
                actor: Some(self.actor),
                outcome: r
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| e as &dyn std::error::Error),
            });
        }
        r
    }

    /// Creates a token; its label must pass [`label`] (checked again here, so no front
    /// end can skip it).
    pub fn create(&self, t: NewToken) -> Result<TokenId, StoreError> {
        let r = label(&t.label)
            .map_err(|e| StoreError::Invalid(e.to_string()))
            .and_then(|label| {
                self.store.init_token(TokenSpec {
                    label,
                    so_pin: t.so_pin,
                    user_pin: t.user_pin,
                    kdf: t.kdf,
                    pin_policy: t.pin_policy,
                })
            });
        let slot = r.as_ref().ok().map(|t| t.0 as u64);
        self.report(Action::InitToken, slot, r)
    }

    /// Wipes a token and starts it again under the same SO PIN (`C_InitToken` on an
    /// initialised token).
    pub fn reinit(
        &self,
        token: TokenId,
        so_pin: &SecretString,
        raw: &str,
    ) -> Result<(), StoreError> {
        let r = label(raw)
            .map_err(|e| StoreError::Invalid(e.to_string()))
            .and_then(|l| self.store.reinit_token(token, so_pin, l));
        self.report(Action::InitToken, Some(token.0 as u64), r)
    }

    /// `C_InitPIN`: the SO (whose keys these are) sets the user PIN, unlocking it.
    pub fn init_user_pin(&self, so: &TokenKeys, pin: &SecretString) -> Result<(), StoreError> {
        let r = self.store.init_user_pin(so, pin);
        self.report(Action::InitPin, Some(so.token().0 as u64), r)
    }

    /// `C_SetPIN`: changes the PIN of `who`, given the old one.
    pub fn change_pin(
        &self,
        token: TokenId,
        who: UserKind,
        old: &SecretString,
        new: &SecretString,
    ) -> Result<(), StoreError> {
        let r = self.store.change_pin(token, who, old, new);
        self.report(Action::SetPin, Some(token.0 as u64), r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_label_rule() {
        assert_eq!(label("CI signing   ").unwrap(), "CI signing");
        assert_eq!(label(&format!("{:<32}", "padded")).unwrap(), "padded");
        assert_eq!(label("").unwrap(), "");
        assert_eq!(label(&"x".repeat(32)).unwrap().len(), 32);
        assert!(
            label(&"x".repeat(33))
                .unwrap_err()
                .to_string()
                .contains("33")
        );
        // 11 three-byte characters are 33 bytes.
        assert!(label(&"€".repeat(11)).is_err());
    }
}
