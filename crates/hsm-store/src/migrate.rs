//! Schema versions and the ordered migration steps. Each step's design note lives in the
//! top-level `migrations/` directory (`NNNN-title.md`); a test keeps the two in step.
//!
//! A step upgrades a store from `from` to `from + 1` in one durable batch, so a crash
//! leaves the store at one version or the next, never between. Every read-write open
//! migrates (the PKCS#11 module's too); `ferrohsm migrate run` does it on purpose, after a
//! RocksDB checkpoint of the old store, and `ferrohsm migrate status` says what would run.
//! The whole path is checked before the first step: a build that cannot reach its own
//! version changes nothing.

use crate::backend::{Batch, KvBackend};
use crate::cf::Cf;
use crate::error::{Result, StoreError};
use crate::keys;

/// The schema version this build writes.
pub const CURRENT: u32 = 5;

/// The step from this version needs each token's SO PIN (it binds headers to the master
/// key), so it runs only through [`crate::Store::upgrade_with_so_pin`].
pub const NEEDS_SO_PIN_FROM: u32 = 1;

/// One upgrade step.
pub struct Step {
    pub from: u32,
    pub title: &'static str,
    pub apply: fn(&dyn KvBackend, &mut Batch) -> Result<()>,
}

/// Steps in order; step `from: n` is described by `migrations/000{n+1}-….md`.
pub const STEPS: &[Step] = &[
    Step {
        from: 1,
        title: "bind object headers to each token's master key (needs each token's SO PIN)",
        apply: needs_the_so_pin,
    },
    Step {
        from: 2,
        title: "key rings: lifecycle records in `meta` (nothing to rewrite; older builds must \
                refuse a store whose keys may have disabled or scheduled versions)",
        apply: key_rings,
    },
    Step {
        from: 3,
        title: "dual control: approvers, rules, requests and verdicts in `meta` (nothing to \
                rewrite; older builds must refuse a store whose operations may need approvals)",
        apply: dual_control,
    },
    Step {
        from: 4,
        title: "audit log: the `audit` family, log heads, audit keys and the boot counter \
                (nothing to rewrite; older builds would write changes without their records)",
        apply: audit_log,
    },
];

/// Schema 1 → 2 cannot run unattended: a binding is made with the master key, which only
/// a PIN opens.
fn needs_the_so_pin(_: &dyn KvBackend, _: &mut Batch) -> Result<()> {
    Err(StoreError::Invalid(SO_PIN_NEEDED.into()))
}

/// Schema 2 → 3 adds record kinds (`meta` ring records and transition markers) and
/// attributes (`CKA_FERRO_KEY_ID`, `CKA_FERRO_KEY_VERSION`) without changing any existing
/// record: the step is the version number itself, which stops a schema-2 build from
/// opening a store where it would ignore a disabled or scheduled version.
fn key_rings(_: &dyn KvBackend, _: &mut Batch) -> Result<()> {
    Ok(())
}

/// Schema 3 → 4 adds record kinds (`meta` dual-control state, its markers, verdicts)
/// without changing any existing record: a schema-3 build would ignore the rules and
/// destroy a key one person asked to destroy, so the version number moves.
fn dual_control(_: &dyn KvBackend, _: &mut Batch) -> Result<()> {
    Ok(())
}

/// Schema 4 → 5 adds the `audit` family (the writer's open created it) and `meta` records
/// (log heads, audit keys, the boot counter); no existing record changes. A schema-4
/// build would make changes without their audit records, so the version moves. Each
/// token's log starts with the first change after the step; its audit key is made at
/// the first checkpoint, which needs a login.
fn audit_log(_: &dyn KvBackend, _: &mut Batch) -> Result<()> {
    Ok(())
}

/// What to do with a schema-1 store.
pub const SO_PIN_NEEDED: &str = "schema 2 binds every object header to its token's master \
    key, which only a PIN opens: upgrade the store once with `ferrohsm migrate run --store DIR \
    --so-pin-file FILE` (see migrations/0002-header-bindings.md)";

/// One step that would run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PendingStep {
    pub from: u32,
    pub to: u32,
    pub title: &'static str,
}

/// A store's schema and what this build would do with it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The store's schema version.
    pub found: u32,
    /// The version this build writes.
    pub current: u32,
    /// The steps from `found` to `current`, in order (empty when up to date).
    pub pending: Vec<PendingStep>,
}

/// The schema version a store records (`None`: no store has been created here yet).
pub fn stored_version(kv: &dyn KvBackend) -> Result<Option<u32>> {
    kv.get(Cf::Meta, keys::meta::SCHEMA_VERSION)?
        .map(|v| {
            v.as_slice()
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::corruption("meta/schema_version", "not 4 bytes"))
        })
        .transpose()
}

