//! The one configuration file: found through `FERROHSM_CONF`, then the user's config
//! directory (`$XDG_CONFIG_HOME/ferrohsm/ferrohsm.toml` or `~/.config/…`), then
//! `/etc/ferrohsm/ferrohsm.toml`. Unknown keys are errors, so typos do not pass silently.

use hsm_store::{KdfParams, PinPolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

mod slots;
pub use slots::{SOFTWARE, Setting, SlotConfig, secret_setting};

pub const ENV_VAR: &str = "FERROHSM_CONF";
pub const SYSTEM_PATH: &str = "/etc/ferrohsm/ferrohsm.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration file: set {ENV_VAR}, or create {user} or {SYSTEM_PATH}")]
    NotFound { user: String },
    #[error("cannot read configuration file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("invalid configuration file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// How the module reaches the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A client of the store's `ferrohsm-server`, which the module starts when none is
    /// running: any number of processes share the token.
    #[default]
    Auto,
    /// A client of a server someone else runs (systemd, an operator); never starts one.
    Client,
    /// The module opens the store in-process: one process at a time, no socket between.
    Embedded,
}

/// `[server]`: where the store's server listens, who may connect, and how the module
/// starts it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The Unix socket. Default: `ferrohsm-server.sock` inside the store directory
    /// (which is 0700, so the socket is only reachable by the store's owner).
    pub socket: Option<PathBuf>,
    /// Seconds an auto-started server waits with no client before it exits; 0: never.
    #[serde(default = "default_idle_exit")]
    pub idle_exit_secs: u64,
    /// The uids a connection's peer may have. Empty (the default): the store owner's.
    #[serde(default)]
    pub allow_uids: Vec<u32>,
    /// The `ferrohsm-server` the module starts in `auto` mode. Default: `FERROHSM_SERVER`,
    /// then the one beside the module (or one directory up), then `PATH`.
    pub executable: Option<PathBuf>,
    /// How long the module waits for a server it started to answer.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_secs: u64,
    /// How long a PIN the server proved right may log other clients in without the PIN
    /// KDF (a keyed verifier in the server's memory; the failure counter still runs
    /// first, a PIN it does not know pays the full KDF). 0: every login pays it.
    #[serde(default = "default_login_cache")]
    pub login_cache_secs: u64,
    /// `[server.admin]`: the admin HTTPS API (off unless configured).
    #[serde(default)]
    pub admin: Option<Box<AdminConfig>>,
    /// Where `ferrohsm-server` serves Prometheus metrics on `/metrics` (plain HTTP, no
    /// authentication: nothing secret is in them), e.g. `127.0.0.1:9464`. Off when unset.
    /// An address other than loopback needs `metrics_allow_remote = true`.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub metrics_allow_remote: bool,
}

/// `[server.admin]`: the HTTPS admin API of `ferrohsm-server` (`docs/server.md`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address and port. Default `127.0.0.1:8443`; an address other than loopback needs
    /// `allow_remote = true`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    #[serde(default)]
    pub allow_remote: bool,
    /// The server's certificate chain, PEM.
    pub certificate: PathBuf,
    /// Its private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// Required in a token's `aud`, when set.
    pub audience: Option<String>,
    /// The claim that lists the caller's roles (`so`, `user`, `approver`, `auditor`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The issuers whose tokens are accepted.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

/// `[[server.admin.issuers]]`: one trusted JWT issuer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// `EdDSA` (Ed25519) or `ES256` (P-256): the only algorithm its tokens may use.
    pub algorithm: String,
    /// Its public key, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key: PathBuf,
}

fn default_admin_listen() -> String {
    "127.0.0.1:8443".into()
}

fn default_roles_claim() -> String {
    "roles".into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket: None,
            idle_exit_secs: default_idle_exit(),
            allow_uids: Vec::new(),
            executable: None,
            start_timeout_secs: default_start_timeout(),
            login_cache_secs: default_login_cache(),
            admin: None,
            metrics_listen: None,
            metrics_allow_remote: false,
        }
    }
}

fn default_idle_exit() -> u64 {
    300
}

fn default_start_timeout() -> u64 {
    10
}

fn default_login_cache() -> u64 {
    900
}

