//! `ferrohsm key …`: the key lifecycle (`docs/lifecycle.md`) over a store this process
//! opens for writing (the module or a server must not hold it).

use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{read_pin, source};
use clap::{Args, Subcommand};
use ferrohsm_pkcs11::client::Client;
use hsm_core::LoginKind;
use hsm_core::api::{Remote, Token};
use hsm_core::config::{Config, LifecycleConfig, Mode};
use hsm_core::lifecycle::{
    KeyAnswer, KeyCommand, KeyId, KeyInfo, KeyManager, KeyPolicy, KeyRing, VersionState,
};
use hsm_core::provider::SoftwareProvider;
use hsm_core::store::{Store, StoreError, TokenKeys};
use hsm_core::types::{TokenId, UserKind};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum KeyCli {
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

/// Where the requests go: a store this process opened, or the `ferrohsm-server` that
/// holds it (then the server's `[lifecycle]` settings apply).
enum Target {
    Embedded {
        store: Box<Store>,
        keys: Box<TokenKeys>,
        settings: LifecycleConfig,
    },
    Served {
        // Boxed: a client holds the whole configuration.
        token: Box<Remote<Client>>,
        session: u64,
    },
}

impl Target {
    fn open(c: Common) -> CliResult<Target> {
        let (cfg, dir) = config_and_store(c.config.as_deref(), c.store.as_deref())?;
        let store = match Store::open_dir(&dir) {
            Ok(s) => s,
            Err(StoreError::Locked { .. }) => return Target::served(&c, cfg, &dir),
            Err(e) => return Err(e.into()),
        };
        let token = pick_token(&store, c.token)?;
        let pin = read_pin("user PIN", source(c.user_pin_file, c.user_pin_env), false)?;
        let keys = store.login(token, UserKind::User, &pin)?;
        Ok(Target::Embedded {
            store: Box::new(store),
            keys: Box::new(keys),
            settings: cfg.map(|c| c.lifecycle).unwrap_or_default(),
        })
    }

    /// The store is held (by a server, when one answers on its socket): the requests go
    /// to it, as a client in mode "client" (never starting a server of its own).
    fn served(c: &Common, cfg: Option<Config>, dir: &Path) -> CliResult<Target> {
        let (token, slot) = served_slot(c.token, c.config.as_deref(), cfg, dir)?;
        let pin = read_pin(
            "user PIN",
            source(c.user_pin_file.clone(), c.user_pin_env.clone()),
            false,
        )?;
        let session = token.open_session(slot, true)?;
        token.login(session, LoginKind::User, pin)?;
        Ok(Target::Served {
            token: Box::new(token),
            session,
        })
    }

    fn execute(&self, cmd: KeyCommand) -> CliResult<KeyAnswer> {
        let answer = match self {
            Target::Embedded {
                store,
                keys,
                settings,
            } => KeyManager::new(store, keys, &SoftwareProvider, *settings).execute(cmd),
            Target::Served { token, session } => token.key_command(*session, cmd),
        };
        answer.map_err(not_found).map_err(core)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Served { token, session } = self {
            let _ = token.close_session(*session);
        }
    }
}

/// The configuration file given (if any) and the store directory: `--store`, else the
/// configuration's `store`.
pub(super) fn config_and_store(
    config: Option<&Path>,
    store: Option<&Path>,
) -> CliResult<(Option<Config>, PathBuf)> {
    let cfg = match config {
        Some(p) => Some(Config::load(p).map_err(|e| CliError::Usage(e.to_string()))?),
        None => None,
    };
    let dir = store
        .map(Path::to_path_buf)
        .or_else(|| cfg.as_ref().map(|c| c.store.clone()))
        .ok_or_else(|| CliError::Usage("give --store DIR or --config FILE".into()))?;
    Ok((cfg, dir))
}

/// The held store's running server, as a client in mode "client" (never starting a server
/// of its own), and the slot that shows the store's token `asked` (or its only one).
pub(super) fn served_slot(
    asked: Option<u32>,
    config_path: Option<&Path>,
    cfg: Option<Config>,
    dir: &Path,
) -> CliResult<(Remote<Client>, u64)> {
    let (token_id, serial) = {
        let ro = Store::open_dir_read_only(dir)?;
        let t = pick_token(&ro, asked)?;
        (t, ro.token_info(t)?.serial)
    };
    let mut config = match cfg {
        Some(cfg) => cfg,
        None => Config::parse(&format!("store = {:?}", dir.display().to_string()))
            .map_err(CliError::Usage)?,
    };
    config.mode = Mode::Client;
    let path = config_path.map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
    let token = Remote(Client::connect(&config, &path).map_err(|e| {
        CliError::Core(format!(
            "the store is in use and its server does not answer ({e}); stop the process \
             holding it, or start its server"
        ))
    })?);
    let slot = token
        .slot_list(true)?
        .into_iter()
        .find(|s| token.token_info(*s).is_ok_and(|i| i.serial == serial))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "the server shows no slot with token {}",
                token_id.0
            ))
        })?;
    Ok((token, slot))
}

