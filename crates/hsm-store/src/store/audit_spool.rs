//! The spool of key-use records (`[audit] level = "all"`): each record is appended to a
//! small file beside the store (`audit-spool`) with one `write` — in the operating
//! system's cache when the operation answers, so a killed process loses none — and
//! reaches the log in RocksDB in batches: when a checkpoint falls due, before any other
//! write of the log (which must find the records before it in place), when the spool is
//! older than the group-commit interval or large, when the log is read, and when the
//! store closes. A store opened after a crash first moves what its spool holds into the
//! log. The group-commit thread fsyncs the spool file like the log, so a power cut loses
//! no more than it did before.
//!
//! Why: one RocksDB write per record (a write batch, the log's write and the memtable)
//! cost about 4.7 µs on this project's machines — a third of a P-256 signature — where
//! an append here costs one `write` of about 200 bytes.
//!
//! File: a header (`FHSMSPL1`, the store id), then entries `len (4) || token (4) ||
//! seq (8) || leaf hash (32) || record`. Reading stops at the first entry that is cut
//! short or whose record does not hash to its leaf (a torn write after a power cut).

use super::audit::{Head, Staged, Write};
use super::{Store, guard as lock, now};
use crate::audit::{AuditSettings, AwsLc};
use crate::backend::Batch;
use crate::cf::Cf;
use crate::error::{Result, StoreError};
use crate::{keys, records};
use hsm_types::TokenId;
use hsm_types::audit::merkle::{Hash, leaf_hash};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"FHSMSPL1";
const HEADER_LEN: u64 = 8 + 16;
/// A spool this large is moved into the log at once (about 5,000 records).
const LIMIT: usize = 1 << 20;

/// One record waiting in the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Spooled {
    pub token: TokenId,
    pub seq: u64,
    pub leaf: Hash,
    pub bytes: Vec<u8>,
}

pub(super) struct Spool {
    path: PathBuf,
    file: Arc<File>,
    store_id: [u8; 16],
    /// What the file holds past its header, in order.
    pending: Vec<Spooled>,
    bytes: usize,
    since: Option<Instant>,
}

impl Spool {
    /// Opens (or creates) the spool of the store in `dir`; returns it empty and what it
    /// held, for the caller to move into the log before clearing it.
    pub fn open(dir: &Path, store_id: [u8; 16]) -> Result<(Spool, Vec<Spooled>)> {
        let path = dir.join("audit-spool");
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
        // 0600 whatever the umask, like every file of the store; never through a link.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        let mut held = Vec::new();
        file.read_to_end(&mut held).map_err(io)?;
        let found = match held.get(..HEADER_LEN as usize) {
            Some(h) if h[..8] == *MAGIC && h[8..] == store_id => {
                parse(&held[HEADER_LEN as usize..])
            }
            Some(_) => {
                tracing::error!(
                    "{}: not this store's audit spool; set aside, not replayed",
                    path.display()
                );
                let _ = std::fs::rename(&path, path.with_extension("foreign"));
                return Spool::open(dir, store_id);
            }
            None => Vec::new(),
        };
        let mut s = Spool {
            path,
            file: Arc::new(file),
            store_id,
            pending: Vec::new(),
            bytes: 0,
            since: None,
        };
        if held.len() < HEADER_LEN as usize {
            s.clear()?;
        }
        Ok((s, found))
    }

    /// The file, for the group-commit thread's fsync.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    pub fn pending(&self) -> &[Spooled] {
        &self.pending
    }

    /// Appends records with one write; gives them back with the error if it fails.
    pub fn append(
        &mut self,
        records: Vec<Spooled>,
    ) -> std::result::Result<(), (StoreError, Vec<Spooled>)> {
        let mut buf = Vec::with_capacity(records.iter().map(|r| 48 + r.bytes.len()).sum());
        for r in &records {
            buf.extend_from_slice(&((44 + r.bytes.len()) as u32).to_be_bytes());
            buf.extend_from_slice(&r.token.0.to_be_bytes());
            buf.extend_from_slice(&r.seq.to_be_bytes());
            buf.extend_from_slice(&r.leaf);
            buf.extend_from_slice(&r.bytes);
        }
        if let Err(e) = (&*self.file).write_all(&buf) {
            let e = StoreError::Io(format!("{}: {e}", self.path.display()));
            return Err((e, records));
        }
        self.bytes += buf.len();
        self.since.get_or_insert_with(Instant::now);
        self.pending.extend(records);
        Ok(())
    }

    /// Whether the spool should be moved into the log now.
    pub fn due(&self, interval: Duration) -> bool {
        self.bytes >= LIMIT || self.since.is_some_and(|t| t.elapsed() >= interval)
    }

    /// Empties the file (its records are in the log now).
    pub fn clear(&mut self) -> Result<()> {
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", self.path.display()));
        self.file.set_len(0).map_err(io)?;
        let mut f = &*self.file;
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.write_all(MAGIC).map_err(io)?;
        f.write_all(&self.store_id).map_err(io)?;
        self.pending.clear();
        self.bytes = 0;
        self.since = None;
        Ok(())
    }
}

