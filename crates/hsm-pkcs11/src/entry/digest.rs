//! Message digesting (PKCS#11 3.0 §5.12). The output calls answer with [`two_call`]
//! inside [`ending`]: a length query or a short buffer leaves the operation active, any
//! other failure ends it.

use super::{ending, two_call, two_call_within};
use crate::guard::data;
use crate::mechanism::mechanism;
use cryptoki_sys::*;
use hsm_core::OpKind;

entry_points! {
    /// # Safety
    /// `m` valid.
    pub unsafe extern "C" fn C_DigestInit(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.digest_init(session as u64, &mech)?)
    }

    /// # Safety
    /// As C_Encrypt.
    pub unsafe extern "C" fn C_Digest(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Digest, || {
            let s = session as u64;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pData") }?;
            let query = || Ok(h.digest_len(s)?);
            let within = |cap| Ok(h.digest_within(s, input, cap)?);
            // SAFETY: forwarded contract.
            unsafe { two_call_within(out, ol, "pulDigestLen is NULL", query, within) }
        })
    }

    /// # Safety
    /// `d` readable for `dl`.
    pub unsafe extern "C" fn C_DigestUpdate(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Digest, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            Ok(h.digest_update(session as u64, input)?)
        })
    }

    pub extern "C" fn C_DigestKey(
        session: CK_SESSION_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        Ok(h.digest_key(session as u64, key as u64)?)
    }

    /// # Safety
    /// As C_EncryptFinal.
    pub unsafe extern "C" fn C_DigestFinal(
        session: CK_SESSION_HANDLE,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Digest, || {
            let s = session as u64;
            let needed = h.digest_len(s)?;
            let produce = || Ok(h.digest_final(s)?);
            // SAFETY: forwarded contract.
            unsafe { two_call(out, ol, "pulDigestLen is NULL", needed, produce) }
        })
    }
}
