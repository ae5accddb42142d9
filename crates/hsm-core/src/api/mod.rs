//! The token as one application sees it: [`Token`], the calls the PKCS#11 module makes,
//! written once in `token_calls!` and from there
//!
//! - the trait itself, with the argument forms of [`Param`];
//! - [`Local`], the trait over an in-process [`Hsm`] (the embedded module, and each
//!   client connection inside the server);
//! - [`Request`], one call as data, which the server decodes and [`Request::serve`]s;
//! - [`Remote`], the trait over any [`Transport`] that carries a request and brings its
//!   answer back (the module's client of `ferrohsm-server`).
//!
//! So a call added to the list is carried by the protocol with every parameter it has:
//! nothing can be forgotten on one side.

mod wire;

pub use wire::{Bytes, Param, SealedMessage};

use crate::error::{Error, Result};
use crate::lifecycle::{KeyAnswer, KeyCommand};
use crate::mechanism::{Mechanism, MechanismInfo};
use crate::ops::{GcmMessage, OpKind};
use crate::policy::quorum::{QuorumCommand, QuorumView};
use crate::runtime::{Hsm, LoginKind, SessionInfo, SlotInfo, TokenInfo};
use hsm_types::quorum::{QuorumState, Standing, Verdict};
use hsm_types::{AttributeSet, MechanismType, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Carries one request to a token elsewhere and brings back its answer.
pub trait Transport: Send + Sync {
    fn call<T: DeserializeOwned>(&self, request: &Request) -> Result<T>;
}

/// Turns the answer of a served request into what the server sends back.
pub trait Reply {
    type Output;
    fn reply<T: Serialize>(self, answer: &Result<T>) -> Self::Output;
}

macro_rules! token_calls {
    (@calls $(
        $(#[$doc:meta])*
        fn $name:ident $([$app:ident])? ($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $(= $core:ident)?;
    )*) => {
        /// One application's view of the token: every call the PKCS#11 module makes. Its
        /// errors are the core's, whichever side of a socket they happened on.
        pub trait Token: Send + Sync {
            $(
                $(#[$doc])*
                fn $name(&self, $($arg: <$ty as Param>::Arg<'_>),*) -> Result<$ret>;
            )*

            /// Single-part encryption straight into the caller's buffer: the length
            /// written, or `BufferTooSmall(needed)` with the operation still active. In
            /// process, AES-GCM seals in that buffer ([`Hsm::encrypt_into`]); across a
            /// socket the answer of [`Token::encrypt_within`] is copied in.
            fn encrypt_into(&self, session: u64, data: &[u8], out: &mut [u8]) -> Result<usize> {
                copy_out(self.encrypt_within(session, data, out.len())?, out)
            }

            /// Single-part decryption into the caller's buffer, as [`Token::encrypt_into`].
            fn decrypt_into(&self, session: u64, data: &[u8], out: &mut [u8]) -> Result<usize> {
                copy_out(self.decrypt_within(session, data, out.len())?, out)
            }
        }

        /// One [`Token`] call as data: what a client sends the server.
        #[derive(Serialize, Deserialize)]
        #[allow(non_camel_case_types)]
        pub enum Request {
            $( $name { $($arg: $ty),* }, )*
        }

        impl Request {
            /// Runs the call on `token` and hands its answer to `out`.
            pub fn serve<R: Reply>(self, token: &dyn Token, out: R) -> R::Output {
                match self {
                    $( Request::$name { $($arg),* } => out.reply(&token.$name($($arg.arg()),*)), )*
                }
            }

            /// The call's name, for logs and metrics.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Request::$name { .. } => stringify!($name), )*
                }
            }
        }

        impl Token for Local {
            $(
                fn $name(&self, $($arg: <$ty as Param>::Arg<'_>),*) -> Result<$ret> {
                    token_calls!(@owned self $($arg)*);
                    token_calls!(@call self.hsm, $name $($core)?, ($(self.$app,)? $($arg),*))
                        .map(Into::into)
                }
            )*

            fn encrypt_into(&self, session: u64, data: &[u8], out: &mut [u8]) -> Result<usize> {
                self.owns(session)?;
                self.hsm.encrypt_into(session, data, out)
            }

            fn decrypt_into(&self, session: u64, data: &[u8], out: &mut [u8]) -> Result<usize> {
                self.owns(session)?;
                self.hsm.decrypt_into(session, data, out)
            }
        }

        impl<X: Transport> Token for Remote<X> {
            $(
                fn $name(&self, $($arg: <$ty as Param>::Arg<'_>),*) -> Result<$ret> {
                    self.0.call(&Request::$name { $($arg: <$ty as Param>::own($arg)),* })
                }
            )*
        }
    };
    (@owned $s:ident) => {};
    (@owned $s:ident $first:ident $($rest:ident)*) => { token_calls!(@owned_is $s $first $first) };
    (@owned_is $s:ident session $x:ident) => { $s.owns($x)? };
    (@owned_is $s:ident $other:ident $x:ident) => {};
    (@call $hsm:expr, $name:ident, ($($a:expr),* $(,)?)) => { $hsm.$name($($a),*) };
    (@call $hsm:expr, $name:ident $core:ident, ($($a:expr),* $(,)?)) => { $hsm.$core($($a),*) };
    ($($list:tt)*) => {
        /// The call list as written, the source of the protocol's call fingerprint: a
        /// client and a server built from different lists refuse each other at the
        /// handshake instead of decoding one call as another.
        pub const CALL_LIST: &str = stringify!($($list)*);
        /// The fingerprint of [`CALL_LIST`] that a client's hello carries.
        pub const CALLS: u64 = hsm_proto::fingerprint(CALL_LIST);
        token_calls!(@calls $($list)*);
    };
}

/// The token in this process: an [`Hsm`] and the application this handle is. Dropping it
/// ends the application (its sessions close, its logins end).
pub struct Local {
    hsm: Arc<Hsm>,
    app: u64,
}

impl Local {
    pub fn new(hsm: Arc<Hsm>) -> Local {
        let app = hsm.new_app();
        Local { hsm, app }
    }

    /// The application id.
    pub fn app(&self) -> u64 {
        self.app
    }

    /// A session handle of another application is no handle of this one: one client of
    /// the server cannot reach into another's sessions, their login or their objects.
    fn owns(&self, session: u64) -> Result<()> {
        match self.hsm.session_app(session) {
            Some(app) if app == self.app => Ok(()),
            Some(_) => Err(Error::SessionHandleInvalid),
            None => Ok(()), // the core answers for handles that are no session at all
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.hsm.end_app(self.app);
    }
}

/// A token reached through a [`Transport`].
pub struct Remote<X>(pub X);

/// An answer copied into the caller's buffer (the `*_into` calls' general path).
fn copy_out(answer: Bytes, out: &mut [u8]) -> Result<usize> {
    let n = answer.len();
    out.get_mut(..n)
        .ok_or(Error::BufferTooSmall(n))?
        .copy_from_slice(&answer);
    Ok(n)
}

token_calls! {
    fn slot_list(present: bool) -> Vec<u64>;
    fn slot_info(slot: u64) -> SlotInfo;
    fn token_info(slot: u64) -> TokenInfo;
    fn mechanism_list(slot: u64) -> Vec<MechanismType>;
    fn mechanism_info(slot: u64, mechanism: MechanismType) -> MechanismInfo;
    fn init_token(slot: u64, so_pin: SecretString, label: String) -> ();
    fn init_pin(session: u64, pin: SecretString) -> ();
    fn set_pin(session: u64, old: SecretString, new: SecretString) -> ();

    fn open_session[app](slot: u64, rw: bool) -> u64;
    fn close_session(session: u64) -> ();
    fn close_all_sessions[app](slot: u64) -> ();
    fn session_info(session: u64) -> SessionInfo;
    fn login(session: u64, kind: LoginKind, pin: SecretString) -> ();
    fn logout(session: u64) -> ();
    fn cancel(session: u64, kinds: Vec<OpKind>) -> ();
    fn has_operation(session: u64, kind: OpKind) -> bool;

    fn create_object(session: u64, template: AttributeSet) -> u64;
    fn copy_object(session: u64, object: u64, template: AttributeSet) -> u64;
    fn destroy_object(session: u64, object: u64) -> ();
    fn object_size(session: u64, object: u64) -> usize;
    fn object_attributes(session: u64, object: u64) -> AttributeSet;
    fn set_attributes(session: u64, object: u64, template: AttributeSet) -> ();
    fn find_init(session: u64, template: AttributeSet) -> ();
    fn find_next(session: u64, max: usize) -> Vec<u64>;
    fn find_final(session: u64) -> ();

    fn encrypt_init(session: u64, mechanism: Mechanism, key: u64) -> ();
    fn encrypt_len(session: u64, len: usize) -> usize;
    fn encrypt(session: u64, data: Bytes) -> Bytes;
    /// `encrypt` when the output fits in `cap` bytes, else `BufferTooSmall(needed)`.
    fn encrypt_within(session: u64, data: Bytes, cap: usize) -> Bytes;
    fn encrypt_update(session: u64, data: Bytes) -> Bytes;
    fn encrypt_final(session: u64) -> Bytes;
    fn decrypt_init(session: u64, mechanism: Mechanism, key: u64) -> ();
    fn decrypt_len(session: u64, len: usize) -> usize;
    fn decrypt(session: u64, data: Bytes) -> Bytes;
    fn decrypt_within(session: u64, data: Bytes, cap: usize) -> Bytes;
    fn decrypt_update(session: u64, data: Bytes) -> Bytes;
    fn decrypt_final(session: u64) -> Bytes;
    fn update_len(session: u64, encrypt: bool, len: usize) -> usize;

    fn message_crypt_init(session: u64, mechanism: MechanismType, key: u64, encrypt: bool) -> ();
    fn encrypt_message(session: u64, params: GcmMessage, aad: Bytes, data: Bytes) -> SealedMessage = seal_message;
    fn decrypt_message(session: u64, params: GcmMessage, tag: Bytes, aad: Bytes, data: Bytes) -> Bytes;
    fn message_crypt_final(session: u64, encrypt: bool) -> ();

    fn digest_init(session: u64, mechanism: Mechanism) -> ();
    fn digest_len(session: u64) -> usize;
    fn digest(session: u64, data: Bytes) -> Bytes;
    fn digest_within(session: u64, data: Bytes, cap: usize) -> Bytes;
    fn digest_update(session: u64, data: Bytes) -> ();
    fn digest_key(session: u64, key: u64) -> ();
    fn digest_final(session: u64) -> Bytes;

    fn sign_init(session: u64, mechanism: Mechanism, key: u64) -> ();
    fn sign_len(session: u64) -> usize;
    fn sign(session: u64, data: Bytes) -> Bytes;
    fn sign_within(session: u64, data: Bytes, cap: usize) -> Bytes;
    fn sign_update(session: u64, data: Bytes) -> ();
    fn sign_final(session: u64) -> Bytes;
    fn verify_init(session: u64, mechanism: Mechanism, key: u64) -> ();
    fn verify(session: u64, data: Bytes, signature: Bytes) -> ();
    fn verify_update(session: u64, data: Bytes) -> ();
    fn verify_final(session: u64, signature: Bytes) -> ();

    fn generate_key(session: u64, mechanism: Mechanism, template: AttributeSet) -> u64;
    fn generate_key_pair(session: u64, mechanism: Mechanism, public: AttributeSet, private: AttributeSet) -> (u64, u64);
    fn wrap_key(session: u64, mechanism: Mechanism, wrapping: u64, key: u64) -> Bytes;
    fn unwrap_key(session: u64, mechanism: Mechanism, unwrapping: u64, wrapped: Bytes, template: AttributeSet) -> u64;
    fn derive_key(session: u64, mechanism: Mechanism, base: u64, template: AttributeSet) -> u64;
    fn derive_keys(session: u64, mechanism: Mechanism, base: u64, template: AttributeSet) -> Vec<u64>;
    fn seed_random(session: u64) -> ();
    fn generate_random(session: u64, len: usize) -> Bytes = random;
    /// The key lifecycle (`ferrohsm key` through the server): the user logged in on a
    /// read-write session.
    fn key_command(session: u64, command: KeyCommand) -> KeyAnswer;
    /// Dual control through the server (`ferrohsm quorum`, `ferrohsm approvals`): the
    /// state and requests (no login), an approver's signed verdict (no login: the
    /// signature is the credential), the SO's changes of approvers and rules.
    fn quorum_view(session: u64) -> QuorumView;
    fn submit_verdict(session: u64, verdict: Verdict) -> Standing;
    fn quorum_command(session: u64, command: QuorumCommand) -> QuorumState;
}
