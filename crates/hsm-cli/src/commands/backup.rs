//! `ferrohsm backup …`: consistent, encrypted archives of a live store; verification,
//! restore into a new directory, and the manifest.

use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{read_pin, source};
use clap::{Args, Subcommand};
use hsm_core::store::archive::{self, BackupSecret, Manifest, Progress};
use hsm_core::store::{KdfParams, Store};
use hsm_core::types::SecretBytes;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Write an encrypted, authenticated archive of a store (also while the module has it open).
    Create(CreateArgs),
    /// Check an archive end to end without restoring it.
    Verify(VerifyArgs),
    /// Restore an archive into a new, empty directory, then check the result.
    Restore(RestoreArgs),
    /// Print an archive's manifest.
    Show(ShowArgs),
}

/// Where the archive key comes from: a passphrase (file, environment or prompt) or a key file.
#[derive(Args, Clone)]
pub struct SecretArgs {
    /// Read the passphrase from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "key_file")]
    passphrase_file: Option<PathBuf>,
    /// Read the passphrase from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "key_file")]
    passphrase_env: Option<String>,
    /// Use this file's contents (at least 32 random bytes) as the key instead of a passphrase.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// No progress bar (for scripts and pipes).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// Archive to write (must not exist).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    secret: SecretArgs,
    /// Argon2id memory cost in KiB for the passphrase key.
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_kib)]
    kdf_memory_kib: u32,
    /// Argon2id passes for the passphrase key.
    #[arg(long, default_value_t = KdfParams::DEFAULT.t_cost)]
    kdf_iterations: u32,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The archive.
    file: PathBuf,
    /// Also require that the archive was taken of this store.
    #[arg(long)]
    store: Option<PathBuf>,
    #[command(flatten)]
    secret: SecretArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The archive.
    file: PathBuf,
    /// New store directory: must not exist or be empty.
    #[arg(long)]
    store: PathBuf,
    #[command(flatten)]
    secret: SecretArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The archive.
    file: PathBuf,
    #[command(flatten)]
    secret: SecretArgs,
}

pub fn run(cmd: BackupCommand, out: &Output) -> CliResult {
    match cmd {
        BackupCommand::Create(a) => create(a, out),
        BackupCommand::Verify(a) => verify(a, out),
        BackupCommand::Restore(a) => restore(a, out),
        BackupCommand::Show(a) => show(a, out),
    }
}

fn secret(a: &SecretArgs, confirm: bool) -> CliResult<BackupSecret> {
    if let Some(f) = &a.key_file {
        let bytes = std::fs::read(f)
            .map_err(|e| CliError::Io(format!("cannot read key file {}: {e}", f.display())))?;
        if bytes.len() < 32 {
            return Err(CliError::Usage(format!(
                "key file {} holds {} bytes; it needs at least 32",
                f.display(),
                bytes.len()
            )));
        }
        return Ok(BackupSecret::KeyFile(SecretBytes::new(bytes)));
    }
    let p = read_pin(
        "backup passphrase",
        source(a.passphrase_file.clone(), a.passphrase_env.clone()),
        confirm,
    )?;
    if p.len() < 8 {
        return Err(CliError::Usage(
            "a backup passphrase needs at least 8 characters".into(),
        ));
    }
    Ok(BackupSecret::Passphrase(p))
}

/// An indicatif progress bar on a terminal, nothing otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(a: &SecretArgs) -> Bar {
        if a.no_progress || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        Bar(Some(indicatif::ProgressBar::new(0)))
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>16} [{bar:40}] {pos}/{len} records ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(what.to_owned());
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn emit_manifest(out: &Output, m: &Manifest, extra: &[(&str, String)]) {
    #[derive(serde::Serialize)]
    struct Shown<'a> {
        manifest: &'a Manifest,
        #[serde(flatten)]
        extra: std::collections::BTreeMap<String, String>,
    }
    let mut rows = vec![
        vec!["store id".into(), m.store_id.clone()],
        vec!["schema version".into(), m.schema_version.to_string()],
        vec!["created (unix)".into(), m.created_at.to_string()],
    ];
    for t in &m.tokens {
        rows.push(vec![
            format!("token {}", t.id),
            format!("{} (serial {}), {} objects", t.label, t.serial, t.objects),
        ]);
    }
    for f in &m.families {
        rows.push(vec![
            format!("family {}", f.name),
            format!("{} records, sha256 {}", f.records, f.sha256),
        ]);
    }
    for (k, v) in extra {
        rows.push(vec![(*k).into(), v.clone()]);
    }
    let extra = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    out.emit(&Shown { manifest: m, extra }, &["FIELD", "VALUE"], rows);
}

fn create(a: CreateArgs, out: &Output) -> CliResult {
    let s = secret(&a.secret, true)?;
    let kdf = KdfParams {
        m_kib: a.kdf_memory_kib,
        t_cost: a.kdf_iterations,
        p_cost: 1,
    };
    kdf.validate()?;
    let m = archive::create(&a.store, &a.out, &s, kdf, &Bar::new(&a.secret))?;
    emit_manifest(out, &m, &[("archive", a.out.display().to_string())]);
    Ok(())
}

fn verify(a: VerifyArgs, out: &Output) -> CliResult {
    let s = secret(&a.secret, false)?;
    let m = archive::verify(&a.file, &s, &Bar::new(&a.secret))?;
    if let Some(dir) = &a.store {
        let store = Store::open_dir_read_only(dir)?;
        if store.store_id_hex() != m.store_id {
            return Err(CliError::Store(hsm_core::store::StoreError::BackupInvalid(
                format!(
                    "the archive is of store {}, not of {} (store {})",
                    m.store_id,
                    dir.display(),
                    store.store_id_hex()
                ),
            )));
        }
    }
    emit_manifest(
        out,
        &m,
        &[("verified", "every chunk, record count and digest".into())],
    );
    Ok(())
}

/// Runs the store and token checks on a restored store; problems fail the command.
fn check_restored(dir: &Path) -> CliResult<usize> {
    let store = Store::open_dir_read_only(dir)?;
    let mut problems: Vec<String> = store
        .check_store()?
        .into_iter()
        .map(|p| format!("{}: {}", p.location, p.problem))
        .collect();
    let mut objects = 0;
    for t in store.tokens()? {
        let keys = store.public_access(t.id)?;
        let r = store.check_token(&keys)?;
        objects += r.objects as usize;
        problems.extend(
            r.problems
                .into_iter()
                .map(|p| format!("{}: {}", p.location, p.problem)),
        );
    }
    if problems.is_empty() {
        Ok(objects)
    } else {
        Err(CliError::Store(hsm_core::store::StoreError::BackupInvalid(
            format!(
                "the restored store at {} fails its check:\n  {}",
                dir.display(),
                problems.join("\n  ")
            ),
        )))
    }
}

fn restore(a: RestoreArgs, out: &Output) -> CliResult {
    let s = secret(&a.secret, false)?;
    let m = archive::restore(&a.file, &s, &a.store, &Bar::new(&a.secret))?;
    let objects = check_restored(&a.store)?;
    emit_manifest(
        out,
        &m,
        &[
            ("restored to", a.store.display().to_string()),
            ("check", format!("clean ({objects} objects)")),
        ],
    );
    Ok(())
}

fn show(a: ShowArgs, out: &Output) -> CliResult {
    let s = secret(&a.secret, false)?;
    let m = archive::manifest(&a.file, &s)?;
    emit_manifest(out, &m, &[]);
    Ok(())
}
