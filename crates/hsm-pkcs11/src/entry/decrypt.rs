//! Decryption (PKCS#11 3.0 §5.10). The output calls answer with [`two_call`] inside
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
    pub unsafe extern "C" fn C_DecryptInit(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.decrypt_init(session as u64, &mech, key as u64)?)
    }

    /// # Safety
    /// As C_Encrypt.
    pub unsafe extern "C" fn C_Decrypt(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Decrypt, || {
            let s = session as u64;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pEncryptedData") }?;
            let query = || Ok(h.decrypt_len(s, input.len())?);
            let into = |buf: &mut [u8]| Ok(h.decrypt_into(s, input, buf)?);
            let within = |cap| Ok(h.decrypt_within(s, input, cap)?);
            // SAFETY: forwarded contract.
            unsafe { two_call_into(input, out, ol, "pulDataLen is NULL", query, into, within) }
        })
    }

    /// # Safety
    /// As C_EncryptUpdate.
    pub unsafe extern "C" fn C_DecryptUpdate(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        let s = session as u64;
        ending(h, session, OpKind::Decrypt, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pEncryptedPart") }?;
            // ECB and CBC hand back whole blocks at once; the other modes answer at the
            // end. A length query (NULL output) consumes nothing.
            let needed = h.update_len(s, false, input.len())?;
            let produce = || Ok(h.decrypt_update(s, input)?);
            // SAFETY: forwarded contract.
            unsafe { two_call(out, ol, "pulPartLen is NULL", needed, produce) }
        })
    }

    /// # Safety
    /// As C_EncryptFinal.
    pub unsafe extern "C" fn C_DecryptFinal(
        session: CK_SESSION_HANDLE,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Decrypt, || {
            let s = session as u64;
            let needed = h.decrypt_len(s, 0)?;
            let produce = || Ok(h.decrypt_final(s)?);
            // SAFETY: forwarded contract.
            unsafe { two_call(out, ol, "pulLastPartLen is NULL", needed, produce) }
        })
    }
}
