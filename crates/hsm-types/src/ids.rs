use serde::{Deserialize, Serialize};
use std::fmt;

/// A token inside a store. Token ids are small and never reused within a store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(pub u32);

/// A token object. Allocated from a per-token counter; never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(pub u64);

/// A version of an object's attribute set, counting from 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionNo(pub u32);

macro_rules! display_id {
    ($($t:ident $prefix:literal),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    )*};
}
display_id!(TokenId "token#", ObjectId "object#", VersionNo "v");

/// Who a PIN belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum UserKind {
    /// The security officer (`CKU_SO`).
    So,
    /// The normal user (`CKU_USER`).
    User,
}

impl UserKind {
    /// One byte used in store keys; fixed by `schema/`.
    pub fn code(self) -> u8 {
        match self {
            UserKind::So => 0,
            UserKind::User => 1,
        }
    }
}
