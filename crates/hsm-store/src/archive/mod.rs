//! Backup archives: a consistent snapshot of a live store, encrypted and authenticated
//! as a whole. Normative layout: `schema/backup.md`.
//!
//! The snapshot is logical: every record of every column family, read from a RocksDB
//! secondary instance (consistent as of its catch-up, whole write batches only), so it can
//! be taken while the module holds the store. Records stay sealed as they are on disk; the
//! archive adds a second, whole-archive AEAD layer under a key from a passphrase (Argon2id)
//! or a key file.

mod chunks;

use crate::backend::rocks::{OpenMode, RocksBackend};
use crate::backend::{Batch, Flow, KvBackend};
use crate::cf::Cf;
use crate::crypto::{self, KdfParams, Key32};
use crate::error::{Result, StoreError};
use crate::private_fs;
use crate::store::{Store, now};
use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use aws_lc_rs::digest::{Context, SHA256};
use chunks::{SealedReader, SealedWriter};
use hsm_types::{SecretBytes, SecretString};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

pub const MAGIC: &[u8; 16] = b"FERROHSM-BACKUP\0";
pub const FORMAT: u32 = 1;
const CHUNK: usize = 1 << 20;
const MAX_HEADER: usize = 64 * 1024;
const RECORDS_PER_FRAME: usize = 4096;

/// Long work reports through this; the CLI draws a progress bar.
pub trait Progress {
    fn start(&self, what: &str, total: u64);
    fn advance(&self, n: u64);
    fn finish(&self);
}

/// For callers that want no progress output.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// What unlocks an archive.
pub enum BackupSecret {
    Passphrase(SecretString),
    /// The contents of a key file (at least 32 bytes of randomness).
    KeyFile(SecretBytes),
}

/// Cleartext header: how to derive the key; nothing about the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    key_source: String,
    kdf: Option<KdfParams>,
    #[serde(with = "serde_bytes")]
    salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    nonce_prefix: Vec<u8>,
    chunk_size: u32,
    /// HMAC-SHA256 of a fixed string under the archive key, truncated: tells a wrong key
    /// apart from a damaged archive without decrypting anything.
    #[serde(with = "serde_bytes")]
    key_check: Vec<u8>,
}

fn key_check(key: &Key32) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose());
    aws_lc_rs::hmac::sign(&k, b"ferrohsm-backup-key-check").as_ref()[..16].to_vec()
}

/// The manifest: the first frame inside the encryption.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    pub store_id: String,
    pub schema_version: u32,
    pub created_at: u64,
    pub tokens: Vec<ManifestToken>,
    pub families: Vec<ManifestFamily>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestToken {
    pub id: u32,
    pub label: String,
    pub serial: String,
    pub objects: u64,
}

/// One column family's records: count and SHA-256 over `(key length, key, value length,
/// value)` of every record in key order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFamily {
    pub name: String,
    pub records: u64,
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
enum Frame {
    Manifest(Manifest),
    Records {
        family: String,
        #[serde(with = "records_bytes")]
        records: Vec<(Vec<u8>, Vec<u8>)>,
    },
    End,
}

mod records_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::ByteBuf;

    pub fn serialize<S: Serializer>(v: &[(Vec<u8>, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let as_bufs: Vec<(&serde_bytes::Bytes, &serde_bytes::Bytes)> = v
            .iter()
            .map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v)))
            .collect();
        as_bufs.serialize(s)
    }
    /// Key-value pairs, as a frame carries them.
    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Records, D::Error> {
        let v: Vec<(ByteBuf, ByteBuf)> = Vec::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
            .collect())
    }
}

fn bad(what: impl Into<String>) -> StoreError {
    StoreError::BackupInvalid(what.into())
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        StoreError::NoSpace(format!("{}: {e}", path.display()))
    } else {
        StoreError::Io(format!("{}: {e}", path.display()))
    }
}

