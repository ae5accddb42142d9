//! Key lifecycle: a *key* is a ring of *versions*, each with its own material (its own
//! store objects) and a state, and at most one *primary* version. This module is the
//! state machine alone — no I/O, no clock of its own: every transition takes the time
//! it happens at, checks what it may, and says which objects must be erased. The store
//! persists a [`KeyRing`] in one synced batch with the objects a transition makes or
//! erases; the core decides who may ask. `docs/lifecycle.md` is the prose.

use crate::ObjectId;
use serde::{Deserialize, Serialize};
use std::fmt;

#[cfg(test)]
mod tests;

/// A key: the object id of the first object of its version 1 (the secret key, or the
/// private half of a pair). Object ids are never reused, so neither are key ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key#{}", self.0)
    }
}

/// Thirty days, the default time between scheduling a version's destruction and its
/// erasure (Cloud KMS's default too).
pub const DEFAULT_DESTROY_DELAY: u64 = 30 * 24 * 3600;

/// The state of one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionState {
    /// Usable within the key's policy.
    Enabled,
    /// Kept, refused for every use until enabled again.
    Disabled,
    /// Refused for every use; erased at `deadline` (seconds since the Unix epoch) unless
    /// restored before it.
    DestroyScheduled { deadline: u64 },
    /// Material erased at `at`; the entry keeps the number, which is never reused.
    Destroyed { at: u64 },
}

impl VersionState {
    /// A short name, as the CLI and the vendor attribute show it.
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "enabled",
            VersionState::Disabled => "disabled",
            VersionState::DestroyScheduled { .. } => "destroy-scheduled",
            VersionState::Destroyed { .. } => "destroyed",
        }
    }

    /// The `CKA_FERRO_KEY_STATE` value (`docs/pkcs11/vendor.md`).
    pub fn code(self) -> u64 {
        match self {
            VersionState::Enabled => 1,
            VersionState::Disabled => 2,
            VersionState::DestroyScheduled { .. } => 3,
            VersionState::Destroyed { .. } => 4,
        }
    }
}

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingVersion {
    pub number: u32,
    pub state: VersionState,
    pub created_at: u64,
    /// The store objects holding this version: the secret key, or the private half then
    /// the public half of a pair. Empty once destroyed.
    pub objects: Vec<ObjectId>,
}

/// Per-key policy, in the spirit of Vault Transit. For signing keys "encrypt" reads
/// "sign" and "decrypt" reads "verify"; for wrapping keys, wrap and unwrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicy {
    /// The lowest version that may encrypt, sign, wrap or derive (0: any enabled one).
    pub min_encrypt_version: u32,
    /// The lowest version that may decrypt, verify or unwrap (0: any enabled one).
    pub min_decrypt_version: u32,
    /// Seconds after the last rotation at which the key rotates by itself.
    pub auto_rotate_period: Option<u64>,
    /// Seconds between scheduling a version's destruction and its erasure.
    pub destroy_delay: u64,
    /// Whether versions may be destroyed (scheduled, at once, or by trimming) at all.
    pub deletion_allowed: bool,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            min_encrypt_version: 0,
            min_decrypt_version: 0,
            auto_rotate_period: None,
            destroy_delay: DEFAULT_DESTROY_DELAY,
            deletion_allowed: true,
        }
    }
}

/// Which way a key is used: making (encrypt, sign, wrap, derive) or undoing and checking
/// (decrypt, verify, unwrap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Encrypt,
    Decrypt,
}

