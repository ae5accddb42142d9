//! Pointer guards: the one place where a pointer the caller passed becomes a Rust
//! reference or slice.
//!
//! Each guard checks what can be checked before the memory is touched — NULL, a length
//! that does not fit in `usize` or exceeds its cap, a size in bytes that overflows, and
//! the alignment of the pointee's type (a misaligned reference is undefined behaviour
//! even if it is never read) — and answers `CKR_ARGUMENTS_BAD`, except [`param`] and
//! [`param_mut`], which answer `CKR_MECHANISM_PARAM_INVALID` as the rest of mechanism
//! parameter checking does. Byte buffers have alignment 1, so only typed pointers can be
//! misaligned. What cannot be checked — that the memory is there, readable or writable,
//! for the length given — is the caller's part: every guard that hands out a reference is
//! `unsafe` and states that contract.

use crate::boundary::Error;
use cryptoki_sys::CK_ULONG;
use hsm_core::Error as CoreError;
use std::ffi::c_void;

/// Largest data buffer a single call takes.
pub const MAX_DATA: usize = 64 << 20;

/// `count` items of `T` at `ptr` as a slice length, or why not: NULL with a count, a count
/// beyond `max` or beyond what the address space holds, or a pointer misaligned for `T`.
/// A count of 0 is fine whatever the pointer (it is never dereferenced).
fn checked_count<T>(
    ptr: *const T,
    count: CK_ULONG,
    max: usize,
    what: &'static str,
) -> Result<usize, Error> {
    let count = usize::try_from(count).map_err(|_| Error::bad(what))?;
    if count == 0 {
        return Ok(0);
    }
    if ptr.is_null() || count > max {
        return Err(Error::bad(what));
    }
    if count
        .checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Error::bad(what));
    }
    if !ptr.is_aligned() {
        return Err(Error::bad(what));
    }
    Ok(count)
}

/// `(ptr, len)` bytes to read: NULL with length 0 is an empty slice; NULL with a length,
/// or a length beyond `max`, is refused.
///
/// # Safety
/// A non-null `ptr` points to `len` readable bytes that stay unchanged for `'a`.
pub unsafe fn bytes<'a>(
    ptr: *const u8,
    len: CK_ULONG,
    max: usize,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    // SAFETY: forwarded contract (bytes are `T = u8`).
    unsafe { array(ptr, len, max, what) }
}

/// Like [`bytes`], for data to be processed: more than [`MAX_DATA`] is a length error
/// (`CKR_DATA_LEN_RANGE`), not a bad argument.
///
/// # Safety
/// As [`bytes`].
pub unsafe fn data<'a>(
    ptr: *const u8,
    len: CK_ULONG,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    if usize::try_from(len).map_or(true, |l| l > MAX_DATA) {
        return Err(CoreError::DataLenRange.into());
    }
    // SAFETY: forwarded contract.
    unsafe { bytes(ptr, len, MAX_DATA, what) }
}

/// `count` items of `T` to read (an attribute template, SP 800-108 data fields, …): as
/// [`bytes`], and a pointer misaligned for `T` is refused too.
///
/// # Safety
/// A non-null `ptr` points to `count` readable, initialised `T`s that stay unchanged for
/// `'a`.
pub unsafe fn array<'a, T>(
    ptr: *const T,
    count: CK_ULONG,
    max: usize,
    what: &'static str,
) -> Result<&'a [T], Error> {
    let n = checked_count(ptr, count, max, what)?;
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-null, aligned, n * size_of::<T>() fits in isize (checked above); the
    // caller guarantees n readable items.
    Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
}

/// `count` items of `T` the token reads and writes in place (the template of
/// `C_GetAttributeValue`, a buffer `C_GenerateRandom` fills): as [`array`].
///
/// # Safety
/// A non-null `ptr` points to `count` initialised `T`s, readable and writable, that
/// nothing else accesses for `'a`.
pub unsafe fn array_mut<'a, T>(
    ptr: *mut T,
    count: CK_ULONG,
    max: usize,
    what: &'static str,
) -> Result<&'a mut [T], Error> {
    let n = checked_count(ptr, count, max, what)?;
    if n == 0 {
        return Ok(&mut []);
    }
    // SAFETY: non-null, aligned, size fits (checked above); the caller guarantees n
    // writable items used by nothing else.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
}

