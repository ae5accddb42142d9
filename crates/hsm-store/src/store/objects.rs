//! Objects: creating them (version 1, all or none), reading any version, destroying one
//! with all it owns.

use super::{Store, TokenKeys, u64_from};
use crate::audit::Event;
use crate::backend::{Batch, PurgeRange, collect_prefix};
use crate::cf::Cf;
use crate::crypto::Key32;
use crate::error::{Result, StoreError};
use crate::keys;
use crate::records::{ObjectHeader, VersionCause, VersionRecord};
use hsm_types::policy;
use hsm_types::{AttributeSet, ObjectId, VersionNo};

/// An object as read from the store.
#[derive(Debug)]
pub struct StoredObject {
    pub id: ObjectId,
    pub version: VersionNo,
    pub private: bool,
    pub attrs: AttributeSet,
    /// True when the object holds key material this caller could not unseal (a public
    /// object read without the master key).
    pub secrets_withheld: bool,
}

impl Store {
    /// Creates an object (version 1) with its indexes in one durable batch.
    pub fn create_object(&self, keys: &TokenKeys, attrs: AttributeSet) -> Result<ObjectId> {
        let ids = self.create_objects(keys, vec![attrs])?;
        Ok(ids[0])
    }

    /// Creates many objects in one durable batch: all or none (imports, migrations).
    pub fn create_objects(
        &self,
        keys: &TokenKeys,
        objects: Vec<AttributeSet>,
    ) -> Result<Vec<ObjectId>> {
        for attrs in &objects {
            if (attrs.is_private() || policy::has_secrets(attrs)) && keys.master.is_none() {
                return Err(StoreError::NotLoggedIn);
            }
        }
        let _g = self.lock();
        let next_key = keys::meta::next_object(keys.token);
        let first = match self.kv.get(Cf::Meta, &next_key)? {
            Some(v) => u64_from(&v, "meta/next_object")?,
            None => return Err(StoreError::TokenNotFound(keys.token)),
        };
        let mut b = Batch::new();
        let mut ids = Vec::with_capacity(objects.len());
        for (i, attrs) in objects.iter().enumerate() {
            let id = ObjectId(first + i as u64);
            self.stage_create(&mut b, keys, id, attrs)?;
            ids.push(id);
        }
        b.put(
            Cf::Meta,
            next_key,
            (first + objects.len() as u64).to_be_bytes().to_vec(),
        );
        let events = ids
            .iter()
            .map(|id| {
                Event::new("object.create")
                    .object(*id)
                    .version(VersionNo(1))
            })
            .collect();
        self.write_audited(keys.token, Some(keys), b, events)?;
        Ok(ids)
    }

    pub(super) fn stage_create(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        id: ObjectId,
        attrs: &AttributeSet,
    ) -> Result<()> {
        let private = attrs.is_private();
        let object_key = Key32::random()?;
        let wrapped_object_key = self.wrap_object_key(keys, id, private, &object_key)?;
        // A public object's key material is sealed apart, under a key the master key wraps.
        let (secret_key, wrapped_secret_key) = if !private && policy::has_secrets(attrs) {
            let sk = Key32::random()?;
            let wsk = self.wrap_secret_key(keys, id, &sk)?;
            (Some(sk), Some(wsk))
        } else {
            (None, None)
        };
        let mut header = ObjectHeader {
            private,
            current: 1,
            created_at: super::now(),
            wrapped_object_key,
            wrapped_secret_key,
            binding: None,
        };
        let v1 = VersionNo(1);
        let record = self.seal_attrs(keys, id, v1, &object_key, secret_key.as_ref(), attrs)?;
        header.binding = self.bind_header(keys, id, &header, &record, attrs)?;
        let vrec = VersionRecord {
            created_at: header.created_at,
            parent: None,
            cause: VersionCause::Created,
        };
        self.stage_records(b, keys, id, &header, &vrec, record)?;
        for (cf, k) in self.index_entries(keys, id, private, attrs)? {
            b.put(cf, k, Vec::new());
        }
        Ok(())
    }

    /// The current version of an object. Private objects need the master key.
    pub fn read_object(&self, keys: &TokenKeys, id: ObjectId) -> Result<StoredObject> {
        let h = self.read_header(keys, id)?;
        self.read_at(keys, id, &h, VersionNo(h.current))
    }

    /// Any retained version of an object.
    pub fn read_version(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
    ) -> Result<StoredObject> {
        let h = self.read_header(keys, id)?;
        self.read_at(keys, id, &h, v)
    }

    pub(super) fn read_at(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        v: VersionNo,
    ) -> Result<StoredObject> {
        if h.private && keys.master.is_none() {
            return Err(StoreError::NotLoggedIn);
        }
        let (ok, sk) = self.object_keys(keys, id, h)?;
        let raw = self.attribute_record(keys, id, v)?;
        let (attrs, secrets_withheld) = self.read_attrs(keys, id, v, &raw, h, &ok, sk.as_ref())?;
        if v.0 == h.current {
            self.check_current(keys, id, h, &raw, &attrs)?;
        }
        Ok(StoredObject {
            id,
            version: v,
            private: h.private,
            attrs,
            secrets_withheld,
        })
    }

    /// Whether an object is private, without unsealing it.
    pub fn is_private(&self, keys: &TokenKeys, id: ObjectId) -> Result<bool> {
        Ok(self.read_header(keys, id)?.private)
    }

    /// Destroys an object and every version of it, then purges the ranges so its sealed
    /// records and per-object keys leave the disk (not just a tombstone).
    pub fn destroy_object(&self, keys: &TokenKeys, id: ObjectId) -> Result<()> {
        let _g = self.lock();
        let mut b = Batch::new();
        let ranges = self.stage_destroy(&mut b, keys, id)?;
        let event = Event::new("object.destroy").object(id);
        self.write_audited(keys.token, Some(keys), b, vec![event])?;
        self.kv.purge(&ranges)
    }

    /// Stages an object's destruction into `b`; returns the ranges to purge after the write.
    pub(super) fn stage_destroy(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        id: ObjectId,
    ) -> Result<Vec<PurgeRange>> {
        let h = self.read_header(keys, id)?;
        if h.private {
            keys.master()?;
        }
        let mut index_keys: Vec<(Cf, Vec<u8>)> =
            match self.read_at(keys, id, &h, VersionNo(h.current)) {
                Ok(obj) => self.index_entries(keys, id, h.private, &obj.attrs)?,
                // A damaged record must still be destroyable: find its entries by object id.
                Err(
                    StoreError::Tampered { .. }
                    | StoreError::Corruption { .. }
                    | StoreError::VersionNotFound(..),
                ) => self.scan_index_entries_of(keys.token, id)?,
                Err(e) => return Err(e),
            };
        let start = keys::object(keys.token, id);
        let end = keys::object_end(keys.token, id);
        b.delete(Cf::Objects, start.clone());
        for cf in [Cf::Versions, Cf::Attributes] {
            for (k, _) in collect_prefix(self.kv.as_ref(), cf, &start)? {
                b.delete(cf, k);
            }
        }
        let mut ranges: Vec<PurgeRange> = [Cf::Objects, Cf::Versions, Cf::Attributes]
            .into_iter()
            .map(|cf| PurgeRange {
                cf,
                start: start.clone(),
                end: end.clone(),
            })
            .collect();
        for (cf, k) in index_keys.drain(..) {
            let end = keys::prefix_end(&k).unwrap_or_else(|| k.clone());
            b.delete(cf, k.clone());
            ranges.push(PurgeRange { cf, start: k, end });
        }
        Ok(ranges)
    }
}
