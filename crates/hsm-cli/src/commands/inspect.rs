//! `ferrohsm inspect …`: read-only views of a store, also beside the running module. One
//! file per subcommand under `inspect/`; this one holds what they share: opening the
//! store, choosing the token, and the user PIN that unlocks private objects.

mod check;
mod objects;
mod render;
mod show;
mod summary;
mod versions;

use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{self, read_pin};
use clap::{Args, Subcommand};
use hsm_core::store::{Store, TokenInfo, TokenKeys};
use hsm_core::types::{SecretString, TokenId, UserKind};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct InspectArgs {
    /// Store directory (opened read-only: nothing is written, no lock is taken).
    #[arg(long)]
    store: PathBuf,
    #[command(subcommand)]
    command: InspectCommand,
}

#[derive(Subcommand)]
enum InspectCommand {
    /// Schema version, store id, size on disk, and per-token object counts.
    Summary(summary::SummaryArgs),
    /// List objects, filtered through the store's indexes.
    Objects(objects::ObjectsArgs),
    /// Every attribute of one object (key material is never shown).
    Show(show::ShowArgs),
    /// The version history of one object.
    Versions(versions::VersionsArgs),
    /// Verify every record, version chain and index entry; exit 5 on problems.
    Check(check::CheckArgs),
}

/// Which token, and the user PIN that adds private objects. Shared by every subcommand.
#[derive(Args)]
struct Access {
    /// Token id (default: the store's only token).
    #[arg(long, value_name = "N")]
    token: Option<u32>,
    /// Read the user PIN from the first line of this file (adds private objects).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["user_pin_env", "pin_prompt"])]
    user_pin_file: Option<PathBuf>,
    /// Read the user PIN from this environment variable (adds private objects).
    #[arg(long, value_name = "VAR", conflicts_with = "pin_prompt")]
    user_pin_env: Option<String>,
    /// Prompt for the user PIN on the terminal (adds private objects).
    #[arg(long)]
    pin_prompt: bool,
}

pub fn run(args: InspectArgs, out: &Output) -> CliResult {
    let store = open(&args.store)?;
    let dir = args.store.as_path();
    match args.command {
        InspectCommand::Summary(a) => summary::run(dir, &store, a, out),
        InspectCommand::Objects(a) => objects::run(&store, a, out),
        InspectCommand::Show(a) => show::run(&store, a, out),
        InspectCommand::Versions(a) => versions::run(&store, a, out),
        InspectCommand::Check(a) => check::run(dir, &store, a, out),
    }
}

fn open(dir: &Path) -> CliResult<Store> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{}: no such directory, so no store to inspect",
            dir.display()
        )));
    }
    Store::open_dir_read_only(dir).map_err(|e| match e {
        hsm_core::store::StoreError::NotAStore => CliError::Store(e),
        e => e.into(),
    })
}

impl Access {
    fn pin(&self) -> CliResult<Option<SecretString>> {
        let source = match (&self.user_pin_file, &self.user_pin_env, self.pin_prompt) {
            (Some(f), _, _) => secrets::From::File(f.clone()),
            (None, Some(v), _) => secrets::From::Env(v.clone()),
            (None, None, true) => secrets::From::Prompt,
            (None, None, false) => return Ok(None),
        };
        read_pin("user PIN", source, false).map(Some)
    }

    fn has_pin(&self) -> bool {
        self.user_pin_file.is_some() || self.user_pin_env.is_some() || self.pin_prompt
    }

    /// The one token a per-object command works on.
    fn one_token(&self, store: &Store) -> CliResult<TokenInfo> {
        let tokens = store.tokens()?;
        if let Some(t) = self.token {
            return Ok(store.token_info(TokenId(t))?);
        }
        match tokens.len() {
            0 => Err(CliError::Usage("the store has no tokens".into())),
            1 => Ok(tokens.into_iter().next().expect("one token")),
            _ => Err(CliError::Usage(format!(
                "the store has {} tokens ({}); choose one with --token",
                tokens.len(),
                ids(&tokens)
            ))),
        }
    }

    /// The tokens a store-wide command covers: the one asked for, or all of them.
    fn tokens(&self, store: &Store) -> CliResult<Vec<TokenInfo>> {
        if let Some(t) = self.token {
            return Ok(vec![store.token_info(TokenId(t))?]);
        }
        let tokens = store.tokens()?;
        if tokens.len() > 1 && self.has_pin() {
            return Err(CliError::Usage(format!(
                "a user PIN belongs to one token and the store has {} ({}); choose it with --token",
                tokens.len(),
                ids(&tokens)
            )));
        }
        Ok(tokens)
    }

    /// Public access, or the user's keys when a PIN was given. A wrong PIN fails here
    /// (exit code 4) without being counted (inspection never writes); a locked PIN is
    /// refused without being tried.
    fn keys(&self, store: &Store, token: TokenId) -> CliResult<TokenKeys> {
        match self.pin()? {
            None => Ok(store.public_access(token)?),
            Some(pin) => Ok(store.login_read_only(token, UserKind::User, &pin)?),
        }
    }
}

fn ids(tokens: &[TokenInfo]) -> String {
    tokens
        .iter()
        .map(|t| t.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tells a reader without the PIN what they are not seeing.
fn needs_pin_hint() -> &'static str {
    "give the user PIN with --user-pin-file, --user-pin-env or --pin-prompt"
}
