//! `ferrohsm inspect summary`: what a store holds, counted through its indexes.

use super::{Access, needs_pin_hint, render};
use crate::exit::{CliError, CliResult};
use crate::output::{Output, table};
use hsm_core::store::{Store, TokenCounts, TokenInfo};
use serde::Serialize;
use std::path::Path;

#[derive(clap::Args)]
pub(super) struct SummaryArgs {
    #[command(flatten)]
    access: Access,
}

#[derive(Serialize)]
struct Summary {
    store: String,
    store_id: String,
    schema_version: u32,
    /// Sum of the sizes of the files in the store directory.
    size_on_disk: u64,
    tokens: Vec<TokenSummary>,
}

#[derive(Serialize)]
struct TokenSummary {
    id: u32,
    label: String,
    serial: String,
    /// Whether the user PIN was given, so private objects are in the per-class counts.
    with_user_pin: bool,
    #[serde(flatten)]
    counts: TokenCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

pub(super) fn run(dir: &Path, store: &Store, a: SummaryArgs, out: &Output) -> CliResult {
    let tokens = a
        .access
        .tokens(store)?
        .into_iter()
        .map(|t| token_summary(store, &a.access, t))
        .collect::<CliResult<Vec<_>>>()?;
    let s = Summary {
        store: dir.display().to_string(),
        store_id: store.store_id_hex(),
        schema_version: store.schema_version(),
        size_on_disk: size_on_disk(dir)?,
        tokens,
    };
    if out.json {
        out.emit(&s, &[], Vec::new());
        return Ok(());
    }
    print!(
        "{}",
        render::pairs(&[
            ("store", s.store.clone()),
            ("store id", s.store_id.clone()),
            ("schema version", s.schema_version.to_string()),
            ("size on disk", human_size(s.size_on_disk)),
        ])
    );
    println!();
    print!("{}", token_table(&s.tokens));
    for t in &s.tokens {
        if let Some(n) = &t.note {
            println!("note: {n}");
        }
    }
    Ok(())
}

/// One token's counts, with a note when private objects could not be counted by class.
fn token_summary(store: &Store, access: &Access, t: TokenInfo) -> CliResult<TokenSummary> {
    let keys = access.keys(store, t.id)?;
    let counts = store.counts(&keys)?;
    let with_user_pin = keys.logged_in().is_some();
    let note = (!with_user_pin && counts.private_objects > 0).then(|| {
        format!(
            "token {}: by class and by key type count public objects only, not the {} \
             private ones ({})",
            t.id,
            counts.private_objects,
            needs_pin_hint()
        )
    });
    Ok(TokenSummary {
        id: t.id.0,
        label: t.label,
        serial: t.serial,
        with_user_pin,
        counts,
        note,
    })
}

/// The tokens as a table.
fn token_table(tokens: &[TokenSummary]) -> String {
    let joined = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.label.clone(),
                t.serial.clone(),
                t.counts.objects.to_string(),
                t.counts.private_objects.to_string(),
                t.counts.versions.to_string(),
                joined(&t.counts.by_class),
                joined(&t.counts.by_key_type),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &[
            "TOKEN",
            "LABEL",
            "SERIAL",
            "OBJECTS",
            "PRIVATE",
            "VERSIONS",
            "BY CLASS",
            "BY KEY TYPE",
        ],
        &rows,
    )
}

/// Bytes in every file under `dir` (RocksDB keeps a flat directory; walk it anyway).
fn size_on_disk(dir: &Path) -> CliResult<u64> {
    let io = |e: std::io::Error| CliError::Io(format!("cannot measure {}: {e}", dir.display()));
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io)? {
            let e = e.map_err(io)?;
            let meta = match e.metadata() {
                Ok(m) => m,
                // The module may delete a table file between listing and measuring.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_naturally() {
        assert_eq!(super::human_size(10), "10 bytes");
        assert_eq!(super::human_size(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(super::human_size(3 << 20), "3.0 MiB (3145728 bytes)");
    }
}
