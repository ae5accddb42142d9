//! Lookups through the indexes, and their upkeep. An entry's key is a blinded digest of
//! one attribute value (`keys::index_value`), under the public or the private index key.

use super::{Store, TokenKeys};
use crate::backend::Flow;
use crate::cf::Cf;
use crate::crypto::{self, Key32};
use crate::error::{Result, StoreError};
use crate::keys::{self, Visibility, index_value};
use crate::records::{self, ObjectHeader};
use hsm_types::{AttributeSet, KeyType, MechanismType, ObjectClass, ObjectId, TokenId};
use std::collections::BTreeSet;

/// A lookup through the indexes. Every given field must match; an empty query lists
/// every visible object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub class: Option<ObjectClass>,
    pub label: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
    pub key_type: Option<KeyType>,
    pub mechanism: Option<MechanismType>,
}

impl Query {
    pub fn is_empty(&self) -> bool {
        self.class.is_none()
            && self.label.is_none()
            && self.id.is_none()
            && self.key_type.is_none()
            && self.mechanism.is_none()
    }

    /// The (index, value) pairs every match must have, most selective first: label and
    /// id usually narrow to one object.
    fn criteria(&self) -> Vec<(Cf, Vec<u8>)> {
        let mut criteria = Vec::new();
        if let Some(c) = self.class {
            criteria.push(index_value::class(c));
        }
        if let Some(l) = &self.label {
            criteria.push(index_value::label(l));
        }
        if let Some(i) = &self.id {
            criteria.push(index_value::id(i));
        }
        if let Some(k) = self.key_type {
            criteria.push(index_value::key_type(k));
        }
        if let Some(m) = self.mechanism {
            criteria.push(index_value::mechanism(m));
        }
        criteria.sort_by_key(|(cf, _)| match cf {
            Cf::IdxId | Cf::IdxLabel => 0,
            _ => 1,
        });
        criteria
    }
}

impl Store {
    pub(super) fn scan_index_entries_of(
        &self,
        token: TokenId,
        id: ObjectId,
    ) -> Result<Vec<(Cf, Vec<u8>)>> {
        let mut out = Vec::new();
        for cf in Cf::INDEXES {
            self.kv
                .scan_prefix(cf, &keys::token_prefix(token), &mut |k, _| {
                    if keys::decode_index(k).is_some_and(|(_, _, _, o)| o == id) {
                        out.push((cf, k.to_vec()));
                    }
                    Ok(Flow::Continue)
                })?;
        }
        Ok(out)
    }

