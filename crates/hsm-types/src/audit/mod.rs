//! The tamper-evident audit log's model (issue #16, first step): records, the Merkle
//! tree they are leaves of ([`merkle`]), signed checkpoints ([`checkpoint`]), and the
//! offline verification that finds deleted, edited, reordered and truncated records and
//! a log rolled back behind a checkpoint the verifier holds. No I/O, no clock: the store
//! appends the records, the core signs checkpoints, `ferrohsm audit verify` reads both.

pub mod checkpoint;
pub mod merkle;
#[cfg(test)]
mod tests;

use checkpoint::Checkpoint;
use merkle::{Frontier, Sha256, leaf_hash};
use serde::{Deserialize, Serialize};

/// The `CKR_*` values the store writes in records itself (the core maps every error with
/// `hsm_core::Error::ckr`; a test there checks these against it).
pub mod ckr {
    pub const OK: u64 = 0;
    pub const PIN_INCORRECT: u64 = 0xa0;
    pub const PIN_LOCKED: u64 = 0xa4;
}

/// The leaf format this build writes; a verifier refuses formats it does not know.
pub const RECORD_FORMAT: u8 = 1;

/// Who did it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    /// `so`, `user`, `public`, `approver`, `admin-api`, `cli`, …
    pub role: String,
    pub session: Option<u64>,
    /// The client process, when served.
    pub pid: Option<u32>,
    /// Who signed in, where the front end knows it: an admin API token's subject, an
    /// approver's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// What the log records (`[audit] level` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    /// Nothing.
    Off,
    /// Every change, login, PIN change, export, policy change and approval, and each
    /// refused attempt at one.
    #[default]
    Management,
    /// All of that, and every use of a key (sign, verify, encrypt, decrypt), written
    /// with group commit.
    All,
}

impl AuditLevel {
    pub const fn name(self) -> &'static str {
        match self {
            AuditLevel::Off => "off",
            AuditLevel::Management => "management",
            AuditLevel::All => "all",
        }
    }
}

/// One audit record: a leaf of the log's tree. Never a secret value, a PIN or a private
/// label in clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub format: u8,
    pub seq: u64,
    /// Raised each time the store is opened: records of one run share it.
    pub boot: u64,
    pub time: u64,
    pub actor: AuditActor,
    /// What the store did: `object.create`, `key.rotate`, `login`, …
    pub op: String,
    /// The call that asked for it, where a front end said: `C_GenerateKeyPair`, an admin
    /// API route, a `ferrohsm` command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    pub object: Option<u64>,
    pub version: Option<u32>,
    /// The lifecycle key (`CKA_FERRO_KEY_ID`) a transition concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u64>,
    /// The approval request an approval record concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    pub mechanism: Option<u64>,
    /// The `CKR_*` answered.
    pub result: u64,
}

/// [`AuditRecord`] with borrowed strings, for encoding only: the same fields in the same
/// order with the same rules, so the same bytes (a test holds the two together). A record
/// of key use is made for every signature at level `all`; this one allocates nothing.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AuditRecordRef<'a> {
    pub format: u8,
    pub seq: u64,
    pub boot: u64,
    pub time: u64,
    pub actor: AuditActorRef<'a>,
    pub op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<&'a str>,
    pub object: Option<u64>,
    pub version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    pub mechanism: Option<u64>,
    pub result: u64,
}

/// [`AuditActor`] borrowed, for [`AuditRecordRef`].
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AuditActorRef<'a> {
    pub role: &'a str,
    pub session: Option<u64>,
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
}

