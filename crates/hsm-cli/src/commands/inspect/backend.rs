//! The backend inspection opens the store through.
//!
//! It is what `Store::open_dir_read_only` opens — a RocksDB secondary instance that never
//! writes and takes no lock — with one addition: `Store::login` raises the PIN failure
//! counter before it tries a PIN and clears it afterwards, and a secondary cannot write, so
//! without somewhere to put that counter no PIN could be checked beside the running
//! module. Counter writes land in this process's memory and die with it; every other write
//! is refused as read-only. A locked PIN is still refused, since the counter is read from
//! the store. Not persisting a failure gives nothing away: whoever can run this command can
//! read the store's files and try PINs against them offline anyway.

use crate::exit::CliResult;
use hsm_core::store::Store;
use hsm_core::store::backend::rocks::{OpenMode, RocksBackend};
use hsm_core::store::backend::{Batch, Flow, KvBackend, Op, PurgeRange};
use hsm_core::store::cf::Cf;
use hsm_core::store::keys;
use hsm_core::store::{Result, StoreError};
use hsm_core::types::{TokenId, UserKind};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Opens `dir` read-only (schema checks as `Store::open_dir_read_only`).
pub(super) fn open(dir: &Path) -> CliResult<Store> {
    let inner = RocksBackend::open(dir, OpenMode::ReadOnly)?;
    Ok(Store::open(Box::new(ReadOnly {
        inner,
        counters: Mutex::new(HashMap::new()),
    }))?)
}

struct ReadOnly {
    inner: RocksBackend,
    /// PIN failure counters written during this run, by `meta` key.
    counters: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
}

impl ReadOnly {
    fn counters(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Vec<u8>>> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `key` is a `meta` PIN failure counter (checked against the store's own layout).
fn is_pin_counter(key: &[u8]) -> bool {
    let Some(t) = key.get(1..5) else {
        return false;
    };
    let t = TokenId(u32::from_be_bytes(t.try_into().expect("four bytes")));
    [UserKind::So, UserKind::User]
        .into_iter()
        .any(|who| keys::meta::pin_failures(t, who) == key)
}

impl KvBackend for ReadOnly {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if cf == Cf::Meta
            && let Some(v) = self.counters().get(key)
        {
            return Ok(Some(v.clone()));
        }
        self.inner.get(cf, key)
    }

    fn scan_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<Flow>,
    ) -> Result<()> {
        self.inner.scan_prefix(cf, prefix, visit)
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let counters_only = batch.ops().iter().all(|op| {
            matches!(op, Op::Put { cf: Cf::Meta, key, .. } if is_pin_counter(key))
        });
        if !counters_only {
            return Err(StoreError::Invalid("store was opened read-only".into()));
        }
        let mut counters = self.counters();
        for op in batch.into_ops() {
            if let Op::Put { key, value, .. } = op {
                counters.insert(key, value);
            }
        }
        Ok(())
    }

    fn purge(&self, _: &[PurgeRange]) -> Result<()> {
        Err(StoreError::Invalid("store was opened read-only".into()))
    }

    fn read_only(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pin_counters_are_counters() {
        assert!(is_pin_counter(&keys::meta::pin_failures(
            TokenId(3),
            UserKind::User
        )));
        assert!(is_pin_counter(&keys::meta::pin_failures(
            TokenId(1),
            UserKind::So
        )));
        assert!(!is_pin_counter(&keys::meta::token(TokenId(1))));
        assert!(!is_pin_counter(&keys::meta::next_object(TokenId(1))));
        assert!(!is_pin_counter(keys::meta::SCHEMA_VERSION));
        assert!(!is_pin_counter(b""));
    }
}
