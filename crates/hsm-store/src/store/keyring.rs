//! The keyring: each token's keys and the PINs that open them. A token record holds the
//! master key wrapped under each PIN (Argon2id from the PIN, parameters in the record);
//! [`TokenKeys`] holds what one caller unwrapped. PIN failure counters live in `meta` and
//! move durably around every check.

use super::{Store, u32_from};
use crate::audit::Event;
use crate::backend::{Batch, Flow, PurgeRange, collect_prefix};
use crate::cf::Cf;
use crate::crypto::{self, KdfParams, Key32, Purpose, aad};
use crate::error::{Result, StoreError};
use crate::keys::{self, Visibility};
use crate::records::{self, PinPolicy, PinSlot, TokenRecord};
use hsm_types::audit::ckr;
use hsm_types::{SecretString, TokenId, UserKind};

/// What a new token is made with.
pub struct TokenSpec {
    pub label: String,
    pub so_pin: SecretString,
    pub user_pin: Option<SecretString>,
    pub kdf: KdfParams,
    pub pin_policy: PinPolicy,
}

/// Public facts about a token (no PIN needed).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub label: String,
    pub serial: String,
    pub created_at: u64,
    pub user_pin_initialized: bool,
    pub so_failures: u32,
    pub user_failures: u32,
    pub pin_policy: PinPolicy,
    pub kdf: KdfParams,
}

/// The keys one caller holds for a token: public ones always, the master key and its
/// derivations after a PIN unwrapped it. Zeroized on drop (logout).
pub struct TokenKeys {
    pub(super) token: TokenId,
    pub(super) generation: u32,
    pub(super) header: Key32,
    pub(super) public_index: Key32,
    pub(super) public_wrap: Key32,
    pub(super) master: Option<MasterKeys>,
}

pub(super) struct MasterKeys {
    pub(super) who: UserKind,
    pub(super) raw: Key32,
    pub(super) private_index: Key32,
    pub(super) wrap: Key32,
    /// Binds object headers and their current records (`ObjectHeader::binding`).
    pub(super) binding: Key32,
}

impl TokenKeys {
    pub fn token(&self) -> TokenId {
        self.token
    }
    pub fn logged_in(&self) -> Option<UserKind> {
        self.master.as_ref().map(|m| m.who)
    }
    /// Whether these keys include the master key (a login opened them).
    pub fn has_master(&self) -> bool {
        self.master.is_some()
    }

    pub(super) fn master(&self) -> Result<&MasterKeys> {
        self.master.as_ref().ok_or(StoreError::NotLoggedIn)
    }
    pub(crate) fn header_key(&self) -> &Key32 {
        &self.header
    }

    /// The index keys these keys hold, with the visibility each blinds.
    pub(crate) fn index_keys(&self) -> Vec<(&Key32, Visibility)> {
        let mut v = vec![(&self.public_index, Visibility::Public)];
        if let Some(m) = &self.master {
            v.push((&m.private_index, Visibility::Private));
        }
        v
    }
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenKeys({:?}, logged in: {:?})",
            self.token,
            self.logged_in()
        )
    }
}

impl Store {
    /// Creates a token with a new master key wrapped under the SO PIN (and the user PIN
    /// when given).
    pub fn init_token(&self, spec: TokenSpec) -> Result<TokenId> {
        spec.kdf.validate()?;
        check_pin_len(&spec.pin_policy, &spec.so_pin)?;
        if let Some(p) = &spec.user_pin {
            check_pin_len(&spec.pin_policy, p)?;
        }
        let _g = self.lock();
        let next = match self.kv.get(Cf::Meta, keys::meta::NEXT_TOKEN)? {
            Some(v) => u32_from(&v, "meta/next_token")?,
            None => 1,
        };
        let token = TokenId(next);
        let master = Key32::random()?;
        let public_key = Key32::random()?;
        let so = self.make_pin_slot(token, UserKind::So, &spec.kdf, &spec.so_pin, &master)?;
        let user = match &spec.user_pin {
            Some(p) => Some(self.make_pin_slot(token, UserKind::User, &spec.kdf, p, &master)?),
            None => None,
        };
        let mut serial_bytes = [0u8; 8];
        crypto::fill_random(&mut serial_bytes)?;
        let rec = TokenRecord {
            label: spec.label,
            serial: hex::encode(serial_bytes),
            created_at: super::now(),
            kdf: spec.kdf,
            pin_policy: spec.pin_policy,
            public_key: public_key.expose().to_vec(),
            so,
            user,
            generation: 1,
        };
        let mut b = Batch::new();
        b.put(
            Cf::Meta,
            keys::meta::NEXT_TOKEN.to_vec(),
            (next + 1).to_be_bytes().to_vec(),
        );
        b.put(Cf::Meta, keys::meta::token(token), records::encode(&rec));
        b.put(
            Cf::Meta,
            keys::meta::next_object(token),
            1u64.to_be_bytes().to_vec(),
        );
        b.put(
            Cf::Meta,
            keys::meta::pin_failures(token, UserKind::So),
            0u32.to_be_bytes().to_vec(),
        );
        b.put(
            Cf::Meta,
            keys::meta::pin_failures(token, UserKind::User),
            0u32.to_be_bytes().to_vec(),
        );
        let keys = self.keys_from(token, &rec, Some((UserKind::So, master)))?;
        self.write_audited_checkpointed(&keys, b, vec![Event::new("token.init")])?;
        Ok(token)
    }

