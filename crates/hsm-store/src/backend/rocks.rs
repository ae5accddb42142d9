//! The RocksDB backend: one database per store directory, one column family per [`Cf`].

use super::{Batch, Flow, Health, KvBackend, Op, PurgeRange, Visitor};
use crate::cf::Cf;
use crate::error::{Result, StoreError};
use crate::private_fs;
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamilyDescriptor, CompactOptions,
    DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions, SliceTransform,
    WriteBatch, WriteOptions,
};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Name of the file that records which process holds a store open.
pub const HOLDER_FILE: &str = "ferrohsm.lock";

pub struct RocksBackend {
    /// `None` only while a reopen after a full disk has failed; the next call retries it.
    db: RwLock<Option<DB>>,
    /// A write hit a full disk. RocksDB then refuses every write until the database is
    /// reopened (the Rust binding has no `Resume`), which happens once space is back.
    stalled: AtomicBool,
    path: PathBuf,
    read_only: bool,
    // Held for the backend's lifetime: the OS lock that keeps a second writer out.
    _holder: Option<File>,
    // A read-only handle is a RocksDB secondary instance; its own small directory (info
    // log, no data) lives as long as it does.
    _secondary: Option<SecondaryDir>,
}

/// The scratch directory of a secondary instance, removed on drop.
struct SecondaryDir(PathBuf);

impl Drop for SecondaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a store directory is opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OpenMode {
    /// The one writer: takes the holder lock, creates the store if absent.
    ReadWrite,
    /// Never writes, takes no lock; may run beside a writer. A RocksDB secondary instance:
    /// it sees a consistent state as of its open (whole write batches only).
    ReadOnly,
}

/// Memory the store may use for cached blocks, shared by every column family.
const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// Write buffers per family and in total; bounded so RSS stays small and a reopen
/// replays little log.
const WRITE_BUFFER_BYTES: usize = 4 << 20;
const DB_WRITE_BUFFER_BYTES: usize = 32 << 20;
/// Log size after which the families holding the oldest log are flushed, which bounds
/// what a reopen must replay.
const MAX_TOTAL_WAL_BYTES: u64 = 32 << 20;
/// Free space a stalled store waits for before it reopens and takes writes again: a new
/// log (RocksDB preallocates about 1.1 × a write buffer), a manifest and an options file.
pub const RESUME_FREE_BYTES: u64 = 8 << 20;

fn db_options(create: bool) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    opts.create_missing_column_families(create);
    // Sealed values do not compress; no compression library is linked.
    opts.set_compression_type(DBCompressionType::None);
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(1 << 20);
    opts.set_recycle_log_file_num(0);
    opts.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES);
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    opts
}

/// Per-family options: Bloom filters for point lookups, prefix Blooms for the index and
/// history scans, one shared block cache.
fn cf_options(cf: Cf, cache: &Cache) -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::None);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    // Index and filter blocks stay resident in the table readers (about 2 bytes per key)
    // instead of competing with data blocks in the cache: a lookup then costs one data
    // block read whatever the store's size.
    table.set_cache_index_and_filter_blocks(false);
    table.set_block_cache(cache);
    opts.set_block_based_table_factory(&table);
    if let Some(len) = cf.prefix_len() {
        opts.set_prefix_extractor(SliceTransform::create_fixed_prefix(len));
        opts.set_memtable_prefix_bloom_ratio(0.1);
    }
    opts
}

