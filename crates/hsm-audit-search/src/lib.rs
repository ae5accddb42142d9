//! Search over a token's audit log (`docs/audit.md`) with tantivy. The index is a cache:
//! rebuilt from the log's records (incrementally while the log only grew, from scratch
//! when it holds more than the log or names another log), never needed to verify the
//! log, and holding nothing the records do not (no secret, PIN or label is ever in one).
//! The CLI links this crate; the PKCS#11 module never does.

use hsm_types::audit::AuditRecord;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tantivy::collector::DocSetCollector;
use tantivy::query::{AllQuery, Query, QueryParser};
use tantivy::schema::{Field, INDEXED, STORED, STRING, Schema, Value};
use tantivy::{Index, IndexWriter, TantivyDocument, doc};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("audit index {path}: {why}")]
    Index { path: String, why: String },
    #[error("the search: {0}")]
    Query(String),
}

type Result<T> = std::result::Result<T, SearchError>;

/// What to look for; every criterion given must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Records at or after this time (seconds since the Unix epoch)…
    pub from: Option<u64>,
    /// …and before this one.
    pub until: Option<u64>,
    pub op: Option<String>,
    pub call: Option<String>,
    pub role: Option<String>,
    pub session: Option<u64>,
    pub pid: Option<u64>,
    pub object: Option<u64>,
    /// The lifecycle key (`ferrohsm key list`'s id).
    pub key: Option<u64>,
    pub result: Option<u64>,
    /// Only refusals (a result other than `CKR_OK`).
    pub failed: bool,
}

struct Fields {
    seq: Field,
    time: Field,
    op: Field,
    call: Field,
    role: Field,
    session: Field,
    pid: Field,
    object: Field,
    key: Field,
    result: Field,
    failed: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let num = INDEXED | STORED;
    let f = Fields {
        seq: b.add_u64_field("seq", num.clone()),
        time: b.add_u64_field("time", INDEXED),
        op: b.add_text_field("op", STRING),
        call: b.add_text_field("call", STRING),
        role: b.add_text_field("role", STRING),
        session: b.add_u64_field("session", INDEXED),
        pid: b.add_u64_field("pid", INDEXED),
        object: b.add_u64_field("object", INDEXED),
        key: b.add_u64_field("key", INDEXED),
        result: b.add_u64_field("result", INDEXED),
        failed: b.add_u64_field("failed", INDEXED),
    };
    (b.build(), f)
}

/// Which log the index holds, and how much of it.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Covered {
    origin: String,
    records: u64,
}

/// A token's index in a directory of its own.
pub struct AuditIndex {
    dir: PathBuf,
    index: Index,
    fields: Fields,
    covered: Covered,
}

fn err(dir: &Path, e: impl std::fmt::Display) -> SearchError {
    SearchError::Index {
        path: dir.display().to_string(),
        why: e.to_string(),
    }
}

const COVERED: &str = "ferrohsm-covered.json";

