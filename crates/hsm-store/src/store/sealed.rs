//! The sealing layer of object records: where each record's AAD puts it, sealing and
//! opening attribute sets (key material sealed apart), the per-object keys, and the checks
//! no AEAD can make alone: a header's binding to the master key, and that a header is not
//! one put back from an earlier version. `schema/sealing.md` is the normative description.

use super::{Store, TokenKeys};
use crate::backend::Batch;
use crate::cf::Cf;
use crate::crypto::{self, Key32, Purpose, aad};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::records::{self, AttributesBody, ObjectHeader, VersionRecord};
use hsm_types::policy;
use hsm_types::{AttributeSet, ObjectId, SecretString, TokenId, UserKind, VersionNo};
use zeroize::Zeroize;

/// The tag under which header bindings are computed (`crypto::blind`'s domain byte; the
/// binding key itself is its own HKDF derivation of the master key).
const BINDING_TAG: u8 = 0xb1;

/// Whether an object's header must carry a binding: private objects and objects holding
/// key material can only be written with the master key anyway, and a trusted object
/// (`CKA_TRUSTED`) must be one the SO made, not one planted in the files.
fn must_be_bound(h: &ObjectHeader, attrs: &AttributeSet) -> bool {
    h.private
        || h.wrapped_secret_key.is_some()
        || attrs.bool(hsm_types::AttributeType::TRUSTED) == Some(true)
}

