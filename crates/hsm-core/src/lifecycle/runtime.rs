//! The rings in the running token: a cache per slot, the check every keyed use makes,
//! the filter every search applies (a plain search sees primary versions only), the
//! vendor attributes a version shows, and the PKCS#11 calls that are transitions
//! (`C_DestroyObject` of a version). Only this process writes the store (embedded, or
//! the server), so the cache stays current as long as every transition made here drops
//! it ([`Hsm::forget_rings`]).

use super::{Direction, KeyId, KeyManager, KeyRing, VersionState, now};
use crate::error::{Error, Result};
use crate::objects::attrs::Actor;
use crate::objects::holds_secret;
use crate::ops::Action;
use crate::runtime::handles::decode_handle;
use crate::runtime::{AppSlot, Call, Hsm, Location, Slot, read, write};
use hsm_store::StoreError;
use hsm_types::{AttrValue, AttributeSet, AttributeType as A, ObjectClass, ObjectId, TokenId};
use std::collections::HashMap;
use std::sync::Arc;

/// A token's rings, and which version each ring member is.
#[derive(Default)]
pub(crate) struct RingIndex {
    /// Read with the master key (bindings checked): only such an index is cached.
    verified: bool,
    rings: HashMap<KeyId, KeyRing>,
    members: HashMap<ObjectId, (KeyId, u32)>,
}

impl RingIndex {
    fn build(verified: bool, rings: Vec<KeyRing>) -> RingIndex {
        let mut ix = RingIndex {
            verified,
            ..RingIndex::default()
        };
        for r in rings {
            for v in &r.versions {
                for o in &v.objects {
                    ix.members.insert(*o, (r.key, v.number));
                }
            }
            ix.rings.insert(r.key, r);
        }
        ix
    }

    /// The ring and version of a ring member (by its stored attributes).
    fn of(&self, attrs: &AttributeSet) -> Result<Option<(&KeyRing, u32)>> {
        let Some(k) = attrs.ulong(A::FERRO_KEY_ID) else {
            return Ok(None);
        };
        let v = attrs.ulong(A::FERRO_KEY_VERSION).unwrap_or(0) as u32;
        match self.rings.get(&KeyId(k)) {
            Some(r) if r.version(v).is_ok() => Ok(Some((r, v))),
            _ => Err(StoreError::Tampered {
                location: format!("key {k}: its ring does not list version {v}"),
            }
            .into()),
        }
    }
}

/// The attributes a version shows that its ring, not its record, holds.
const VIEW: [A; 3] = [
    A::FERRO_KEY_STATE,
    A::FERRO_IS_PRIMARY,
    A::FERRO_DESTROY_DEADLINE,
];

/// Whether a search template names the lifecycle at all; one that does sees every
/// version, one that does not sees primary versions only.
pub(crate) fn names_lifecycle(t: &AttributeSet) -> bool {
    t.types()
        .any(|a| VIEW.contains(&a) || matches!(a, A::FERRO_KEY_ID | A::FERRO_KEY_VERSION))
}

/// A template without the attributes the ring answers (matched by [`Hsm::filter_versions`]).
pub(crate) fn without_view(t: &AttributeSet) -> AttributeSet {
    let mut t = t.clone();
    for a in VIEW {
        t.remove(a);
    }
    t
}

/// Lifecycle transitions are the user's, on a read-write session.
fn user_on_rw_session(c: &Call) -> Result<()> {
    if c.slot.actor() != Actor::User {
        return Err(Error::UserNotLoggedIn);
    }
    if !c.session.rw {
        return Err(Error::SessionReadOnly);
    }
    Ok(())
}

fn direction(usage: A) -> Direction {
    match usage {
        A::DECRYPT | A::VERIFY | A::VERIFY_RECOVER | A::UNWRAP => Direction::Decrypt,
        _ => Direction::Encrypt,
    }
}

impl Slot {
    pub(crate) fn forget_ring_index(&self) {
        *write(&self.rings) = None;
    }
}

