//! Slots over the store's tokens: the slot list, slot and token information, and each
//! slot's login state and prepared-key cache.

use super::{Hsm, lock, read, write};
use crate::error::{Error, Result};
use crate::mechanism::{self, MechanismInfo};
use crate::objects::KeyCache;
use crate::objects::attrs::Actor;
use hsm_store::TokenKeys;
use hsm_types::{AttributeSet, MechanismType as M, ObjectId, TokenId};
use std::sync::{Arc, Mutex, RwLock};

pub struct SlotInfo {
    pub description: String,
    pub token_present: bool,
}

/// Where a PIN stands against its lockout, as `C_GetTokenInfo` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// No wrong PIN since the last good one.
    Clear,
    /// At least one wrong PIN (`CKF_*_PIN_COUNT_LOW`).
    CountLow,
    /// One more wrong PIN locks it (`CKF_*_PIN_FINAL_TRY`, with COUNT_LOW).
    FinalTry,
    /// Locked (`CKF_*_PIN_LOCKED`).
    Locked,
}

impl PinStatus {
    /// The status after `failures` consecutive wrong PINs, with `max` allowed (0: no lockout).
    pub fn of(failures: u32, max: u32) -> PinStatus {
        if max > 0 && failures >= max {
            PinStatus::Locked
        } else if max > 0 && failures + 1 == max {
            PinStatus::FinalTry
        } else if failures > 0 {
            PinStatus::CountLow
        } else {
            PinStatus::Clear
        }
    }
}

/// What `C_GetTokenInfo` reports.
pub struct TokenInfo {
    pub label: String,
    pub serial: String,
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub user_failures: u32,
    pub so_failures: u32,
    pub user_pin: PinStatus,
    pub so_pin: PinStatus,
    pub max_failures: u32,
    pub min_pin: u32,
    pub max_pin: u32,
    pub sessions: u64,
    pub rw_sessions: u64,
    /// A self-test failed: the module performs no cryptography.
    pub error_state: bool,
}

pub(crate) enum Login {
    Public,
    User(Arc<TokenKeys>),
    So(Arc<TokenKeys>),
}

pub(crate) struct Slot {
    pub id: u64,
    pub token: RwLock<Option<TokenId>>,
    pub login: RwLock<Login>,
    pub public: RwLock<Option<Arc<TokenKeys>>>,
    /// Prepared keys of token objects, while a user is logged in. Dropped (and zeroized)
    /// at logout. Only this process writes the store, so entries stay current as long as
    /// every change of an object goes through [`Slot::forget_cached`].
    pub key_cache: Mutex<KeyCache>,
}

impl Slot {
    pub fn new(id: u64) -> Slot {
        Slot {
            id,
            token: RwLock::new(None),
            login: RwLock::new(Login::Public),
            public: RwLock::new(None),
            key_cache: Mutex::new(KeyCache::default()),
        }
    }

    pub fn token_id(&self) -> Option<TokenId> {
        *read(&self.token)
    }

    /// Who is logged in on this slot.
    pub fn actor(&self) -> Actor {
        match &*read(&self.login) {
            Login::Public => Actor::Public,
            Login::User(_) => Actor::User,
            Login::So(_) => Actor::So,
        }
    }

    pub fn user_logged_in(&self) -> bool {
        self.actor() == Actor::User
    }

    pub fn logout(&self) {
        *write(&self.login) = Login::Public;
        self.forget_all_cached();
    }

    pub fn forget_all_cached(&self) {
        lock(&self.key_cache).clear();
    }

    pub fn forget_cached(&self, id: ObjectId) {
        lock(&self.key_cache).forget(id);
    }

    /// Refuses to install an operation on a private key once the user's login is gone.
    /// Called with the session's mutex held: `C_Logout` first drops the login, then
    /// clears each session's operations under that mutex, so an operation prepared while
    /// the user was logged in either sees the logout here or is cleared.
    pub fn still_logged_in_for(&self, attrs: &AttributeSet) -> Result<()> {
        if attrs.is_private() && self.actor() == Actor::Public {
            return Err(Error::UserNotLoggedIn);
        }
        Ok(())
    }
}