/// The entries of a spool's body, up to the first that is cut short or damaged.
fn parse(mut body: &[u8]) -> Vec<Spooled> {
    let mut out = Vec::new();
    while let Some(len) = body.get(..4) {
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some(e) = body.get(4..4 + len).filter(|_| len >= 44) else {
            tracing::warn!("the audit spool ends in a cut-short entry; it is dropped");
            break;
        };
        let bytes = e[44..].to_vec();
        let leaf: Hash = e[12..44].try_into().expect("32 bytes");
        if leaf_hash::<AwsLc>(&bytes) != leaf {
            tracing::warn!("the audit spool ends in a damaged entry; it is dropped");
            break;
        }
        out.push(Spooled {
            token: TokenId(u32::from_be_bytes(e[..4].try_into().expect("4 bytes"))),
            seq: u64::from_be_bytes(e[4..12].try_into().expect("8 bytes")),
            leaf,
            bytes,
        });
        body = &body[4 + len..];
    }
    out
}

impl Store {
    /// Puts an append's records where they go: into the spool (a record of key use, with
    /// no checkpoint due and the spool not due), else into the log in one batch with
    /// every record the spool held before them and the heads of their tokens.
    pub(super) fn land(
        &self,
        heads: &mut HashMap<TokenId, Head>,
        token: TokenId,
        mut st: Staged,
        mut b: Batch,
        write: Write,
        settings: &AuditSettings,
    ) -> Result<()> {
        let mut spool = lock(&self.audit.spool);
        if write == Write::Grouped
            && !st.signed
            && let Some(sp) = spool.as_mut()
            && !sp.due(settings.group_commit)
        {
            match sp.append(std::mem::take(&mut st.records)) {
                Ok(()) => {
                    heads.insert(token, st.head);
                    self.audit.group.written(&self.kv, settings.group_commit);
                    return Ok(());
                }
                Err((e, records)) => {
                    tracing::warn!("the audit spool: {e}; writing to the log directly");
                    st.records = records;
                }
            }
        }
        let drained = spool.as_ref().is_some_and(|sp| !sp.pending().is_empty());
        if let Some(sp) = spool.as_ref() {
            stage_spooled(&mut b, sp.pending(), heads, token);
        }
        for r in st.records {
            b.put(Cf::Audit, keys::audit::record(token, r.seq), r.bytes);
        }
        b.append(st.batch);
        b.put(
            Cf::Meta,
            keys::meta::audit_head(token),
            records::encode(&st.head),
        );
        match write {
            Write::Synced => self.kv.write(b)?,
            Write::Grouped => {
                self.kv.write_unsynced(b)?;
                self.audit.group.written(&self.kv, settings.group_commit);
            }
        }
        heads.insert(token, st.head);
        if drained && let Some(sp) = spool.as_mut() {
            clear(sp);
        }
        Ok(())
    }

    /// A batch holding what the spool holds (with the heads of its tokens but `except`'s,
    /// whose head the caller writes); [`Store::spool_landed`] once it is written.
    pub(super) fn drain_spool(&self, heads: &HashMap<TokenId, Head>, except: TokenId) -> Batch {
        let mut b = Batch::new();
        if let Some(sp) = lock(&self.audit.spool).as_ref() {
            stage_spooled(&mut b, sp.pending(), heads, except);
        }
        b
    }

    /// The spool's records are in the log.
    pub(super) fn spool_landed(&self) {
        if let Some(sp) = lock(&self.audit.spool).as_mut()
            && !sp.pending().is_empty()
        {
            clear(sp);
        }
    }

    /// Moves what the spool holds into the log (before the log is read, and when the
    /// store closes).
    pub fn flush_audit_spool(&self) -> Result<()> {
        let heads = lock(&self.audit.heads);
        let mut spool = lock(&self.audit.spool);
        let Some(sp) = spool.as_mut().filter(|sp| !sp.pending().is_empty()) else {
            return Ok(());
        };
        let mut b = Batch::new();
        stage_spooled(&mut b, sp.pending(), &heads, TokenId(u32::MAX));
        self.kv.write_unsynced(b)?;
        self.audit
            .group
            .written(&self.kv, self.audit_settings().group_commit);
        clear(sp);
        Ok(())
    }

    /// [`Store::flush_audit_spool`] once the spool is older than the group-commit
    /// interval (a running server's tick).
    pub(super) fn flush_audit_spool_if_due(&self, settings: &AuditSettings) -> Result<()> {
        let due = lock(&self.audit.spool)
            .as_ref()
            .is_some_and(|sp| !sp.pending().is_empty() && sp.due(settings.group_commit));
        if due {
            self.flush_audit_spool()
        } else {
            Ok(())
        }
    }

