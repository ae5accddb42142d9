//! `ferrohsm token …`: create and list tokens.

use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{read_pin, source};
use clap::{Args, Subcommand};
use hsm_core::admin::{self, NewToken, TokenAdmin};
use hsm_core::objects::attrs::Actor;
use hsm_core::store::{KdfParams, PinPolicy, Store};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a new token in a store (the store is created if the directory is empty).
    Init(InitArgs),
    /// List the tokens of a store (read-only; works while the module has the store open).
    List(ListArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// Token label (at most 32 bytes, as PKCS#11 shows it; trailing blanks are dropped).
    #[arg(long)]
    label: String,
    /// Read the SO PIN from the first line of this file.
    #[arg(long, value_name = "FILE")]
    so_pin_file: Option<PathBuf>,
    /// Read the SO PIN from this environment variable.
    #[arg(long, value_name = "VAR")]
    so_pin_env: Option<String>,
    /// Read the user PIN from the first line of this file.
    #[arg(long, value_name = "FILE")]
    user_pin_file: Option<PathBuf>,
    /// Read the user PIN from this environment variable.
    #[arg(long, value_name = "VAR")]
    user_pin_env: Option<String>,
    /// Leave the user PIN unset (the SO sets it later with C_InitPIN).
    #[arg(long, conflicts_with_all = ["user_pin_file", "user_pin_env"])]
    no_user_pin: bool,
    /// Argon2id memory cost in KiB.
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_kib)]
    kdf_memory_kib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = KdfParams::DEFAULT.t_cost)]
    kdf_iterations: u32,
    /// Argon2id lanes.
    #[arg(long, default_value_t = KdfParams::DEFAULT.p_cost)]
    kdf_parallelism: u32,
    /// Minimum PIN length.
    #[arg(long, default_value_t = PinPolicy::default().min_len)]
    min_pin_len: u32,
    /// Maximum PIN length.
    #[arg(long, default_value_t = PinPolicy::default().max_len)]
    max_pin_len: u32,
    /// Consecutive wrong PINs before the PIN locks.
    #[arg(long, default_value_t = PinPolicy::default().max_failures)]
    max_failures: u32,
}

#[derive(Args)]
pub struct ListArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
}

pub fn run(cmd: TokenCommand, out: &Output) -> CliResult {
    match cmd {
        TokenCommand::Init(a) => init(a, out),
        TokenCommand::List(a) => list(a, out),
    }
}

fn init(a: InitArgs, out: &Output) -> CliResult {
    // The one label rule, checked before any PIN is asked for.
    let label = admin::label(&a.label).map_err(|e| CliError::Usage(e.to_string()))?;
    let so_pin = read_pin("SO PIN", source(a.so_pin_file, a.so_pin_env), true)?;
    let user_pin = if a.no_user_pin {
        None
    } else {
        Some(read_pin(
            "user PIN",
            source(a.user_pin_file, a.user_pin_env),
            true,
        )?)
    };
    let store = Store::open_dir(&a.store)?;
    let id = TokenAdmin::new(&store, None, Actor::So).create(NewToken {
        label,
        so_pin,
        user_pin,
        kdf: KdfParams {
            m_kib: a.kdf_memory_kib,
            t_cost: a.kdf_iterations,
            p_cost: a.kdf_parallelism,
        },
        pin_policy: PinPolicy {
            min_len: a.min_pin_len,
            max_len: a.max_pin_len,
            max_failures: a.max_failures,
        },
    })?;
    let info = store.token_info(id)?;
    let rows = vec![vec![
        info.id.to_string(),
        info.label.clone(),
        info.serial.clone(),
    ]];
    out.emit(&info, &["TOKEN", "LABEL", "SERIAL"], rows);
    Ok(())
}

fn list(a: ListArgs, out: &Output) -> CliResult {
    let store = Store::open_dir_read_only(&a.store).map_err(|e| match e {
        hsm_core::store::StoreError::NotAStore => {
            CliError::Usage(format!("{} is not a FerroHSM store", a.store.display()))
        }
        e => e.into(),
    })?;
    let tokens = store.tokens()?;
    let mut rows = Vec::new();
    for t in &tokens {
        rows.push(vec![
            t.id.to_string(),
            t.label.clone(),
            t.serial.clone(),
            store.object_count(t.id)?.to_string(),
            if t.user_pin_initialized { "yes" } else { "no" }.into(),
            format!("{}/{}", t.user_failures, t.pin_policy.max_failures),
            format!("{}/{}", t.so_failures, t.pin_policy.max_failures),
        ]);
    }
    #[derive(serde::Serialize)]
    struct Listing<'a> {
        store_id: String,
        schema_version: u32,
        tokens: &'a [hsm_core::store::TokenInfo],
    }
    out.emit(
        &Listing {
            store_id: store.store_id_hex(),
            schema_version: store.schema_version(),
            tokens: &tokens,
        },
        &[
            "TOKEN",
            "LABEL",
            "SERIAL",
            "OBJECTS",
            "USER PIN",
            "USER FAILURES",
            "SO FAILURES",
        ],
        rows,
    );
    Ok(())
}
