//! `ferrohsm quorum …` (the SO registers approvers and sets the rules) and
//! `ferrohsm approvals …` (approvers list requests and sign verdicts with their own
//! Ed25519 key file; no PIN). Dual control is `docs/approvals.md`. Both work on a store
//! this process opens, or through the `ferrohsm-server` holding it.

use super::approver_key::{ApproverKey, KeySource};
use super::key::{config_and_store, core, pick_token, served_slot};
use crate::exit::{CliError, CliResult};
use crate::output::Output;
use crate::secrets::{read_pin, source};
use base64ct::{Base64, Encoding};
use clap::{Args, Subcommand};
use ferrohsm_pkcs11::client::Client;
use hsm_core::LoginKind;
use hsm_core::api::{Remote, Token};
use hsm_core::config::LifecycleConfig;
use hsm_core::lifecycle::now;
use hsm_core::policy::quorum::{self, QuorumCommand, QuorumView};
use hsm_core::store::{Store, StoreError, TokenKeys};
use hsm_core::types::UserKind;
use hsm_core::types::quorum::{Guarded, Standing, Verdict, approval_message};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum QuorumCli {
    /// The approvers and the rules (no PIN).
    Show(Place),
    /// Register an approver: a name and an Ed25519 public key (PEM, as `openssl pkey
    /// -pubout` writes it). Needs the SO PIN, and approvals once rules exist.
    AddApprover(AddApprover),
    /// Remove an approver (SO PIN; approvals once rules exist).
    RemoveApprover(RemoveApprover),
    /// Set the rules: `--rule destroy=2 --rule trim=2 …` (SO PIN; approvals once rules
    /// exist). Classes: destroy, export, rollback, trim, key-policy, import.
    Set(SetRules),
    /// Set one key's rules: approvals per class (`use` for every signature or
    /// decryption), a usage window, a use limit, a mechanism allow-list (SO PIN;
    /// approvals once rules exist).
    Key(SetKeyRules),
}

#[derive(Subcommand)]
pub enum ApprovalsCli {
    /// Every request and where it stands (no PIN).
    List(Place),
    /// One request: what it would do, its digest, who asked, who approved (no PIN).
    Show(ShowRequest),
    /// Approve a request, signing it with your Ed25519 private key (PEM PKCS#8).
    Approve(Sign),
    /// Deny a request (it then stays refused).
    Deny(Sign),
}

#[derive(Args)]
pub struct Place {
    /// Store directory (default: the configuration's `store`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Configuration file (its store, and its `[lifecycle]` clock).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Token id (default: the store's only token).
    #[arg(long)]
    token: Option<u32>,
}

#[derive(Args)]
pub struct SoPin {
    /// Read the SO PIN from the first line of this file.
    #[arg(long, value_name = "FILE")]
    so_pin_file: Option<PathBuf>,
    /// Read the SO PIN from this environment variable.
    #[arg(long, value_name = "VAR")]
    so_pin_env: Option<String>,
}

#[derive(Args)]
pub struct AddApprover {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    pin: SoPin,
    #[arg(long)]
    name: String,
    /// The approver's Ed25519 public key, PEM (`-----BEGIN PUBLIC KEY-----`); or name
    /// their key in a PKCS#11 token with `--pkcs11-module` and `--key-label`.
    #[arg(long, value_name = "FILE", required_unless_present = "pkcs11_module")]
    public_key: Option<PathBuf>,
    #[command(flatten)]
    source: KeySource,
}

#[derive(Args)]
pub struct RemoveApprover {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    pin: SoPin,
    id: u32,
}

#[derive(Args)]
pub struct SetRules {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    pin: SoPin,
    /// CLASS=M: the class needs M approvals (0 removes the rule). Classes not named
    /// keep their rule.
    #[arg(long = "rule", value_name = "CLASS=M")]
    rules: Vec<String>,
    /// Seconds a request may wait for its approvals.
    #[arg(long)]
    request_ttl: Option<u64>,
    /// Seconds an approved request stays usable.
    #[arg(long)]
    approved_ttl: Option<u64>,
    /// The only mechanisms any key may be used with, comma-separated names or numbers
    /// (`ecdsa,rsa_pkcs_pss,aes_gcm`); `any` lifts the list.
    #[arg(long, value_name = "LIST")]
    mechanisms: Option<String>,
}