impl Hsm {
    /// The token's rings as this caller may see them: cached once read with the master
    /// key, read afresh (AEAD-checked only) for a public session.
    pub(crate) fn ring_index(&self, slot: &AppSlot, token: TokenId) -> Result<Arc<RingIndex>> {
        let keys = self.keys(slot, token)?;
        let master = keys.logged_in().is_some();
        if let Some(ix) = read(&slot.shared.rings).as_ref()
            && (ix.verified || !master)
        {
            return Ok(ix.clone());
        }
        let ix = Arc::new(RingIndex::build(master, self.store.rings(&keys)?));
        if master {
            *write(&slot.shared.rings) = Some(ix.clone());
        }
        Ok(ix)
    }

    /// After a transition: the ring cache and the prepared keys (whose attributes may
    /// now name a ring) are read again.
    pub(crate) fn forget_rings(&self, slot: &Slot) {
        slot.forget_ring_index();
        slot.forget_all_cached();
    }

    /// The lifecycle's say on using `key` for `usage`: a version must be enabled and not
    /// below the key's minimum for that direction. Keys without a ring pass.
    pub(crate) fn check_lifecycle(&self, call: &Call, key: &AttributeSet, usage: A) -> Result<()> {
        if key.ulong(A::FERRO_KEY_ID).is_none() {
            return Ok(());
        }
        let ix = self.ring_index(&call.slot, call.token)?;
        let Some((ring, v)) = ix.of(key)? else {
            return Ok(());
        };
        ring.allows(v, direction(usage), now(&self.config.lifecycle))
            .map_err(|r| Error::KeyFunctionNotPermitted(format!("key {}: {r}", ring.key).into()))
    }

    /// A version that is not enabled does not leave the token (wrap) either.
    pub(crate) fn check_version_enabled(&self, call: &Call, key: &AttributeSet) -> Result<()> {
        if key.ulong(A::FERRO_KEY_ID).is_none() {
            return Ok(());
        }
        let ix = self.ring_index(&call.slot, call.token)?;
        if let Some((ring, v)) = ix.of(key)?
            && ring.state_at(v, now(&self.config.lifecycle)) != Ok(VersionState::Enabled)
        {
            return Err(Error::KeyFunctionNotPermitted(
                format!("key {}: version {v} is not enabled", ring.key).into(),
            ));
        }
        Ok(())
    }

    /// A search's token objects as the lifecycle shows them: without lifecycle attributes
    /// in the template, members of a ring that are not its primary version are left out;
    /// with them, the ring-held ones (state, primary, deadline) must match too.
    pub(crate) fn filter_versions(
        &self,
        c: &Call,
        template: &AttributeSet,
        found: Vec<u64>,
    ) -> Result<Vec<u64>> {
        let ix = self.ring_index(&c.slot, c.token)?;
        let named = names_lifecycle(template);
        if ix.members.is_empty() && !VIEW.iter().any(|a| template.get(*a).is_some()) {
            return Ok(found);
        }
        let now = now(&self.config.lifecycle);
        Ok(found
            .into_iter()
            .filter(|h| {
                let Some(Location::Token { id, .. }) = decode_handle(*h) else {
                    return true;
                };
                let view = match ix.members.get(&id) {
                    Some((k, v)) => ix.rings.get(k).map(|r| view_of(r, *v, now)),
                    None => Some(implicit_view()),
                };
                let Some(view) = view else { return false };
                if !named {
                    return view.primary;
                }
                VIEW.iter().all(|a| match template.get(*a) {
                    None => true,
                    Some(want) => view.value(*a) == *want,
                })
            })
            .collect())
    }

    /// Adds the ring-held attributes to a key's attributes (`C_GetAttributeValue`).
    pub(crate) fn add_lifecycle_view(
        &self,
        slot: &AppSlot,
        token: TokenId,
        attrs: &mut AttributeSet,
    ) -> Result<()> {
        if !matches!(
            attrs.class(),
            Some(ObjectClass::SECRET_KEY | ObjectClass::PRIVATE_KEY | ObjectClass::PUBLIC_KEY)
        ) {
            return Ok(());
        }
        let view = if attrs.ulong(A::FERRO_KEY_ID).is_some() {
            let ix = self.ring_index(slot, token)?;
            match ix.of(attrs)? {
                Some((ring, v)) => view_of(ring, v, now(&self.config.lifecycle)),
                None => implicit_view(),
            }
        } else {
            implicit_view()
        };
        for a in VIEW {
            attrs.set(a, view.value(a));
        }
        Ok(())
    }

