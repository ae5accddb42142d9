//! The audit log's parts that callers name (schema 5): what is recorded
//! ([`AuditSettings`]), one record's content besides who and when ([`Event`]), who is
//! acting on this thread ([`scope`]), and the log's cryptography through aws-lc-rs
//! (SHA-256 for the Merkle tree of `hsm_types::audit`, Ed25519 checkpoints as C2SP signed
//! notes). The store's side — records in the same write batch as the change they
//! describe, the log head, the token's audit key, checkpoints, reading and verifying —
//! is `store/audit.rs`; `docs/audit.md` is the operator's description.
//!
//! Who acts is thread context, not an argument: the core sets it once per call at its one
//! entry point (`Hsm::run`), the server once per connection (the client's process), and
//! every store write made inside sees it. A write outside any scope (the CLI working on a
//! store directly) is recorded as `local` with this process's id.

use aws_lc_rs::digest::{Context as Digest, SHA256};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use hsm_types::audit::checkpoint::{Checkpoint, Malformed, key_id, parse_note, signed_note};
use hsm_types::audit::merkle::{Hash, Sha256};
use hsm_types::audit::{AuditActor, AuditActorRef};
use hsm_types::{ObjectId, VersionNo};
use std::borrow::Cow;
use std::cell::RefCell;
use std::time::Duration;

pub use hsm_types::audit::AuditLevel;

/// What the log records and how (`[audit]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    pub level: AuditLevel,
    /// Fail closed: an operation whose record cannot be written is refused.
    pub required: bool,
    /// A checkpoint is signed once this many records are not covered by one…
    pub checkpoint_every: u64,
    /// …or once the newest uncovered record is this old (checked on every write and
    /// by [`crate::Store::audit_tick`]).
    pub checkpoint_interval: Duration,
    /// At level `all`, records of key use are written at once (to the audit spool, see
    /// `store/audit_spool.rs`) but fsynced at most this far apart (group commit), and
    /// moved into the log at most this long after: a power cut loses at most this much
    /// of them; a killed process loses none.
    pub group_commit: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            level: AuditLevel::Management,
            required: false,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            group_commit: Duration::from_millis(20),
        }
    }
}

/// What one record says besides who and when: the store fills in the operation and the
/// object it wrote; the caller adds the mechanism and, for a refusal, the `CKR_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub op: String,
    pub object: Option<ObjectId>,
    pub version: Option<VersionNo>,
    pub key: Option<u64>,
    pub request: Option<u64>,
    pub mechanism: Option<u64>,
    /// The `CKR_*` value answered (0 for success).
    pub result: u64,
}

impl Event {
    pub fn new(op: impl Into<String>) -> Event {
        Event {
            op: op.into(),
            object: None,
            version: None,
            key: None,
            request: None,
            mechanism: None,
            result: 0,
        }
    }
    pub fn key(mut self, k: u64) -> Event {
        self.key = Some(k);
        self
    }
    pub fn object(mut self, o: ObjectId) -> Event {
        self.object = Some(o);
        self
    }
    pub fn version(mut self, v: VersionNo) -> Event {
        self.version = Some(v);
        self
    }
    pub fn request(mut self, r: u64) -> Event {
        self.request = Some(r);
        self
    }
    pub fn mechanism(mut self, m: Option<u64>) -> Event {
        self.mechanism = m;
        self
    }
    pub fn result(mut self, ckr: u64) -> Event {
        self.result = ckr;
        self
    }
}

