//! The token runtime behind the PKCS#11 module: slots over the store's tokens, login
//! state, sessions and their operations, session objects, object handles, and the
//! cryptographic operations. Rust types only; the FFI crate converts.
//!
//! Locking: the session table and slot table are `RwLock`s held only to look up or
//! insert an `Arc`; each session has its own `Mutex`, so sessions run in parallel. A
//! session's slot, handle and R/W flag never change, so they live outside its mutex and
//! counting sessions takes no session lock. Order: the session table before a session's
//! mutex, never the other way round (a thread holding a session mutex takes no table
//! lock). No lock is held while calling out of the module.

use crate::attrs::{self, Actor, Ctx, Origin};
use crate::config::Config;
use crate::crypto::{self, Curve, Digester, HashAlg, SignMechanism, SigningKey, VerifyingKey};
use crate::error::{Error, Result};
use crate::mechanisms::{self, Mechanism, MechanismInfo};
use hsm_store::{Query, Store, TokenKeys, TokenSpec};
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType as M, ObjectClass,
    ObjectId, SecretString, TokenId, UserKind,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use zeroize::Zeroizing;

const SESSION_OBJECT_BIT: u64 = 1 << 63;
const OBJECT_ID_BITS: u32 = 48;

/// The user types of `C_Login`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LoginKind {
    So,
    User,
    ContextSpecific,
}

/// `CKS_*` session states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SessionState {
    RoPublic = 0,
    RoUser = 1,
    RwPublic = 2,
    RwUser = 3,
    RwSo = 4,
}

pub struct SessionInfo {
    pub slot: u64,
    pub state: SessionState,
    pub rw: bool,
}

pub struct SlotInfo {
    pub description: String,
    pub token_present: bool,
}

/// What `C_GetTokenInfo` reports.
pub struct TokenInfo {
    pub label: String,
    pub serial: String,
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub user_failures: u32,
    pub so_failures: u32,
    pub max_failures: u32,
    pub min_pin: u32,
    pub max_pin: u32,
    pub sessions: u64,
    pub rw_sessions: u64,
}

enum Login {
    Public,
    User(Arc<TokenKeys>),
    So(Arc<TokenKeys>),
}

struct Slot {
    id: u64,
    token: RwLock<Option<TokenId>>,
    login: RwLock<Login>,
    public: RwLock<Option<Arc<TokenKeys>>>,
    /// Prepared keys of token objects, while a user is logged in. Dropped (and zeroized)
    /// at logout. Only this process writes the store, so entries stay current as long as
    /// every change of an object goes through [`Slot::forget_cached`].
    key_cache: Mutex<KeyCache>,
}

/// The prepared keys and a counter raised by every invalidation (a change, a destroy, a
/// logout). A key loaded from the store is cached only if the counter did not move while
/// it was loaded: otherwise the load may have read the state from before the change, and
/// caching it would let a later `C_SignInit` use what `C_SetAttributeValue` or
/// `C_DestroyObject` already took away.
#[derive(Default)]
struct KeyCache {
    epoch: u64,
    keys: HashMap<ObjectId, Arc<CachedKey>>,
}

struct CachedKey {
    attrs: AttributeSet,
    signer: Option<SigningKey>,
    verifier: Option<VerifyingKey>,
}

struct SessionObject {
    session: u64,
    slot: u64,
    attrs: AttributeSet,
}

/// What a sign or verify operation computes with.
enum SignAlgo {
    Asym {
        mech: SignMechanism,
        key: Arc<CachedKey>,
        /// Hashed mechanisms hash parts as they come; raw ones buffer them.
        hasher: Option<Digester>,
        buffer: Vec<u8>,
    },
    Mac(crypto::Mac),
}

impl SignAlgo {
    /// Feeds a part; raw input beyond the cap is refused.
    fn update(&mut self, data: &[u8]) -> std::result::Result<(), ()> {
        match self {
            SignAlgo::Asym {
                hasher: Some(d), ..
            } => d.update(data),
            SignAlgo::Asym { buffer, .. } => {
                if buffer.len() + data.len() > MAX_RAW_INPUT {
                    return Err(());
                }
                buffer.extend_from_slice(data)
            }
            SignAlgo::Mac(m) => m.update(data),
        }
        Ok(())
    }
}

struct SignOp {
    algo: SignAlgo,
    needs_context_login: bool,
    multi_part: bool,
}

/// An AES encrypt or decrypt operation. Input is buffered and processed at the end:
/// GCM must see the tag first, and the block modes then need no carried state.
struct AeadOp {
    key: Vec<u8>,
    /// The IV; for CBC streamed part by part, the last ciphertext block so far.
    iv: Vec<u8>,
    cipher: CipherKind,
    /// Input not processed yet: all of it for GCM and RSA, a partial block for ECB/CBC.
    buffer: Vec<u8>,
    /// A `CKA_ALWAYS_AUTHENTICATE` private key decrypts only after
    /// `C_Login(CKU_CONTEXT_SPECIFIC)`.
    needs_context_login: bool,
}

enum CipherKind {
    Gcm {
        aad: Vec<u8>,
        tag_bits: u32,
    },
    Block(crypto::BlockMode),
    Oaep {
        hash: HashAlg,
        mgf: HashAlg,
        label: Vec<u8>,
        key: Arc<CachedKey>,
        modulus_len: usize,
    },
    RsaPkcs1 {
        key: Arc<CachedKey>,
        modulus_len: usize,
    },
}

impl AeadOp {
    /// How many bytes a part leaves processed at once, with `extra` more input: the whole
    /// blocks of ECB and CBC, less the last block when CBC-PAD decrypts (it may be the
    /// padding); nothing for the modes that answer at the end.
    fn streamed_len(&self, d: Dir, extra: usize) -> usize {
        let CipherKind::Block(mode) = self.cipher else {
            return 0;
        };
        if mode == crypto::BlockMode::Ctr {
            return 0;
        }
        let pending = self.buffer.len() + extra;
        let whole = pending / 16 * 16;
        match d {
            Dir::Decrypt if mode == crypto::BlockMode::CbcPad && whole == pending && whole > 0 => {
                whole - 16
            }
            _ => whole,
        }
    }

    fn output_len(&self, encrypt: bool, extra: usize) -> usize {
        let n = self.buffer.len() + extra;
        match (&self.cipher, encrypt) {
            (CipherKind::Gcm { tag_bits, .. }, true) => n + (*tag_bits as usize).div_ceil(8),
            (CipherKind::Gcm { tag_bits, .. }, false) => {
                n.saturating_sub((*tag_bits as usize).div_ceil(8))
            }
            (CipherKind::Block(mode), true) => crypto::encrypted_len(*mode, n),
            (
                CipherKind::Oaep { modulus_len, .. } | CipherKind::RsaPkcs1 { modulus_len, .. },
                _,
            ) => *modulus_len,
            // Padding is only known after decryption: the length is an upper bound.
            (CipherKind::Block(_), false) => n,
        }
    }
}

/// A message-based encryption or decryption (`C_MessageEncryptInit` …): AES-GCM, each
/// message with its own IV, AAD and tag.
struct MessageOp {
    key: Zeroizing<Vec<u8>>,
}

/// The per-message parameters of message-based AES-GCM (`CK_GCM_MESSAGE_PARAMS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcmMessage {
    /// The IV: given (`CKG_NO_GENERATE`, and always for decryption), or filled by the
    /// token after its first `iv_fixed_bits` bits.
    pub iv: Vec<u8>,
    pub iv_fixed_bits: u64,
    pub generator: u64,
    pub tag_bits: u64,
}

/// `CK_GENERATOR_FUNCTION` values of PKCS#11 3.0.
pub mod iv_generator {
    pub const NO_GENERATE: u64 = 0;
    pub const GENERATE: u64 = 1;
    pub const GENERATE_COUNTER: u64 = 2;
    pub const GENERATE_RANDOM: u64 = 3;
    pub const GENERATE_COUNTER_XOR: u64 = 4;
}

/// Random bits a token-generated GCM IV must hold at least (SP 800-38D §8.2.2).
const MIN_RANDOM_IV_BITS: u64 = 96;

impl Drop for AeadOp {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
        self.buffer.zeroize();
    }
}

/// A session: what never changes beside the operations, which its mutex guards.
struct SessionEntry {
    handle: u64,
    slot: u64,
    rw: bool,
    ops: Mutex<Session>,
}

impl std::ops::Deref for SessionEntry {
    type Target = Mutex<Session>;
    fn deref(&self) -> &Mutex<Session> {
        &self.ops
    }
}

/// A session's operations.
#[derive(Default)]
struct Session {
    find: Option<(Vec<u64>, usize)>,
    sign: Option<SignOp>,
    verify: Option<SignOp>,
    encrypt: Option<AeadOp>,
    decrypt: Option<AeadOp>,
    /// PKCS#11 3.0 message-based AES-GCM: the key, for one message after another.
    message_encrypt: Option<MessageOp>,
    message_decrypt: Option<MessageOp>,
    digest: Option<(HashAlg, Digester)>,
}

/// One loaded object with where it lives.
struct Loaded {
    attrs: AttributeSet,
    location: Location,
}

#[derive(Clone, Copy)]
enum Location {
    Token { slot: u64, id: ObjectId },
    Session(u64),
}

pub struct Hsm {
    config: Config,
    store: Store,
    slots: RwLock<BTreeMap<u64, Arc<Slot>>>,
    sessions: RwLock<HashMap<u64, Arc<SessionEntry>>>,
    next_session: AtomicU64,
    session_objects: RwLock<HashMap<u64, SessionObject>>,
    next_session_object: AtomicU64,
    /// The power-on self-tests' verdict; a failure stops all cryptography.
    health: std::result::Result<(), String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hsm {
    /// Opens the configured store and lays out the slots: one per token, plus one spare
    /// uninitialised slot where `C_InitToken` creates a new token.
    pub fn open(config: Config) -> Result<Hsm> {
        let store = Store::open_dir(&config.store).map_err(|e| {
            tracing::error!(store = %config.store.display(), "cannot open the store: {e}");
            Error::from(e)
        })?;
        let hsm = Hsm {
            config,
            store,
            slots: RwLock::new(BTreeMap::new()),
            sessions: RwLock::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            session_objects: RwLock::new(HashMap::new()),
            next_session_object: AtomicU64::new(1),
            health: crate::selftest::run_all(),
        };
        if let Err(e) = &hsm.health {
            tracing::error!("{e}: the module is in its error state and performs no cryptography");
        }
        hsm.refresh_slots()?;
        Ok(hsm)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Refuses cryptography after a failed self-test.
    fn check_health(&self) -> Result<()> {
        self.health
            .as_ref()
            .map_err(|e| Error::DeviceError(e.clone()))
            .copied()
    }

    /// Whether the module is in its error state (a self-test failed).
    pub fn error_state(&self) -> bool {
        self.health.is_err()
    }

    fn refresh_slots(&self) -> Result<()> {
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
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        for t in &wanted {
            let id = t.0 as u64;
            let slot = slots
                .entry(id)
                .or_insert_with(|| Arc::new(new_slot(id, None)));
            *slot.token.write().unwrap_or_else(|p| p.into_inner()) = Some(*t);
        }
        if self.config.slots.is_empty() {
            slots
                .entry(spare)
                .or_insert_with(|| Arc::new(new_slot(spare, None)));
        }
        Ok(())
    }

    // ------------------------------------------------------------ slots and tokens

    /// Every slot holds a token (the spare one an uninitialised token), so the
    /// "token present" filter changes nothing.
    pub fn slot_list(&self, _token_present: bool) -> Vec<u64> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.keys().copied().collect()
    }

    fn slot(&self, id: u64) -> Result<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or(Error::SlotIdInvalid)
    }

    /// How many prepared keys the slot holds in memory (none while nobody is logged in).
    pub fn cached_keys(&self, slot: u64) -> Result<usize> {
        Ok(lock(&self.slot(slot)?.key_cache).keys.len())
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
        let policy = hsm_store::PinPolicy::from(self.config.pin_policy);
        match s.token_id() {
            None => Ok(TokenInfo {
                label: String::new(),
                serial: format!("{:016x}", slot),
                initialized: false,
                user_pin_initialized: false,
                user_failures: 0,
                so_failures: 0,
                max_failures: policy.max_failures,
                min_pin: policy.min_len,
                max_pin: policy.max_len,
                sessions,
                rw_sessions,
            }),
            Some(t) => {
                let i = self.store.token_info(t)?;
                Ok(TokenInfo {
                    label: i.label,
                    serial: i.serial,
                    initialized: true,
                    user_pin_initialized: i.user_pin_initialized,
                    user_failures: i.user_failures,
                    so_failures: i.so_failures,
                    max_failures: i.pin_policy.max_failures,
                    min_pin: i.pin_policy.min_len,
                    max_pin: i.pin_policy.max_len,
                    sessions,
                    rw_sessions,
                })
            }
        }
    }

    fn session_counts(&self, slot: u64) -> (u64, u64) {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        let mut all = 0;
        let mut rw = 0;
        for s in sessions.values() {
            if s.slot == slot {
                all += 1;
                rw += s.rw as u64;
            }
        }
        (all, rw)
    }

    pub fn mechanism_list(&self, slot: u64) -> Result<Vec<M>> {
        self.slot(slot)?;
        Ok(mechanisms::TABLE.iter().map(|(m, _)| *m).collect())
    }

    pub fn mechanism_info(&self, slot: u64, m: M) -> Result<MechanismInfo> {
        self.slot(slot)?;
        let mut info = mechanisms::mechanism_info(m).ok_or(Error::MechanismInvalid)?;
        if m == M::RSA_PKCS && self.config.allow_rsa_pkcs1_v15_decrypt {
            info.flags |= mechanisms::flags::DECRYPT | mechanisms::flags::UNWRAP;
        }
        Ok(info)
    }

    /// `C_InitToken`: creates the token on the spare slot, or wipes and re-creates an
    /// existing one after checking its SO PIN.
    pub fn init_token(&self, slot: u64, so_pin: SecretString, label: String) -> Result<()> {
        let s = self.slot(slot)?;
        if self.session_counts(slot).0 > 0 {
            return Err(Error::SessionExists);
        }
        let label = label.trim_end().to_owned();
        match s.token_id() {
            Some(t) => {
                self.store.reinit_token(t, &so_pin, label)?;
                *s.public.write().unwrap_or_else(|p| p.into_inner()) = None;
                s.forget_all_cached();
            }
            None => {
                let t = self.store.init_token(TokenSpec {
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
                *s.token.write().unwrap_or_else(|p| p.into_inner()) = Some(t);
                self.refresh_slots()?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ sessions and login

    pub fn open_session(&self, slot: u64, rw: bool) -> Result<u64> {
        let s = self.slot(slot)?;
        if s.token_id().is_none() {
            return Err(Error::TokenNotRecognized(
                "the token in this slot is not initialised".into(),
            ));
        }
        if !rw
            && matches!(
                *s.login.read().unwrap_or_else(|p| p.into_inner()),
                Login::So(_)
            )
        {
            return Err(Error::SessionReadWriteSoExists);
        }
        let h = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = SessionEntry {
            handle: h,
            slot,
            rw,
            ops: Mutex::new(Session::default()),
        };
        self.sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(h, Arc::new(session));
        Ok(h)
    }

    fn session(&self, h: u64) -> Result<Arc<SessionEntry>> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&h)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)
    }

    pub fn close_session(&self, h: u64) -> Result<()> {
        let s = self
            .sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&h)
            .ok_or(Error::SessionHandleInvalid)?;
        let slot = s.slot;
        self.session_objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, o| o.session != h);
        if self.session_counts(slot).0 == 0 {
            // The last session closed: the token logs out (PKCS#11 §5.6).
            if let Ok(s) = self.slot(slot) {
                s.logout();
            }
        }
        Ok(())
    }

