//! Random number generation (PKCS#11 3.0 §5.19).

use crate::boundary::Error;
use crate::guard::{self, MAX_DATA};
use cryptoki_sys::*;
use hsm_core::Error as CoreError;

entry_points! {
    /// # Safety
    /// `out` writable for `len`.
    pub unsafe extern "C" fn C_GenerateRandom(
        session: CK_SESSION_HANDLE,
        out: *mut CK_BYTE,
        len: CK_ULONG,
    ) -> CK_RV = |h| {
        let n = usize::try_from(len).map_err(|_| CoreError::DataLenRange)?;
        if n > MAX_DATA {
            return Err(CoreError::DataLenRange.into());
        }
        if n == 0 {
            h.session_info(session as u64)?;
            return Ok(());
        }
        if out.is_null() {
            return Err(Error::bad("pRandomData is NULL"));
        }
        // SAFETY: out is writable for len bytes (capped) per the contract.
        let buf = unsafe { guard::array_mut(out, len, MAX_DATA, "pRandomData") }?;
        let random = h.generate_random(session as u64, buf.len())?;
        if random.len() != buf.len() {
            return Err(Error::Core(CoreError::DeviceError(
                "the token answered with the wrong number of random bytes".into(),
            )));
        }
        buf.copy_from_slice(&random);
        Ok(())
    }

    /// # Safety
    /// `seed` readable for `len`.
    pub unsafe extern "C" fn C_SeedRandom(
        session: CK_SESSION_HANDLE,
        seed: *mut CK_BYTE,
        len: CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        unsafe { guard::bytes(seed, len, MAX_DATA, "pSeed") }?;
        Ok(h.seed_random(session as u64)?)
    }
}
