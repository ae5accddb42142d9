//! The audit log in the store (schema 5). Each token has one log: records in the `audit`
//! family by sequence number, each written in the same batch as the change it describes,
//! so a crash leaves both or neither; the log head in `meta` (size, Merkle frontier, what
//! the newest checkpoint covers); checkpoints signed with the token's audit key, an
//! Ed25519 key sealed under the master key, so only a logged-in process signs one. The
//! public keys are in clear beside it, for offline verification.
//!
//! Records are plain MessagePack: they hold no secret, PIN or label, so `ferrohsm audit
//! verify` needs no PIN. Appends are serialised per store by the head lock, held across
//! the write so sequence numbers reach the disk in order.

use super::audit_spool::{Spool, Spooled};
use super::group_commit::GroupCommit;
use super::{Store, TokenKeys, guard as lock, now};
use crate::audit::{self, AuditLevel, AuditSettings, AwsLc, Event, open_checkpoint};
use crate::backend::{Batch, Flow};
use crate::cf::Cf;
use crate::crypto::{self, Purpose, aad};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::records;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use hsm_types::TokenId;
use hsm_types::audit::checkpoint::Checkpoint;
use hsm_types::audit::merkle::{Frontier, Hash, leaf_hash};
use hsm_types::audit::{AuditRecordRef, RECORD_FORMAT, Report, Signed};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use zeroize::Zeroize;

/// A token's log head (`meta`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Head {
    pub(super) size: u64,
    /// The frontier's subtree roots, 32 bytes each, largest first.
    #[serde(with = "serde_bytes")]
    subtrees: Vec<u8>,
    /// Records the newest checkpoint covers.
    checkpointed: u64,
    /// When the oldest record no checkpoint covers was written (0: none).
    pub(super) pending_since: u64,
}

impl Head {
    pub(super) fn frontier(&self) -> Frontier {
        Frontier {
            size: self.size,
            subtrees: self
                .subtrees
                .chunks_exact(32)
                .map(|c| Hash::try_from(c).expect("32-byte chunks"))
                .collect(),
        }
    }

    pub(super) fn set_frontier(&mut self, f: &Frontier) {
        self.size = f.size;
        self.subtrees = f.subtrees.concat();
    }

    fn root(&self) -> Hash {
        self.frontier().root::<AwsLc>()
    }
}

/// The token's audit keys, one per token generation (`C_InitToken` on a token makes a
/// new master key, so a new audit key; the log goes on).
#[derive(Default, Serialize, Deserialize)]
struct KeyHistory {
    keys: Vec<KeyRecord>,
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    generation: u32,
    /// The log size of the first checkpoint this key signed.
    since: u64,
    #[serde(with = "serde_bytes")]
    public: Vec<u8>,
    /// The PKCS#8 key pair, sealed under the master key's wrapping key.
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

/// One of a token's audit public keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditKeyInfo {
    pub generation: u32,
    pub since: u64,
    pub public: Vec<u8>,
}

/// What the process wrote to the log since it opened the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    pub records: u64,
    pub checkpoints: u64,
    /// Records that could not be written (the operation went on unless auditing is
    /// required), and group commits whose fsync failed.
    pub failures: u64,
    /// Group commits: fsyncs that made records of key use durable.
    pub syncs: u64,
}

/// An append's records, the new head, and what goes in its batch beside them (a
/// checkpoint).
pub(super) struct Staged {
    pub head: Head,
    pub records: Vec<Spooled>,
    pub batch: Batch,
    pub signed: bool,
}

pub(super) struct AuditState {
    settings: RwLock<AuditSettings>,
    pub(super) heads: Mutex<HashMap<TokenId, Head>>,
    boot: u64,
    /// This process, asked once when the store opened (a forked child opens its own
    /// store): the actor of records made outside a served client's thread.
    pid: u32,
    /// Makes records of key use durable off the caller's thread.
    pub(super) group: GroupCommit,
    /// Records of key use not in the log yet (`store/audit_spool.rs`); none for a store
    /// in memory or opened read-only. Locked after `heads`, never before.
    pub(super) spool: Mutex<Option<Spool>>,
    records: AtomicU64,
    checkpoints: AtomicU64,
    failures: AtomicU64,
}

