//! The lifecycle room: [`KeyManager`] runs the key-lifecycle operations (rotate, roll
//! back, disable, enable, schedule destruction, restore, destroy, trim, policy, list,
//! sweep) over a logged-in token, each one transition of the ring state machine in
//! `hsm_types::lifecycle` written as one durable batch. The CLI drives it directly over a
//! store it opened; the runtime (`lifecycle::runtime`) drives it for PKCS#11 and enforces the
//! rings on every use and search. `docs/lifecycle.md` is the model.

pub(crate) mod material;
pub(crate) mod runtime;

pub use hsm_types::lifecycle::{
    DEFAULT_DESTROY_DELAY, Direction, KeyId, KeyPolicy, KeyRing, Refusal, RingVersion, VersionState,
};

use crate::config::LifecycleConfig;
use crate::error::{Error, Result};
use crate::policy::quorum::request_digest;
use crate::provider::CryptoProvider;
use hsm_store::{Query, RingWrites, Store, TokenKeys};
use hsm_types::quorum::Guarded;
use hsm_types::{AttrValue, AttributeSet, AttributeType as A, ObjectClass, ObjectId};

/// Seconds since the Unix epoch, moved by the configuration's `clock_offset_secs`.
pub fn now(cfg: &LifecycleConfig) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    t.saturating_add_signed(cfg.clock_offset_secs)
}

/// A key as listed: its ring (stored, or the implicit one of a key that had no
/// transition) and what identifies it to people.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    pub key: KeyId,
    pub label: String,
    pub class: String,
    /// Whether the ring is stored (the key had a transition) or implicit.
    pub stored: bool,
    pub ring: KeyRing,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepReport {
    /// Versions whose scheduled destruction fell due, now erased.
    pub destroyed: Vec<(KeyId, u32)>,
    /// Keys whose auto-rotation period had passed, and the version each got.
    pub rotated: Vec<(KeyId, u32)>,
}

/// One lifecycle request as data: what `ferrohsm key` asks, of a [`KeyManager`] over a
/// store it opened or of the `ferrohsm-server` that holds the store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyCommand {
    List,
    Show { key: KeyId },
    Rotate { key: KeyId },
    Rollback { key: KeyId, to: u32 },
    Disable { key: KeyId, version: u32 },
    Enable { key: KeyId, version: u32 },
    ScheduleDestroy { key: KeyId, version: u32 },
    Restore { key: KeyId, version: u32 },
    DestroyNow { key: KeyId, version: u32 },
    Trim { key: KeyId, below: u32 },
    SetPolicy { key: KeyId, policy: KeyPolicy },
}

/// The answer to a [`KeyCommand`], with the time the manager decided at.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum KeyAnswer {
    Keys {
        keys: Vec<KeyInfo>,
        now: u64,
    },
    Ring {
        ring: KeyRing,
        stored: bool,
        now: u64,
    },
}

/// The lifecycle operations over one logged-in token.
pub struct KeyManager<'a> {
    store: &'a Store,
    keys: &'a TokenKeys,
    provider: &'a dyn CryptoProvider,
    settings: LifecycleConfig,
    now: u64,
}

/// A refusal of the state machine as the core's error: the operation is not allowed on
/// this key as it stands.
pub(crate) fn refused(r: Refusal) -> Error {
    Error::ActionProhibited(r.to_string().into())
}

impl<'a> KeyManager<'a> {
    pub fn new(
        store: &'a Store,
        keys: &'a TokenKeys,
        provider: &'a dyn CryptoProvider,
        settings: LifecycleConfig,
    ) -> Self {
        KeyManager {
            store,
            keys,
            provider,
            settings,
            now: now(&settings),
        }
    }

    /// The same manager at another time (tests, and callers that fixed "now" once).
    #[must_use]
    pub fn at(mut self, now: u64) -> Self {
        self.now = now;
        self
    }

    pub fn time(&self) -> u64 {
        self.now
    }

    /// The key an object belongs to, with its ring and whether that ring is stored.
    pub fn key_of(&self, id: ObjectId) -> Result<(KeyRing, bool)> {
        let obj = self.store.read_object(self.keys, id)?;
        match obj.attrs.ulong(A::FERRO_KEY_ID) {
            Some(k) => {
                let ring = self.stored_ring(KeyId(k))?;
                let member = ring.version_of(id).map(|v| v.number);
                let claimed = obj.attrs.ulong(A::FERRO_KEY_VERSION).map(|v| v as u32);
                if member.is_none() || member != claimed {
                    return Err(tampered(format!(
                        "object {id} says it is version {claimed:?} of key {k}, whose ring \
                         does not list it so"
                    )));
                }
                Ok((ring, true))
            }
            None => Ok((self.implicit_ring(id, &obj.attrs)?, false)),
        }
    }

