//! `ferrohsm inspect check`: opens every sealed record it has a key for, walks version
//! chains, compares indexes with records both ways. Exit 0 only when all is clean, 5 when
//! problems were found (after printing them).

use super::{Access, needs_pin_hint};
use crate::exit::{CliError, CliResult};
use crate::output::{Output, table};
use hsm_core::store::{CheckReport, Problem, Store};
use serde::Serialize;
use std::path::Path;

#[derive(clap::Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    access: Access,
}

#[derive(Serialize)]
struct Report {
    store: String,
    clean: bool,
    /// Problems in total, store-wide and per token.
    problems: usize,
    /// Schema version, store id, records that belong to no token.
    store_problems: Vec<Problem>,
    tokens: Vec<TokenReport>,
}

#[derive(Serialize)]
struct TokenReport {
    token: u32,
    label: String,
    /// Whether private objects' attribute records were opened too.
    with_user_pin: bool,
    #[serde(flatten)]
    report: CheckReport,
}

pub(super) fn run(dir: &Path, store: &Store, a: CheckArgs, out: &Output) -> CliResult {
    let store_problems = store.check_store()?;
    let mut tokens = Vec::new();
    for t in a.access.tokens(store)? {
        let keys = a.access.keys(store, t.id)?;
        tokens.push(TokenReport {
            token: t.id.0,
            label: t.label,
            with_user_pin: keys.logged_in().is_some(),
            report: store.check_token(&keys)?,
        });
    }
    let problems = store_problems.len()
        + tokens
            .iter()
            .map(|t| t.report.problems.len())
            .sum::<usize>();
    let report = Report {
        store: dir.display().to_string(),
        clean: problems == 0,
        problems,
        store_problems,
        tokens,
    };
    if out.json {
        out.emit(&report, &[], Vec::new());
    } else {
        print_table(&report);
    }
    if problems > 0 {
        return Err(CliError::CheckFailed(format!(
            "{problems} problem{} found in {}",
            if problems == 1 { "" } else { "s" },
            dir.display()
        )));
    }
    Ok(())
}

fn print_table(r: &Report) {
    let rows: Vec<Vec<String>> = r
        .store_problems
        .iter()
        .chain(r.tokens.iter().flat_map(|t| &t.report.problems))
        .map(|p| vec![p.location.clone(), p.problem.clone()])
        .collect();
    if !rows.is_empty() {
        print!("{}", table(&["LOCATION", "PROBLEM"], &rows));
        println!();
    }
    for t in &r.tokens {
        let c = &t.report;
        let mut line = format!(
            "token {} ({}): {} objects, {} versions, {} records opened, {} problems",
            t.token,
            t.label,
            c.objects,
            c.versions,
            c.records_opened,
            c.problems.len()
        );
        if c.private_unverified > 0 {
            line.push_str(&format!(
                "; {} private attribute records not verified without the user PIN ({})",
                c.private_unverified,
                needs_pin_hint()
            ));
        }
        println!("{line}");
    }
    if !r.store_problems.is_empty() {
        println!("store: {} problems", r.store_problems.len());
    }
    if r.clean {
        println!("clean");
    } else {
        println!("{} problems found", r.problems);
    }
}
