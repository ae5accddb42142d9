//! The `C_*` entry points, one file per chapter of PKCS#11 3.0 (§5.4 to §5.19), and what
//! they share: the macro that gives every entry point its shim shape, the two-call output
//! convention, the end of an operation on failure, and PIN arguments.
//!
//! Every pointer the caller passes is reached through `crate::guard`.

use crate::boundary::Error;
use crate::guard;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::types::SecretString;
use hsm_core::{OpKind, Token};

/// Defines `C_*` entry points. Each is written as its C signature followed by `=` and its
/// body, a closure-like block returning `Result<(), Error>`:
///
/// ```text
/// pub unsafe extern "C" fn C_SignInit(session: CK_SESSION_HANDLE, …) -> CK_RV = |h| {
///     …
/// }
/// ```
///
/// The macro adds the rest of the shim: the unmangled export, the panic boundary and the
/// one error → `CK_RV` mapping ([`crate::boundary::ffi`], which logs under the function's
/// name). A body written `|h|` gets the token runtime as `h` and answers
/// `CKR_CRYPTOKI_NOT_INITIALIZED` before anything else when there is none; `||` is for
/// the few that work without it or manage the module state themselves (the
/// general-purpose functions).
macro_rules! entry_points {
    () => {};
    (@emit [$($unsafe:tt)?] [$($attr:tt)*] $name:ident ($($arg:ident: $ty:ty),*)
        |$h:pat_param| $body:block $($rest:tt)*
    ) => {
        $($attr)*
        #[unsafe(no_mangle)]
        pub $($unsafe)? extern "C" fn $name($($arg: $ty),*) -> ::cryptoki_sys::CK_RV {
            $crate::boundary::ffi(stringify!($name), || {
                let token = $crate::state::token()?;
                let $h: &dyn ::hsm_core::Token = &*token;
                $body
            })
        }
        entry_points!($($rest)*);
    };
    (@emit [$($unsafe:tt)?] [$($attr:tt)*] $name:ident ($($arg:ident: $ty:ty),*)
        || $body:block $($rest:tt)*
    ) => {
        $($attr)*
        #[unsafe(no_mangle)]
        pub $($unsafe)? extern "C" fn $name($($arg: $ty),*) -> ::cryptoki_sys::CK_RV {
            $crate::boundary::ffi(stringify!($name), || $body)
        }
        entry_points!($($rest)*);
    };
    (
        $(#[$attr:meta])*
        pub unsafe extern "C" fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> CK_RV = $($rest:tt)*
    ) => {
        entry_points!(@emit [unsafe] [$(#[$attr])*] $name ($($arg: $ty),*) $($rest)*);
    };
    (
        $(#[$attr:meta])*
        pub extern "C" fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> CK_RV = $($rest:tt)*
    ) => {
        entry_points!(@emit [] [$(#[$attr])*] $name ($($arg: $ty),*) $($rest)*);
    };
}

/// Entry points not built yet: each answers `CKR_FUNCTION_NOT_SUPPORTED` after the usual
/// initialisation check, is listed in [`NOT_SUPPORTED`], and as such in
/// `docs/pkcs11/functions.md`. Its arguments are never looked at, so it is a safe `fn`.
macro_rules! not_supported {
    ($($name:ident($($arg:ident: $ty:ty),* $(,)?);)*) => {$(
        entry_points! {
            /// Not supported: `CKR_FUNCTION_NOT_SUPPORTED` once initialised.
            pub extern "C" fn $name($($arg: $ty),*) -> CK_RV = |_| {
                $(let _ = $arg;)*
                Err($crate::boundary::Error::FunctionNotSupported)
            }
        }
    )*};
}

mod decrypt;
mod digest;
mod dual;
mod encrypt;
mod function_list;
pub(crate) mod general;
mod key_management;
mod message;
mod object;
mod random;
mod session;
mod sign;
mod slot_token;
mod verify;

pub use decrypt::*;
pub use digest::*;
pub use dual::*;
pub use encrypt::*;
// The general-purpose functions are exported from the crate root (`crate::C_Initialize`).
pub use key_management::*;
pub use message::*;
pub use object::*;
pub use random::*;
pub use session::*;
pub use sign::*;
pub use slot_token::*;
pub use verify::*;

/// Every entry point built (the rest are in [`NOT_SUPPORTED`]).
pub const IMPLEMENTED: &[&str] = &[
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetInterfaceList",
    "C_GetInterface",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_WaitForSlotEvent",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_SessionCancel",
    "C_MessageEncryptInit",
    "C_EncryptMessage",
    "C_MessageEncryptFinal",
    "C_MessageDecryptInit",
    "C_DecryptMessage",
    "C_MessageDecryptFinal",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_GetObjectSize",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_GenerateKey",
    "C_GenerateKeyPair",
    "C_SignInit",
    "C_Sign",
    "C_SignUpdate",
    "C_SignFinal",
    "C_VerifyInit",
    "C_Verify",
    "C_VerifyUpdate",
    "C_VerifyFinal",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_WrapKey",
    "C_UnwrapKey",
    "C_DeriveKey",
    "C_GenerateRandom",
    "C_SeedRandom",
    "C_GetFunctionStatus",
    "C_CancelFunction",
];

/// Every entry point (2.40 and 3.0 tables) that is not built yet.
pub const NOT_SUPPORTED: &[&str] = &[
    "C_GetOperationState",
    "C_SetOperationState",
    "C_SignRecoverInit",
    "C_SignRecover",
    "C_VerifyRecoverInit",
    "C_VerifyRecover",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_LoginUser",
    "C_EncryptMessageBegin",
    "C_EncryptMessageNext",
    "C_DecryptMessageBegin",
    "C_DecryptMessageNext",
    "C_MessageSignInit",
    "C_SignMessage",
    "C_SignMessageBegin",
    "C_SignMessageNext",
    "C_MessageSignFinal",
    "C_MessageVerifyInit",
    "C_VerifyMessage",
    "C_VerifyMessageBegin",
    "C_VerifyMessageNext",
    "C_MessageVerifyFinal",
];

/// Runs the body of a call that belongs to an operation (`C_Encrypt`, `C_SignUpdate`,
/// `C_DigestFinal`, …) and ends that operation when the call fails with anything but
/// `CKR_BUFFER_TOO_SMALL`, as PKCS#11 says: the next `*Init` then succeeds. A length
/// query (NULL output, see [`two_call`]) succeeds and so leaves the operation active too.
fn ending<T>(
    h: &dyn Token,
    session: CK_SESSION_HANDLE,
    kind: OpKind,
    body: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    let r = body();
    if let Err(e) = &r
        && !matches!(e, Error::Core(CoreError::BufferTooSmall(_)))
    {
        let _ = h.cancel(session as u64, &[kind]);
    }
    r
}

/// [`two_call`] for a one-shot output the token checks against the caller's buffer
/// itself (`within(capacity)`), so that a buffer costs one call to the token, not two:
/// `out` NULL asks `query` for the length; otherwise `within` produces the output or
/// answers `BufferTooSmall(needed)`, which is passed on with `*len = needed`.
///
/// # Safety
/// As [`two_call`].
unsafe fn two_call_within(
    out: *mut u8,
    len: *mut CK_ULONG,
    len_name: &'static str,
    query: impl FnOnce() -> Result<usize, Error>,
    within: impl FnOnce(usize) -> Result<hsm_core::api::Bytes, Error>,
) -> Result<(), Error> {
    // SAFETY: forwarded contract; NULL and misaligned are refused.
    let l = unsafe { guard::out_ref(len, len_name) }?;
    if out.is_null() {
        *l = query()? as CK_ULONG;
        return Ok(());
    }
    guard::out_array(out, *l, "output buffer")?;
    match within(*l as usize) {
        Ok(items) => {
            if items.len() > *l as usize {
                *l = items.len() as CK_ULONG;
                return Err(CoreError::BufferTooSmall(items.len()).into());
            }
            // SAFETY: out passed out_array and is writable for *l >= items.len() bytes;
            // `items` is ours, so they do not overlap.
            unsafe { guard::write_array(out, &items) };
            *l = items.len() as CK_ULONG;
            Ok(())
        }
        Err(Error::Core(CoreError::BufferTooSmall(n))) => {
            *l = n as CK_ULONG;
            Err(CoreError::BufferTooSmall(n).into())
        }
        Err(e) => Err(e),
    }
}

/// [`two_call_within`] for `C_Encrypt` and `C_Decrypt`, whose output the token writes
/// straight into the caller's buffer (`into(buffer)`: AES-GCM seals and opens there, with
/// no copy of the data in between). A buffer overlapping the input — in-place
/// encryption, which some callers do — goes through `within` and a copy instead: Rust
/// must never see the same bytes as both the input and the output.
///
/// # Safety
/// As [`two_call`]; `input` is the caller's input, borrowed from its memory.
unsafe fn two_call_into(
    input: &[u8],
    out: *mut u8,
    len: *mut CK_ULONG,
    len_name: &'static str,
    query: impl FnOnce() -> Result<usize, Error>,
    into: impl FnOnce(&mut [u8]) -> Result<usize, Error>,
    within: impl FnOnce(usize) -> Result<hsm_core::api::Bytes, Error>,
) -> Result<(), Error> {
    let cap = {
        // SAFETY: forwarded contract; NULL and misaligned are refused.
        let l = unsafe { guard::out_ref(len, len_name) }?;
        if out.is_null() {
            *l = query()? as CK_ULONG;
            return Ok(());
        }
        guard::out_array(out, *l, "output buffer")?;
        usize::try_from(*l)
            .unwrap_or(usize::MAX)
            .min(isize::MAX as usize)
    };
    let (o, i) = (out as usize, input.as_ptr() as usize);
    if cap > 0 && !input.is_empty() && o < i + input.len() && i < o + cap {
        // SAFETY: forwarded contract.
        return unsafe { two_call_within(out, len, len_name, query, within) };
    }
    // SAFETY: `out` is non-null (checked above) and the caller's contract makes it
    // writable for `cap` bytes; it does not overlap `input` (checked above). The token
    // writes the bytes before anything reads them.
    let buf = unsafe { std::slice::from_raw_parts_mut(out, cap) };
    let r = into(buf);
    // SAFETY: forwarded contract, as above; `buf` is no longer used.
    let l = unsafe { guard::out_ref(len, len_name) }?;
    match r {
        Ok(n) => {
            *l = n as CK_ULONG;
            Ok(())
        }
        Err(Error::Core(CoreError::BufferTooSmall(n))) => {
            *l = n as CK_ULONG;
            Err(CoreError::BufferTooSmall(n).into())
        }
        Err(e) => Err(e),
    }
}

/// The two-call output convention of PKCS#11 (§5.2), the one place it is written: for
/// signatures, ciphertexts, digests, wrapped keys, message outputs and the slot,
/// mechanism and interface lists.
///
/// `len` is the caller's `CK_ULONG` (NULL or misaligned: `CKR_ARGUMENTS_BAD`), `needed`
/// the length the output will have at most:
/// - `out` NULL: `*len = needed`, `CKR_OK`, and nothing is produced (an operation stays
///   active);
/// - `*len < needed`: `*len = needed`, `CKR_BUFFER_TOO_SMALL`, nothing produced (an
///   operation stays active, see [`ending`]);
/// - otherwise `produce` runs (an operation's last call ends it) and its items are
///   copied to `out`, `*len` set to their count. Should they be more than `*len` after
///   all, the answer is `CKR_BUFFER_TOO_SMALL` with their count.
///
/// A non-null `out` misaligned for `T` is `CKR_ARGUMENTS_BAD` before anything is
/// produced (byte buffers cannot be).
///
/// # Safety
/// A non-null, aligned `len` is a writable `CK_ULONG`; a non-null `out` is writable for
/// `*len` items of `T`.
unsafe fn two_call<T: Copy, V: AsRef<[T]>>(
    out: *mut T,
    len: *mut CK_ULONG,
    len_name: &'static str,
    needed: usize,
    produce: impl FnOnce() -> Result<V, Error>,
) -> Result<(), Error> {
    // SAFETY: forwarded contract; NULL and misaligned are refused.
    let len = unsafe { guard::out_ref(len, len_name) }?;
    if out.is_null() {
        *len = needed as CK_ULONG;
        return Ok(());
    }
    if (*len as usize) < needed {
        *len = needed as CK_ULONG;
        return Err(CoreError::BufferTooSmall(needed).into());
    }
    guard::out_array(out, *len, "output buffer")?;
    let produced = produce()?;
    let items = produced.as_ref();
    if (*len as usize) < items.len() {
        *len = items.len() as CK_ULONG;
        return Err(CoreError::BufferTooSmall(items.len()).into());
    }
    // SAFETY: out passed out_array and is writable for *len >= items.len() items per the
    // contract; `items` is ours, so they do not overlap.
    unsafe { guard::write_array(out, items) };
    *len = items.len() as CK_ULONG;
    Ok(())
}

/// A PIN argument. NULL means a protected authentication path, which this token lacks.
/// More than 1 KiB is `CKR_PIN_LEN_RANGE`; bytes that are not UTF-8 are
/// `CKR_PIN_INVALID` when `strict` (a PIN being set), otherwise kept as they are (a wrong
/// PIN stays wrong, and is still counted).
///
/// # Safety
/// A non-null `pin` points to `len` readable bytes.
unsafe fn pin(pin: *const CK_UTF8CHAR, len: CK_ULONG, strict: bool) -> Result<SecretString, Error> {
    if pin.is_null() {
        return Err(Error::bad(
            "NULL PIN: this token has no protected authentication path",
        ));
    }
    // SAFETY: forwarded contract; capped at 1 KiB.
    let bytes =
        unsafe { guard::bytes(pin, len, 1024, "PIN") }.map_err(|_| CoreError::PinLenRange)?;
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(SecretString::new(s.to_owned())),
        Err(_) if strict => Err(CoreError::PinInvalid("a PIN must be UTF-8".into()).into()),
        Err(_) => Ok(SecretString::new(
            String::from_utf8_lossy(bytes).into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rv(r: Result<(), Error>) -> CK_RV {
        r.map_or_else(|e| e.rv(), |_| CKR_OK)
    }

    #[test]
    fn two_call_reports_then_copies() {
        let mut len: CK_ULONG = 0;
        let mut ran = false;
        // SAFETY: NULL output, valid length.
        let r = unsafe {
            two_call(std::ptr::null_mut::<u8>(), &mut len, "len", 3, || {
                ran = true;
                Ok(vec![1u8, 2, 3])
            })
        };
        assert_eq!(
            (rv(r), len, ran),
            (CKR_OK, 3, false),
            "a query produces nothing"
        );
        let mut small = [0u8; 2];
        len = 2;
        // SAFETY: small holds len bytes.
        let r = unsafe { two_call(small.as_mut_ptr(), &mut len, "len", 3, || Ok(vec![9u8; 3])) };
        assert_eq!((rv(r), len, small), (CKR_BUFFER_TOO_SMALL, 3, [0, 0]));
        let mut out = [0u8; 4];
        len = 4;
        // SAFETY: out holds len bytes.
        let r = unsafe { two_call(out.as_mut_ptr(), &mut len, "len", 3, || Ok([1u8, 2])) };
        assert_eq!((rv(r), len, out), (CKR_OK, 2, [1, 2, 0, 0]));
        // SAFETY: the NULL length is refused.
        let r = unsafe {
            two_call(out.as_mut_ptr(), std::ptr::null_mut(), "len", 3, || {
                Ok([1u8])
            })
        };
        assert_eq!(rv(r), CKR_ARGUMENTS_BAD);
    }

    #[test]
    fn two_call_refuses_misaligned_lists_and_lengths() {
        let mut buf = [0 as CK_ULONG; 4];
        let off = (buf.as_mut_ptr() as *mut u8).wrapping_add(1) as *mut CK_ULONG;
        let mut len: CK_ULONG = 2;
        // SAFETY: the misaligned list is refused before anything is written.
        let r = unsafe { two_call(off, &mut len, "len", 2, || Ok([1 as CK_ULONG, 2])) };
        assert_eq!(rv(r), CKR_ARGUMENTS_BAD);
        // SAFETY: the misaligned length is refused before it is read.
        let r = unsafe { two_call(buf.as_mut_ptr(), off, "len", 2, || Ok([1 as CK_ULONG])) };
        assert_eq!(rv(r), CKR_ARGUMENTS_BAD);
    }
}