/// Checks an output array of room for `cap` items before anything is produced for it:
/// NULL with room, or a pointer misaligned for `T`, is refused. Nothing is touched, so
/// no size limit applies: the caller's count only says how much room there is.
pub fn out_array<T>(ptr: *mut T, cap: CK_ULONG, what: &'static str) -> Result<(), Error> {
    if cap > 0 && (ptr.is_null() || !ptr.is_aligned()) {
        return Err(Error::bad(what));
    }
    Ok(())
}

/// Copies `items` to an output array. Nothing is written (and `ptr` not looked at) when
/// there are no items.
///
/// # Safety
/// With items, `ptr` passed [`out_array`] and is writable for at least `items.len()` items
/// that do not overlap `items`.
pub unsafe fn write_array<T: Copy>(ptr: *mut T, items: &[T]) {
    if items.is_empty() {
        return;
    }
    debug_assert!(!ptr.is_null() && ptr.is_aligned());
    // SAFETY: non-null and aligned (out_array), writable for items.len() items and
    // disjoint from them per the contract.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), ptr, items.len()) };
}

/// A single value the caller must supply, to read: NULL or misaligned is refused.
///
/// # Safety
/// A non-null, aligned `p` points to a valid `T` that stays unchanged for `'a`.
pub unsafe fn reference<'a, T>(p: *const T, what: &'static str) -> Result<&'a T, Error> {
    if !p.is_aligned() {
        return Err(Error::bad(what));
    }
    // SAFETY: aligned (checked); null is rejected; otherwise valid per the contract.
    unsafe { p.as_ref() }.ok_or(Error::bad(what))
}

/// A single value the caller may leave out (NULL): misaligned is refused.
///
/// # Safety
/// As [`reference`] for a non-null `p`.
pub unsafe fn optional<'a, T>(p: *const T, what: &'static str) -> Result<Option<&'a T>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { reference(p, what) }.map(Some)
}

/// A single value the token writes (`CK_ULONG` lengths and counts, handles, info
/// structs, a function table pointer): NULL or misaligned is refused.
///
/// # Safety
/// A non-null, aligned `p` points to a `T` that is writable, and that nothing else
/// accesses, for `'a`.
pub unsafe fn out_ref<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T, Error> {
    if !p.is_aligned() {
        return Err(Error::bad(what));
    }
    // SAFETY: aligned (checked); null is rejected; otherwise valid per the contract.
    unsafe { p.as_mut() }.ok_or(Error::bad(what))
}

/// A mechanism parameter struct (`pParameter`, `ulParameterLen`), or a message's
/// parameters: NULL, a length other than `size_of::<T>()` or a misaligned pointer is
/// `CKR_MECHANISM_PARAM_INVALID`, with `what` naming the struct expected.
///
/// # Safety
/// A non-null pointer of the right length points to a valid `T` that stays unchanged for
/// `'a`.
pub unsafe fn param<'a, T>(p: *const c_void, len: CK_ULONG, what: &str) -> Result<&'a T, Error> {
    let p = param_ptr::<T>(p as *mut c_void, len, what)?;
    // SAFETY: non-null, aligned, of T's size (checked); a valid T per the contract.
    Ok(unsafe { &*p })
}

/// As [`param`], for a struct the token writes back into (`CK_GCM_MESSAGE_PARAMS`).
///
/// # Safety
/// As [`param`], and the `T` is writable and accessed by nothing else for `'a`.
pub unsafe fn param_mut<'a, T>(
    p: *mut c_void,
    len: CK_ULONG,
    what: &str,
) -> Result<&'a mut T, Error> {
    let p = param_ptr::<T>(p, len, what)?;
    // SAFETY: non-null, aligned, of T's size (checked); valid and exclusive per the
    // contract.
    Ok(unsafe { &mut *p })
}

fn param_ptr<T>(p: *mut c_void, len: CK_ULONG, what: &str) -> Result<*mut T, Error> {
    let p = p as *mut T;
    if p.is_null() || usize::try_from(len) != Ok(size_of::<T>()) || !p.is_aligned() {
        return Err(CoreError::MechanismParamInvalid(what.to_owned()).into());
    }
    Ok(p)
}

