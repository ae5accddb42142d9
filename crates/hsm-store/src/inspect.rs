//! Offline inspection: counts through the indexes, and an integrity check that opens every
//! sealed record it has a key for, walks version chains, and compares indexes with
//! records both ways. Used by `ferrohsm inspect`; never writes.

use crate::backend::Flow;
use crate::cf::Cf;
use crate::crypto;
use crate::error::Result;
use crate::keys::{self, Visibility};
use crate::records::{self, ObjectHeader, VersionRecord};
use crate::store::{Store, TokenKeys};
use hsm_types::{KeyType, ObjectClass, ObjectId, TokenId, VersionNo};
use std::collections::{BTreeMap, BTreeSet};

/// One problem `check` found, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub location: String,
    pub problem: String,
}

/// What `check` looked at.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub objects: u64,
    pub versions: u64,
    pub records_opened: u64,
    /// Attribute records of private objects not opened for lack of the user PIN.
    pub private_unverified: u64,
    pub problems: Vec<Problem>,
}

/// Counts of one token's objects.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TokenCounts {
    pub objects: u64,
    pub private_objects: u64,
    pub versions: u64,
    /// By class name, through the class index (private objects only with the PIN).
    pub by_class: BTreeMap<String, u64>,
    pub by_key_type: BTreeMap<String, u64>,
}

fn problem(report: &mut CheckReport, location: impl Into<String>, what: impl std::fmt::Display) {
    report.problems.push(Problem {
        location: location.into(),
        problem: what.to_string(),
    });
}

impl Store {
    /// Object, version and per-class counts of a token.
    pub fn counts(&self, keys: &TokenKeys) -> Result<TokenCounts> {
        let t = keys.token();
        let mut c = TokenCounts::default();
        self.backend()
            .scan_prefix(Cf::Objects, &keys::token_prefix(t), &mut |k, v| {
                c.objects += 1;
                if let Some((_, id)) = keys::decode_object(k) {
                    let loc = || format!("objects/{t}/{id}");
                    let plain =
                        crypto::open(keys.header_key(), &self.header_aad(keys, id), v, loc)?;
                    let h: ObjectHeader = records::decode(&plain, loc)?;
                    c.private_objects += h.private as u64;
                }
                Ok(Flow::Continue)
            })?;
        self.backend()
            .scan_prefix(Cf::Versions, &keys::token_prefix(t), &mut |_, _| {
                c.versions += 1;
                Ok(Flow::Continue)
            })?;
        for class in ObjectClass::KNOWN {
            let n = self.count_index(keys, Cf::IdxClass, &class.0.to_be_bytes())?;
            if n > 0 {
                c.by_class.insert(format!("{class:?}"), n);
            }
        }
        for kt in KeyType::KNOWN {
            let n = self.count_index(keys, Cf::IdxKeyType, &kt.0.to_be_bytes())?;
            if n > 0 {
                c.by_key_type.insert(format!("{kt:?}"), n);
            }
        }
        Ok(c)
    }

    fn count_index(&self, keys: &TokenKeys, cf: Cf, value: &[u8]) -> Result<u64> {
        let mut n = 0;
        for (ik, vis) in keys.index_keys() {
            let d = crypto::blind(ik, cf.index_tag(), value);
            self.backend().scan_prefix(
                cf,
                &keys::index_prefix(keys.token(), vis, &d),
                &mut |_, _| {
                    n += 1;
                    Ok(Flow::Continue)
                },
            )?;
        }
        Ok(n)
    }