fn derive_key(secret: &BackupSecret, h: &Header) -> Result<Key32> {
    match (secret, h.key_source.as_str()) {
        (BackupSecret::Passphrase(p), "passphrase") => {
            let kdf = check_header_kdf(h)?;
            crypto::pin_key(&kdf, &h.salt, p.expose().as_bytes())
        }
        (BackupSecret::KeyFile(k), "keyfile") => {
            if k.len() < 32 {
                return Err(StoreError::BackupKey(
                    "a key file needs at least 32 bytes".into(),
                ));
            }
            let base =
                Key32::from_bytes(&aws_lc_rs::digest::digest(&SHA256, k.expose()).as_ref()[..32])?;
            let mut info = b"backup-key".to_vec();
            info.extend_from_slice(&h.salt);
            Ok(base.derive(&info))
        }
        (_, source) => Err(StoreError::BackupKey(format!(
            "this archive is locked with a {source}, not with what was given"
        ))),
    }
}

/// The passphrase cost of a header, refused when outside the caps or below the backup
/// floor. The header is authenticated only by the key the cost derives, so this must run
/// before the derivation: a crafted cost is answered without any work.
fn check_header_kdf(h: &Header) -> Result<KdfParams> {
    let kdf = h
        .kdf
        .ok_or_else(|| bad("passphrase archive without KDF parameters"))?;
    kdf.check()
        .map_err(|e| bad(format!("the archive header asks for an impossible {e}")))?;
    if !kdf.meets_backup_floor() {
        return Err(bad(format!(
            "the archive's passphrase cost (Argon2id m={} KiB t={}) is below the floor for \
             backups (m=19456 KiB t=2, or an equivalent OWASP minimum); this build does not \
             write such archives, so it was weakened or made elsewhere",
            kdf.m_kib, kdf.t_cost
        )));
    }
    Ok(kdf)
}

fn family_digest_update(ctx: &mut Context, k: &[u8], v: &[u8]) {
    ctx.update(&(k.len() as u32).to_be_bytes());
    ctx.update(k);
    ctx.update(&(v.len() as u32).to_be_bytes());
    ctx.update(v);
}

/// Writes an archive of the store in `store_dir` (which may be open in another process)
/// to `out`, through a temporary file renamed into place. Refuses to overwrite.
pub fn create(
    store_dir: &Path,
    out: &Path,
    secret: &BackupSecret,
    kdf: KdfParams,
    progress: &dyn Progress,
) -> Result<Manifest> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(already_exists(out));
    }
    if matches!(secret, BackupSecret::Passphrase(_)) {
        check_passphrase_cost(&kdf)?;
    }
    let store = Store::open_dir_read_only(store_dir)?;
    let kv = store.backend();
    // Pass 1: counts and digests (the secondary instance does not move between passes).
    let (families, total) = family_digests(kv)?;
    let manifest = manifest_of(&store, families)?;
    let (header, key) = new_header(secret, kdf)?;
    let header_bytes = rmp_serde::to_vec_named(&header).map_err(|e| bad(e.to_string()))?;
    // A fresh name nobody can predict, created exclusively (never through a link, never
    // over a file), 0600.
    let tmp = private_fs::unpredictable_sibling(out, "partial")?;
    let file = private_fs::create_new_private_file(&tmp).map_err(|e| io(&tmp, e))?;
    let result = (|| {
        let mut sw = start_archive(file, &tmp, &header_bytes, &key, header.nonce_prefix.clone())?;
        sw.frame(&Frame::Manifest(manifest.clone()))?;
        progress.start("backing up", total);
        write_records(&mut sw, kv, progress)?;
        sw.frame(&Frame::End)?;
        let w = sw.finish()?;
        let file = w.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        progress.finish();
        Ok(())
    })();
    let result = result.and_then(|()| install(&tmp, out));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(out);
    Ok(manifest)
}

