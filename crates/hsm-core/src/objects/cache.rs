//! The prepared-key cache: keys parsed once (an RSA key's CRT form, an EC scalar, an AES
//! key's GCM schedule). Token keys are kept per slot while a user is logged in; a session
//! key keeps its prepared form beside it, and both go when the key changes or goes.

use super::usage::key_handle;
use crate::crypto::{GcmKey, SigningKey, VerifyingKey};
use crate::error::{Error, Result};
use crate::hardware::{self, Adapter, DeviceKey};
use crate::provider::CryptoProvider;
use crate::runtime::{AppSlot, Hsm, Location, handles::decode_handle, read, write};
use hsm_types::{AttributeSet, AttributeType as A, ObjectClass, ObjectId, TokenId};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// A key ready for use: its attributes and, for asymmetric keys, the parsed key.
pub(crate) struct CachedKey {
    pub attrs: AttributeSet,
    pub signer: Option<SigningKey>,
    pub verifier: Option<VerifyingKey>,
    /// An AES key's GCM form, made at its first GCM use.
    gcm: OnceLock<GcmKey>,
}

impl CachedKey {
    /// Parses a key once for use: private keys get a signer — from their material, or
    /// from the device of `adapter` they live in — and public keys a verifier.
    pub fn prepare(
        provider: &dyn CryptoProvider,
        adapter: Option<&Arc<dyn Adapter>>,
        attrs: AttributeSet,
    ) -> Result<CachedKey> {
        let (signer, verifier) = match attrs.class() {
            Some(ObjectClass::PRIVATE_KEY) => match DeviceKey::of(&attrs)? {
                Some(k) => (Some(hardware::signer(adapter, &k, &attrs)?), None),
                None => (Some(provider.signer(&attrs)?), None),
            },
            Some(ObjectClass::PUBLIC_KEY) => (None, Some(provider.verifier(&attrs)?)),
            _ => (None, None),
        };
        Ok(CachedKey {
            attrs,
            signer,
            verifier,
            gcm: OnceLock::new(),
        })
    }

    /// The AES key ready for GCM (its value needs the user's login).
    pub fn gcm(&self) -> Result<&GcmKey> {
        if let Some(k) = self.gcm.get() {
            return Ok(k);
        }
        let value = self.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
        let k = GcmKey::new(value)?;
        Ok(self.gcm.get_or_init(|| k))
    }

    pub fn signer(&self) -> Result<&SigningKey> {
        self.signer.as_ref().ok_or(Error::KeyTypeInconsistent)
    }

    pub fn verifier(&self) -> Result<&VerifyingKey> {
        self.verifier.as_ref().ok_or(Error::KeyTypeInconsistent)
    }
}

/// The prepared keys and a counter raised by every invalidation (a change, a destroy, a
/// logout). A key loaded from the store is cached only if the counter did not move while
/// it was loaded: otherwise the load may have read the state from before the change, and
/// caching it would let a later `C_SignInit` use what `C_SetAttributeValue` or
/// `C_DestroyObject` already took away.
#[derive(Default)]
pub(crate) struct KeyCache {
    epoch: u64,
    keys: HashMap<ObjectId, Arc<CachedKey>>,
}

impl KeyCache {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn clear(&mut self) {
        self.keys.clear();
        self.epoch += 1;
    }

    pub fn forget(&mut self, id: ObjectId) {
        self.keys.remove(&id);
        self.epoch += 1;
    }
}

impl Hsm {
    /// The key behind a handle, prepared for use: from the slot's cache for token keys
    /// while this application has the user logged in, parsed afresh otherwise.
    pub(crate) fn prepared_key(
        &self,
        slot: &AppSlot,
        token: TokenId,
        h: u64,
    ) -> Result<Arc<CachedKey>> {
        let cacheable = match decode_handle(h) {
            Some(Location::Token { slot: s, id }) if s == slot.id && slot.user_logged_in() => {
                Some(id)
            }
            Some(Location::Session(n)) => return self.prepared_session_key(slot, n),
            _ => None,
        };
        let Some(id) = cacheable else {
            let o = self.load(slot, token, h).map_err(key_handle)?;
            return self.prepare_key(slot, o.attrs);
        };
        let epoch = {
            let cache = read(&slot.shared.key_cache);
            if let Some(k) = cache.keys.get(&id) {
                return Ok(k.clone());
            }
            cache.epoch
        };
        let o = self.load(slot, token, h).map_err(key_handle)?;
        let k = self.prepare_key(slot, o.attrs)?;
        let mut cache = write(&slot.shared.key_cache);
        if cache.epoch == epoch {
            cache.keys.insert(id, k.clone());
        }
        Ok(k)
    }

    /// A session key, prepared at its first use and kept with it: the same speed as a
    /// cached token key. A change of its attributes gives the object a new, empty cell
    /// (a preparation racing with the change lands in the old one, which nobody reads).
    fn prepared_session_key(&self, slot: &AppSlot, n: u64) -> Result<Arc<CachedKey>> {
        let (cell, attrs) = {
            let objs = read(&self.session_objects);
            let o = super::visible_session_object(&objs, slot, n).map_err(key_handle)?;
            if let Some(k) = o.prepared.get() {
                return Ok(k.clone());
            }
            (o.prepared.clone(), o.attrs.clone())
        };
        let k = self.prepare_key(slot, attrs)?;
        Ok(cell.get_or_init(|| k).clone())
    }

    /// A key prepared with this runtime's provider and the slot's device, if any.
    fn prepare_key(&self, slot: &AppSlot, attrs: AttributeSet) -> Result<Arc<CachedKey>> {
        let device = slot.shared.adapter().ok().flatten();
        Ok(Arc::new(CachedKey::prepare(
            self.provider(),
            device,
            attrs,
        )?))
    }
}
