//! An in-memory backend: the same contract without a disk, for tests and as proof that
//! nothing above the trait depends on RocksDB.

use super::{Batch, Flow, KvBackend, Op, PurgeRange, Visitor};
use crate::cf::Cf;
use crate::error::{Result, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::RwLock;

/// Each family's records in key order.
type Families = HashMap<Cf, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Default)]
pub struct MemBackend {
    cfs: RwLock<Families>,
}

impl MemBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvBackend for MemBackend {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cfs = self.cfs.read().unwrap_or_else(|p| p.into_inner());
        Ok(cfs.get(&cf).and_then(|m| m.get(key).cloned()))
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        // Copy the range first so a visitor may call back into the backend.
        let entries: Vec<(Vec<u8>, Vec<u8>)> = {
            let cfs = self.cfs.read().unwrap_or_else(|p| p.into_inner());
            match cfs.get(&cf) {
                None => return Ok(()),
                Some(m) => m
                    .range(prefix.to_vec()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        };
        for (k, v) in entries {
            if visit(&k, &v)? == Flow::Stop {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let mut cfs = self.cfs.write().unwrap_or_else(|p| p.into_inner());
        for op in batch.into_ops() {
            match op {
                Op::Put { cf, key, value } => {
                    cfs.entry(cf).or_default().insert(key, value);
                }
                Op::Delete { cf, key } => {
                    if let Some(m) = cfs.get_mut(&cf) {
                        m.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    fn purge(&self, _ranges: &[PurgeRange]) -> Result<()> {
        Ok(())
    }

    /// Refused: there are no files to copy, and a copy in memory would be gone with the
    /// process, which is no checkpoint.
    fn checkpoint(&self, dir: &Path) -> Result<()> {
        Err(StoreError::Invalid(format!(
            "cannot checkpoint into {}: checkpoints need an on-disk store, and this one is \
             in memory",
            dir.display()
        )))
    }
}
