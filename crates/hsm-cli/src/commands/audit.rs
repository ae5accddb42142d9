//! `ferrohsm audit …`: the tamper-evident log (`docs/audit.md`). Everything but
//! `checkpoint --sign` opens the store read-only, beside the running module or server,
//! and needs no PIN: records hold no secret, and checkpoints verify with public keys.

use super::key::pick_token;
use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{read_pin, source};
use base64ct::{Base64, Encoding};
use clap::{Args, Subcommand};
use hsm_core::store::audit::decode_record;
use hsm_core::store::backend::Flow;
use hsm_core::store::{Store, StoreError};
use hsm_core::types::audit::AuditRecord;
use hsm_core::types::{TokenId, UserKind};
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AuditCli {
    /// Check the whole log offline: every record, the Merkle tree, sequence numbers, boot
    /// counters, every checkpoint's signature, and (with --pinned) that the log still
    /// holds a checkpoint you saved earlier. Exit 5 when anything is wrong.
    Verify(VerifyArgs),
    /// The newest records.
    Tail(TailArgs),
    /// One record, by sequence number.
    Show(ShowArgs),
    /// Every record from a sequence number on, as JSON lines.
    Export(ExportArgs),
    /// The newest signed checkpoint (save it to pin the log's state); --sign makes one
    /// now (needs a PIN, and the store not held by another process).
    Checkpoint(CheckpointArgs),
    /// The token's audit public keys (one per token generation), to verify with later.
    Keys(Access),
    /// Find records by time, operation, call, actor, object, key and result, through a
    /// tantivy index rebuilt from the log (a cache: not needed to verify anything).
    Search(super::audit_search::SearchArgs),
}

#[derive(Args)]
pub struct Access {
    /// Store directory (opened read-only).
    #[arg(long)]
    pub(super) store: PathBuf,
    /// Token id (default: the store's only token).
    #[arg(long)]
    pub(super) token: Option<u32>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    access: Access,
    /// A file holding a checkpoint saved earlier (`audit checkpoint > FILE`): the log
    /// must still contain it, unchanged.
    #[arg(long, value_name = "FILE")]
    pinned: Option<PathBuf>,
    /// A file with the audit public keys to trust (`audit keys --json > FILE`, or one
    /// base64 key per line) instead of the ones the store holds.
    #[arg(long, value_name = "FILE")]
    keys: Option<PathBuf>,
}

#[derive(Args)]
pub struct TailArgs {
    #[command(flatten)]
    access: Access,
    /// How many records.
    #[arg(short = 'n', long, default_value_t = 20)]
    count: u64,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    access: Access,
    /// The record's sequence number.
    seq: u64,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    access: Access,
    /// The first sequence number.
    #[arg(long, default_value_t = 0)]
    from: u64,
}

#[derive(Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    access: Access,
    /// Sign a checkpoint of everything recorded so far.
    #[arg(long)]
    sign: bool,
    /// Log in as the SO instead of the user (with --sign).
    #[arg(long)]
    so: bool,
    /// Read the PIN from the first line of this file (with --sign).
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
    /// Read the PIN from this environment variable (with --sign).
    #[arg(long, value_name = "VAR")]
    pin_env: Option<String>,
}

pub(super) fn open(a: &Access) -> CliResult<(Store, TokenId)> {
    let store = Store::open_dir_read_only(&a.store)?;
    let token = pick_token(&store, a.token)?;
    store.token_info(token)?;
    Ok((store, token))
}

pub fn run(cmd: AuditCli, out: &Output) -> CliResult {
    match cmd {
        AuditCli::Verify(a) => verify(a, out),
        AuditCli::Tail(a) => {
            let (store, t) = open(&a.access)?;
            let size = store.audit_size(t)?;
            print_records(&records(&store, t, size.saturating_sub(a.count))?, out);
            Ok(())
        }
        AuditCli::Show(a) => {
            let (store, t) = open(&a.access)?;
            let found = records(&store, t, a.seq)?.into_iter().next();
            match found.filter(|r| r.seq == a.seq) {
                Some(r) => {
                    print_records(&[r], out);
                    Ok(())
                }
                None => Err(CliError::Usage(format!("the log has no record {}", a.seq))),
            }
        }
        AuditCli::Export(a) => export(a),
        AuditCli::Checkpoint(a) => checkpoint(a),
        AuditCli::Keys(a) => keys(a, out),
        AuditCli::Search(a) => super::audit_search::run(a, out),
    }
}

fn records(store: &Store, t: TokenId, from: u64) -> CliResult<Vec<AuditRecord>> {
    let mut out = Vec::new();
    store.audit_records(t, from, &mut |_, b| {
        out.push(decode_record(b)?);
        Ok(Flow::Continue)
    })?;
    Ok(out)
}

pub(super) fn print_records(recs: &[AuditRecord], out: &Output) {
    let rows = recs
        .iter()
        .map(|r| {
            let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
            vec![
                r.seq.to_string(),
                r.time.to_string(),
                format!(
                    "{}{}",
                    r.actor.role,
                    r.actor
                        .session
                        .map_or_else(String::new, |s| format!(" s{s}"))
                ),
                opt(r.actor.pid.map(u64::from)),
                r.op.clone(),
                r.call.clone().unwrap_or_else(|| "-".into()),
                opt(r.object),
                r.mechanism
                    .map_or_else(|| "-".into(), |m| format!("{m:#x}")),
                format!("{:#x}", r.result),
            ]
        })
        .collect();
    out.emit(
        &recs,
        &[
            "SEQ", "TIME", "ACTOR", "PID", "OP", "CALL", "OBJECT", "MECH", "CKR",
        ],
        rows,
    );
}

