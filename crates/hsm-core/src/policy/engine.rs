//! The token's policy engine in the running core: the rules the SO set under quorum
//! (`hsm_types::quorum`: per-key approvals, usage windows, use limits, mechanism
//! allow-lists) asked at the two places every operation passes — the one key-usage
//! check (`Hsm::check_use`, for each key an operation uses) and the guard of each
//! management operation ([`admit`]). A use that needs approvals is bound to its input:
//! the operation hashes what it is given and calls `Hsm::release_use` before it
//! produces anything.

use super::quorum::{admit, request_digest};
use crate::error::{Error, Result};
use crate::lifecycle::now;
use crate::objects::attrs::Actor;
use crate::runtime::{Call, Hsm, Location, handles::decode_handle};
use aws_lc_rs::digest::{SHA256, digest};
use hsm_store::{Store, TokenKeys};
use hsm_types::quorum::{Decision, Guarded, Operation, Role};
use hsm_types::{AttributeSet, AttributeType as A, MechanismType as M, ObjectClass};

/// One guarded operation as the engine sees it.
pub struct Guard<'a> {
    pub op: Guarded,
    /// The key it acts on (its key id), for per-key rules.
    pub key: Option<u64>,
    /// What exactly it does ([`request_digest`]).
    pub digest: &'a [u8],
    /// The same in words, for approvers (no secret in it).
    pub subject: &'a str,
    pub role: Role,
}

pub(crate) fn role_of(a: Actor) -> Role {
    match a {
        Actor::So => Role::So,
        Actor::User => Role::User,
        Actor::Public => Role::Public,
    }
}

/// The id per-key rules name a key by (the one `ferrohsm key list` shows): its ring's
/// id, or, for a key that never had a transition, the object's own id. Only secret and
/// private keys have rules; their public halves are public.
pub(crate) fn key_id(id: hsm_types::ObjectId, attrs: &AttributeSet) -> Option<u64> {
    matches!(
        attrs.class(),
        Some(ObjectClass::SECRET_KEY | ObjectClass::PRIVATE_KEY)
    )
    .then(|| attrs.ulong(A::FERRO_KEY_ID).unwrap_or(id.0))
}

/// A use of a key that waits for approvals bound to its input: hash the input, then
/// [`Hsm::release_use`] before any output.
#[must_use]
#[derive(Clone, Debug)]
pub(crate) struct UseGuard {
    key: u64,
    mechanism: M,
    params: Vec<u8>,
}

impl UseGuard {
    /// Binds the mechanism's parameters too (a PSS salt length, an OAEP label, …).
    pub fn with_params(mut self, mech: &crate::mechanism::Mechanism) -> Self {
        self.params = digest(&SHA256, format!("{mech:?}").as_bytes())
            .as_ref()
            .to_vec();
        self
    }
}

/// The engine's say on using key `key` (a key id, `None` for session keys) with
/// `mechanism`: refused outside its window, past its use limit or with a mechanism the
/// policy does not list; counted when the key has a limit; `Some` when every use needs
/// approvals.
pub(crate) fn admit_use(
    store: &Store,
    keys: &TokenKeys,
    role: Role,
    key: Option<u64>,
    mechanism: M,
    secret: bool,
    now: u64,
) -> Result<Option<UseGuard>> {
    let state = store.quorum_shared(keys)?;
    let op = Operation::Use {
        mechanism: mechanism.0,
        secret,
    };
    let guard = match state.evaluate(role, op, key, now) {
        Decision::Allow => None,
        Decision::Deny(why) => {
            tracing::warn!("policy: {why}");
            return Err(Error::PolicyDenied(why));
        }
        Decision::NeedsApproval { .. } => key.map(|key| UseGuard {
            key,
            mechanism,
            params: Vec::new(),
        }),
    };
    if let Some(k) = key.filter(|k| state.counts_uses(*k)) {
        count_use(store, keys, k)?;
    }
    Ok(guard)
}