impl RocksBackend {
    pub fn open(path: &Path, mode: OpenMode) -> Result<Self> {
        match mode {
            OpenMode::ReadWrite => {
                // 0700, owned by this user, with a default ACL that makes later files
                // 0600 (see `private_fs`); an exposed directory is refused.
                private_fs::prepare_store_dir(path)?;
                let holder = take_holder_lock(path)?;
                check_families(path, OpenMode::ReadWrite)?;
                let db = open_writer(path)?;
                // RocksDB has just written its log, manifest, options and info log: under
                // a umask of 022 and without ACLs they are 0644 until now.
                private_fs::restrict_files(path)?;
                Ok(Self {
                    db: RwLock::new(Some(db)),
                    stalled: AtomicBool::new(false),
                    path: path.to_owned(),
                    read_only: false,
                    _holder: Some(holder),
                    _secondary: None,
                })
            }
            OpenMode::ReadOnly => {
                if !path.join("CURRENT").exists() {
                    return Err(StoreError::NotAStore);
                }
                // Reading changes nothing, but a store others can read is refused here
                // too: it is exposed, and whoever reads it should hear so.
                private_fs::check_store_dir(path, false)?;
                check_families(path, OpenMode::ReadOnly)?;
                let mut opts = db_options(false);
                // A secondary keeps every table file open: it must not lose one that the
                // primary deletes after a compaction.
                opts.set_max_open_files(-1);
                // In the shared temporary directory: a name nobody can predict, made
                // exclusively and 0700, so no other user can plant a link or read its log.
                let scratch = private_fs::unpredictable_sibling(
                    &std::env::temp_dir().join("ferrohsm-secondary"),
                    "scratch",
                )?;
                private_fs::create_private_dir(&scratch).map_err(|e| {
                    StoreError::Io(format!("cannot create {}: {e}", scratch.display()))
                })?;
                let scratch = SecondaryDir(scratch);
                let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
                // An older store lacks the families later schemas added: open what it has.
                let present = DB::list_cf(&Options::default(), path).map_err(map_err)?;
                let cfs = Cf::ALL
                    .iter()
                    .filter(|c| present.iter().any(|p| p == c.name()))
                    .map(|c| ColumnFamilyDescriptor::new(c.name(), cf_options(*c, &cache)));
                let db = DB::open_cf_descriptors_as_secondary(&opts, path, &scratch.0, cfs)
                    .map_err(map_err)?;
                db.try_catch_up_with_primary().map_err(map_err)?;
                Ok(Self {
                    db: RwLock::new(Some(db)),
                    stalled: AtomicBool::new(false),
                    path: path.to_owned(),
                    read_only: true,
                    _holder: None,
                    _secondary: Some(scratch),
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One batch into the log, fsynced before it returns when `sync` (else in the
    /// operating system's cache: it survives the process, not a power cut).
    fn write_with(&self, batch: Batch, sync: bool) -> Result<()> {
        if self.read_only {
            return Err(StoreError::Invalid("store was opened read-only".into()));
        }
        self.resume()?;
        self.with_db(|db| {
            let mut wb = WriteBatch::default();
            for op in batch.ops() {
                match op {
                    Op::Put { cf, key, value } => wb.put_cf(handle(db, *cf)?, key, value),
                    Op::Delete { cf, key } => wb.delete_cf(handle(db, *cf)?, key),
                }
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(sync);
            db.write_opt(wb, &wo).map_err(map_err)
        })
        .inspect_err(|e| {
            if matches!(e, StoreError::NoSpace(_)) && !self.stalled.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    store = %self.path.display(),
                    "disk full: writes are refused until {RESUME_FREE_BYTES} bytes are free; reads go on"
                );
            }
        })
    }

    /// Runs `f` on the open database, reopening it first if a full disk left it closed.
    fn with_db<T>(&self, f: impl FnOnce(&DB) -> Result<T>) -> Result<T> {
        let mut g = self.db.read().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            drop(g);
            self.resume()?;
            g = self.db.read().unwrap_or_else(|p| p.into_inner());
        }
        match g.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Io(
                "the store is closed after a failed reopen".into(),
            )),
        }
    }

    /// After a write failed for lack of space: once enough is free again, closes and
    /// reopens the database so that it takes writes. Reads go on meanwhile; writes answer
    /// `NoSpace` until then. Acknowledged writes are in the synced log and replay on
    /// reopen; the failed one was never acknowledged.
    fn resume(&self) -> Result<()> {
        if !self.stalled.load(Ordering::Acquire) {
            return Ok(());
        }
        let free = free_bytes(&self.path)?;
        if free < RESUME_FREE_BYTES {
            return Err(StoreError::NoSpace(format!(
                "{}: {free} bytes free; writes resume once {RESUME_FREE_BYTES} are",
                self.path.display()
            )));
        }
        let mut g = self.db.write().unwrap_or_else(|p| p.into_inner());
        if !self.stalled.load(Ordering::Acquire) {
            return Ok(());
        }
        // RocksDB's own lock is per process: the old handle must close first.
        *g = None;
        let db = open_writer(&self.path).inspect_err(|e| {
            tracing::error!(store = %self.path.display(), "reopen after a full disk failed: {e}");
        })?;
        *g = Some(db);
        self.stalled.store(false, Ordering::Release);
        self.sweep();
        tracing::warn!(store = %self.path.display(), free, "disk space is back: the store takes writes again");
        Ok(())
    }

    /// A consistent copy of the live database in `dir` (hard links where possible), which
    /// must not exist. It holds the same wrapped master keys, so it gets the store's
    /// permissions: RocksDB builds it inside a new 0700 staging directory beside `dir`
    /// (RocksDB itself would make it 0755 & ~umask, readable while it fills), its files are
    /// set to 0600, and it is renamed to `dir` only if nothing appeared there meanwhile.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        if std::fs::symlink_metadata(dir).is_ok() {
            return Err(StoreError::Io(format!(
                "checkpoint target {} already exists",
                dir.display()
            )));
        }
        let staging = private_fs::unpredictable_sibling(dir, "staging")?;
        private_fs::create_private_dir(&staging)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", staging.display())))?;
        let inner = staging.join("checkpoint");
        let result = self
            .with_db(|db| {
                let cp = rocksdb::checkpoint::Checkpoint::new(db).map_err(map_err)?;
                cp.create_checkpoint(&inner).map_err(map_err)
            })
            .and_then(|()| {
                std::fs::set_permissions(
                    &inner,
                    std::fs::Permissions::from_mode(private_fs::DIR_MODE),
                )
                .map_err(|e| StoreError::Io(format!("cannot chmod {}: {e}", inner.display())))?;
                private_fs::set_default_acl(&inner);
                private_fs::restrict_files(&inner)
            })
            .and_then(|()| {
                private_fs::rename_noreplace(&inner, dir).map_err(|e| {
                    StoreError::Io(format!(
                        "cannot move the checkpoint to {}: {e}",
                        dir.display()
                    ))
                })
            });
        // Empty after a success; a half-made checkpoint after a failure. Ours either way.
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// Sets every file of the store to 0600 after RocksDB may have made new ones (a flush,
    /// a compaction, a reopen): what restricts them where the file system has no default
    /// ACL. A failure is logged, not returned: the operation that ran has succeeded.
    fn sweep(&self) {
        if let Err(e) = private_fs::restrict_files(&self.path) {
            tracing::warn!(store = %self.path.display(), "{e}");
        }
    }
}

fn handle(db: &DB, cf: Cf) -> Result<&rocksdb::ColumnFamily> {
    db.cf_handle(cf.name())
        .ok_or_else(|| StoreError::corruption(cf.name(), "column family is missing"))
}

/// Refuses an existing database that lacks one of the families of [`Cf::ALL`] and holds a
/// record. RocksDB would otherwise create the missing family empty (a writer opens with
/// `create_missing_column_families`), and a store that lost its `meta` family would look
/// like a new one, or one that lost `objects` like a store without objects. A database
/// that lacks families but holds nothing is what a crash leaves while RocksDB creates a
/// new store's families one by one: a writer completes it, a reader finds no store.
///
/// A family a later schema added ([`Cf::added_in`]) may be absent: the store is older,
/// the writer's open creates it, and `Store::open` migrates (or, read-only, refuses with
/// the migration's message).
fn check_families(path: &Path, mode: OpenMode) -> Result<()> {
    if !path.join("CURRENT").exists() {
        return Ok(());
    }
    let present = DB::list_cf(&Options::default(), path).map_err(map_err)?;
    let missing: Vec<&str> = Cf::ALL
        .iter()
        .filter(|c| c.added_in() == 1)
        .map(|c| c.name())
        .filter(|n| !present.iter().any(|p| p == n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let holding = family_with_records(path, &present)?;
    match (holding, mode) {
        (None, OpenMode::ReadWrite) => Ok(()),
        (None, OpenMode::ReadOnly) => Err(StoreError::NotAStore),
        (Some(family), _) => Err(StoreError::corruption(
            path.display().to_string(),
            format!(
                "column famil{} {} missing, but `{family}` holds records: refusing to \
                 recreate {} empty; restore the store from a backup",
                if missing.len() == 1 {
                    "y is"
                } else {
                    "ies are"
                },
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" },
            ),
        )),
    }
}

/// The first of `families` that holds a record, through a read-only instance (no lock,
/// no write; the caller holds the writer's lock or wants no change).
fn family_with_records(path: &Path, families: &[String]) -> Result<Option<String>> {
    let db =
        DB::open_cf_for_read_only(&Options::default(), path, families, false).map_err(map_err)?;
    for name in families {
        let Some(cf) = db.cf_handle(name) else {
            continue;
        };
        if let Some(item) = db.iterator_cf(cf, IteratorMode::Start).next() {
            item.map_err(map_err)?;
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// The writer's database with every family.
fn open_writer(path: &Path) -> Result<DB> {
    let opts = db_options(true);
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let cfs = Cf::ALL
        .iter()
        .map(|c| ColumnFamilyDescriptor::new(c.name(), cf_options(*c, &cache)));
    DB::open_cf_descriptors(&opts, path, cfs).map_err(map_err)
}

/// Bytes an unprivileged writer may still use on the store's file system.
fn free_bytes(path: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(path)
        .map_err(|e| StoreError::Io(format!("statvfs {}: {e}", path.display())))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

impl KvBackend for RocksBackend {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_db(|db| db.get_cf(handle(db, cf)?, key).map_err(map_err))
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        let mut ro = ReadOptions::default();
        if let Some(end) = crate::keys::prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        // Shorter than the family's fixed prefix: the prefix Bloom cannot serve this scan,
        // so ask for plain key order across prefixes.
        if cf.prefix_len().is_some_and(|len| prefix.len() < len) {
            ro.set_total_order_seek(true);
        }
        self.with_db(|db| {
            for item in db.iterator_cf_opt(
                handle(db, cf)?,
                ro,
                IteratorMode::From(prefix, Direction::Forward),
            ) {
                let (k, v) = item.map_err(map_err)?;
                if !k.starts_with(prefix) {
                    break;
                }
                if visit(&k, &v)? == Flow::Stop {
                    break;
                }
            }
            Ok(())
        })
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.write_with(batch, true)
    }

    fn write_unsynced(&self, batch: Batch) -> Result<()> {
        self.write_with(batch, false)
    }

    fn health(&self) -> Health {
        let size_bytes = std::fs::read_dir(&self.path)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let prop = |name: &str| {
            self.with_db(|db| db.property_int_value(name).map_err(map_err))
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        Health {
            size_bytes,
            stalled: self.stalled.load(Ordering::Acquire) || prop("rocksdb.is-write-stopped") > 0,
            delayed_write_rate: prop("rocksdb.actual-delayed-write-rate"),
        }
    }

    fn sync_log(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.with_db(|db| db.flush_wal(true).map_err(map_err))
    }
    fn purge(&self, ranges: &[PurgeRange]) -> Result<()> {
        if self.read_only {
            return Err(StoreError::Invalid("store was opened read-only".into()));
        }
        // Flush every family so the WAL that carried the old records becomes obsolete
        // and is deleted, then compact the ranges to the bottom so tombstones and the
        // values they cover are dropped from the SST files.
        self.resume()?;
        self.with_db(|db| {
            let handles: Vec<_> = Cf::ALL
                .iter()
                .map(|c| handle(db, *c))
                .collect::<Result<_>>()?;
            db.flush_cfs_opt(&handles, &rocksdb::FlushOptions::default())
                .map_err(map_err)?;
            let mut co = CompactOptions::default();
            co.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
            co.set_exclusive_manual_compaction(true);
            for r in ranges {
                db.compact_range_cf_opt(handle(db, r.cf)?, Some(&r.start), Some(&r.end), &co);
            }
            Ok(())
        })?;
        // The flush and the compactions made new table files, logs and a manifest.
        self.sweep();
        Ok(())
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        // The inherent method (inherent methods resolve first): no recursion.
        RocksBackend::checkpoint(self, dir)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

fn map_err(e: rocksdb::Error) -> StoreError {
    let msg = e.into_string();
    if msg.contains("No space left") {
        StoreError::NoSpace(msg)
    } else if msg.starts_with("Corruption") {
        StoreError::Corruption {
            location: "rocksdb".into(),
            detail: msg,
        }
    } else if msg.contains("lock") && msg.contains("LOCK") {
        StoreError::Locked {
            holder: format!("another RocksDB user ({msg})"),
        }
    } else {
        StoreError::Io(msg)
    }
}

/// Takes the exclusive holder lock, or reports who has it.
fn take_holder_lock(dir: &Path) -> Result<File> {
    let path = dir.join(HOLDER_FILE);
    // 0600 like every file of the store, and never through a symbolic link (O_NOFOLLOW
    // answers ELOOP for one): the lock must be on this file, not on one a link names.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(private_fs::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    // A lock can look held for a moment after its holder closed it: a thread of the same
    // process that forked a child keeps the lock's file description alive in the child
    // until the child execs. Such a transient holder is gone within milliseconds; a real
    // one is reported after a quarter of a second.
    let mut attempts = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if attempts < 25 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                let who = who.trim();
                return Err(StoreError::Locked {
                    holder: if who.is_empty() {
                        format!("unknown process (lock file {})", path.display())
                    } else {
                        who.to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
    }
    let program = std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let line = format!(
        "pid {} ({program}), holding since unix time {since}\n",
        std::process::id()
    );
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(line.as_bytes()))
        .and_then(|_| file.sync_all())
        .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(file)
}

/// Ends RocksDB's background thread pool (flush and compaction workers), which outlives
/// every database handle. Call after the last store of the process is closed, e.g. at
/// `C_Finalize`; a later open starts the threads again.
pub fn release_background_threads() {
    if let Ok(mut env) = rocksdb::Env::new() {
        // A limit of zero makes every pool thread exit; the next open raises it again.
        env.set_low_priority_background_threads(0);
        env.set_high_priority_background_threads(0);
        env.set_bottom_priority_background_threads(0);
    }
}