    pub fn close_all_sessions(&self, slot: u64) -> Result<()> {
        let s = self.slot(slot)?;
        let handles: Vec<u64> = {
            let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
            sessions
                .iter()
                .filter(|(_, v)| v.slot == slot)
                .map(|(k, _)| *k)
                .collect()
        };
        for h in handles {
            let _ = self.close_session(h);
        }
        s.logout();
        Ok(())
    }

    pub fn session_info(&self, h: u64) -> Result<SessionInfo> {
        let (slot, rw) = {
            let s = self.session(h)?;
            (s.slot, s.rw)
        };
        let sl = self.slot(slot)?;
        let state = match (&*sl.login.read().unwrap_or_else(|p| p.into_inner()), rw) {
            (Login::So(_), _) => SessionState::RwSo,
            (Login::User(_), true) => SessionState::RwUser,
            (Login::User(_), false) => SessionState::RoUser,
            (Login::Public, true) => SessionState::RwPublic,
            (Login::Public, false) => SessionState::RoPublic,
        };
        Ok(SessionInfo { slot, state, rw })
    }

    fn session_slot(&self, h: u64) -> Result<(Arc<SessionEntry>, Arc<Slot>, TokenId)> {
        let s = self.session(h)?;
        let slot = s.slot;
        let sl = self.slot(slot)?;
        let t = sl.token_id().ok_or(Error::TokenNotPresent)?;
        Ok((s, sl, t))
    }

    pub fn login(&self, h: u64, kind: LoginKind, pin: SecretString) -> Result<()> {
        let (sess, slot, token) = self.session_slot(h)?;
        if kind == LoginKind::ContextSpecific {
            {
                let g = lock(&sess);
                if g.sign.is_none() && g.decrypt.is_none() {
                    return Err(Error::OperationNotInitialized);
                }
            }
            if !matches!(
                *slot.login.read().unwrap_or_else(|p| p.into_inner()),
                Login::User(_)
            ) {
                return Err(Error::UserNotLoggedIn);
            }
            // Checked like any login: counted, lockable. No session lock is held meanwhile.
            self.store.login(token, UserKind::User, &pin)?;
            let mut g = lock(&sess);
            let g = &mut *g;
            match (g.sign.as_mut(), g.decrypt.as_mut()) {
                (Some(op), _) if op.needs_context_login => op.needs_context_login = false,
                (_, Some(op)) => op.needs_context_login = false,
                _ => {}
            }
            return Ok(());
        }
        {
            let cur = slot.login.read().unwrap_or_else(|p| p.into_inner());
            match (&*cur, kind) {
                (Login::User(_), LoginKind::User) | (Login::So(_), LoginKind::So) => {
                    return Err(Error::UserAlreadyLoggedIn);
                }
                (Login::User(_), _) | (Login::So(_), _) => {
                    return Err(Error::UserAnotherAlreadyLoggedIn);
                }
                _ => {}
            }
        }
        if kind == LoginKind::So {
            let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
            if sessions.values().any(|s| s.slot == slot.id && !s.rw) {
                return Err(Error::SessionReadOnlyExists);
            }
        }
        let who = if kind == LoginKind::So {
            UserKind::So
        } else {
            UserKind::User
        };
        let keys = Arc::new(self.store.login(token, who, &pin)?);
        let mut cur = slot.login.write().unwrap_or_else(|p| p.into_inner());
        *cur = match kind {
            LoginKind::So => Login::So(keys),
            _ => Login::User(keys),
        };
        Ok(())
    }

    pub fn logout(&self, h: u64) -> Result<()> {
        let (_, slot, _) = self.session_slot(h)?;
        if matches!(
            *slot.login.read().unwrap_or_else(|p| p.into_inner()),
            Login::Public
        ) {
            return Err(Error::UserNotLoggedIn);
        }
        slot.logout();
        // Private session objects become unreachable; operations on private keys end.
        let sessions: Vec<_> = self
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for s in sessions {
            if s.slot == slot.id {
                let mut g = lock(&s);
                g.sign = None;
                g.verify = None;
                g.encrypt = None;
                g.decrypt = None;
                g.message_encrypt = None;
                g.message_decrypt = None;
                g.find = None;
            }
        }
        Ok(())
    }

    /// `C_InitPIN`: the SO sets the user PIN (and so unlocks it).
    pub fn init_pin(&self, h: u64, pin: SecretString) -> Result<()> {
        let (sess, slot, _) = self.session_slot(h)?;
        if !sess.rw {
            return Err(Error::SessionReadOnly);
        }
        let keys = match &*slot.login.read().unwrap_or_else(|p| p.into_inner()) {
            Login::So(k) => k.clone(),
            _ => return Err(Error::UserNotLoggedIn),
        };
        self.store.init_user_pin(&keys, &pin)?;
        Ok(())
    }

    /// `C_SetPIN`: changes the PIN of whoever is logged in (the user when nobody is).
    pub fn set_pin(&self, h: u64, old: SecretString, new: SecretString) -> Result<()> {
        let (sess, slot, token) = self.session_slot(h)?;
        if !sess.rw {
            return Err(Error::SessionReadOnly);
        }
        let who = match &*slot.login.read().unwrap_or_else(|p| p.into_inner()) {
            Login::So(_) => UserKind::So,
            _ => UserKind::User,
        };
        self.store.change_pin(token, who, &old, &new)?;
        Ok(())
    }

    // ------------------------------------------------------------ objects

    /// Who asks through this slot, under the configured key-separation rule.
    fn ctx(&self, slot: &Slot) -> Ctx {
        Ctx::new(Self::actor(slot), self.config.key_separation)
    }

    fn actor(slot: &Slot) -> Actor {
        match &*slot.login.read().unwrap_or_else(|p| p.into_inner()) {
            Login::Public => Actor::Public,
            Login::User(_) => Actor::User,
            Login::So(_) => Actor::So,
        }
    }

    /// The keys this slot's caller holds for the store.
    fn keys(&self, slot: &Slot, token: TokenId) -> Result<Arc<TokenKeys>> {
        match &*slot.login.read().unwrap_or_else(|p| p.into_inner()) {
            Login::User(k) | Login::So(k) => return Ok(k.clone()),
            Login::Public => {}
        }
        if let Some(k) = &*slot.public.read().unwrap_or_else(|p| p.into_inner()) {
            return Ok(k.clone());
        }
        let k = Arc::new(self.store.public_access(token)?);
        *slot.public.write().unwrap_or_else(|p| p.into_inner()) = Some(k.clone());
        Ok(k)
    }

    fn token_handle(slot: u64, id: ObjectId) -> Result<u64> {
        if id.0 >= 1 << OBJECT_ID_BITS || slot >= 1 << (63 - OBJECT_ID_BITS) {
            return Err(Error::General("object id beyond the handle space".into()));
        }
        Ok((slot << OBJECT_ID_BITS) | id.0)
    }

    fn decode_handle(h: u64) -> Option<Location> {
        if h == 0 {
            None
        } else if h & SESSION_OBJECT_BIT != 0 {
            Some(Location::Session(h))
        } else {
            let slot = h >> OBJECT_ID_BITS;
            let id = h & ((1 << OBJECT_ID_BITS) - 1);
            (id != 0).then_some(Location::Token {
                slot,
                id: ObjectId(id),
            })
        }
    }

    /// Loads an object visible to this session. Private objects need the user logged in.
    fn load(&self, slot: &Slot, token: TokenId, h: u64) -> Result<Loaded> {
        let user = matches!(
            *slot.login.read().unwrap_or_else(|p| p.into_inner()),
            Login::User(_)
        );
        match Self::decode_handle(h).ok_or(Error::ObjectHandleInvalid)? {
            Location::Session(n) => {
                let objs = self
                    .session_objects
                    .read()
                    .unwrap_or_else(|p| p.into_inner());
                let o = objs
                    .get(&n)
                    .filter(|o| o.slot == slot.id)
                    .ok_or(Error::ObjectHandleInvalid)?;
                if o.attrs.is_private() && !user {
                    return Err(Error::UserNotLoggedIn);
                }
                Ok(Loaded {
                    attrs: o.attrs.clone(),
                    location: Location::Session(n),
                })
            }
            Location::Token { slot: s, id } => {
                if s != slot.id {
                    return Err(Error::ObjectHandleInvalid);
                }
                let keys = self.keys(slot, token)?;
                if !user && self.store.is_private(&keys, id)? {
                    return Err(Error::UserNotLoggedIn);
                }
                let obj = self.store.read_object(&keys, id)?;
                Ok(Loaded {
                    attrs: obj.attrs,
                    location: Location::Token { slot: s, id },
                })
            }
        }
    }