/// What verification found wrong, each naming what and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Record `at` (its place in the log) does not decode or has a format we do not know.
    Unreadable { at: u64, why: String },
    /// The record at place `at` says it is record `says`: one was deleted or moved.
    Sequence { at: u64, says: u64 },
    /// The boot counter went down at record `at`: records of a later run before an
    /// earlier one.
    BootBackwards { at: u64 },
    /// A checkpoint whose signature does not verify.
    BadSignature { size: u64 },
    /// A checkpoint of another log.
    WrongOrigin { size: u64, origin: String },
    /// A checkpoint signed over more records than the log has: records were cut off.
    Truncated { checkpoint: u64, records: u64 },
    /// The records do not give the root a checkpoint signed: one of the first `size`
    /// records was edited, deleted, inserted or reordered.
    RootMismatch { size: u64 },
    /// The verifier's pinned checkpoint is larger than anything in the log: the log was
    /// rolled back to an older state.
    RolledBack { pinned: u64, records: u64 },
    /// The log's first `size` records do not give the pinned checkpoint's root: the
    /// history it vouched for was rewritten.
    Forked { size: u64 },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Unreadable { at, why } => write!(f, "record {at} is unreadable: {why}"),
            Finding::Sequence { at, says } => write!(
                f,
                "record {at} says it is record {says}: records before it were deleted, \
                 inserted or moved"
            ),
            Finding::BootBackwards { at } => write!(
                f,
                "record {at}'s boot counter is lower than the record before it: records \
                 were reordered"
            ),
            Finding::BadSignature { size } => write!(
                f,
                "the checkpoint at size {size} is not signed by the audit key: forged or edited"
            ),
            Finding::WrongOrigin { size, origin } => write!(
                f,
                "the checkpoint at size {size} is of another log ({origin})"
            ),
            Finding::Truncated {
                checkpoint,
                records,
            } => write!(
                f,
                "a checkpoint covers {checkpoint} records but the log holds {records}: \
                 records were cut off its end"
            ),
            Finding::RootMismatch { size } => write!(
                f,
                "the first {size} records do not give the root their checkpoint signed: \
                 one of them was edited, deleted, inserted or moved"
            ),
            Finding::RolledBack { pinned, records } => write!(
                f,
                "the pinned checkpoint covers {pinned} records but the log holds {records}: \
                 the log was rolled back to an older state"
            ),
            Finding::Forked { size } => write!(
                f,
                "the log's first {size} records are not the ones the pinned checkpoint \
                 vouched for: its history was rewritten"
            ),
        }
    }
}

/// A checkpoint as the verifier found it, with whether its signature verified under the
/// token's audit key (checked by the caller, who holds the cryptography).
pub struct Signed<'a> {
    pub checkpoint: &'a Checkpoint,
    pub signature_ok: bool,
}

/// What a verification covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub records: u64,
    pub checkpoints: usize,
    /// The largest checkpoint that verified and matches the records.
    pub latest_good: Option<u64>,
    pub findings: Vec<Finding>,
}

/// Verifies a log: `records` in the order the store keeps them (the leaf bytes as
/// stored), its checkpoints, and optionally a checkpoint the operator pinned earlier.
pub fn verify<H: Sha256>(
    origin: &str,
    records: &[Vec<u8>],
    checkpoints: &[Signed<'_>],
    pinned: Option<&Checkpoint>,
) -> Report {
    let mut r = Report {
        records: records.len() as u64,
        checkpoints: checkpoints.len(),
        ..Report::default()
    };
    let mut boot = 0;
    let mut heads = vec![Frontier::default().root::<H>()];
    let mut frontier = Frontier::default();
    for (at, bytes) in records.iter().enumerate() {
        let at = at as u64;
        match rmp_serde::from_slice::<AuditRecord>(bytes) {
            Ok(rec) if rec.format == RECORD_FORMAT => {
                if rec.seq != at {
                    r.findings.push(Finding::Sequence { at, says: rec.seq });
                }
                if rec.boot < boot {
                    r.findings.push(Finding::BootBackwards { at });
                }
                boot = rec.boot;
            }
            Ok(rec) => r.findings.push(Finding::Unreadable {
                at,
                why: format!(
                    "record format {} (this build reads {RECORD_FORMAT})",
                    rec.format
                ),
            }),
            Err(e) => r.findings.push(Finding::Unreadable {
                at,
                why: e.to_string(),
            }),
        }
        frontier.push::<H>(leaf_hash::<H>(bytes));
        heads.push(frontier.root::<H>());
    }
    let head = |size: u64| heads.get(size as usize).copied();
    for s in checkpoints {
        let c = s.checkpoint;
        if !s.signature_ok {
            r.findings.push(Finding::BadSignature { size: c.size });
            continue;
        }
        if c.origin != origin {
            r.findings.push(Finding::WrongOrigin {
                size: c.size,
                origin: c.origin.clone(),
            });
            continue;
        }
        match head(c.size) {
            None => r.findings.push(Finding::Truncated {
                checkpoint: c.size,
                records: r.records,
            }),
            Some(root) if root != c.root => r.findings.push(Finding::RootMismatch { size: c.size }),
            Some(_) => r.latest_good = r.latest_good.max(Some(c.size)),
        }
    }
    if let Some(p) = pinned {
        match head(p.size) {
            None => r.findings.push(Finding::RolledBack {
                pinned: p.size,
                records: r.records,
            }),
            Some(root) if root != p.root || p.origin != origin => {
                r.findings.push(Finding::Forked { size: p.size })
            }
            Some(_) => {}
        }
    }
    r
}