impl Hsm {
    pub(crate) fn refresh_slots(&self) -> Result<()> {
        let tokens = self.store.tokens()?;
        let wanted: Vec<TokenId> = if self.config.slots.is_empty() {
            tokens.iter().map(|t| t.id).collect()
        } else {
            self.config
                .slots
                .iter()
                .map(|s| TokenId(s.token))
                .filter(|t| tokens.iter().any(|x| x.id == *t))
                .collect()
        };
        let spare = tokens.iter().map(|t| t.id.0).max().unwrap_or(0) as u64 + 1;
        let mut slots = write(&self.slots);
        for t in &wanted {
            let id = t.0 as u64;
            let slot = slots.entry(id).or_insert_with(|| Arc::new(Slot::new(id)));
            *write(&slot.token) = Some(*t);
        }
        if self.config.slots.is_empty() {
            slots
                .entry(spare)
                .or_insert_with(|| Arc::new(Slot::new(spare)));
        }
        Ok(())
    }

    /// Every slot holds a token (the spare one an uninitialised token), so the
    /// "token present" filter changes nothing.
    pub fn slot_list(&self, _token_present: bool) -> Vec<u64> {
        read(&self.slots).keys().copied().collect()
    }

    pub(crate) fn slot(&self, id: u64) -> Result<Arc<Slot>> {
        read(&self.slots)
            .get(&id)
            .cloned()
            .ok_or(Error::SlotIdInvalid)
    }

    /// How many prepared keys the slot holds in memory (none while nobody is logged in).
    pub fn cached_keys(&self, slot: u64) -> Result<usize> {
        Ok(lock(&self.slot(slot)?.key_cache).len())
    }

    pub fn slot_info(&self, id: u64) -> Result<SlotInfo> {
        self.slot(id)?;
        // A slot always holds a token; an uninitialised one on the spare slot.
        Ok(SlotInfo {
            description: format!("FerroHSM slot {id}"),
            token_present: true,
        })
    }

    pub fn token_info(&self, slot: u64) -> Result<TokenInfo> {
        let s = self.slot(slot)?;
        let (sessions, rw_sessions) = self.session_counts(slot);
        let error_state = self.error_state();
        let Some(t) = s.token_id() else {
            let policy = hsm_store::PinPolicy::from(self.config.pin_policy);
            return Ok(TokenInfo {
                label: String::new(),
                serial: format!("{:016x}", slot),
                initialized: false,
                user_pin_initialized: false,
                user_failures: 0,
                so_failures: 0,
                user_pin: PinStatus::Clear,
                so_pin: PinStatus::Clear,
                max_failures: policy.max_failures,
                min_pin: policy.min_len,
                max_pin: policy.max_len,
                sessions,
                rw_sessions,
                error_state,
            });
        };
        let i = self.store.token_info(t)?;
        let max = i.pin_policy.max_failures;
        Ok(TokenInfo {
            label: i.label,
            serial: i.serial,
            initialized: true,
            user_pin_initialized: i.user_pin_initialized,
            user_failures: i.user_failures,
            so_failures: i.so_failures,
            user_pin: PinStatus::of(i.user_failures, max),
            so_pin: PinStatus::of(i.so_failures, max),
            max_failures: max,
            min_pin: i.pin_policy.min_len,
            max_pin: i.pin_policy.max_len,
            sessions,
            rw_sessions,
            error_state,
        })
    }

    pub fn mechanism_list(&self, slot: u64) -> Result<Vec<M>> {
        self.slot(slot)?;
        Ok(mechanism::TABLE.iter().map(|(m, _)| *m).collect())
    }

    pub fn mechanism_info(&self, slot: u64, m: M) -> Result<MechanismInfo> {
        self.slot(slot)?;
        let mut info = mechanism::mechanism_info(m).ok_or(Error::MechanismInvalid)?;
        if m == M::RSA_PKCS && self.config.allow_rsa_pkcs1_v15_decrypt {
            info.flags |= mechanism::flags::DECRYPT | mechanism::flags::UNWRAP;
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::PinStatus;

    #[test]
    fn pin_status_follows_the_failure_count() {
        assert_eq!(PinStatus::of(0, 5), PinStatus::Clear);
        assert_eq!(PinStatus::of(1, 5), PinStatus::CountLow);
        assert_eq!(PinStatus::of(4, 5), PinStatus::FinalTry);
        assert_eq!(PinStatus::of(5, 5), PinStatus::Locked);
        assert_eq!(PinStatus::of(9, 5), PinStatus::Locked);
        assert_eq!(
            PinStatus::of(3, 0),
            PinStatus::CountLow,
            "no lockout configured"
        );
        assert_eq!(PinStatus::of(0, 1), PinStatus::FinalTry, "one try allowed");
    }
}
