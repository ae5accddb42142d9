//! The object store: tokens, PINs, sealed objects with versions, and their indexes.
//! Every logical operation is one batch, written durably before it returns.

use crate::backend::mem::MemBackend;
use crate::backend::rocks::{OpenMode, RocksBackend};
use crate::backend::{Batch, Flow, KvBackend, PurgeRange, collect_prefix};
use crate::cf::Cf;
use crate::crypto::{self, KdfParams, Key32, Purpose, aad};
use crate::error::{Result, StoreError};
use crate::keys::{self, Visibility};
use crate::migrate;
use crate::records::{
    self, AttributesBody, ObjectHeader, PinPolicy, PinSlot, TokenRecord, VersionCause,
    VersionRecord,
};
use hsm_types::policy;
use hsm_types::{
    AttributeSet, KeyType, MechanismType, ObjectClass, ObjectId, SecretString, TokenId, UserKind,
    VersionNo,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use zeroize::Zeroize;

/// A store: one backend holding one or more tokens.
pub struct Store {
    kv: Box<dyn KvBackend>,
    store_id: [u8; 16],
    schema_version: u32,
    // Serialises read-modify-write operations (id allocation, version bumps, counters).
    write_lock: Mutex<()>,
    // PIN checks in progress per token and user (see `verify_pin`), and the signal that
    // one of them ended.
    inflight: Mutex<std::collections::HashMap<(TokenId, UserKind), u32>>,
    inflight_done: std::sync::Condvar,
}

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
    token: TokenId,
    generation: u32,
    header: Key32,
    public_index: Key32,
    public_wrap: Key32,
    master: Option<MasterKeys>,
}

struct MasterKeys {
    who: UserKind,
    raw: Key32,
    private_index: Key32,
    wrap: Key32,
    /// Binds object headers and their current records (`ObjectHeader::binding`).
    binding: Key32,
}

impl TokenKeys {
    pub fn token(&self) -> TokenId {
        self.token
    }
    pub fn logged_in(&self) -> Option<UserKind> {
        self.master.as_ref().map(|m| m.who)
    }
    fn master(&self) -> Result<&MasterKeys> {
        self.master.as_ref().ok_or(StoreError::NotLoggedIn)
    }
    pub(crate) fn header_key(&self) -> &Key32 {
        &self.header
    }
    pub(crate) fn public_index_key(&self) -> &Key32 {
        &self.public_index
    }
    pub(crate) fn private_index_key(&self) -> Option<&Key32> {
        self.master.as_ref().map(|m| &m.private_index)
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

/// An object as read from the store.
#[derive(Debug)]
pub struct StoredObject {
    pub id: ObjectId,
    pub version: VersionNo,
    pub private: bool,
    pub attrs: AttributeSet,
    /// True when the object holds key material this caller could not unseal (a public
    /// object read without the master key).
    pub secrets_withheld: bool,
}

/// One entry of an object's history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    pub version: VersionNo,
    pub created_at: u64,
    pub parent: Option<VersionNo>,
    pub cause: VersionCause,
    pub current: bool,
}

/// A lookup through the indexes. Every given field must match; an empty query lists
/// every visible object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub class: Option<ObjectClass>,
    pub label: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
    pub key_type: Option<KeyType>,
    pub mechanism: Option<MechanismType>,
}

