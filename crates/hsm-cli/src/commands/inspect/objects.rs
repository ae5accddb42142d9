//! `ferrohsm inspect objects`: a token's objects, filtered through the store's indexes.

use super::{Access, needs_pin_hint, render};
use crate::exit::CliResult;
use crate::output::Output;
use hsm_core::store::{Query, Store, TokenKeys};
use hsm_core::types::{KeyType, MechanismType, ObjectClass, ObjectId};
use serde::Serialize;

#[derive(clap::Args)]
pub(super) struct ObjectsArgs {
    #[command(flatten)]
    access: Access,
    /// Object class: a name (private_key, CKO_SECRET_KEY) or a number.
    #[arg(long, value_name = "CLASS", value_parser = parse_class)]
    class: Option<ObjectClass>,
    /// Key type: a name (aes, CKK_EC) or a number.
    #[arg(long, value_name = "TYPE", value_parser = parse_key_type)]
    key_type: Option<KeyType>,
    /// Exact label (CKA_LABEL).
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    /// Exact CKA_ID, in hex.
    #[arg(long, value_name = "HEX", value_parser = parse_id)]
    id: Option<HexId>,
    /// An allowed mechanism (CKA_ALLOWED_MECHANISMS): a name (CKM_ECDSA, aes_gcm) or a number.
    #[arg(long, value_name = "MECHANISM", value_parser = parse_mechanism)]
    mechanism: Option<MechanismType>,
}

/// A CKA_ID from the command line (a newtype, so clap takes it as one value).
#[derive(Clone)]
struct HexId(Vec<u8>);

fn parse_id(s: &str) -> Result<HexId, String> {
    render::parse_hex(s).map(HexId)
}
fn parse_class(s: &str) -> Result<ObjectClass, String> {
    ObjectClass::parse(s).ok_or_else(|| {
        format!("unknown object class '{s}': use a name such as private_key or CKO_SECRET_KEY, or a number")
    })
}
fn parse_key_type(s: &str) -> Result<KeyType, String> {
    KeyType::parse(s).ok_or_else(|| {
        format!("unknown key type '{s}': use a name such as aes or CKK_EC, or a number")
    })
}
fn parse_mechanism(s: &str) -> Result<MechanismType, String> {
    MechanismType::parse(s).ok_or_else(|| {
        format!("unknown mechanism '{s}': use a name such as ecdsa or CKM_AES_GCM, or a number")
    })
}

#[derive(Serialize)]
struct Listing {
    token: u32,
    /// Whether private objects were searched too.
    with_user_pin: bool,
    objects: Vec<Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct Row {
    object: u64,
    class: Option<String>,
    key_type: Option<String>,
    label: Option<String>,
    /// CKA_ID in hex.
    id: Option<String>,
    private: Option<bool>,
    version: Option<u32>,
    /// Why the object's record could not be read (run `inspect check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Row {
    /// One object's row, or the reason its record could not be read.
    fn of(store: &Store, keys: &TokenKeys, id: ObjectId) -> Row {
        match store.read_object(keys, id) {
            Ok(o) => Row {
                object: id.0,
                class: o.attrs.class().map(render::class_name),
                key_type: o.attrs.key_type().map(render::key_type_name),
                label: o.attrs.label().map(render::text_or_hex),
                id: o.attrs.id().map(render::hex),
                private: Some(o.private),
                version: Some(o.version.0),
                error: None,
            },
            Err(e) => Row {
                object: id.0,
                class: None,
                key_type: None,
                label: None,
                id: None,
                private: None,
                version: None,
                error: Some(e.to_string()),
            },
        }
    }

    /// The row as table cells.
    fn cells(&self) -> Vec<String> {
        let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        vec![
            self.object.to_string(),
            self.error
                .as_ref()
                .map_or_else(|| s(&self.class), |_| "<unreadable>".into()),
            s(&self.key_type),
            s(&self.label),
            s(&self.id),
            self.private
                .map_or("-", |p| if p { "yes" } else { "no" })
                .into(),
            self.version.map_or_else(|| "-".into(), |v| v.to_string()),
        ]
    }
}

pub(super) fn run(store: &Store, a: ObjectsArgs, out: &Output) -> CliResult {
    let token = a.access.one_token(store)?;
    let keys = a.access.keys(store, token.id)?;
    let q = Query {
        class: a.class,
        label: a.label.map(String::into_bytes),
        id: a.id.map(|h| h.0),
        key_type: a.key_type,
        mechanism: a.mechanism,
    };
    let rows = store
        .find(&keys, &q)?
        .into_iter()
        .map(|id| Row::of(store, &keys, id))
        .collect::<Vec<_>>();
    let with_user_pin = keys.logged_in().is_some();
    let note = if with_user_pin {
        None
    } else {
        let private = store.counts(&keys)?.private_objects;
        (private > 0).then(|| {
            format!(
                "only public objects are listed; token {} also holds {private} private objects ({})",
                token.id,
                needs_pin_hint()
            )
        })
    };
    let unreadable = rows.iter().filter(|r| r.error.is_some()).count();
    let table_rows = rows.iter().map(Row::cells).collect();
    let listing = Listing {
        token: token.id.0,
        with_user_pin,
        objects: rows,
        note,
    };
    out.emit(
        &listing,
        &[
            "OBJECT", "CLASS", "KEY TYPE", "LABEL", "ID", "PRIVATE", "VERSION",
        ],
        table_rows,
    );
    if !out.json
        && let Some(n) = &listing.note
    {
        println!("note: {n}");
    }
    if unreadable > 0 {
        eprintln!(
            "ferrohsm: {unreadable} objects could not be read; `ferrohsm inspect check` says why"
        );
    }
    Ok(())
}
