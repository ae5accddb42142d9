//! Slots over the store's tokens: the slot list, slot and token information, and each
//! slot's login state and prepared-key cache.

use super::{Hsm, lock, read, write};
use crate::error::{Error, Result};
use crate::hardware::Adapter;
use crate::mechanism::{self, MechanismInfo};
use crate::objects::KeyCache;
use crate::objects::attrs::Actor;
use hsm_store::TokenKeys;
use hsm_types::{AttributeSet, MechanismType as M, ObjectId, TokenId};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// [`Slot::token`] when the slot holds no token yet.
const NO_TOKEN: u64 = u64::MAX;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotInfo {
    pub description: String,
    pub token_present: bool,
}

/// Where a PIN stands against its lockout, as `C_GetTokenInfo` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// A slot as every application sees it: the token in it, the token's public-access keys,
/// and the prepared keys of its token objects, shared by the applications logged in as
/// the user so a key parsed for one is ready for all.
pub(crate) struct Slot {
    pub id: u64,
    /// The token in the slot (`NO_TOKEN`: none yet), read by every call: an atomic, so
    /// that reading it writes nothing the other cores share.
    token: AtomicU64,
    pub public: RwLock<Option<Arc<TokenKeys>>>,
    /// Prepared keys of token objects, while at least one application has the user logged
    /// in here; dropped (and zeroized) when the last of them logs out. Only this process
    /// writes the store, so entries stay current as long as every change of an object
    /// goes through [`Slot::forget_cached`].
    /// A lock readers share: two threads signing with cached keys never wait on each other.
    pub key_cache: RwLock<KeyCache>,
    /// The token's key rings, once read with the master key (see `lifecycle::runtime`).
    pub rings: RwLock<Option<Arc<crate::lifecycle::runtime::RingIndex>>>,
    /// How many applications have the user logged in on this slot.
    user_logins: Mutex<usize>,
    /// The device this slot's keys live in (`[[slots]] adapter`): `None` for the software
    /// adapter, `Some(Err)` when the adapter could not be made from its settings.
    pub device: Option<std::result::Result<Arc<dyn Adapter>, String>>,
}

impl Slot {
    pub fn new(id: u64) -> Slot {
        Slot {
            id,
            token: AtomicU64::new(NO_TOKEN),
            public: RwLock::new(None),
            key_cache: RwLock::new(KeyCache::default()),
            rings: RwLock::new(None),
            user_logins: Mutex::new(0),
            device: None,
        }
    }

    /// A slot whose keys live in a device.
    fn bound(id: u64, device: std::result::Result<Arc<dyn Adapter>, String>) -> Slot {
        Slot {
            device: Some(device),
            ..Slot::new(id)
        }
    }

    /// The slot's adapter (`None`: software); `TokenNotPresent` when it could not be made.
    pub fn adapter(&self) -> Result<Option<&Arc<dyn Adapter>>> {
        match &self.device {
            None => Ok(None),
            Some(Ok(a)) => Ok(Some(a)),
            Some(Err(_)) => Err(Error::TokenNotPresent),
        }
    }

    /// Whether the token can be used: always for the software adapter; for a device,
    /// when its adapter was made and the device answers.
    pub fn present(&self) -> bool {
        match &self.device {
            None => true,
            Some(Ok(a)) => a.present(),
            Some(Err(_)) => false,
        }
    }

    pub fn token_id(&self) -> Option<TokenId> {
        match self.token.load(Ordering::Acquire) {
            NO_TOKEN => None,
            t => u32::try_from(t).ok().map(TokenId),
        }
    }

    pub fn set_token(&self, t: TokenId) {
        self.token.store(u64::from(t.0), Ordering::Release);
    }

    pub fn forget_all_cached(&self) {
        write(&self.key_cache).clear();
    }

    pub fn forget_cached(&self, id: ObjectId) {
        write(&self.key_cache).forget(id);
    }

    /// Counts an application's user login in or out; the last one out drops the cache.
    fn user_login_changed(&self, was_user: bool, is_user: bool) {
        let mut n = lock(&self.user_logins);
        match (was_user, is_user) {
            (false, true) => *n += 1,
            (true, false) => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.forget_all_cached();
                    self.forget_ring_index();
                }
            }
            _ => {}
        }
    }
}

/// One application's place at a slot (PKCS#11 keeps login state per application and
/// token): who is logged in and the keys that login opened. The embedded module is one
/// application; the server makes one per client connection.
pub(crate) struct AppSlot {
    pub app: u64,
    pub id: u64,
    pub shared: Arc<Slot>,
    login: RwLock<Login>,
    /// Who `login` says is logged in, for the many calls that ask only that: an atomic
    /// load on every call instead of a read lock whose counter both cores would write.
    /// Changed only under `login`'s write lock.
    actor: AtomicU8,
    /// The application ended ([`Hsm::end_app`]): its sessions are closing.
    ended: AtomicBool,
}

impl AppSlot {
    pub fn new(app: u64, shared: Arc<Slot>) -> AppSlot {
        AppSlot {
            app,
            id: shared.id,
            shared,
            login: RwLock::new(Login::Public),
            actor: AtomicU8::new(Actor::Public as u8),
            ended: AtomicBool::new(false),
        }
    }