/// Refuses a passphrase cost below the floor for backups.
fn check_passphrase_cost(kdf: &KdfParams) -> Result<()> {
    kdf.validate()?;
    if !kdf.meets_backup_floor() {
        return Err(StoreError::Invalid(format!(
            "Argon2id m={} KiB t={} is below the floor for a backup passphrase: use at \
             least m=19456 KiB with t=2 (or m=47104 with t=1, m=12288 with t=3, m=9216 \
             with t=4, m=7168 with t=5); the default is m={} t={}",
            kdf.m_kib,
            kdf.t_cost,
            KdfParams::DEFAULT.m_kib,
            KdfParams::DEFAULT.t_cost
        )));
    }
    Ok(())
}

/// Every family's count and digest, and the total count, for the manifest.
fn family_digests(kv: &dyn KvBackend) -> Result<(Vec<ManifestFamily>, u64)> {
    let mut families = Vec::new();
    let mut total = 0u64;
    for cf in Cf::ALL {
        let mut ctx = Context::new(&SHA256);
        let mut n = 0u64;
        kv.scan_prefix(cf, &[], &mut |k, v| {
            family_digest_update(&mut ctx, k, v);
            n += 1;
            Ok(Flow::Continue)
        })?;
        total += n;
        families.push(ManifestFamily {
            name: cf.name().into(),
            records: n,
            sha256: hex::encode(ctx.finish().as_ref()),
        });
    }
    Ok((families, total))
}

fn manifest_of(store: &Store, families: Vec<ManifestFamily>) -> Result<Manifest> {
    let mut tokens = Vec::new();
    for t in store.tokens()? {
        tokens.push(ManifestToken {
            id: t.id.0,
            label: t.label,
            serial: t.serial,
            objects: store.object_count(t.id)?,
        });
    }
    Ok(Manifest {
        format: FORMAT,
        store_id: store.store_id_hex(),
        schema_version: store.schema_version(),
        created_at: now(),
        tokens,
        families,
    })
}

/// A header with fresh salt and nonce prefix, and the archive key it derives.
fn new_header(secret: &BackupSecret, kdf: KdfParams) -> Result<(Header, Key32)> {
    let mut salt = vec![0u8; 16];
    crypto::fill_random(&mut salt)?;
    let mut nonce_prefix = vec![0u8; 8];
    crypto::fill_random(&mut nonce_prefix)?;
    let header = Header {
        format: FORMAT,
        key_source: match secret {
            BackupSecret::Passphrase(_) => "passphrase".into(),
            BackupSecret::KeyFile(_) => "keyfile".into(),
        },
        kdf: matches!(secret, BackupSecret::Passphrase(_)).then_some(kdf),
        salt,
        nonce_prefix,
        chunk_size: CHUNK as u32,
        key_check: Vec::new(),
    };
    let key = derive_key(secret, &header)?;
    let header = Header {
        key_check: key_check(&key),
        ..header
    };
    Ok((header, key))
}

/// Writes the cleartext start of an archive (magic, header) and returns the writer of
/// the sealed chunks that follow.
fn start_archive(
    file: std::fs::File,
    path: &Path,
    header_bytes: &[u8],
    key: &Key32,
    nonce_prefix: Vec<u8>,
) -> Result<SealedWriter<BufWriter<std::fs::File>>> {
    let mut w = BufWriter::new(file);
    w.write_all(MAGIC).map_err(|e| io(path, e))?;
    w.write_all(&(header_bytes.len() as u32).to_be_bytes())
        .map_err(|e| io(path, e))?;
    w.write_all(header_bytes).map_err(|e| io(path, e))?;
    Ok(SealedWriter::new(
        w,
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| bad("key"))?),
        header_hash(header_bytes),
        nonce_prefix,
    ))
}

