//! The object store: tokens, PINs, sealed objects with versions, and their indexes.
//! Every logical operation is one batch, written durably before it returns.
//!
//! [`Store`] is one type; its operations are spread by area: [`keyring`] (token keys,
//! PINs and their counters, token creation), [`sealed`] (sealing, binding and the replay
//! check of object records), [`objects`] (create, read, destroy), [`versions`] (new
//! versions and history), [`index`] (lookups and index upkeep). This file opens stores.

mod audit;
mod audit_spool;
mod group_commit;
mod index;
mod keyring;
mod objects;
mod pin_cache;
mod quorum;
mod rings;
mod sealed;
mod versions;

pub use audit::{AuditKeyInfo, AuditStats, AuditVerification};
pub use index::Query;
pub use keyring::{TokenInfo, TokenKeys, TokenSpec};
pub use objects::StoredObject;
pub use pin_cache::LoginStats;
pub use rings::RingWrites;
pub use versions::VersionInfo;

use crate::backend::mem::MemBackend;
use crate::backend::{self, Batch, Flow, KvBackend, OpenMode};
use crate::cf::Cf;
use crate::crypto;
use crate::error::{Result, StoreError};
use crate::keys;
use crate::migrate;
use hsm_types::quorum::QuorumState;
use hsm_types::{SecretString, TokenId, UserKind};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A store: one backend holding one or more tokens.
pub struct Store {
    kv: Arc<dyn KvBackend>,
    store_id: [u8; 16],
    schema_version: u32,
    // Serialises read-modify-write operations (id allocation, version bumps, counters).
    write_lock: Mutex<()>,
    // PIN checks in progress per token and user (see `verify_pin`), and the signal that
    // one of them ended.
    inflight: Mutex<std::collections::HashMap<(TokenId, UserKind), u32>>,
    inflight_done: std::sync::Condvar,
    // PINs proved right recently, when the opener turned the cache on.
    pin_cache: pin_cache::PinCache,
    // Dual-control states read with the master key (binding checked) or written by this
    // process, per token and generation: the policy engine reads it on every key use.
    // Sound because a store is opened by one process at a time (the backends lock it).
    quorum_cache: Mutex<std::collections::HashMap<(TokenId, u32), std::sync::Arc<QuorumState>>>,
    // The audit log's settings, cached heads and counters (`store/audit.rs`).
    audit: audit::AuditState,
}

impl Drop for Store {
    /// Moves the spooled records of key use into the log before the store closes.
    fn drop(&mut self) {
        if let Err(e) = self.flush_audit_spool() {
            tracing::error!("records of key use stay in the audit spool until the next open: {e}");
        }
    }
}

/// A mutex guard that survives a panic elsewhere (what these mutexes guard is replaced
/// whole, never left half-changed).
pub(crate) fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        let store = Store::open(backend::open_dir(dir, OpenMode::ReadWrite)?)?;
        store.attach_spool(dir)?;
        Ok(store)
    }

    /// Opens an existing store without writing to it and without taking its lock.
    pub fn open_dir_read_only(dir: &Path) -> Result<Store> {
        Store::open(backend::open_dir(dir, OpenMode::ReadOnly)?)
    }

    /// A fresh store in memory.
    pub fn open_memory() -> Result<Store> {
        Store::open(Box::new(MemBackend::new()))
    }

    /// Opens a store over any backend: initialises an empty one, migrates an older one,
    /// refuses a newer one, and refuses a damaged one rather than guessing.
    pub fn open(kv: Box<dyn KvBackend>) -> Result<Store> {
        let mut migrated_from = None;
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
                            to: migrate::NEEDS_SO_PIN_FROM + 1,
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
                    migrated_from = Some(v);
                }
                migrate::CURRENT
            }
        };
        let store = Store::assemble(kv, version)?;
        if let Some(from) = migrated_from {
            store.record_migration(from);
        }
        Ok(store)
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
        store.record_migration(migrate::NEEDS_SO_PIN_FROM);
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
        let boot = next_boot(kv.as_ref())?;
        Ok(Store {
            audit: audit::AuditState::new(boot),
            kv: Arc::from(kv),
            store_id,
            schema_version: version,
            write_lock: Mutex::new(()),
            inflight: Mutex::new(std::collections::HashMap::new()),
            inflight_done: std::sync::Condvar::new(),
            pin_cache: pin_cache::PinCache::new()?,
            quorum_cache: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Turns the login cache on for `ttl` (or off: `None` or zero). See
    /// `store/pin_cache.rs`: the failure counter still runs first, and a PIN the cache does
    /// not know goes through the full KDF.
    pub fn set_login_cache(&self, ttl: Option<std::time::Duration>) {
        self.pin_cache.set_ttl(ttl);
    }

    /// Drops cached logins past their time to live (the server calls it every second).
    pub fn expire_login_cache(&self) {
        self.pin_cache.expire();
    }

    /// How many logins the cache answered, and how many ran the PIN KDF.
    pub fn login_stats(&self) -> LoginStats {
        self.pin_cache.stats()
    }

    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }
    pub fn store_id_hex(&self) -> String {
        hex::encode(self.store_id)
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
}

/// This run's boot counter: the stored one raised by one and written back, for a writer;
/// the stored one for a reader.
fn next_boot(kv: &dyn KvBackend) -> Result<u64> {
    let stored = match kv.get(Cf::Meta, keys::meta::BOOT)? {
        Some(v) => u64_from(&v, "meta/boot")?,
        None => 0,
    };
    if kv.read_only() {
        return Ok(stored);
    }
    let mut b = Batch::new();
    b.put(
        Cf::Meta,
        keys::meta::BOOT.to_vec(),
        (stored + 1).to_be_bytes().to_vec(),
    );
    kv.write(b)?;
    Ok(stored + 1)
}

/// A big-endian `u32` record (a counter in `meta`).
fn u32_from(v: &[u8], location: &str) -> Result<u32> {
    Ok(u32::from_be_bytes(v.try_into().map_err(|_| {
        StoreError::corruption(location, "not 4 bytes")
    })?))
}

/// A big-endian `u64` record (a counter in `meta`).
fn u64_from(v: &[u8], location: &str) -> Result<u64> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
        StoreError::corruption(location, "not 8 bytes")
    })?))
}
