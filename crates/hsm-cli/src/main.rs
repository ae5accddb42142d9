//! `ferrohsm`: the FerroHSM command-line tool. One file per subcommand under `commands/`.
#![forbid(unsafe_code)]

mod commands;
mod exit;
mod output;
mod secrets;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferrohsm",
    version,
    about = "FerroHSM token administration and store tools"
)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list and administer tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Look inside a store without changing it (works beside the running module).
    Inspect(commands::inspect::InspectArgs),
    /// Back up a live store, verify and restore backups.
    #[command(subcommand)]
    Backup(commands::backup::BackupCommand),
    /// Key lifecycle: versions, rotation, disabling, scheduled destruction, policy.
    #[command(subcommand)]
    Key(commands::key::KeyCli),
    /// Dual control, the SO's side: approvers and the rules that need M of N approvals.
    #[command(subcommand)]
    Quorum(commands::approvals::QuorumCli),
    /// Dual control, the approvers' side: list requests, approve or deny them.
    #[command(subcommand)]
    Approvals(commands::approvals::ApprovalsCli),
    /// See where a store's schema stands, and upgrade it.
    #[command(subcommand)]
    Migrate(commands::migrate::MigrateCommand),
    /// The tamper-evident audit log: verify it offline, read and export its records.
    #[command(subcommand)]
    Audit(commands::audit::AuditCli),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output { json: cli.json };
    // What this run writes to a store it opens is recorded as the CLI's, naming the
    // command (never its arguments: they may name files or labels).
    let _audit = hsm_core::audit::scope("cli", command_name(), None);
    let result = match cli.command {
        Command::Token(c) => commands::token::run(c, &out),
        Command::Inspect(a) => commands::inspect::run(a, &out),
        Command::Backup(c) => commands::backup::run(c, &out),
        Command::Migrate(c) => commands::migrate::run(c, &out),
        Command::Key(c) => commands::key::run(c, &out),
        Command::Quorum(c) => commands::approvals::run_quorum(c, &out),
        Command::Approvals(c) => commands::approvals::run_approvals(c, &out),
        Command::Audit(c) => commands::audit::run(c, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrohsm: {e}");
            ExitCode::from(e.code())
        }
    }
}

/// `ferrohsm token init`, `ferrohsm key rotate`, …: the first two words that are not
/// options (the global `--json` takes no value, and subcommands come before arguments).
fn command_name() -> String {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .take(2)
        .collect();
    format!("ferrohsm {}", words.join(" "))
}