impl AuditState {
    pub(super) fn new(boot: u64) -> AuditState {
        AuditState {
            settings: RwLock::new(AuditSettings::default()),
            heads: Mutex::new(HashMap::new()),
            boot,
            pid: std::process::id(),
            group: GroupCommit::new(),
            spool: Mutex::new(None),
            records: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

/// A log's verification: the model's findings plus what only the store can tell.
#[derive(Clone, Debug)]
pub struct AuditVerification {
    pub origin: String,
    pub report: Report,
    /// Where the head in `meta` disagrees with the records (records cut off or added
    /// after the newest checkpoint).
    pub head: Option<String>,
    /// Whether the checkpoints were checked with keys the caller gave (else the store's).
    pub trusted_keys: bool,
    /// A pinned checkpoint whose own signature does not verify.
    pub pinned_unsigned: bool,
}

impl AuditVerification {
    pub fn ok(&self) -> bool {
        self.report.findings.is_empty() && self.head.is_none() && !self.pinned_unsigned
    }
}

/// What [`Store::append`] does with the batch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    Synced,
    /// A record of key use: group commit.
    Grouped,
}

impl Store {
    /// What the log records from now on.
    pub fn set_audit(&self, settings: AuditSettings) {
        *self
            .audit
            .settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = settings;
    }

    pub fn audit_settings(&self) -> AuditSettings {
        self.audit
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn audit_stats(&self) -> AuditStats {
        let (syncs, sync_failures) = self.audit.group.stats();
        AuditStats {
            records: self.audit.records.load(Ordering::Relaxed),
            checkpoints: self.audit.checkpoints.load(Ordering::Relaxed),
            failures: self.audit.failures.load(Ordering::Relaxed) + sync_failures,
            syncs,
        }
    }

    /// The name a token's checkpoints are signed under.
    pub fn audit_origin(&self, token: TokenId) -> String {
        format!("ferrohsm/{}/token-{}", self.store_id_hex(), token.0)
    }

    /// This run's boot counter.
    pub fn boot(&self) -> u64 {
        self.audit.boot
    }

    /// Writes `b` with the records of `events` in it (management level).
    pub(super) fn write_audited(
        &self,
        token: TokenId,
        keys: Option<&TokenKeys>,
        b: Batch,
        events: Vec<Event>,
    ) -> Result<()> {
        self.append(token, keys, b, events, Write::Synced, false)
    }

    /// [`Store::write_audited`] with a checkpoint signed in the same batch (a token's
    /// creation, so its audit key exists from its first record; its re-initialisation,
    /// so the old key covers the log up to it).
    pub(super) fn write_audited_checkpointed(
        &self,
        keys: &TokenKeys,
        b: Batch,
        events: Vec<Event>,
    ) -> Result<()> {
        self.append(keys.token, Some(keys), b, events, Write::Synced, true)
    }

    /// Records a migration from schema `from` in every token's log (the logs of stores
    /// older than schema 5 begin with it). A failure is logged: the migration stands.
    pub(super) fn record_migration(&self, from: u32) {
        let op = format!("store.migrate.{from}-{}", crate::migrate::CURRENT);
        for t in self.tokens().unwrap_or_default() {
            if let Err(e) =
                self.write_audited(t.id, None, Batch::new(), vec![Event::new(op.clone())])
            {
                tracing::error!(token = t.id.0, "the migration is not in the audit log: {e}");
            }
        }
    }

    /// Records an operation that wrote nothing else — a refused one (a denied destroy, a
    /// wrong PIN, a template error) or one that only reads (a key wrapped out): a record
    /// of its own, unless it is a refusal and the store recorded one in this scope.
    pub fn audit_alone(&self, token: TokenId, keys: Option<&TokenKeys>, ev: Event) -> Result<()> {
        if ev.result != 0 && audit::refusal_recorded_in_scope() {
            return Ok(());
        }
        self.append(token, keys, Batch::new(), vec![ev], Write::Synced, false)
    }

    /// Records a use of a key (sign, verify, encrypt, decrypt) at level `all`; nothing at
    /// the other levels.
    pub fn audit_use(&self, keys: &TokenKeys, ev: Event) -> Result<()> {
        if self.audit_settings().level != AuditLevel::All {
            return Ok(());
        }
        self.append(
            keys.token,
            Some(keys),
            Batch::new(),
            vec![ev],
            Write::Grouped,
            false,
        )
    }

    /// Signs a checkpoint now if the newest one is older than the configured interval
    /// (the server calls this every second for each logged-in token).
    pub fn audit_tick(&self, keys: &TokenKeys) -> Result<()> {
        let settings = self.audit_settings();
        let due = {
            let heads = lock(&self.audit.heads);
            let head = match heads.get(&keys.token) {
                Some(h) => h.clone(),
                None => self.read_head(keys.token)?,
            };
            keys.has_master() && checkpoint_due(&head, &settings, now())
        };
        if due {
            self.audit_checkpoint(keys).map(drop)
        } else {
            self.flush_audit_spool_if_due(&settings)
        }
    }

    /// Signs a checkpoint of everything recorded so far (if anything is new) and returns
    /// the newest checkpoint. Needs the master key.
    pub fn audit_checkpoint(&self, keys: &TokenKeys) -> Result<String> {
        keys.master()?;
        let mut heads = lock(&self.audit.heads);
        let mut head = match heads.get(&keys.token) {
            Some(h) => h.clone(),
            None => self.read_head(keys.token)?,
        };
        if head.size > head.checkpointed || head.size == 0 {
            // The spooled records the checkpoint covers land in its batch.
            let mut b = self.drain_spool(&heads, keys.token);
            self.stage_checkpoint(keys, &mut head, &mut b)?;
            b.put(
                Cf::Meta,
                keys::meta::audit_head(keys.token),
                records::encode(&head),
            );
            self.kv.write(b)?;
            self.spool_landed();
            heads.insert(keys.token, head.clone());
            self.audit.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        drop(heads);
        self.kv
            .get(
                Cf::Audit,
                &keys::audit::checkpoint(keys.token, head.checkpointed),
            )?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .ok_or_else(|| StoreError::corruption("audit", "the newest checkpoint is missing"))
    }

    /// Appends the records of `events` to `b` and writes it; `force_checkpoint` signs one in
    /// the same batch (token creation, so its key exists from the first record).
    fn append(
        &self,
        token: TokenId,
        keys: Option<&TokenKeys>,
        b: Batch,
        events: Vec<Event>,
        write: Write,
        force_checkpoint: bool,
    ) -> Result<()> {
        let settings = self.audit_settings();
        if settings.level == AuditLevel::Off || events.is_empty() {
            return if b.is_empty() {
                Ok(())
            } else {
                self.kv.write(b)
            };
        }
        if write == Write::Grouped {
            self.audit.group.check(settings.required)?;
        }
        let n = events.len() as u64;
        let refusal = events.iter().any(|e| e.result != 0);
        let mut heads = lock(&self.audit.heads);
        let staged = heads
            .get(&token)
            .cloned()
            .map_or_else(|| self.read_head(token), Ok)
            .and_then(|head| {
                self.stage_audit(token, head, keys, events, &settings, force_checkpoint)
            });
        match staged {
            Ok(st) => {
                let signed = st.signed;
                self.land(&mut heads, token, st, b, write, &settings)?;
                drop(heads);
                if refusal {
                    audit::mark_refusal_recorded();
                }
                self.audit.records.fetch_add(n, Ordering::Relaxed);
                self.audit
                    .checkpoints
                    .fetch_add(signed as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                drop(heads);
                self.audit.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(token = token.0, "audit record not written: {e}");
                if settings.required {
                    return Err(StoreError::AuditUnavailable(e.to_string()));
                }
                if b.is_empty() {
                    Ok(())
                } else {
                    self.kv.write(b)
                }
            }
        }
    }

    /// The records, the new head, and a checkpoint when due (with the master key).
    fn stage_audit(
        &self,
        token: TokenId,
        mut head: Head,
        keys: Option<&TokenKeys>,
        events: Vec<Event>,
        settings: &AuditSettings,
        force_checkpoint: bool,
    ) -> Result<Staged> {
        let time = now();
        let mut b = Batch::new();
        let mut records = Vec::with_capacity(events.len());
        let mut f = head.frontier();
        audit::with_current(|ctx| {
            let actor = ctx.actor_ref(self.audit.pid);
            for ev in &events {
                // Borrowed: the encoding is the owned AuditRecord's, byte for byte.
                let rec = AuditRecordRef {
                    format: RECORD_FORMAT,
                    seq: f.size,
                    boot: self.audit.boot,
                    time,
                    actor,
                    op: &ev.op,
                    call: ctx.call.as_deref(),
                    object: ev.object.or(ctx.object).map(|o| o.0),
                    version: ev.version.map(|v| v.0),
                    key: ev.key,
                    request: ev.request,
                    mechanism: ev.mechanism.or(ctx.mechanism),
                    result: ev.result,
                };
                let bytes = records::encode(&rec);
                let leaf = leaf_hash::<AwsLc>(&bytes);
                f.push::<AwsLc>(leaf);
                records.push(Spooled {
                    token,
                    seq: rec.seq,
                    leaf,
                    bytes,
                });
            }
        });
        head.set_frontier(&f);
        if head.pending_since == 0 {
            head.pending_since = time.max(1);
        }
        let mut signed = false;
        if let Some(k) = keys.filter(|k| k.has_master())
            && (force_checkpoint || checkpoint_due(&head, settings, time))
        {
            self.stage_checkpoint(k, &mut head, &mut b)?;
            signed = true;
        }
        // The head goes into the batch only if the records go to the log now (land);
        // encoding it is a quarter of a spooled record's cost.
        Ok(Staged {
            head,
            records,
            batch: b,
            signed,
        })
    }

    pub(super) fn read_head(&self, token: TokenId) -> Result<Head> {
        let head: Head = match self.kv.get(Cf::Meta, &keys::meta::audit_head(token))? {
            Some(v) => records::decode(&v, || format!("meta/audit_head/{token}"))?,
            None => Head::default(),
        };
        if !head.subtrees.len().is_multiple_of(32) {
            return Err(StoreError::corruption(
                format!("meta/audit_head/{token}"),
                "the frontier is not a whole number of hashes",
            ));
        }
        Ok(head)
    }

    /// Signs a checkpoint of `head` into `b` with the key of this token generation,
    /// making that key first if the token has none yet.
    fn stage_checkpoint(&self, keys: &TokenKeys, head: &mut Head, b: &mut Batch) -> Result<()> {
        let signer = self.audit_signer(keys, head.size, b)?;
        let c = Checkpoint {
            origin: self.audit_origin(keys.token),
            size: head.size,
            root: head.root(),
        };
        let note = audit::sign_checkpoint(&c, &signer);
        b.put(
            Cf::Audit,
            keys::audit::checkpoint(keys.token, c.size),
            note.into_bytes(),
        );
        head.checkpointed = head.size;
        head.pending_since = 0;
        Ok(())
    }

    fn audit_key_aad(&self, keys: &TokenKeys, generation: u32) -> Vec<u8> {
        aad(
            Purpose::AuditKey,
            &self.store_id,
            &[keys.token.0 as u64, generation as u64],
        )
    }

    fn key_history(&self, token: TokenId) -> Result<KeyHistory> {
        match self.kv.get(Cf::Meta, &keys::meta::audit_keys(token))? {
            Some(v) => records::decode(&v, || format!("meta/audit_keys/{token}")),
            None => Ok(KeyHistory::default()),
        }
    }

    /// The audit key of this token generation, made (and staged into `b`) if missing.
    fn audit_signer(&self, keys: &TokenKeys, size: u64, b: &mut Batch) -> Result<Ed25519KeyPair> {
        let m = keys.master()?;
        let mut history = self.key_history(keys.token)?;
        let aad = self.audit_key_aad(keys, keys.generation);
        if let Some(k) = history
            .keys
            .iter()
            .find(|k| k.generation == keys.generation)
        {
            let loc = || {
                format!(
                    "meta/audit_keys/{} (generation {})",
                    keys.token, k.generation
                )
            };
            let mut pkcs8 = crypto::open(&m.wrap, &aad, &k.sealed, loc)?;
            let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
                .map_err(|_| StoreError::corruption(loc(), "not an Ed25519 key"));
            pkcs8.zeroize();
            return pair;
        }
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| StoreError::Io("cannot generate the audit key".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|_| StoreError::Io("cannot generate the audit key".into()))?;
        history.keys.push(KeyRecord {
            generation: keys.generation,
            since: size,
            public: pair.public_key().as_ref().to_vec(),
            sealed: crypto::seal(&m.wrap, &aad, doc.as_ref())?,
        });
        b.put(
            Cf::Meta,
            keys::meta::audit_keys(keys.token),
            records::encode(&history),
        );
        Ok(pair)
    }

    /// A token's audit public keys, oldest first.
    pub fn audit_public_keys(&self, token: TokenId) -> Result<Vec<AuditKeyInfo>> {
        Ok(self
            .key_history(token)?
            .keys
            .into_iter()
            .map(|k| AuditKeyInfo {
                generation: k.generation,
                since: k.since,
                public: k.public,
            })
            .collect())
    }

    /// When the oldest record no checkpoint covers was written (`None`: all covered).
    pub fn audit_unsigned_since(&self, token: TokenId) -> Result<Option<u64>> {
        let heads = lock(&self.audit.heads);
        let head = match heads.get(&token) {
            Some(h) => h.clone(),
            None => self.read_head(token)?,
        };
        Ok((head.size > head.checkpointed).then_some(head.pending_since))
    }

    /// How many records a token's log holds (by its head).
    pub fn audit_size(&self, token: TokenId) -> Result<u64> {
        let heads = lock(&self.audit.heads);
        match heads.get(&token) {
            Some(h) => Ok(h.size),
            None => self.read_head(token).map(|h| h.size),
        }
    }

    /// Visits a token's records from sequence number `from`, as stored (the leaf bytes).
    pub fn audit_records(
        &self,
        token: TokenId,
        from: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<Flow>,
    ) -> Result<()> {
        self.flush_audit_spool()?;
        self.kv.scan_prefix(
            Cf::Audit,
            &keys::audit::record_prefix(token),
            &mut |k, v| match keys::audit::decode_number(k) {
                Some(n) if n < from => Ok(Flow::Continue),
                Some(n) => visit(n, v),
                None => Err(StoreError::corruption(
                    "audit",
                    "a record key of the wrong size",
                )),
            },
        )
    }

    /// One record as stored.
    pub fn audit_record(&self, token: TokenId, seq: u64) -> Result<Option<Vec<u8>>> {
        self.flush_audit_spool()?;
        self.kv.get(Cf::Audit, &keys::audit::record(token, seq))
    }

    /// A token's signed checkpoints by tree size, as stored.
    pub fn audit_checkpoints(&self, token: TokenId) -> Result<Vec<(u64, String)>> {
        self.flush_audit_spool()?;
        let mut out = Vec::new();
        self.kv.scan_prefix(
            Cf::Audit,
            &keys::audit::checkpoint_prefix(token),
            &mut |k, v| {
                let n = keys::audit::decode_number(k).ok_or_else(|| {
                    StoreError::corruption("audit", "a checkpoint key of the wrong size")
                })?;
                out.push((n, String::from_utf8_lossy(v).into_owned()));
                Ok(Flow::Continue)
            },
        )?;
        Ok(out)
    }

    /// Verifies a token's log: every record, every checkpoint's signature (with
    /// `trusted` public keys if given, else the ones the store holds), the tree, the
    /// sequence and boot counters, the head, and consistency with a `pinned` checkpoint.
    pub fn verify_audit(
        &self,
        token: TokenId,
        trusted: Option<&[Vec<u8>]>,
        pinned: Option<&str>,
    ) -> Result<AuditVerification> {
        let origin = self.audit_origin(token);
        let stored: Vec<Vec<u8>> = self
            .audit_public_keys(token)?
            .into_iter()
            .map(|k| k.public)
            .collect();
        let public = trusted.map_or(stored.as_slice(), |t| t);
        let mut leaves = Vec::new();
        self.audit_records(token, 0, &mut |_, v| {
            leaves.push(v.to_vec());
            Ok(Flow::Continue)
        })?;
        let mut opened = Vec::new();
        let mut unreadable = Vec::new();
        for (size, note) in self.audit_checkpoints(token)? {
            match open_checkpoint(&note, public) {
                Ok(c) => opened.push(c),
                Err(e) => unreadable.push((size, e.0)),
            }
        }
        let (pin, pinned_unsigned) = match pinned.map(|p| open_checkpoint(p, public)) {
            None => (None, false),
            Some(Ok((c, ok))) => (Some(c), !ok),
            Some(Err(e)) => {
                return Err(StoreError::Invalid(format!(
                    "the pinned checkpoint: {}",
                    e.0
                )));
            }
        };
        let signed: Vec<Signed<'_>> = opened
            .iter()
            .map(|(c, ok)| Signed {
                checkpoint: c,
                signature_ok: *ok,
            })
            .collect();
        let mut report = hsm_types::audit::verify::<AwsLc>(&origin, &leaves, &signed, pin.as_ref());
        for (size, _) in unreadable {
            report
                .findings
                .push(hsm_types::audit::Finding::BadSignature { size });
        }
        let head = self.read_head(token)?;
        let mut f = Frontier::default();
        for l in &leaves {
            f.push::<AwsLc>(leaf_hash::<AwsLc>(l));
        }
        let head = (head.size != f.size || head.root() != f.root::<AwsLc>()).then(|| {
            format!(
                "the log head says {} records with root {}, the records give {} with root {}",
                head.size,
                hex::encode(head.root()),
                f.size,
                hex::encode(f.root::<AwsLc>())
            )
        });
        Ok(AuditVerification {
            origin,
            report,
            head,
            trusted_keys: trusted.is_some(),
            pinned_unsigned,
        })
    }
}

fn checkpoint_due(head: &Head, s: &AuditSettings, now: u64) -> bool {
    head.size > head.checkpointed
        && (head.size - head.checkpointed >= s.checkpoint_every.max(1)
            || now.saturating_sub(head.pending_since) >= s.checkpoint_interval.as_secs())
}