impl AuditIndex {
    /// Opens the index of log `origin` in `dir`, or makes a new one there (removing an
    /// index of another log, or of more records than `log_size`: the log it was built
    /// from is not this one any more).
    pub fn open(dir: &Path, origin: &str, log_size: u64) -> Result<AuditIndex> {
        let (schema, fields) = schema();
        let covered: Option<Covered> = std::fs::read(dir.join(COVERED))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let reusable = covered
            .as_ref()
            .is_some_and(|c| c.origin == origin && c.records <= log_size);
        let index = if reusable {
            Index::open_in_dir(dir).map_err(|e| err(dir, e))?
        } else {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| err(dir, e))?;
            }
            std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
            // What the log says about who did what stays the user's.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err(dir, e))?;
            Index::create_in_dir(dir, schema).map_err(|e| err(dir, e))?
        };
        Ok(AuditIndex {
            dir: dir.to_owned(),
            index,
            fields,
            covered: covered.filter(|_| reusable).unwrap_or(Covered {
                origin: origin.to_owned(),
                records: 0,
            }),
        })
    }

    /// How many records the index covers (the next one to add is this sequence number).
    pub fn covered(&self) -> u64 {
        self.covered.records
    }

    /// Adds records (in sequence, from [`AuditIndex::covered`] on) and commits.
    pub fn add(&mut self, records: impl IntoIterator<Item = AuditRecord>) -> Result<u64> {
        let mut w: IndexWriter = self
            .index
            .writer_with_num_threads(1, 15_000_000)
            .map_err(|e| err(&self.dir, e))?;
        let f = &self.fields;
        let mut added = 0;
        for r in records {
            if r.seq != self.covered.records + added {
                return Err(err(&self.dir, format!("record {} out of sequence", r.seq)));
            }
            let mut d = doc!(
                f.seq => r.seq,
                f.time => r.time,
                f.op => r.op.as_str(),
                f.role => r.actor.role.as_str(),
                f.result => r.result,
                f.failed => u64::from(r.result != 0),
            );
            let mut opt = |field: Field, v: Option<u64>| {
                if let Some(v) = v {
                    d.add_u64(field, v);
                }
            };
            opt(f.session, r.actor.session);
            opt(f.pid, r.actor.pid.map(u64::from));
            opt(f.object, r.object);
            opt(f.key, r.key);
            if let Some(c) = &r.call {
                d.add_text(f.call, c);
            }
            w.add_document(d).map_err(|e| err(&self.dir, e))?;
            added += 1;
        }
        w.commit().map_err(|e| err(&self.dir, e))?;
        self.covered.records += added;
        let json = serde_json::to_vec(&self.covered).expect("serialises");
        std::fs::write(self.dir.join(COVERED), json).map_err(|e| err(&self.dir, e))?;
        Ok(added)
    }

    /// The sequence numbers of the records that match, in order.
    pub fn search(&self, filter: &Filter) -> Result<Vec<u64>> {
        let reader = self.index.reader().map_err(|e| err(&self.dir, e))?;
        let searcher = reader.searcher();
        let query = self.query(filter)?;
        let hits = searcher
            .search(&*query, &DocSetCollector)
            .map_err(|e| SearchError::Query(e.to_string()))?;
        let mut seqs = Vec::with_capacity(hits.len());
        for addr in hits {
            let d: TantivyDocument = searcher.doc(addr).map_err(|e| err(&self.dir, e))?;
            if let Some(s) = d.get_first(self.fields.seq).and_then(|v| v.as_u64()) {
                seqs.push(s);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    fn query(&self, f: &Filter) -> Result<Box<dyn Query>> {
        let quote = |s: &str| format!("\"{}\"", s.replace(['\\', '"'], ""));
        let mut terms = Vec::new();
        if f.from.is_some() || f.until.is_some() {
            let from = f.from.map_or("*".into(), |t| t.to_string());
            let until = f
                .until
                .map_or("*".into(), |t| t.saturating_sub(1).to_string());
            terms.push(format!("time:[{from} TO {until}]"));
        }
        for (name, v) in [("op", &f.op), ("call", &f.call), ("role", &f.role)] {
            if let Some(v) = v {
                terms.push(format!("{name}:{}", quote(v)));
            }
        }
        for (name, v) in [
            ("session", f.session),
            ("pid", f.pid),
            ("object", f.object),
            ("key", f.key),
            ("result", f.result),
        ] {
            if let Some(v) = v {
                terms.push(format!("{name}:{v}"));
            }
        }
        if f.failed {
            terms.push("failed:1".into());
        }
        if terms.is_empty() {
            return Ok(Box::new(AllQuery));
        }
        let parser = QueryParser::for_index(&self.index, Vec::new());
        parser
            .parse_query(&terms.join(" AND "))
            .map_err(|e| SearchError::Query(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hsm_types::audit::{AuditActor, RECORD_FORMAT};

    fn rec(seq: u64, op: &str, role: &str, result: u64) -> AuditRecord {
        AuditRecord {
            format: RECORD_FORMAT,
            seq,
            boot: 1,
            time: 1_000 + seq * 10,
            actor: AuditActor {
                role: role.into(),
                session: Some(seq % 2),
                pid: Some(4242),
                subject: None,
            },
            op: op.into(),
            call: Some("C_Test".into()),
            object: Some(seq % 3),
            version: None,
            key: (op == "key.rotate").then_some(77),
            request: None,
            mechanism: None,
            result,
        }
    }

    fn log() -> Vec<AuditRecord> {
        (0..30)
            .map(|i| match i % 5 {
                0 => rec(i, "object.create", "user", 0),
                1 => rec(i, "login.user", "public", if i % 2 == 1 { 0xa0 } else { 0 }),
                2 => rec(i, "key.rotate", "so", 0),
                3 => rec(i, "key.sign", "user", 0),
                _ => rec(i, "object.destroy", "user", 0x54),
            })
            .collect()
    }

    #[test]
    fn every_criterion_narrows_the_search() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = AuditIndex::open(dir.path(), "log-a", 30).unwrap();
        assert_eq!(ix.add(log()).unwrap(), 30);
        let find = |f: Filter| ix.search(&f).unwrap();
        assert_eq!(find(Filter::default()).len(), 30);
        let creates = find(Filter {
            op: Some("object.create".into()),
            ..Filter::default()
        });
        assert_eq!(creates, [0, 5, 10, 15, 20, 25]);
        let wrong_pins = find(Filter {
            op: Some("login.user".into()),
            result: Some(0xa0),
            ..Filter::default()
        });
        assert_eq!(wrong_pins, [1, 11, 21]);
        let refused = find(Filter {
            failed: true,
            ..Filter::default()
        });
        assert_eq!(refused.len(), 3 + 6);
        // Time 1_100 is record 10; `until` is exclusive.
        let window = find(Filter {
            from: Some(1_100),
            until: Some(1_150),
            ..Filter::default()
        });
        assert_eq!(window, [10, 11, 12, 13, 14]);
        let rotations = find(Filter {
            key: Some(77),
            role: Some("so".into()),
            ..Filter::default()
        });
        assert_eq!(rotations, [2, 7, 12, 17, 22, 27]);
        let none = find(Filter {
            role: Some("auditor".into()),
            ..Filter::default()
        });
        assert!(none.is_empty());
    }

    #[test]
    fn the_index_grows_with_the_log_and_is_rebuilt_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let all = log();
        {
            let mut ix = AuditIndex::open(dir.path(), "log-a", 10).unwrap();
            ix.add(all[..10].to_vec()).unwrap();
        }
        let mut ix = AuditIndex::open(dir.path(), "log-a", 30).unwrap();
        assert_eq!(ix.covered(), 10);
        ix.add(all[10..].to_vec()).unwrap();
        assert_eq!(ix.search(&Filter::default()).unwrap().len(), 30);
        drop(ix);
        // A shorter log (the store was restored from earlier) or another log: rebuilt.
        assert_eq!(
            AuditIndex::open(dir.path(), "log-a", 5).unwrap().covered(),
            0
        );
        let mut ix = AuditIndex::open(dir.path(), "log-a", 30).unwrap();
        ix.add(all[..3].to_vec()).unwrap();
        drop(ix);
        assert_eq!(
            AuditIndex::open(dir.path(), "log-b", 30).unwrap().covered(),
            0
        );
        // Records out of sequence are refused.
        let mut ix = AuditIndex::open(dir.path(), "log-b", 30).unwrap();
        assert!(ix.add(all[1..2].to_vec()).is_err());
    }
}
