//! The FFI edge: the error type every `C_*` body returns, its one exhaustive mapping to
//! `CK_RV`, and the panic boundary around every entry point.

use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What an entry point can answer besides `CKR_OK`: the token layer's errors, plus the
/// few that only exist at the FFI edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cryptoki not initialised")]
    NotInitialized,
    #[error("cryptoki already initialised")]
    AlreadyInitialized,
    #[error("application locking callbacks without CKF_OS_LOCKING_OK")]
    CantLock,
    #[error("function not supported")]
    FunctionNotSupported,
    #[error("function not parallel")]
    FunctionNotParallel,
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl Error {
    pub fn bad(what: &'static str) -> Error {
        Error::Core(CoreError::ArgumentsBad(what.into()))
    }

    /// The one mapping from errors to return values. No catch-all arm: a new variant
    /// must be given its code here.
    pub fn rv(&self) -> CK_RV {
        match self {
            Error::NotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
            Error::AlreadyInitialized => CKR_CRYPTOKI_ALREADY_INITIALIZED,
            Error::CantLock => CKR_CANT_LOCK,
            Error::FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
            Error::FunctionNotParallel => CKR_FUNCTION_NOT_PARALLEL,
            // A missing or broken configuration file: the module cannot work, but nothing
            // is broken beyond repair. The log line names the file and the problem.
            Error::Config(_) => CKR_FUNCTION_FAILED,
            Error::Core(e) => match e {
                CoreError::ArgumentsBad(_) => CKR_ARGUMENTS_BAD,
                CoreError::SlotIdInvalid => CKR_SLOT_ID_INVALID,
                CoreError::TokenNotPresent => CKR_TOKEN_NOT_PRESENT,
                CoreError::TokenNotRecognized(_) => CKR_TOKEN_NOT_RECOGNIZED,
                CoreError::SessionHandleInvalid => CKR_SESSION_HANDLE_INVALID,
                CoreError::ObjectHandleInvalid => CKR_OBJECT_HANDLE_INVALID,
                CoreError::KeyHandleInvalid => CKR_KEY_HANDLE_INVALID,
                CoreError::AttributeTypeInvalid => CKR_ATTRIBUTE_TYPE_INVALID,
                CoreError::AttributeValueInvalid(_) => CKR_ATTRIBUTE_VALUE_INVALID,
                CoreError::AttributeReadOnly(_) => CKR_ATTRIBUTE_READ_ONLY,
                CoreError::AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE,
                CoreError::TemplateIncomplete(_) => CKR_TEMPLATE_INCOMPLETE,
                CoreError::TemplateInconsistent(_) => CKR_TEMPLATE_INCONSISTENT,
                CoreError::ActionProhibited(_)
                | CoreError::PolicyDenied(_)
                | CoreError::ApprovalRequired(_) => CKR_ACTION_PROHIBITED,
                CoreError::UserNotLoggedIn => CKR_USER_NOT_LOGGED_IN,
                CoreError::UserAlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN,
                CoreError::UserAnotherAlreadyLoggedIn => CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
                CoreError::UserPinNotInitialized => CKR_USER_PIN_NOT_INITIALIZED,
                CoreError::UserTypeInvalid => CKR_USER_TYPE_INVALID,
                CoreError::UserTooManyTypes => CKR_USER_TOO_MANY_TYPES,
                CoreError::PinIncorrect => CKR_PIN_INCORRECT,
                CoreError::PinLocked => CKR_PIN_LOCKED,
                CoreError::PinLenRange => CKR_PIN_LEN_RANGE,
                CoreError::PinInvalid(_) => CKR_PIN_INVALID,
                CoreError::SessionReadOnly => CKR_SESSION_READ_ONLY,
                CoreError::SessionReadOnlyExists => CKR_SESSION_READ_ONLY_EXISTS,
                CoreError::SessionReadWriteSoExists => CKR_SESSION_READ_WRITE_SO_EXISTS,
                CoreError::SessionExists => CKR_SESSION_EXISTS,
                CoreError::SessionParallelNotSupported => CKR_SESSION_PARALLEL_NOT_SUPPORTED,
                CoreError::OperationActive => CKR_OPERATION_ACTIVE,
                CoreError::OperationNotInitialized => CKR_OPERATION_NOT_INITIALIZED,
                CoreError::KeyFunctionNotPermitted(_) => CKR_KEY_FUNCTION_NOT_PERMITTED,
                CoreError::KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT,
                CoreError::KeyUnextractable => CKR_KEY_UNEXTRACTABLE,
                CoreError::KeyIndigestible(_) => CKR_KEY_INDIGESTIBLE,
                CoreError::KeyNotWrappable(_) => CKR_KEY_NOT_WRAPPABLE,
                CoreError::WrappingKeyHandleInvalid => CKR_WRAPPING_KEY_HANDLE_INVALID,
                CoreError::WrappingKeyTypeInconsistent => CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
                CoreError::UnwrappingKeyHandleInvalid => CKR_UNWRAPPING_KEY_HANDLE_INVALID,
                CoreError::UnwrappingKeyTypeInconsistent => CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
                CoreError::WrappedKeyInvalid => CKR_WRAPPED_KEY_INVALID,
                CoreError::WrappedKeyLenRange => CKR_WRAPPED_KEY_LEN_RANGE,
                CoreError::KeySizeRange => CKR_KEY_SIZE_RANGE,
                CoreError::MechanismInvalid => CKR_MECHANISM_INVALID,
                CoreError::MechanismParamInvalid(_) => CKR_MECHANISM_PARAM_INVALID,
                CoreError::DataLenRange => CKR_DATA_LEN_RANGE,
                CoreError::DataInvalid => CKR_DATA_INVALID,
                CoreError::EncryptedDataInvalid => CKR_ENCRYPTED_DATA_INVALID,
                CoreError::EncryptedDataLenRange => CKR_ENCRYPTED_DATA_LEN_RANGE,
                CoreError::SignatureInvalid => CKR_SIGNATURE_INVALID,
                CoreError::SignatureLenRange => CKR_SIGNATURE_LEN_RANGE,
                CoreError::BufferTooSmall(_) => CKR_BUFFER_TOO_SMALL,
                CoreError::RandomSeedNotSupported => CKR_RANDOM_SEED_NOT_SUPPORTED,
                CoreError::NoEvent => CKR_NO_EVENT,
                CoreError::FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
                CoreError::DeviceMemory(_) => CKR_DEVICE_MEMORY,
                CoreError::DeviceError(_) => CKR_DEVICE_ERROR,
                CoreError::DeviceRemoved(_) => CKR_DEVICE_REMOVED,
                CoreError::FunctionFailed(_) => CKR_FUNCTION_FAILED,
                CoreError::General(_) => CKR_GENERAL_ERROR,
            },
        }
    }
}