    /// `C_DestroyObject` of a ring member: a version's secret or private key schedules
    /// the version's destruction (at once when the key's delay is 0); a version's public
    /// half is removed alone. Returns false for an object without a ring (destroyed as
    /// before by the caller).
    pub(crate) fn destroy_version(
        &self,
        c: &Call,
        id: ObjectId,
        attrs: &AttributeSet,
    ) -> Result<bool> {
        let keys = self.keys(&c.slot, c.token)?;
        let km = KeyManager::new(&self.store, &keys, self.provider(), self.config.lifecycle);
        let Some(k) = attrs.ulong(A::FERRO_KEY_ID) else {
            // A key that never had a transition is version 1 of its own ring.
            if !self.config.lifecycle.schedule_plain_destroy || !holds_secret(attrs) {
                return Ok(false);
            }
            let result = km
                .key_of(id)
                .and_then(|(ring, _)| km.schedule_destroy(ring.key, 1));
            self.forget_rings(&c.slot.shared);
            return result.map(|_| true);
        };
        let (ring, _) = km.key_of(id)?;
        let version = ring
            .version_of(id)
            .ok_or_else(|| Error::General(format!("object {id} left key {k}'s ring")))?;
        let result = if version.objects.get(1) == Some(&id) {
            km.drop_public_half(KeyId(k), id)
        } else {
            km.schedule_destroy(KeyId(k), version.number)
        };
        self.forget_rings(&c.slot.shared);
        result.map(|_| true)
    }

