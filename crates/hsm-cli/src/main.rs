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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output { json: cli.json };
    let result = match cli.command {
        Command::Token(c) => commands::token::run(c, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrohsm: {e}");
            ExitCode::from(e.code())
        }
    }
}