    /// Creates an object (from `C_CreateObject` or key generation) where its `CKA_TOKEN`
    /// says, after the session checks.
    fn store_new(
        &self,
        sess: &SessionEntry,
        slot: &Slot,
        token: TokenId,
        attrs: Vec<AttributeSet>,
    ) -> Result<Vec<u64>> {
        let (rw, session_handle) = (sess.rw, sess.handle);
        let login = Self::actor(slot);
        for a in &attrs {
            if a.is_private() && login != Actor::User {
                return Err(Error::UserNotLoggedIn);
            }
            if a.bool(A::TOKEN) == Some(true) && !rw {
                return Err(Error::SessionReadOnly);
            }
        }
        let (token_objs, session_objs): (Vec<_>, Vec<_>) = attrs
            .into_iter()
            .enumerate()
            .partition(|(_, a)| a.bool(A::TOKEN) == Some(true));
        let mut out = vec![0u64; token_objs.len() + session_objs.len()];
        if !token_objs.is_empty() {
            let keys = self.keys(slot, token)?;
            let (idx, sets): (Vec<usize>, Vec<AttributeSet>) = token_objs.into_iter().unzip();
            let ids = self.store.create_objects(&keys, sets)?;
            for (i, id) in idx.into_iter().zip(ids) {
                out[i] = Self::token_handle(slot.id, id)?;
            }
        }
        for (i, a) in session_objs {
            let n = SESSION_OBJECT_BIT | self.next_session_object.fetch_add(1, Ordering::Relaxed);
            self.session_objects
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    n,
                    SessionObject {
                        session: session_handle,
                        slot: slot.id,
                        attrs: a,
                    },
                );
            out[i] = n;
        }
        Ok(out)
    }

    pub fn create_object(&self, h: u64, template: AttributeSet) -> Result<u64> {
        let (sess, slot, token) = self.session_slot(h)?;
        let mut attrs = attrs::build_new(&template, Origin::Created, self.ctx(&slot))?;
        validate_key_material(&attrs)?;
        // Values PKCS#11 says the token computes for imported keys.
        if attrs.class() == Some(ObjectClass::SECRET_KEY) {
            let n = attrs.bytes(A::VALUE).map(<[u8]>::len).unwrap_or(0);
            attrs.set(A::VALUE_LEN, AttrValue::Ulong(n as u64));
        }
        if attrs.class() == Some(ObjectClass::PUBLIC_KEY) && attrs.key_type() == Some(KeyType::RSA)
        {
            let m = attrs.bytes(A::MODULUS).unwrap_or_default();
            let lead = m.iter().take_while(|b| **b == 0).count();
            let bits = m.len().saturating_sub(lead) * 8
                - m.get(lead).map(|b| b.leading_zeros() as usize).unwrap_or(0);
            attrs.set(A::MODULUS_BITS, AttrValue::Ulong(bits as u64));
        }
        Ok(self.store_new(&sess, &slot, token, vec![attrs])?[0])
    }

    pub fn copy_object(&self, h: u64, obj: u64, template: AttributeSet) -> Result<u64> {
        let (sess, slot, token) = self.session_slot(h)?;
        let src = self.load(&slot, token, obj)?;
        if src.attrs.bool(A::COPYABLE) == Some(false) {
            return Err(Error::ActionProhibited(
                "the object has CKA_COPYABLE = FALSE",
            ));
        }
        if attrs::is_trusted(&src.attrs) {
            // A copy holds the same key: whatever roles it could be given later, the
            // original's blobs would open under it. Trusted keys are not copied.
            return Err(Error::ActionProhibited(
                "a trusted key (CKA_TRUSTED) is not copied",
            ));
        }
        let attrs = attrs::apply_changes(&src.attrs, &template, self.ctx(&slot), true)?;
        Ok(self.store_new(&sess, &slot, token, vec![attrs])?[0])
    }

    pub fn destroy_object(&self, h: u64, obj: u64) -> Result<()> {
        let (sess, slot, token) = self.session_slot(h)?;
        let o = self.load(&slot, token, obj)?;
        if o.attrs.bool(A::DESTROYABLE) == Some(false) {
            return Err(Error::ActionProhibited(
                "the object has CKA_DESTROYABLE = FALSE",
            ));
        }
        match o.location {
            Location::Session(n) => {
                self.session_objects
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&n);
            }
            Location::Token { id, .. } => {
                if !sess.rw {
                    return Err(Error::SessionReadOnly);
                }
                let keys = self.keys(&slot, token)?;
                self.store.destroy_object(&keys, id)?;
                slot.forget_cached(id);
            }
        }
        Ok(())
    }

    pub fn object_size(&self, h: u64, obj: u64) -> Result<usize> {
        let (_, slot, token) = self.session_slot(h)?;
        Ok(attrs::object_size(&self.load(&slot, token, obj)?.attrs))
    }

    /// The object's attributes (the FFI layer applies the sensitivity rules through
    /// [`attrs::readable`]), with `CKA_UNIQUE_ID` filled in.
    pub fn object_attributes(&self, h: u64, obj: u64) -> Result<AttributeSet> {
        let (_, slot, token) = self.session_slot(h)?;
        let mut o = self.load(&slot, token, obj)?;
        let unique = match o.location {
            Location::Token { id, .. } => {
                format!("{}-{}-{}", self.store.store_id_hex(), token.0, id.0)
            }
            Location::Session(n) => format!("session-{}", n & !SESSION_OBJECT_BIT),
        };
        o.attrs
            .set(A::UNIQUE_ID, AttrValue::Bytes(unique.into_bytes()));
        Ok(o.attrs)
    }

    pub fn set_attributes(&self, h: u64, obj: u64, template: AttributeSet) -> Result<()> {
        let (sess, slot, token) = self.session_slot(h)?;
        let o = self.load(&slot, token, obj)?;
        let new = attrs::apply_changes(&o.attrs, &template, self.ctx(&slot), false)?;
        match o.location {
            Location::Session(n) => {
                if let Some(so) = self
                    .session_objects
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&n)
                {
                    so.attrs = new;
                }
            }
            Location::Token { id, .. } => {
                if !sess.rw {
                    return Err(Error::SessionReadOnly);
                }
                let keys = self.keys(&slot, token)?;
                self.store.update_object(&keys, id, new)?;
                slot.forget_cached(id);
            }
        }
        Ok(())
    }

    pub fn find_init(&self, h: u64, template: AttributeSet) -> Result<()> {
        let (sess, slot, token) = self.session_slot(h)?;
        if lock(&sess).find.is_some() {
            return Err(Error::OperationActive);
        }
        let user = matches!(
            *slot.login.read().unwrap_or_else(|p| p.into_inner()),
            Login::User(_)
        );
        let mut found = Vec::new();
        if template.bool(A::TOKEN) != Some(false) {
            let keys = self.keys(&slot, token)?;
            let q = Query {
                class: template.class(),
                label: template.label().map(<[u8]>::to_vec),
                id: template.id().map(<[u8]>::to_vec),
                key_type: template.key_type(),
                mechanism: None,
            };
            let ids = self.store.find(&keys, &q)?;
            let indexed_only = template
                .types()
                .all(|t| matches!(t, A::CLASS | A::LABEL | A::ID | A::KEY_TYPE | A::TOKEN));
            let so = matches!(
                *slot.login.read().unwrap_or_else(|p| p.into_inner()),
                Login::So(_)
            );
            for id in ids {
                if indexed_only && !so {
                    // The store's index answered and only shows private objects to the
                    // master key holder, who here is the user.
                    found.push(Self::token_handle(slot.id, id)?);
                    continue;
                }
                if !user && self.store.is_private(&keys, id)? {
                    continue;
                }
                match self.store.read_object(&keys, id) {
                    Ok(o) if attrs::matches(&o.attrs, &without(&template, A::TOKEN)) => {
                        found.push(Self::token_handle(slot.id, id)?)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(object = %id, "skipped in search: {e}"),
                }
            }
        }
        if template.bool(A::TOKEN) != Some(true) {
            let objs = self
                .session_objects
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let mut local: Vec<u64> = objs
                .iter()
                .filter(|(_, o)| {
                    o.slot == slot.id
                        && (user || !o.attrs.is_private())
                        && attrs::matches(&o.attrs, &template)
                })
                .map(|(n, _)| *n)
                .collect();
            local.sort_unstable();
            found.extend(local);
        }
        lock(&sess).find = Some((found, 0));
        Ok(())
    }

    pub fn find_next(&self, h: u64, max: usize) -> Result<Vec<u64>> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        let (all, pos) = g.find.as_mut().ok_or(Error::OperationNotInitialized)?;
        let end = *pos + max.min(all.len() - *pos);
        let out = all[*pos..end].to_vec();
        *pos = end;
        Ok(out)
    }

    pub fn find_final(&self, h: u64) -> Result<()> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        g.find.take().ok_or(Error::OperationNotInitialized)?;
        Ok(())
    }

    // ------------------------------------------------------------ key generation

    pub fn generate_key(&self, h: u64, mech: &Mechanism, template: AttributeSet) -> Result<u64> {
        self.check_health()?;
        let (sess, slot, token) = self.session_slot(h)?;
        let m = mech.kind();
        let key_type = match m {
            M::AES_KEY_GEN => KeyType::AES,
            M::GENERIC_SECRET_KEY_GEN => KeyType::GENERIC_SECRET,
            M::SHA_1_KEY_GEN => KeyType::SHA_1_HMAC,
            M::SHA224_KEY_GEN => KeyType::SHA224_HMAC,
            M::SHA256_KEY_GEN => KeyType::SHA256_HMAC,
            M::SHA384_KEY_GEN => KeyType::SHA384_HMAC,
            M::SHA512_KEY_GEN => KeyType::SHA512_HMAC,
            _ => return Err(Error::MechanismInvalid),
        };
        let t = implied(template, ObjectClass::SECRET_KEY, key_type)?;
        let mut attrs = attrs::build_new(&t, Origin::Generated(m), self.ctx(&slot))?;
        let len = attrs
            .ulong(A::VALUE_LEN)
            .ok_or_else(|| Error::TemplateIncomplete("CKA_VALUE_LEN".into()))?
            as usize;
        let ok = match key_type {
            KeyType::AES => matches!(len, 16 | 24 | 32),
            _ => (1..=512).contains(&len),
        };
        if !ok {
            return Err(Error::KeySizeRange);
        }
        let value = crypto::generate_secret(len)?;
        attrs.set(A::VALUE, AttrValue::Bytes(value.expose().to_vec()));
        Ok(self.store_new(&sess, &slot, token, vec![attrs])?[0])
    }

    pub fn generate_key_pair(
        &self,
        h: u64,
        mech: &Mechanism,
        public: AttributeSet,
        private: AttributeSet,
    ) -> Result<(u64, u64)> {
        self.check_health()?;
        let (sess, slot, token) = self.session_slot(h)?;
        let m = mech.kind();
        let actor = self.ctx(&slot);
        let private_template = private.clone();
        let (mut pubk, mut privk) = match m {
            M::RSA_PKCS_KEY_PAIR_GEN => {
                let pt = implied(public, ObjectClass::PUBLIC_KEY, KeyType::RSA)?;
                let exponent = pt.bytes(A::PUBLIC_EXPONENT).map(<[u8]>::to_vec);
                let pubk = attrs::build_new(
                    &without(&pt, A::PUBLIC_EXPONENT),
                    Origin::Generated(m),
                    actor,
                )?;
                let privk = attrs::build_new(
                    &implied(private, ObjectClass::PRIVATE_KEY, KeyType::RSA)?,
                    Origin::Generated(m),
                    actor,
                )?;
                let bits = pubk
                    .ulong(A::MODULUS_BITS)
                    .ok_or_else(|| Error::TemplateIncomplete("CKA_MODULUS_BITS".into()))?;
                if !matches!(bits, 2048 | 3072 | 4096) {
                    return Err(Error::KeySizeRange);
                }
                let parts = crypto::generate_rsa(bits as u32, exponent.as_deref())?;
                let mut pubk = pubk;
                let mut privk = privk;
                for (a, v) in [
                    (A::MODULUS, &parts.modulus),
                    (A::PUBLIC_EXPONENT, &parts.public_exponent),
                ] {
                    pubk.set(a, AttrValue::Bytes(v.clone()));
                    privk.set(a, AttrValue::Bytes(v.clone()));
                }
                for (a, v) in [
                    (A::PRIVATE_EXPONENT, &parts.private_exponent),
                    (A::PRIME_1, &parts.prime_1),
                    (A::PRIME_2, &parts.prime_2),
                    (A::EXPONENT_1, &parts.exponent_1),
                    (A::EXPONENT_2, &parts.exponent_2),
                    (A::COEFFICIENT, &parts.coefficient),
                ] {
                    privk.set(a, AttrValue::Bytes(v.expose().to_vec()));
                }
                (pubk, privk)
            }
            M::EC_KEY_PAIR_GEN => {
                let pt = implied(public, ObjectClass::PUBLIC_KEY, KeyType::EC)?;
                let mut pubk = attrs::build_new(&pt, Origin::Generated(m), actor)?;
                let params = pubk
                    .bytes(A::EC_PARAMS)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                let curve = Curve::from_ec_params(&params).ok_or_else(|| {
                    Error::AttributeValueInvalid(
                        "CKA_EC_PARAMS: only P-256, P-384 and P-521 are supported".into(),
                    )
                })?;
                let mut privt = implied(private, ObjectClass::PRIVATE_KEY, KeyType::EC)?;
                if privt
                    .bytes(A::EC_PARAMS)
                    .is_some_and(|p| p != params.as_slice())
                {
                    return Err(Error::TemplateInconsistent(
                        "CKA_EC_PARAMS differ between the two templates".into(),
                    ));
                }
                privt.set(A::EC_PARAMS, AttrValue::Bytes(params.clone()));
                let mut privk = attrs::build_new(&privt, Origin::Generated(m), actor)?;
                let parts = crypto::generate_ec(curve)?;
                pubk.set(
                    A::EC_POINT,
                    AttrValue::Bytes(crypto::ec_point_der(&parts.public_point)),
                );
                privk.set(
                    A::VALUE,
                    AttrValue::Bytes(parts.private_value.expose().to_vec()),
                );
                (pubk, privk)
            }
            M::EC_EDWARDS_KEY_PAIR_GEN | M::EC_MONTGOMERY_KEY_PAIR_GEN => {
                // Curve25519 either way: Ed25519 signs, X25519 agrees on secrets.
                let edwards = m == M::EC_EDWARDS_KEY_PAIR_GEN;
                let (kt, fits, only): (KeyType, fn(&[u8]) -> bool, &str) = if edwards {
                    (
                        KeyType::EC_EDWARDS,
                        crypto::is_ed25519_params,
                        "CKA_EC_PARAMS: only Ed25519 is supported",
                    )
                } else {
                    (
                        KeyType::EC_MONTGOMERY,
                        crypto::is_x25519_params,
                        "CKA_EC_PARAMS: only X25519 is supported",
                    )
                };
                let pt = implied(public, ObjectClass::PUBLIC_KEY, kt)?;
                let mut pubk = attrs::build_new(&pt, Origin::Generated(m), actor)?;
                let params = pubk
                    .bytes(A::EC_PARAMS)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                if !fits(&params) {
                    return Err(Error::AttributeValueInvalid(only.into()));
                }
                let mut privt = implied(private, ObjectClass::PRIVATE_KEY, kt)?;
                if privt
                    .bytes(A::EC_PARAMS)
                    .is_some_and(|p| p != params.as_slice())
                {
                    return Err(Error::TemplateInconsistent(
                        "CKA_EC_PARAMS differ between the two templates".into(),
                    ));
                }
                privt.set(A::EC_PARAMS, AttrValue::Bytes(params.clone()));
                let mut privk = attrs::build_new(&privt, Origin::Generated(m), actor)?;
                let (seed, public_key) = if edwards {
                    crypto::generate_ed25519()?
                } else {
                    crypto::generate_x25519()?
                };
                pubk.set(
                    A::EC_POINT,
                    AttrValue::Bytes(crypto::ec_point_der(&public_key)),
                );
                privk.set(A::VALUE, AttrValue::Bytes(seed.expose().to_vec()));
                (pubk, privk)
            }
            _ => return Err(Error::MechanismInvalid),
        };
        attrs::check_pair_separation(
            &pubk,
            (&private_template, &mut privk),
            self.config.key_separation,
        )?;
        // Pair-wise consistency before the pair is stored: it signs and verifies, or (an
        // X25519 pair) the private half yields the public one.
        if privk.key_type() == Some(KeyType::EC_MONTGOMERY) {
            let derived = crypto::x25519_public(privk.bytes(A::VALUE).unwrap_or_default())?;
            if derived != curve25519_public(pubk.bytes(A::EC_POINT).unwrap_or_default())? {
                return Err(Error::General(
                    "pair-wise consistency check failed: X25519 public value".into(),
                ));
            }
        } else {
            let sk = signing_key(&privk)?;
            let vk = verifying_key(&pubk)?;
            crypto::pairwise_check(&sk, &vk)
                .map_err(|e| Error::General(format!("pair-wise consistency check failed: {e}")))?;
        }
        // Key usage defaults already applied; both halves share CKA_ID if only one gave it.
        if pubk.id().is_some_and(<[u8]>::is_empty) && privk.id().is_some_and(|i| !i.is_empty()) {
            pubk.set(
                A::ID,
                AttrValue::Bytes(privk.id().unwrap_or_default().to_vec()),
            );
        } else if privk.id().is_some_and(<[u8]>::is_empty)
            && pubk.id().is_some_and(|i| !i.is_empty())
        {
            privk.set(
                A::ID,
                AttrValue::Bytes(pubk.id().unwrap_or_default().to_vec()),
            );
        }
        let handles = self.store_new(&sess, &slot, token, vec![pubk, privk])?;
        Ok((handles[0], handles[1]))
    }

    // ------------------------------------------------------------ signing

    fn prepared_key(&self, slot: &Slot, token: TokenId, h: u64) -> Result<Arc<CachedKey>> {
        if let Some(Location::Token { slot: s, id }) = Self::decode_handle(h) {
            if s == slot.id
                && matches!(
                    *slot.login.read().unwrap_or_else(|p| p.into_inner()),
                    Login::User(_)
                )
            {
                let epoch = {
                    let cache = lock(&slot.key_cache);
                    if let Some(k) = cache.keys.get(&id) {
                        return Ok(k.clone());
                    }
                    cache.epoch
                };
                let o = self.load(slot, token, h).map_err(key_handle)?;
                let k = Arc::new(prepare(o.attrs)?);
                let mut cache = lock(&slot.key_cache);
                if cache.epoch == epoch {
                    cache.keys.insert(id, k.clone());
                }
                return Ok(k);
            }
        }
        let o = self.load(slot, token, h).map_err(key_handle)?;
        Ok(Arc::new(prepare(o.attrs)?))
    }

    pub fn sign_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.sign_verify_init(h, mech, key, true)
    }

    pub fn verify_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.sign_verify_init(h, mech, key, false)
    }

    fn sign_verify_init(&self, h: u64, mech: &Mechanism, key: u64, sign: bool) -> Result<()> {
        self.check_health()?;
        let (sess, slot, token) = self.session_slot(h)?;
        {
            let g = lock(&sess);
            if (sign && g.sign.is_some()) || (!sign && g.verify.is_some()) {
                return Err(Error::OperationActive);
            }
        }
        let kind = sign_kind(mech)?;
        let k = self.prepared_key(&slot, token, key)?;
        let (usage, what) = if sign {
            (A::SIGN, "CKA_SIGN is FALSE")
        } else {
            (A::VERIFY, "CKA_VERIFY is FALSE")
        };
        let key_type = k.attrs.key_type();
        let algo = match kind {
            SignKind::Asym(sm) => {
                let want_class = if sign {
                    ObjectClass::PRIVATE_KEY
                } else {
                    ObjectClass::PUBLIC_KEY
                };
                let fits = match &sm {
                    SignMechanism::Ecdsa | SignMechanism::EcdsaHash(_) => {
                        key_type == Some(KeyType::EC)
                    }
                    SignMechanism::Eddsa => key_type == Some(KeyType::EC_EDWARDS),
                    _ => key_type == Some(KeyType::RSA),
                };
                if k.attrs.class() != Some(want_class) || !fits {
                    return Err(Error::KeyTypeInconsistent);
                }
                SignAlgo::Asym {
                    hasher: sm.multi_part_hash().map(Digester::new),
                    mech: sm,
                    key: k.clone(),
                    buffer: Vec::new(),
                }
            }
            SignKind::Hmac(alg) => {
                // A generic secret serves any HMAC; a CKK_SHAn_HMAC key only its own hash
                // (PKCS#11 3.0 §6.20).
                let own = match alg {
                    HashAlg::Sha1 => KeyType::SHA_1_HMAC,
                    HashAlg::Sha224 => KeyType::SHA224_HMAC,
                    HashAlg::Sha256 => KeyType::SHA256_HMAC,
                    HashAlg::Sha384 => KeyType::SHA384_HMAC,
                    HashAlg::Sha512 => KeyType::SHA512_HMAC,
                };
                if k.attrs.class() != Some(ObjectClass::SECRET_KEY)
                    || (key_type != Some(KeyType::GENERIC_SECRET) && key_type != Some(own))
                {
                    return Err(Error::KeyTypeInconsistent);
                }
                let value = k.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
                SignAlgo::Mac(crypto::Mac::new(alg, value)?)
            }
            SignKind::Cmac => {
                if k.attrs.class() != Some(ObjectClass::SECRET_KEY)
                    || key_type != Some(KeyType::AES)
                {
                    return Err(Error::KeyTypeInconsistent);
                }
                let value = k.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
                SignAlgo::Mac(crypto::Mac::aes_cmac(value)?)
            }
        };
        if k.attrs.bool(usage) != Some(true) {
            return Err(Error::KeyFunctionNotPermitted(what));
        }
        let allowed = k.attrs.mechanisms();
        if !allowed.is_empty() && !allowed.contains(&mech.kind().0) {
            return Err(Error::MechanismInvalid);
        }
        let needs_context_login = sign && k.attrs.bool(A::ALWAYS_AUTHENTICATE) == Some(true);
        let op = SignOp {
            algo,
            needs_context_login,
            multi_part: false,
        };
        let mut g = lock(&sess);
        slot.still_logged_in_for(&k.attrs)?;
        if sign {
            g.sign = Some(op);
        } else {
            g.verify = Some(op);
        }
        Ok(())
    }

    /// Length of the signature or MAC the active sign operation will produce.
    pub fn sign_len(&self, h: u64) -> Result<usize> {
        let s = self.session(h)?;
        let g = lock(&s);
        match &g.sign.as_ref().ok_or(Error::OperationNotInitialized)?.algo {
            SignAlgo::Asym { key, .. } => key
                .signer
                .as_ref()
                .map(SigningKey::signature_len)
                .ok_or(Error::KeyTypeInconsistent),
            SignAlgo::Mac(m) => Ok(m.len()),
        }
    }

    /// Takes the active sign operation, unless it still waits for a context-specific login.
    fn take_sign(&self, s: &Mutex<Session>) -> Result<SignOp> {
        let mut g = lock(s);
        match &g.sign {
            None => Err(Error::OperationNotInitialized),
            Some(op) if op.needs_context_login => Err(Error::UserNotLoggedIn),
            Some(_) => g.sign.take().ok_or(Error::OperationNotInitialized),
        }
    }

    /// Single-part sign; ends the operation (on success and on failure).
    pub fn sign(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        let s = self.session(h)?;
        let op = self.take_sign(&s)?;
        if op.multi_part {
            return Err(Error::OperationActive);
        }
        match op.algo {
            SignAlgo::Asym { mech, key, .. } => Ok(key
                .signer
                .as_ref()
                .ok_or(Error::KeyTypeInconsistent)?
                .sign(&mech, data)?),
            SignAlgo::Mac(mut m) => {
                m.update(data);
                Ok(m.finish())
            }
        }
    }

    pub fn sign_update(&self, h: u64, data: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        let op = g.sign.as_mut().ok_or(Error::OperationNotInitialized)?;
        op.multi_part = true;
        if op.algo.update(data).is_err() {
            g.sign = None;
            return Err(Error::DataLenRange);
        }
        Ok(())
    }

    pub fn sign_final(&self, h: u64) -> Result<Vec<u8>> {
        let s = self.session(h)?;
        let op = self.take_sign(&s)?;
        match op.algo {
            SignAlgo::Asym {
                mech,
                key,
                hasher,
                buffer,
            } => {
                let signer = key.signer.as_ref().ok_or(Error::KeyTypeInconsistent)?;
                Ok(match hasher {
                    Some(d) => signer.sign_prehashed(&mech, &d.finish())?,
                    None => signer.sign(&mech, &buffer)?,
                })
            }
            SignAlgo::Mac(m) => Ok(m.finish()),
        }
    }

    /// Whether a sign operation is active.
    pub fn sign_is_active(&self, h: u64) -> Result<bool> {
        let s = self.session(h)?;
        let g = lock(&s);
        Ok(g.sign.is_some())
    }

    pub fn verify(&self, h: u64, data: &[u8], signature: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let op = lock(&s)
            .verify
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        if op.multi_part {
            return Err(Error::OperationActive);
        }
        match op.algo {
            SignAlgo::Asym { mech, key, .. } => Ok(key
                .verifier
                .as_ref()
                .ok_or(Error::KeyTypeInconsistent)?
                .verify(&mech, data, signature)?),
            SignAlgo::Mac(mut m) => {
                m.update(data);
                Ok(m.verify(signature)?)
            }
        }
    }

    pub fn verify_update(&self, h: u64, data: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        let op = g.verify.as_mut().ok_or(Error::OperationNotInitialized)?;
        op.multi_part = true;
        if op.algo.update(data).is_err() {
            g.verify = None;
            return Err(Error::DataLenRange);
        }
        Ok(())
    }

    pub fn verify_final(&self, h: u64, signature: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let op = lock(&s)
            .verify
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        match op.algo {
            SignAlgo::Asym {
                mech,
                key,
                hasher,
                buffer,
            } => {
                let v = key.verifier.as_ref().ok_or(Error::KeyTypeInconsistent)?;
                Ok(match hasher {
                    Some(d) => v.verify_prehashed(&mech, &d.finish(), signature)?,
                    None => v.verify(&mech, &buffer, signature)?,
                })
            }
            SignAlgo::Mac(m) => Ok(m.verify(signature)?),
        }
    }

    // ------------------------------------------------------------ AES-GCM

    pub fn encrypt_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.aead_init(h, mech, key, true)
    }

    pub fn decrypt_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.aead_init(h, mech, key, false)
    }

    fn aead_init(&self, h: u64, mech: &Mechanism, key: u64, encrypt: bool) -> Result<()> {
        self.check_health()?;
        let (sess, slot, token) = self.session_slot(h)?;
        {
            let g = lock(&sess);
            if (encrypt && g.encrypt.is_some()) || (!encrypt && g.decrypt.is_some()) {
                return Err(Error::OperationActive);
            }
        }
        let (iv, cipher) = match mech {
            Mechanism::Gcm { iv, aad, tag_bits } => {
                // Out-of-range CK_ULONGs become u32::MAX, which the check refuses.
                let tag_bits = u32::try_from(*tag_bits).unwrap_or(u32::MAX);
                crypto::check_gcm_params(iv, tag_bits)?;
                (
                    iv.clone(),
                    CipherKind::Gcm {
                        aad: aad.clone(),
                        tag_bits,
                    },
                )
            }
            Mechanism::Iv { mechanism, iv } => {
                let mode = match *mechanism {
                    M::AES_CBC => crypto::BlockMode::Cbc,
                    M::AES_CBC_PAD => crypto::BlockMode::CbcPad,
                    M::AES_CTR => crypto::BlockMode::Ctr,
                    _ => return Err(Error::MechanismInvalid),
                };
                (iv.clone(), CipherKind::Block(mode))
            }
            Mechanism::Plain(M::AES_ECB) => (Vec::new(), CipherKind::Block(crypto::BlockMode::Ecb)),
            Mechanism::Plain(M::RSA_PKCS) => {
                if !encrypt && !self.config.allow_rsa_pkcs1_v15_decrypt {
                    tracing::warn!(
                        "CKM_RSA_PKCS decryption is off (allow_rsa_pkcs1_v15_decrypt): use CKM_RSA_PKCS_OAEP"
                    );
                    return Err(Error::MechanismInvalid);
                }
                return self.oaep_init(h, &sess, &slot, token, mech, key, encrypt, None);
            }
            Mechanism::Oaep { hash, mgf, label } => {
                return self.oaep_init(
                    h,
                    &sess,
                    &slot,
                    token,
                    mech,
                    key,
                    encrypt,
                    Some((*hash, *mgf, label.clone())),
                );
            }
            Mechanism::Plain(M::RSA_PKCS_OAEP) => {
                return Err(Error::MechanismParamInvalid(
                    "CK_RSA_PKCS_OAEP_PARAMS required".into(),
                ));
            }
            Mechanism::Plain(M::AES_GCM | M::AES_CBC | M::AES_CBC_PAD | M::AES_CTR) => {
                return Err(Error::MechanismParamInvalid(
                    "this AES mode needs its parameters (IV)".into(),
                ));
            }
            _ => return Err(Error::MechanismInvalid),
        };
        if let CipherKind::Block(mode) = cipher {
            if mode != crypto::BlockMode::Ecb && iv.len() != 16 {
                return Err(Error::MechanismParamInvalid(format!(
                    "the IV must be 16 bytes, not {}",
                    iv.len()
                )));
            }
        }
        let k = self.aes_key(&slot, token, key, encrypt, mech.kind())?;
        let op = AeadOp {
            key: aes_value(&k)?,
            iv,
            cipher,
            buffer: Vec::new(),
            needs_context_login: false,
        };
        let mut g = lock(&sess);
        slot.still_logged_in_for(&k.attrs)?;
        if encrypt {
            g.encrypt = Some(op);
        } else {
            g.decrypt = Some(op);
        }
        Ok(())
    }

    /// An AES key that may encrypt (or decrypt) with `mech`.
    fn aes_key(
        &self,
        slot: &Slot,
        token: TokenId,
        key: u64,
        encrypt: bool,
        mech: M,
    ) -> Result<Arc<CachedKey>> {
        let o = self.prepared_key(slot, token, key)?;
        if o.attrs.class() != Some(ObjectClass::SECRET_KEY)
            || o.attrs.key_type() != Some(KeyType::AES)
        {
            return Err(Error::KeyTypeInconsistent);
        }
        refuse_trusted(&o.attrs)?;
        let usage = if encrypt { A::ENCRYPT } else { A::DECRYPT };
        if o.attrs.bool(usage) != Some(true) {
            return Err(Error::KeyFunctionNotPermitted(if encrypt {
                "CKA_ENCRYPT is FALSE"
            } else {
                "CKA_DECRYPT is FALSE"
            }));
        }
        let allowed = o.attrs.mechanisms();
        if !allowed.is_empty() && !allowed.contains(&mech.0) {
            return Err(Error::MechanismInvalid);
        }
        Ok(o)
    }

    // ------------------------------------------------------------ message-based AES-GCM

    /// `C_MessageEncryptInit` / `C_MessageDecryptInit`: AES-GCM only; the mechanism's own
    /// parameter, if any, is not used (each message brings `CK_GCM_MESSAGE_PARAMS`).
    pub fn message_crypt_init(&self, h: u64, mech: M, key: u64, encrypt: bool) -> Result<()> {
        self.check_health()?;
        let (sess, slot, token) = self.session_slot(h)?;
        {
            let g = lock(&sess);
            let active = if encrypt {
                g.message_encrypt.is_some()
            } else {
                g.message_decrypt.is_some()
            };
            if active {
                return Err(Error::OperationActive);
            }
        }
        if mech != M::AES_GCM {
            return Err(Error::MechanismInvalid);
        }
        let k = self.aes_key(&slot, token, key, encrypt, mech)?;
        let key = Zeroizing::new(aes_value(&k)?);
        let mut g = lock(&sess);
        slot.still_logged_in_for(&k.attrs)?;
        let op = Some(MessageOp { key });
        if encrypt {
            g.message_encrypt = op;
        } else {
            g.message_decrypt = op;
        }
        Ok(())
    }

    /// `C_EncryptMessage`: one message under the operation's key. Returns the ciphertext
    /// and the tag; when the token generates the IV, `p.iv` holds it afterwards. The IV
    /// is generated only here, never on a length query (the caller asks for the length
    /// without calling this).
    pub fn encrypt_message(
        &self,
        h: u64,
        p: &mut GcmMessage,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.check_health()?;
        let s = self.session(h)?;
        let g = lock(&s);
        let op = g
            .message_encrypt
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?;
        let tag_bits = u32::try_from(p.tag_bits).unwrap_or(u32::MAX);
        crypto::check_gcm_params(&p.iv, tag_bits)?;
        match p.generator {
            iv_generator::NO_GENERATE => {}
            iv_generator::GENERATE | iv_generator::GENERATE_RANDOM => {
                let total = p.iv.len() as u64 * 8;
                if p.iv_fixed_bits > total || total - p.iv_fixed_bits < MIN_RANDOM_IV_BITS {
                    return Err(Error::MechanismParamInvalid(format!(
                        "a generated IV needs {MIN_RANDOM_IV_BITS} random bits: {} of a {total}-bit IV are fixed",
                        p.iv_fixed_bits
                    )));
                }
                let mut fresh = vec![0u8; p.iv.len()];
                crypto::random_bytes(&mut fresh)?;
                let whole = (p.iv_fixed_bits / 8) as usize;
                fresh[..whole].copy_from_slice(&p.iv[..whole]);
                let partial = (p.iv_fixed_bits % 8) as u32;
                if partial > 0 {
                    let keep = 0xffu8 << (8 - partial);
                    fresh[whole] = (p.iv[whole] & keep) | (fresh[whole] & !keep);
                }
                p.iv = fresh;
            }
            iv_generator::GENERATE_COUNTER | iv_generator::GENERATE_COUNTER_XOR => {
                return Err(Error::MechanismParamInvalid(
                    "counter IVs are not generated (their uniqueness would need state across sessions): use CKG_GENERATE_RANDOM"
                        .into(),
                ));
            }
            other => {
                return Err(Error::MechanismParamInvalid(format!(
                    "IV generator {other:#x}"
                )));
            }
        }
        let mut sealed = crypto::aes_gcm_encrypt(&op.key, &p.iv, aad, tag_bits, plaintext)?;
        let tag = sealed.split_off(plaintext.len());
        Ok((sealed, tag))
    }

    /// `C_DecryptMessage`: the plaintext of one message, released only if its tag holds.
    pub fn decrypt_message(
        &self,
        h: u64,
        p: &GcmMessage,
        tag: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>> {
        self.check_health()?;
        let s = self.session(h)?;
        let g = lock(&s);
        let op = g
            .message_decrypt
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?;
        let tag_bits = u32::try_from(p.tag_bits).unwrap_or(u32::MAX);
        crypto::check_gcm_params(&p.iv, tag_bits)?;
        let mut input = Zeroizing::new(Vec::with_capacity(ciphertext.len() + tag.len()));
        input.extend_from_slice(ciphertext);
        input.extend_from_slice(tag);
        Ok(crypto::aes_gcm_decrypt(
            &op.key, &p.iv, aad, tag_bits, &input,
        )?)
    }

    /// `C_MessageEncryptFinal` / `C_MessageDecryptFinal`.
    pub fn message_crypt_final(&self, h: u64, encrypt: bool) -> Result<()> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        let op = if encrypt {
            g.message_encrypt.take()
        } else {
            g.message_decrypt.take()
        };
        op.map(|_| ()).ok_or(Error::OperationNotInitialized)
    }

    /// RSA-OAEP (or PKCS#1 v1.5 when `oaep` is `None`): encryption with a public key,
    /// decryption with a private key.
    #[allow(clippy::too_many_arguments)]
    fn oaep_init(
        &self,
        _h: u64,
        sess: &SessionEntry,
        slot: &Slot,
        token: TokenId,
        mech: &Mechanism,
        key: u64,
        encrypt: bool,
        oaep: Option<(M, u64, Vec<u8>)>,
    ) -> Result<()> {
        let oaep = match oaep {
            None => None,
            Some((hash, mgf, label)) => {
                let (hash, mgf) = oaep_hashes(hash, mgf)?;
                Some((hash, mgf, label))
            }
        };
        let o = self.prepared_key(slot, token, key)?;
        let want = if encrypt {
            ObjectClass::PUBLIC_KEY
        } else {
            ObjectClass::PRIVATE_KEY
        };
        if o.attrs.class() != Some(want) || o.attrs.key_type() != Some(KeyType::RSA) {
            return Err(Error::KeyTypeInconsistent);
        }
        refuse_trusted(&o.attrs)?;
        let usage = if encrypt { A::ENCRYPT } else { A::DECRYPT };
        if o.attrs.bool(usage) != Some(true) {
            return Err(Error::KeyFunctionNotPermitted(if encrypt {
                "CKA_ENCRYPT is FALSE"
            } else {
                "CKA_DECRYPT is FALSE"
            }));
        }
        let allowed = o.attrs.mechanisms();
        if !allowed.is_empty() && !allowed.contains(&mech.kind().0) {
            return Err(Error::MechanismInvalid);
        }
        let m = o.attrs.bytes(A::MODULUS).unwrap_or_default();
        let modulus_len = m.len() - m.iter().take_while(|b| **b == 0).count();
        let needs_context_login = !encrypt && o.attrs.bool(A::ALWAYS_AUTHENTICATE) == Some(true);
        let attrs = o.attrs.clone();
        let op = AeadOp {
            needs_context_login,
            key: Vec::new(),
            iv: Vec::new(),
            cipher: match oaep {
                Some((hash, mgf, label)) => CipherKind::Oaep {
                    hash,
                    mgf,
                    label,
                    key: o,
                    modulus_len,
                },
                None => CipherKind::RsaPkcs1 {
                    key: o,
                    modulus_len,
                },
            },
            buffer: Vec::new(),
        };
        let mut g = lock(sess);
        slot.still_logged_in_for(&attrs)?;
        if encrypt {
            g.encrypt = Some(op);
        } else {
            g.decrypt = Some(op);
        }
        Ok(())
    }

    /// Output length of a single-part encrypt of `len` bytes (with what is buffered).
    pub fn encrypt_len(&self, h: u64, len: usize) -> Result<usize> {
        let s = self.session(h)?;
        let g = lock(&s);
        Ok(g.encrypt
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?
            .output_len(true, len))
    }

    /// Output length (an upper bound for padded modes) of decrypting `len` more bytes.
    pub fn decrypt_len(&self, h: u64, len: usize) -> Result<usize> {
        let s = self.session(h)?;
        let g = lock(&s);
        Ok(g.decrypt
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?
            .output_len(false, len))
    }

    /// Single-part (or final) AES in one direction; ends the operation.
    fn aead_run(&self, h: u64, d: Dir, data: &[u8]) -> Result<Vec<u8>> {
        let s = self.session(h)?;
        let mut op = d
            .slot(&mut lock(&s))
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        if op.needs_context_login {
            return Err(Error::UserNotLoggedIn);
        }
        op.buffer.extend_from_slice(data);
        Ok(match (&op.cipher, d) {
            (CipherKind::Gcm { aad, tag_bits }, Dir::Encrypt) => {
                crypto::aes_gcm_encrypt(&op.key, &op.iv, aad, *tag_bits, &op.buffer)?
            }
            (CipherKind::Gcm { aad, tag_bits }, Dir::Decrypt) => {
                crypto::aes_gcm_decrypt(&op.key, &op.iv, aad, *tag_bits, &op.buffer)?
            }
            (CipherKind::Block(mode), Dir::Encrypt) => {
                crypto::aes_encrypt(*mode, &op.key, &op.iv, &op.buffer)?
            }
            (CipherKind::Block(mode), Dir::Decrypt) => {
                crypto::aes_decrypt(*mode, &op.key, &op.iv, &op.buffer)?
            }
            (
                CipherKind::Oaep {
                    hash,
                    mgf,
                    label,
                    key,
                    ..
                },
                Dir::Encrypt,
            ) => {
                let n = key.attrs.bytes(A::MODULUS).unwrap_or_default();
                let e = key.attrs.bytes(A::PUBLIC_EXPONENT).unwrap_or_default();
                crypto::rsa_oaep_encrypt(n, e, *hash, *mgf, label, &op.buffer)?
            }
            (
                CipherKind::Oaep {
                    hash,
                    mgf,
                    label,
                    key,
                    ..
                },
                Dir::Decrypt,
            ) => crypto::rsa_oaep_decrypt(&rsa_parts(&key.attrs)?, *hash, *mgf, label, &op.buffer)?,
            (CipherKind::RsaPkcs1 { key, .. }, Dir::Encrypt) => {
                let n = key.attrs.bytes(A::MODULUS).unwrap_or_default();
                let e = key.attrs.bytes(A::PUBLIC_EXPONENT).unwrap_or_default();
                crypto::rsa_pkcs1_encrypt(n, e, &op.buffer)?
            }
            (CipherKind::RsaPkcs1 { key, .. }, Dir::Decrypt) => {
                crypto::rsa_pkcs1_decrypt(&rsa_parts(&key.attrs)?, &op.buffer)?
            }
        })
    }

    /// Takes a part. ECB and CBC (with or without padding) return every whole block
    /// at once (CBC-PAD decryption keeps the last one back: it may be the padding); GCM,
    /// CTR and RSA buffer the input and answer at the end (GCM after the tag is known or
    /// checked).
    fn aead_update(&self, h: u64, d: Dir, data: &[u8]) -> Result<Vec<u8>> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        let slot = d.slot(&mut g);
        let op = slot.as_mut().ok_or(Error::OperationNotInitialized)?;
        if op.needs_context_login {
            *slot = None;
            return Err(Error::UserNotLoggedIn);
        }
        if op.buffer.len() + data.len() > MAX_AEAD_INPUT {
            *slot = None;
            return Err(match d {
                Dir::Encrypt => Error::DataLenRange,
                Dir::Decrypt => Error::EncryptedDataLenRange,
            });
        }
        op.buffer.extend_from_slice(data);
        let ready = op.streamed_len(d, 0);
        if ready == 0 {
            return Ok(Vec::new());
        }
        let CipherKind::Block(mode) = op.cipher else {
            return Ok(Vec::new());
        };
        let chunk: Zeroizing<Vec<u8>> = Zeroizing::new(op.buffer.drain(..ready).collect());
        // Whole blocks of CBC-PAD are plain CBC; the padding comes with the final part.
        let inner = if mode == crypto::BlockMode::CbcPad {
            crypto::BlockMode::Cbc
        } else {
            mode
        };
        let out = match d {
            Dir::Encrypt => crypto::aes_encrypt(inner, &op.key, &op.iv, &chunk),
            Dir::Decrypt => crypto::aes_decrypt(inner, &op.key, &op.iv, &chunk),
        };
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                *slot = None;
                return Err(e.into());
            }
        };
        if inner == crypto::BlockMode::Cbc {
            let last = match d {
                Dir::Encrypt => &out[out.len() - 16..],
                Dir::Decrypt => &chunk[chunk.len() - 16..],
            };
            op.iv = last.to_vec();
        }
        Ok(out)
    }

    /// What a `C_EncryptUpdate` / `C_DecryptUpdate` of `len` more bytes returns.
    pub fn update_len(&self, h: u64, encrypt: bool, len: usize) -> Result<usize> {
        let d = if encrypt { Dir::Encrypt } else { Dir::Decrypt };
        let s = self.session(h)?;
        let mut g = lock(&s);
        Ok(d.slot(&mut g)
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?
            .streamed_len(d, len))
    }

    pub fn encrypt(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.aead_run(h, Dir::Encrypt, data)
    }

    pub fn encrypt_update(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.aead_update(h, Dir::Encrypt, data)
    }

    pub fn encrypt_final(&self, h: u64) -> Result<Vec<u8>> {
        self.aead_run(h, Dir::Encrypt, &[])
    }

    pub fn decrypt(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.aead_run(h, Dir::Decrypt, data)
    }

    pub fn decrypt_update(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.aead_update(h, Dir::Decrypt, data)
    }

    pub fn decrypt_final(&self, h: u64) -> Result<Vec<u8>> {
        self.aead_run(h, Dir::Decrypt, &[])
    }

    // ------------------------------------------------------------ wrap and unwrap

    /// The AES key-wrap variant a mechanism names, refusing any IV but the default one.
    fn key_wrap_mode(mech: &Mechanism) -> Result<bool> {
        match mech {
            Mechanism::Plain(M::AES_KEY_WRAP) => Ok(false),
            Mechanism::Plain(M::AES_KEY_WRAP_KWP) => Ok(true),
            Mechanism::Iv {
                mechanism: M::AES_KEY_WRAP,
                iv,
            } if iv.as_slice() == [0xa6; 8] => Ok(false),
            Mechanism::Iv {
                mechanism: M::AES_KEY_WRAP_KWP,
                iv,
            } if iv.as_slice() == [0xa6, 0x59, 0x59, 0xa6] => Ok(true),
            Mechanism::Iv {
                mechanism: M::AES_KEY_WRAP | M::AES_KEY_WRAP_KWP,
                ..
            } => Err(Error::MechanismParamInvalid(
                "only the default key-wrap IV is supported".into(),
            )),
            _ => Err(Error::MechanismInvalid),
        }
    }

    /// Loads the key that wraps (`wrap`) or unwraps with `scheme` and checks it: an AES
    /// secret key for key wrap, the RSA public (wrap) or private (unwrap) key otherwise,
    /// with the usage bit and the mechanism allowed. An AES key's value comes with it.
    fn wrapping_key(
        &self,
        (slot, token): (&Slot, TokenId),
        handle: u64,
        scheme: &WrapScheme,
        mech: &Mechanism,
        wrap: bool,
    ) -> Result<(Loaded, Option<Vec<u8>>)> {
        let o = self.load(slot, token, handle).map_err(|e| match e {
            Error::ObjectHandleInvalid if wrap => Error::WrappingKeyHandleInvalid,
            Error::ObjectHandleInvalid => Error::UnwrappingKeyHandleInvalid,
            e => e,
        })?;
        let (usage, type_err) = if wrap {
            (A::WRAP, Error::WrappingKeyTypeInconsistent)
        } else {
            (A::UNWRAP, Error::UnwrappingKeyTypeInconsistent)
        };
        let class_and_type = match scheme {
            WrapScheme::Aes { .. } => (ObjectClass::SECRET_KEY, KeyType::AES),
            _ if wrap => (ObjectClass::PUBLIC_KEY, KeyType::RSA),
            _ => (ObjectClass::PRIVATE_KEY, KeyType::RSA),
        };
        Self::check_wrapping_key(&o.attrs, class_and_type, usage, mech, type_err)?;
        let kek = match scheme {
            WrapScheme::Aes { .. } => Some(
                o.attrs
                    .bytes(A::VALUE)
                    .map(<[u8]>::to_vec)
                    .ok_or(Error::UserNotLoggedIn)?,
            ),
            _ => None,
        };
        Ok((o, kek))
    }

    /// A wrapping or unwrapping key of the given class and type, with the usage bit set
    /// and the mechanism among its allowed ones.
    fn check_wrapping_key(
        attrs: &AttributeSet,
        (class, key_type): (ObjectClass, KeyType),
        usage: A,
        mech: &Mechanism,
        type_err: Error,
    ) -> Result<()> {
        if attrs.class() != Some(class) || attrs.key_type() != Some(key_type) {
            return Err(type_err);
        }
        if attrs.bool(usage) != Some(true) {
            return Err(Error::KeyFunctionNotPermitted(if usage == A::WRAP {
                "CKA_WRAP is FALSE"
            } else {
                "CKA_UNWRAP is FALSE"
            }));
        }
        let allowed = attrs.mechanisms();
        if !allowed.is_empty() && !allowed.contains(&mech.kind().0) {
            return Err(Error::MechanismInvalid);
        }
        Ok(())
    }

    /// How a `C_WrapKey`/`C_UnwrapKey` mechanism wraps: AES key wrap (RFC 3394 or 5649)
    /// under a secret key, or RSA (OAEP; PKCS#1 v1.5) under a key pair.
    fn wrap_scheme(mech: &Mechanism) -> Result<WrapScheme> {
        match mech {
            Mechanism::Oaep { hash, mgf, label } => {
                let (hash, mgf) = oaep_hashes(*hash, *mgf)?;
                Ok(WrapScheme::Oaep {
                    hash,
                    mgf,
                    label: label.clone(),
                })
            }
            Mechanism::Plain(M::RSA_PKCS) => Ok(WrapScheme::Pkcs1),
            _ => Self::key_wrap_mode(mech).map(|padded| WrapScheme::Aes { padded }),
        }
    }

    /// `C_WrapKey`. A secret key leaves as its value, under AES key wrap or RSA; a private
    /// key leaves as PKCS#8 `PrivateKeyInfo` under AES key wrap. The key must be
    /// extractable; a key marked `CKA_WRAP_WITH_TRUSTED` only leaves under a trusted key;
    /// the wrapping key's `CKA_WRAP_TEMPLATE` must match the key; and a key never leaves
    /// under a key of lower security strength (SP 800-57), unless
    /// `allow_weaker_wrapping_key` says otherwise.
    pub fn wrap_key(&self, h: u64, mech: &Mechanism, wrapping: u64, key: u64) -> Result<Vec<u8>> {
        self.check_health()?;
        let (_, slot, token) = self.session_slot(h)?;
        let scheme = Self::wrap_scheme(mech)?;
        let (w, kek) = self.wrapping_key((&slot, token), wrapping, &scheme, mech, true)?;
        let k = self.load(&slot, token, key).map_err(key_handle)?;
        match (k.attrs.class(), &scheme) {
            (Some(ObjectClass::SECRET_KEY), _)
            | (Some(ObjectClass::PRIVATE_KEY), WrapScheme::Aes { .. }) => {}
            (Some(ObjectClass::PRIVATE_KEY), _) => {
                return Err(Error::KeyNotWrappable(
                    "RSA wraps secret keys; a private key leaves under AES key wrap (CKM_AES_KEY_WRAP_KWP) as PKCS#8".into(),
                ));
            }
            _ => {
                return Err(Error::KeyNotWrappable(
                    "only secret and private keys are wrapped".into(),
                ));
            }
        }
        if k.attrs.bool(A::EXTRACTABLE) != Some(true) {
            return Err(Error::KeyUnextractable);
        }
        if k.attrs.bool(A::WRAP_WITH_TRUSTED) == Some(true)
            && w.attrs.bool(A::TRUSTED) != Some(true)
        {
            return Err(Error::KeyNotWrappable(
                "CKA_WRAP_WITH_TRUSTED: the wrapping key is not trusted".into(),
            ));
        }
        if let Some(AttrValue::Template(t)) = w.attrs.get(A::WRAP_TEMPLATE) {
            if !attrs::matches(&k.attrs, t) && !t.is_empty() {
                return Err(Error::KeyNotWrappable(
                    "the key does not match the wrapping key's CKA_WRAP_TEMPLATE".into(),
                ));
            }
        }
        let (wrapper, wrapped) = (key_strength(&w.attrs), key_strength(&k.attrs));
        if wrapper < wrapped && !self.config.allow_weaker_wrapping_key {
            return Err(Error::KeyNotWrappable(format!(
                "a key of {wrapper}-bit strength does not wrap a key of {wrapped}-bit strength \
                 (SP 800-57; see allow_weaker_wrapping_key)"
            )));
        }
        let payload: Zeroizing<Vec<u8>> = match k.attrs.class() {
            Some(ObjectClass::PRIVATE_KEY) => {
                crypto::private_key_to_pkcs8(&private_key_of(&k.attrs)?)?
            }
            _ => Zeroizing::new(
                k.attrs
                    .bytes(A::VALUE)
                    .ok_or(Error::UserNotLoggedIn)?
                    .to_vec(),
            ),
        };
        let public = || -> Result<(&[u8], &[u8])> {
            Ok((
                w.attrs
                    .bytes(A::MODULUS)
                    .ok_or(Error::WrappingKeyTypeInconsistent)?,
                w.attrs
                    .bytes(A::PUBLIC_EXPONENT)
                    .ok_or(Error::WrappingKeyTypeInconsistent)?,
            ))
        };
        let out = match &scheme {
            WrapScheme::Aes { padded } => {
                crypto::aes_key_wrap(kek.as_deref().unwrap_or_default(), &payload, *padded)
            }
            WrapScheme::Oaep { hash, mgf, label } => {
                let (n, e) = public()?;
                crypto::rsa_oaep_encrypt(n, e, *hash, *mgf, label, &payload)
            }
            WrapScheme::Pkcs1 => {
                let (n, e) = public()?;
                crypto::rsa_pkcs1_encrypt(n, e, &payload)
            }
        };
        out.map_err(|e| match (e, &scheme) {
            (crypto::CryptoError::DataLenRange, WrapScheme::Aes { .. }) => Error::KeyNotWrappable(
                "RFC 3394 wraps whole 8-byte blocks of at least 16 bytes; use CKM_AES_KEY_WRAP_KWP"
                    .into(),
            ),
            (crypto::CryptoError::DataLenRange, _) => {
                Error::KeyNotWrappable("the key is too long for this RSA key and padding".into())
            }
            (e, _) => e.into(),
        })
    }

    /// `C_UnwrapKey`: a new key from the caller's template merged with the unwrapping
    /// key's `CKA_UNWRAP_TEMPLATE`. AES key wrap brings secret keys (the value) and private
    /// keys (PKCS#8 `PrivateKeyInfo` of RSA, P-256/384/521 or Ed25519); RSA-OAEP brings
    /// secret keys someone wrapped under our public key, and so does PKCS#1 v1.5 when
    /// `allow_rsa_pkcs1_v15_decrypt` is on. Unwrapped keys are never local,
    /// always-sensitive or never-extractable.
    pub fn unwrap_key(
        &self,
        h: u64,
        mech: &Mechanism,
        unwrapping: u64,
        wrapped: &[u8],
        template: AttributeSet,
    ) -> Result<u64> {
        self.check_health()?;
        let (sess, slot, token) = self.session_slot(h)?;
        let scheme = Self::wrap_scheme(mech)?;
        if matches!(scheme, WrapScheme::Pkcs1) && !self.config.allow_rsa_pkcs1_v15_decrypt {
            tracing::warn!(
                "CKM_RSA_PKCS unwrap is off (allow_rsa_pkcs1_v15_decrypt): use CKM_RSA_PKCS_OAEP"
            );
            return Err(Error::MechanismInvalid);
        }
        let (u, kek) = self.wrapping_key((&slot, token), unwrapping, &scheme, mech, false)?;
        refuse_always_authenticate(&u.attrs)?;
        if let Some(a) = KEY_MATERIAL.iter().find(|a| template.contains(**a)) {
            return Err(Error::TemplateInconsistent(format!(
                "{a:?} comes from the wrapped key"
            )));
        }
        let mut t = template;
        if let Some(AttrValue::Template(ut)) = u.attrs.get(A::UNWRAP_TEMPLATE) {
            for (a, v) in ut.iter() {
                match t.get(a) {
                    Some(mine) if mine != v => {
                        return Err(Error::TemplateInconsistent(format!(
                            "{a:?} conflicts with the unwrapping key's CKA_UNWRAP_TEMPLATE"
                        )));
                    }
                    _ => t.set(a, v.clone()),
                }
            }
        }
        match (t.class(), &scheme) {
            (None, _) => return Err(Error::TemplateIncomplete("CKA_CLASS".into())),
            (Some(ObjectClass::SECRET_KEY), _)
            | (Some(ObjectClass::PRIVATE_KEY), WrapScheme::Aes { .. }) => {}
            (Some(ObjectClass::PRIVATE_KEY), _) => {
                return Err(Error::TemplateInconsistent(
                    "RSA unwraps secret keys; private keys come under AES key wrap".into(),
                ));
            }
            _ => {
                return Err(Error::TemplateInconsistent(
                    "only secret and private keys are unwrapped".into(),
                ));
            }
        }
        let unwrapped = match &scheme {
            WrapScheme::Aes { padded } => {
                crypto::aes_key_unwrap(kek.as_deref().unwrap_or_default(), wrapped, *padded)
            }
            WrapScheme::Oaep { hash, mgf, label } => {
                crypto::rsa_oaep_decrypt(&rsa_parts(&u.attrs)?, *hash, *mgf, label, wrapped)
            }
            WrapScheme::Pkcs1 => crypto::rsa_pkcs1_decrypt(&rsa_parts(&u.attrs)?, wrapped),
        };
        let value = Zeroizing::new(unwrapped.map_err(|e| match e {
            crypto::CryptoError::EncryptedDataInvalid => Error::WrappedKeyInvalid,
            crypto::CryptoError::EncryptedDataLenRange => Error::WrappedKeyLenRange,
            e => e.into(),
        })?);
        if t.class() == Some(ObjectClass::PRIVATE_KEY) {
            let key =
                crypto::private_key_from_pkcs8(&value).map_err(|_| Error::WrappedKeyInvalid)?;
            set_private_key(&mut t, key)?;
        } else {
            // Every wrapping here carries the key's length, so a CKA_VALUE_LEN in the
            // template can only agree with it or be refused: taking the wrapped length
            // anyway would hand back a key the caller did not describe (SoftHSM2's blobs
            // of keys whose length is not a multiple of 8 carry zero padding inside, for
            // one).
            if let Some(asked) = t.ulong(A::VALUE_LEN) {
                if asked != value.len() as u64 {
                    return Err(Error::TemplateInconsistent(format!(
                        "CKA_VALUE_LEN {asked} but the wrapped key is {} bytes long",
                        value.len()
                    )));
                }
            }
            t.set(A::VALUE, AttrValue::Bytes(value.to_vec()));
        }
        let mut attrs = attrs::build_new(&t, Origin::Created, self.ctx(&slot))?;
        validate_key_material(&attrs).map_err(|_| Error::WrappedKeyInvalid)?;
        if attrs.class() == Some(ObjectClass::SECRET_KEY) {
            let n = attrs.bytes(A::VALUE).map(<[u8]>::len).unwrap_or(0);
            attrs.set(A::VALUE_LEN, AttrValue::Ulong(n as u64));
        }
        Ok(self.store_new(&sess, &slot, token, vec![attrs])?[0])
    }

    // ------------------------------------------------------------ derive

    /// `C_DeriveKey`: `CKM_ECDH1_DERIVE` (null or X9.63 KDF) from an EC private key, or
    /// `CKM_HKDF_DERIVE` from a generic secret or HKDF key. The new secret key's template
    /// is merged with the base key's `CKA_DERIVE_TEMPLATE`; `CKA_ALWAYS_SENSITIVE` and
    /// `CKA_NEVER_EXTRACTABLE` are the base key's AND the new key's.
    pub fn derive_key(
        &self,
        h: u64,
        mech: &Mechanism,
        base: u64,
        template: AttributeSet,
    ) -> Result<u64> {
        self.check_health()?;
        let (sess, slot, token) = self.session_slot(h)?;
        let b = self.load(&slot, token, base).map_err(key_handle)?;
        let base_fits = match mech {
            Mechanism::Ecdh { .. } => {
                b.attrs.class() == Some(ObjectClass::PRIVATE_KEY)
                    && matches!(
                        b.attrs.key_type(),
                        Some(KeyType::EC | KeyType::EC_MONTGOMERY)
                    )
            }
            Mechanism::Hkdf { .. } => {
                b.attrs.class() == Some(ObjectClass::SECRET_KEY)
                    && matches!(
                        b.attrs.key_type(),
                        Some(KeyType::GENERIC_SECRET | KeyType::HKDF)
                    )
            }
            _ if matches!(mech.kind(), M::ECDH1_DERIVE | M::HKDF_DERIVE) => {
                return Err(Error::MechanismParamInvalid(
                    "this derivation needs its parameters".into(),
                ));
            }
            _ => return Err(Error::MechanismInvalid),
        };
        Self::check_base_key(&b.attrs, base_fits, mech)?;
        let (mut t, len, requested) = Self::derived_template(&b.attrs, template)?;
        let value = match mech {
            Mechanism::Ecdh {
                kdf,
                shared_data,
                public_data,
            } => {
                // CKD_NULL, the X9.63 KDF (CKD_SHA*_KDF) or the SP 800-56C one-step KDF
                // (CKD_SHA*_KDF_SP800), with SHA-1/224/256/384/512.
                let (kdf_hash, sp800) = match *kdf {
                    1 => (None, false),
                    2 => (Some(HashAlg::Sha1), false),
                    5 => (Some(HashAlg::Sha224), false),
                    6 => (Some(HashAlg::Sha256), false),
                    7 => (Some(HashAlg::Sha384), false),
                    8 => (Some(HashAlg::Sha512), false),
                    14 => (Some(HashAlg::Sha1), true),
                    15 => (Some(HashAlg::Sha224), true),
                    16 => (Some(HashAlg::Sha256), true),
                    17 => (Some(HashAlg::Sha384), true),
                    18 => (Some(HashAlg::Sha512), true),
                    other => {
                        return Err(Error::MechanismParamInvalid(format!(
                            "ECDH KDF {other:#x}: CKD_NULL, CKD_SHA1/224/256/384/512_KDF and _KDF_SP800 are supported"
                        )));
                    }
                };
                if kdf_hash.is_none() && !shared_data.is_empty() {
                    return Err(Error::MechanismParamInvalid(
                        "CKD_NULL takes no shared data".into(),
                    ));
                }
                let scalar = b.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
                let z = if b.attrs.key_type() == Some(KeyType::EC_MONTGOMERY) {
                    let peer = curve25519_public(public_data).map_err(|_| {
                        Error::MechanismParamInvalid("public data is not an X25519 key".into())
                    })?;
                    crypto::x25519(scalar, &peer)?
                } else {
                    let curve =
                        Curve::from_ec_params(b.attrs.bytes(A::EC_PARAMS).unwrap_or_default())
                            .ok_or(Error::KeyTypeInconsistent)?;
                    let peer = crypto::ec_point_from_der(public_data).ok_or_else(|| {
                        Error::MechanismParamInvalid("public data is not an EC point".into())
                    })?;
                    crypto::ecdh(curve, scalar, &peer)?
                };
                // A generic secret without CKA_VALUE_LEN takes Z whole, or one hash output.
                let natural = kdf_hash.map_or(z.len(), HashAlg::output_len);
                let len = if requested.is_none() && t.key_type() == Some(KeyType::GENERIC_SECRET) {
                    natural
                } else {
                    len
                };
                match kdf_hash {
                    Some(hash) if sp800 => {
                        crypto::sp800_56c_kdf(hash, z.expose(), shared_data, len)?
                            .expose()
                            .to_vec()
                    }
                    Some(hash) => crypto::x963_kdf(hash, z.expose(), shared_data, len)?
                        .expose()
                        .to_vec(),
                    None if len > z.len() => {
                        return Err(Error::TemplateInconsistent(format!(
                            "CKA_VALUE_LEN {len} exceeds the {}-byte shared secret",
                            z.len()
                        )));
                    }
                    None => z.expose()[..len].to_vec(),
                }
            }
            Mechanism::Hkdf {
                extract,
                expand,
                prf,
                salt_type,
                salt,
                info,
            } => {
                let hash = HashAlg::from_mechanism(*prf)
                    .ok_or_else(|| Error::MechanismParamInvalid(format!("HKDF hash {prf:?}")))?;
                let salt: &[u8] = match salt_type {
                    1 => &[],
                    2 => salt,
                    _ => {
                        return Err(Error::MechanismParamInvalid(
                            "HKDF salt: CKF_HKDF_SALT_NULL or _DATA only".into(),
                        ));
                    }
                };
                let ikm = b.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
                crypto::hkdf(hash, ikm, *extract, *expand, salt, info, len)?
                    .expose()
                    .to_vec()
            }
            _ => return Err(Error::MechanismInvalid),
        };
        let attrs = Self::derived_attrs(self.ctx(&slot), &b.attrs, &mut t, value, mech.kind())?;
        Ok(self.store_new(&sess, &slot, token, vec![attrs])?[0])
    }

    /// `C_DeriveKey` with SP 800-108 (`CKM_SP800_108_COUNTER_KDF`, `_FEEDBACK_KDF`):
    /// the key of the call's template, then one per `CK_DERIVED_KEY`, each from its own
    /// whole PRF outputs; all are stored in one batch or none is. Returns their handles in
    /// that order. HMAC PRFs take generic secret or HMAC keys, AES-CMAC takes AES keys;
    /// a template without `CKA_SENSITIVE`/`CKA_EXTRACTABLE` takes the base key's.
    pub fn derive_keys(
        &self,
        h: u64,
        mech: &Mechanism,
        base: u64,
        template: AttributeSet,
    ) -> Result<Vec<u64>> {
        self.check_health()?;
        let Mechanism::Kbkdf {
            mechanism,
            prf,
            fields,
            iv,
            additional,
        } = mech
        else {
            return Err(Error::MechanismInvalid);
        };
        let (sess, slot, token) = self.session_slot(h)?;
        let b = self.load(&slot, token, base).map_err(key_handle)?;
        let prf = match *prf {
            M::AES_CMAC => crypto::Prf::AesCmac,
            m => match sign_kind(&Mechanism::Plain(m)) {
                Ok(SignKind::Hmac(hash)) => crypto::Prf::Hmac(hash),
                _ => {
                    return Err(Error::MechanismParamInvalid(format!(
                        "SP 800-108 PRF {m:?}: HMAC-SHA-1/224/256/384/512 or AES-CMAC"
                    )));
                }
            },
        };
        let base_fits = b.attrs.class() == Some(ObjectClass::SECRET_KEY)
            && match prf {
                crypto::Prf::AesCmac => b.attrs.key_type() == Some(KeyType::AES),
                crypto::Prf::Hmac(_) => matches!(
                    b.attrs.key_type(),
                    Some(
                        KeyType::GENERIC_SECRET
                            | KeyType::SHA_1_HMAC
                            | KeyType::SHA224_HMAC
                            | KeyType::SHA256_HMAC
                            | KeyType::SHA384_HMAC
                            | KeyType::SHA512_HMAC
                    )
                ),
            };
        Self::check_base_key(&b.attrs, base_fits, mech)?;
        let mode = match *mechanism {
            M::SP800_108_FEEDBACK_KDF => crypto::KbkdfMode::Feedback(iv.clone()),
            _ => crypto::KbkdfMode::Counter,
        };
        let mut templates = Vec::with_capacity(1 + additional.len());
        for t in std::iter::once(template).chain(additional.iter().cloned()) {
            let mut t = t;
            for a in [A::SENSITIVE, A::EXTRACTABLE] {
                if !t.contains(a) {
                    if let Some(v) = b.attrs.get(a) {
                        t.set(a, v.clone());
                    }
                }
            }
            templates.push(Self::derived_template(&b.attrs, t)?);
        }
        let lens: Vec<usize> = templates.iter().map(|(_, len, _)| *len).collect();
        let key = b.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
        let values = crypto::kbkdf(prf, key, &mode, fields, &lens)?;
        let mut objects = Vec::with_capacity(values.len());
        for ((mut t, _, _), value) in templates.into_iter().zip(values) {
            objects.push(Self::derived_attrs(
                self.ctx(&slot),
                &b.attrs,
                &mut t,
                value.expose().to_vec(),
                *mechanism,
            )?);
        }
        self.store_new(&sess, &slot, token, objects)
    }

    /// The base key may derive with this mechanism: its type fits, `CKA_DERIVE` is set,
    /// and the mechanism is among its allowed ones.
    fn check_base_key(b: &AttributeSet, fits: bool, mech: &Mechanism) -> Result<()> {
        if !fits {
            return Err(Error::KeyTypeInconsistent);
        }
        refuse_trusted(b)?;
        refuse_always_authenticate(b)?;
        if b.bool(A::DERIVE) != Some(true) {
            return Err(Error::KeyFunctionNotPermitted("CKA_DERIVE is FALSE"));
        }
        let allowed = b.mechanisms();
        if !allowed.is_empty() && !allowed.contains(&mech.kind().0) {
            return Err(Error::MechanismInvalid);
        }
        Ok(())
    }

    /// A derived key's template merged with the base key's `CKA_DERIVE_TEMPLATE`, its
    /// length in bytes, and the `CKA_VALUE_LEN` the caller asked for (if any).
    fn derived_template(
        b: &AttributeSet,
        template: AttributeSet,
    ) -> Result<(AttributeSet, usize, Option<usize>)> {
        if template.contains(A::VALUE) {
            return Err(Error::TemplateInconsistent(
                "CKA_VALUE comes from the derivation".into(),
            ));
        }
        let mut t = template;
        if t.class().is_none() {
            t.set(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0));
        }
        if let Some(AttrValue::Template(dt)) = b.get(A::DERIVE_TEMPLATE) {
            for (a, v) in dt.iter() {
                match t.get(a) {
                    Some(mine) if mine != v => {
                        return Err(Error::TemplateInconsistent(format!(
                            "{a:?} conflicts with the base key's CKA_DERIVE_TEMPLATE"
                        )));
                    }
                    _ => t.set(a, v.clone()),
                }
            }
        }
        if t.class() != Some(ObjectClass::SECRET_KEY) {
            return Err(Error::TemplateInconsistent(
                "derivation makes secret keys".into(),
            ));
        }
        let requested = t.ulong(A::VALUE_LEN).map(|n| n as usize);
        let len = match (t.key_type(), requested) {
            (None, _) => return Err(Error::TemplateIncomplete("CKA_KEY_TYPE".into())),
            (Some(KeyType::AES), Some(n)) if matches!(n, 16 | 24 | 32) => n,
            (Some(KeyType::AES), None) => 32,
            (Some(KeyType::AES), Some(_)) => {
                return Err(Error::TemplateInconsistent(
                    "an AES key is 16, 24 or 32 bytes".into(),
                ));
            }
            (Some(KeyType::GENERIC_SECRET), Some(n)) if (1..=512).contains(&n) => n,
            (Some(KeyType::GENERIC_SECRET), None) => 32,
            (Some(KeyType::GENERIC_SECRET), Some(_)) => return Err(Error::KeySizeRange),
            (Some(_), _) => {
                return Err(Error::TemplateInconsistent(
                    "derivation makes AES or generic secret keys".into(),
                ));
            }
        };
        Ok((t, len, requested))
    }

    /// The attributes of a derived key: its value and length, the mechanism that made it,
    /// and `CKA_ALWAYS_SENSITIVE` / `CKA_NEVER_EXTRACTABLE` as the base key's AND its own.
    fn derived_attrs(
        ctx: Ctx,
        b: &AttributeSet,
        t: &mut AttributeSet,
        value: Vec<u8>,
        mech: M,
    ) -> Result<AttributeSet> {
        let len = value.len();
        t.remove(A::VALUE_LEN);
        t.set(A::VALUE, AttrValue::Bytes(value));
        let mut attrs = attrs::build_new(&t, Origin::Created, ctx)?;
        attrs.set(A::VALUE_LEN, AttrValue::Ulong(len as u64));
        attrs.set(A::KEY_GEN_MECHANISM, AttrValue::Ulong(mech.0));
        let sensitive = attrs.bool(A::SENSITIVE) == Some(true);
        let extractable = attrs.bool(A::EXTRACTABLE) == Some(true);
        attrs.set(
            A::ALWAYS_SENSITIVE,
            AttrValue::Bool(b.bool(A::ALWAYS_SENSITIVE) == Some(true) && sensitive),
        );
        attrs.set(
            A::NEVER_EXTRACTABLE,
            AttrValue::Bool(b.bool(A::NEVER_EXTRACTABLE) == Some(true) && !extractable),
        );
        Ok(attrs)
    }

    // ------------------------------------------------------------ digest and random

    pub fn digest_init(&self, h: u64, mech: &Mechanism) -> Result<()> {
        self.check_health()?;
        let s = self.session(h)?;
        let mut g = lock(&s);
        if g.digest.is_some() {
            return Err(Error::OperationActive);
        }
        let alg = match mech {
            Mechanism::Plain(m) => HashAlg::from_mechanism(*m).ok_or(Error::MechanismInvalid)?,
            _ => return Err(Error::MechanismInvalid),
        };
        g.digest = Some((alg, Digester::new(alg)));
        Ok(())
    }

    pub fn digest_len(&self, h: u64) -> Result<usize> {
        let s = self.session(h)?;
        let g = lock(&s);
        Ok(g.digest
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?
            .0
            .output_len())
    }

    pub fn digest(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        let s = self.session(h)?;
        let (_, mut d) = lock(&s)
            .digest
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        d.update(data);
        Ok(d.finish())
    }

    pub fn digest_update(&self, h: u64, data: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        g.digest
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?
            .1
            .update(data);
        Ok(())
    }

    /// `C_DigestKey`: feeds a secret key's value into the active digest. Only secret keys
    /// that are not sensitive and are extractable (`CKR_KEY_INDIGESTIBLE` otherwise): a
    /// digest is not a safe one-way view of a key — HMAC keys longer than the hash block
    /// *are* their digest to HMAC, so SHA-256 of a long sensitive HMAC key would hand out
    /// the key HMAC actually uses.
    pub fn digest_key(&self, h: u64, key: u64) -> Result<()> {
        self.check_health()?;
        let (_, slot, token) = self.session_slot(h)?;
        {
            let s = self.session(h)?;
            if lock(&s).digest.is_none() {
                return Err(Error::OperationNotInitialized);
            }
        }
        let k = self.load(&slot, token, key).map_err(key_handle)?;
        if k.attrs.class() != Some(ObjectClass::SECRET_KEY) {
            return Err(Error::KeyIndigestible("only secret keys are digested"));
        }
        if k.attrs.bool(A::SENSITIVE) != Some(false) || k.attrs.bool(A::EXTRACTABLE) != Some(true) {
            return Err(Error::KeyIndigestible(
                "only non-sensitive, extractable keys are digested",
            ));
        }
        let value = k.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
        self.digest_update(h, value)
    }

    pub fn digest_final(&self, h: u64) -> Result<Vec<u8>> {
        let s = self.session(h)?;
        let (_, d) = lock(&s)
            .digest
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        Ok(d.finish())
    }

    pub fn generate_random(&self, h: u64, out: &mut [u8]) -> Result<()> {
        self.check_health()?;
        self.session(h)?;
        Ok(crypto::random_bytes(out)?)
    }

    pub fn seed_random(&self, h: u64) -> Result<()> {
        self.session(h)?;
        // The generator is the operating system's, through aws-lc; it takes no seed.
        Err(Error::RandomSeedNotSupported)
    }

    /// Ends the given operations of a session (`C_SessionCancel`, and bad input that
    /// terminates an operation).
    pub fn cancel(&self, h: u64, kinds: &[OpKind]) -> Result<()> {
        let s = self.session(h)?;
        let mut g = lock(&s);
        for k in kinds {
            match k {
                OpKind::Sign => g.sign = None,
                OpKind::Verify => g.verify = None,
                OpKind::Encrypt => g.encrypt = None,
                OpKind::Decrypt => g.decrypt = None,
                OpKind::MessageEncrypt => g.message_encrypt = None,
                OpKind::MessageDecrypt => g.message_decrypt = None,
                OpKind::Digest => g.digest = None,
                OpKind::Find => g.find = None,
            }
        }
        Ok(())
    }

    /// Whether an operation of this kind is active (for the output-length convention:
    /// a length query leaves it active).
    pub fn has_operation(&self, h: u64, op: OpKind) -> Result<bool> {
        let s = self.session(h)?;
        let g = lock(&s);
        Ok(match op {
            OpKind::Sign => g.sign.is_some(),
            OpKind::Verify => g.verify.is_some(),
            OpKind::Encrypt => g.encrypt.is_some(),
            OpKind::Decrypt => g.decrypt.is_some(),
            OpKind::MessageEncrypt => g.message_encrypt.is_some(),
            OpKind::MessageDecrypt => g.message_decrypt.is_some(),
            OpKind::Digest => g.digest.is_some(),
            OpKind::Find => g.find.is_some(),
        })
    }
}

