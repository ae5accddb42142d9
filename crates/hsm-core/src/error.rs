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

impl Error {
    /// The `CKR_*` value this error answers: the one mapping, used by the PKCS#11 module
    /// and by the audit log's records. No catch-all arm: a new variant must be given its
    /// code here.
    pub fn ckr(&self) -> u64 {
        use cryptoki_sys::*;
        match self {
            Error::ArgumentsBad(_) => CKR_ARGUMENTS_BAD,
            Error::SlotIdInvalid => CKR_SLOT_ID_INVALID,
            Error::TokenNotPresent => CKR_TOKEN_NOT_PRESENT,
            Error::TokenNotRecognized(_) => CKR_TOKEN_NOT_RECOGNIZED,
            Error::SessionHandleInvalid => CKR_SESSION_HANDLE_INVALID,
            Error::ObjectHandleInvalid => CKR_OBJECT_HANDLE_INVALID,
            Error::KeyHandleInvalid => CKR_KEY_HANDLE_INVALID,
            Error::AttributeTypeInvalid => CKR_ATTRIBUTE_TYPE_INVALID,
            Error::AttributeValueInvalid(_) => CKR_ATTRIBUTE_VALUE_INVALID,
            Error::AttributeReadOnly(_) => CKR_ATTRIBUTE_READ_ONLY,
            Error::AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE,
            Error::TemplateIncomplete(_) => CKR_TEMPLATE_INCOMPLETE,
            Error::TemplateInconsistent(_) => CKR_TEMPLATE_INCONSISTENT,
            Error::ActionProhibited(_) | Error::PolicyDenied(_) | Error::ApprovalRequired(_) => {
                CKR_ACTION_PROHIBITED
            }
            Error::UserNotLoggedIn => CKR_USER_NOT_LOGGED_IN,
            Error::UserAlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN,
            Error::UserAnotherAlreadyLoggedIn => CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            Error::UserPinNotInitialized => CKR_USER_PIN_NOT_INITIALIZED,
            Error::UserTypeInvalid => CKR_USER_TYPE_INVALID,
            Error::UserTooManyTypes => CKR_USER_TOO_MANY_TYPES,
            Error::PinIncorrect => CKR_PIN_INCORRECT,
            Error::PinLocked => CKR_PIN_LOCKED,
            Error::PinLenRange => CKR_PIN_LEN_RANGE,
            Error::PinInvalid(_) => CKR_PIN_INVALID,
            Error::SessionReadOnly => CKR_SESSION_READ_ONLY,
            Error::SessionReadOnlyExists => CKR_SESSION_READ_ONLY_EXISTS,
            Error::SessionReadWriteSoExists => CKR_SESSION_READ_WRITE_SO_EXISTS,
            Error::SessionExists => CKR_SESSION_EXISTS,
            Error::SessionParallelNotSupported => CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            Error::OperationActive => CKR_OPERATION_ACTIVE,
            Error::OperationNotInitialized => CKR_OPERATION_NOT_INITIALIZED,
            Error::KeyFunctionNotPermitted(_) => CKR_KEY_FUNCTION_NOT_PERMITTED,
            Error::KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT,
            Error::KeyUnextractable => CKR_KEY_UNEXTRACTABLE,
            Error::KeyIndigestible(_) => CKR_KEY_INDIGESTIBLE,
            Error::KeyNotWrappable(_) => CKR_KEY_NOT_WRAPPABLE,
            Error::WrappingKeyHandleInvalid => CKR_WRAPPING_KEY_HANDLE_INVALID,
            Error::WrappingKeyTypeInconsistent => CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
            Error::UnwrappingKeyHandleInvalid => CKR_UNWRAPPING_KEY_HANDLE_INVALID,
            Error::UnwrappingKeyTypeInconsistent => CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
            Error::WrappedKeyInvalid => CKR_WRAPPED_KEY_INVALID,
            Error::WrappedKeyLenRange => CKR_WRAPPED_KEY_LEN_RANGE,
            Error::KeySizeRange => CKR_KEY_SIZE_RANGE,
            Error::MechanismInvalid => CKR_MECHANISM_INVALID,
            Error::MechanismParamInvalid(_) => CKR_MECHANISM_PARAM_INVALID,
            Error::DataLenRange => CKR_DATA_LEN_RANGE,
            Error::DataInvalid => CKR_DATA_INVALID,
            Error::EncryptedDataInvalid => CKR_ENCRYPTED_DATA_INVALID,
            Error::EncryptedDataLenRange => CKR_ENCRYPTED_DATA_LEN_RANGE,
            Error::SignatureInvalid => CKR_SIGNATURE_INVALID,
            Error::SignatureLenRange => CKR_SIGNATURE_LEN_RANGE,
            Error::BufferTooSmall(_) => CKR_BUFFER_TOO_SMALL,
            Error::RandomSeedNotSupported => CKR_RANDOM_SEED_NOT_SUPPORTED,
            Error::NoEvent => CKR_NO_EVENT,
            Error::FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
            Error::DeviceMemory(_) => CKR_DEVICE_MEMORY,
            Error::DeviceError(_) => CKR_DEVICE_ERROR,
            Error::DeviceRemoved(_) => CKR_DEVICE_REMOVED,
            Error::FunctionFailed(_) => CKR_FUNCTION_FAILED,
            Error::General(_) => CKR_GENERAL_ERROR,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Locked { .. }
            | StoreError::Io(_)
            | StoreError::Corruption { .. }
            | StoreError::Tampered { .. }
            | StoreError::AuditUnavailable(_) => {
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
            CryptoError::Device(m) => Error::DeviceError(m),
            CryptoError::DeviceRemoved(m) => Error::DeviceRemoved(m),
        }
    }
}
