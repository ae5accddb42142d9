//! The FFI edge: the error type every `C_*` body returns, its one exhaustive mapping to
//! `CK_RV`, and the panic boundary around every entry point.

use cryptoki_sys::*;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What an entry point can answer besides `CKR_OK`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cryptoki not initialised")]
    NotInitialized,
    #[error("cryptoki already initialised")]
    AlreadyInitialized,
    #[error("bad arguments: {0}")]
    ArgumentsBad(&'static str),
    #[error("application locking callbacks without CKF_OS_LOCKING_OK")]
    CantLock,
    #[error("function not supported")]
    FunctionNotSupported,
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    General(String),
}

impl Error {
    /// The one mapping from errors to return values. No catch-all arm: a new variant
    /// must be given its code here.
    pub fn rv(&self) -> CK_RV {
        match self {
            Error::NotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
            Error::AlreadyInitialized => CKR_CRYPTOKI_ALREADY_INITIALIZED,
            Error::ArgumentsBad(_) => CKR_ARGUMENTS_BAD,
            Error::CantLock => CKR_CANT_LOCK,
            Error::FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
            // A missing or broken configuration file: the module cannot work, but nothing
            // is broken beyond repair. The log line names the file and the problem.
            Error::Config(_) => CKR_FUNCTION_FAILED,
            Error::General(_) => CKR_GENERAL_ERROR,
        }
    }
}

/// Runs an entry point's body: catches panics (which must never cross `extern "C"`),
/// logs failures, and turns the result into a `CK_RV`.
pub fn ffi(name: &'static str, body: impl FnOnce() -> Result<(), Error>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => {
            match &e {
                Error::NotInitialized | Error::FunctionNotSupported => {
                    tracing::debug!(function = name, "{e}")
                }
                _ => tracing::warn!(function = name, "{e}"),
            }
            e.rv()
        }
        Err(_) => {
            tracing::error!(function = name, "panic caught at the FFI boundary");
            CKR_GENERAL_ERROR
        }
    }
}

/// Turns a pointer the caller must supply into a reference, or `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// `p` is null or points to a valid, writable `T` for the duration of the call.
pub unsafe fn out_ref<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller guarantees `p` is null or valid; null is rejected here.
    unsafe { p.as_mut() }.ok_or(Error::ArgumentsBad(what))
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
        assert_eq!(
            ffi("test", || Err(Error::ArgumentsBad("x"))),
            CKR_ARGUMENTS_BAD
        );
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