/// The direction of an AES-GCM operation.
#[derive(Clone, Copy)]
enum Dir {
    Encrypt,
    Decrypt,
}

impl Dir {
    fn slot(self, s: &mut Session) -> &mut Option<AeadOp> {
        match self {
            Dir::Encrypt => &mut s.encrypt,
            Dir::Decrypt => &mut s.decrypt,
        }
    }
}

/// Operation kinds of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    MessageEncrypt,
    MessageDecrypt,
    Digest,
    Find,
}

/// Raw (unhashed) signature input and AEAD input are buffered; cap them.
const MAX_RAW_INPUT: usize = 64 * 1024;
const MAX_AEAD_INPUT: usize = 64 * 1024 * 1024;

fn key_handle(e: Error) -> Error {
    match e {
        Error::ObjectHandleInvalid => Error::KeyHandleInvalid,
        e => e,
    }
}

/// A trusted key never encrypts, decrypts or derives (also checked when it is made;
/// this holds for records made before that rule).
fn refuse_trusted(attrs: &AttributeSet) -> Result<()> {
    if attrs::is_trusted(attrs) {
        return Err(Error::KeyFunctionNotPermitted(
            "a trusted key (CKA_TRUSTED) only wraps or unwraps",
        ));
    }
    Ok(())
}

