//! `ferrohsm inspect show OBJECT`: every attribute of one object. Key material is never
//! printed, whatever the flags: it shows as `<sensitive, N bytes>`.

use super::{Access, needs_pin_hint, render};
use crate::exit::{CliError, CliResult};
use crate::output::Output;
use hsm_core::store::Store;
use hsm_core::types::{ObjectId, VersionNo};
use serde::Serialize;

#[derive(clap::Args)]
pub(super) struct ShowArgs {
    /// Object id (as `inspect objects` lists it).
    object: u64,
    /// Show this retained version instead of the current one.
    #[arg(long, value_name = "N")]
    version: Option<u32>,
    #[command(flatten)]
    access: Access,
}

#[derive(Serialize)]
struct Shown {
    token: u32,
    object: u64,
    version: u32,
    private: bool,
    class: Option<String>,
    /// The object's key material is sealed apart and was not opened (no user PIN).
    secrets_withheld: bool,
    attributes: Vec<render::Shown>,
}

pub(super) fn run(store: &Store, a: ShowArgs, out: &Output) -> CliResult {
    let token = a.access.one_token(store)?;
    let id = ObjectId(a.object);
    let keys = a.access.keys(store, token.id)?;
    // The header says whether the object is private, and whether it exists at all.
    if store.is_private(&keys, id)? && keys.logged_in().is_none() {
        return Err(CliError::Usage(format!(
            "object {id} on token {} is private: showing it needs the user PIN ({})",
            token.id,
            needs_pin_hint()
        )));
    }
    let obj = match a.version {
        Some(v) => store.read_version(&keys, id, VersionNo(v))?,
        None => store.read_object(&keys, id)?,
    };
    let shown = Shown {
        token: token.id.0,
        object: id.0,
        version: obj.version.0,
        private: obj.private,
        class: obj.attrs.class().map(render::class_name),
        secrets_withheld: obj.secrets_withheld,
        attributes: render::attributes(&obj.attrs),
    };
    drop(obj);
    if !out.json {
        print!(
            "{}",
            render::pairs(&[
                ("token", shown.token.to_string()),
                ("object", shown.object.to_string()),
                ("version", shown.version.to_string()),
                ("private", if shown.private { "yes" } else { "no" }.into()),
            ])
        );
        println!();
    }
    let rows = shown
        .attributes
        .iter()
        .map(|s| vec![s.attribute.clone(), s.value.clone()])
        .collect();
    out.emit(&shown, &["ATTRIBUTE", "VALUE"], rows);
    if !out.json && shown.secrets_withheld {
        println!(
            "note: this object's key material is sealed apart and was not opened without the \
             user PIN (with it, its attributes are listed, their values never)"
        );
    }
    Ok(())
}
