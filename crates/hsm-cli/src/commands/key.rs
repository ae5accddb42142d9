//! `ferrohsm key …`: the key lifecycle (`docs/lifecycle.md`) over a store this process
//! opens for writing (the module or a server must not hold it).

use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{read_pin, source};
use clap::{Args, Subcommand};
use hsm_core::config::{Config, LifecycleConfig};
use hsm_core::lifecycle::{KeyId, KeyManager, KeyPolicy, KeyRing, VersionState};
use hsm_core::provider::SoftwareProvider;
use hsm_core::store::{Store, TokenKeys};
use hsm_core::types::{TokenId, UserKind};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Every key of the token, with its primary version and how many versions it has.
    List(Common),
    /// One key: its policy and versions.
    Show(KeyArg),
    /// One key's versions and their states.
    Versions(KeyArg),
    /// New material of the same kind becomes the primary version (both halves of a pair).
    Rotate(KeyArg),
    /// An earlier enabled version becomes the primary again.
    Rollback(VersionArg),
    /// Refuse every use of a version until it is enabled again.
    Disable(VersionArg),
    /// Make a disabled version usable again.
    Enable(VersionArg),
    /// Schedule a version's destruction after the key's destroy delay (`--now`: destroy
    /// it at once, allowed when the delay is 0 or the deadline has passed).
    Destroy(DestroyArgs),
    /// Take a scheduled destruction back before its deadline (the version comes back
    /// disabled).
    Restore(VersionArg),
    /// Drop every version below a floor for good.
    Trim(TrimArgs),
    /// Show or change a key's policy.
    Policy(PolicyArgs),
}

#[derive(Args)]
pub struct Common {
    /// Store directory (default: the configuration's `store`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Configuration file whose `[lifecycle]` settings apply (and whose store is used
    /// when `--store` is not given).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Token id (default: the store's only token).
    #[arg(long)]
    token: Option<u32>,
    /// Read the user PIN from the first line of this file.
    #[arg(long, value_name = "FILE")]
    user_pin_file: Option<PathBuf>,
    /// Read the user PIN from this environment variable.
    #[arg(long, value_name = "VAR")]
    user_pin_env: Option<String>,
}

#[derive(Args)]
pub struct KeyArg {
    #[command(flatten)]
    common: Common,
    /// The key id (as `key list` shows it).
    key: u64,
}

#[derive(Args)]
pub struct VersionArg {
    #[command(flatten)]
    common: Common,
    key: u64,
    /// The version number.
    #[arg(long)]
    version: u32,
}

#[derive(Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    common: Common,
    key: u64,
    #[arg(long)]
    version: u32,
    /// Destroy at once instead of scheduling.
    #[arg(long)]
    now: bool,
}

#[derive(Args)]
pub struct TrimArgs {
    #[command(flatten)]
    common: Common,
    key: u64,
    /// Versions below this number are dropped.
    #[arg(long)]
    below: u32,
}

#[derive(Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    common: Common,
    key: u64,
    #[arg(long)]
    min_encrypt_version: Option<u32>,
    #[arg(long)]
    min_decrypt_version: Option<u32>,
    /// Seconds between automatic rotations, or `none`.
    #[arg(long)]
    auto_rotate_period: Option<String>,
    /// Seconds between scheduling a destruction and the erasure.
    #[arg(long)]
    destroy_delay: Option<u64>,
    #[arg(long)]
    deletion_allowed: Option<bool>,
}

/// An opened, logged-in token and the lifecycle settings.
struct Session {
    store: Store,
    keys: TokenKeys,
    settings: LifecycleConfig,
}