/// `CKA_ALWAYS_AUTHENTICATE` keys are used one operation at a time, each after
/// `C_Login(CKU_CONTEXT_SPECIFIC)`; PKCS#11 has that login for operations with an
/// `*Init` (sign, decrypt) only, so such keys do not unwrap or derive.
fn refuse_always_authenticate(attrs: &AttributeSet) -> Result<()> {
    if attrs.bool(A::ALWAYS_AUTHENTICATE) == Some(true) {
        return Err(Error::KeyFunctionNotPermitted(
            "a CKA_ALWAYS_AUTHENTICATE key signs and decrypts only, each time after C_Login(CKU_CONTEXT_SPECIFIC)",
        ));
    }
    Ok(())
}

/// An AES key's value (absent without the user's login).
fn aes_value(k: &CachedKey) -> Result<Vec<u8>> {
    Ok(k.attrs
        .bytes(A::VALUE)
        .ok_or(Error::UserNotLoggedIn)?
        .to_vec())
}

fn new_slot(id: u64, token: Option<TokenId>) -> Slot {
    Slot {
        id,
        token: RwLock::new(token),
        login: RwLock::new(Login::Public),
        public: RwLock::new(None),
        key_cache: Mutex::new(KeyCache::default()),
    }
}

impl Slot {
    fn token_id(&self) -> Option<TokenId> {
        *self.token.read().unwrap_or_else(|p| p.into_inner())
    }
    fn logout(&self) {
        *self.login.write().unwrap_or_else(|p| p.into_inner()) = Login::Public;
        self.forget_all_cached();
    }
    fn forget_all_cached(&self) {
        let mut cache = lock(&self.key_cache);
        cache.keys.clear();
        cache.epoch += 1;
    }
    fn forget_cached(&self, id: ObjectId) {
        let mut cache = lock(&self.key_cache);
        cache.keys.remove(&id);
        cache.epoch += 1;
    }
    /// Refuses to install an operation on a private key once the user's login is gone. Called with the session's mutex held: `C_Logout` first drops the
    /// login, then clears each session's operations under that mutex, so an operation
    /// prepared while the user was logged in either sees the logout here or is cleared.
    fn still_logged_in_for(&self, attrs: &AttributeSet) -> Result<()> {
        let public = matches!(
            *self.login.read().unwrap_or_else(|p| p.into_inner()),
            Login::Public
        );
        if attrs.is_private() && public {
            return Err(Error::UserNotLoggedIn);
        }
        Ok(())
    }
}