    /// Runs lifecycle operations as the user logged in on a read-write session (the CLI
    /// through the server, tests); the rings and prepared keys are read again afterwards.
    /// `op` may move the manager's clock ([`KeyManager::at`]).
    pub fn lifecycle<T>(&self, h: u64, op: impl FnOnce(KeyManager<'_>) -> Result<T>) -> Result<T> {
        self.run(h, Action::Lifecycle, |c| {
            user_on_rw_session(c)?;
            let keys = self.keys(&c.slot, c.token)?;
            let km = KeyManager::new(&self.store, &keys, self.provider(), self.config.lifecycle);
            let r = op(km);
            self.forget_rings(&c.slot.shared);
            r
        })
    }

    /// One `ferrohsm key` request from a client of the server (see [`KeyManager::execute`]).
    pub fn key_command(&self, h: u64, cmd: super::KeyCommand) -> Result<super::KeyAnswer> {
        self.lifecycle(h, |km| km.execute(cmd))
    }

    /// The key a token object belongs to.
    pub fn key_of(&self, h: u64, obj: u64) -> Result<KeyId> {
        self.run(h, Action::ReadObject, |c| {
            let Some(Location::Token { slot, id }) = decode_handle(obj) else {
                return Err(Error::ObjectHandleInvalid);
            };
            if slot != c.slot.id {
                return Err(Error::ObjectHandleInvalid);
            }
            let keys = self.keys(&c.slot, c.token)?;
            let km = KeyManager::new(&self.store, &keys, self.provider(), self.config.lifecycle);
            Ok(km.key_of(id)?.0.key)
        })
    }

    /// `C_DeriveKey(CKM_FERRO_KEY_ROTATE)`: the key `base` is a version of rotates; the
    /// answer is the new version's secret or private key. The template must be empty: the
    /// new version repeats the old one's attributes.
    pub(crate) fn rotate_by_derive(
        &self,
        c: &Call,
        base: u64,
        template: &AttributeSet,
    ) -> Result<u64> {
        if !template.is_empty() {
            return Err(Error::TemplateInconsistent(
                "CKM_FERRO_KEY_ROTATE takes no template: the new version repeats the \
                 current one's attributes"
                    .into(),
            ));
        }
        let Some(Location::Token { slot, id }) = decode_handle(base) else {
            return Err(Error::ActionProhibited(
                "a session key has no lifecycle; only token keys rotate".into(),
            ));
        };
        if slot != c.slot.id {
            return Err(Error::KeyHandleInvalid);
        }
        user_on_rw_session(c)?;
        let keys = self.keys(&c.slot, c.token)?;
        let km = KeyManager::new(&self.store, &keys, self.provider(), self.config.lifecycle);
        let key = km
            .key_of(id)
            .map_err(crate::objects::usage::key_handle)?
            .0
            .key;
        let ring = km.rotate(key);
        self.forget_rings(&c.slot.shared);
        let ring = ring?;
        let first = ring
            .primary
            .and_then(|p| ring.version(p).ok())
            .and_then(|v| v.objects.first().copied())
            .ok_or_else(|| Error::General("the rotation left no primary".into()))?;
        crate::runtime::handles::token_handle(slot, first)
    }

    /// The server's timer: on every slot where some application has the user logged in,
    /// scheduled destructions that fell due are done and due rotations made (with that
    /// login's keys; a slot nobody is logged in on waits for the next login). Returns how
    /// many versions were erased and keys rotated.
    pub fn lifecycle_tick(&self) -> (usize, usize) {
        let mut per_slot: std::collections::BTreeMap<u64, (Arc<hsm_store::TokenKeys>, Arc<Slot>)> =
            std::collections::BTreeMap::new();
        for a in read(&self.app_slots).values() {
            if let crate::runtime::Login::User(k) = &*a.login() {
                per_slot
                    .entry(a.id)
                    .or_insert_with(|| (k.clone(), a.shared.clone()));
            }
        }
        let mut done = (0, 0);
        for (slot, (keys, shared)) in per_slot {
            let km = KeyManager::new(&self.store, &keys, self.provider(), self.config.lifecycle);
            match km.sweep() {
                Ok(r) => {
                    if !r.destroyed.is_empty() || !r.rotated.is_empty() {
                        self.forget_rings(&shared);
                    }
                    done.0 += r.destroyed.len();
                    done.1 += r.rotated.len();
                }
                Err(e) => tracing::warn!(slot, "lifecycle sweep failed: {e}"),
            }
        }
        done
    }

    /// At a user login: scheduled destructions that fell due are done and due rotations
    /// made. A failure is logged, never a failed login.
    pub(crate) fn sweep_at_login(&self, slot: &AppSlot, token: TokenId) {
        let Ok(keys) = self.keys(slot, token) else {
            return;
        };
        let km = KeyManager::new(&self.store, &keys, self.provider(), self.config.lifecycle);
        match km.sweep() {
            Ok(r) if r.destroyed.is_empty() && r.rotated.is_empty() => {}
            Ok(r) => {
                tracing::info!(
                    destroyed = r.destroyed.len(),
                    rotated = r.rotated.len(),
                    "lifecycle sweep"
                );
                self.forget_rings(&slot.shared);
            }
            Err(e) => tracing::warn!("lifecycle sweep at login failed: {e}"),
        }
    }
}

/// What a version shows of its ring.
struct View {
    state: u64,
    primary: bool,
    deadline: u64,
}

impl View {
    fn value(&self, a: A) -> AttrValue {
        match a {
            A::FERRO_KEY_STATE => AttrValue::Ulong(self.state),
            A::FERRO_IS_PRIMARY => AttrValue::Bool(self.primary),
            _ => AttrValue::Ulong(self.deadline),
        }
    }
}

fn view_of(r: &KeyRing, v: u32, now: u64) -> View {
    let state = r
        .state_at(v, now)
        .unwrap_or(VersionState::Destroyed { at: 0 });
    View {
        state: state.code(),
        primary: r.primary == Some(v),
        deadline: match state {
            VersionState::DestroyScheduled { deadline } => deadline,
            _ => 0,
        },
    }
}

/// A key without a ring: version 1, enabled, primary.
fn implicit_view() -> View {
    View {
        state: VersionState::Enabled.code(),
        primary: true,
        deadline: 0,
    }
}