pub(super) fn pick_token(store: &Store, asked: Option<u32>) -> CliResult<TokenId> {
    Ok(match asked {
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
    })
}

pub fn run(cmd: KeyCli, out: &Output) -> CliResult {
    let (common, request, show) = match to_request(cmd) {
        Ok(r) => r,
        Err(policy_args) => return policy(*policy_args, out),
    };
    let target = Target::open(common)?;
    match (target.execute(request)?, show) {
        (KeyAnswer::Keys { keys, now }, _) => print_list(&keys, now, out),
        (KeyAnswer::Ring { ring, stored, now }, Shown::Whole) => {
            if out.json {
                #[derive(serde::Serialize)]
                struct Whole {
                    /// Whether the key has had a transition (its ring is stored).
                    stored: bool,
                    ring: KeyRing,
                }
                out.emit(&Whole { stored, ring }, &[], Vec::new());
            } else {
                print!("{}", policy_table(&ring.policy));
                print_versions(&ring, now, out);
            }
        }
        (KeyAnswer::Ring { ring, now, .. }, _) => print_versions(&ring, now, out),
    }
    Ok(())
}

/// The request a subcommand makes and what it prints; `policy`, which may make two,
/// comes back as it is.
fn to_request(cmd: KeyCli) -> Result<(Common, KeyCommand, Shown), Box<PolicyArgs>> {
    let k = |n: u64| KeyId(n);
    Ok(match cmd {
        KeyCli::List(c) => (c, KeyCommand::List, Shown::List),
        KeyCli::Show(a) => (a.common, KeyCommand::Show { key: k(a.key) }, Shown::Whole),
        KeyCli::Versions(a) => (
            a.common,
            KeyCommand::Show { key: k(a.key) },
            Shown::Versions,
        ),
        KeyCli::Rotate(a) => (
            a.common,
            KeyCommand::Rotate { key: k(a.key) },
            Shown::Versions,
        ),
        KeyCli::Rollback(a) => (
            a.common,
            KeyCommand::Rollback {
                key: k(a.key),
                to: a.version,
            },
            Shown::Versions,
        ),
        KeyCli::Disable(a) => (
            a.common,
            KeyCommand::Disable {
                key: k(a.key),
                version: a.version,
            },
            Shown::Versions,
        ),
        KeyCli::Enable(a) => (
            a.common,
            KeyCommand::Enable {
                key: k(a.key),
                version: a.version,
            },
            Shown::Versions,
        ),
        KeyCli::Restore(a) => (
            a.common,
            KeyCommand::Restore {
                key: k(a.key),
                version: a.version,
            },
            Shown::Versions,
        ),
        KeyCli::Destroy(a) => {
            let (key, version) = (k(a.key), a.version);
            let r = if a.now {
                KeyCommand::DestroyNow { key, version }
            } else {
                KeyCommand::ScheduleDestroy { key, version }
            };
            (a.common, r, Shown::Versions)
        }
        KeyCli::Trim(a) => (
            a.common,
            KeyCommand::Trim {
                key: k(a.key),
                below: a.below,
            },
            Shown::Versions,
        ),
        KeyCli::Policy(a) => return Err(Box::new(a)),
    })
}

/// What a command prints of the answer.
enum Shown {
    List,
    Whole,
    Versions,
}

pub(super) fn core(e: hsm_core::Error) -> CliError {
    match e {
        hsm_core::Error::ApprovalRequired(m) => CliError::Pending(m),
        hsm_core::Error::ActionProhibited(m) => CliError::Refused(m.into_owned()),
        hsm_core::Error::ArgumentsBad(m) => CliError::Usage(m.into_owned()),
        hsm_core::Error::KeyHandleInvalid => CliError::Usage("no such key".into()),
        hsm_core::Error::PinIncorrect
        | hsm_core::Error::PinLocked
        | hsm_core::Error::PinLenRange => CliError::Auth(e.to_string()),
        e => CliError::Core(e.to_string()),
    }
}

/// A key id that names no object reads as "no such key", not as a store fault.
fn not_found(e: hsm_core::Error) -> hsm_core::Error {
    match e {
        hsm_core::Error::ObjectHandleInvalid => hsm_core::Error::KeyHandleInvalid,
        e => e,
    }
}

fn print_list(keys: &[KeyInfo], now: u64, out: &Output) {
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
                k.class.clone(),
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
}

fn policy(a: PolicyArgs, out: &Output) -> CliResult {
    let target = Target::open(a.common)?;
    let key = KeyId(a.key);
    let KeyAnswer::Ring { ring, .. } = target.execute(KeyCommand::Show { key })? else {
        return Err(CliError::Core("the answer was not a ring".into()));
    };
    let mut p = ring.policy;
    let before = p;
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
    if p != before {
        let KeyAnswer::Ring { ring, .. } =
            target.execute(KeyCommand::SetPolicy { key, policy: p })?
        else {
            return Err(CliError::Core("the answer was not a ring".into()));
        };
        p = ring.policy;
    }
    out.emit(&p, &["SETTING", "VALUE"], policy_rows(&p));
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
        core(not_found(e))
    }
}
