//! The errors of the token layer, one per PKCS#11 return value they stand for. The FFI
//! crate maps each to its `CKR_*` in one exhaustive match.

use crate::crypto::CryptoError;
use hsm_store::StoreError;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Serializable, so the server can answer a client with the very error the core gave;
/// details written as literals stay borrowed (`Cow`), those from the wire are owned.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    #[error("bad arguments: {0}")]
    ArgumentsBad(Cow<'static, str>),
    #[error("slot id invalid")]
    SlotIdInvalid,
    #[error("token not present")]
    TokenNotPresent,
    #[error("token not recognised: {0}")]
    TokenNotRecognized(String),
    #[error("session handle invalid")]
    SessionHandleInvalid,
    #[error("object handle invalid")]
    ObjectHandleInvalid,
    #[error("key handle invalid")]
    KeyHandleInvalid,
    #[error("attribute type invalid")]
    AttributeTypeInvalid,
    #[error("attribute value invalid: {0}")]
    AttributeValueInvalid(String),
    #[error("attribute read-only: {0}")]
    AttributeReadOnly(String),
    #[error("attribute sensitive")]
    AttributeSensitive,
    #[error("template incomplete: {0}")]
    TemplateIncomplete(String),
    #[error("template inconsistent: {0}")]
    TemplateInconsistent(String),
    #[error("action prohibited: {0}")]
    ActionProhibited(Cow<'static, str>),
    /// The policy engine refused the call.
    #[error("refused by policy: {0}")]
    PolicyDenied(String),
    /// The policy engine wants approvals first.
    #[error("approval required: {0}")]
    ApprovalRequired(String),
    #[error("user not logged in")]
    UserNotLoggedIn,
    #[error("user already logged in")]
    UserAlreadyLoggedIn,
    #[error("another user already logged in")]
    UserAnotherAlreadyLoggedIn,
    #[error("user PIN not initialised")]
    UserPinNotInitialized,
    #[error("user type invalid")]
    UserTypeInvalid,
    #[error("too many users")]
    UserTooManyTypes,
    #[error("PIN incorrect")]
    PinIncorrect,
    #[error("PIN locked")]
    PinLocked,
    #[error("PIN length out of range")]
    PinLenRange,
    #[error("PIN invalid: {0}")]
    PinInvalid(Cow<'static, str>),
    #[error("session is read-only")]
    SessionReadOnly,
    #[error("a read-only session exists")]
    SessionReadOnlyExists,
    #[error("a read/write SO session exists")]
    SessionReadWriteSoExists,
    #[error("sessions exist")]
    SessionExists,
    #[error("parallel sessions not supported")]
    SessionParallelNotSupported,
    #[error("operation active")]
    OperationActive,
    #[error("operation not initialised")]
    OperationNotInitialized,
    #[error("key function not permitted: {0}")]
    KeyFunctionNotPermitted(Cow<'static, str>),
    #[error("key type inconsistent")]
    KeyTypeInconsistent,
    #[error("key is not extractable")]
    KeyUnextractable,
    #[error("key cannot be digested: {0}")]
    KeyIndigestible(Cow<'static, str>),
    #[error("key cannot be wrapped: {0}")]
    KeyNotWrappable(String),
    #[error("wrapping key handle invalid")]
    WrappingKeyHandleInvalid,
    #[error("wrapping key type inconsistent")]
    WrappingKeyTypeInconsistent,
    #[error("unwrapping key handle invalid")]
    UnwrappingKeyHandleInvalid,
    #[error("unwrapping key type inconsistent")]
    UnwrappingKeyTypeInconsistent,
    #[error("wrapped key invalid")]
    WrappedKeyInvalid,
    #[error("wrapped key length out of range")]
    WrappedKeyLenRange,
    #[error("key size out of range")]
    KeySizeRange,
    #[error("mechanism invalid")]
    MechanismInvalid,
    #[error("mechanism parameter invalid: {0}")]
    MechanismParamInvalid(String),
    #[error("data length out of range")]
    DataLenRange,
    #[error("data invalid")]
    DataInvalid,
    #[error("encrypted data invalid")]
    EncryptedDataInvalid,
    #[error("encrypted data length out of range")]
    EncryptedDataLenRange,
    #[error("signature invalid")]
    SignatureInvalid,
    #[error("signature length out of range")]
    SignatureLenRange,
    #[error("buffer too small: {0} bytes needed")]
    BufferTooSmall(usize),
    #[error("random seeding not supported")]
    RandomSeedNotSupported,
    #[error("no event")]
    NoEvent,
    #[error("function not supported")]
    FunctionNotSupported,
    #[error("out of device memory: {0}")]
    DeviceMemory(String),
    #[error("device error: {0}")]
    DeviceError(String),
    /// The token went away: the server's connection broke, or it could not be reached.
    #[error("token removed: {0}")]
    DeviceRemoved(String),
    #[error("function failed: {0}")]
    FunctionFailed(String),
    #[error("internal error: {0}")]
    General(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Locked { .. }
            | StoreError::Io(_)
            | StoreError::Corruption { .. }
            | StoreError::Tampered { .. } => {
                tracing::error!("store: {e}");
                Error::DeviceError(e.to_string())
            }
            StoreError::NoSpace(_) => Error::DeviceMemory(e.to_string()),
            StoreError::SchemaTooNew { .. }
            | StoreError::NotAStore
            | StoreError::Migration { .. } => Error::TokenNotRecognized(e.to_string()),
            StoreError::TokenNotFound(_) => Error::TokenNotPresent,
            StoreError::ObjectNotFound(..) | StoreError::VersionNotFound(..) => {
                Error::ObjectHandleInvalid
            }
            StoreError::PinIncorrect { .. } => Error::PinIncorrect,
            StoreError::PinLocked => Error::PinLocked,
            StoreError::PinLenRange { .. } => Error::PinLenRange,
            StoreError::UserPinNotInitialized => Error::UserPinNotInitialized,
            StoreError::NotLoggedIn => Error::UserNotLoggedIn,
            StoreError::Invalid(m) => Error::General(m),
            StoreError::BackupInvalid(_) | StoreError::BackupKey(_) => {
                Error::General(e.to_string())
            }
        }
    }
}

impl From<CryptoError> for Error {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::MechanismInvalid => Error::MechanismInvalid,
            CryptoError::MechanismParamInvalid(m) => Error::MechanismParamInvalid(m),
            CryptoError::KeyTypeInconsistent => Error::KeyTypeInconsistent,
            CryptoError::KeySizeRange => Error::KeySizeRange,
            CryptoError::DataLenRange => Error::DataLenRange,
            CryptoError::DataInvalid => Error::DataInvalid,
            CryptoError::EncryptedDataInvalid => Error::EncryptedDataInvalid,
            CryptoError::EncryptedDataLenRange => Error::EncryptedDataLenRange,
            CryptoError::SignatureInvalid => Error::SignatureInvalid,
            CryptoError::SignatureLenRange => Error::SignatureLenRange,
            CryptoError::General(m) => Error::General(m),
        }
    }
}