/// The longest socket path Linux takes (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl Config {
    /// The server's socket path: `[server] socket`, else `ferrohsm-server.sock` in the
    /// store directory, else (when that path is too long for a Unix socket) a name made
    /// from the store's path in `/tmp/ferrohsm-<uid>/`, a directory the server creates 0700
    /// and refuses if anyone else owns it or can write to it.
    pub fn socket_path(&self) -> Result<PathBuf, ConfigError> {
        let p = match &self.server.socket {
            Some(p) => p.clone(),
            None => {
                let beside = self.store.join("ferrohsm-server.sock");
                if beside.as_os_str().len() <= MAX_SOCKET_PATH {
                    return Ok(beside);
                }
                let store = self
                    .store
                    .canonicalize()
                    .unwrap_or_else(|_| self.store.clone());
                let name = hsm_proto::fnv1a(store.as_os_str().as_encoded_bytes());
                PathBuf::from(format!(
                    "/tmp/ferrohsm-{}/{name:016x}.sock",
                    hsm_store::current_uid()
                ))
            }
        };
        let len = p.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ConfigError::Invalid {
                path: p.display().to_string(),
                reason: format!(
                    "the server socket path is {len} bytes, over the {MAX_SOCKET_PATH} a Unix \
                     socket allows; set [server] socket to a shorter path in a directory \
                     only the store's owner can enter"
                ),
            });
        }
        Ok(p)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store directory. Relative paths are taken from the file's directory.
    pub store: PathBuf,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default = "default_log_level")]
    pub log_level: String,
    #[serde(default)]
    pub kdf: KdfConfig,
    #[serde(default)]
    pub pin_policy: PinPolicyConfig,
    /// Tokens to show as slots, in slot order. Empty: every token of the store.
    #[serde(default)]
    pub slots: Vec<SlotConfig>,
    /// RSA PKCS#1 v1.5 decryption (`CKM_RSA_PKCS` with `C_Decrypt`). Off by default: its
    /// padding check is an oracle (Bleichenbacher 1998, Marvin 2023). Turn on only for a
    /// legacy peer that cannot use OAEP.
    #[serde(default)]
    pub allow_rsa_pkcs1_v15_decrypt: bool,
    /// `C_WrapKey` under a key of lower security strength than the key it wraps (by
    /// SP 800-57 Part 1: RSA-2048 = 112 bits, RSA-3072/4096 = 128, P-256 = 128, AES-n = n).
    /// Off by default: the wrapped key is then only as safe as the weaker one. Turn on for
    /// a peer that insists on, say, AES-256 keys under RSA-2048 or RSA-4096.
    #[serde(default)]
    pub allow_weaker_wrapping_key: bool,
    /// `"standard"` (default): one key may wrap and decrypt, or unwrap and encrypt, as
    /// client templates ask; `"strict"` refuses those combinations too (see
    /// `attrs::Separation`).
    #[serde(default)]
    pub key_separation: crate::objects::attrs::Separation,
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: the metrics a process without a server exports (`docs/metrics.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A file for node_exporter's textfile collector (`*.prom` in its directory), written
    /// by whichever process holds the store — the embedded module or the server — at most
    /// every `textfile_interval_secs`, as calls finish. Relative paths are taken from
    /// the configuration file's directory.
    pub textfile: Option<PathBuf>,
    #[serde(default = "default_textfile_interval")]
    pub textfile_interval_secs: u64,
}

fn default_textfile_interval() -> u64 {
    15
}

impl Config {
    /// Whether this process keeps the built-in metrics.
    pub fn metrics_enabled(&self) -> bool {
        self.metrics.textfile.is_some() || self.server.metrics_listen.is_some()
    }
}

/// `[audit]`: what the tamper-evident log records (`docs/audit.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `off`, `management` (default: every change, login, PIN change, key export, policy
    /// change, approval and refused attempt at one) or `all` (also every use of a key).
    #[serde(default)]
    pub level: hsm_types::audit::AuditLevel,
    /// Fail closed: an operation whose record cannot be written is refused with
    /// `CKR_DEVICE_ERROR` (YubiHSM's force-audit). Off by default: the failure is logged
    /// and counted, and the operation goes on.
    #[serde(default)]
    pub required: bool,
    /// A checkpoint is signed after this many records (default 1000)…
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or once the oldest record no checkpoint covers is this old (default 60 s), by the
    /// next write or a running server's tick, while the token is logged in.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_interval_secs: u64,
    /// At level `all`: how far apart, at most, records of key use are fsynced (group
    /// commit; default 20 ms). A killed process loses none of them; a power cut at most
    /// this much.
    #[serde(default = "default_group_commit_ms")]
    pub group_commit_ms: u64,
}

fn default_checkpoint_every() -> u64 {
    1000
}
fn default_checkpoint_secs() -> u64 {
    60
}
fn default_group_commit_ms() -> u64 {
    20
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            level: hsm_types::audit::AuditLevel::default(),
            required: false,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval_secs: default_checkpoint_secs(),
            group_commit_ms: default_group_commit_ms(),
        }
    }
}