/// Counts one use, durably, before the use: a crash after it loses a use, never gives
/// one back. Retried when a concurrent change of the state won the race.
fn count_use(store: &Store, keys: &TokenKeys, key: u64) -> Result<()> {
    if !keys.has_master() {
        return Err(Error::UserNotLoggedIn);
    }
    for _ in 0..8 {
        let mut state = (*store.quorum_shared(keys)?).clone();
        state.count_use(key);
        state.seq += 1;
        match store.commit_quorum(keys, &state) {
            Ok(()) => return Ok(()),
            Err(hsm_store::StoreError::Invalid(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::General(
        "the use count could not be written: the approvals kept changing".into(),
    ))
}

impl Hsm {
    /// [`admit_use`] for a key an operation of this call uses (by its handle).
    pub(crate) fn use_policy(
        &self,
        c: &Call,
        handle: u64,
        key: &AttributeSet,
        mechanism: M,
        usage: A,
    ) -> Result<Option<UseGuard>> {
        let id = match decode_handle(handle) {
            Some(Location::Token { id, .. }) => key_id(id, key),
            _ => None,
        };
        let secret = matches!(
            usage,
            A::SIGN | A::SIGN_RECOVER | A::DECRYPT | A::UNWRAP | A::DERIVE
        );
        let keys = self.keys(&c.slot, c.token)?;
        let t = now(&self.config.lifecycle);
        let role = role_of(c.slot.actor());
        admit_use(&self.store, &keys, role, id, mechanism, secret, t)
    }

    /// Lets a use that needs approvals through once they were given for this input
    /// (`input_hash`: SHA-256 of what is signed, decrypted, unwrapped or derived from),
    /// or opens the request and refuses it with `CKR_ACTION_PROHIBITED`.
    pub(crate) fn release_use(&self, c: &Call, g: &UseGuard, input_hash: &[u8]) -> Result<()> {
        let fields: [&[u8]; 5] = [
            b"use",
            &g.key.to_be_bytes(),
            &g.mechanism.0.to_be_bytes(),
            &g.params,
            input_hash,
        ];
        let digest = request_digest(Guarded::Use, &fields);
        let subject = format!(
            "use key {} with mechanism {} on input sha256:{}",
            g.key,
            g.mechanism
                .name()
                .map_or_else(|| format!("0x{:x}", g.mechanism.0), str::to_owned),
            hex::encode(input_hash)
        );
        self.guard(c, Guarded::Use, Some(g.key), &digest, &subject)
    }

    /// [`admit`] for a call of this runtime (its caller's role and keys).
    pub(crate) fn guard(
        &self,
        c: &Call,
        op: Guarded,
        key: Option<u64>,
        digest: &[u8],
        subject: &str,
    ) -> Result<()> {
        let keys = self.keys(&c.slot, c.token)?;
        let t = now(&self.config.lifecycle);
        let g = Guard {
            op,
            key,
            digest,
            subject,
            role: role_of(c.slot.actor()),
        };
        admit(&self.store, &keys, &g, t)
    }
}

impl Hsm {
    /// The `import` rule: a private or secret key about to be stored on the token
    /// (`C_CreateObject`, `C_UnwrapKey`), bound to `fields` (the caller's template, the
    /// wrapped bytes and unwrapping key).
    pub(crate) fn guard_import(
        &self,
        c: &Call,
        attrs: &AttributeSet,
        how: &str,
        fields: &[&[u8]],
    ) -> Result<()> {
        let token = attrs.bool(A::TOKEN) == Some(true);
        let class = match attrs.class() {
            Some(ObjectClass::SECRET_KEY) => "secret",
            Some(ObjectClass::PRIVATE_KEY) => "private",
            _ => return Ok(()),
        };
        if !token {
            return Ok(());
        }
        let mut all: Vec<&[u8]> = vec![how.as_bytes()];
        all.extend_from_slice(fields);
        let digest = request_digest(Guarded::Import, &all);
        let subject = format!(
            "{how}: a {class} key into the token (request sha256:{})",
            hex::encode(&digest[..8])
        );
        self.guard(c, Guarded::Import, None, &digest, &subject)
    }
}

/// The attributes that are a key's roles: what it may be used for.
const ROLES: [A; 10] = [
    A::ENCRYPT,
    A::DECRYPT,
    A::SIGN,
    A::SIGN_RECOVER,
    A::VERIFY,
    A::VERIFY_RECOVER,
    A::WRAP,
    A::UNWRAP,
    A::DERIVE,
    A::TRUSTED,
];

impl Hsm {
    /// The `key-policy` rule covers a key's roles too: `C_SetAttributeValue` that changes
    /// a usage attribute of a token secret or private key needs its approvals, bound to
    /// the key and the new values.
    pub(crate) fn guard_roles(
        &self,
        c: &Call,
        id: hsm_types::ObjectId,
        old: &AttributeSet,
        new: &AttributeSet,
    ) -> Result<()> {
        let Some(key) = key_id(id, old) else {
            return Ok(());
        };
        let changed: Vec<(A, bool)> = ROLES
            .iter()
            .filter(|a| old.bool(**a) != new.bool(**a))
            .map(|a| (*a, new.bool(*a) == Some(true)))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let mut fields = Vec::new();
        for (a, v) in &changed {
            fields.extend_from_slice(&a.0.to_be_bytes());
            fields.push(u8::from(*v));
        }
        let digest = request_digest(
            Guarded::KeyPolicy,
            &[b"roles", &id.0.to_be_bytes(), &fields],
        );
        let words: Vec<String> = changed
            .iter()
            .map(|(a, v)| format!("{a:?} = {}", if *v { "TRUE" } else { "FALSE" }))
            .collect();
        let subject = format!(
            "change key {key}'s roles (object {id}): {}",
            words.join(", ")
        );
        self.guard(c, Guarded::KeyPolicy, Some(key), &digest, &subject)
    }
}

/// SHA-256 of an input, for [`Hsm::release_use`].
pub(crate) fn input_hash(data: &[u8]) -> Vec<u8> {
    digest(&SHA256, data).as_ref().to_vec()
}