/// Who is acting, and through which call, for the writes of one thread. Made on every
/// call, so it holds borrowed names and no process id: the record's actor is built from
/// it only when a record is written ([`Context::actor`]).
#[derive(Clone, Debug)]
pub struct Context {
    /// `so`, `user`, `public`, `approver`, `admin-api`, `cli`, …
    pub role: Cow<'static, str>,
    pub session: Option<u64>,
    /// The client process; `None`: the one this thread serves ([`set_client_pid`]), or
    /// this process.
    pub pid: Option<u32>,
    /// Who signed in, where the front end knows it.
    pub subject: Option<String>,
    /// `C_GenerateKeyPair`, `PUT /v1/policy`, `ferrohsm backup restore`, …
    pub call: Option<Cow<'static, str>>,
    /// The mechanism of the call, once known.
    pub mechanism: Option<u64>,
    /// The token object the call uses, once known (a key's use names its key).
    pub object: Option<ObjectId>,
}

impl Context {
    /// A context for `role` acting through `call`, outside a session.
    pub fn new(role: impl Into<Cow<'static, str>>, call: Option<Cow<'static, str>>) -> Context {
        Context {
            role: role.into(),
            session: None,
            pid: None,
            subject: None,
            call,
            mechanism: None,
            object: None,
        }
    }

    /// The actor a record names; `this_process` stands in when neither the scope nor
    /// the thread names a client.
    pub fn actor(&self, this_process: u32) -> AuditActor {
        let a = self.actor_ref(this_process);
        AuditActor {
            role: a.role.to_string(),
            session: a.session,
            pid: a.pid,
            subject: a.subject.map(str::to_string),
        }
    }

    /// [`Context::actor`] borrowed from this context.
    pub fn actor_ref(&self, this_process: u32) -> AuditActorRef<'_> {
        let pid = self
            .pid
            .or_else(|| CLIENT_PID.with(|c| c.get()))
            .unwrap_or(this_process);
        AuditActorRef {
            role: &self.role,
            session: self.session,
            pid: Some(pid),
            subject: self.subject.as_deref(),
        }
    }
}

struct Frame {
    context: Context,
    /// A record of a refusal (a result other than `CKR_OK`) was written in this scope.
    refusal_recorded: bool,
}

