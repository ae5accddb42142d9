//! The login cache. Once a PIN has unwrapped a token's master key, a later login with
//! the same PIN may skip the Argon2id derivation for a while. The PIN is checked against a
//! keyed verifier instead: HMAC-SHA-256 under a key made at random when the store was
//! opened, over the token, the user, the PIN slot (its salt and wrapped key) and the PIN.
//!
//! It is off unless the opener turns it on. `ferrohsm-server` does, so a new client
//! process pays no KDF for a PIN the server has already checked (`docs/server.md` gives
//! the reasoning).
//!
//! What does not change:
//! - The durable failure counter is raised before the cache is consulted, so the lockout
//!   holds exactly as before.
//! - A PIN the verifier does not match goes through the full KDF, so a wrong guess costs
//!   what it always cost.
//! - Nothing of the cache is ever written anywhere. Its master keys are zeroized when
//!   they expire, when the PIN slot changes, and when the store closes.

use crate::crypto::Key32;
use crate::records::PinSlot;
use aws_lc_rs::{constant_time, hmac};
use hsm_types::{SecretString, TokenId, UserKind};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct PinCache {
    key: hmac::Key,
    ttl: Mutex<Option<Duration>>,
    entries: Mutex<HashMap<(TokenId, UserKind), Entry>>,
    hits: AtomicU64,
    derivations: AtomicU64,
}

struct Entry {
    tag: hmac::Tag,
    master: Key32,
    at: Instant,
}

/// How many logins the cache answered, and how many ran the KDF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginStats {
    pub cached: u64,
    pub derived: u64,
}

impl PinCache {
    pub(crate) fn new() -> crate::error::Result<PinCache> {
        let secret = Key32::random()?;
        Ok(PinCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose()),
            ttl: Mutex::new(None),
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            derivations: AtomicU64::new(0),
        })
    }

    pub(crate) fn set_ttl(&self, ttl: Option<Duration>) {
        *lock(&self.ttl) = ttl.filter(|t| !t.is_zero());
        self.expire();
    }

    fn tag(&self, token: TokenId, who: UserKind, slot: &PinSlot, pin: &SecretString) -> hmac::Tag {
        let mut c = hmac::Context::with_key(&self.key);
        c.update(b"ferrohsm/login-cache/v1");
        c.update(&token.0.to_be_bytes());
        c.update(&[who as u8]);
        for part in [&slot.salt, &slot.wrapped_master] {
            c.update(&(part.len() as u64).to_be_bytes());
            c.update(part);
        }
        c.update(pin.expose().as_bytes());
        c.sign()
    }

    /// The master key, if this PIN proved right for this slot within the time to live.
    pub(crate) fn lookup(
        &self,
        token: TokenId,
        who: UserKind,
        slot: &PinSlot,
        pin: &SecretString,
    ) -> Option<Key32> {
        let ttl = (*lock(&self.ttl))?;
        let tag = self.tag(token, who, slot, pin);
        let mut entries = lock(&self.entries);
        let e = entries.get(&(token, who))?;
        if e.at.elapsed() >= ttl {
            entries.remove(&(token, who));
            return None;
        }
        constant_time::verify_slices_are_equal(e.tag.as_ref(), tag.as_ref()).ok()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Key32::from_bytes(e.master.expose()).ok()
    }

    /// Remembers a PIN that just unwrapped `master` (when the cache is on).
    pub(crate) fn remember(
        &self,
        token: TokenId,
        who: UserKind,
        slot: &PinSlot,
        pin: &SecretString,
        master: &Key32,
    ) {
        self.derivations.fetch_add(1, Ordering::Relaxed);
        if lock(&self.ttl).is_none() {
            return;
        }
        let Ok(master) = Key32::from_bytes(master.expose()) else {
            return;
        };
        let entry = Entry {
            tag: self.tag(token, who, slot, pin),
            master,
            at: Instant::now(),
        };
        lock(&self.entries).insert((token, who), entry);
    }

    /// Counts a KDF run that proved the PIN wrong.
    pub(crate) fn derived(&self) {
        self.derivations.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops what the cache knows of a token (its PINs or keys changed).
    pub(crate) fn forget(&self, token: TokenId) {
        lock(&self.entries).retain(|(t, _), _| *t != token);
    }

    /// Drops entries past their time to live (their keys are zeroized).
    pub(crate) fn expire(&self) {
        let ttl = *lock(&self.ttl);
        lock(&self.entries).retain(|_, e| ttl.is_some_and(|t| e.at.elapsed() < t));
    }

    pub(crate) fn stats(&self) -> LoginStats {
        LoginStats {
            cached: self.hits.load(Ordering::Relaxed),
            derived: self.derivations.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