/// Runs an entry point's body: catches panics (which must never cross `extern "C"`),
/// logs failures, and turns the result into a `CK_RV`.
pub fn ffi(name: &'static str, body: impl FnOnce() -> Result<(), Error>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => {
            // Problems of the token are warnings; answers to a caller's mistake or
            // state (wrong PIN, sensitive attribute, small buffer) are not, and neither is
            // an uninitialised token: NSS and p11-kit open a session on every slot, the
            // spare one included, each time they start.
            match &e {
                Error::Config(_)
                | Error::Core(
                    CoreError::DeviceError(_)
                    | CoreError::DeviceRemoved(_)
                    | CoreError::DeviceMemory(_)
                    | CoreError::FunctionFailed(_)
                    | CoreError::General(_),
                ) => tracing::warn!(function = name, "{e}"),
                Error::Core(CoreError::PinIncorrect | CoreError::PinLocked) => {
                    tracing::info!(function = name, "{e}")
                }
                _ => tracing::debug!(function = name, "{e}"),
            }
            e.rv()
        }
        Err(_) => {
            tracing::error!(function = name, "panic caught at the FFI boundary");
            CKR_GENERAL_ERROR
        }
    }
}

/// Copies `s` into a blank-padded fixed-width PKCS#11 string field.
pub fn pad(field: &mut [u8], s: &str) {
    field.fill(b' ');
    let bytes = s.as_bytes();
    let mut n = bytes.len().min(field.len());
    // Never cut a UTF-8 sequence in half.
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    field[..n].copy_from_slice(&bytes[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_general_error() {
        assert_eq!(ffi("test", || panic!("boom")), CKR_GENERAL_ERROR);
        assert_eq!(ffi("test", || Ok(())), CKR_OK);
        assert_eq!(ffi("test", || Err(Error::bad("x"))), CKR_ARGUMENTS_BAD);
    }

    #[test]
    fn pad_fills_with_blanks_and_respects_utf8() {
        let mut f = [0u8; 6];
        pad(&mut f, "ab");
        assert_eq!(&f, b"ab    ");
        // "é" is two bytes and would end at byte 7: it is dropped whole.
        pad(&mut f, "abcdeé");
        assert_eq!(&f, b"abcde ");
    }
}
