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
            Error::Core(e) => e.ckr(),
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