impl Session {
    fn open(c: Common) -> CliResult<Session> {
        let cfg = match &c.config {
            Some(p) => Some(Config::load(p).map_err(|e| CliError::Usage(e.to_string()))?),
            None => None,
        };
        let dir = c
            .store
            .or_else(|| cfg.as_ref().map(|c| c.store.clone()))
            .ok_or_else(|| CliError::Usage("give --store DIR or --config FILE".into()))?;
        let store = Store::open_dir(&dir)?;
        let token = match c.token {
            Some(t) => TokenId(t),
            None => match store.tokens()?.as_slice() {
                [one] => one.id,
                [] => return Err(CliError::Usage("the store has no token".into())),
                _ => {
                    return Err(CliError::Usage(
                        "the store has several tokens: give --token".into(),
                    ));
                }
            },
        };
        let pin = read_pin("user PIN", source(c.user_pin_file, c.user_pin_env), false)?;
        let keys = store.login(token, UserKind::User, &pin)?;
        Ok(Session {
            store,
            keys,
            settings: cfg.map(|c| c.lifecycle).unwrap_or_default(),
        })
    }

    fn manager(&self) -> KeyManager<'_> {
        KeyManager::new(&self.store, &self.keys, &SoftwareProvider, self.settings)
    }
}

pub fn run(cmd: KeyCommand, out: &Output) -> CliResult {
    match cmd {
        KeyCommand::List(c) => list(c, out),
        KeyCommand::Show(a) => show(a, out, false),
        KeyCommand::Versions(a) => show(a, out, true),
        KeyCommand::Rotate(a) => change(a.common, out, |m| m.rotate(KeyId(a.key))),
        KeyCommand::Rollback(a) => change(a.common, out, |m| m.rollback(KeyId(a.key), a.version)),
        KeyCommand::Disable(a) => change(a.common, out, |m| m.disable(KeyId(a.key), a.version)),
        KeyCommand::Enable(a) => change(a.common, out, |m| m.enable(KeyId(a.key), a.version)),
        KeyCommand::Restore(a) => change(a.common, out, |m| m.restore(KeyId(a.key), a.version)),
        KeyCommand::Destroy(a) => change(a.common, out, |m| {
            if a.now {
                m.destroy_now(KeyId(a.key), a.version)
            } else {
                m.schedule_destroy(KeyId(a.key), a.version)
            }
        }),
        KeyCommand::Trim(a) => change(a.common, out, |m| m.trim(KeyId(a.key), a.below)),
        KeyCommand::Policy(a) => policy(a, out),
    }
}

fn core(e: hsm_core::Error) -> CliError {
    match e {
        hsm_core::Error::ActionProhibited(m) => CliError::Refused(m.into_owned()),
        hsm_core::Error::ArgumentsBad(m) => CliError::Usage(m.into_owned()),
        hsm_core::Error::ObjectHandleInvalid | hsm_core::Error::KeyHandleInvalid => {
            CliError::Usage("no such key".into())
        }
        e => CliError::Core(e.to_string()),
    }
}

