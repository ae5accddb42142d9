//! Signing and MACing (PKCS#11 3.0 §5.13). The output calls answer with [`two_call`]
//! inside [`ending`]: a length query or a short buffer leaves the operation active, any
//! other failure ends it. Signing with recovery is not built.

use super::{ending, two_call, two_call_within};
use crate::guard::data;
use crate::mechanism::mechanism;
use cryptoki_sys::*;
use hsm_core::OpKind;

entry_points! {
    /// # Safety
    /// `m` valid.
    pub unsafe extern "C" fn C_SignInit(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.sign_init(session as u64, &mech, key as u64)?)
    }

    /// # Safety
    /// `d` readable for `dl`; `sig` null or writable for `*sl`; `sl` valid.
    pub unsafe extern "C" fn C_Sign(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        sig: *mut CK_BYTE,
        sl: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Sign, || {
            let s = session as u64;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pData") }?;
            let query = || Ok(h.sign_len(s)?);
            let within = |cap| Ok(h.sign_within(s, input, cap)?);
            // SAFETY: forwarded contract.
            unsafe { two_call_within(sig, sl, "pulSignatureLen is NULL", query, within) }
        })
    }

    /// # Safety
    /// `d` readable for `dl`.
    pub unsafe extern "C" fn C_SignUpdate(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Sign, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            Ok(h.sign_update(session as u64, input)?)
        })
    }

    /// # Safety
    /// `sig` null or writable for `*sl`; `sl` valid.
    pub unsafe extern "C" fn C_SignFinal(
        session: CK_SESSION_HANDLE,
        sig: *mut CK_BYTE,
        sl: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Sign, || {
            let s = session as u64;
            let needed = h.sign_len(s)?;
            let produce = || Ok(h.sign_final(s)?);
            // SAFETY: forwarded contract.
            unsafe { two_call(sig, sl, "pulSignatureLen is NULL", needed, produce) }
        })
    }
}

not_supported! {
    C_SignRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_SignRecover(
        a1: CK_SESSION_HANDLE,
        a2: *mut CK_BYTE,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: *mut CK_ULONG,
    );
}