/// A NUL-terminated string the caller may leave out (NULL).
///
/// # Safety
/// A non-null `p` points to a NUL-terminated string that stays unchanged for `'a`.
pub unsafe fn c_str<'a>(p: *const u8) -> Option<&'a std::ffi::CStr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null; NUL-terminated per the contract (alignment 1).
    Some(unsafe { std::ffi::CStr::from_ptr(p as *const std::ffi::c_char) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki_sys::*;

    /// A `CK_ULONG`-aligned buffer and a pointer one byte into it.
    fn misaligned(buf: &mut [CK_ULONG; 4]) -> *mut CK_ULONG {
        (buf.as_mut_ptr() as *mut u8).wrapping_add(1) as *mut CK_ULONG
    }

    #[test]
    fn typed_pointers_must_be_aligned() {
        let mut buf = [0 as CK_ULONG; 4];
        let bad = misaligned(&mut buf);
        let rv = |r: Result<(), Error>| r.map_or_else(|e| e.rv(), |_| CKR_OK);
        // SAFETY: the misaligned pointer is refused before any access.
        unsafe {
            assert_eq!(rv(out_ref(bad, "x").map(drop)), CKR_ARGUMENTS_BAD);
            assert_eq!(rv(reference(bad, "x").map(drop)), CKR_ARGUMENTS_BAD);
            assert_eq!(rv(optional(bad, "x").map(drop)), CKR_ARGUMENTS_BAD);
            assert_eq!(rv(array(bad, 2, 4, "x").map(drop)), CKR_ARGUMENTS_BAD);
            assert_eq!(rv(array_mut(bad, 2, 4, "x").map(drop)), CKR_ARGUMENTS_BAD);
            assert_eq!(rv(out_array(bad, 2, "x")), CKR_ARGUMENTS_BAD);
            let len = size_of::<CK_ULONG>() as CK_ULONG;
            let p = bad as *mut c_void;
            assert_eq!(
                rv(param::<CK_ULONG>(p, len, "x").map(drop)),
                CKR_MECHANISM_PARAM_INVALID
            );
            assert_eq!(
                rv(param_mut::<CK_ULONG>(p, len, "x").map(drop)),
                CKR_MECHANISM_PARAM_INVALID
            );
            // Nothing is read for a count of 0, so alignment does not matter.
            assert_eq!(array(bad, 0, 4, "x").unwrap().len(), 0);
            assert_eq!(rv(out_array(bad, 0, "x")), CKR_OK);
            // Aligned pointers pass.
            let good = buf.as_mut_ptr();
            assert_eq!(rv(out_ref(good, "x").map(drop)), CKR_OK);
            assert_eq!(array(good, 4, 4, "x").unwrap().len(), 4);
            let gp = good as *mut c_void;
            assert_eq!(*param::<CK_ULONG>(gp, len, "x").unwrap(), 0);
        }
    }

    #[test]
    fn null_lengths_and_caps() {
        let rv = |r: Result<usize, Error>| r.map_or_else(|e| e.rv(), |_| CKR_OK);
        let byte = [7u8; 8];
        // SAFETY: NULL and oversized lengths are refused before any access; the valid
        // calls read within `byte`.
        unsafe {
            assert_eq!(bytes(std::ptr::null(), 0, 8, "x").unwrap(), &[] as &[u8]);
            let null = bytes(std::ptr::null(), 1, 8, "x").map(<[u8]>::len);
            assert_eq!(rv(null), CKR_ARGUMENTS_BAD);
            assert_eq!(
                rv(bytes(byte.as_ptr(), 9, 8, "x").map(<[u8]>::len)),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(bytes(byte.as_ptr(), 8, 8, "x").unwrap(), &byte);
            let huge = data(byte.as_ptr(), 1 << 40, "x").map(<[u8]>::len);
            assert_eq!(rv(huge), CKR_DATA_LEN_RANGE);
            let overflow =
                array(std::ptr::dangling::<CK_ULONG>(), 1 << 62, usize::MAX, "x").map(<[_]>::len);
            assert_eq!(rv(overflow), CKR_ARGUMENTS_BAD);
            let p = byte.as_ptr() as *mut c_void;
            let short = param::<u32>(p, 3, "x").map(|_| 0);
            assert_eq!(rv(short), CKR_MECHANISM_PARAM_INVALID);
            let null = param::<u32>(std::ptr::null(), 4, "x").map(|_| 0);
            assert_eq!(rv(null), CKR_MECHANISM_PARAM_INVALID);
        }
    }

    #[test]
    fn writing_no_items_touches_nothing() {
        // SAFETY: no items, so the NULL pointer is never used.
        unsafe { write_array::<u8>(std::ptr::null_mut(), &[]) };
        let mut out = [0u8; 3];
        // SAFETY: out has room for the three bytes.
        unsafe { write_array(out.as_mut_ptr(), &[1, 2, 3]) };
        assert_eq!(out, [1, 2, 3]);
    }
}