impl From<AuditConfig> for hsm_store::audit::AuditSettings {
    fn from(c: AuditConfig) -> Self {
        hsm_store::audit::AuditSettings {
            level: c.level,
            required: c.required,
            checkpoint_every: c.checkpoint_every,
            checkpoint_interval: std::time::Duration::from_secs(c.checkpoint_interval_secs),
            group_commit: std::time::Duration::from_millis(c.group_commit_ms),
        }
    }
}

/// `[lifecycle]`: what keys get when they enter the lifecycle (`docs/lifecycle.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Seconds between scheduling a version's destruction and its erasure, for keys whose
    /// policy was not set otherwise. Default: 30 days.
    #[serde(default = "default_destroy_delay")]
    pub destroy_delay_secs: u64,
    /// Whether a key's `destroy_delay` may be 0 (versions destroyed at once, no restore
    /// window). Off by default.
    #[serde(default)]
    pub allow_immediate_destroy: bool,
    /// Seconds added to the system clock for lifecycle decisions (restore deadlines,
    /// auto-rotation): for tests and drills that must see a deadline pass without waiting.
    /// Whoever writes this file controls the store anyway. Default 0.
    #[serde(default)]
    pub clock_offset_secs: i64,
    /// How often a running `ferrohsm-server` does what fell due (scheduled destructions,
    /// auto-rotations) on slots where a user is logged in. Default 60; 0: never.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval_secs: u64,
    /// Whether `C_DestroyObject` of a token secret or private key that never had a
    /// lifecycle transition schedules its destruction like a version's (true: the key
    /// becomes version 1 of a ring, restorable until its deadline, and its handle stays
    /// valid but refuses every use), or erases it at once (false, the default: PKCS#11
    /// clients expect a destroyed handle to be invalid).
    #[serde(default)]
    pub schedule_plain_destroy: bool,
}

fn default_sweep_interval() -> u64 {
    60
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            destroy_delay_secs: default_destroy_delay(),
            allow_immediate_destroy: false,
            clock_offset_secs: 0,
            sweep_interval_secs: default_sweep_interval(),
            schedule_plain_destroy: false,
        }
    }
}