    pub fn login(&self) -> RwLockReadGuard<'_, Login> {
        read(&self.login)
    }

    /// Changes who is logged in, keeping the slot's count of user logins.
    pub fn set_login(&self, new: Login) {
        let mut g = write(&self.login);
        let was_user = matches!(*g, Login::User(_));
        let is_user = matches!(new, Login::User(_));
        let actor = match &new {
            Login::Public => Actor::Public,
            Login::User(_) => Actor::User,
            Login::So(_) => Actor::So,
        };
        *g = new;
        self.actor.store(actor as u8, Ordering::Release);
        drop(g);
        self.shared.user_login_changed(was_user, is_user);
    }

    /// Who is logged in on this slot, for this application.
    pub fn actor(&self) -> Actor {
        match self.actor.load(Ordering::Acquire) {
            x if x == Actor::User as u8 => Actor::User,
            x if x == Actor::So as u8 => Actor::So,
            _ => Actor::Public,
        }
    }

    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    pub fn user_logged_in(&self) -> bool {
        self.actor() == Actor::User
    }

    pub fn logout(&self) {
        self.set_login(Login::Public);
    }

    pub fn forget_cached(&self, id: ObjectId) {
        self.shared.forget_cached(id);
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
            let slot = slots
                .entry(id)
                .or_insert_with(|| Arc::new(self.make_slot(id, *t)));
            slot.set_token(*t);
        }
        if self.config.slots.is_empty() {
            slots
                .entry(spare)
                .or_insert_with(|| Arc::new(Slot::new(spare)));
        }
        Ok(())
    }

    /// A slot for token `t`, bound to the adapter its `[[slots]]` table names.
    fn make_slot(&self, id: u64, t: TokenId) -> Slot {
        let Some(c) = self
            .config
            .slots
            .iter()
            .find(|c| c.token == t.0 && !c.is_software())
        else {
            return Slot::new(id);
        };
        let made = self.hooks.adapters.build(c);
        match &made {
            Ok(a) => tracing::info!(slot = id, token = t.0, "keys live in {}", a.describe()),
            Err(e) => tracing::error!(slot = id, token = t.0, "the slot's adapter: {e}"),
        }
        Slot::bound(id, made)
    }

    /// Every slot holds a token (the spare one an uninitialised token), so the
    /// "token present" filter changes nothing.
    pub fn slot_list(&self, _token_present: bool) -> Result<Vec<u64>> {
        Ok(read(&self.slots).keys().copied().collect())
    }

    /// The initialised tokens and the slots that hold them.
    pub fn token_slots(&self) -> Result<Vec<(TokenId, u64)>> {
        Ok(read(&self.slots)
            .iter()
            .filter_map(|(id, s)| s.token_id().map(|t| (t, *id)))
            .collect())
    }

    pub(crate) fn slot(&self, id: u64) -> Result<Arc<Slot>> {
        read(&self.slots)
            .get(&id)
            .cloned()
            .ok_or(Error::SlotIdInvalid)
    }

    /// How many prepared keys the slot holds in memory (none while nobody is logged in).
    pub fn cached_keys(&self, slot: u64) -> Result<usize> {
        Ok(read(&self.slot(slot)?.key_cache).len())
    }

    pub fn slot_info(&self, id: u64) -> Result<SlotInfo> {
        // A slot always holds a token (an uninitialised one on the spare slot); a device's
        // is present while its adapter reaches it.
        let s = self.slot(id)?;
        Ok(SlotInfo {
            description: match s.adapter() {
                Ok(Some(a)) => format!("FerroHSM slot {id} over {}", a.describe()),
                _ => format!("FerroHSM slot {id}"),
            },
            token_present: s.present(),
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
        let s = self.slot(slot)?;
        Ok(mechanism::TABLE
            .iter()
            .filter(|(m, i)| slot_flags(&s, *m, i.flags) != 0)
            .map(|(m, _)| *m)
            .collect())
    }

    pub fn mechanism_info(&self, slot: u64, m: M) -> Result<MechanismInfo> {
        let s = self.slot(slot)?;
        let mut info = mechanism::mechanism_info(m).ok_or(Error::MechanismInvalid)?;
        if m == M::RSA_PKCS && self.config.allow_rsa_pkcs1_v15_decrypt {
            info.flags |= mechanism::flags::DECRYPT | mechanism::flags::UNWRAP;
        }
        info.flags = slot_flags(&s, m, info.flags);
        if info.flags == 0 {
            return Err(Error::MechanismInvalid);
        }
        Ok(info)
    }
}

/// What a slot offers of `m` out of `flags`: everything, for the software adapter; for a
/// device, what works on public keys and data here (verify, digest) and what the device
/// does with the keys it holds — a device slot holds no secret or private key material.
fn slot_flags(s: &Slot, m: M, flags: u64) -> u64 {
    use mechanism::flags as f;
    match s.adapter() {
        Ok(None) => flags,
        Ok(Some(a)) => {
            let device = a
                .capabilities()
                .0
                .iter()
                .filter(|c| c.mechanism == m)
                .fold(0, |acc, c| acc | c.flags);
            let ec = f::EC_F_P | f::EC_NAMEDCURVE | f::EC_UNCOMPRESS;
            match flags & (device | f::VERIFY | f::DIGEST) & !ec {
                0 => 0,
                ops => ops | (flags & ec),
            }
        }
        Err(_) => 0,
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