/// Every record of every family, in frames of up to [`RECORDS_PER_FRAME`].
fn write_records<W: Write>(
    sw: &mut SealedWriter<W>,
    kv: &dyn KvBackend,
    progress: &dyn Progress,
) -> Result<()> {
    for cf in Cf::ALL {
        let mut batch = Vec::with_capacity(RECORDS_PER_FRAME);
        let mut err = None;
        kv.scan_prefix(cf, &[], &mut |k, v| {
            batch.push((k.to_vec(), v.to_vec()));
            if batch.len() == RECORDS_PER_FRAME {
                let records = std::mem::take(&mut batch);
                progress.advance(records.len() as u64);
                if let Err(e) = sw.frame(&Frame::Records {
                    family: cf.name().into(),
                    records,
                }) {
                    err = Some(e);
                    return Ok(Flow::Stop);
                }
            }
            Ok(Flow::Continue)
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if !batch.is_empty() {
            progress.advance(batch.len() as u64);
            sw.frame(&Frame::Records {
                family: cf.name().into(),
                records: batch,
            })?;
        }
    }
    Ok(())
}

/// Moves the finished archive to `out`.
fn install(tmp: &Path, out: &Path) -> Result<()> {
    // Refuses to overwrite even what appeared at `out` since `create` checked it.
    private_fs::rename_noreplace(tmp, out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            already_exists(out)
        } else {
            io(out, e)
        }
    })
}

fn already_exists(out: &Path) -> StoreError {
    StoreError::Invalid(format!(
        "{} already exists; choose a new file",
        out.display()
    ))
}

fn sync_parent(p: &Path) {
    if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
}

fn header_hash(header_bytes: &[u8]) -> Vec<u8> {
    let mut ctx = Context::new(&SHA256);
    ctx.update(MAGIC);
    ctx.update(header_bytes);
    ctx.finish().as_ref().to_vec()
}

fn open_reader(
    file: &Path,
    secret: &BackupSecret,
) -> Result<SealedReader<BufReader<std::fs::File>>> {
    let f = std::fs::File::open(file).map_err(|e| io(file, e))?;
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 16];
    r.read_exact(&mut magic).map_err(|_| {
        bad(format!(
            "{} is not a FerroHSM backup (too short)",
            file.display()
        ))
    })?;
    if &magic != MAGIC {
        return Err(bad(format!("{} is not a FerroHSM backup", file.display())));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|_| bad("truncated header"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return Err(bad("header too long"));
    }
    let mut header_bytes = vec![0u8; len];
    r.read_exact(&mut header_bytes)
        .map_err(|_| bad("truncated header"))?;
    let header: Header = rmp_serde::from_slice(&header_bytes)
        .map_err(|e| bad(format!("header does not decode: {e}")))?;
    if header.format != FORMAT {
        return Err(bad(format!(
            "archive format {} is not supported by this build (it reads {FORMAT})",
            header.format
        )));
    }
    if header.nonce_prefix.len() != 8 || header.salt.len() != 16 {
        return Err(bad("header has malformed salt or nonce"));
    }
    let key = derive_key(secret, &header)?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(&key_check(&key), &header.key_check)
        .is_err()
    {
        return Err(StoreError::BackupKey(
            "wrong passphrase or key file for this archive".into(),
        ));
    }
    Ok(SealedReader::new(
        r,
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| bad("key"))?),
        header_hash(&header_bytes),
        header.nonce_prefix,
    ))
}

