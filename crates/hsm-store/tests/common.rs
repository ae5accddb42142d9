//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use hsm_store::backend::KvBackend;
use hsm_store::backend::mem::MemBackend;
use hsm_store::backend::rocks::{OpenMode, RocksBackend};
use hsm_store::{KdfParams, PinPolicy, Store, TokenSpec};
use hsm_types::{AttrValue, AttributeSet, AttributeType as A, ObjectClass, SecretString, TokenId};
use std::path::Path;

pub const SO_PIN: &str = "so-pin-1234";
pub const USER_PIN: &str = "user-pin-5678";

/// Which backend a conformance test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Memory,
    Rocks,
}

/// A backend of `kind`, with the temporary directory that keeps a RocksDB one alive.
pub fn backend(kind: Kind) -> (Box<dyn KvBackend>, Option<tempfile::TempDir>) {
    match kind {
        Kind::Memory => (Box::new(MemBackend::new()), None),
        Kind::Rocks => {
            let dir = tempfile::tempdir().unwrap();
            let kv = RocksBackend::open(dir.path(), OpenMode::ReadWrite).unwrap();
            (Box::new(kv), Some(dir))
        }
    }
}

pub fn store(kind: Kind) -> (Store, Option<tempfile::TempDir>) {
    let (kv, dir) = backend(kind);
    (Store::open(kv).unwrap(), dir)
}

pub fn spec(label: &str) -> TokenSpec {
    TokenSpec {
        label: label.into(),
        so_pin: SecretString::from(SO_PIN),
        user_pin: Some(SecretString::from(USER_PIN)),
        kdf: KdfParams::INSECURE_FAST,
        pin_policy: PinPolicy {
            min_len: 4,
            max_len: 64,
            max_failures: 5,
        },
    }
}

pub fn new_token(store: &Store) -> TokenId {
    store.init_token(spec("test token")).unwrap()
}

pub fn pin(s: &str) -> SecretString {
    SecretString::from(s)
}

pub fn bytes(b: &[u8]) -> AttrValue {
    AttrValue::Bytes(b.to_vec())
}

pub fn secret_key(label: &[u8], id: &[u8], value: &[u8], private: bool) -> AttributeSet {
    AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
        .with(A::KEY_TYPE, AttrValue::Ulong(hsm_types::KeyType::AES.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(A::PRIVATE, AttrValue::Bool(private))
        .with(A::LABEL, bytes(label))
        .with(A::ID, bytes(id))
        .with(A::VALUE, bytes(value))
        .with(A::SENSITIVE, AttrValue::Bool(true))
        .with(
            A::ALLOWED_MECHANISMS,
            AttrValue::Mechanisms(vec![hsm_types::MechanismType::AES_GCM.0]),
        )
}

pub fn data_object(label: &[u8], value: &[u8], private: bool) -> AttributeSet {
    AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::DATA.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(A::PRIVATE, AttrValue::Bool(private))
        .with(A::LABEL, bytes(label))
        .with(A::VALUE, bytes(value))
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Files under `dir` that contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    all_files(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|p| p.display().to_string())
        .collect()
}