    fn index_key_for<'k>(
        &self,
        keys: &'k TokenKeys,
        private: bool,
    ) -> Result<(&'k Key32, Visibility)> {
        if private {
            Ok((&keys.master()?.private_index, Visibility::Private))
        } else {
            Ok((&keys.public_index, Visibility::Public))
        }
    }

    /// The index entries an attribute set implies.
    pub(crate) fn index_entries(
        &self,
        keys: &TokenKeys,
        id: ObjectId,
        private: bool,
        attrs: &AttributeSet,
    ) -> Result<Vec<(Cf, Vec<u8>)>> {
        let (ik, vis) = self.index_key_for(keys, private)?;
        let mut out = Vec::new();
        for (cf, value) in index_value::of(attrs) {
            let d = crypto::blind(ik, cf.index_tag(), &value);
            out.push((cf, keys::index(keys.token, vis, &d, id)));
        }
        Ok(out)
    }

    /// Objects matching every field of `q`, through the indexes, in id order. Private
    /// objects appear only with the master key. An empty query lists every visible object.
    pub fn find(&self, keys: &TokenKeys, q: &Query) -> Result<Vec<ObjectId>> {
        if q.is_empty() {
            return self.all_objects(keys);
        }
        let index_keys = keys.index_keys();
        let mut result: Option<BTreeSet<ObjectId>> = None;
        for (cf, value) in q.criteria() {
            let ids = match &result {
                // The first criterion lists its matches with a prefix scan.
                None => self.scan_matches(keys.token, &index_keys, cf, &value)?,
                // Later criteria only confirm the candidates with point lookups, so a
                // broad criterion (the class of every key) costs nothing extra.
                Some(candidates) => {
                    self.confirm_matches(keys.token, &index_keys, cf, &value, candidates)?
                }
            };
            let empty = ids.is_empty();
            result = Some(ids);
            if empty {
                break;
            }
        }
        Ok(result.unwrap_or_default().into_iter().collect())
    }

    /// Every object with `value` in index `cf`, under each index key held.
    fn scan_matches(
        &self,
        token: TokenId,
        index_keys: &[(&Key32, Visibility)],
        cf: Cf,
        value: &[u8],
    ) -> Result<BTreeSet<ObjectId>> {
        let mut ids = BTreeSet::new();
        for (ik, vis) in index_keys {
            let d = crypto::blind(ik, cf.index_tag(), value);
            self.kv
                .scan_prefix(cf, &keys::index_prefix(token, *vis, &d), &mut |k, _| {
                    if let Some((_, _, _, o)) = keys::decode_index(k) {
                        ids.insert(o);
                    }
                    Ok(Flow::Continue)
                })?;
        }
        Ok(ids)
    }

    /// The candidates that also have `value` in index `cf`, under one of the index keys.
    fn confirm_matches(
        &self,
        token: TokenId,
        index_keys: &[(&Key32, Visibility)],
        cf: Cf,
        value: &[u8],
        candidates: &BTreeSet<ObjectId>,
    ) -> Result<BTreeSet<ObjectId>> {
        let mut ids = BTreeSet::new();
        let digests: Vec<_> = index_keys
            .iter()
            .map(|(ik, vis)| (*vis, crypto::blind(ik, cf.index_tag(), value)))
            .collect();
        for o in candidates {
            for (vis, d) in &digests {
                if self.kv.get(cf, &keys::index(token, *vis, d, *o))?.is_some() {
                    ids.insert(*o);
                    break;
                }
            }
        }
        Ok(ids)
    }

    /// Every object of the token, in id order.
    pub fn all_objects(&self, keys: &TokenKeys) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        let with_private = keys.master.is_some();
        self.kv
            .scan_prefix(Cf::Objects, &keys::token_prefix(keys.token), &mut |k, v| {
                let Some((_, id)) = keys::decode_object(k) else {
                    return Err(StoreError::corruption(
                        format!("objects/{}", keys.token),
                        "malformed key",
                    ));
                };
                if with_private {
                    out.push(id);
                } else {
                    let loc = || format!("objects/{}/{}", keys.token, id);
                    let plain = crypto::open(&keys.header, &self.header_aad(keys, id), v, loc)?;
                    let h: ObjectHeader = records::decode(&plain, loc)?;
                    if !h.private {
                        out.push(id);
                    }
                }
                Ok(Flow::Continue)
            })?;
        Ok(out)
    }

    /// Counts a token's objects without unsealing them.
    pub fn object_count(&self, token: TokenId) -> Result<u64> {
        let mut n = 0;
        self.kv
            .scan_prefix(Cf::Objects, &keys::token_prefix(token), &mut |_, _| {
                n += 1;
                Ok(Flow::Continue)
            })?;
        Ok(n)
    }

    /// Checks that the indexes and the records agree both ways for every object these
    /// keys can read. Returns one line per problem.
    pub fn check_indexes(&self, keys: &TokenKeys) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut expected: BTreeSet<(Cf, Vec<u8>)> = BTreeSet::new();
        for id in self.all_objects(keys)? {
            match self.read_object(keys, id) {
                Ok(obj) => {
                    expected.extend(self.index_entries(keys, id, obj.private, &obj.attrs)?)
                }
                Err(e) => problems.push(format!("object {id}: {e}")),
            }
        }
        let can_private = keys.master.is_some();
        for cf in Cf::INDEXES {
            self.kv
                .scan_prefix(cf, &keys::token_prefix(keys.token), &mut |k, _| {
                    match keys::decode_index(k) {
                        Some((_, Visibility::Private, _, _)) if !can_private => {}
                        Some((_, _, _, o)) => {
                            if !expected.remove(&(cf, k.to_vec())) {
                                problems.push(format!(
                                    "{}: entry for object {o} matches no record",
                                    cf.name()
                                ));
                            }
                        }
                        None => problems.push(format!(
                            "{}: malformed key {}",
                            cf.name(),
                            hex::encode(k)
                        )),
                    }
                    Ok(Flow::Continue)
                })?;
        }
        for (cf, k) in expected {
            let o = keys::decode_index(&k)
                .map(|(_, _, _, o)| o.to_string())
                .unwrap_or_default();
            problems.push(format!("{}: object {o} has no index entry", cf.name()));
        }
        Ok(problems)
    }
}