    fn make_pin_slot(
        &self,
        token: TokenId,
        who: UserKind,
        kdf: &KdfParams,
        pin: &SecretString,
        master: &Key32,
    ) -> Result<PinSlot> {
        let mut salt = vec![0u8; 16];
        crypto::fill_random(&mut salt)?;
        let kek = crypto::pin_key(kdf, &salt, pin.expose().as_bytes())?;
        let wrapped_master = crypto::wrap(&kek, &self.master_aad(token, who), master)?;
        Ok(PinSlot {
            salt,
            wrapped_master,
        })
    }

    fn master_aad(&self, token: TokenId, who: UserKind) -> Vec<u8> {
        aad(
            Purpose::WrapMasterKey,
            &self.store_id,
            &[token.0 as u64, who.code() as u64],
        )
    }

    fn token_record(&self, token: TokenId) -> Result<TokenRecord> {
        let raw = self
            .kv
            .get(Cf::Meta, &keys::meta::token(token))?
            .ok_or(StoreError::TokenNotFound(token))?;
        records::decode(&raw, || format!("meta/token/{token}"))
    }

    /// Every token of the store, in id order.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let mut out = Vec::new();
        for (k, _) in collect_prefix(self.kv.as_ref(), Cf::Meta, &keys::meta::token_prefix())? {
            if let Some(t) = keys::meta::decode_token(&k) {
                out.push(self.token_info(t)?);
            }
        }
        Ok(out)
    }

    pub fn token_info(&self, token: TokenId) -> Result<TokenInfo> {
        let rec = self.token_record(token)?;
        Ok(TokenInfo {
            id: token,
            label: rec.label.clone(),
            serial: rec.serial.clone(),
            created_at: rec.created_at,
            user_pin_initialized: rec.user.is_some(),
            so_failures: self.pin_failures(token, UserKind::So)?,
            user_failures: self.pin_failures(token, UserKind::User)?,
            pin_policy: rec.pin_policy,
            kdf: rec.kdf,
        })
    }

    pub fn pin_failures(&self, token: TokenId, who: UserKind) -> Result<u32> {
        match self
            .kv
            .get(Cf::Meta, &keys::meta::pin_failures(token, who))?
        {
            Some(v) => u32_from(&v, "meta/pin_failures"),
            None => Ok(0),
        }
    }

    /// The keys anyone has: enough for public objects and their indexes.
    pub fn public_access(&self, token: TokenId) -> Result<TokenKeys> {
        let rec = self.token_record(token)?;
        self.keys_from(token, &rec, None)
    }

    fn keys_from(
        &self,
        token: TokenId,
        rec: &TokenRecord,
        master: Option<(UserKind, Key32)>,
    ) -> Result<TokenKeys> {
        let public = Key32::from_bytes(&rec.public_key)?;
        Ok(TokenKeys {
            token,
            generation: rec.generation,
            header: public.derive(b"header"),
            public_index: public.derive(b"public-index"),
            public_wrap: public.derive(b"public-wrap"),
            master: master.map(|(who, raw)| MasterKeys {
                who,
                private_index: raw.derive(b"private-index"),
                wrap: raw.derive(b"object-wrap"),
                binding: raw.derive(b"header-binding"),
                raw,
            }),
        })
    }

    /// Checks a PIN. The failure counter is raised durably *before* the PIN is tried, and
    /// cleared only after it proved right, so killing the process mid-check never grants
    /// a free guess.
    pub fn login(&self, token: TokenId, who: UserKind, pin: &SecretString) -> Result<TokenKeys> {
        let rec = self.token_record(token)?;
        let (master, rec) = self.verify_pin(token, who, pin, rec, PinCheck::Login)?;
        self.keys_from(token, &rec, Some((who, master)))
    }

    fn verify_pin(
        &self,
        token: TokenId,
        who: UserKind,
        pin: &SecretString,
        rec: TokenRecord,
        check: PinCheck,
    ) -> Result<(Key32, TokenRecord)> {
        check_pin_len(&rec.pin_policy, pin)?;
        // A crafted cost is refused before the counter moves: it is no guess.
        rec.kdf.check().map_err(|e| {
            StoreError::corruption(
                format!("token record meta/token/{token}"),
                format!("refused KDF parameters: {e}"),
            )
        })?;
        let slot = pin_slot(&rec, who)?;
        let max = rec.pin_policy.max_failures;
        let failures = self
            .begin_pin_attempt(token, who, max)
            .inspect_err(|e| self.record_pin_refusal(token, who, check, e))?;
        // Whatever happens to this attempt, it leaves the in-flight count: an attempt that
        // never did would keep every later one waiting at the limit.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(master) = self.pin_cache.lookup(token, who, &slot, pin) {
                return Ok(master);
            }
            let master = self.unwrap_master(token, who, &rec.kdf, &slot, pin);
            match &master {
                Ok(m) => self.pin_cache.remember(token, who, &slot, pin, m),
                Err(_) => self.pin_cache.derived(),
            }
            master
        }));
        let master = self.end_pin_attempt(token, who, outcome, failures, max, check)?;
        Ok((master, rec))
    }

    /// Counts an attempt before it is tried: raises the durable failure counter and the
    /// in-flight count, and returns the raised counter. Refuses a locked PIN.
    fn begin_pin_attempt(&self, token: TokenId, who: UserKind, max: u32) -> Result<u32> {
        let counter_key = keys::meta::pin_failures(token, who);
        // The durable counter holds the failures and the attempts still being checked
        // (each raised it before it started), so no more than `max` wrong PINs are ever
        // tried, however many arrive at once. When the counter is at the limit but some
        // of it is attempts in flight, this one waits for them: one of them may be right
        // and clear the count, and concurrent logins with the right PIN must not lock
        // each other out.
        loop {
            let g = self.lock();
            let failures = self.pin_failures(token, who)?;
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let mine = *inflight.get(&(token, who)).unwrap_or(&0);
            if max > 0 && failures >= max {
                if mine == 0 {
                    return Err(StoreError::PinLocked);
                }
                drop(g);
                let (inflight, _) = self
                    .inflight_done
                    .wait_timeout(inflight, std::time::Duration::from_millis(200))
                    .unwrap_or_else(|p| p.into_inner());
                drop(inflight);
                continue;
            }
            let mut b = Batch::new();
            b.put(Cf::Meta, counter_key, (failures + 1).to_be_bytes().to_vec());
            self.kv.write(b)?;
            *inflight.entry((token, who)).or_insert(0) += 1;
            return Ok(failures + 1);
        }
    }

    /// Ends an attempt that [`Store::begin_pin_attempt`] counted: leaves the in-flight
    /// count, clears the failures on success, and wakes attempts waiting at the limit.
    /// A panic during the check is passed on after that.
    fn end_pin_attempt(
        &self,
        token: TokenId,
        who: UserKind,
        outcome: std::thread::Result<Result<Key32>>,
        failures: u32,
        max: u32,
        check: PinCheck,
    ) -> Result<Key32> {
        let g = self.lock();
        let others = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let mine = inflight.entry((token, who)).or_insert(1);
            *mine = mine.saturating_sub(1);
            *mine
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                drop(g);
                self.inflight_done.notify_all();
                std::panic::resume_unwind(panic);
            }
        };
        let answer = match outcome {
            Ok(master) => {
                // A success clears the failures, but not the attempts still in flight:
                // each of those stays counted until it proves right.
                let mut b = Batch::new();
                b.put(
                    Cf::Meta,
                    keys::meta::pin_failures(token, who),
                    others.to_be_bytes().to_vec(),
                );
                let events = match check {
                    PinCheck::Login => vec![check.event(who)],
                    // The change it guards is the record.
                    _ => Vec::new(),
                };
                self.write_audited(token, None, b, events).map(|()| master)
            }
            // The attempt that reaches the limit is still answered "incorrect"; the
            // next one, right PIN or not, is refused as locked.
            Err(StoreError::Tampered { .. }) => Err(StoreError::PinIncorrect { failures, max }),
            Err(e) => Err(e),
        };
        if let Err(e) = &answer {
            self.record_pin_refusal(token, who, check, e);
        }
        drop(g);
        self.inflight_done.notify_all();
        answer
    }

    /// The master key from one PIN slot: `Tampered` when the PIN is wrong.
    fn unwrap_master(
        &self,
        token: TokenId,
        who: UserKind,
        kdf: &KdfParams,
        slot: &PinSlot,
        pin: &SecretString,
    ) -> Result<Key32> {
        crypto::pin_key(kdf, &slot.salt, pin.expose().as_bytes()).and_then(|kek| {
            crypto::unwrap(
                &kek,
                &self.master_aad(token, who),
                &slot.wrapped_master,
                String::new,
            )
        })
    }

    /// Checks a PIN on a store opened read-only (offline inspection). A locked PIN is
    /// refused as always, but a failure cannot be counted: nothing is written. This gives
    /// nothing away — whoever can open the files read-only can copy them and guess offline.
    pub fn login_read_only(
        &self,
        token: TokenId,
        who: UserKind,
        pin: &SecretString,
    ) -> Result<TokenKeys> {
        let rec = self.token_record(token)?;
        check_pin_len(&rec.pin_policy, pin)?;
        let slot = pin_slot(&rec, who)?;
        let max = rec.pin_policy.max_failures;
        let failures = self.pin_failures(token, who)?;
        if max > 0 && failures >= max {
            return Err(StoreError::PinLocked);
        }
        match self.unwrap_master(token, who, &rec.kdf, &slot, pin) {
            Ok(master) => self.keys_from(token, &rec, Some((who, master))),
            Err(StoreError::Tampered { .. }) => Err(StoreError::PinIncorrect { failures, max }),
            Err(e) => Err(e),
        }
    }

    /// Sets (or resets) the user PIN with the SO's keys; clears the user's lockout.
    pub fn init_user_pin(&self, keys: &TokenKeys, new_pin: &SecretString) -> Result<()> {
        let m = keys.master()?;
        if m.who != UserKind::So {
            return Err(StoreError::Invalid(
                "only the security officer sets the user PIN".into(),
            ));
        }
        let rec = self.token_record(keys.token)?;
        check_pin_len(&rec.pin_policy, new_pin)?;
        let slot = self.make_pin_slot(keys.token, UserKind::User, &rec.kdf, new_pin, &m.raw)?;
        // Read again under the lock: a PIN change that ran meanwhile (the SO's own, say)
        // stays; only the user's slot is replaced.
        let _g = self.lock();
        let mut rec = self.token_record(keys.token)?;
        rec.user = Some(slot);
        let mut b = Batch::new();
        b.put(
            Cf::Meta,
            keys::meta::token(keys.token),
            records::encode(&rec),
        );
        b.put(
            Cf::Meta,
            keys::meta::pin_failures(keys.token, UserKind::User),
            0u32.to_be_bytes().to_vec(),
        );
        self.pin_cache.forget(keys.token);
        self.write_audited(keys.token, Some(keys), b, vec![Event::new("pin.init")])
    }

    /// Changes a PIN after checking the old one: re-wraps the master key, nothing else.
    pub fn change_pin(
        &self,
        token: TokenId,
        who: UserKind,
        old: &SecretString,
        new: &SecretString,
    ) -> Result<()> {
        let rec = self.token_record(token)?;
        check_pin_len(&rec.pin_policy, new)?;
        let (master, rec) = self.verify_pin(token, who, old, rec, PinCheck::Change)?;
        let slot = self.make_pin_slot(token, who, &rec.kdf, new, &master)?;
        // Read again under the lock, so a `C_InitPIN` that ran meanwhile is not undone.
        let _g = self.lock();
        let mut rec = self.token_record(token)?;
        match who {
            UserKind::So => rec.so = slot,
            UserKind::User => rec.user = Some(slot),
        }
        let mut b = Batch::new();
        b.put(Cf::Meta, keys::meta::token(token), records::encode(&rec));
        self.pin_cache.forget(token);
        let keys = self.keys_from(token, &rec, Some((who, master)))?;
        self.write_audited(token, Some(&keys), b, vec![PinCheck::Change.event(who)])
    }

    /// `C_InitToken` on an existing token: checks the SO PIN, destroys every object, makes
    /// a new master key (the old one and everything under it is gone), and leaves the
    /// user PIN uninitialised.
    pub fn reinit_token(&self, token: TokenId, so_pin: &SecretString, label: String) -> Result<()> {
        let rec = self.token_record(token)?;
        let (old_master, _) =
            self.verify_pin(token, UserKind::So, so_pin, rec, PinCheck::Reinit)?;
        let _g = self.lock();
        self.pin_cache.forget(token);
        let mut rec = self.token_record(token)?;
        // The old generation's audit key signs the log up to and including this record;
        // the new generation's key takes over at the next checkpoint.
        let old_keys = self.keys_from(token, &rec, Some((UserKind::So, old_master)))?;
        let master = Key32::random()?;
        let public_key = Key32::random()?;
        rec.so = self.make_pin_slot(token, UserKind::So, &rec.kdf, so_pin, &master)?;
        rec.user = None;
        rec.label = label;
        rec.public_key = public_key.expose().to_vec();
        rec.generation += 1;
        let mut b = Batch::new();
        let prefix = keys::token_prefix(token);
        for cf in [Cf::Objects, Cf::Attributes, Cf::Versions]
            .into_iter()
            .chain(Cf::INDEXES)
        {
            self.kv.scan_prefix(cf, &prefix, &mut |k, _| {
                b.delete(cf, k.to_vec());
                Ok(Flow::Continue)
            })?;
        }
        self.stage_ring_wipe(&mut b, token)?;
        self.stage_quorum_wipe(&mut b, token)?;
        b.put(Cf::Meta, keys::meta::token(token), records::encode(&rec));
        b.put(
            Cf::Meta,
            keys::meta::pin_failures(token, UserKind::User),
            0u32.to_be_bytes().to_vec(),
        );
        self.write_audited_checkpointed(&old_keys, b, vec![Event::new("token.reinit")])?;
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| vec![0xff; 5]);
        let ranges: Vec<_> = [Cf::Objects, Cf::Attributes, Cf::Versions]
            .into_iter()
            .chain(Cf::INDEXES)
            .map(|cf| PurgeRange {
                cf,
                start: prefix.clone(),
                end: end.clone(),
            })
            .collect();
        self.kv.purge(&ranges)
    }
}