#[derive(Args)]
pub struct SetKeyRules {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    pin: SoPin,
    /// The key id (as `ferrohsm key list` shows it).
    key: u64,
    /// CLASS=M for this key, replacing the token's rule (0 removes the key's rule).
    /// Classes: destroy, export, rollback, trim, key-policy, use.
    #[arg(long = "rule", value_name = "CLASS=M")]
    rules: Vec<String>,
    /// No use before this Unix time.
    #[arg(long, value_name = "UNIX-SECONDS")]
    not_before: Option<u64>,
    /// No use from this Unix time on.
    #[arg(long, value_name = "UNIX-SECONDS")]
    not_after: Option<u64>,
    /// At most this many operations started with the key.
    #[arg(long, value_name = "N")]
    max_uses: Option<u64>,
    /// The only mechanisms this key may be used with (as `quorum set --mechanisms`).
    #[arg(long, value_name = "LIST")]
    mechanisms: Option<String>,
    /// Remove every rule of this key (the token's rules apply again).
    #[arg(long, conflicts_with_all = ["rules", "not_before", "not_after", "max_uses", "mechanisms"])]
    clear: bool,
}

#[derive(Args)]
pub struct ShowRequest {
    #[command(flatten)]
    place: Place,
    request: u64,
}

#[derive(Args)]
pub struct Sign {
    #[command(flatten)]
    place: Place,
    /// The request id (as `approvals list` shows it).
    request: u64,
    #[command(flatten)]
    key: KeySource,
}

/// Where the commands run: on the store this process opened, or through the running
/// server that holds it (the same core functions either way).
enum Opened {
    Embedded {
        store: Box<Store>,
        keys: Box<TokenKeys>,
        clock: LifecycleConfig,
    },
    Served {
        // Boxed: a client holds the whole configuration.
        token: Box<Remote<Client>>,
        session: u64,
    },
}

fn open(p: &Place, so_pin: Option<&SoPin>) -> CliResult<Opened> {
    let (cfg, dir) = config_and_store(p.config.as_deref(), p.store.as_deref())?;
    let pin = || match so_pin {
        Some(s) => read_pin(
            "SO PIN",
            source(s.so_pin_file.clone(), s.so_pin_env.clone()),
            false,
        )
        .map(Some),
        None => Ok(None),
    };
    let store = match Store::open_dir(&dir) {
        Ok(s) => s,
        Err(StoreError::Locked { .. }) => {
            let (token, slot) = served_slot(p.token, p.config.as_deref(), cfg, &dir)?;
            let session = token.open_session(slot, so_pin.is_some())?;
            if let Some(pin) = pin()? {
                token.login(session, LoginKind::So, pin)?;
            }
            return Ok(Opened::Served {
                token: Box::new(token),
                session,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let token = pick_token(&store, p.token)?;
    let keys = match pin()? {
        Some(pin) => store.login(token, UserKind::So, &pin)?,
        None => store.public_access(token)?,
    };
    Ok(Opened::Embedded {
        store: Box::new(store),
        keys: Box::new(keys),
        clock: cfg.map(|c| c.lifecycle).unwrap_or_default(),
    })
}

impl Opened {
    fn view(&self) -> CliResult<QuorumView> {
        match self {
            Opened::Embedded { store, keys, clock } => quorum::view(store, keys, now(clock)),
            Opened::Served { token, session } => token.quorum_view(*session),
        }
        .map_err(core)
    }

    fn command(&self, cmd: QuorumCommand) -> CliResult<()> {
        match self {
            Opened::Embedded { store, keys, clock } => {
                quorum::command(store, keys, cmd, now(clock))
            }
            Opened::Served { token, session } => token.quorum_command(*session, cmd),
        }
        .map_err(core)?;
        Ok(())
    }

    fn submit(&self, v: Verdict) -> CliResult<Standing> {
        match self {
            Opened::Embedded { store, keys, clock } => quorum::submit(store, keys, v, now(clock)),
            Opened::Served { token, session } => token.submit_verdict(*session, v),
        }
        .map_err(core)
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Opened::Served { token, session } = self {
            let _ = token.close_session(*session);
        }
    }
}

/// The DER inside a PEM file with this label.
pub(super) fn pem(path: &Path, label: &str) -> CliResult<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(b, _)| b.split_whitespace().collect::<String>())
        .ok_or_else(|| CliError::Usage(format!("{}: no {begin} block", path.display())))?;
    Base64::decode_vec(&body).map_err(|e| {
        CliError::Usage(format!(
            "{}: bad base64 in the PEM block: {e}",
            path.display()
        ))
    })
}

/// An Ed25519 SubjectPublicKeyInfo: a fixed 12-byte prefix, then the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn ed25519_public(path: &Path) -> CliResult<Vec<u8>> {
    let der = pem(path, "PUBLIC KEY")?;
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(k) if k.len() == 32 => Ok(k.to_vec()),
        _ => Err(CliError::Usage(format!(
            "{}: not an Ed25519 public key (openssl pkey -in KEY -pubout)",
            path.display()
        ))),
    }
}

