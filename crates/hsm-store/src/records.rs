//! Record layouts (MessagePack with named fields, so fields can be added). Normative
//! description: `schema/format.md`.

use crate::crypto::KdfParams;
use serde::{Deserialize, Serialize};

/// Per-token record in `meta`. Readable without a PIN: it holds nothing secret in clear
/// except the public-record key, which by design protects only integrity and placement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    pub label: String,
    pub serial: String,
    pub created_at: u64,
    pub kdf: KdfParams,
    pub pin_policy: PinPolicy,
    /// Random key that seals headers, version records and public objects.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    pub so: PinSlot,
    pub user: Option<PinSlot>,
    /// Bumped by every re-initialisation, so records of a wiped token never open again.
    pub generation: u32,
}

/// The master key wrapped under one PIN's Argon2id key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PinSlot {
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub wrapped_master: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinPolicy {
    pub min_len: u32,
    pub max_len: u32,
    /// Consecutive failures after which the PIN is locked.
    pub max_failures: u32,
}

impl Default for PinPolicy {
    fn default() -> Self {
        PinPolicy {
            min_len: 4,
            max_len: 64,
            max_failures: 10,
        }
    }
}

/// `objects` record, sealed under the token's header key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectHeader {
    pub private: bool,
    pub current: u32,
    pub created_at: u64,
    /// The per-object key, wrapped under the master key (private objects) or the public
    /// wrapping key (public objects).
    #[serde(with = "serde_bytes")]
    pub wrapped_object_key: Vec<u8>,
    /// For public objects holding key material: the key sealing that material, wrapped
    /// under the master key.
    #[serde(with = "serde_bytes")]
    pub wrapped_secret_key: Option<Vec<u8>>,
    /// Schema 2: a MAC under a key derived from the token's master key over this header
    /// (without this field) and the digest of the current version's attribute record. It
    /// ties the current-version pointer and that record to the token: a header put back
    /// from earlier, or one forged with the public header key, no longer verifies.
    /// Present whenever the header was written by a caller holding the master key;
    /// required for private objects, objects holding key material and trusted objects.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub binding: Option<Vec<u8>>,
}

/// Why a version exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionCause {
    Created,
    AttributesChanged,
    RolledBack { from: u32 },
}

/// `versions` record, sealed under the token's header key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionRecord {
    pub created_at: u64,
    pub parent: Option<u32>,
    pub cause: VersionCause,
}

/// The plaintext of an `attributes` record.
#[derive(Clone, Serialize, Deserialize)]
pub struct AttributesBody {
    /// Canonical encoding of the attribute set (key material excluded for public objects).
    #[serde(with = "serde_bytes")]
    pub attrs: Vec<u8>,
    /// Key material of a public object, sealed under its secret key.
    #[serde(with = "serde_bytes")]
    pub secrets: Option<Vec<u8>>,
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Room for a typical record up front: growing from empty reallocates several times.
    let mut out = Vec::with_capacity(256);
    rmp_serde::encode::write_named(&mut out, v).expect("encoding an in-memory record cannot fail");
    out
}

pub fn decode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    location: impl FnOnce() -> String,
) -> crate::Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        crate::StoreError::corruption(location(), format!("record does not decode: {e}"))
    })
}