fn without(t: &AttributeSet, a: A) -> AttributeSet {
    let mut t = t.clone();
    t.remove(a);
    t
}

/// Fills the class and key type a generation mechanism implies; a template that says
/// otherwise is inconsistent.
fn implied(mut t: AttributeSet, class: ObjectClass, key_type: KeyType) -> Result<AttributeSet> {
    match t.class() {
        None => t.set(A::CLASS, AttrValue::Ulong(class.0)),
        Some(c) if c == class => {}
        Some(c) => {
            return Err(Error::TemplateInconsistent(format!(
                "CKA_CLASS {c:?} does not fit the mechanism"
            )));
        }
    }
    match t.key_type() {
        None => t.set(A::KEY_TYPE, AttrValue::Ulong(key_type.0)),
        Some(k) if k == key_type => {}
        Some(k) => {
            return Err(Error::TemplateInconsistent(format!(
                "CKA_KEY_TYPE {k:?} does not fit the mechanism"
            )));
        }
    }
    Ok(t)
}

/// A signing mechanism: an asymmetric one, or an HMAC.
enum SignKind {
    Asym(SignMechanism),
    Hmac(HashAlg),
    Cmac,
}

fn sign_kind(m: &Mechanism) -> Result<SignKind> {
    Ok(match m {
        Mechanism::Plain(M::SHA_1_HMAC) => SignKind::Hmac(HashAlg::Sha1),
        Mechanism::Plain(M::SHA224_HMAC) => SignKind::Hmac(HashAlg::Sha224),
        Mechanism::Plain(M::SHA256_HMAC) => SignKind::Hmac(HashAlg::Sha256),
        Mechanism::Plain(M::SHA384_HMAC) => SignKind::Hmac(HashAlg::Sha384),
        Mechanism::Plain(M::SHA512_HMAC) => SignKind::Hmac(HashAlg::Sha512),
        Mechanism::Plain(M::AES_CMAC) => SignKind::Cmac,
        other => SignKind::Asym(sign_mechanism(other)?),
    })
}