impl Query {
    pub fn is_empty(&self) -> bool {
        self.class.is_none()
            && self.label.is_none()
            && self.id.is_none()
            && self.key_type.is_none()
            && self.mechanism.is_none()
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The first family (in [`Cf::ALL`] order) that holds any record: what tells a damaged
/// store from a new one in [`Store::open`]. Stops at the first record.
fn first_family_with_records(kv: &dyn KvBackend) -> Result<Option<Cf>> {
    for cf in Cf::ALL {
        let mut found = false;
        kv.scan_prefix(cf, &[], &mut |_, _| {
            found = true;
            Ok(Flow::Stop)
        })?;
        if found {
            return Ok(Some(cf));
        }
    }
    Ok(None)
}

impl Store {
    /// Opens (creating if absent) the RocksDB store in `dir` as its one writer.
    pub fn open_dir(dir: &Path) -> Result<Store> {
        Store::open(Box::new(RocksBackend::open(dir, OpenMode::ReadWrite)?))
    }

    /// Opens an existing store without writing to it and without taking its lock.
    pub fn open_dir_read_only(dir: &Path) -> Result<Store> {
        Store::open(Box::new(RocksBackend::open(dir, OpenMode::ReadOnly)?))
    }

    /// A fresh store in memory.
    pub fn open_memory() -> Result<Store> {
        Store::open(Box::new(MemBackend::new()))
    }

    /// Opens a store over any backend: initialises an empty one, migrates an older one,
    /// refuses a newer one, and refuses a damaged one rather than guessing.
    pub fn open(kv: Box<dyn KvBackend>) -> Result<Store> {
        let version = match migrate::stored_version(kv.as_ref())? {
            None => {
                // No schema version: a new store, or one that lost its `meta` records.
                // Only a backend without a single record is new. Initialising over records
                // would give them a fresh store id, which every sealed record's AAD binds:
                // they would all fail as tampered, and the damage would look like an attack
                // instead of the lost record it is.
                if let Some(cf) = first_family_with_records(kv.as_ref())? {
                    return Err(StoreError::corruption(
                        "meta/schema_version",
                        format!(
                            "the schema version record is missing, but the store holds \
                             records (in `{}`): refusing to initialise a new store over them; \
                             restore the store from a backup",
                            cf.name()
                        ),
                    ));
                }
                if kv.read_only() {
                    return Err(StoreError::NotAStore);
                }
                let mut id = [0u8; 16];
                crypto::fill_random(&mut id)?;
                let mut b = Batch::new();
                b.put(
                    Cf::Meta,
                    keys::meta::SCHEMA_VERSION.to_vec(),
                    migrate::CURRENT.to_be_bytes().to_vec(),
                );
                b.put(Cf::Meta, keys::meta::STORE_ID.to_vec(), id.to_vec());
                kv.write(b)?;
                migrate::CURRENT
            }
            Some(v) => {
                if v > migrate::CURRENT {
                    return Err(StoreError::SchemaTooNew {
                        found: v,
                        supported: migrate::CURRENT,
                    });
                }
                if v < migrate::CURRENT {
                    if v <= migrate::NEEDS_SO_PIN_FROM {
                        return Err(StoreError::Migration {
                            from: v,
                            to: migrate::CURRENT,
                            reason: migrate::SO_PIN_NEEDED.into(),
                        });
                    }
                    if kv.read_only() {
                        return Err(StoreError::Migration {
                            from: v,
                            to: migrate::CURRENT,
                            reason: "store is opened read-only; open it read-write once to migrate"
                                .into(),
                        });
                    }
                    migrate::run(kv.as_ref(), v)?;
                }
                migrate::CURRENT
            }
        };
        Store::assemble(kv, version)
    }

    /// Upgrades a schema-1 store to this build's schema: checks `so_pin` against every
    /// token (each check counted like a login), binds every object header to its token's
    /// master key, and writes the bindings and the new version in one durable batch (then
    /// runs any later steps). An object that does not authenticate, a header put back from
    /// an earlier state, or a token that refuses the PIN stops it with nothing written.
    /// Returns the store and how many headers were bound.
    pub fn upgrade_with_so_pin(
        kv: Box<dyn KvBackend>,
        so_pin: &SecretString,
    ) -> Result<(Store, usize)> {
        match migrate::stored_version(kv.as_ref())? {
            Some(v) if v == migrate::NEEDS_SO_PIN_FROM => {}
            Some(_) => return Ok((Store::open(kv)?, 0)),
            None => return Err(StoreError::NotAStore),
        }
        if kv.read_only() {
            return Err(StoreError::Invalid(
                "the upgrade writes: open the store read-write".into(),
            ));
        }
        let mut store = Store::assemble(kv, migrate::NEEDS_SO_PIN_FROM)?;
        let mut b = Batch::new();
        let mut bound = 0;
        for t in store.tokens()? {
            bound +=
                store
                    .stage_bindings(&mut b, t.id, so_pin)
                    .map_err(|e| StoreError::Migration {
                        from: migrate::NEEDS_SO_PIN_FROM,
                        to: migrate::NEEDS_SO_PIN_FROM + 1,
                        reason: format!("token {}: {e}", t.id),
                    })?;
        }
        let next = migrate::NEEDS_SO_PIN_FROM + 1;
        b.put(
            Cf::Meta,
            keys::meta::SCHEMA_VERSION.to_vec(),
            next.to_be_bytes().to_vec(),
        );
        store.kv.write(b)?;
        tracing::info!(from = next - 1, to = next, bound, "store migrated");
        if next < migrate::CURRENT {
            migrate::run(store.kv.as_ref(), next)?;
        }
        store.schema_version = migrate::CURRENT;
        Ok((store, bound))
    }

    /// The store over a backend whose schema is `version`.
    fn assemble(kv: Box<dyn KvBackend>, version: u32) -> Result<Store> {
        // A schema version without a store id is damage too: the id cannot be made again,
        // because every sealed record is bound to the one that is lost.
        let id = kv.get(Cf::Meta, keys::meta::STORE_ID)?.ok_or_else(|| {
            StoreError::corruption(
                "meta/store_id",
                "the store id record is missing: every sealed record is bound to it, so \
                 none can be opened; restore the store from a backup",
            )
        })?;
        let store_id: [u8; 16] = id
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::corruption("meta/store_id", "not 16 bytes"))?;
        Ok(Store {
            kv,
            store_id,
            schema_version: version,
            write_lock: Mutex::new(()),
            inflight: Mutex::new(std::collections::HashMap::new()),
            inflight_done: std::sync::Condvar::new(),
        })
    }

    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }
    pub fn store_id_hex(&self) -> String {
        self.store_id.iter().map(|b| format!("{b:02x}")).collect()
    }
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }
    pub fn backend(&self) -> &dyn KvBackend {
        self.kv.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---------------------------------------------------------------- tokens and PINs

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
            serial: serial_bytes.iter().map(|b| format!("{b:02x}")).collect(),
            created_at: now(),
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
        self.kv.write(b)?;
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
        let (master, rec) = self.verify_pin(token, who, pin, rec)?;
        self.keys_from(token, &rec, Some((who, master)))
    }

    fn verify_pin(
        &self,
        token: TokenId,
        who: UserKind,
        pin: &SecretString,
        rec: TokenRecord,
    ) -> Result<(Key32, TokenRecord)> {
        check_pin_len(&rec.pin_policy, pin)?;
        // A crafted cost is refused before the counter moves: it is no guess.
        rec.kdf.check().map_err(|e| {
            StoreError::corruption(
                format!("token record meta/token/{token}"),
                format!("refused KDF parameters: {e}"),
            )
        })?;
        let slot = match who {
            UserKind::So => rec.so.clone(),
            UserKind::User => rec.user.clone().ok_or(StoreError::UserPinNotInitialized)?,
        };
        let max = rec.pin_policy.max_failures;
        let counter_key = keys::meta::pin_failures(token, who);
        // The durable counter holds the failures and the attempts still being checked
        // (each raised it before it started), so no more than `max` wrong PINs are ever
        // tried, however many arrive at once. When the counter is at the limit but some
        // of it is attempts in flight, this one waits for them: one of them may be right
        // and clear the count, and concurrent logins with the right PIN must not lock
        // each other out.
        let failures = loop {
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
            b.put(
                Cf::Meta,
                counter_key.clone(),
                (failures + 1).to_be_bytes().to_vec(),
            );
            self.kv.write(b)?;
            *inflight.entry((token, who)).or_insert(0) += 1;
            break failures + 1;
        };
        // Whatever happens to this attempt, it leaves the in-flight count: an attempt that
        // never did would keep every later one waiting at the limit.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crypto::pin_key(&rec.kdf, &slot.salt, pin.expose().as_bytes()).and_then(|kek| {
                crypto::unwrap(
                    &kek,
                    &self.master_aad(token, who),
                    &slot.wrapped_master,
                    String::new,
                )
            })
        }));
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
                b.put(Cf::Meta, counter_key, others.to_be_bytes().to_vec());
                self.kv.write(b).map(|()| (master, rec))
            }
            // The attempt that reaches the limit is still answered "incorrect"; the
            // next one, right PIN or not, is refused as locked.
            Err(StoreError::Tampered { .. }) => Err(StoreError::PinIncorrect { failures, max }),
            Err(e) => Err(e),
        };
        drop(g);
        self.inflight_done.notify_all();
        answer
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
        let slot = match who {
            UserKind::So => rec.so.clone(),
            UserKind::User => rec.user.clone().ok_or(StoreError::UserPinNotInitialized)?,
        };
        let max = rec.pin_policy.max_failures;
        let failures = self.pin_failures(token, who)?;
        if max > 0 && failures >= max {
            return Err(StoreError::PinLocked);
        }
        let kek = crypto::pin_key(&rec.kdf, &slot.salt, pin.expose().as_bytes())?;
        match crypto::unwrap(
            &kek,
            &self.master_aad(token, who),
            &slot.wrapped_master,
            String::new,
        ) {
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
        self.kv.write(b)
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
        let (master, rec) = self.verify_pin(token, who, old, rec)?;
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
        self.kv.write(b)
    }

    /// `C_InitToken` on an existing token: checks the SO PIN, destroys every object, makes
    /// a new master key (the old one and everything under it is gone), and leaves the
    /// user PIN uninitialised.
    pub fn reinit_token(&self, token: TokenId, so_pin: &SecretString, label: String) -> Result<()> {
        let rec = self.token_record(token)?;
        self.verify_pin(token, UserKind::So, so_pin, rec)?;
        let _g = self.lock();
        let mut rec = self.token_record(token)?;
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
        b.put(Cf::Meta, keys::meta::token(token), records::encode(&rec));
        b.put(
            Cf::Meta,
            keys::meta::pin_failures(token, UserKind::User),
            0u32.to_be_bytes().to_vec(),
        );
        self.kv.write(b)?;
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

    // ---------------------------------------------------------------- objects

    pub(crate) fn header_aad(&self, keys: &TokenKeys, o: ObjectId) -> Vec<u8> {
        aad(
            Purpose::Header,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0],
        )
    }
    pub(crate) fn version_aad(&self, keys: &TokenKeys, o: ObjectId, v: VersionNo) -> Vec<u8> {
        aad(
            Purpose::Version,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0, v.0 as u64],
        )
    }
    fn attrs_aad(&self, keys: &TokenKeys, o: ObjectId, v: VersionNo) -> Vec<u8> {
        aad(
            Purpose::Attributes,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0, v.0 as u64],
        )
    }
    fn secrets_aad(&self, keys: &TokenKeys, o: ObjectId, v: VersionNo) -> Vec<u8> {
        aad(
            Purpose::Secrets,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0, v.0 as u64],
        )
    }
    fn wrap_aad(&self, purpose: Purpose, keys: &TokenKeys, o: ObjectId) -> Vec<u8> {
        aad(
            purpose,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0],
        )
    }

    /// Creates an object (version 1) with its indexes in one durable batch.
    pub fn create_object(&self, keys: &TokenKeys, attrs: AttributeSet) -> Result<ObjectId> {
        let ids = self.create_objects(keys, vec![attrs])?;
        Ok(ids[0])
    }

    /// Creates many objects in one durable batch: all or none (imports, migrations).
    pub fn create_objects(
        &self,
        keys: &TokenKeys,
        objects: Vec<AttributeSet>,
    ) -> Result<Vec<ObjectId>> {
        for attrs in &objects {
            if (attrs.is_private() || policy::has_secrets(attrs)) && keys.master.is_none() {
                return Err(StoreError::NotLoggedIn);
            }
        }
        let _g = self.lock();
        let next_key = keys::meta::next_object(keys.token);
        let first = match self.kv.get(Cf::Meta, &next_key)? {
            Some(v) => u64_from(&v, "meta/next_object")?,
            None => return Err(StoreError::TokenNotFound(keys.token)),
        };
        let mut b = Batch::new();
        let mut ids = Vec::with_capacity(objects.len());
        for (i, attrs) in objects.iter().enumerate() {
            let id = ObjectId(first + i as u64);
            self.stage_create(&mut b, keys, id, attrs)?;
            ids.push(id);
        }
        b.put(
            Cf::Meta,
            next_key,
            (first + objects.len() as u64).to_be_bytes().to_vec(),
        );
        self.kv.write(b)?;
        Ok(ids)
    }

    fn stage_create(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        id: ObjectId,
        attrs: &AttributeSet,
    ) -> Result<()> {
        let private = attrs.is_private();
        let secrets = policy::has_secrets(attrs);
        let object_key = Key32::random()?;
        let (wrapped_object_key, secret_key, wrapped_secret_key) = if private {
            (
                crypto::wrap(
                    &keys.master()?.wrap,
                    &self.wrap_aad(Purpose::WrapObjectKey, keys, id),
                    &object_key,
                )?,
                None,
                None,
            )
        } else {
            let wok = crypto::wrap(
                &keys.public_wrap,
                &self.wrap_aad(Purpose::WrapObjectKey, keys, id),
                &object_key,
            )?;
            if secrets {
                let sk = Key32::random()?;
                let wsk = crypto::wrap(
                    &keys.master()?.wrap,
                    &self.wrap_aad(Purpose::WrapSecretKey, keys, id),
                    &sk,
                )?;
                (wok, Some(sk), Some(wsk))
            } else {
                (wok, None, None)
            }
        };
        let mut header = ObjectHeader {
            private,
            current: 1,
            created_at: now(),
            wrapped_object_key,
            wrapped_secret_key,
            binding: None,
        };
        let v1 = VersionNo(1);
        let record = self.seal_attrs(keys, id, v1, &object_key, secret_key.as_ref(), attrs)?;
        header.binding = self.bind_header(keys, id, &header, &record, attrs)?;
        b.put(
            Cf::Objects,
            keys::object(keys.token, id),
            crypto::seal(
                &keys.header,
                &self.header_aad(keys, id),
                &records::encode(&header),
            )?,
        );
        let vrec = VersionRecord {
            created_at: header.created_at,
            parent: None,
            cause: VersionCause::Created,
        };
        b.put(
            Cf::Versions,
            keys::version(keys.token, id, v1),
            crypto::seal(
                &keys.header,
                &self.version_aad(keys, id, v1),
                &records::encode(&vrec),
            )?,
        );
        b.put(Cf::Attributes, keys::version(keys.token, id, v1), record);
        for (cf, k) in self.index_entries(keys, id, private, attrs)? {
            b.put(cf, k, Vec::new());
        }
        Ok(())
    }

    fn seal_attrs(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
        object_key: &Key32,
        secret_key: Option<&Key32>,
        attrs: &AttributeSet,
    ) -> Result<Vec<u8>> {
        let body = match secret_key {
            Some(sk) => {
                let mut public = attrs.clone();
                let class = public.class();
                let secret = public.split_off(|t| policy::is_secret(class, t));
                let mut enc = secret.encode();
                let sealed = crypto::seal(sk, &self.secrets_aad(keys, id, v), &enc)?;
                enc.zeroize();
                AttributesBody {
                    attrs: public.encode(),
                    secrets: Some(sealed),
                }
            }
            None => AttributesBody {
                attrs: attrs.encode(),
                secrets: None,
            },
        };
        let mut plain = records::encode(&body);
        let mut body = body;
        body.attrs.zeroize();
        let sealed = crypto::seal(object_key, &self.attrs_aad(keys, id, v), &plain);
        plain.zeroize();
        sealed
    }

    fn read_header(&self, keys: &TokenKeys, id: ObjectId) -> Result<ObjectHeader> {
        let raw = self
            .kv
            .get(Cf::Objects, &keys::object(keys.token, id))?
            .ok_or(StoreError::ObjectNotFound(keys.token, id))?;
        let loc = || format!("objects/{}/{}", keys.token, id);
        let plain = crypto::open(&keys.header, &self.header_aad(keys, id), &raw, loc)?;
        records::decode(&plain, loc)
    }

    fn object_keys(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
    ) -> Result<(Key32, Option<Key32>)> {
        let loc = || format!("objects/{}/{} (wrapped key)", keys.token, id);
        let ok = if h.private {
            crypto::unwrap(
                &keys.master()?.wrap,
                &self.wrap_aad(Purpose::WrapObjectKey, keys, id),
                &h.wrapped_object_key,
                loc,
            )?
        } else {
            crypto::unwrap(
                &keys.public_wrap,
                &self.wrap_aad(Purpose::WrapObjectKey, keys, id),
                &h.wrapped_object_key,
                loc,
            )?
        };
        let sk = match (&h.wrapped_secret_key, &keys.master) {
            (Some(w), Some(m)) => Some(crypto::unwrap(
                &m.wrap,
                &self.wrap_aad(Purpose::WrapSecretKey, keys, id),
                w,
                loc,
            )?),
            _ => None,
        };
        Ok((ok, sk))
    }

    /// The sealed attribute record of one version, as stored.
    fn attribute_record(&self, keys: &TokenKeys, id: ObjectId, v: VersionNo) -> Result<Vec<u8>> {
        self.kv
            .get(Cf::Attributes, &keys::version(keys.token, id, v))?
            .ok_or(StoreError::VersionNotFound(id, v))
    }

    #[allow(clippy::too_many_arguments)]
    fn read_attrs(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
        raw: &[u8],
        h: &ObjectHeader,
        ok: &Key32,
        sk: Option<&Key32>,
    ) -> Result<(AttributeSet, bool)> {
        let loc = || format!("attributes/{}/{}/{}", keys.token, id, v);
        let mut plain = crypto::open(ok, &self.attrs_aad(keys, id, v), raw, loc)?;
        let mut body: AttributesBody = records::decode(&plain, loc)?;
        plain.zeroize();
        let mut attrs =
            AttributeSet::decode(&body.attrs).map_err(|e| StoreError::corruption(loc(), e))?;
        body.attrs.zeroize();
        // Key material is always sealed apart (private objects: under the object key,
        // which the master key wraps). Key material among the readable attributes of a
        // public object was put there by someone writing the files.
        if !h.private && policy::has_secrets(&attrs) {
            return Err(StoreError::Tampered { location: loc() });
        }
        let mut withheld = false;
        match (&body.secrets, sk) {
            (Some(sealed), Some(sk)) => {
                let mut s = crypto::open(sk, &self.secrets_aad(keys, id, v), sealed, loc)?;
                let secret =
                    AttributeSet::decode(&s).map_err(|e| StoreError::corruption(loc(), e))?;
                s.zeroize();
                attrs.merge(secret);
            }
            (Some(_), None) => withheld = true,
            (None, _) => {}
        }
        Ok((attrs, withheld))
    }

    /// The binding MAC of a header over `record` (the current version's sealed
    /// attributes), when the caller holds the master key.
    fn header_mac(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
    ) -> Option<[u8; keys::DIGEST_LEN]> {
        let m = keys.master.as_ref()?;
        let mut unbound = h.clone();
        unbound.binding = None;
        let mut msg = self.wrap_aad(Purpose::HeaderBinding, keys, id);
        msg.extend_from_slice(&records::encode(&unbound));
        msg.extend_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, record).as_ref(),
        );
        Some(crypto::blind(&m.binding, BINDING_TAG, &msg))
    }

    /// The binding a header written now carries: one whenever the writer holds the
    /// master key. An object that must be bound (see [`must_be_bound`]) cannot be
    /// written without it.
    fn bind_header(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
        attrs: &AttributeSet,
    ) -> Result<Option<Vec<u8>>> {
        match self.header_mac(keys, id, h, record) {
            Some(mac) => Ok(Some(mac.to_vec())),
            None if must_be_bound(h, attrs) => Err(StoreError::NotLoggedIn),
            None => Ok(None),
        }
    }

    /// Checks what only the token can vouch for, when the caller holds the master key:
    /// the header's binding over the current record. An object that must be bound and is
    /// not, or whose binding does not verify, is refused as tampered. Without the master
    /// key nothing of a private object is readable and the key material of a public one
    /// stays sealed, so there is nothing such a caller could be misled into using.
    fn check_binding(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
        attrs: &AttributeSet,
    ) -> Result<()> {
        let Some(mac) = self.header_mac(keys, id, h, record) else {
            return Ok(());
        };
        // Schema 1 had no bindings; a schema-1 store is only ever opened to be upgraded
        // (which binds every header), so from schema 2 on a missing one is tampering.
        let ok = match &h.binding {
            Some(b) => aws_lc_rs::constant_time::verify_slices_are_equal(b, &mac).is_ok(),
            None => self.schema_version < 2 || !must_be_bound(h, attrs),
        };
        if ok {
            Ok(())
        } else {
            Err(StoreError::Tampered {
                location: format!("objects/{}/{} (binding)", keys.token, id),
            })
        }
    }

    /// What a read of the current version checks beyond the records' own AEADs: the header
    /// is not one put back from earlier, and its binding holds.
    fn check_current(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
        attrs: &AttributeSet,
    ) -> Result<()> {
        self.check_not_replayed(keys, id, h)?;
        self.check_binding(keys, id, h, record, attrs)
    }

    /// Refuses a header that points below the newest version: a header put back from an
    /// earlier state of the object.
    fn check_not_replayed(&self, keys: &TokenKeys, id: ObjectId, h: &ObjectHeader) -> Result<()> {
        let Some(next) = h.current.checked_add(1) else {
            return Ok(());
        };
        if self
            .kv
            .get(
                Cf::Versions,
                &keys::version(keys.token, id, VersionNo(next)),
            )?
            .is_some()
        {
            return Err(StoreError::Tampered {
                location: format!(
                    "objects/{}/{} (header names version {} but version {next} exists)",
                    keys.token, id, h.current
                ),
            });
        }
        Ok(())
    }

    /// The current version of an object. Private objects need the master key.
    pub fn read_object(&self, keys: &TokenKeys, id: ObjectId) -> Result<StoredObject> {
        let h = self.read_header(keys, id)?;
        self.read_at(keys, id, &h, VersionNo(h.current))
    }

    /// Any retained version of an object.
    pub fn read_version(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
    ) -> Result<StoredObject> {
        let h = self.read_header(keys, id)?;
        self.read_at(keys, id, &h, v)
    }

    fn read_at(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        v: VersionNo,
    ) -> Result<StoredObject> {
        if h.private && keys.master.is_none() {
            return Err(StoreError::NotLoggedIn);
        }
        let (ok, sk) = self.object_keys(keys, id, h)?;
        let raw = self.attribute_record(keys, id, v)?;
        let (attrs, secrets_withheld) = self.read_attrs(keys, id, v, &raw, h, &ok, sk.as_ref())?;
        if v.0 == h.current {
            self.check_current(keys, id, h, &raw, &attrs)?;
        }
        Ok(StoredObject {
            id,
            version: v,
            private: h.private,
            attrs,
            secrets_withheld,
        })
    }

    /// Whether an object is private, without unsealing it.
    pub fn is_private(&self, keys: &TokenKeys, id: ObjectId) -> Result<bool> {
        Ok(self.read_header(keys, id)?.private)
    }

    /// Replaces the attribute set: a new version, indexes moved in the same batch.
    /// `CKA_PRIVATE` is part of the object's identity and cannot change here.
    pub fn update_object(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        attrs: AttributeSet,
    ) -> Result<VersionNo> {
        let _g = self.lock();
        self.write_new_version(keys, id, attrs, |cur| {
            (VersionCause::AttributesChanged, Some(cur))
        })
    }

    /// Makes an earlier version current again by writing it as a new version (history is
    /// append-only, so a rollback is itself visible in the history).
    pub fn rollback(&self, keys: &TokenKeys, id: ObjectId, to: VersionNo) -> Result<VersionNo> {
        let _g = self.lock();
        let old = self.read_version(keys, id, to)?;
        self.write_new_version(keys, id, old.attrs, |_| {
            (VersionCause::RolledBack { from: to.0 }, Some(to.0))
        })
    }

    fn write_new_version(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        attrs: AttributeSet,
        cause: impl FnOnce(u32) -> (VersionCause, Option<u32>),
    ) -> Result<VersionNo> {
        let mut h = self.read_header(keys, id)?;
        if attrs.is_private() != h.private {
            return Err(StoreError::Invalid(
                "CKA_PRIVATE cannot change after creation".into(),
            ));
        }
        if h.private || h.wrapped_secret_key.is_some() || policy::has_secrets(&attrs) {
            keys.master()?;
        }
        let (ok, mut sk) = self.object_keys(keys, id, &h)?;
        let cur = VersionNo(h.current);
        let raw = self.attribute_record(keys, id, cur)?;
        let (old, _) = self.read_attrs(keys, id, cur, &raw, &h, &ok, sk.as_ref())?;
        self.check_current(keys, id, &h, &raw, &old)?;
        let mut b = Batch::new();
        if !h.private && sk.is_none() && policy::has_secrets(&attrs) {
            let new_sk = Key32::random()?;
            h.wrapped_secret_key = Some(crypto::wrap(
                &keys.master()?.wrap,
                &self.wrap_aad(Purpose::WrapSecretKey, keys, id),
                &new_sk,
            )?);
            sk = Some(new_sk);
        }
        let next = VersionNo(
            h.current
                .checked_add(1)
                .ok_or_else(|| StoreError::Invalid("version counter exhausted".into()))?,
        );
        let (cause, parent) = cause(cur.0);
        let vrec = VersionRecord {
            created_at: now(),
            parent,
            cause,
        };
        h.current = next.0;
        let record = self.seal_attrs(keys, id, next, &ok, sk.as_ref(), &attrs)?;
        h.binding = self.bind_header(keys, id, &h, &record, &attrs)?;
        b.put(
            Cf::Objects,
            keys::object(keys.token, id),
            crypto::seal(
                &keys.header,
                &self.header_aad(keys, id),
                &records::encode(&h),
            )?,
        );
        b.put(
            Cf::Versions,
            keys::version(keys.token, id, next),
            crypto::seal(
                &keys.header,
                &self.version_aad(keys, id, next),
                &records::encode(&vrec),
            )?,
        );
        b.put(Cf::Attributes, keys::version(keys.token, id, next), record);
        // A one-way attribute (CKA_SENSITIVE, CKA_EXTRACTABLE, ...) that moved: every
        // earlier version is less protected and may never be current again, so its
        // record (and key material) leaves the files. Putting an old header back then
        // finds nothing to point at.
        let tightened = policy::TABLE
            .iter()
            .filter(|r| r.flags.sticky_true || r.flags.sticky_false)
            .any(|r| old.get(r.attr) != attrs.get(r.attr));
        let mut purge = Vec::new();
        if tightened {
            let start = keys::version(keys.token, id, VersionNo(1));
            let end = keys::version(keys.token, id, next);
            for (k, _) in collect_prefix(
                self.kv.as_ref(),
                Cf::Attributes,
                &keys::object(keys.token, id),
            )? {
                if k < end {
                    b.delete(Cf::Attributes, k);
                }
            }
            purge.push(PurgeRange {
                cf: Cf::Attributes,
                start,
                end,
            });
        }
        let before: BTreeSet<_> = self
            .index_entries(keys, id, h.private, &old)?
            .into_iter()
            .collect();
        let after: BTreeSet<_> = self
            .index_entries(keys, id, h.private, &attrs)?
            .into_iter()
            .collect();
        for (cf, k) in before.difference(&after) {
            b.delete(*cf, k.clone());
        }
        for (cf, k) in after.difference(&before) {
            b.put(*cf, k.clone(), Vec::new());
        }
        self.kv.write(b)?;
        if !purge.is_empty() {
            self.kv.purge(&purge)?;
        }
        Ok(next)
    }

    /// The version history, oldest first.
    pub fn versions(&self, keys: &TokenKeys, id: ObjectId) -> Result<Vec<VersionInfo>> {
        let h = self.read_header(keys, id)?;
        let mut out = Vec::new();
        let mut err = None;
        self.kv
            .scan_prefix(Cf::Versions, &keys::object(keys.token, id), &mut |k, v| {
                let Some((_, _, ver)) = keys::decode_version(k) else {
                    err = Some(StoreError::corruption(
                        format!("versions/{}/{}", keys.token, id),
                        "malformed key",
                    ));
                    return Ok(Flow::Stop);
                };
                let loc = || format!("versions/{}/{}/{}", keys.token, id, ver);
                let plain = crypto::open(&keys.header, &self.version_aad(keys, id, ver), v, loc)?;
                let rec: VersionRecord = records::decode(&plain, loc)?;
                out.push(VersionInfo {
                    version: ver,
                    created_at: rec.created_at,
                    parent: rec.parent.map(VersionNo),
                    cause: rec.cause,
                    current: ver.0 == h.current,
                });
                Ok(Flow::Continue)
            })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Destroys an object and every version of it, then purges the ranges so its sealed
    /// records and per-object keys leave the disk (not just a tombstone).
    pub fn destroy_object(&self, keys: &TokenKeys, id: ObjectId) -> Result<()> {
        let _g = self.lock();
        let h = self.read_header(keys, id)?;
        if h.private {
            keys.master()?;
        }
        let mut b = Batch::new();
        let mut index_keys: Vec<(Cf, Vec<u8>)> =
            match self.read_at(keys, id, &h, VersionNo(h.current)) {
                Ok(obj) => self.index_entries(keys, id, h.private, &obj.attrs)?,
                // A damaged record must still be destroyable: find its entries by object id.
                Err(
                    StoreError::Tampered { .. }
                    | StoreError::Corruption { .. }
                    | StoreError::VersionNotFound(..),
                ) => self.scan_index_entries_of(keys.token, id)?,
                Err(e) => return Err(e),
            };
        let start = keys::object(keys.token, id);
        let end = keys::object_end(keys.token, id);
        b.delete(Cf::Objects, start.clone());
        for cf in [Cf::Versions, Cf::Attributes] {
            for (k, _) in collect_prefix(self.kv.as_ref(), cf, &start)? {
                b.delete(cf, k);
            }
        }
        let mut ranges = vec![
            PurgeRange {
                cf: Cf::Objects,
                start: start.clone(),
                end: end.clone(),
            },
            PurgeRange {
                cf: Cf::Versions,
                start: start.clone(),
                end: end.clone(),
            },
            PurgeRange {
                cf: Cf::Attributes,
                start,
                end,
            },
        ];
        for (cf, k) in index_keys.drain(..) {
            let end = keys::prefix_end(&k).unwrap_or_else(|| k.clone());
            b.delete(cf, k.clone());
            ranges.push(PurgeRange { cf, start: k, end });
        }
        self.kv.write(b)?;
        self.kv.purge(&ranges)
    }

    /// Schema 1 → 2 for one token: checks its SO PIN (counted like any login), then
    /// stages a binding for every object header into `b`. Each object is read the way a
    /// logged-in read does, its header checked against replay; an object that does not
    /// read stops the upgrade with its place named, and nothing is written.
    pub(crate) fn stage_bindings(
        &self,
        b: &mut Batch,
        token: TokenId,
        so_pin: &SecretString,
    ) -> Result<usize> {
        let keys = self.login(token, UserKind::So, so_pin)?;
        let mut n = 0;
        for id in self.all_objects(&keys)? {
            let mut h = self.read_header(&keys, id)?;
            if h.binding.is_some() {
                return Err(StoreError::Migration {
                    from: 1,
                    to: 2,
                    reason: format!(
                        "object {id} of token {token} already carries a schema-2 binding: this store \
                         was at schema 2 before and its recorded version was lowered; refusing to \
                         re-bind what is in the files now"
                    ),
                });
            }
            let (ok, sk) = self.object_keys(&keys, id, &h)?;
            let v = VersionNo(h.current);
            let raw = self.attribute_record(&keys, id, v)?;
            let (attrs, _) = self.read_attrs(&keys, id, v, &raw, &h, &ok, sk.as_ref())?;
            self.check_not_replayed(&keys, id, &h)?;
            h.binding = self.bind_header(&keys, id, &h, &raw, &attrs)?;
            b.put(
                Cf::Objects,
                keys::object(token, id),
                crypto::seal(
                    &keys.header,
                    &self.header_aad(&keys, id),
                    &records::encode(&h),
                )?,
            );
            n += 1;
        }
        Ok(n)
    }

    fn scan_index_entries_of(&self, token: TokenId, id: ObjectId) -> Result<Vec<(Cf, Vec<u8>)>> {
        let mut out = Vec::new();
        for cf in Cf::INDEXES {
            self.kv
                .scan_prefix(cf, &keys::token_prefix(token), &mut |k, _| {
                    if keys::decode_index(k).is_some_and(|(_, _, _, o)| o == id) {
                        out.push((cf, k.to_vec()));
                    }
                    Ok(Flow::Continue)
                })?;
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- indexes and lookups

    fn index_key_for<'k>(
        &self,
        keys: &'k TokenKeys,
        private: bool,
    ) -> Result<(&'k Key32, Visibility)> {
        if private {
            Ok((&keys.master()?.private_index, Visibility::Private))
        } else {
            Ok((&keys.public_index, Visibility::Public))
        }
    }

    /// The index entries an attribute set implies.
    pub(crate) fn index_entries(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        private: bool,
        attrs: &AttributeSet,
    ) -> Result<Vec<(Cf, Vec<u8>)>> {
        let (ik, vis) = self.index_key_for(keys, private)?;
        let mut out = Vec::new();
        for (cf, value) in index_values(attrs) {
            let d = crypto::blind(ik, cf.index_tag(), &value);
            out.push((cf, keys::index(keys.token, vis, &d, id)));
        }
        Ok(out)
    }

    /// Objects matching every field of `q`, through the indexes, in id order. Private
    /// objects appear only with the master key. An empty query lists every visible object.
    pub fn find(&self, keys: &TokenKeys, q: &Query) -> Result<Vec<ObjectId>> {
        if q.is_empty() {
            return self.all_objects(keys);
        }
        let mut criteria: Vec<(Cf, Vec<u8>)> = Vec::new();
        if let Some(c) = q.class {
            criteria.push((Cf::IdxClass, c.0.to_be_bytes().to_vec()));
        }
        if let Some(l) = &q.label {
            criteria.push((Cf::IdxLabel, l.clone()));
        }
        if let Some(i) = &q.id {
            criteria.push((Cf::IdxId, i.clone()));
        }
        if let Some(k) = q.key_type {
            criteria.push((Cf::IdxKeyType, k.0.to_be_bytes().to_vec()));
        }
        if let Some(m) = q.mechanism {
            criteria.push((Cf::IdxMechanism, m.0.to_be_bytes().to_vec()));
        }
        let mut result: Option<BTreeSet<ObjectId>> = None;
        // Most selective first: label and id usually narrow to one object.
        criteria.sort_by_key(|(cf, _)| match cf {
            Cf::IdxId | Cf::IdxLabel => 0,
            _ => 1,
        });
        let mut vis_keys: Vec<(&Key32, Visibility)> =
            vec![(&keys.public_index, Visibility::Public)];
        if let Some(m) = &keys.master {
            vis_keys.push((&m.private_index, Visibility::Private));
        }
        for (cf, value) in criteria {
            let ids = match &result {
                // The first criterion lists its matches with a prefix scan.
                None => {
                    let mut ids = BTreeSet::new();
                    for (ik, vis) in &vis_keys {
                        let d = crypto::blind(ik, cf.index_tag(), &value);
                        self.kv.scan_prefix(
                            cf,
                            &keys::index_prefix(keys.token, *vis, &d),
                            &mut |k, _| {
                                if let Some((_, _, _, o)) = keys::decode_index(k) {
                                    ids.insert(o);
                                }
                                Ok(Flow::Continue)
                            },
                        )?;
                    }
                    ids
                }
                // Later criteria only confirm the candidates with point lookups, so a
                // broad criterion (the class of every key) costs nothing extra.
                Some(candidates) => {
                    let mut ids = BTreeSet::new();
                    let digests: Vec<_> = vis_keys
                        .iter()
                        .map(|(ik, vis)| (*vis, crypto::blind(ik, cf.index_tag(), &value)))
                        .collect();
                    for o in candidates {
                        for (vis, d) in &digests {
                            if self
                                .kv
                                .get(cf, &keys::index(keys.token, *vis, d, *o))?
                                .is_some()
                            {
                                ids.insert(*o);
                                break;
                            }
                        }
                    }
                    ids
                }
            };
            let empty = ids.is_empty();
            result = Some(ids);
            if empty {
                break;
            }
        }
        Ok(result.unwrap_or_default().into_iter().collect())
    }

    fn all_objects(&self, keys: &TokenKeys) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        let with_private = keys.master.is_some();
        self.kv
            .scan_prefix(Cf::Objects, &keys::token_prefix(keys.token), &mut |k, v| {
                let Some((_, id)) = keys::decode_object(k) else {
                    return Err(StoreError::corruption(
                        format!("objects/{}", keys.token),
                        "malformed key",
                    ));
                };
                if with_private {
                    out.push(id);
                } else {
                    let loc = || format!("objects/{}/{}", keys.token, id);
                    let plain = crypto::open(&keys.header, &self.header_aad(keys, id), v, loc)?;
                    let h: ObjectHeader = records::decode(&plain, loc)?;
                    if !h.private {
                        out.push(id);
                    }
                }
                Ok(Flow::Continue)
            })?;
        Ok(out)
    }

    /// Counts a token's objects without unsealing them.
    pub fn object_count(&self, token: TokenId) -> Result<u64> {
        let mut n = 0;
        self.kv
            .scan_prefix(Cf::Objects, &keys::token_prefix(token), &mut |_, _| {
                n += 1;
                Ok(Flow::Continue)
            })?;
        Ok(n)
    }

    /// Checks that the indexes and the records agree both ways for every object these
    /// keys can read. Returns one line per problem.
    pub fn check_indexes(&self, keys: &TokenKeys) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut expected: BTreeSet<(Cf, Vec<u8>)> = BTreeSet::new();
        for id in self.all_objects(keys)? {
            match self.read_object(keys, id) {
                Ok(obj) => {
                    expected.extend(self.index_entries(keys, id, obj.private, &obj.attrs)?)
                }
                Err(e) => problems.push(format!("object {id}: {e}")),
            }
        }
        let can_private = keys.master.is_some();
        for cf in Cf::INDEXES {
            self.kv
                .scan_prefix(cf, &keys::token_prefix(keys.token), &mut |k, _| {
                    match keys::decode_index(k) {
                        Some((_, Visibility::Private, _, _)) if !can_private => {}
                        Some((_, _, _, o)) => {
                            if !expected.remove(&(cf, k.to_vec())) {
                                problems.push(format!(
                                    "{}: entry for object {o} matches no record",
                                    cf.name()
                                ));
                            }
                        }
                        None => problems.push(format!("{}: malformed key {}", cf.name(), hex(k))),
                    }
                    Ok(Flow::Continue)
                })?;
        }
        for (cf, k) in expected {
            let o = keys::decode_index(&k)
                .map(|(_, _, _, o)| o.to_string())
                .unwrap_or_default();
            problems.push(format!("{}: object {o} has no index entry", cf.name()));
        }
        Ok(problems)
    }
}

