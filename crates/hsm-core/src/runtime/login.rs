//! Login state: `C_Login` (SO, user, context-specific), `C_Logout`, and the store keys
//! and attribute-rule context that follow from who is logged in.

use super::slots::{AppSlot, Login};
use super::{Hsm, lock, read, write};
use crate::error::{Error, Result};
use crate::objects::attrs::Ctx;
use crate::ops::{Action, OpKind};
use hsm_store::TokenKeys;
use hsm_types::{SecretString, TokenId, UserKind};
use std::sync::Arc;

/// The user types of `C_Login`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum LoginKind {
    So,
    User,
    ContextSpecific,
}

impl Hsm {
    pub fn login(&self, h: u64, kind: LoginKind, pin: SecretString) -> Result<()> {
        self.run(h, Action::Login, |c| {
            if kind == LoginKind::ContextSpecific {
                return self.context_login(c, &pin);
            }
            match (&*c.slot.login(), kind) {
                (Login::User(_), LoginKind::User) | (Login::So(_), LoginKind::So) => {
                    return Err(Error::UserAlreadyLoggedIn);
                }
                (Login::User(_), _) | (Login::So(_), _) => {
                    return Err(Error::UserAnotherAlreadyLoggedIn);
                }
                _ => {}
            }
            if kind == LoginKind::So
                && self
                    .sessions_of(c.slot.app, c.slot.id)
                    .iter()
                    .any(|s| !s.rw)
            {
                return Err(Error::SessionReadOnlyExists);
            }
            let who = if kind == LoginKind::So {
                UserKind::So
            } else {
                UserKind::User
            };
            let keys = Arc::new(self.store.login(c.token, who, &pin)?);
            c.slot.set_login(match kind {
                LoginKind::So => Login::So(keys),
                _ => Login::User(keys),
            });
            if kind == LoginKind::User && c.session.rw {
                self.sweep_at_login(&c.slot, c.token);
            }
            Ok(())
        })
    }

    /// `C_Login(CKU_CONTEXT_SPECIFIC)`: the user's PIN again, for the one sign or decrypt
    /// operation of a `CKA_ALWAYS_AUTHENTICATE` key that waits for it.
    fn context_login(&self, c: &super::Call, pin: &SecretString) -> Result<()> {
        {
            let ops = lock(&c.session.ops);
            if !ops.is_active(OpKind::Sign) && !ops.is_active(OpKind::Decrypt) {
                return Err(Error::OperationNotInitialized);
            }
        }
        if !matches!(*c.slot.login(), Login::User(_)) {
            return Err(Error::UserNotLoggedIn);
        }
        // Checked like any login: counted, lockable. No session lock is held meanwhile.
        self.store.login(c.token, UserKind::User, pin)?;
        lock(&c.session.ops).context_login_done();
        Ok(())
    }

    pub fn logout(&self, h: u64) -> Result<()> {
        self.run(h, Action::Logout, |c| {
            if matches!(*c.slot.login(), Login::Public) {
                return Err(Error::UserNotLoggedIn);
            }
            c.slot.logout();
            // Private session objects become unreachable; operations on private keys end.
            for s in self.sessions_of(c.slot.app, c.slot.id) {
                lock(&s.ops).end_at_logout();
            }
            Ok(())
        })
    }

    /// Who asks through this slot, under the configured key-separation rule.
    pub(crate) fn ctx(&self, slot: &AppSlot) -> Ctx {
        Ctx::new(slot.actor(), self.config.key_separation)
    }

    /// The keys this slot's caller holds for the store.
    pub(crate) fn keys(&self, slot: &AppSlot, token: TokenId) -> Result<Arc<TokenKeys>> {
        match &*slot.login() {
            Login::User(k) | Login::So(k) => return Ok(k.clone()),
            Login::Public => {}
        }
        if let Some(k) = &*read(&slot.shared.public) {
            return Ok(k.clone());
        }
        let k = Arc::new(self.store.public_access(token)?);
        *write(&slot.shared.public) = Some(k.clone());
        Ok(k)
    }

    /// The SO's keys, for what only the SO may do (`C_InitPIN`).
    pub(crate) fn so_keys(&self, slot: &AppSlot) -> Result<Arc<TokenKeys>> {
        match &*slot.login() {
            Login::So(k) => Ok(k.clone()),
            _ => Err(Error::UserNotLoggedIn),
        }
    }
}
