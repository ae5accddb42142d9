//! Objects: creating, copying, destroying and changing them (`C_CreateObject` …), the
//! attribute rules ([`attrs`]), search (`find`), key material (`material`), the
//! prepared-key cache (`cache`) and the one key-usage check (`usage`).

pub mod attrs;
mod cache;
pub(crate) mod find;
pub(crate) mod material;
pub(crate) mod usage;

pub(crate) use cache::{CachedKey, KeyCache};

use crate::error::{Error, Result};
use crate::ops::Action;
use crate::policy::quorum::request_digest;
use crate::runtime::handles::{SESSION_OBJECT_BIT, decode_handle, token_handle};
use crate::runtime::{AppSlot, Call, Hsm, Location, read, write};
use attrs::{Actor, Origin};
use hsm_types::quorum::Guarded;
use hsm_types::{AttrValue, AttributeSet, AttributeType as A, KeyType, ObjectClass, TokenId};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// A session object: it lives in memory until its session closes.
pub(crate) struct SessionObject {
    pub session: u64,
    /// Only the application that made it sees it (PKCS#11 §4.4).
    pub app: u64,
    pub slot: u64,
    pub attrs: AttributeSet,
    /// The key prepared for use, once something used it; a new cell when `attrs` change.
    pub prepared: Arc<OnceLock<Arc<CachedKey>>>,
}

/// A session object this application may see in this slot, as a handle; private ones
/// need the user logged in.
pub(crate) fn visible_session_object<'a>(
    objs: &'a crate::runtime::handles::HandleMap<SessionObject>,
    slot: &AppSlot,
    n: u64,
) -> Result<&'a SessionObject> {
    let o = objs
        .get(&n)
        .filter(|o| o.slot == slot.id && o.app == slot.app)
        .ok_or(Error::ObjectHandleInvalid)?;
    if o.attrs.is_private() && !slot.user_logged_in() {
        return Err(Error::UserNotLoggedIn);
    }
    Ok(o)
}

/// One loaded object with where it lives.
pub(crate) struct Loaded {
    pub attrs: AttributeSet,
    pub location: Location,
}

impl Hsm {
    /// Loads an object visible to this session. Private objects need the user logged in.
    pub(crate) fn load(&self, slot: &AppSlot, token: TokenId, h: u64) -> Result<Loaded> {
        let user = slot.user_logged_in();
        match decode_handle(h).ok_or(Error::ObjectHandleInvalid)? {
            Location::Session(n) => {
                let objs = read(&self.session_objects);
                let o = visible_session_object(&objs, slot, n)?;
                Ok(Loaded {
                    attrs: o.attrs.clone(),
                    location: Location::Session(n),
                })
            }
            Location::Token { slot: s, id } => {
                if s != slot.id {
                    return Err(Error::ObjectHandleInvalid);
                }
                let keys = self.keys(slot, token)?;
                if !user && self.store.is_private(&keys, id)? {
                    return Err(Error::UserNotLoggedIn);
                }
                let obj = self.store.read_object(&keys, id)?;
                Ok(Loaded {
                    attrs: obj.attrs,
                    location: Location::Token { slot: s, id },
                })
            }
        }
    }

    /// Creates objects (from `C_CreateObject`, key generation, unwrap or derive) where
    /// their `CKA_TOKEN` says, after the session checks; token objects in one batch.
    pub(crate) fn store_new(&self, c: &Call, attrs: Vec<AttributeSet>) -> Result<Vec<u64>> {
        let login = c.slot.actor();
        for a in &attrs {
            if a.is_private() && login != Actor::User {
                return Err(Error::UserNotLoggedIn);
            }
            if a.bool(A::TOKEN) == Some(true) && !c.session.rw {
                return Err(Error::SessionReadOnly);
            }
            if holds_secret(a)
                && a.bytes(A::FERRO_DEVICE_KEY).is_none()
                && let Some(d) = c.slot.shared.adapter()?
            {
                return Err(Error::TemplateInconsistent(format!(
                    "this slot's keys live in {}: a key is made there (C_GenerateKeyPair); \
                     importing, unwrapping, deriving or copying key material into it is \
                     not supported yet",
                    d.describe()
                )));
            }
        }
        let (token_objs, session_objs): (Vec<_>, Vec<_>) = attrs
            .into_iter()
            .enumerate()
            .partition(|(_, a)| a.bool(A::TOKEN) == Some(true));
        let mut out = vec![0u64; token_objs.len() + session_objs.len()];
        if !token_objs.is_empty() {
            let keys = self.keys(&c.slot, c.token)?;
            let (idx, sets): (Vec<usize>, Vec<AttributeSet>) = token_objs.into_iter().unzip();
            let ids = self.store.create_objects(&keys, sets)?;
            for (i, id) in idx.into_iter().zip(ids) {
                out[i] = token_handle(c.slot.id, id)?;
            }
        }
        for (i, a) in session_objs {
            let n = SESSION_OBJECT_BIT | self.next_session_object.fetch_add(1, Ordering::Relaxed);
            let obj = SessionObject {
                session: c.session.handle,
                app: c.slot.app,
                slot: c.slot.id,
                attrs: a,
                prepared: Arc::default(),
            };
            write(&self.session_objects).insert(n, obj);
            out[i] = n;
        }
        Ok(out)
    }

