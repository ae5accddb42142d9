//! `ferrohsm audit search`: the log's records through a tantivy index (`hsm-audit-search`)
//! kept in the user's cache directory, brought up to date from the log before each
//! search. The index holds what the records hold (no secret, PIN or label) and is never
//! used to verify anything: `audit verify` reads the log itself.

use super::audit::{Access, open, print_records};
use crate::exit::{CliError, CliResult};
use crate::output::Output;
use clap::Args;
use hsm_audit_search::{AuditIndex, Filter};
use hsm_core::store::audit::decode_record;
use hsm_core::store::backend::Flow;
use std::path::PathBuf;

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    access: Access,
    /// The index directory (default: ~/.cache/ferrohsm/audit-index/STORE-ID-token-N).
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// Records at or after this time: seconds since the Unix epoch, or an age such as
    /// 30m, 12h, 7d.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Records before this time (same forms).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// What the store did: object.create, login.user, key.rotate, approval.approve, …
    #[arg(long)]
    op: Option<String>,
    /// The call: C_SignInit, ferrohsm key rotate, …
    #[arg(long)]
    call: Option<String>,
    /// The actor's role: so, user, public, cli, local.
    #[arg(long)]
    role: Option<String>,
    #[arg(long)]
    session: Option<u64>,
    /// The client process.
    #[arg(long)]
    pid: Option<u64>,
    /// The object id.
    #[arg(long)]
    object: Option<u64>,
    /// The key id (`ferrohsm key list`).
    #[arg(long)]
    key: Option<u64>,
    /// The CKR_* value answered (0x… or decimal).
    #[arg(long)]
    result: Option<String>,
    /// Only refused calls (a result other than CKR_OK).
    #[arg(long)]
    failed: bool,
    /// Show at most this many matches (the newest).
    #[arg(short = 'n', long, default_value_t = 50)]
    limit: usize,
}

/// Seconds since the epoch, from `1733241600` or an age like `30m`.
fn when(s: &str, now: u64) -> CliResult<u64> {
    if let Ok(t) = s.parse::<u64>() {
        return Ok(t);
    }
    let bad = || {
        CliError::Usage(format!(
            "{s:?}: give seconds since the epoch or an age (30m, 12h, 7d)"
        ))
    };
    let (n, unit) = s.split_at(s.len().checked_sub(1).ok_or_else(bad)?);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(now.saturating_sub(n.saturating_mul(secs)))
}

fn number(s: &str) -> CliResult<u64> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| CliError::Usage(format!("{s:?} is not a number")))
}

fn default_index(store_id: &str, token: u32) -> CliResult<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| CliError::Usage("no HOME: give --index DIR".into()))?;
    Ok(base
        .join("ferrohsm/audit-index")
        .join(format!("{store_id}-token-{token}")))
}

pub fn run(a: SearchArgs, out: &Output) -> CliResult {
    let (store, t) = open(&a.access)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let filter = Filter {
        from: a.from.as_deref().map(|s| when(s, now)).transpose()?,
        until: a.until.as_deref().map(|s| when(s, now)).transpose()?,
        op: a.op,
        call: a.call,
        role: a.role,
        session: a.session,
        pid: a.pid,
        object: a.object,
        key: a.key,
        result: a.result.as_deref().map(number).transpose()?,
        failed: a.failed,
    };
    let dir = match a.index {
        Some(d) => d,
        None => default_index(&store.store_id_hex(), t.0)?,
    };
    let search_err = |e: hsm_audit_search::SearchError| CliError::Io(e.to_string());
    let size = store.audit_size(t)?;
    let mut index = AuditIndex::open(&dir, &store.audit_origin(t), size).map_err(search_err)?;
    let mut fresh = Vec::new();
    store.audit_records(t, index.covered(), &mut |_, b| {
        fresh.push(decode_record(b)?);
        Ok(Flow::Continue)
    })?;
    index.add(fresh).map_err(search_err)?;
    let seqs = index.search(&filter).map_err(search_err)?;
    let shown = &seqs[seqs.len().saturating_sub(a.limit)..];
    let mut records = Vec::with_capacity(shown.len());
    for seq in shown {
        if let Some(b) = store.audit_record(t, *seq)? {
            records.push(decode_record(&b)?);
        }
    }
    eprintln!(
        "{} matching record{} (showing {})",
        seqs.len(),
        if seqs.len() == 1 { "" } else { "s" },
        records.len()
    );
    print_records(&records, out);
    Ok(())
}
