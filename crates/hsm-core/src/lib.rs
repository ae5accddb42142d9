//! FerroHSM core: what the PKCS#11 module, the CLI and (later) the server share above the
//! store. At this stage: configuration. Tokens, sessions and mechanisms follow.
#![forbid(unsafe_code)]

pub mod config;

pub use hsm_store as store;
pub use hsm_types as types;