    pub fn create_object(&self, h: u64, template: AttributeSet) -> Result<u64> {
        self.run(h, Action::CreateObject, |c| {
            let mut attrs = attrs::build_new(&template, Origin::Created, self.ctx(&c.slot))?;
            material::validate(self.provider(), &attrs)?;
            self.guard_import(c, &attrs, "create", &[&template.encode()])?;
            computed_on_import(&mut attrs);
            Ok(self.store_new(c, vec![attrs])?[0])
        })
    }

    pub fn copy_object(&self, h: u64, obj: u64, template: AttributeSet) -> Result<u64> {
        self.run(h, Action::CopyObject, |c| {
            let src = self.load(&c.slot, c.token, obj)?;
            if src.attrs.bool(A::COPYABLE) == Some(false) {
                return Err(Error::ActionProhibited(
                    "the object has CKA_COPYABLE = FALSE".into(),
                ));
            }
            if src.attrs.ulong(A::FERRO_KEY_ID).is_some() {
                // The copy would outlive the version's disabling or destruction.
                return Err(Error::ActionProhibited(
                    "a version of a key with a lifecycle is not copied (rotate the key instead)"
                        .into(),
                ));
            }
            if attrs::is_trusted(&src.attrs) {
                // A copy holds the same key: whatever roles it could be given later, the
                // original's blobs would open under it. Trusted keys are not copied.
                return Err(Error::ActionProhibited(
                    "a trusted key (CKA_TRUSTED) is not copied".into(),
                ));
            }
            let attrs = attrs::apply_changes(&src.attrs, &template, self.ctx(&c.slot), true)?;
            Ok(self.store_new(c, vec![attrs])?[0])
        })
    }

    pub fn destroy_object(&self, h: u64, obj: u64) -> Result<()> {
        self.run(h, Action::DestroyObject, |c| {
            let o = self.load(&c.slot, c.token, obj)?;
            if o.attrs.bool(A::DESTROYABLE) == Some(false) {
                return Err(Error::ActionProhibited(
                    "the object has CKA_DESTROYABLE = FALSE".into(),
                ));
            }
            match o.location {
                Location::Session(n) => {
                    write(&self.session_objects).remove(&n);
                }
                Location::Token { id, .. } => {
                    if !c.session.rw {
                        return Err(Error::SessionReadOnly);
                    }
                    if holds_secret(&o.attrs) {
                        let digest =
                            request_digest(Guarded::Destroy, &[b"object", &id.0.to_be_bytes()]);
                        self.guard(
                            c,
                            Guarded::Destroy,
                            crate::policy::engine::key_id(id, &o.attrs),
                            &digest,
                            &format!("destroy key object {id}"),
                        )?;
                    }
                    if self.destroy_version(c, id, &o.attrs)? {
                        return Ok(());
                    }
                    let keys = self.keys(&c.slot, c.token)?;
                    // A device key goes from its device first: should the store then
                    // fail, the object is left naming a key that is gone (its uses
                    // fail), never a key left in the device with nothing naming it.
                    if let Some(k) = crate::hardware::DeviceKey::of(&o.attrs)? {
                        k.check(c.slot.shared.adapter()?)?.destroy(&k.name)?;
                    }
                    self.store.destroy_object(&keys, id)?;
                    c.slot.forget_cached(id);
                }
            }
            Ok(())
        })
    }

