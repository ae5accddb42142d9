//! Key management (PKCS#11 3.0 §5.18): generation, wrapping, unwrapping, derivation.

use super::two_call;
use crate::guard;
use crate::mechanism::{kbkdf_write_handles, mechanism};
use crate::template::parse;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::Mechanism;

/// Largest wrapped key taken.
const MAX_WRAPPED: usize = 64 * 1024;

entry_points! {
    /// # Safety
    /// `m` valid; `t` readable for `n`; `out` writable.
    pub unsafe extern "C" fn C_GenerateKey(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        out: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let out = unsafe { guard::out_ref(out, "phKey is NULL") }?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.generate_key(session as u64, &mech, template)? as CK_OBJECT_HANDLE;
        Ok(())
    }

    /// # Safety
    /// `m` valid; templates readable; outputs writable.
    pub unsafe extern "C" fn C_GenerateKeyPair(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        pt: *mut CK_ATTRIBUTE,
        pn: CK_ULONG,
        st: *mut CK_ATTRIBUTE,
        sn: CK_ULONG,
        pub_out: *mut CK_OBJECT_HANDLE,
        priv_out: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let pub_out = unsafe { guard::out_ref(pub_out, "phPublicKey is NULL") }?;
        // SAFETY: null rejected.
        let priv_out = unsafe { guard::out_ref(priv_out, "phPrivateKey is NULL") }?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // SAFETY: forwarded contract.
        let public = unsafe { parse(pt, pn) }?;
        // SAFETY: forwarded contract.
        let private = unsafe { parse(st, sn) }?;
        let (p, s) = h.generate_key_pair(session as u64, &mech, public, private)?;
        *pub_out = p as CK_OBJECT_HANDLE;
        *priv_out = s as CK_OBJECT_HANDLE;
        Ok(())
    }

    /// A length query (NULL output) wraps too: the length is the wrapped key's.
    ///
    /// # Safety
    /// `m` valid; `out` null or writable for `*ol`; `ol` valid.
    pub unsafe extern "C" fn C_WrapKey(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // A NULL or misaligned length is refused before the key is wrapped.
        // SAFETY: forwarded contract; only checked here, written by two_call.
        unsafe { guard::out_ref(ol, "pulWrappedKeyLen is NULL") }?;
        let wrapped = h.wrap_key(session as u64, &mech, wrapping as u64, key as u64)?;
        // SAFETY: forwarded contract.
        unsafe { two_call(out, ol, "pulWrappedKeyLen is NULL", wrapped.len(), || Ok(&wrapped)) }
    }

    /// # Safety
    /// `m` valid; `w` readable for `wl`; `t` readable for `n`; `out` writable.
    pub unsafe extern "C" fn C_UnwrapKey(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        unwrapping: CK_OBJECT_HANDLE,
        w: *mut CK_BYTE,
        wl: CK_ULONG,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        out: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let out = unsafe { guard::out_ref(out, "phKey is NULL") }?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // SAFETY: forwarded contract; a wrapped key is small.
        let wrapped = unsafe { guard::bytes(w, wl, MAX_WRAPPED, "pWrappedKey") }
            .map_err(|_| CoreError::WrappedKeyLenRange)?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.unwrap_key(session as u64, &mech, unwrapping as u64, wrapped, template)?
            as CK_OBJECT_HANDLE;
        Ok(())
    }

    /// # Safety
    /// `m` valid; `t` readable for `n`; `out` writable.
    pub unsafe extern "C" fn C_DeriveKey(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        base: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        out: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let out = unsafe { guard::out_ref(out, "phKey is NULL") }?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        if let Mechanism::Kbkdf { .. } = mech {
            // SP 800-108: the keys of CK_DERIVED_KEY get their handles too, all or none.
            let result = h.derive_keys(session as u64, &mech, base as u64, template);
            // SAFETY: `m` parsed as an SP 800-108 mechanism above.
            unsafe { kbkdf_write_handles(m, result.as_deref().ok().map(|h| &h[1..])) };
            let first = result?.first().copied();
            *out = first.ok_or(CoreError::DeviceError("the token answered with no handle".into()))?
                as CK_OBJECT_HANDLE;
            return Ok(());
        }
        *out = h.derive_key(session as u64, &mech, base as u64, template)? as CK_OBJECT_HANDLE;
        Ok(())
    }
}
