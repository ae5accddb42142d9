//! FerroHSM vocabulary: identifiers, PKCS#11 constants as open newtypes, typed attribute
//! sets with one canonical encoding, and the attribute-policy table.
//!
//! This crate does no I/O. Integers are fixed width (`u64`/`u32`); `CK_ULONG` only exists
//! at the FFI edge in `hsm-pkcs11`.
#![forbid(unsafe_code)]

mod attr;
pub mod audit;
mod consts;
mod ids;
pub mod lifecycle;
pub mod policy;
pub mod quorum;
mod secret;

pub use attr::{AttrValue, AttributeSet, CodecError};
pub use consts::{AttributeType, KeyType, MechanismType, ObjectClass};
pub use ids::{ObjectId, TokenId, UserKind, VersionNo};
pub use secret::{SecretBytes, SecretString};
