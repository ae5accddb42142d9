//! FerroHSM core: what the PKCS#11 module, the CLI and (later) the server share above the
//! store: configuration, the attribute model, the token runtime (slots, sessions, login,
//! objects) and the crypto provider.
#![forbid(unsafe_code)]

pub mod attrs;
pub mod config;
pub mod crypto;
mod error;
pub mod hsm;
pub mod mechanisms;
pub mod selftest;

pub use error::{Error, Result};

pub use hsm_store as store;
pub use hsm_types as types;