    /// A key's ring: stored, or (a key that had no transition) the implicit version 1.
    pub fn ring(&self, key: KeyId) -> Result<(KeyRing, bool)> {
        if let Some(r) = self.store.ring(self.keys, key)? {
            return Ok((r, true));
        }
        let obj = self.store.read_object(self.keys, ObjectId(key.0))?;
        if obj.attrs.ulong(A::FERRO_KEY_ID).is_some() {
            return Err(tampered(format!(
                "object {key} carries ring attributes but key {key} has no ring record"
            )));
        }
        let ring = self.implicit_ring(ObjectId(key.0), &obj.attrs)?;
        if ring.key != key {
            return Err(Error::ArgumentsBad(
                format!(
                    "object {key} is the public half of key {}; name the key by that id",
                    ring.key
                )
                .into(),
            ));
        }
        Ok((ring, false))
    }

    fn stored_ring(&self, key: KeyId) -> Result<KeyRing> {
        self.store
            .ring(self.keys, key)?
            .ok_or_else(|| tampered(format!("key {key}'s ring record is missing")))
    }

    /// Version 1 of a key without a ring: the secret key alone, or a private key with
    /// the public key that pairs with it (by material, among those sharing its `CKA_ID`).
    fn implicit_ring(&self, id: ObjectId, attrs: &AttributeSet) -> Result<KeyRing> {
        let policy = KeyPolicy {
            destroy_delay: self.settings.destroy_delay_secs,
            ..KeyPolicy::default()
        };
        let created = self.created_at(id)?;
        let objects = match attrs.class() {
            Some(ObjectClass::SECRET_KEY) => vec![id],
            Some(ObjectClass::PRIVATE_KEY) => {
                let mut v = vec![id];
                v.extend(self.partner(attrs, ObjectClass::PUBLIC_KEY)?);
                v
            }
            Some(ObjectClass::PUBLIC_KEY) => {
                if let Some(p) = self.partner(attrs, ObjectClass::PRIVATE_KEY)? {
                    let private = self.store.read_object(self.keys, p)?;
                    return self.implicit_ring(p, &private.attrs);
                }
                vec![id]
            }
            _ => {
                return Err(Error::ArgumentsBad(
                    format!("object {id} is not a key: only keys have a lifecycle").into(),
                ));
            }
        };
        Ok(KeyRing::first(
            KeyId(objects[0].0),
            objects,
            created,
            policy,
        ))
    }

    fn created_at(&self, id: ObjectId) -> Result<u64> {
        Ok(self
            .store
            .versions(self.keys, id)?
            .first()
            .map_or(0, |v| v.created_at))
    }

    /// The other half of a pair without a ring: same key type and `CKA_ID`, matching
    /// material, and not already in a ring.
    fn partner(&self, attrs: &AttributeSet, class: ObjectClass) -> Result<Option<ObjectId>> {
        let q = Query {
            class: Some(class),
            label: None,
            id: attrs.id().map(<[u8]>::to_vec),
            key_type: attrs.key_type(),
            mechanism: None,
        };
        for cand in self.store.find(self.keys, &q)? {
            let Ok(o) = self.store.read_object(self.keys, cand) else {
                continue;
            };
            if o.attrs.ulong(A::FERRO_KEY_ID).is_some() {
                continue;
            }
            let (private, public) = if class == ObjectClass::PUBLIC_KEY {
                (attrs, &o.attrs)
            } else {
                (&o.attrs, attrs)
            };
            if material::halves_match(self.provider, private, public) {
                return Ok(Some(cand));
            }
        }
        Ok(None)
    }