/// Why a transition or a use is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No version with this number (never made, or trimmed away).
    NoSuchVersion(u32),
    /// The transition does not apply to the version's state.
    WrongState {
        version: u32,
        state: &'static str,
        wanted: &'static str,
    },
    /// The key's policy forbids it.
    Policy(String),
    /// The restore window has passed.
    DeadlinePassed { version: u32, deadline: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSuchVersion(v) => write!(f, "the key has no version {v}"),
            Refusal::WrongState {
                version,
                state,
                wanted,
            } => write!(f, "version {version} is {state}; this needs it {wanted}"),
            Refusal::Policy(why) => f.write_str(why),
            Refusal::DeadlinePassed { version, deadline } => write!(
                f,
                "version {version}'s restore window closed at {deadline} (Unix time); it is \
                 destroyed"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

pub type Outcome<T> = std::result::Result<T, Refusal>;

/// A key's versions, its primary and its policy. `seq` counts the transitions written
/// so far: the store refuses a record put back from earlier by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    pub key: KeyId,
    pub seq: u64,
    /// The number the next rotation gets; numbers are never reused.
    pub next_version: u32,
    /// Versions below this were trimmed away (their numbers stay used).
    pub trimmed_below: u32,
    /// The version plain PKCS#11 searches return; always enabled when there is one.
    pub primary: Option<u32>,
    pub rotated_at: u64,
    pub policy: KeyPolicy,
    /// Oldest first.
    pub versions: Vec<RingVersion>,
}

impl KeyRing {
    /// The ring of a key that has had no transition yet: version 1, enabled, primary.
    pub fn first(key: KeyId, objects: Vec<ObjectId>, created_at: u64, policy: KeyPolicy) -> Self {
        KeyRing {
            key,
            seq: 0,
            next_version: 2,
            trimmed_below: 1,
            primary: Some(1),
            rotated_at: created_at,
            policy,
            versions: vec![RingVersion {
                number: 1,
                state: VersionState::Enabled,
                created_at,
                objects,
            }],
        }
    }

    pub fn version(&self, n: u32) -> Outcome<&RingVersion> {
        self.versions
            .iter()
            .find(|v| v.number == n)
            .ok_or(Refusal::NoSuchVersion(n))
    }

    fn version_mut(&mut self, n: u32) -> Outcome<&mut RingVersion> {
        self.versions
            .iter_mut()
            .find(|v| v.number == n)
            .ok_or(Refusal::NoSuchVersion(n))
    }

    /// The version an object belongs to.
    pub fn version_of(&self, id: ObjectId) -> Option<&RingVersion> {
        self.versions.iter().find(|v| v.objects.contains(&id))
    }

    /// A version's state as of `now`: a scheduled destruction whose deadline has passed
    /// counts as done even before a sweep erases it.
    pub fn state_at(&self, n: u32, now: u64) -> Outcome<VersionState> {
        Ok(match self.version(n)?.state {
            VersionState::DestroyScheduled { deadline } if deadline <= now => {
                VersionState::Destroyed { at: deadline }
            }
            s => s,
        })
    }

    /// Whether version `n` may be used in `dir` now.
    pub fn allows(&self, n: u32, dir: Direction, now: u64) -> Outcome<()> {
        let state = self.state_at(n, now)?;
        if state != VersionState::Enabled {
            return Err(Refusal::WrongState {
                version: n,
                state: state.name(),
                wanted: "enabled",
            });
        }
        let (min, what) = match dir {
            Direction::Encrypt => (self.policy.min_encrypt_version, "min_encrypt_version"),
            Direction::Decrypt => (self.policy.min_decrypt_version, "min_decrypt_version"),
        };
        if n < min {
            return Err(Refusal::Policy(format!(
                "version {n} is below the key's {what} ({min})"
            )));
        }
        Ok(())
    }

    /// A new version with fresh material (`objects`) becomes the primary.
    pub fn rotate(&mut self, objects: Vec<ObjectId>, now: u64) -> Outcome<u32> {
        let n = self.next_version;
        self.next_version = n
            .checked_add(1)
            .ok_or_else(|| Refusal::Policy("the key's version numbers are exhausted".into()))?;
        self.versions.push(RingVersion {
            number: n,
            state: VersionState::Enabled,
            created_at: now,
            objects,
        });
        self.primary = Some(n);
        self.rotated_at = now;
        self.seq += 1;
        Ok(n)
    }

    /// Whether the key is due to rotate by itself at `now`.
    pub fn rotation_due(&self, now: u64) -> bool {
        self.policy
            .auto_rotate_period
            .is_some_and(|p| now >= self.rotated_at.saturating_add(p))
    }

    /// An earlier (or any other) enabled version becomes the primary again.
    pub fn rollback(&mut self, to: u32) -> Outcome<()> {
        expect_state(self.version(to)?, "enabled", |s| s == VersionState::Enabled)?;
        if to < self.policy.min_encrypt_version {
            return Err(Refusal::Policy(format!(
                "version {to} is below the key's min_encrypt_version ({}): it could not be \
                 used as the primary",
                self.policy.min_encrypt_version
            )));
        }
        self.primary = Some(to);
        self.seq += 1;
        Ok(())
    }

    /// Refuses every use of a version until enabled again. Disabling the primary leaves
    /// the key without one (plain searches find nothing) until a version is enabled or
    /// rolled back to.
    pub fn disable(&mut self, n: u32) -> Outcome<()> {
        let v = self.version_mut(n)?;
        expect_state(v, "enabled", |s| s == VersionState::Enabled)?;
        v.state = VersionState::Disabled;
        self.drop_primary(n);
        self.seq += 1;
        Ok(())
    }

    /// A disabled version is usable again; a key without a primary gets its newest
    /// enabled version as the primary.
    pub fn enable(&mut self, n: u32) -> Outcome<()> {
        let v = self.version_mut(n)?;
        expect_state(v, "disabled", |s| s == VersionState::Disabled)?;
        v.state = VersionState::Enabled;
        self.reelect_primary();
        self.seq += 1;
        Ok(())
    }

    /// Schedules a version's destruction after the key's `destroy_delay`; with a delay
    /// of 0 it is destroyed now. Returns the objects to erase now (empty when scheduled).
    pub fn schedule_destroy(&mut self, n: u32, now: u64) -> Outcome<Vec<ObjectId>> {
        self.deletion_allowed()?;
        let delay = self.policy.destroy_delay;
        let v = self.version_mut(n)?;
        expect_state(v, "enabled or disabled", |s| {
            matches!(s, VersionState::Enabled | VersionState::Disabled)
        })?;
        let erased = if delay == 0 {
            v.state = VersionState::Destroyed { at: now };
            std::mem::take(&mut v.objects)
        } else {
            v.state = VersionState::DestroyScheduled {
                deadline: now.saturating_add(delay),
            };
            Vec::new()
        };
        self.drop_primary(n);
        self.seq += 1;
        Ok(erased)
    }

    /// Takes a scheduled destruction back before its deadline; the version comes back
    /// disabled (as in Cloud KMS), to be enabled on purpose.
    pub fn restore(&mut self, n: u32, now: u64) -> Outcome<()> {
        let v = self.version_mut(n)?;
        let VersionState::DestroyScheduled { deadline } = v.state else {
            return Err(wrong_state(v, "scheduled for destruction"));
        };
        if deadline <= now {
            return Err(Refusal::DeadlinePassed {
                version: n,
                deadline,
            });
        }
        v.state = VersionState::Disabled;
        self.seq += 1;
        Ok(())
    }

    /// Destroys a version now: allowed when the key's `destroy_delay` is 0 or the version's
    /// scheduled deadline has passed. Returns the objects to erase.
    pub fn destroy_now(&mut self, n: u32, now: u64) -> Outcome<Vec<ObjectId>> {
        self.deletion_allowed()?;
        let delay = self.policy.destroy_delay;
        let v = self.version_mut(n)?;
        let due = match v.state {
            VersionState::Destroyed { .. } => return Err(wrong_state(v, "not yet destroyed")),
            VersionState::DestroyScheduled { deadline } => deadline <= now,
            _ => false,
        };
        if delay != 0 && !due {
            return Err(Refusal::Policy(format!(
                "the key's destroy_delay is {delay} s: schedule the destruction, or set the \
                 delay to 0 where the configuration allows it"
            )));
        }
        v.state = VersionState::Destroyed { at: now };
        let erased = std::mem::take(&mut v.objects);
        self.drop_primary(n);
        self.seq += 1;
        Ok(erased)
    }

    /// Every scheduled destruction whose deadline has passed by `now`, done. Returns the
    /// objects to erase (empty, and the ring unchanged, when nothing was due).
    pub fn sweep(&mut self, now: u64) -> Vec<ObjectId> {
        let mut erased = Vec::new();
        for v in &mut self.versions {
            if let VersionState::DestroyScheduled { deadline } = v.state
                && deadline <= now
            {
                v.state = VersionState::Destroyed { at: deadline };
                erased.append(&mut v.objects);
            }
        }
        if !erased.is_empty() {
            self.seq += 1;
        }
        erased
    }

    /// Drops every version below `floor` from the ring for good (material erased, entry
    /// gone; the numbers stay used). The floor may not pass the primary, and the key's
    /// minimum versions rise to it.
    pub fn trim(&mut self, floor: u32) -> Outcome<Vec<ObjectId>> {
        let limit = self.primary.unwrap_or(self.next_version - 1);
        if floor > limit {
            return Err(Refusal::Policy(format!(
                "the floor {floor} is above the {} ({limit})",
                if self.primary.is_some() {
                    "primary version"
                } else {
                    "newest version"
                }
            )));
        }
        let below: Vec<&RingVersion> = self.versions.iter().filter(|v| v.number < floor).collect();
        if below.iter().any(|v| !v.objects.is_empty()) {
            self.deletion_allowed()?;
        }
        let erased = below.iter().flat_map(|v| v.objects.clone()).collect();
        self.versions.retain(|v| v.number >= floor);
        self.trimmed_below = self.trimmed_below.max(floor);
        let p = &mut self.policy;
        p.min_encrypt_version = p.min_encrypt_version.max(floor);
        p.min_decrypt_version = p.min_decrypt_version.max(floor);
        self.seq += 1;
        Ok(erased)
    }

    /// Replaces the policy. `zero_delay_allowed` is the configuration's say on a
    /// `destroy_delay` of 0.
    pub fn set_policy(&mut self, p: KeyPolicy, zero_delay_allowed: bool) -> Outcome<()> {
        if p.destroy_delay == 0 && !zero_delay_allowed {
            return Err(Refusal::Policy(
                "a destroy_delay of 0 is allowed only when the configuration says so \
                 ([lifecycle] allow_immediate_destroy = true)"
                    .into(),
            ));
        }
        let newest = self.next_version - 1;
        for (what, v) in [
            ("min_encrypt_version", p.min_encrypt_version),
            ("min_decrypt_version", p.min_decrypt_version),
        ] {
            if v > newest {
                return Err(Refusal::Policy(format!(
                    "{what} {v} names no version yet (the newest is {newest})"
                )));
            }
        }
        if p.min_encrypt_version != 0 && p.min_encrypt_version < p.min_decrypt_version {
            return Err(Refusal::Policy(
                "min_encrypt_version may not be below min_decrypt_version".into(),
            ));
        }
        if let Some(primary) = self.primary
            && primary < p.min_encrypt_version
        {
            return Err(Refusal::Policy(format!(
                "the primary version {primary} would be below min_encrypt_version; rotate or \
                 roll back first"
            )));
        }
        if p.auto_rotate_period == Some(0) {
            return Err(Refusal::Policy(
                "auto_rotate_period must be positive".into(),
            ));
        }
        self.policy = p;
        self.seq += 1;
        Ok(())
    }

    fn deletion_allowed(&self) -> Outcome<()> {
        if self.policy.deletion_allowed {
            Ok(())
        } else {
            Err(Refusal::Policy(
                "the key's policy has deletion_allowed = false".into(),
            ))
        }
    }

    fn drop_primary(&mut self, n: u32) {
        if self.primary == Some(n) {
            self.primary = None;
        }
    }

    fn reelect_primary(&mut self) {
        if self.primary.is_none() {
            self.primary = self
                .versions
                .iter()
                .rev()
                .find(|v| {
                    v.state == VersionState::Enabled && v.number >= self.policy.min_encrypt_version
                })
                .map(|v| v.number);
        }
    }
}

fn wrong_state(v: &RingVersion, wanted: &'static str) -> Refusal {
    Refusal::WrongState {
        version: v.number,
        state: v.state.name(),
        wanted,
    }
}

fn expect_state(
    v: &RingVersion,
    wanted: &'static str,
    ok: impl Fn(VersionState) -> bool,
) -> Outcome<()> {
    if ok(v.state) {
        Ok(())
    } else {
        Err(wrong_state(v, wanted))
    }
}
