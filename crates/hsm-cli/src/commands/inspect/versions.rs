//! `ferrohsm inspect versions OBJECT`: an object's history, oldest first. Version records
//! are sealed under the token's public-record key, so no PIN is needed, even for private
//! objects: a history holds times and causes, never attributes. An object that is a
//! version of a key with a lifecycle also shows that version's state (ring records are
//! sealed under the same key; with a PIN their binding is checked too).

use super::{Access, render};
use crate::exit::CliResult;
use crate::output::Output;
use hsm_core::lifecycle::VersionState;
use hsm_core::store::{Store, VersionCause};
use hsm_core::types::ObjectId;
use serde::Serialize;

#[derive(clap::Args)]
pub(super) struct VersionsArgs {
    /// Object id (as `inspect objects` lists it).
    object: u64,
    #[command(flatten)]
    access: Access,
}

#[derive(Serialize)]
struct History {
    token: u32,
    object: u64,
    versions: Vec<Version>,
    /// The key version this object holds, when its key has a lifecycle.
    key_version: Option<KeyVersion>,
}

#[derive(Serialize)]
struct KeyVersion {
    key: u64,
    version: u32,
    /// `enabled`, `disabled`, `destroy-scheduled` or `destroyed`.
    state: &'static str,
    primary: bool,
    /// Unix seconds of a scheduled destruction.
    destroy_at: Option<u64>,
}

fn key_version(
    store: &Store,
    keys: &hsm_core::store::TokenKeys,
    id: ObjectId,
) -> CliResult<Option<KeyVersion>> {
    let now = hsm_core::lifecycle::now(&Default::default());
    Ok(store.rings(keys)?.into_iter().find_map(|r| {
        let v = r.version_of(id)?;
        let state = r.state_at(v.number, now).unwrap_or(v.state);
        Some(KeyVersion {
            key: r.key.0,
            version: v.number,
            state: state.name(),
            primary: r.primary == Some(v.number),
            destroy_at: match state {
                VersionState::DestroyScheduled { deadline } => Some(deadline),
                _ => None,
            },
        })
    }))
}

#[derive(Serialize)]
struct Version {
    version: u32,
    /// Unix seconds.
    created_at: u64,
    /// RFC 3339, UTC.
    created: String,
    parent: Option<u32>,
    /// As `schema/format.md` spells it: `Created`, `AttributesChanged`, `{"RolledBack": {"from": N}}`.
    cause: VersionCause,
    current: bool,
}

pub(super) fn run(store: &Store, a: VersionsArgs, out: &Output) -> CliResult {
    let token = a.access.one_token(store)?;
    let keys = a.access.keys(store, token.id)?;
    let id = ObjectId(a.object);
    let versions: Vec<Version> = store
        .versions(&keys, id)?
        .into_iter()
        .map(|v| Version {
            version: v.version.0,
            created_at: v.created_at,
            created: render::rfc3339(v.created_at),
            parent: v.parent.map(|p| p.0),
            cause: v.cause,
            current: v.current,
        })
        .collect();
    let rows = versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.created.clone(),
                v.parent.map_or_else(|| "-".into(), |p| p.to_string()),
                render::cause(&v.cause),
                if v.current { "yes" } else { "" }.into(),
            ]
        })
        .collect();
    let kv = key_version(store, &keys, id)?;
    let line = kv.as_ref().map(|k| {
        format!(
            "object {} is version {} of key {}: {}{}{}",
            id.0,
            k.version,
            k.key,
            k.state,
            if k.primary { ", primary" } else { "" },
            k.destroy_at
                .map(|d| format!(", destroyed at {}", render::rfc3339(d)))
                .unwrap_or_default()
        )
    });
    out.emit(
        &History {
            token: token.id.0,
            object: id.0,
            versions,
            key_version: kv,
        },
        &["VERSION", "CREATED", "PARENT", "CAUSE", "CURRENT"],
        rows,
    );
    if let (false, Some(l)) = (out.json, line) {
        println!("{l}");
    }
    Ok(())
}