pub fn run_quorum(cmd: QuorumCli, out: &Output) -> CliResult {
    match cmd {
        QuorumCli::Show(p) => show(&open(&p, None)?.view()?, out),
        QuorumCli::AddApprover(a) => {
            let public_key = match &a.public_key {
                Some(p) => ed25519_public(p)?,
                None => ApproverKey::open(&a.source, false)?.public_key(),
            };
            open(&a.place, Some(&a.pin))?.command(QuorumCommand::AddApprover {
                name: a.name,
                public_key,
            })
        }
        QuorumCli::RemoveApprover(a) => {
            open(&a.place, Some(&a.pin))?.command(QuorumCommand::RemoveApprover { id: a.id })
        }
        QuorumCli::Set(s) => {
            let o = open(&s.place, Some(&s.pin))?;
            let mut policy = o.view()?.state.policy;
            for r in &s.rules {
                let (op, m) = parse_rule(r, &Guarded::SETTABLE)?;
                policy.rules.insert(op, m);
            }
            policy.request_ttl = s.request_ttl.unwrap_or(policy.request_ttl);
            policy.approved_ttl = s.approved_ttl.unwrap_or(policy.approved_ttl);
            if let Some(list) = &s.mechanisms {
                policy.mechanisms = parse_mechanisms(list)?;
            }
            o.command(QuorumCommand::SetPolicy { policy })
        }
        QuorumCli::Key(k) => {
            let o = open(&k.place, Some(&k.pin))?;
            let rules = if k.clear {
                None
            } else {
                let mut r = o.view()?.state.keys.remove(&k.key).unwrap_or_default();
                for rule in &k.rules {
                    let (op, m) = parse_rule(rule, &Guarded::PER_KEY)?;
                    r.approvals.insert(op, m);
                }
                r.not_before = k.not_before.or(r.not_before);
                r.not_after = k.not_after.or(r.not_after);
                r.max_uses = k.max_uses.or(r.max_uses);
                if let Some(list) = &k.mechanisms {
                    r.mechanisms = parse_mechanisms(list)?;
                }
                Some(r)
            };
            o.command(QuorumCommand::SetKeyRules { key: k.key, rules })
        }
    }
}

/// `CLASS=M`, the class among `allowed`.
fn parse_rule(r: &str, allowed: &[Guarded]) -> CliResult<(Guarded, u32)> {
    let (class, m) = r
        .split_once('=')
        .ok_or_else(|| CliError::Usage(format!("--rule {r}: expected CLASS=M")))?;
    let op = Guarded::parse(class)
        .filter(|g| allowed.contains(g))
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|g| g.name()).collect();
            CliError::Usage(format!("--rule {r}: classes are {}", names.join(", ")))
        })?;
    let m = m
        .parse()
        .map_err(|_| CliError::Usage(format!("--rule {r}: M is a number")))?;
    Ok((op, m))
}

/// A comma-separated mechanism list; `any` is no list.
fn parse_mechanisms(list: &str) -> CliResult<Option<std::collections::BTreeSet<u64>>> {
    if list.trim() == "any" {
        return Ok(None);
    }
    let mut out = std::collections::BTreeSet::new();
    for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let t = hsm_core::types::MechanismType::parse(m).ok_or_else(|| {
            CliError::Usage(format!(
                "--mechanisms: unknown mechanism '{m}': use a name such as ecdsa or \
                 CKM_AES_GCM, or a number"
            ))
        })?;
        out.insert(t.0);
    }
    Ok(Some(out))
}