fn sign_mechanism(m: &Mechanism) -> Result<SignMechanism> {
    let hash_of = |m: M| {
        HashAlg::from_mechanism(m)
            .ok_or_else(|| Error::MechanismParamInvalid(format!("hash {m:?}")))
    };
    let mgf_of = |g: u64| match g {
        1 => Ok(HashAlg::Sha1),
        2 => Ok(HashAlg::Sha256),
        3 => Ok(HashAlg::Sha384),
        4 => Ok(HashAlg::Sha512),
        5 => Ok(HashAlg::Sha224),
        _ => Err(Error::MechanismParamInvalid(format!("MGF {g:#x}"))),
    };
    Ok(match m {
        Mechanism::Plain(M::ECDSA) => SignMechanism::Ecdsa,
        Mechanism::Plain(M::EDDSA) => SignMechanism::Eddsa,
        Mechanism::Plain(M::ECDSA_SHA256) => SignMechanism::EcdsaHash(HashAlg::Sha256),
        Mechanism::Plain(M::ECDSA_SHA384) => SignMechanism::EcdsaHash(HashAlg::Sha384),
        Mechanism::Plain(M::ECDSA_SHA512) => SignMechanism::EcdsaHash(HashAlg::Sha512),
        Mechanism::Plain(M::RSA_PKCS) => SignMechanism::RsaPkcs,
        Mechanism::Plain(M::SHA256_RSA_PKCS) => SignMechanism::RsaPkcsHash(HashAlg::Sha256),
        Mechanism::Plain(M::SHA384_RSA_PKCS) => SignMechanism::RsaPkcsHash(HashAlg::Sha384),
        Mechanism::Plain(M::SHA512_RSA_PKCS) => SignMechanism::RsaPkcsHash(HashAlg::Sha512),
        Mechanism::Pss {
            mechanism,
            hash,
            mgf,
            salt_len,
        } => {
            let h = hash_of(*hash)?;
            let (prehashed, want) = match *mechanism {
                M::RSA_PKCS_PSS => (true, None),
                M::SHA256_RSA_PKCS_PSS => (false, Some(HashAlg::Sha256)),
                M::SHA384_RSA_PKCS_PSS => (false, Some(HashAlg::Sha384)),
                M::SHA512_RSA_PKCS_PSS => (false, Some(HashAlg::Sha512)),
                _ => return Err(Error::MechanismInvalid),
            };
            if want.is_some_and(|w| w != h) {
                return Err(Error::MechanismParamInvalid(
                    "the PSS hash must match the mechanism".into(),
                ));
            }
            SignMechanism::RsaPss {
                hash: h,
                mgf_hash: mgf_of(*mgf)?,
                salt_len: *salt_len as usize,
                prehashed,
            }
        }
        Mechanism::Plain(
            M::RSA_PKCS_PSS
            | M::SHA256_RSA_PKCS_PSS
            | M::SHA384_RSA_PKCS_PSS
            | M::SHA512_RSA_PKCS_PSS,
        ) => {
            return Err(Error::MechanismParamInvalid(
                "CK_RSA_PKCS_PSS_PARAMS required".into(),
            ));
        }
        _ => return Err(Error::MechanismInvalid),
    })
}

