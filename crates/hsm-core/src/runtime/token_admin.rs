//! `C_InitToken`, `C_InitPIN` and `C_SetPIN`: the slot and session checks, then
//! [`crate::admin::TokenAdmin`], the path the CLI takes too.

use super::slots::Login;
use super::{Hsm, write};
use crate::admin::{NewToken, TokenAdmin};
use crate::error::{Error, Result};
use crate::objects::attrs::Actor;
use crate::ops::Action;
use hsm_types::{SecretString, UserKind};

impl Hsm {
    /// The administration path. Calls inside a session are audited by [`Hsm::run`]
    /// already, so only `C_InitToken` (which has no session) hands it the audit sink.
    fn admin(&self, actor: Actor, in_session: bool) -> TokenAdmin<'_> {
        let audit = if in_session {
            None
        } else {
            self.hooks.audit.as_deref()
        };
        TokenAdmin::new(&self.store, audit, actor)
    }

    /// `C_InitToken`: creates the token on the spare slot, or wipes and re-creates an
    /// existing one after checking its SO PIN.
    pub fn init_token(&self, slot: u64, so_pin: SecretString, label: String) -> Result<()> {
        let s = self.slot(slot)?;
        if self.session_counts(slot).0 > 0 {
            return Err(Error::SessionExists);
        }
        let admin = self.admin(Actor::So, false);
        match s.token_id() {
            Some(t) => {
                // Re-initialising wipes every key and the dual-control state with them:
                // under dual control it waits until the rules are lifted, which takes
                // the quorum (`docs/approvals.md`).
                let public = self.store.public_access(t)?;
                if !self.store.quorum(&public)?.policy.rules.is_empty() {
                    return Err(Error::ActionProhibited(
                        "the token is under dual control: C_InitToken would destroy every key \
                         without approvals; lift the rules first (ferrohsm quorum set --rule \
                         CLASS=0, which needs the quorum)"
                            .into(),
                    ));
                }
                admin.reinit(t, &so_pin, &label)?;
                *write(&s.public) = None;
                s.forget_all_cached();
                s.forget_ring_index();
            }
            None => {
                let t = admin.create(NewToken {
                    label,
                    so_pin,
                    user_pin: None,
                    kdf: self.config.kdf.into(),
                    pin_policy: self.config.pin_policy.into(),
                })?;
                if t.0 as u64 != slot {
                    return Err(Error::General(format!(
                        "token created as {t}, expected slot {slot}"
                    )));
                }
                s.set_token(t);
                self.refresh_slots()?;
            }
        }
        Ok(())
    }

    /// `C_InitPIN`: the SO sets the user PIN (and so unlocks it).
    pub fn init_pin(&self, h: u64, pin: SecretString) -> Result<()> {
        self.run(h, Action::InitPin, |c| {
            if !c.session.rw {
                return Err(Error::SessionReadOnly);
            }
            let keys = self.so_keys(&c.slot)?;
            Ok(self.admin(Actor::So, true).init_user_pin(&keys, &pin)?)
        })
    }

    /// `C_SetPIN`: changes the PIN of whoever is logged in (the user when nobody is).
    pub fn set_pin(&self, h: u64, old: SecretString, new: SecretString) -> Result<()> {
        self.run(h, Action::SetPin, |c| {
            if !c.session.rw {
                return Err(Error::SessionReadOnly);
            }
            let (who, actor) = match &*c.slot.login() {
                Login::So(_) => (UserKind::So, Actor::So),
                Login::User(_) => (UserKind::User, Actor::User),
                Login::Public => (UserKind::User, Actor::Public),
            };
            Ok(self
                .admin(actor, true)
                .change_pin(c.token, who, &old, &new)?)
        })
    }
}
