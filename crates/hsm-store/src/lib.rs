//! FerroHSM's persistent object store. The only crate that names RocksDB.
//!
//! Layers, bottom up: [`backend`] (raw key-value families, RocksDB or memory), [`keys`]
//! (every key layout and index value), [`crypto`] (sealing), `store` (tokens, PINs,
//! objects, versions, indexes; one file per area). `schema/` at the repository root is
//! the normative description.
#![forbid(unsafe_code)]

pub mod archive;
pub mod audit;
pub mod backend;
pub mod cf;
pub mod crypto;
mod error;
mod inspect;
pub mod keys;
pub mod migrate;
mod private_fs;
pub mod records;
mod store;

pub use crypto::KdfParams;

/// The user this process runs as (the owner every store file must have).
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

pub use error::{Result, StoreError};
pub use inspect::{CheckReport, Problem, TokenCounts};
pub use records::{PinPolicy, VersionCause};
pub use store::{
    AuditKeyInfo, AuditStats, AuditVerification, LoginStats, Query, RingWrites, Store,
    StoredObject, TokenInfo, TokenKeys, TokenSpec, VersionInfo,
};