fn export(a: ExportArgs) -> CliResult {
    let (store, t) = open(&a.access)?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    store.audit_records(t, a.from, &mut |_, b| {
        let r = decode_record(b)?;
        let line = serde_json::to_string(&r).expect("a record serialises");
        if let Err(e) = writeln!(w, "{line}") {
            failed = Some(e);
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    })?;
    if let Some(e) = failed.or_else(|| w.flush().err()) {
        return Err(CliError::Io(format!("writing the export: {e}")));
    }
    Ok(())
}

/// The trusted public keys from a file: `audit keys --json` output or base64 lines.
fn trusted_keys(path: &PathBuf) -> CliResult<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    let bad = |why: String| CliError::Usage(format!("{}: {why}", path.display()));
    let encoded: Vec<String> = match serde_json::from_str::<Vec<KeyOut>>(&text) {
        Ok(keys) => keys.into_iter().map(|k| k.public).collect(),
        Err(_) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let keys: Vec<Vec<u8>> = encoded
        .iter()
        .map(|k| {
            Base64::decode_vec(k)
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| bad(format!("{k:?} is not a base64 Ed25519 public key")))
        })
        .collect::<CliResult<_>>()?;
    if keys.is_empty() {
        return Err(bad("no key in it".into()));
    }
    Ok(keys)
}

fn verify(a: VerifyArgs, out: &Output) -> CliResult {
    let (store, t) = open(&a.access)?;
    let trusted = a.keys.as_ref().map(trusted_keys).transpose()?;
    let pinned = a
        .pinned
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| CliError::Io(format!("cannot read {}: {e}", p.display())))
        })
        .transpose()?;
    let v = store
        .verify_audit(t, trusted.as_deref(), pinned.as_deref())
        .map_err(|e| match e {
            StoreError::Invalid(m) => CliError::Usage(m),
            e => e.into(),
        })?;
    let mut problems: Vec<String> = v.report.findings.iter().map(ToString::to_string).collect();
    problems.extend(v.head.clone());
    if v.pinned_unsigned {
        problems.push("the pinned checkpoint is not signed by the audit key".into());
    }
    if out.json {
        #[derive(serde::Serialize)]
        struct Verdict<'a> {
            origin: &'a str,
            records: u64,
            checkpoints: usize,
            latest_good: Option<u64>,
            keys_from: &'a str,
            problems: &'a [String],
        }
        out.emit(
            &Verdict {
                origin: &v.origin,
                records: v.report.records,
                checkpoints: v.report.checkpoints,
                latest_good: v.report.latest_good,
                keys_from: if v.trusted_keys { "file" } else { "store" },
                problems: &problems,
            },
            &[],
            Vec::new(),
        );
    } else {
        println!("log:         {}", v.origin);
        println!("records:     {}", v.report.records);
        println!("checkpoints: {}", v.report.checkpoints);
        let covered = v.report.latest_good.unwrap_or(0);
        println!("signed over: {covered} of {} records", v.report.records);
        println!(
            "keys:        {}",
            if v.trusted_keys {
                "from the file given"
            } else {
                "from the store (pass --keys to check against keys saved elsewhere)"
            }
        );
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        if problems.is_empty() {
            println!("ok");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::CheckFailed(format!(
            "the audit log failed verification ({} problem{})",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        )))
    }
}

fn checkpoint(a: CheckpointArgs) -> CliResult {
    let note = if a.sign {
        let store = Store::open_dir(&a.access.store)?;
        let t = pick_token(&store, a.access.token)?;
        let (who, what) = if a.so {
            (UserKind::So, "SO PIN")
        } else {
            (UserKind::User, "user PIN")
        };
        let pin = read_pin(what, source(a.pin_file, a.pin_env), false)?;
        let keys = store.login(t, who, &pin)?;
        store.audit_checkpoint(&keys)?
    } else {
        let (store, t) = open(&a.access)?;
        store
            .audit_checkpoints(t)?
            .pop()
            .map(|(_, n)| n)
            .ok_or_else(|| CliError::Usage("the log has no checkpoint yet".into()))?
    };
    print!("{note}");
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyOut {
    generation: u32,
    since: u64,
    public: String,
}

fn keys(a: Access, out: &Output) -> CliResult {
    let (store, t) = open(&a)?;
    let keys: Vec<KeyOut> = store
        .audit_public_keys(t)?
        .into_iter()
        .map(|k| KeyOut {
            generation: k.generation,
            since: k.since,
            public: Base64::encode_string(&k.public),
        })
        .collect();
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                k.generation.to_string(),
                k.since.to_string(),
                k.public.clone(),
            ]
        })
        .collect();
    out.emit(
        &keys,
        &["GENERATION", "SINCE", "PUBLIC KEY (Ed25519, base64)"],
        rows,
    );
    Ok(())
}
