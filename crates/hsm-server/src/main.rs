//! `ferrohsm-server`: the one process that opens a store, serving its token to any number
//! of client processes (the PKCS#11 module in `auto` or `client` mode) over a Unix socket.
//! See `docs/server.md`.

#![forbid(unsafe_code)]

mod admin;
mod conn;
mod logging;
mod serve;
mod socket;
mod start;

use clap::{Parser, Subcommand};
use hsm_core::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit code of a server that found the store held by another process.
pub const EXIT_STORE_HELD: u8 = 3;

#[derive(Parser)]
#[command(
    name = "ferrohsm-server",
    version,
    about = "Serve a FerroHSM store to many processes over a Unix socket",
    long_about = "Opens the store named by the configuration file (it is then the store's one \
                  writer) and serves its token over a Unix socket to the PKCS#11 module of \
                  every process of the allowed users. The module in mode \"auto\" (the \
                  default) runs `ferrohsm-server start` itself when no server answers; run \
                  it yourself (or from systemd) for mode \"client\".\n\n\
                  Exit codes: 0 stopped cleanly, 1 failed, 2 bad usage, 3 the store is held \
                  by another process."
)]
struct Cli {
    /// The configuration file (default: FERROHSM_CONF, then ~/.config/ferrohsm/ferrohsm.toml,
    /// then /etc/ferrohsm/ferrohsm.toml). The store, the socket and who may connect come
    /// from there.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve in the foreground until SIGTERM or SIGINT (the default; what systemd runs).
    Serve {
        /// Exit after this many seconds with no client (0: never, the default here).
        #[arg(long, default_value_t = 0)]
        idle_exit: u64,
        /// Write the log to this file instead of standard error.
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
    /// Make sure a server answers for this store: start one in the background unless one
    /// already does, wait until it answers, and exit (what the module runs in mode "auto").
    /// It exits after `[server] idle_exit_secs` without clients.
    Start,
    /// Say whether a server answers on the store's socket (exit 0) or not (exit 1).
    Status,
    /// Stop the store's server (SIGTERM: its clients' sessions end) and wait until it is
    /// gone.
    Stop,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, path) = match load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrohsm-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve {
        idle_exit: 0,
        log_file: None,
    }) {
        Command::Serve {
            idle_exit,
            log_file,
        } => serve::run(config, idle_exit, log_file),
        Command::Start => start::run(&config, &path),
        Command::Status => start::status(&config),
        Command::Stop => start::stop(&config),
    }
}

fn load(given: Option<&std::path::Path>) -> Result<(Config, PathBuf), String> {
    match given {
        Some(p) => Config::load(p).map(|c| (c, p.to_path_buf())),
        None => Config::discover(),
    }
    .map_err(|e| e.to_string())
}