/// The tag under which header bindings are computed (`crypto::blind`'s domain byte; the
/// binding key itself is its own HKDF derivation of the master key).
const BINDING_TAG: u8 = 0xb1;

/// Whether an object's header must carry a binding: private objects and objects holding
/// key material can only be written with the master key anyway, and a trusted object
/// (`CKA_TRUSTED`) must be one the SO made, not one planted in the files.
fn must_be_bound(h: &ObjectHeader, attrs: &AttributeSet) -> bool {
    h.private
        || h.wrapped_secret_key.is_some()
        || attrs.bool(hsm_types::AttributeType::TRUSTED) == Some(true)
}

/// The (index, value) pairs of an attribute set.
fn index_values(attrs: &AttributeSet) -> Vec<(Cf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Some(c) = attrs.class() {
        out.push((Cf::IdxClass, c.0.to_be_bytes().to_vec()));
    }
    if let Some(l) = attrs.label() {
        out.push((Cf::IdxLabel, l.to_vec()));
    }
    if let Some(i) = attrs.id() {
        out.push((Cf::IdxId, i.to_vec()));
    }
    if let Some(k) = attrs.key_type() {
        out.push((Cf::IdxKeyType, k.0.to_be_bytes().to_vec()));
    }
    let mut mechs: Vec<u64> = attrs.mechanisms().to_vec();
    mechs.sort_unstable();
    mechs.dedup();
    for m in mechs {
        out.push((Cf::IdxMechanism, m.to_be_bytes().to_vec()));
    }
    out
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

fn u32_from(v: &[u8], location: &str) -> Result<u32> {
    Ok(u32::from_be_bytes(v.try_into().map_err(|_| {
        StoreError::corruption(location, "not 4 bytes")
    })?))
}

fn u64_from(v: &[u8], location: &str) -> Result<u64> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
        StoreError::corruption(location, "not 8 bytes")
    })?))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