fn signing_key(a: &AttributeSet) -> Result<SigningKey> {
    let missing = || Error::UserNotLoggedIn;
    match a.key_type() {
        Some(KeyType::EC) => {
            let curve = Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
                .ok_or(Error::KeyTypeInconsistent)?;
            Ok(SigningKey::ec(
                curve,
                a.bytes(A::VALUE).ok_or_else(missing)?,
            )?)
        }
        Some(KeyType::RSA) => Ok(SigningKey::rsa(&rsa_parts(a)?)?),
        Some(KeyType::EC_EDWARDS) => {
            if !crypto::is_ed25519_params(a.bytes(A::EC_PARAMS).unwrap_or_default()) {
                return Err(Error::KeyTypeInconsistent);
            }
            Ok(SigningKey::ed25519(a.bytes(A::VALUE).ok_or_else(missing)?)?)
        }
        _ => Err(Error::KeyTypeInconsistent),
    }
}

/// A Curve25519 public key (Ed25519 or X25519) from `CKA_EC_POINT` or ECDH public data:
/// a DER OCTET STRING of 32 bytes, or the 32 bytes themselves.
fn curve25519_public(point: &[u8]) -> Result<Vec<u8>> {
    match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => Ok(rest.to_vec()),
        raw if raw.len() == 32 => Ok(raw.to_vec()),
        _ => Err(Error::AttributeValueInvalid(
            "a Curve25519 public key is 32 bytes (or their DER OCTET STRING)".into(),
        )),
    }
}

/// How `C_WrapKey` / `C_UnwrapKey` protect the key.
enum WrapScheme {
    Aes {
        padded: bool,
    },
    Oaep {
        hash: HashAlg,
        mgf: HashAlg,
        label: Vec<u8>,
    },
    Pkcs1,
}

/// Attributes that an unwrapped key takes from the blob, never from the template.
const KEY_MATERIAL: [A; 9] = [
    A::VALUE,
    A::MODULUS,
    A::PUBLIC_EXPONENT,
    A::PRIVATE_EXPONENT,
    A::PRIME_1,
    A::PRIME_2,
    A::EXPONENT_1,
    A::EXPONENT_2,
    A::COEFFICIENT,
];

/// The security strength of a key in bits, by SP 800-57 Part 1 Rev. 5 table 2 (RSA:
/// 2048 → 112, 3072 → 128, 7680 → 192, 15360 → 256; EC: half the field; Ed25519: 128);
/// a secret key counts its length, up to 256.
fn key_strength(a: &AttributeSet) -> u32 {
    match a.key_type() {
        Some(KeyType::RSA) => {
            match crypto::rsa_modulus_bits(a.bytes(A::MODULUS).unwrap_or_default()) {
                15360.. => 256,
                7680.. => 192,
                3072.. => 128,
                2048.. => 112,
                _ => 80,
            }
        }
        Some(KeyType::EC) => match Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
        {
            Some(Curve::P256) => 128,
            Some(Curve::P384) => 192,
            Some(Curve::P521) => 256,
            None => 0,
        },
        Some(KeyType::EC_EDWARDS | KeyType::EC_MONTGOMERY) => 128,
        _ => a
            .bytes(A::VALUE)
            .map_or(0, |v| (v.len() as u32).saturating_mul(8).min(256)),
    }
}

/// The private key of an object, for wrapping.
fn private_key_of(a: &AttributeSet) -> Result<crypto::PrivateKey> {
    let value = || {
        a.bytes(A::VALUE)
            .map(hsm_types::SecretBytes::from_slice)
            .ok_or(Error::UserNotLoggedIn)
    };
    match a.key_type() {
        Some(KeyType::RSA) => Ok(crypto::PrivateKey::Rsa(rsa_parts(a)?)),
        Some(KeyType::EC) => {
            let curve = Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
                .ok_or(Error::KeyTypeInconsistent)?;
            let private_value = value()?;
            let public_point = match signing_key(a)?.ec_public_point() {
                Some(p) => p,
                None => return Err(Error::KeyTypeInconsistent),
            };
            Ok(crypto::PrivateKey::Ec(crypto::EcPrivateParts {
                curve,
                private_value,
                public_point,
            }))
        }
        Some(KeyType::EC_EDWARDS) => Ok(crypto::PrivateKey::Ed25519(value()?)),
        Some(KeyType::EC_MONTGOMERY) => Ok(crypto::PrivateKey::X25519(value()?)),
        _ => Err(Error::KeyNotWrappable(
            "no PKCS#8 form for this key type".into(),
        )),
    }
}

/// Puts an unwrapped private key's material into the template, checking the key type and
/// curve the caller named (if any) against the key's own.
fn set_private_key(t: &mut AttributeSet, key: crypto::PrivateKey) -> Result<()> {
    let (key_type, params) = match &key {
        crypto::PrivateKey::Rsa(_) => (KeyType::RSA, None),
        crypto::PrivateKey::Ec(p) => (KeyType::EC, Some(p.curve.ec_params())),
        crypto::PrivateKey::Ed25519(_) => (KeyType::EC_EDWARDS, Some(crypto::ED25519_OID.to_vec())),
        crypto::PrivateKey::X25519(_) => {
            (KeyType::EC_MONTGOMERY, Some(crypto::X25519_OID.to_vec()))
        }
    };
    match t.key_type() {
        None => t.set(A::KEY_TYPE, AttrValue::Ulong(key_type.0)),
        Some(k) if k == key_type => {}
        Some(k) => {
            return Err(Error::TemplateInconsistent(format!(
                "CKA_KEY_TYPE {k:?}, but the wrapped key is {key_type:?}"
            )));
        }
    }
    if let Some(params) = params {
        let same_curve = |given: &[u8]| match key_type {
            KeyType::EC => Curve::from_ec_params(given) == Curve::from_ec_params(&params),
            KeyType::EC_MONTGOMERY => crypto::is_x25519_params(given),
            _ => crypto::is_ed25519_params(given),
        };
        match t.bytes(A::EC_PARAMS) {
            Some(given) if !same_curve(given) => {
                return Err(Error::TemplateInconsistent(
                    "CKA_EC_PARAMS name another curve than the wrapped key's".into(),
                ));
            }
            Some(_) => {}
            None => t.set(A::EC_PARAMS, AttrValue::Bytes(params)),
        }
    }
    match key {
        crypto::PrivateKey::Rsa(p) => {
            t.set(A::MODULUS, AttrValue::Bytes(p.modulus.clone()));
            t.set(
                A::PUBLIC_EXPONENT,
                AttrValue::Bytes(p.public_exponent.clone()),
            );
            for (a, v) in [
                (A::PRIVATE_EXPONENT, &p.private_exponent),
                (A::PRIME_1, &p.prime_1),
                (A::PRIME_2, &p.prime_2),
                (A::EXPONENT_1, &p.exponent_1),
                (A::EXPONENT_2, &p.exponent_2),
                (A::COEFFICIENT, &p.coefficient),
            ] {
                t.set(a, AttrValue::Bytes(v.expose().to_vec()));
            }
        }
        crypto::PrivateKey::Ec(p) => {
            t.set(
                A::VALUE,
                AttrValue::Bytes(p.private_value.expose().to_vec()),
            );
        }
        crypto::PrivateKey::Ed25519(seed) | crypto::PrivateKey::X25519(seed) => {
            t.set(A::VALUE, AttrValue::Bytes(seed.expose().to_vec()));
        }
    }
    Ok(())
}

/// The private components of an RSA key object (absent without the user's login).
/// The OAEP hash and MGF1 hash of `CK_RSA_PKCS_OAEP_PARAMS`.
fn oaep_hashes(hash: M, mgf: u64) -> Result<(HashAlg, HashAlg)> {
    let hash = HashAlg::from_mechanism(hash)
        .ok_or_else(|| Error::MechanismParamInvalid(format!("OAEP hash {hash:?}")))?;
    let mgf = match mgf {
        1 => HashAlg::Sha1,
        2 => HashAlg::Sha256,
        3 => HashAlg::Sha384,
        4 => HashAlg::Sha512,
        5 => HashAlg::Sha224,
        _ => return Err(Error::MechanismParamInvalid(format!("MGF {mgf:#x}"))),
    };
    Ok((hash, mgf))
}

fn rsa_parts(a: &AttributeSet) -> Result<crypto::RsaPrivateParts> {
    let get = |t: A| a.bytes(t).map(<[u8]>::to_vec).ok_or(Error::UserNotLoggedIn);
    let secret = |t: A| get(t).map(hsm_types::SecretBytes::new);
    Ok(crypto::RsaPrivateParts {
        modulus: get(A::MODULUS)?,
        public_exponent: get(A::PUBLIC_EXPONENT)?,
        private_exponent: secret(A::PRIVATE_EXPONENT)?,
        prime_1: secret(A::PRIME_1)?,
        prime_2: secret(A::PRIME_2)?,
        exponent_1: secret(A::EXPONENT_1)?,
        exponent_2: secret(A::EXPONENT_2)?,
        coefficient: secret(A::COEFFICIENT)?,
    })
}

fn verifying_key(a: &AttributeSet) -> Result<VerifyingKey> {
    match a.key_type() {
        Some(KeyType::EC_EDWARDS) => {
            if !crypto::is_ed25519_params(a.bytes(A::EC_PARAMS).unwrap_or_default()) {
                return Err(Error::KeyTypeInconsistent);
            }
            Ok(VerifyingKey::ed25519(&curve25519_public(
                a.bytes(A::EC_POINT).unwrap_or_default(),
            )?)?)
        }
        Some(KeyType::EC) => {
            let curve = Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
                .ok_or(Error::KeyTypeInconsistent)?;
            let point = crypto::ec_point_from_der(a.bytes(A::EC_POINT).unwrap_or_default())
                .ok_or(Error::KeyTypeInconsistent)?;
            Ok(VerifyingKey::ec(curve, &point)?)
        }
        Some(KeyType::RSA) => Ok(VerifyingKey::rsa(
            a.bytes(A::MODULUS).unwrap_or_default(),
            a.bytes(A::PUBLIC_EXPONENT).unwrap_or_default(),
        )?),
        _ => Err(Error::KeyTypeInconsistent),
    }
}

/// Parses a key once for use: private keys get a signer, public keys a verifier.
fn prepare(attrs: AttributeSet) -> Result<CachedKey> {
    let (signer, verifier) = match attrs.class() {
        Some(ObjectClass::PRIVATE_KEY) => (Some(signing_key(&attrs)?), None),
        Some(ObjectClass::PUBLIC_KEY) => (None, Some(verifying_key(&attrs)?)),
        _ => (None, None),
    };
    Ok(CachedKey {
        attrs,
        signer,
        verifier,
    })
}

/// Checks imported key material before it is stored.
fn validate_key_material(a: &AttributeSet) -> Result<()> {
    match (a.class(), a.key_type()) {
        (Some(ObjectClass::SECRET_KEY), Some(KeyType::AES)) => {
            let n = a.bytes(A::VALUE).map(<[u8]>::len).unwrap_or(0);
            if !matches!(n, 16 | 24 | 32) {
                return Err(Error::AttributeValueInvalid(format!(
                    "AES key of {n} bytes"
                )));
            }
        }
        (Some(ObjectClass::SECRET_KEY), _) => {
            if a.bytes(A::VALUE).is_none_or(<[u8]>::is_empty) {
                return Err(Error::AttributeValueInvalid("empty secret".into()));
            }
        }
        (Some(class), Some(KeyType::EC_MONTGOMERY)) => {
            let invalid = |e: Error| Error::AttributeValueInvalid(format!("X25519 key: {e}"));
            if !crypto::is_x25519_params(a.bytes(A::EC_PARAMS).unwrap_or_default()) {
                return Err(invalid(Error::KeyTypeInconsistent));
            }
            if class == ObjectClass::PRIVATE_KEY {
                let value = a.bytes(A::VALUE).unwrap_or_default();
                if value.len() != 32 {
                    return Err(invalid(Error::KeySizeRange));
                }
                crypto::x25519_public(value).map_err(|e| invalid(e.into()))?;
            } else {
                curve25519_public(a.bytes(A::EC_POINT).unwrap_or_default()).map_err(invalid)?;
            }
        }
        (Some(ObjectClass::PRIVATE_KEY | ObjectClass::PUBLIC_KEY), _) => {
            if a.class() == Some(ObjectClass::PRIVATE_KEY) {
                signing_key(a).map_err(|e| {
                    Error::AttributeValueInvalid(format!("key material does not load: {e}"))
                })?;
            } else {
                verifying_key(a).map_err(|e| {
                    Error::AttributeValueInvalid(format!("key material does not load: {e}"))
                })?;
            }
        }
        _ => {}
    }
    Ok(())
}
