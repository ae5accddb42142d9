//! Verifying signatures and MACs (PKCS#11 3.0 §5.15). A failed call ends the operation
//! ([`ending`]). Verifying with recovery is not built.

use super::ending;
use crate::guard::{bytes, data};
use crate::mechanism::mechanism;
use cryptoki_sys::*;
use hsm_core::OpKind;

/// Largest signature or MAC taken.
const MAX_SIGNATURE: usize = 64 * 1024;

entry_points! {
    /// # Safety
    /// `m` valid.
    pub unsafe extern "C" fn C_VerifyInit(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.verify_init(session as u64, &mech, key as u64)?)
    }

    /// # Safety
    /// `d` readable for `dl`, `sig` for `sl`.
    pub unsafe extern "C" fn C_Verify(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        sig: *mut CK_BYTE,
        sl: CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Verify, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pData") }?;
            // SAFETY: forwarded contract.
            let sig = unsafe { bytes(sig, sl, MAX_SIGNATURE, "pSignature") }?;
            Ok(h.verify(session as u64, input, sig)?)
        })
    }

    /// # Safety
    /// `d` readable for `dl`.
    pub unsafe extern "C" fn C_VerifyUpdate(
        session: CK_SESSION_HANDLE,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Verify, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            Ok(h.verify_update(session as u64, input)?)
        })
    }

    /// # Safety
    /// `sig` readable for `sl`.
    pub unsafe extern "C" fn C_VerifyFinal(
        session: CK_SESSION_HANDLE,
        sig: *mut CK_BYTE,
        sl: CK_ULONG,
    ) -> CK_RV = |h| {
        ending(h, session, OpKind::Verify, || {
            // SAFETY: forwarded contract.
            let sig = unsafe { bytes(sig, sl, MAX_SIGNATURE, "pSignature") }?;
            Ok(h.verify_final(session as u64, sig)?)
        })
    }
}

not_supported! {
    C_VerifyRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_VerifyRecover(
        a1: CK_SESSION_HANDLE,
        a2: *mut CK_BYTE,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: *mut CK_ULONG,
    );
}
