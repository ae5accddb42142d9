//! The raw key-value layer. The trait names no RocksDB type: [`mem::MemBackend`] and
//! [`rocks::RocksBackend`] both implement it and pass one conformance suite. Callers
//! outside this crate open a store directory with [`open_dir`] and never name RocksDB.

pub mod mem;
pub mod rocks;

pub use rocks::{OpenMode, release_background_threads};

use crate::cf::Cf;
use crate::error::Result;
use std::path::Path;

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Cf,
        key: Vec<u8>,
    },
}

/// Writes applied all-or-nothing and durably (synced) by [`KvBackend::write`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put { cf, key, value });
    }
    pub fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.ops.push(Op::Delete { cf, key });
    }
    /// Moves `other`'s writes to the end of this batch.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The backend's state, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Bytes its files take on disk (0 in memory).
    pub size_bytes: u64,
    /// Writes are refused: the disk is full, or the engine stopped them.
    pub stalled: bool,
    /// The rate (bytes/s) the engine slows writes to while compaction catches up; 0 when
    /// writes are not delayed.
    pub delayed_write_rate: u64,
}

/// What a visitor tells a scan.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flow {
    Continue,
    Stop,
}

/// A key range `[start, end)` whose deleted data must leave the disk for good.
#[derive(Clone, Debug)]
pub struct PurgeRange {
    pub cf: Cf,
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

/// What a scan calls for each entry, key then value; it says whether to go on.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Flow> + 'a;

/// The storage contract every backend keeps.
pub trait KvBackend: Send + Sync {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visits every entry whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(&self, cf: Cf, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()>;

    /// Applies the batch atomically; returns only after it is durable.
    fn write(&self, batch: Batch) -> Result<()>;

    /// Applies the batch atomically without waiting for the disk: it survives the
    /// process but not a power cut until [`KvBackend::sync_log`] or the next
    /// [`KvBackend::write`] (the log is one sequence: a synced write makes everything
    /// before it durable too). What group commit of the audit log's key uses is built on.
    fn write_unsynced(&self, batch: Batch) -> Result<()> {
        self.write(batch)
    }

    /// Makes every write so far durable.
    fn sync_log(&self) -> Result<()> {
        Ok(())
    }

    /// Makes deleted data in these ranges unrecoverable from the backend's files
    /// (flush and compaction for RocksDB; nothing to do in memory).
    fn purge(&self, ranges: &[PurgeRange]) -> Result<()>;

    /// Writes a consistent copy of the store into `dir`, which must not exist: what a
    /// migration keeps of the store as it was. Only a store on disk can make one.
    fn checkpoint(&self, dir: &Path) -> Result<()>;

    /// What the metrics show of the backend.
    fn health(&self) -> Health {
        Health::default()
    }

    /// Whether writes are refused (an inspection handle).
    fn read_only(&self) -> bool {
        false
    }
}

/// Opens the store directory `dir` with the on-disk backend (RocksDB): as its one writer
/// (creating it if absent) or read-only beside a writer, as `mode` says.
pub fn open_dir(dir: &Path, mode: OpenMode) -> Result<Box<dyn KvBackend>> {
    Ok(Box::new(rocks::RocksBackend::open(dir, mode)?))
}

/// Collects a prefix scan into a vector (small scans only).
pub fn collect_prefix(
    kv: &dyn KvBackend,
    cf: Cf,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    kv.scan_prefix(cf, prefix, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(Flow::Continue)
    })?;
    Ok(out)
}
