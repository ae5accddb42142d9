//! Encryption (PKCS#11 3.0 §5.8). The output calls answer with [`two_call`] inside
//! [`ending`]: a length query or a short buffer leaves the operation active, any other
//! failure ends it.

use super::{ending, two_call, two_call_into};
use crate::guard::data;
use crate::mechanism::mechanism;
use cryptoki_sys::*;
use hsm_core::OpKind;

entry_points! {
    /// # Safety
    /// `m` valid.
    pub unsafe extern "C" fn C_EncryptInit(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.encrypt_init(session as u64, &mech, key as u64)?)
    }

    /// # Safety
    /// `d` readable for `dl`; `out` null or writable for `*ol`; `ol` valid.
    pub unsafe extern "C" fn C_Encrypt(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Encrypt, || {
            let s = session as u64;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pData") }?;
            let query = || Ok(h.encrypt_len(s, input.len())?);
            let into = |buf: &mut [u8]| Ok(h.encrypt_into(s, input, buf)?);
            let within = |cap| Ok(h.encrypt_within(s, input, cap)?);
            // SAFETY: forwarded contract.
            unsafe { two_call_into(input, out, ol, "pulEncryptedDataLen is NULL", query, into, within) }
        })
    }

    /// # Safety
    /// `d` readable for `dl`; `out` null or writable for `*ol`; `ol` valid.
    pub unsafe extern "C" fn C_EncryptUpdate(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        let s = session as u64;
        ending(h, session, OpKind::Encrypt, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            // ECB and CBC hand back whole blocks at once; the other modes answer at the
            // end. A length query (NULL output) consumes nothing.
            let needed = h.update_len(s, true, input.len())?;
            let produce = || Ok(h.encrypt_update(s, input)?);
            // SAFETY: forwarded contract.
            unsafe { two_call(out, ol, "pulEncryptedPartLen is NULL", needed, produce) }
        })
    }

    /// # Safety
    /// `out` null or writable for `*ol`; `ol` valid.
    pub unsafe extern "C" fn C_EncryptFinal(
        session: CK_SESSION_HANDLE,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Encrypt, || {
            let s = session as u64;
            let needed = h.encrypt_len(s, 0)?;
            let produce = || Ok(h.encrypt_final(s)?);
            // SAFETY: forwarded contract.
            unsafe { two_call(out, ol, "pulLastEncryptedPartLen is NULL", needed, produce) }
        })
    }
}