fn show(v: &QuorumView, out: &Output) -> CliResult {
    if out.json {
        out.emit(&v.state, &[], Vec::new());
        return Ok(());
    }
    let rows = v
        .state
        .approvers
        .iter()
        .map(|a| vec![a.id.to_string(), a.name.clone(), hex::encode(&a.public_key)])
        .collect();
    out.emit(
        &v.state.approvers,
        &["APPROVER", "NAME", "ED25519 KEY"],
        rows,
    );
    for (op, m) in &v.state.policy.rules {
        println!("rule: {} needs {m} approvals", op.name());
    }
    println!(
        "rule: changes of approvers or rules need {} approvals",
        v.state.required(Guarded::Quorum)
    );
    println!(
        "requests live {} s; approvals {} s",
        v.state.policy.request_ttl, v.state.policy.approved_ttl
    );
    if let Some(m) = &v.state.policy.mechanisms {
        println!("rule: keys are used only with {}", mechanism_names(m));
    }
    for (key, r) in &v.state.keys {
        let mut parts: Vec<String> = r
            .approvals
            .iter()
            .map(|(op, m)| format!("{} needs {m} approvals", op.name()))
            .collect();
        if let Some(t) = r.not_before {
            parts.push(format!("not before {t}"));
        }
        if let Some(t) = r.not_after {
            parts.push(format!("not after {t}"));
        }
        if let Some(n) = r.max_uses {
            let used = v.state.uses.get(key).copied().unwrap_or(0);
            parts.push(format!("used {used} of {n} times"));
        }
        if let Some(m) = &r.mechanisms {
            parts.push(format!("only {}", mechanism_names(m)));
        }
        println!("key {key}: {}", parts.join("; "));
    }
    Ok(())
}

fn mechanism_names(m: &std::collections::BTreeSet<u64>) -> String {
    let names: Vec<String> = m
        .iter()
        .map(|x| hsm_core::types::MechanismType(*x).to_string())
        .collect();
    names.join(", ")
}

pub fn run_approvals(cmd: ApprovalsCli, out: &Output) -> CliResult {
    match cmd {
        ApprovalsCli::List(p) => {
            let v = open(&p, None)?.view()?;
            let rows = v
                .requests
                .iter()
                .map(|r| {
                    vec![
                        r.request.id.to_string(),
                        r.standing.name().into(),
                        format!("{}/{}", r.approvals.len(), r.request.needed),
                        r.request.requester.clone(),
                        r.request.subject.clone(),
                    ]
                })
                .collect();
            out.emit(
                &v.requests,
                &["REQUEST", "STANDING", "APPROVALS", "BY", "OPERATION"],
                rows,
            );
            Ok(())
        }
        ApprovalsCli::Show(a) => {
            let v = open(&a.place, None)?.view()?;
            let r = v
                .requests
                .iter()
                .find(|r| r.request.id == a.request)
                .ok_or_else(|| CliError::Usage(format!("no request {}", a.request)))?;
            let name = |id: &u32| {
                v.state
                    .approver(*id)
                    .map_or_else(|| format!("#{id}"), |a| format!("{} (#{id})", a.name))
            };
            let names = |ids: &[u32]| ids.iter().map(name).collect::<Vec<_>>().join(", ");
            let rows = vec![
                vec!["request".into(), r.request.id.to_string()],
                vec!["operation".into(), r.request.subject.clone()],
                vec!["class".into(), r.request.op.name().into()],
                vec!["digest".into(), hex::encode(&r.request.digest)],
                vec!["requested by".into(), r.request.requester.clone()],
                vec!["created".into(), r.request.created.to_string()],
                vec!["standing".into(), r.standing.name().into()],
                vec![
                    "approvals".into(),
                    format!(
                        "{}/{}: {}",
                        r.approvals.len(),
                        r.request.needed,
                        names(&r.approvals)
                    ),
                ],
                vec!["denials".into(), names(&r.denials)],
            ];
            out.emit(r, &["FIELD", "VALUE"], rows);
            Ok(())
        }
        ApprovalsCli::Approve(s) => sign(s, true, out),
        ApprovalsCli::Deny(s) => sign(s, false, out),
    }
}

fn sign(s: Sign, approve: bool, out: &Output) -> CliResult {
    let key = ApproverKey::open(&s.key, true)?;
    let public = key.public_key();
    let o = open(&s.place, None)?;
    let view = o.view()?;
    let r = view
        .state
        .request(s.request)
        .ok_or_else(|| CliError::Usage(format!("no request {}", s.request)))?;
    let approver = view
        .state
        .approvers
        .iter()
        .find(|a| a.public_key == public)
        .ok_or_else(|| {
            CliError::Refused(format!(
                "{} is no registered approver's key",
                key.describe()
            ))
        })?;
    let mut v = Verdict {
        request: s.request,
        approver: approver.id,
        approve,
        at: view.now,
        signature: Vec::new(),
    };
    let msg = approval_message(&view.store_id, view.token, &v, &r.digest);
    v.signature = key.sign(&msg)?;
    let standing = o.submit(v)?;
    out.emit(
        &standing,
        &["REQUEST", "STANDING", "OPERATION"],
        vec![vec![
            s.request.to_string(),
            standing.name().into(),
            r.subject.clone(),
        ]],
    );
    Ok(())
}