    /// Every key of the token: those with rings, and every secret or private key (and
    /// public key without a private half) that has none.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        let mut in_rings = std::collections::HashSet::new();
        for ring in self.store.rings(self.keys)? {
            in_rings.extend(ring.versions.iter().flat_map(|v| v.objects.iter().copied()));
            let label = self.label_of(&ring);
            out.push(KeyInfo {
                key: ring.key,
                label: label.0,
                class: label.1.into(),
                stored: true,
                ring,
            });
        }
        for id in self.store.all_objects(self.keys)? {
            if in_rings.contains(&id) {
                continue;
            }
            let Ok(o) = self.store.read_object(self.keys, id) else {
                continue;
            };
            if !matches!(
                o.attrs.class(),
                Some(ObjectClass::SECRET_KEY | ObjectClass::PRIVATE_KEY | ObjectClass::PUBLIC_KEY)
            ) || o.attrs.ulong(A::FERRO_KEY_ID).is_some()
            {
                continue;
            }
            let ring = self.implicit_ring(id, &o.attrs)?;
            if ring.key != KeyId(id.0) {
                continue; // a public half, listed with its private key
            }
            in_rings.extend(ring.versions[0].objects.iter().copied());
            out.push(KeyInfo {
                key: ring.key,
                label: String::from_utf8_lossy(o.attrs.label().unwrap_or_default()).into_owned(),
                class: class_name(o.attrs.class()).into(),
                stored: false,
                ring,
            });
        }
        out.sort_by_key(|k| k.key);
        Ok(out)
    }

    fn label_of(&self, ring: &KeyRing) -> (String, &'static str) {
        let pick = ring
            .primary
            .and_then(|p| ring.version(p).ok())
            .or_else(|| ring.versions.iter().rev().find(|v| !v.objects.is_empty()));
        pick.and_then(|v| v.objects.first())
            .and_then(|id| self.store.read_object(self.keys, *id).ok())
            .map(|o| {
                (
                    String::from_utf8_lossy(o.attrs.label().unwrap_or_default()).into_owned(),
                    class_name(o.attrs.class()),
                )
            })
            .unwrap_or_else(|| (String::new(), "destroyed"))
    }

    /// A new version with fresh material of the same kind (both halves of a pair), same
    /// label and attributes, becomes the primary. Returns the ring as written.
    pub fn rotate(&self, key: KeyId) -> Result<KeyRing> {
        let (mut ring, stored) = self.ring(key)?;
        let from = ring
            .primary
            .and_then(|p| ring.version(p).ok())
            .or_else(|| ring.versions.iter().rev().find(|v| !v.objects.is_empty()))
            .ok_or_else(|| {
                Error::ActionProhibited("every version of the key is destroyed".into())
            })?;
        let old: Vec<AttributeSet> = from
            .objects
            .iter()
            .map(|id| Ok(self.store.read_object(self.keys, *id)?.attrs))
            .collect::<Result<_>>()?;
        let mut fresh = material::fresh(self.provider, &old)?;
        let n = ring.rotate(Vec::new(), self.now).map_err(refused)?;
        for a in &mut fresh {
            mark(a, key, n);
        }
        let w = RingWrites {
            create: fresh,
            into_version: Some(n),
            what: Some("rotate"),
            ..RingWrites::default()
        };
        self.commit(ring, stored, w)
    }

    pub fn rollback(&self, key: KeyId, to: u32) -> Result<KeyRing> {
        self.transition("rollback", key, |r, _| r.rollback(to).map(|()| Vec::new()))
    }

    pub fn disable(&self, key: KeyId, v: u32) -> Result<KeyRing> {
        self.transition("disable", key, |r, _| r.disable(v).map(|()| Vec::new()))
    }

    pub fn enable(&self, key: KeyId, v: u32) -> Result<KeyRing> {
        self.transition("enable", key, |r, _| r.enable(v).map(|()| Vec::new()))
    }

    /// Schedules version `v`'s destruction (at once when the key's delay is 0).
    pub fn schedule_destroy(&self, key: KeyId, v: u32) -> Result<KeyRing> {
        self.refuse_device_key(key, "scheduled destruction")?;
        self.transition("destroy", key, |r, now| r.schedule_destroy(v, now))
    }

    pub fn restore(&self, key: KeyId, v: u32) -> Result<KeyRing> {
        self.transition("restore", key, |r, now| {
            r.restore(v, now).map(|()| Vec::new())
        })
    }

    /// Destroys version `v` now (a key with a delay of 0, or a deadline that passed).
    pub fn destroy_now(&self, key: KeyId, v: u32) -> Result<KeyRing> {
        self.refuse_device_key(key, "destruction through the lifecycle")?;
        self.transition("destroy-now", key, |r, now| r.destroy_now(v, now))
    }

    /// Drops every version below `floor` for good.
    pub fn trim(&self, key: KeyId, floor: u32) -> Result<KeyRing> {
        self.refuse_device_key(key, "trimming")?;
        self.transition("trim", key, |r, _| r.trim(floor))
    }

    pub fn set_policy(&self, key: KeyId, p: KeyPolicy) -> Result<KeyRing> {
        if p.auto_rotate_period.is_some() {
            self.refuse_device_key(key, "automatic rotation")?;
        }
        let zero_ok = self.settings.allow_immediate_destroy;
        self.transition("policy", key, |r, _| {
            r.set_policy(p, zero_ok).map(|()| Vec::new())
        })
    }

    /// Takes one public half out of its version (a client deleting a pair's public key
    /// object keeps the private key, as it would without a lifecycle).
    pub fn drop_public_half(&self, key: KeyId, id: ObjectId) -> Result<KeyRing> {
        self.transition("drop-public-half", key, |r, _| {
            let v = r
                .versions
                .iter_mut()
                .find(|v| v.objects.get(1) == Some(&id))
                .ok_or_else(|| {
                    Refusal::Policy(format!("object {id} is no version's public half"))
                })?;
            v.objects.truncate(1);
            r.seq += 1;
            Ok(vec![id])
        })
    }

    /// Scheduled destructions that fell due are done, and keys whose rotation period
    /// passed rotate. Never on a hot path: at login, from the CLI, on the server's timer.
    pub fn sweep(&self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        for mut ring in self.store.rings(self.keys)? {
            let before: Vec<(u32, VersionState)> =
                ring.versions.iter().map(|v| (v.number, v.state)).collect();
            let erased = ring.sweep(self.now);
            if !erased.is_empty() {
                for (n, s) in before {
                    if matches!(s, VersionState::DestroyScheduled { .. })
                        && matches!(
                            ring.version(n).map(|v| v.state),
                            Ok(VersionState::Destroyed { .. })
                        )
                    {
                        report.destroyed.push((ring.key, n));
                    }
                }
                let key = ring.key;
                let w = RingWrites {
                    erase: erased,
                    what: Some("sweep"),
                    ..RingWrites::default()
                };
                ring = self.store.commit_ring(self.keys, ring, w)?.0;
                tracing::info!(key = %key, "scheduled destruction done");
            }
            if ring.rotation_due(self.now) {
                let r = self.rotate(ring.key)?;
                report.rotated.push((r.key, r.primary.unwrap_or(0)));
                tracing::info!(key = %r.key, version = r.primary, "rotated on schedule");
            }
        }
        Ok(report)
    }

    /// Runs one request. A change first does what fell due ([`KeyManager::sweep`]).
    pub fn execute(&self, cmd: KeyCommand) -> Result<KeyAnswer> {
        let now = self.now;
        let ring = |r: KeyRing| KeyAnswer::Ring {
            ring: r,
            stored: true,
            now,
        };
        if !matches!(cmd, KeyCommand::List | KeyCommand::Show { .. }) {
            self.sweep()?;
        }
        if let Some((op, key, digest, subject)) = guarded(&cmd) {
            let g = crate::policy::engine::Guard {
                op,
                key: Some(key),
                digest: &digest,
                subject: &subject,
                role: hsm_types::quorum::Role::User,
            };
            crate::policy::quorum::admit(self.store, self.keys, &g, now)?;
        }
        Ok(match cmd {
            KeyCommand::List => KeyAnswer::Keys {
                keys: self.list()?,
                now,
            },
            KeyCommand::Show { key } => {
                let (r, stored) = self.ring(key)?;
                KeyAnswer::Ring {
                    ring: r,
                    stored,
                    now,
                }
            }
            KeyCommand::Rotate { key } => ring(self.rotate(key)?),
            KeyCommand::Rollback { key, to } => ring(self.rollback(key, to)?),
            KeyCommand::Disable { key, version } => ring(self.disable(key, version)?),
            KeyCommand::Enable { key, version } => ring(self.enable(key, version)?),
            KeyCommand::ScheduleDestroy { key, version } => {
                ring(self.schedule_destroy(key, version)?)
            }
            KeyCommand::Restore { key, version } => ring(self.restore(key, version)?),
            KeyCommand::DestroyNow { key, version } => ring(self.destroy_now(key, version)?),
            KeyCommand::Trim { key, below } => ring(self.trim(key, below)?),
            KeyCommand::SetPolicy { key, policy } => ring(self.set_policy(key, policy)?),
        })
    }

    /// A key whose material lives in a device (`docs/adapters.md`): what would make or
    /// erase material through the lifecycle is refused, since the adapters do not make
    /// rotations or erase device keys from here yet (a later sweep would otherwise stop
    /// on it, or leave the key in the device). `C_DestroyObject` on its slot deletes it
    /// in the device; disabling and enabling work as for any key.
    fn refuse_device_key(&self, key: KeyId, what: &str) -> Result<()> {
        let (ring, _) = self.ring(key)?;
        let in_device = ring
            .versions
            .iter()
            .filter_map(|v| v.objects.first())
            .any(|id| {
                self.store
                    .read_object(self.keys, *id)
                    .is_ok_and(|o| o.attrs.get(A::FERRO_DEVICE_KEY).is_some())
            });
        if in_device {
            return Err(Error::ActionProhibited(
                format!(
                    "{what} of a key that lives in a device is not supported yet; destroy it \
                 with C_DestroyObject on its slot, which deletes it in the device"
                )
                .into(),
            ));
        }
        Ok(())
    }

    fn transition(
        &self,
        what: &'static str,
        key: KeyId,
        f: impl FnOnce(&mut KeyRing, u64) -> hsm_types::lifecycle::Outcome<Vec<ObjectId>>,
    ) -> Result<KeyRing> {
        let (mut ring, stored) = self.ring(key)?;
        let erase = f(&mut ring, self.now).map_err(refused)?;
        let w = RingWrites {
            erase,
            what: Some(what),
            ..RingWrites::default()
        };
        self.commit(ring, stored, w)
    }

    /// Writes a transition; a key's first also marks version 1's surviving objects as
    /// members of the ring, in the same batch.
    fn commit(&self, ring: KeyRing, stored: bool, mut w: RingWrites) -> Result<KeyRing> {
        if !stored {
            let first = ring
                .version(1)
                .map(|v| v.objects.clone())
                .unwrap_or_default();
            for id in first {
                let mut a = self.store.read_object(self.keys, id)?.attrs;
                mark(&mut a, ring.key, 1);
                w.update.push((id, a));
            }
        }
        Ok(self.store.commit_ring(self.keys, ring, w)?.0)
    }
}