impl Store {
    pub(crate) fn header_aad(&self, keys: &TokenKeys, o: ObjectId) -> Vec<u8> {
        aad(
            Purpose::Header,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0],
        )
    }
    pub(crate) fn version_aad(&self, keys: &TokenKeys, o: ObjectId, v: VersionNo) -> Vec<u8> {
        aad(
            Purpose::Version,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0, v.0 as u64],
        )
    }
    fn attrs_aad(&self, keys: &TokenKeys, o: ObjectId, v: VersionNo) -> Vec<u8> {
        aad(
            Purpose::Attributes,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0, v.0 as u64],
        )
    }
    fn secrets_aad(&self, keys: &TokenKeys, o: ObjectId, v: VersionNo) -> Vec<u8> {
        aad(
            Purpose::Secrets,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0, v.0 as u64],
        )
    }
    fn wrap_aad(&self, purpose: Purpose, keys: &TokenKeys, o: ObjectId) -> Vec<u8> {
        aad(
            purpose,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, o.0],
        )
    }

    /// A header as stored under `objects`.
    fn seal_header(&self, keys: &TokenKeys, id: ObjectId, h: &ObjectHeader) -> Result<Vec<u8>> {
        crypto::seal(
            &keys.header,
            &self.header_aad(keys, id),
            &records::encode(h),
        )
    }

    /// A version record as stored under `versions`.
    fn seal_version(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
        rec: &VersionRecord,
    ) -> Result<Vec<u8>> {
        crypto::seal(
            &keys.header,
            &self.version_aad(keys, id, v),
            &records::encode(rec),
        )
    }

    /// Stages the records of a header's current version: the header itself, the version
    /// record and the sealed attributes, in one batch with whatever else the change writes.
    pub(super) fn stage_records(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        vrec: &VersionRecord,
        record: Vec<u8>,
    ) -> Result<()> {
        let v = VersionNo(h.current);
        b.put(
            Cf::Objects,
            keys::object(keys.token, id),
            self.seal_header(keys, id, h)?,
        );
        b.put(
            Cf::Versions,
            keys::version(keys.token, id, v),
            self.seal_version(keys, id, v, vrec)?,
        );
        b.put(Cf::Attributes, keys::version(keys.token, id, v), record);
        Ok(())
    }

    /// An object key wrapped for its header: under the master key's wrapping key for a
    /// private object, under the public one otherwise.
    pub(super) fn wrap_object_key(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        private: bool,
        object_key: &Key32,
    ) -> Result<Vec<u8>> {
        let kek = if private {
            &keys.master()?.wrap
        } else {
            &keys.public_wrap
        };
        crypto::wrap(
            kek,
            &self.wrap_aad(Purpose::WrapObjectKey, keys, id),
            object_key,
        )
    }

    /// The key that seals a public object's key material apart, wrapped under the master
    /// key's wrapping key.
    pub(super) fn wrap_secret_key(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        secret_key: &Key32,
    ) -> Result<Vec<u8>> {
        crypto::wrap(
            &keys.master()?.wrap,
            &self.wrap_aad(Purpose::WrapSecretKey, keys, id),
            secret_key,
        )
    }

    pub(super) fn seal_attrs(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
        object_key: &Key32,
        secret_key: Option<&Key32>,
        attrs: &AttributeSet,
    ) -> Result<Vec<u8>> {
        let body = match secret_key {
            Some(sk) => {
                let mut public = attrs.clone();
                let class = public.class();
                let secret = public.split_off(|t| policy::is_secret(class, t));
                let mut enc = secret.encode();
                let sealed = crypto::seal(sk, &self.secrets_aad(keys, id, v), &enc)?;
                enc.zeroize();
                AttributesBody {
                    attrs: public.encode(),
                    secrets: Some(sealed),
                }
            }
            None => AttributesBody {
                attrs: attrs.encode(),
                secrets: None,
            },
        };
        let mut plain = records::encode(&body);
        let mut body = body;
        body.attrs.zeroize();
        let sealed = crypto::seal(object_key, &self.attrs_aad(keys, id, v), &plain);
        plain.zeroize();
        sealed
    }

    pub(super) fn read_header(&self, keys: &TokenKeys, id: ObjectId) -> Result<ObjectHeader> {
        let raw = self
            .kv
            .get(Cf::Objects, &keys::object(keys.token, id))?
            .ok_or(StoreError::ObjectNotFound(keys.token, id))?;
        self.open_header(keys, id, &raw)
    }

    /// Opens a header record as stored under `objects`.
    pub(crate) fn open_header(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        raw: &[u8],
    ) -> Result<ObjectHeader> {
        let loc = || format!("objects/{}/{}", keys.token, id);
        let plain = crypto::open(&keys.header, &self.header_aad(keys, id), raw, loc)?;
        records::decode(&plain, loc)
    }

    pub(super) fn object_keys(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
    ) -> Result<(Key32, Option<Key32>)> {
        let loc = || format!("objects/{}/{} (wrapped key)", keys.token, id);
        let ok = if h.private {
            crypto::unwrap(
                &keys.master()?.wrap,
                &self.wrap_aad(Purpose::WrapObjectKey, keys, id),
                &h.wrapped_object_key,
                loc,
            )?
        } else {
            crypto::unwrap(
                &keys.public_wrap,
                &self.wrap_aad(Purpose::WrapObjectKey, keys, id),
                &h.wrapped_object_key,
                loc,
            )?
        };
        let sk = match (&h.wrapped_secret_key, &keys.master) {
            (Some(w), Some(m)) => Some(crypto::unwrap(
                &m.wrap,
                &self.wrap_aad(Purpose::WrapSecretKey, keys, id),
                w,
                loc,
            )?),
            _ => None,
        };
        Ok((ok, sk))
    }

    /// The sealed attribute record of one version, as stored.
    pub(super) fn attribute_record(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
    ) -> Result<Vec<u8>> {
        self.kv
            .get(Cf::Attributes, &keys::version(keys.token, id, v))?
            .ok_or(StoreError::VersionNotFound(id, v))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_attrs(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        v: VersionNo,
        raw: &[u8],
        h: &ObjectHeader,
        ok: &Key32,
        sk: Option<&Key32>,
    ) -> Result<(AttributeSet, bool)> {
        let loc = || format!("attributes/{}/{}/{}", keys.token, id, v);
        let mut plain = crypto::open(ok, &self.attrs_aad(keys, id, v), raw, loc)?;
        let mut body: AttributesBody = records::decode(&plain, loc)?;
        plain.zeroize();
        let mut attrs =
            AttributeSet::decode(&body.attrs).map_err(|e| StoreError::corruption(loc(), e))?;
        body.attrs.zeroize();
        // Key material is always sealed apart (private objects: under the object key,
        // which the master key wraps). Key material among the readable attributes of a
        // public object was put there by someone writing the files.
        if !h.private && policy::has_secrets(&attrs) {
            return Err(StoreError::Tampered { location: loc() });
        }
        let mut withheld = false;
        match (&body.secrets, sk) {
            (Some(sealed), Some(sk)) => {
                let mut s = crypto::open(sk, &self.secrets_aad(keys, id, v), sealed, loc)?;
                let secret =
                    AttributeSet::decode(&s).map_err(|e| StoreError::corruption(loc(), e))?;
                s.zeroize();
                attrs.merge(secret);
            }
            (Some(_), None) => withheld = true,
            (None, _) => {}
        }
        Ok((attrs, withheld))
    }

    /// The binding MAC of a header over `record` (the current version's sealed
    /// attributes), when the caller holds the master key.
    fn header_mac(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
    ) -> Option<[u8; keys::DIGEST_LEN]> {
        let m = keys.master.as_ref()?;
        let mut unbound = h.clone();
        unbound.binding = None;
        let mut msg = self.wrap_aad(Purpose::HeaderBinding, keys, id);
        msg.extend_from_slice(&records::encode(&unbound));
        msg.extend_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, record).as_ref(),
        );
        Some(crypto::blind(&m.binding, BINDING_TAG, &msg))
    }

    /// The binding a header written now carries: one whenever the writer holds the
    /// master key. An object that must be bound (see [`must_be_bound`]) cannot be
    /// written without it.
    pub(super) fn bind_header(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
        attrs: &AttributeSet,
    ) -> Result<Option<Vec<u8>>> {
        match self.header_mac(keys, id, h, record) {
            Some(mac) => Ok(Some(mac.to_vec())),
            None if must_be_bound(h, attrs) => Err(StoreError::NotLoggedIn),
            None => Ok(None),
        }
    }

    /// Checks what only the token can vouch for, when the caller holds the master key:
    /// the header's binding over the current record. An object that must be bound and is
    /// not, or whose binding does not verify, is refused as tampered. Without the master
    /// key nothing of a private object is readable and the key material of a public one
    /// stays sealed, so there is nothing such a caller could be misled into using.
    fn check_binding(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
        attrs: &AttributeSet,
    ) -> Result<()> {
        let Some(mac) = self.header_mac(keys, id, h, record) else {
            return Ok(());
        };
        // Schema 1 had no bindings; a schema-1 store is only ever opened to be upgraded
        // (which binds every header), so from schema 2 on a missing one is tampering.
        let ok = match &h.binding {
            Some(b) => aws_lc_rs::constant_time::verify_slices_are_equal(b, &mac).is_ok(),
            None => self.schema_version < 2 || !must_be_bound(h, attrs),
        };
        if ok {
            Ok(())
        } else {
            Err(StoreError::Tampered {
                location: format!("objects/{}/{} (binding)", keys.token, id),
            })
        }
    }

    /// What a read of the current version checks beyond the records' own AEADs: the header
    /// is not one put back from earlier, and its binding holds.
    pub(super) fn check_current(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        h: &ObjectHeader,
        record: &[u8],
        attrs: &AttributeSet,
    ) -> Result<()> {
        self.check_not_replayed(keys, id, h)?;
        self.check_binding(keys, id, h, record, attrs)
    }

    /// Refuses a header that points below the newest version: a header put back from an
    /// earlier state of the object.
    fn check_not_replayed(&self, keys: &TokenKeys, id: ObjectId, h: &ObjectHeader) -> Result<()> {
        let Some(next) = h.current.checked_add(1) else {
            return Ok(());
        };
        if self
            .kv
            .get(
                Cf::Versions,
                &keys::version(keys.token, id, VersionNo(next)),
            )?
            .is_some()
        {
            return Err(StoreError::Tampered {
                location: format!(
                    "objects/{}/{} (header names version {} but version {next} exists)",
                    keys.token, id, h.current
                ),
            });
        }
        Ok(())
    }

    /// Schema 1 → 2 for one token: checks its SO PIN (counted like any login), then
    /// stages a binding for every object header into `b`. Each object is read the way a
    /// logged-in read does, its header checked against replay; an object that does not
    /// read stops the upgrade with its place named, and nothing is written.
    pub(crate) fn stage_bindings(
        &self,
        b: &mut Batch,
        token: TokenId,
        so_pin: &SecretString,
    ) -> Result<usize> {
        let keys = self.login(token, UserKind::So, so_pin)?;
        let mut n = 0;
        for id in self.all_objects(&keys)? {
            let mut h = self.read_header(&keys, id)?;
            if h.binding.is_some() {
                return Err(StoreError::Migration {
                    from: 1,
                    to: 2,
                    reason: format!(
                        "object {id} of token {token} already carries a schema-2 binding: this store \
                         was at schema 2 before and its recorded version was lowered; refusing to \
                         re-bind what is in the files now"
                    ),
                });
            }
            let (ok, sk) = self.object_keys(&keys, id, &h)?;
            let v = VersionNo(h.current);
            let raw = self.attribute_record(&keys, id, v)?;
            let (attrs, _) = self.read_attrs(&keys, id, v, &raw, &h, &ok, sk.as_ref())?;
            self.check_not_replayed(&keys, id, &h)?;
            h.binding = self.bind_header(&keys, id, &h, &raw, &attrs)?;
            b.put(
                Cf::Objects,
                keys::object(token, id),
                self.seal_header(&keys, id, &h)?,
            );
            n += 1;
        }
        Ok(n)
    }
}