thread_local! {
    static SCOPE: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    static CLIENT_PID: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// While alive, the writes of this thread are recorded as `context`'s. Scopes nest: the
/// innermost one counts, and dropping it restores the one around it.
#[must_use = "the scope ends when this is dropped"]
pub struct Scope(());

pub fn scope(context: Context) -> Scope {
    SCOPE.with(|s| {
        s.borrow_mut().push(Frame {
            context,
            refusal_recorded: false,
        })
    });
    Scope(())
}

impl Drop for Scope {
    fn drop(&mut self) {
        SCOPE.with(|s| s.borrow_mut().pop());
    }
}

/// Tells the current scope the mechanism its call uses (for the records it writes).
pub fn note_mechanism(m: u64) {
    SCOPE.with(|s| {
        if let Some(f) = s.borrow_mut().last_mut() {
            f.context.mechanism = Some(m);
        }
    })
}

/// Tells the current scope the token object its call uses.
pub fn note_object(o: ObjectId) {
    SCOPE.with(|s| {
        if let Some(f) = s.borrow_mut().last_mut() {
            f.context.object = Some(o);
        }
    })
}

/// The mechanism the current scope's call noted (for the metrics).
pub fn scope_mechanism() -> Option<u64> {
    SCOPE.with(|s| s.borrow().last().and_then(|f| f.context.mechanism))
}

/// Whether the store recorded a refusal in the current scope (a wrong PIN), so the
/// caller does not record the same refusal twice.
pub fn refusal_recorded_in_scope() -> bool {
    SCOPE.with(|s| s.borrow().last().is_some_and(|f| f.refusal_recorded))
}

pub(crate) fn mark_refusal_recorded() {
    SCOPE.with(|s| {
        if let Some(f) = s.borrow_mut().last_mut() {
            f.refusal_recorded = true;
        }
    })
}

/// Runs `f` with this thread's context (`local` outside any scope), borrowed: no copy of
/// its names.
pub(crate) fn with_current<T>(f: impl FnOnce(&Context) -> T) -> T {
    SCOPE.with(|s| match s.borrow().last() {
        Some(frame) => f(&frame.context),
        None => f(&Context::new("local", None)),
    })
}

/// Names the process this thread serves (the server, per connection, from the socket's
/// peer credentials); `None` goes back to this process.
pub fn set_client_pid(pid: Option<u32>) {
    CLIENT_PID.with(|c| c.set(pid));
}

/// A record as the store keeps it, decoded.
pub fn decode_record(bytes: &[u8]) -> crate::Result<hsm_types::audit::AuditRecord> {
    crate::records::decode(bytes, || "audit record".into())
}

/// SHA-256 for the audit model, through aws-lc-rs.
pub struct AwsLc;

impl Sha256 for AwsLc {
    fn digest(parts: &[&[u8]]) -> Hash {
        let mut c = Digest::new(&SHA256);
        for p in parts {
            c.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(c.finish().as_ref());
        out
    }
}

/// Signs `c` as a note by the key named `c.origin`.
pub fn sign_checkpoint(c: &Checkpoint, key: &Ed25519KeyPair) -> String {
    let body = c.body();
    let id = key_id::<AwsLc>(&c.origin, key.public_key().as_ref());
    signed_note(&body, &c.origin, id, key.sign(body.as_bytes()).as_ref())
}

/// The checkpoint in `note`, and whether a signature by one of `public_keys` (named as
/// the checkpoint's origin) verifies over it.
pub fn open_checkpoint(
    note: &str,
    public_keys: &[Vec<u8>],
) -> Result<(Checkpoint, bool), Malformed> {
    let n = parse_note(note)?;
    let c = Checkpoint::parse_body(&n.body)?;
    let ok = public_keys.iter().any(|public| {
        let id = key_id::<AwsLc>(&c.origin, public);
        n.signatures.iter().any(|(name, kid, sig)| {
            *name == c.origin
                && *kid == id
                && UnparsedPublicKey::new(&ED25519, public)
                    .verify(n.body.as_bytes(), sig)
                    .is_ok()
        })
    });
    Ok((c, ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use hsm_types::audit::merkle::{Frontier, leaf_hash};

    #[test]
    fn aws_lc_gives_the_certificate_transparency_root() {
        let inputs: [&[u8]; 3] = [b"", &[0x00], &[0x10]];
        let mut f = Frontier::default();
        for i in inputs {
            f.push::<AwsLc>(leaf_hash::<AwsLc>(i));
        }
        assert_eq!(
            hex::encode(f.root::<AwsLc>()),
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
        );
    }

    #[test]
    fn a_signed_checkpoint_opens_and_a_changed_or_foreign_one_does_not() {
        let key = || {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
        };
        let (mine, other) = (key(), key());
        let public = vec![mine.public_key().as_ref().to_vec()];
        let c = Checkpoint {
            origin: "ferrohsm/test".into(),
            size: 3,
            root: [5u8; 32],
        };
        let note = sign_checkpoint(&c, &mine);
        assert_eq!(open_checkpoint(&note, &public).unwrap(), (c.clone(), true));
        let edited = note.replacen("\n3\n", "\n4\n", 1);
        assert!(!open_checkpoint(&edited, &public).unwrap().1);
        let foreign = sign_checkpoint(&c, &other);
        assert!(!open_checkpoint(&foreign, &public).unwrap().1);
    }

    #[test]
    fn scopes_nest_and_restore() {
        let ctx = |role: &'static str| Context::new(role, None);
        let current = || with_current(Context::clone);
        assert_eq!(current().role, "local");
        let outer = scope(ctx("so"));
        {
            let _inner = scope(ctx("user"));
            note_mechanism(7);
            assert_eq!(current().role, "user");
            assert_eq!(current().mechanism, Some(7));
            mark_refusal_recorded();
            assert!(refusal_recorded_in_scope());
        }
        assert_eq!(current().role, "so");
        assert!(!refusal_recorded_in_scope());
        drop(outer);
        assert_eq!(current().role, "local");
    }
}