/// Where a store stands: `SchemaTooNew` when it is newer than this build, `Migration`
/// when this build has no step for a version on the way, `NotAStore` when there is no
/// store.
pub fn status(kv: &dyn KvBackend) -> Result<Status> {
    let found = stored_version(kv)?.ok_or(StoreError::NotAStore)?;
    if found > CURRENT {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: CURRENT,
        });
    }
    Ok(Status {
        found,
        current: CURRENT,
        pending: plan(found, CURRENT, STEPS)?,
    })
}

/// Applies every step from `found` up to [`CURRENT`].
pub fn run(kv: &dyn KvBackend, found: u32) -> Result<()> {
    run_steps(kv, found, CURRENT, STEPS)
}

/// The steps from `found` to `target`, or the first version with no step.
fn plan(found: u32, target: u32, steps: &[Step]) -> Result<Vec<PendingStep>> {
    (found..target)
        .map(|v| {
            steps
                .iter()
                .find(|s| s.from == v)
                .map(|s| PendingStep {
                    from: v,
                    to: v + 1,
                    title: s.title,
                })
                .ok_or_else(|| StoreError::Migration {
                    from: v,
                    to: v + 1,
                    reason: "no migration step for this version in this build".into(),
                })
        })
        .collect()
}

pub(crate) fn run_steps(kv: &dyn KvBackend, found: u32, target: u32, steps: &[Step]) -> Result<()> {
    plan(found, target, steps)?;
    let mut v = found;
    while v < target {
        let step = steps
            .iter()
            .find(|s| s.from == v)
            .ok_or_else(|| StoreError::corruption("migrations", "the plan lost a step"))?;
        let mut b = Batch::new();
        (step.apply)(kv, &mut b).map_err(|e| StoreError::Migration {
            from: v,
            to: v + 1,
            reason: format!("{}: {e}", step.title),
        })?;
        b.put(
            Cf::Meta,
            keys::meta::SCHEMA_VERSION.to_vec(),
            (v + 1).to_be_bytes().to_vec(),
        );
        kv.write(b)?;
        tracing::info!(from = v, to = v + 1, step = step.title, "store migrated");
        v += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemBackend;

    fn mark(kv: &dyn KvBackend, b: &mut Batch) -> Result<()> {
        let n = kv.get(Cf::Meta, b"\x00steps")?.map(|v| v[0]).unwrap_or(0);
        b.put(Cf::Meta, b"\x00steps".to_vec(), vec![n + 1]);
        Ok(())
    }

    #[test]
    fn steps_run_in_order_and_record_each_version() {
        let kv = MemBackend::new();
        let steps = [
            Step {
                from: 1,
                title: "one",
                apply: mark,
            },
            Step {
                from: 2,
                title: "two",
                apply: mark,
            },
        ];
        run_steps(&kv, 1, 3, &steps).unwrap();
        assert_eq!(kv.get(Cf::Meta, b"\x00steps").unwrap(), Some(vec![2]));
        assert_eq!(
            kv.get(Cf::Meta, keys::meta::SCHEMA_VERSION).unwrap(),
            Some(3u32.to_be_bytes().to_vec())
        );
    }

    /// A later gap stops the migration before its first step: nothing half-done.
    #[test]
    fn a_later_gap_changes_nothing() {
        let kv = MemBackend::new();
        let steps = [Step {
            from: 1,
            title: "one",
            apply: mark,
        }];
        let e = run_steps(&kv, 1, 3, &steps).unwrap_err();
        assert!(
            matches!(e, StoreError::Migration { from: 2, to: 3, .. }),
            "{e}"
        );
        assert_eq!(kv.get(Cf::Meta, b"\x00steps").unwrap(), None);
        assert_eq!(
            plan(1, 2, &steps).unwrap(),
            vec![PendingStep {
                from: 1,
                to: 2,
                title: "one"
            }]
        );
        assert_eq!(plan(3, 3, &steps).unwrap(), vec![]);
    }

    #[test]
    fn a_gap_in_the_steps_is_an_error_not_a_skip() {
        let kv = MemBackend::new();
        let steps = [Step {
            from: 2,
            title: "two",
            apply: mark,
        }];
        let e = run_steps(&kv, 1, 3, &steps).unwrap_err();
        assert!(
            matches!(e, StoreError::Migration { from: 1, to: 2, .. }),
            "{e}"
        );
        assert_eq!(kv.get(Cf::Meta, b"\x00steps").unwrap(), None);
    }

    #[test]
    fn every_step_has_a_design_note_in_migrations_dir() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let notes: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".md") && n.as_bytes()[0].is_ascii_digit())
            .collect();
        // 0001 describes the initial layout; step `from: n` is described by note n+1.
        assert!(
            notes.iter().any(|n| n.starts_with("0001-")),
            "migrations/0001-*.md is missing"
        );
        for s in STEPS {
            let want = format!("{:04}-", s.from + 1);
            assert!(
                notes.iter().any(|n| n.starts_with(&want)),
                "no migrations/{want}*.md for step {}",
                s.title
            );
        }
        assert_eq!(
            notes.len(),
            STEPS.len() + 1,
            "a note in migrations/ has no step: {notes:?}"
        );
    }
}
