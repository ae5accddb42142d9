//! Versions: every change writes a new one (an update, a rollback), history is
//! append-only, and an attribute that may only tighten takes the less protected versions
//! out of the files when it moves.

use super::{Store, TokenKeys};
use crate::audit::Event;
use crate::backend::{Batch, Flow, PurgeRange, collect_prefix};
use crate::cf::Cf;
use crate::crypto::{self, Key32};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::records::{self, VersionCause, VersionRecord};
use hsm_types::policy;
use hsm_types::{AttributeSet, ObjectId, VersionNo};
use std::collections::BTreeSet;

/// One entry of an object's history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    pub version: VersionNo,
    pub created_at: u64,
    pub parent: Option<VersionNo>,
    pub cause: VersionCause,
    pub current: bool,
}

impl Store {
    /// Replaces the attribute set: a new version, indexes moved in the same batch.
    /// `CKA_PRIVATE` is part of the object's identity and cannot change here.
    pub fn update_object(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        attrs: AttributeSet,
    ) -> Result<VersionNo> {
        let _g = self.lock();
        self.write_new_version(keys, id, attrs, "object.update", |cur| {
            (VersionCause::AttributesChanged, Some(cur))
        })
    }

    /// Makes an earlier version current again by writing it as a new version (history is
    /// append-only, so a rollback is itself visible in the history).
    pub fn rollback(&self, keys: &TokenKeys, id: ObjectId, to: VersionNo) -> Result<VersionNo> {
        let _g = self.lock();
        let old = self.read_version(keys, id, to)?;
        self.write_new_version(keys, id, old.attrs, "object.rollback", |_| {
            (VersionCause::RolledBack { from: to.0 }, Some(to.0))
        })
    }

    fn write_new_version(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        attrs: AttributeSet,
        op: &'static str,
        cause: impl FnOnce(u32) -> (VersionCause, Option<u32>),
    ) -> Result<VersionNo> {
        let mut b = Batch::new();
        let (next, purge) = self.stage_new_version(&mut b, keys, id, attrs, cause)?;
        let event = Event::new(op).object(id).version(next);
        self.write_audited(keys.token, Some(keys), b, vec![event])?;
        if !purge.is_empty() {
            self.kv.purge(&purge)?;
        }
        Ok(next)
    }

    /// Stages a new version of an object into `b` (records, index moves, and the
    /// deletions a tightened attribute implies); returns it and the ranges to purge after
    /// the write.
    pub(super) fn stage_new_version(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        id: ObjectId,
        attrs: AttributeSet,
        cause: impl FnOnce(u32) -> (VersionCause, Option<u32>),
    ) -> Result<(VersionNo, Vec<PurgeRange>)> {
        let mut h = self.read_header(keys, id)?;
        if attrs.is_private() != h.private {
            return Err(StoreError::Invalid(
                "CKA_PRIVATE cannot change after creation".into(),
            ));
        }
        if h.private || h.wrapped_secret_key.is_some() || policy::has_secrets(&attrs) {
            keys.master()?;
        }
        let (ok, mut sk) = self.object_keys(keys, id, &h)?;
        let cur = VersionNo(h.current);
        let raw = self.attribute_record(keys, id, cur)?;
        let (old, _) = self.read_attrs(keys, id, cur, &raw, &h, &ok, sk.as_ref())?;
        self.check_current(keys, id, &h, &raw, &old)?;
        if !h.private && sk.is_none() && policy::has_secrets(&attrs) {
            let new_sk = Key32::random()?;
            h.wrapped_secret_key = Some(self.wrap_secret_key(keys, id, &new_sk)?);
            sk = Some(new_sk);
        }
        let next = VersionNo(
            h.current
                .checked_add(1)
                .ok_or_else(|| StoreError::Invalid("version counter exhausted".into()))?,
        );
        let (cause, parent) = cause(cur.0);
        let vrec = VersionRecord {
            created_at: super::now(),
            parent,
            cause,
        };
        h.current = next.0;
        let record = self.seal_attrs(keys, id, next, &ok, sk.as_ref(), &attrs)?;
        h.binding = self.bind_header(keys, id, &h, &record, &attrs)?;
        self.stage_records(b, keys, id, &h, &vrec, record)?;
        let purge = self.stage_tightening(b, keys, id, next, &old, &attrs)?;
        self.stage_index_moves(b, keys, id, h.private, &old, &attrs)?;
        Ok((next, purge))
    }

    /// A one-way attribute (CKA_SENSITIVE, CKA_EXTRACTABLE, ...) that moved: every
    /// earlier version is less protected and may never be current again, so its
    /// record (and key material) leaves the files. Putting an old header back then
    /// finds nothing to point at. Stages the deletions into `b` and returns the range to
    /// purge after the write (none when nothing tightened).
    fn stage_tightening(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        id: ObjectId,
        next: VersionNo,
        old: &AttributeSet,
        attrs: &AttributeSet,
    ) -> Result<Vec<PurgeRange>> {
        let tightened = policy::TABLE
            .iter()
            .filter(|r| r.flags.sticky_true || r.flags.sticky_false)
            .any(|r| old.get(r.attr) != attrs.get(r.attr));
        let mut purge = Vec::new();
        if tightened {
            let start = keys::version(keys.token, id, VersionNo(1));
            let end = keys::version(keys.token, id, next);
            for (k, _) in collect_prefix(
                self.kv.as_ref(),
                Cf::Attributes,
                &keys::object(keys.token, id),
            )? {
                if k < end {
                    b.delete(Cf::Attributes, k);
                }
            }
            purge.push(PurgeRange {
                cf: Cf::Attributes,
                start,
                end,
            });
        }
        Ok(purge)
    }

    /// Stages the index entries that `old` implies and `attrs` does not as deletions, and
    /// the reverse as new entries.
    fn stage_index_moves(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        id: ObjectId,
        private: bool,
        old: &AttributeSet,
        attrs: &AttributeSet,
    ) -> Result<()> {
        let before: BTreeSet<_> = self
            .index_entries(keys, id, private, old)?
            .into_iter()
            .collect();
        let after: BTreeSet<_> = self
            .index_entries(keys, id, private, attrs)?
            .into_iter()
            .collect();
        for (cf, k) in before.difference(&after) {
            b.delete(*cf, k.clone());
        }
        for (cf, k) in after.difference(&before) {
            b.put(*cf, k.clone(), Vec::new());
        }
        Ok(())
    }

    /// The version history, oldest first.
    pub fn versions(&self, keys: &TokenKeys, id: ObjectId) -> Result<Vec<VersionInfo>> {
        let h = self.read_header(keys, id)?;
        let mut out = Vec::new();
        let mut err = None;
        self.kv
            .scan_prefix(Cf::Versions, &keys::object(keys.token, id), &mut |k, v| {
                let Some((_, _, ver)) = keys::decode_version(k) else {
                    err = Some(StoreError::corruption(
                        format!("versions/{}/{}", keys.token, id),
                        "malformed key",
                    ));
                    return Ok(Flow::Stop);
                };
                let loc = || format!("versions/{}/{}/{}", keys.token, id, ver);
                let plain = crypto::open(&keys.header, &self.version_aad(keys, id, ver), v, loc)?;
                let rec: VersionRecord = records::decode(&plain, loc)?;
                out.push(VersionInfo {
                    version: ver,
                    created_at: rec.created_at,
                    parent: rec.parent.map(VersionNo),
                    cause: rec.cause,
                    current: ver.0 == h.current,
                });
                Ok(Flow::Continue)
            })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
