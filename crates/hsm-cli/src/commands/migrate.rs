//! `ferrohsm migrate`: where a store's schema stands, and upgrading it on purpose.

use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{read_pin, source};
use clap::{Args, Subcommand};
use hsm_core::store::backend::{self, OpenMode};
use hsm_core::store::migrate::{self, Status};
use hsm_core::store::{Store, StoreError};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Show the store's schema version and the steps this build would run (read-only;
    /// works beside the running module).
    Status(StoreArgs),
    /// Upgrade the store to this build's schema, after a RocksDB checkpoint of the old one.
    /// Needs the store for writing: nothing else may have it open.
    Run(RunArgs),
}

#[derive(Args)]
pub struct StoreArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
}

#[derive(Args)]
pub struct RunArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// Where to put the checkpoint of the store as it was (default: beside the store,
    /// `<store>.pre-migrate-v<N>`). Must not exist.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The SO PIN, from the first line of this file. Schema 1 → 2 binds every object
    /// header to its token's master key, which only a PIN opens; the PIN is checked
    /// against every token of the store (and counted like a login).
    #[arg(long, conflicts_with = "so_pin_env")]
    so_pin_file: Option<PathBuf>,
    /// The SO PIN, from this environment variable.
    #[arg(long)]
    so_pin_env: Option<String>,
}

pub fn run(cmd: MigrateCommand, out: &Output) -> CliResult {
    match cmd {
        MigrateCommand::Status(a) => status(&a.store, out),
        MigrateCommand::Run(a) => migrate_run(a, out),
    }
}

fn not_a_store(dir: &Path) -> impl Fn(StoreError) -> CliError + '_ {
    move |e| match e {
        StoreError::NotAStore => {
            CliError::Usage(format!("{} is not a FerroHSM store", dir.display()))
        }
        e => e.into(),
    }
}

#[derive(serde::Serialize)]
struct Report<'a> {
    store: String,
    #[serde(flatten)]
    status: &'a Status,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
}

fn state(s: &Status) -> &'static str {
    if s.pending.is_empty() {
        "up to date"
    } else {
        "migration pending"
    }
}

fn emit(out: &Output, store: &Path, s: &Status, state: &'static str, checkpoint: Option<&Path>) {
    let report = Report {
        store: store.display().to_string(),
        status: s,
        state,
        checkpoint: checkpoint.map(|c| c.display().to_string()),
    };
    let mut rows = vec![
        vec!["store".into(), report.store.clone()],
        vec!["schema".into(), format!("v{}", s.found)],
        vec!["this ferrohsm".into(), format!("v{}", s.current)],
        vec!["state".into(), state.into()],
    ];
    for p in &s.pending {
        rows.push(vec![
            "step".into(),
            format!("v{} -> v{}: {}", p.from, p.to, p.title),
        ]);
    }
    if let Some(c) = &report.checkpoint {
        rows.push(vec!["checkpoint".into(), c.clone()]);
    }
    out.emit(&report, &["FIELD", "VALUE"], rows);
}

fn status(dir: &Path, out: &Output) -> CliResult {
    // A read-only open answers NotAStore for a directory without a store.
    let kv = backend::open_dir(dir, OpenMode::ReadOnly).map_err(not_a_store(dir))?;
    let s = migrate::status(kv.as_ref()).map_err(not_a_store(dir))?;
    emit(out, dir, &s, state(&s), None);
    Ok(())
}

fn migrate_run(a: RunArgs, out: &Output) -> CliResult {
    // A read-write open would create a store where there is none: check first.
    if !a.store.join("CURRENT").exists() {
        return Err(not_a_store(&a.store)(StoreError::NotAStore));
    }
    // The writer's lock first: the module (or anything else) holding the store is named.
    let kv = backend::open_dir(&a.store, OpenMode::ReadWrite).map_err(not_a_store(&a.store))?;
    let s = migrate::status(kv.as_ref()).map_err(not_a_store(&a.store))?;
    if s.pending.is_empty() {
        emit(out, &a.store, &s, "up to date: nothing to do", None);
        return Ok(());
    }
    let checkpoint = match a.checkpoint {
        Some(c) => c,
        None => {
            let name = a
                .store
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "store".into());
            a.store
                .with_file_name(format!("{name}.pre-migrate-v{}", s.found))
        }
    };
    if checkpoint.exists() {
        return Err(CliError::Usage(format!(
            "{} exists: remove it or name another with --checkpoint",
            checkpoint.display()
        )));
    }
    // Read before the checkpoint: a missing PIN leaves nothing behind.
    let pin = if s.found <= migrate::NEEDS_SO_PIN_FROM {
        Some(read_pin(
            "SO PIN",
            source(a.so_pin_file, a.so_pin_env),
            false,
        )?)
    } else {
        None
    };
    kv.checkpoint(&checkpoint)?;
    // Each step runs in one durable batch (the PIN step with all its bindings); the
    // report lists the steps that ran from the version found.
    let store = match pin {
        Some(pin) => Store::upgrade_with_so_pin(kv, &pin)?.0,
        None => Store::open(kv)?,
    };
    debug_assert_eq!(store.schema_version(), migrate::CURRENT);
    emit(out, &a.store, &s, "migrated", Some(&checkpoint));
    Ok(())
}
