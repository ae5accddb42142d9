//! Slot and token management (PKCS#11 3.0 §5.5).

use super::{pin, two_call};
use crate::boundary::{Error, pad};
use crate::guard;
use crate::token_flags::pin_flags;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::types::MechanismType;
use std::ffi::c_void;

/// Hardware and firmware version: the library's.
const VERSION: CK_VERSION = CK_VERSION {
    major: crate::LIBRARY_VERSION.0,
    minor: crate::LIBRARY_VERSION.1,
};

entry_points! {
    /// # Safety
    /// `list` null or writable for `*count` ids; `count` valid.
    pub unsafe extern "C" fn C_GetSlotList(
        token_present: CK_BBOOL,
        list: *mut CK_SLOT_ID,
        count: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        let slots: Vec<CK_SLOT_ID> = h
            .slot_list(token_present != 0)?
            .into_iter()
            .map(|s| s as CK_SLOT_ID)
            .collect();
        // SAFETY: forwarded contract.
        unsafe { two_call(list, count, "pulCount is NULL", slots.len(), || Ok(&slots)) }
    }

    /// # Safety
    /// `info` null or writable.
    pub unsafe extern "C" fn C_GetSlotInfo(
        slot: CK_SLOT_ID,
        info: *mut CK_SLOT_INFO,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let info = unsafe { guard::out_ref(info, "pInfo is NULL") }?;
        let s = h.slot_info(slot as u64)?;
        pad(&mut info.slotDescription, &s.description);
        pad(&mut info.manufacturerID, crate::MANUFACTURER);
        info.flags = if s.token_present {
            CKF_TOKEN_PRESENT
        } else {
            0
        };
        info.hardwareVersion = VERSION;
        info.firmwareVersion = VERSION;
        Ok(())
    }

    /// # Safety
    /// `info` null or writable.
    pub unsafe extern "C" fn C_GetTokenInfo(
        slot: CK_SLOT_ID,
        info: *mut CK_TOKEN_INFO,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let info = unsafe { guard::out_ref(info, "pInfo is NULL") }?;
        let t = h.token_info(slot as u64)?;
        pad(&mut info.label, &t.label);
        pad(&mut info.manufacturerID, crate::MANUFACTURER);
        pad(&mut info.model, "FerroHSM");
        pad(&mut info.serialNumber, &t.serial);
        let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED | pin_flags(&t);
        if t.error_state {
            flags |= CKF_ERROR_STATE;
        }
        if t.initialized {
            flags |= CKF_TOKEN_INITIALIZED;
        }
        if t.user_pin_initialized {
            flags |= CKF_USER_PIN_INITIALIZED;
        }
        info.flags = flags;
        info.ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
        info.ulSessionCount = t.sessions as CK_ULONG;
        info.ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
        info.ulRwSessionCount = t.rw_sessions as CK_ULONG;
        info.ulMaxPinLen = t.max_pin as CK_ULONG;
        info.ulMinPinLen = t.min_pin as CK_ULONG;
        info.ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
        info.ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
        info.ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info.ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info.hardwareVersion = VERSION;
        info.firmwareVersion = VERSION;
        // No CKF_CLOCK_ON_TOKEN: the field is blank.
        info.utcTime = [b' '; 16];
        Ok(())
    }

    /// # Safety
    /// Pointers as PKCS#11 defines them.
    pub unsafe extern "C" fn C_WaitForSlotEvent(
        flags: CK_FLAGS,
        slot: *mut CK_SLOT_ID,
        reserved: *mut c_void,
    ) -> CK_RV = |_| {
        let _ = slot;
        if !reserved.is_null() {
            return Err(Error::bad("pReserved must be NULL"));
        }
        // Slots of a software token never change by themselves.
        if flags & CKF_DONT_BLOCK != 0 {
            Err(CoreError::NoEvent.into())
        } else {
            Err(Error::FunctionNotSupported)
        }
    }

    /// # Safety
    /// `list` null or writable for `*count`; `count` valid.
    pub unsafe extern "C" fn C_GetMechanismList(
        slot: CK_SLOT_ID,
        list: *mut CK_MECHANISM_TYPE,
        count: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        let mechs: Vec<CK_MECHANISM_TYPE> = h
            .mechanism_list(slot as u64)?
            .into_iter()
            .map(|m| m.0 as CK_MECHANISM_TYPE)
            .collect();
        // SAFETY: forwarded contract.
        unsafe { two_call(list, count, "pulCount is NULL", mechs.len(), || Ok(&mechs)) }
    }

    /// # Safety
    /// `info` null or writable.
    pub unsafe extern "C" fn C_GetMechanismInfo(
        slot: CK_SLOT_ID,
        mech: CK_MECHANISM_TYPE,
        info: *mut CK_MECHANISM_INFO,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let info = unsafe { guard::out_ref(info, "pInfo is NULL") }?;
        let i = h.mechanism_info(slot as u64, MechanismType(mech as u64))?;
        info.ulMinKeySize = i.min_key as CK_ULONG;
        info.ulMaxKeySize = i.max_key as CK_ULONG;
        info.flags = i.flags as CK_FLAGS;
        Ok(())
    }

    /// # Safety
    /// `so_pin` readable for `len`; `label` null or 32 readable bytes.
    pub unsafe extern "C" fn C_InitToken(
        slot: CK_SLOT_ID,
        so_pin: *mut CK_UTF8CHAR,
        len: CK_ULONG,
        label: *mut CK_UTF8CHAR,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let so_pin = unsafe { pin(so_pin, len, true) }?;
        // SAFETY: PKCS#11 fixes the label at 32 bytes; NULL is refused.
        let label = unsafe { guard::bytes(label, 32, 32, "pLabel is NULL") }?;
        Ok(h.init_token(slot as u64, so_pin, crate::label::label_of(label))?)
    }

    /// # Safety
    /// `p` readable for `len`.
    pub unsafe extern "C" fn C_InitPIN(
        session: CK_SESSION_HANDLE,
        p: *mut CK_UTF8CHAR,
        len: CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let p = unsafe { pin(p, len, true) }?;
        Ok(h.init_pin(session as u64, p)?)
    }

    /// # Safety
    /// `old` readable for `old_len`, `new` for `new_len`.
    pub unsafe extern "C" fn C_SetPIN(
        session: CK_SESSION_HANDLE,
        old: *mut CK_UTF8CHAR,
        old_len: CK_ULONG,
        new: *mut CK_UTF8CHAR,
        new_len: CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let old = unsafe { pin(old, old_len, false) }?;
        // SAFETY: forwarded contract.
        let new = unsafe { pin(new, new_len, true) }?;
        Ok(h.set_pin(session as u64, old, new)?)
    }
}