/// Runs a transition after the sweep (due destructions and rotations first), and prints
/// the key's versions as they now stand.
fn change(
    c: Common,
    out: &Output,
    op: impl FnOnce(&KeyManager<'_>) -> hsm_core::Result<KeyRing>,
) -> CliResult {
    let s = Session::open(c)?;
    let m = s.manager();
    m.sweep().map_err(core)?;
    let ring = op(&m).map_err(not_found).map_err(core)?;
    print_versions(&ring, m.time(), out);
    Ok(())
}

/// A key id that names no object reads as "no such key", not as a store fault.
fn not_found(e: hsm_core::Error) -> hsm_core::Error {
    match e {
        hsm_core::Error::ObjectHandleInvalid => hsm_core::Error::KeyHandleInvalid,
        e => e,
    }
}

fn list(c: Common, out: &Output) -> CliResult {
    let s = Session::open(c)?;
    let m = s.manager();
    let keys = m.list().map_err(core)?;
    let now = m.time();
    let rows = keys
        .iter()
        .map(|k| {
            let live = k
                .ring
                .versions
                .iter()
                .filter(|v| {
                    !matches!(
                        k.ring.state_at(v.number, now),
                        Ok(VersionState::Destroyed { .. })
                    )
                })
                .count();
            vec![
                k.key.to_string(),
                k.label.clone(),
                k.class.into(),
                k.ring.primary.map_or("-".into(), |p| p.to_string()),
                format!("{live}/{}", k.ring.versions.len()),
            ]
        })
        .collect();
    out.emit(
        &keys,
        &["KEY", "LABEL", "CLASS", "PRIMARY", "LIVE/VERSIONS"],
        rows,
    );
    Ok(())
}

fn show(a: KeyArg, out: &Output, versions_only: bool) -> CliResult {
    let s = Session::open(a.common)?;
    let m = s.manager();
    let (ring, stored) = m.ring(KeyId(a.key)).map_err(not_found).map_err(core)?;
    if out.json && !versions_only {
        #[derive(serde::Serialize)]
        struct Shown {
            /// Whether the key has had a transition (its ring is stored).
            stored: bool,
            ring: KeyRing,
        }
        out.emit(&Shown { stored, ring }, &[], Vec::new());
        return Ok(());
    }
    if !versions_only {
        print!("{}", policy_table(&ring.policy));
    }
    print_versions(&ring, m.time(), out);
    Ok(())
}

fn policy(a: PolicyArgs, out: &Output) -> CliResult {
    let changing = a.min_encrypt_version.is_some()
        || a.min_decrypt_version.is_some()
        || a.auto_rotate_period.is_some()
        || a.destroy_delay.is_some()
        || a.deletion_allowed.is_some();
    let s = Session::open(a.common)?;
    let m = s.manager();
    let (ring, _) = m.ring(KeyId(a.key)).map_err(not_found).map_err(core)?;
    let mut p = ring.policy;
    if !changing {
        out.emit(&p, &["SETTING", "VALUE"], policy_rows(&p));
        return Ok(());
    }
    if let Some(v) = a.min_encrypt_version {
        p.min_encrypt_version = v;
    }
    if let Some(v) = a.min_decrypt_version {
        p.min_decrypt_version = v;
    }
    if let Some(v) = a.auto_rotate_period {
        p.auto_rotate_period = match v.as_str() {
            "none" | "off" => None,
            s => Some(s.parse().map_err(|_| {
                CliError::Usage(format!("--auto-rotate-period {s:?}: seconds, or `none`"))
            })?),
        };
    }
    if let Some(v) = a.destroy_delay {
        p.destroy_delay = v;
    }
    if let Some(v) = a.deletion_allowed {
        p.deletion_allowed = v;
    }
    let ring = m.set_policy(KeyId(a.key), p).map_err(core)?;
    out.emit(
        &ring.policy,
        &["SETTING", "VALUE"],
        policy_rows(&ring.policy),
    );
    Ok(())
}

fn policy_rows(p: &KeyPolicy) -> Vec<Vec<String>> {
    vec![
        vec![
            "min_encrypt_version".into(),
            p.min_encrypt_version.to_string(),
        ],
        vec![
            "min_decrypt_version".into(),
            p.min_decrypt_version.to_string(),
        ],
        vec![
            "auto_rotate_period".into(),
            p.auto_rotate_period
                .map_or("none".into(), |s| format!("{s} s")),
        ],
        vec!["destroy_delay".into(), format!("{} s", p.destroy_delay)],
        vec!["deletion_allowed".into(), p.deletion_allowed.to_string()],
    ]
}

fn policy_table(p: &KeyPolicy) -> String {
    crate::output::table(&["SETTING", "VALUE"], &policy_rows(p)) + "\n"
}

fn print_versions(ring: &KeyRing, now: u64, out: &Output) {
    let rows = ring
        .versions
        .iter()
        .map(|v| {
            let state = ring.state_at(v.number, now).unwrap_or(v.state);
            vec![
                v.number.to_string(),
                state.name().into(),
                if ring.primary == Some(v.number) {
                    "yes"
                } else {
                    ""
                }
                .into(),
                v.created_at.to_string(),
                match state {
                    VersionState::DestroyScheduled { deadline } => deadline.to_string(),
                    _ => String::new(),
                },
                v.objects
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    out.emit(
        ring,
        &[
            "VERSION",
            "STATE",
            "PRIMARY",
            "CREATED",
            "DESTROY AT",
            "OBJECTS",
        ],
        rows,
    );
}

impl From<hsm_core::Error> for CliError {
    fn from(e: hsm_core::Error) -> Self {
        core(e)
    }
}