    /// Opens the spool of the store in `dir`, first moving into the log the records a
    /// process that ended without closing the store left in it.
    pub(super) fn attach_spool(&self, dir: &Path) -> Result<()> {
        let (mut sp, found) = Spool::open(dir, self.store_id)?;
        if !found.is_empty() {
            let n = self.replay_spool(&found)?;
            tracing::info!(
                records = n,
                "records of key use moved from the audit spool into the log"
            );
            sp.clear()?;
        }
        self.audit.group.watch(sp.file());
        *lock(&self.audit.spool) = Some(sp);
        Ok(())
    }

    /// Appends the spooled records each token's log does not have yet, in order; a gap
    /// (a record whose predecessor is missing) stops that token's replay.
    fn replay_spool(&self, found: &[Spooled]) -> Result<usize> {
        let mut heads = lock(&self.audit.heads);
        let mut b = Batch::new();
        let mut moved = 0;
        let mut tokens: Vec<TokenId> = found.iter().map(|r| r.token).collect();
        tokens.dedup();
        tokens.sort_unstable();
        tokens.dedup();
        for t in tokens {
            let mut head = self.read_head(t)?;
            let mut f = head.frontier();
            for r in found.iter().filter(|r| r.token == t && r.seq >= head.size) {
                if r.seq != f.size {
                    tracing::error!(token = t.0, seq = r.seq, "the audit spool skips a record");
                    break;
                }
                f.push::<AwsLc>(r.leaf);
                b.put(Cf::Audit, keys::audit::record(t, r.seq), r.bytes.clone());
                moved += 1;
            }
            if f.size != head.size {
                head.set_frontier(&f);
                if head.pending_since == 0 {
                    head.pending_since = now().max(1);
                }
                b.put(Cf::Meta, keys::meta::audit_head(t), records::encode(&head));
            }
            heads.insert(t, head);
        }
        self.kv.write(b)?;
        Ok(moved)
    }
}

/// Puts `pending`'s records into `b`, and the heads of their tokens but `except`'s.
fn stage_spooled(
    b: &mut Batch,
    pending: &[Spooled],
    heads: &HashMap<TokenId, Head>,
    except: TokenId,
) {
    let mut tokens = Vec::new();
    for r in pending {
        b.put(
            Cf::Audit,
            keys::audit::record(r.token, r.seq),
            r.bytes.clone(),
        );
        if r.token != except && !tokens.contains(&r.token) {
            tokens.push(r.token);
        }
    }
    for t in tokens {
        if let Some(h) = heads.get(&t) {
            b.put(Cf::Meta, keys::meta::audit_head(t), records::encode(h));
        }
    }
}

/// Empties the spool whose records just landed; a failure leaves them there too, and the
/// next open skips what the log already has.
fn clear(sp: &mut Spool) {
    if let Err(e) = sp.clear() {
        tracing::error!("the audit spool could not be emptied: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, body: &[u8]) -> Spooled {
        Spooled {
            token: TokenId(3),
            seq,
            leaf: leaf_hash::<AwsLc>(body),
            bytes: body.to_vec(),
        }
    }

    #[test]
    fn what_was_appended_is_found_again_up_to_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let id = [7u8; 16];
        {
            let (mut s, found) = Spool::open(d.path(), id).unwrap();
            assert!(found.is_empty());
            s.append(vec![rec(0, b"first"), rec(1, b"second")]).unwrap();
            s.append(vec![rec(2, b"third")]).unwrap();
        }
        let path = d.path().join("audit-spool");
        let (_, found) = Spool::open(d.path(), id).unwrap();
        assert_eq!(
            found,
            vec![rec(0, b"first"), rec(1, b"second"), rec(2, b"third")]
        );
        // A power cut tears the last write: the entries before it stay.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut s, found) = Spool::open(d.path(), id).unwrap();
        assert_eq!(found.len(), 2);
        s.clear().unwrap();
        let (_, found) = Spool::open(d.path(), id).unwrap();
        assert!(found.is_empty(), "cleared");
    }

    #[test]
    fn a_damaged_entry_and_another_stores_spool_are_not_replayed() {
        let d = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Spool::open(d.path(), [1; 16]).unwrap();
            s.append(vec![rec(0, b"one"), rec(1, b"two")]).unwrap();
        }
        let path = d.path().join("audit-spool");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, found) = Spool::open(d.path(), [1; 16]).unwrap();
        assert_eq!(found, vec![rec(0, b"one")], "the edited record is dropped");
        let (_, found) = Spool::open(d.path(), [2; 16]).unwrap();
        assert!(found.is_empty());
        assert!(d.path().join("audit-spool.foreign").exists(), "set aside");
    }

    #[test]
    fn the_spool_is_private_and_never_a_link() {
        use std::os::unix::fs::PermissionsExt;
        // Under the process's umask (022 in CI): the mode is asked for, not inherited.
        let d = tempfile::tempdir().unwrap();
        Spool::open(d.path(), [1; 16]).unwrap();
        let mode = std::fs::metadata(d.path().join("audit-spool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", e.path().join("audit-spool")).unwrap();
        assert!(
            Spool::open(e.path(), [1; 16]).is_err(),
            "a link is not followed"
        );
    }
}