/// Reads the whole archive, checking every chunk, the frame order, and every family's
/// count and digest against the manifest; `sink` receives the records.
fn read_all(
    file: &Path,
    secret: &BackupSecret,
    progress: &dyn Progress,
    mut sink: impl FnMut(Cf, Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>,
) -> Result<Manifest> {
    let mut r = open_reader(file, secret)?;
    let Frame::Manifest(manifest) = r.frame()? else {
        return Err(bad("the archive does not start with a manifest"));
    };
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "manifest format {} is not supported",
            manifest.format
        )));
    }
    let total = manifest.families.iter().map(|f| f.records).sum();
    progress.start("reading backup", total);
    let mut digests: Vec<(Context, u64)> =
        Cf::ALL.iter().map(|_| (Context::new(&SHA256), 0)).collect();
    let mut last_family = 0usize;
    loop {
        match r.frame()? {
            Frame::End => break,
            Frame::Manifest(_) => return Err(bad("a second manifest inside the archive")),
            Frame::Records { family, records } => {
                let idx = Cf::ALL
                    .iter()
                    .position(|c| c.name() == family)
                    .ok_or_else(|| bad(format!("unknown column family {family:?}")))?;
                if idx < last_family {
                    return Err(bad(format!("records of {family} out of order")));
                }
                last_family = idx;
                let (ctx, n) = &mut digests[idx];
                for (k, v) in &records {
                    family_digest_update(ctx, k, v);
                }
                *n += records.len() as u64;
                progress.advance(records.len() as u64);
                sink(Cf::ALL[idx], records)?;
            }
        }
    }
    // Nothing may follow the end frame but the end of the final chunk.
    if !r.at_end()? {
        return Err(bad("data after the end of the archive"));
    }
    for (cf, (ctx, n)) in Cf::ALL.iter().zip(digests) {
        let want = manifest
            .families
            .iter()
            .find(|f| f.name == cf.name())
            .ok_or_else(|| bad(format!("manifest lacks {}", cf.name())))?;
        let got = hex::encode(ctx.finish().as_ref());
        if want.records != n || want.sha256 != got {
            return Err(bad(format!(
                "{}: {} records with digest {got}, the manifest says {} with {}",
                cf.name(),
                n,
                want.records,
                want.sha256
            )));
        }
    }
    progress.finish();
    Ok(manifest)
}

/// Checks an archive end to end without restoring it.
pub fn verify(file: &Path, secret: &BackupSecret, progress: &dyn Progress) -> Result<Manifest> {
    read_all(file, secret, progress, |_, _| Ok(()))
}

/// The manifest only (the first frame; the rest is not read).
pub fn manifest(file: &Path, secret: &BackupSecret) -> Result<Manifest> {
    let mut r = open_reader(file, secret)?;
    match r.frame()? {
        Frame::Manifest(m) => Ok(m),
        _ => Err(bad("the archive does not start with a manifest")),
    }
}

/// Restores into `target`, which must not exist or be an empty directory: records go into
/// a new store in a temporary directory beside it, which is renamed into place only after
/// the whole archive verified. On any failure the target is left as it was.
pub fn restore(
    file: &Path,
    secret: &BackupSecret,
    target: &Path,
    progress: &dyn Progress,
) -> Result<Manifest> {
    if target.exists() {
        let empty = std::fs::read_dir(target)
            .map_err(|e| io(target, e))?
            .next()
            .is_none();
        if !empty {
            return Err(StoreError::Invalid(format!(
                "restore target {} is not empty",
                target.display()
            )));
        }
    }
    // A new directory under a name nobody can predict, made exclusively and 0700: nothing
    // that is already there (a crashed run's leftovers, a planted link) is ever removed or
    // followed. The store written into it gets the store's permissions (`private_fs`).
    let tmp = private_fs::unpredictable_sibling(target, "partial")?;
    private_fs::create_private_dir(&tmp).map_err(|e| io(&tmp, e))?;
    let result = (|| {
        let kv = RocksBackend::open(&tmp, OpenMode::ReadWrite)?;
        let manifest = read_all(file, secret, progress, |cf, records| {
            let mut b = Batch::new();
            for (k, v) in records {
                b.put(cf, k, v);
            }
            kv.write(b)
        })?;
        // Settle everything into table files before the store is handed over.
        kv.purge(&[])?;
        drop(kv);
        let _ = std::fs::remove_file(tmp.join(crate::backend::rocks::HOLDER_FILE));
        Ok(manifest)
    })();
    let result = result.and_then(|m| {
        // The target was checked empty above; `remove_dir` removes only an empty
        // directory (and no link), and the rename replaces nothing that appeared since.
        if std::fs::symlink_metadata(target).is_ok() {
            std::fs::remove_dir(target).map_err(|e| io(target, e))?;
        }
        private_fs::rename_noreplace(&tmp, target).map_err(|e| io(target, e))?;
        Ok(m)
    });
    match result {
        Ok(m) => {
            sync_parent(target);
            Ok(m)
        }
        Err(e) => {
            // Ours: made exclusively above, so this removes nothing of anyone else's.
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}