    /// Checks one token: every header and version record opens; version chains are whole;
    /// every attribute record these keys can open opens; no record lacks its object; the
    /// indexes match the records both ways.
    pub fn check_token(&self, keys: &TokenKeys) -> Result<CheckReport> {
        let t = keys.token();
        let mut report = CheckReport::default();
        let mut headers: BTreeMap<ObjectId, ObjectHeader> = BTreeMap::new();
        let mut raw_headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.backend()
            .scan_prefix(Cf::Objects, &keys::token_prefix(t), &mut |k, v| {
                raw_headers.push((k.to_vec(), v.to_vec()));
                Ok(Flow::Continue)
            })?;
        for (k, v) in raw_headers {
            report.objects += 1;
            let Some((_, id)) = keys::decode_object(&k) else {
                problem(
                    &mut report,
                    format!("objects/{t}"),
                    format!("malformed key {}", crate::store::hex(&k)),
                );
                continue;
            };
            let loc = format!("objects/{t}/{id}");
            match crypto::open(keys.header_key(), &self.header_aad(keys, id), &v, || {
                loc.clone()
            })
            .and_then(|p| records::decode::<ObjectHeader>(&p, || loc.clone()))
            {
                Ok(h) => {
                    report.records_opened += 1;
                    headers.insert(id, h);
                }
                Err(e) => problem(&mut report, loc, e),
            }
        }
        // Version records and attribute records, each family on its own.
        let mut versions: BTreeMap<ObjectId, BTreeMap<u32, Option<VersionRecord>>> =
            BTreeMap::new();
        let mut raw = Vec::new();
        self.backend()
            .scan_prefix(Cf::Versions, &keys::token_prefix(t), &mut |k, v| {
                raw.push((k.to_vec(), v.to_vec()));
                Ok(Flow::Continue)
            })?;
        for (k, v) in raw {
            report.versions += 1;
            let Some((_, id, ver)) = keys::decode_version(&k) else {
                problem(
                    &mut report,
                    format!("versions/{t}"),
                    format!("malformed key {}", crate::store::hex(&k)),
                );
                continue;
            };
            let loc = format!("versions/{t}/{id}/{ver}");
            if !headers.contains_key(&id) {
                problem(
                    &mut report,
                    loc.clone(),
                    "version record of an object that has no header",
                );
            }
            let rec = crypto::open(
                keys.header_key(),
                &self.version_aad(keys, id, ver),
                &v,
                || loc.clone(),
            )
            .and_then(|p| records::decode::<VersionRecord>(&p, || loc.clone()));
            match rec {
                Ok(r) => {
                    report.records_opened += 1;
                    versions.entry(id).or_default().insert(ver.0, Some(r));
                }
                Err(e) => {
                    problem(&mut report, loc, e);
                    versions.entry(id).or_default().insert(ver.0, None);
                }
            }
        }
        let mut attr_keys: BTreeSet<(ObjectId, u32)> = BTreeSet::new();
        self.backend()
            .scan_prefix(Cf::Attributes, &keys::token_prefix(t), &mut |k, _| {
                match keys::decode_version(k) {
                    Some((_, id, v)) => {
                        attr_keys.insert((id, v.0));
                    }
                    None => problem(
                        &mut report,
                        format!("attributes/{t}"),
                        format!("malformed key {}", crate::store::hex(k)),
                    ),
                }
                Ok(Flow::Continue)
            })?;
        for (id, v) in &attr_keys {
            if !headers.contains_key(id) {
                problem(
                    &mut report,
                    format!("attributes/{t}/{id}/{v}"),
                    "attribute record of an object that has no header",
                );
            }
        }
        for (id, h) in &headers {
            let chain = versions.remove(id).unwrap_or_default();
            for v in 1..=h.current {
                let loc = format!("versions/{t}/{id}/{v}");
                match chain.get(&v) {
                    None => problem(
                        &mut report,
                        loc,
                        format!("missing: the chain runs 1..={}", h.current),
                    ),
                    Some(Some(rec)) => {
                        if rec.parent.is_some_and(|p| p >= v) {
                            problem(
                                &mut report,
                                loc,
                                format!("parent {} is not older", rec.parent.unwrap_or(0)),
                            );
                        }
                    }
                    Some(None) => {}
                }
                if !attr_keys.contains(&(*id, v)) {
                    problem(&mut report, format!("attributes/{t}/{id}/{v}"), "missing");
                }
            }
            if let Some(extra) = chain.keys().find(|v| **v > h.current) {
                problem(
                    &mut report,
                    format!("versions/{t}/{id}/{extra}"),
                    format!("newer than the current version {}", h.current),
                );
            }
            if h.private && keys.logged_in().is_none() {
                report.private_unverified += h.current as u64;
                continue;
            }
            for v in 1..=h.current {
                if !attr_keys.contains(&(*id, v)) {
                    continue;
                }
                match self.read_version(keys, *id, VersionNo(v)) {
                    Ok(_) => report.records_opened += 1,
                    Err(e) => problem(&mut report, format!("attributes/{t}/{id}/{v}"), e),
                }
            }
        }
        for p in self.check_indexes(keys)? {
            problem(&mut report, "indexes", p);
        }
        Ok(report)
    }

    /// Store-wide checks: schema version, store id, token records, and records that
    /// belong to no token.
    pub fn check_store(&self) -> Result<Vec<Problem>> {
        let mut out = Vec::new();
        let mut push = |l: &str, p: String| {
            out.push(Problem {
                location: l.into(),
                problem: p,
            })
        };
        match self.backend().get(Cf::Meta, keys::meta::SCHEMA_VERSION)? {
            Some(v) if v.len() == 4 => {}
            Some(_) => push("meta/schema_version", "not 4 bytes".into()),
            None => push("meta/schema_version", "missing".into()),
        }
        let tokens: BTreeSet<TokenId> = self.tokens()?.into_iter().map(|t| t.id).collect();
        for cf in [Cf::Objects, Cf::Versions, Cf::Attributes]
            .into_iter()
            .chain(Cf::INDEXES)
        {
            let mut strays = 0u64;
            self.backend().scan_prefix(cf, &[], &mut |k, _| {
                if k.len() < 4
                    || !tokens.contains(&TokenId(u32::from_be_bytes([k[0], k[1], k[2], k[3]])))
                {
                    strays += 1;
                }
                Ok(Flow::Continue)
            })?;
            if strays > 0 {
                push(cf.name(), format!("{strays} records belong to no token"));
            }
        }
        Ok(out)
    }
}

impl TokenKeys {
    /// The index keys these keys hold, with the visibility each blinds.
    pub(crate) fn index_keys(&self) -> Vec<(&crypto::Key32, Visibility)> {
        let mut v = vec![(self.public_index_key(), Visibility::Public)];
        if let Some(k) = self.private_index_key() {
            v.push((k, Visibility::Private));
        }
        v
    }
}
