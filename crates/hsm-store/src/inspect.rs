//! Offline inspection: counts through the indexes, and an integrity check that opens every
//! sealed record it has a key for, walks version chains, and compares indexes with
//! records both ways. Used by `ferrohsm inspect`; never writes.

use crate::backend::Flow;
use crate::cf::Cf;
use crate::crypto;
use crate::error::Result;
use crate::keys::{self, index_value};
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

/// Each object's version records by number; `None` for one that did not open.
type Chains = BTreeMap<ObjectId, BTreeMap<u32, Option<VersionRecord>>>;

/// Checks one object's version chain against its header: every version up to the current
/// one has its version record, with an older parent, and its attribute record; none is
/// newer than the current one.
fn check_chain(
    report: &mut CheckReport,
    t: TokenId,
    id: ObjectId,
    h: &ObjectHeader,
    chain: &BTreeMap<u32, Option<VersionRecord>>,
    attr_keys: &BTreeSet<(ObjectId, u32)>,
) {
    for v in 1..=h.current {
        let loc = format!("versions/{t}/{id}/{v}");
        match chain.get(&v) {
            None => problem(
                report,
                loc,
                format!("missing: the chain runs 1..={}", h.current),
            ),
            Some(Some(rec)) => {
                if rec.parent.is_some_and(|p| p >= v) {
                    problem(
                        report,
                        loc,
                        format!("parent {} is not older", rec.parent.unwrap_or(0)),
                    );
                }
            }
            Some(None) => {}
        }
        if !attr_keys.contains(&(id, v)) {
            problem(report, format!("attributes/{t}/{id}/{v}"), "missing");
        }
    }
    if let Some(extra) = chain.keys().find(|v| **v > h.current) {
        problem(
            report,
            format!("versions/{t}/{id}/{extra}"),
            format!("newer than the current version {}", h.current),
        );
    }
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
                    let h = self.open_header(keys, id, v)?;
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
            let (cf, value) = index_value::class(*class);
            let n = self.count_index(keys, cf, &value)?;
            if n > 0 {
                c.by_class.insert(format!("{class:?}"), n);
            }
        }
        for kt in KeyType::KNOWN {
            let (cf, value) = index_value::key_type(*kt);
            let n = self.count_index(keys, cf, &value)?;
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
        let headers = self.check_headers(keys, &mut report)?;
        // Version records and attribute records, each family on its own.
        let mut versions = self.check_version_records(keys, &headers, &mut report)?;
        let attr_keys = self.check_attribute_keys(keys, &headers, &mut report)?;
        for (id, h) in &headers {
            let chain = versions.remove(id).unwrap_or_default();
            check_chain(&mut report, t, *id, h, &chain, &attr_keys);
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

    /// Opens every header record of the token; counts them, and reports each that does
    /// not open.
    fn check_headers(
        &self,
        keys: &TokenKeys,
        report: &mut CheckReport,
    ) -> Result<BTreeMap<ObjectId, ObjectHeader>> {
        let t = keys.token();
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
                    report,
                    format!("objects/{t}"),
                    format!("malformed key {}", hex::encode(&k)),
                );
                continue;
            };
            match self.open_header(keys, id, &v) {
                Ok(h) => {
                    report.records_opened += 1;
                    headers.insert(id, h);
                }
                Err(e) => problem(report, format!("objects/{t}/{id}"), e),
            }
        }
        Ok(headers)
    }

    /// Opens every version record of the token; counts them, and reports each that does
    /// not open or has no header. A record that does not open is in its chain as `None`.
    fn check_version_records(
        &self,
        keys: &TokenKeys,
        headers: &BTreeMap<ObjectId, ObjectHeader>,
        report: &mut CheckReport,
    ) -> Result<Chains> {
        let t = keys.token();
        let mut versions = Chains::new();
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
                    report,
                    format!("versions/{t}"),
                    format!("malformed key {}", hex::encode(&k)),
                );
                continue;
            };
            let loc = format!("versions/{t}/{id}/{ver}");
            if !headers.contains_key(&id) {
                problem(
                    report,
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
                    problem(report, loc, e);
                    versions.entry(id).or_default().insert(ver.0, None);
                }
            }
        }
        Ok(versions)
    }

    /// The (object, version) of every attribute record of the token, without opening
    /// them; reports malformed keys and records of objects that have no header.
    fn check_attribute_keys(
        &self,
        keys: &TokenKeys,
        headers: &BTreeMap<ObjectId, ObjectHeader>,
        report: &mut CheckReport,
    ) -> Result<BTreeSet<(ObjectId, u32)>> {
        let t = keys.token();
        let mut attr_keys: BTreeSet<(ObjectId, u32)> = BTreeSet::new();
        self.backend()
            .scan_prefix(Cf::Attributes, &keys::token_prefix(t), &mut |k, _| {
                match keys::decode_version(k) {
                    Some((_, id, v)) => {
                        attr_keys.insert((id, v.0));
                    }
                    None => problem(
                        report,
                        format!("attributes/{t}"),
                        format!("malformed key {}", hex::encode(k)),
                    ),
                }
                Ok(Flow::Continue)
            })?;
        for (id, v) in &attr_keys {
            if !headers.contains_key(id) {
                problem(
                    report,
                    format!("attributes/{t}/{id}/{v}"),
                    "attribute record of an object that has no header",
                );
            }
        }
        Ok(attr_keys)
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
                if !keys::decode_token_prefix(k).is_some_and(|t| tokens.contains(&t)) {
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