/// What a PIN check is for: its audit records say so.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PinCheck {
    Login,
    Change,
    Reinit,
}

impl PinCheck {
    fn event(self, who: UserKind) -> Event {
        let op = match (self, who) {
            (PinCheck::Login, UserKind::So) => "login.so",
            (PinCheck::Login, UserKind::User) => "login.user",
            (PinCheck::Change, UserKind::So) => "pin.change.so",
            (PinCheck::Change, UserKind::User) => "pin.change.user",
            (PinCheck::Reinit, _) => "token.reinit",
        };
        Event::new(op)
    }
}

impl Store {
    /// Records a refused PIN check (wrong or locked PIN); other errors are not the
    /// caller's attempt and are logged where they happen.
    fn record_pin_refusal(&self, token: TokenId, who: UserKind, check: PinCheck, e: &StoreError) {
        let ckr = match e {
            StoreError::PinIncorrect { .. } => ckr::PIN_INCORRECT,
            StoreError::PinLocked => ckr::PIN_LOCKED,
            _ => return,
        };
        if let Err(e) = self.audit_alone(token, None, check.event(who).result(ckr)) {
            tracing::error!(
                token = token.0,
                "the refused PIN check is not recorded: {e}"
            );
        }
    }
}

/// The PIN slot of `who`: the SO's always, the user's once the user PIN is set.
fn pin_slot(rec: &TokenRecord, who: UserKind) -> Result<PinSlot> {
    match who {
        UserKind::So => Ok(rec.so.clone()),
        UserKind::User => rec.user.clone().ok_or(StoreError::UserPinNotInitialized),
    }
}

fn check_pin_len(p: &PinPolicy, pin: &SecretString) -> Result<()> {
    let n = pin.expose().chars().count() as u32;
    if n < p.min_len || n > p.max_len {
        return Err(StoreError::PinLenRange {
            min: p.min_len,
            max: p.max_len,
        });
    }
    Ok(())
}
