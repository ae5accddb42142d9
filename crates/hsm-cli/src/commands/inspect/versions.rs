//! `ferrohsm inspect versions OBJECT`: an object's history, oldest first. Version records
//! are sealed under the token's public-record key, so no PIN is needed, even for private
//! objects: a history holds times and causes, never attributes.

use super::{Access, render};
use crate::exit::CliResult;
use crate::output::Output;
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
    out.emit(
        &History {
            token: token.id.0,
            object: id.0,
            versions,
        },
        &["VERSION", "CREATED", "PARENT", "CAUSE", "CURRENT"],
        rows,
    );
    Ok(())
}