    pub fn object_size(&self, h: u64, obj: u64) -> Result<usize> {
        self.run(h, Action::ReadObject, |c| {
            Ok(attrs::object_size(&self.load(&c.slot, c.token, obj)?.attrs))
        })
    }

    /// The object's attributes with `CKA_UNIQUE_ID` filled in and hidden key material
    /// taken out ([`attrs::redact`]); the FFI layer answers `CKR_ATTRIBUTE_SENSITIVE` for
    /// those through [`attrs::readable`].
    pub fn object_attributes(&self, h: u64, obj: u64) -> Result<AttributeSet> {
        self.run(h, Action::ReadObject, |c| {
            let mut o = self.load(&c.slot, c.token, obj)?;
            if matches!(o.location, Location::Token { .. }) {
                self.add_lifecycle_view(&c.slot, c.token, &mut o.attrs)?;
            }
            let unique = match o.location {
                Location::Token { id, .. } => {
                    format!("{}-{}-{}", self.store.store_id_hex(), c.token.0, id.0)
                }
                Location::Session(n) => format!("session-{}", n & !SESSION_OBJECT_BIT),
            };
            o.attrs
                .set(A::UNIQUE_ID, AttrValue::Bytes(unique.into_bytes()));
            attrs::redact(&mut o.attrs);
            if matches!(o.location, Location::Token { .. }) && holds_secret(&o.attrs) {
                // Under the `export` rule a token key leaves only wrapped, with approvals:
                // its value reads as sensitive.
                let keys = self.keys(&c.slot, c.token)?;
                if self.store.quorum(&keys)?.required(Guarded::Export) > 0 {
                    let class = o.attrs.class();
                    drop(
                        o.attrs
                            .split_off(|t| hsm_types::policy::is_secret(class, t)),
                    );
                    o.attrs.set(A::SENSITIVE, AttrValue::Bool(true));
                }
            }
            Ok(o.attrs)
        })
    }

    pub fn set_attributes(&self, h: u64, obj: u64, template: AttributeSet) -> Result<()> {
        self.run(h, Action::SetAttributes, |c| {
            let o = self.load(&c.slot, c.token, obj)?;
            let new = attrs::apply_changes(&o.attrs, &template, self.ctx(&c.slot), false)?;
            match o.location {
                Location::Session(n) => {
                    if let Some(so) = write(&self.session_objects).get_mut(&n) {
                        so.attrs = new;
                        so.prepared = Arc::default();
                    }
                }
                Location::Token { id, .. } => {
                    if !c.session.rw {
                        return Err(Error::SessionReadOnly);
                    }
                    self.guard_roles(c, id, &o.attrs, &new)?;
                    let keys = self.keys(&c.slot, c.token)?;
                    self.store.update_object(&keys, id, new)?;
                    c.slot.forget_cached(id);
                }
            }
            Ok(())
        })
    }
}

/// Values PKCS#11 says the token computes for imported keys: a secret key's
/// `CKA_VALUE_LEN`, an RSA public key's `CKA_MODULUS_BITS`.
pub(crate) fn computed_on_import(attrs: &mut AttributeSet) {
    if attrs.class() == Some(ObjectClass::SECRET_KEY) {
        let n = attrs.bytes(A::VALUE).map(<[u8]>::len).unwrap_or(0);
        attrs.set(A::VALUE_LEN, AttrValue::Ulong(n as u64));
    }
    if attrs.class() == Some(ObjectClass::PUBLIC_KEY) && attrs.key_type() == Some(KeyType::RSA) {
        let m = attrs.bytes(A::MODULUS).unwrap_or_default();
        let lead = m.iter().take_while(|b| **b == 0).count();
        let bits = m.len().saturating_sub(lead) * 8
            - m.get(lead).map(|b| b.leading_zeros() as usize).unwrap_or(0);
        attrs.set(A::MODULUS_BITS, AttrValue::Ulong(bits as u64));
    }
}

/// A secret or private key: what dual control guards the destruction of, and what a
/// plain `C_DestroyObject` may schedule rather than erase.
pub(crate) fn holds_secret(attrs: &AttributeSet) -> bool {
    matches!(
        attrs.class(),
        Some(ObjectClass::SECRET_KEY | ObjectClass::PRIVATE_KEY)
    )
}