/// An object's ring attributes.
fn mark(a: &mut AttributeSet, key: KeyId, version: u32) {
    a.set(A::FERRO_KEY_ID, AttrValue::Ulong(key.0));
    a.set(A::FERRO_KEY_VERSION, AttrValue::Ulong(version as u64));
}

fn tampered(what: String) -> Error {
    Error::from(hsm_store::StoreError::Tampered { location: what })
}

fn class_name(c: Option<ObjectClass>) -> &'static str {
    match c {
        Some(ObjectClass::SECRET_KEY) => "secret-key",
        Some(ObjectClass::PRIVATE_KEY) => "key-pair",
        Some(ObjectClass::PUBLIC_KEY) => "public-key",
        _ => "other",
    }
}

/// The dual-control class, digest and description of a key command that rules can guard.
fn guarded(cmd: &KeyCommand) -> Option<(Guarded, u64, Vec<u8>, String)> {
    use KeyCommand as K;
    let be = |k: &KeyId, n: u32| (k.0.to_be_bytes(), n.to_be_bytes());
    let (op, key, n, what) = match cmd {
        K::ScheduleDestroy { key, version } | K::DestroyNow { key, version } => (
            Guarded::Destroy,
            key,
            *version,
            format!("destroy key {key} version {version}"),
        ),
        K::Rollback { key, to } => (
            Guarded::Rollback,
            key,
            *to,
            format!("roll key {key} back to version {to}"),
        ),
        K::Trim { key, below } => (
            Guarded::Trim,
            key,
            *below,
            format!("trim key {key} below version {below}"),
        ),
        K::SetPolicy { key, policy } => {
            let p = format!("{policy:?}");
            let (k, _) = be(key, 0);
            let digest = request_digest(Guarded::KeyPolicy, &[b"key", &k, p.as_bytes()]);
            return Some((
                Guarded::KeyPolicy,
                key.0,
                digest,
                format!("set key {key}'s policy to {p}"),
            ));
        }
        _ => return None,
    };
    let (k, v) = be(key, n);
    Some((op, key.0, request_digest(op, &[b"key", &k, &v]), what))
}