fn default_destroy_delay() -> u64 {
    hsm_types::lifecycle::DEFAULT_DESTROY_DELAY
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfConfig {
    pub m_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfConfig {
    fn default() -> Self {
        let d = KdfParams::DEFAULT;
        KdfConfig {
            m_kib: d.m_kib,
            t_cost: d.t_cost,
            p_cost: d.p_cost,
        }
    }
}

impl From<KdfConfig> for KdfParams {
    fn from(k: KdfConfig) -> Self {
        KdfParams {
            m_kib: k.m_kib,
            t_cost: k.t_cost,
            p_cost: k.p_cost,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinPolicyConfig {
    pub min_len: u32,
    pub max_len: u32,
    pub max_failures: u32,
}

impl Default for PinPolicyConfig {
    fn default() -> Self {
        let d = PinPolicy::default();
        PinPolicyConfig {
            min_len: d.min_len,
            max_len: d.max_len,
            max_failures: d.max_failures,
        }
    }
}

impl From<PinPolicyConfig> for PinPolicy {
    fn from(p: PinPolicyConfig) -> Self {
        PinPolicy {
            min_len: p.min_len,
            max_len: p.max_len,
            max_failures: p.max_failures,
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

impl Config {
    /// Finds and loads the configuration file.
    pub fn discover() -> Result<(Config, PathBuf), ConfigError> {
        let user = user_config_path();
        let path = match std::env::var_os(ENV_VAR) {
            Some(p) => PathBuf::from(p),
            None => match &user {
                Some(u) if u.exists() => u.clone(),
                _ if Path::new(SYSTEM_PATH).exists() => PathBuf::from(SYSTEM_PATH),
                _ => {
                    return Err(ConfigError::NotFound {
                        user: user
                            .map(|u| u.display().to_string())
                            .unwrap_or_else(|| "~/.config/ferrohsm/ferrohsm.toml".into()),
                    });
                }
            },
        };
        Ok((Config::load(&path)?, path))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut cfg = Config::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.store.is_relative() {
            cfg.store = base.join(&cfg.store);
        }
        if let Some(t) = cfg.metrics.textfile.as_mut().filter(|t| t.is_relative()) {
            *t = base.join(&*t);
        }
        for s in &mut cfg.slots {
            s.resolve_paths(base);
        }
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        KdfParams::from(cfg.kdf)
            .validate()
            .map_err(|e| e.to_string())?;
        let p = cfg.pin_policy;
        if p.min_len == 0 || p.min_len > p.max_len || p.max_len > 255 {
            return Err(format!(
                "pin_policy: need 1 <= min_len <= max_len <= 255, got {}..{}",
                p.min_len, p.max_len
            ));
        }
        for s in &cfg.slots {
            s.validate()?;
        }
        let l = cfg.lifecycle;
        if l.destroy_delay_secs == 0 && !l.allow_immediate_destroy {
            return Err(
                "lifecycle: destroy_delay_secs = 0 needs allow_immediate_destroy = true".into(),
            );
        }
        if !matches!(
            cfg.log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace" | "off"
        ) {
            return Err(format!(
                "log_level {:?}: expected error, warn, info, debug, trace or off",
                cfg.log_level
            ));
        }
        Ok(cfg)
    }
}

fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("ferrohsm").join("ferrohsm.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_takes_defaults() {
        let c = Config::parse("store = \"/tmp/s\"").unwrap();
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(
            c.socket_path().unwrap(),
            Path::new("/tmp/s/ferrohsm-server.sock")
        );
        assert_eq!(KdfParams::from(c.kdf), KdfParams::DEFAULT);
        // A store path too long for a socket beside it: a short name in /tmp instead.
        let deep = format!("store = \"/tmp/{}\"", "d/".repeat(60));
        let s = Config::parse(&deep).unwrap().socket_path().unwrap();
        assert!(
            s.to_str().unwrap().starts_with("/tmp/ferrohsm-") && s.as_os_str().len() < 60,
            "{s:?}"
        );
        let long = format!("{deep}\n[server]\nsocket = \"/{}\"", "x".repeat(120));
        assert!(Config::parse(&long).unwrap().socket_path().is_err());
        assert_eq!(PinPolicy::from(c.pin_policy), PinPolicy::default());
    }

    #[test]
    fn full_file_parses() {
        let c = Config::parse(
            r#"
            store = "data"
            mode = "embedded"
            log_level = "debug"
            [kdf]
            m_kib = 1024
            t_cost = 1
            p_cost = 1
            [pin_policy]
            min_len = 6
            max_len = 32
            max_failures = 3
            [[slots]]
            token = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.kdf.m_kib, 1024);
        assert_eq!(c.pin_policy.max_failures, 3);
        assert_eq!(c.slots, vec![SlotConfig::software(2)]);
    }

    #[test]
    fn bad_files_name_the_problem() {
        assert!(Config::parse("").unwrap_err().contains("store"));
        assert!(
            Config::parse("store = \"x\"\nstroe = 1")
                .unwrap_err()
                .contains("stroe")
        );
        assert!(
            Config::parse("store = \"x\"\n[kdf]\nm_kib = 1\nt_cost = 0\np_cost = 1")
                .unwrap_err()
                .contains("Argon2")
        );
        assert!(
            Config::parse("store = \"x\"\nlog_level = \"loud\"")
                .unwrap_err()
                .contains("loud")
        );
        assert!(
            Config::parse(
                "store = \"x\"\n[pin_policy]\nmin_len = 9\nmax_len = 4\nmax_failures = 1"
            )
            .unwrap_err()
            .contains("min_len")
        );
    }

    #[test]
    fn relative_store_is_taken_from_the_files_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.toml");
        std::fs::write(&p, "store = \"st\"").unwrap();
        assert_eq!(Config::load(&p).unwrap().store, d.path().join("st"));
        let e = Config::load(&d.path().join("missing.toml")).unwrap_err();
        assert!(e.to_string().contains("missing.toml"));
    }
}
