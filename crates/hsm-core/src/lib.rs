//! FerroHSM core: what the PKCS#11 module, the CLI and (later) the server share above the
//! store. `docs/architecture.md` is the map; in short:
//!
//! - [`runtime`]: the [`Hsm`] type — slots, login, sessions, and `Hsm::run`, the one
//!   entry every operation goes through;
//! - [`objects`]: objects, their attribute rules, search, key material, the key cache and
//!   the one key-usage check;
//! - [`mechanism`]: the mechanism table and parsed mechanisms with typed parameters;
//! - `ops`: sign, cipher, message, keygen, wrap, derive, digest and random;
//! - [`admin`]: token and PIN administration, shared with the CLI;
//! - seams with today's behaviour as the default: [`provider`] (crypto), [`hardware`]
//!   (adapters), [`policy`], [`audit`], [`metrics`], [`lifecycle`];
//! - [`crypto`]: the algorithms over aws-lc-rs; [`config`]; [`selftest`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod audit;
pub mod config;
pub mod crypto;
mod error;
pub mod hardware;
pub mod lifecycle;
pub mod mechanism;
pub mod metrics;
pub mod objects;
pub mod ops;
pub mod policy;
pub mod provider;
pub mod runtime;
pub mod selftest;

pub use api::{Local, Token};
pub use error::{Error, Result};
pub use mechanism::Mechanism;
pub use ops::{Action, GcmMessage, OpKind};
pub use runtime::{Hooks, Hsm, LoginKind};

pub use hsm_store as store;
pub use hsm_types as types;
