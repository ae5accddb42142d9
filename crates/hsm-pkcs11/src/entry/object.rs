//! Object management (PKCS#11 3.0 §5.7).

use crate::boundary::Error;
use crate::guard;
use crate::template::{self, parse};
use cryptoki_sys::*;
use hsm_core::Error as CoreError;

entry_points! {
    /// # Safety
    /// `t` readable for `n` attributes; `out` null or writable.
    pub unsafe extern "C" fn C_CreateObject(
        session: CK_SESSION_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        out: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let out = unsafe { guard::out_ref(out, "phObject is NULL") }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.create_object(session as u64, template)? as CK_OBJECT_HANDLE;
        Ok(())
    }

    /// # Safety
    /// As C_CreateObject.
    pub unsafe extern "C" fn C_CopyObject(
        session: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        out: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let out = unsafe { guard::out_ref(out, "phNewObject is NULL") }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.copy_object(session as u64, obj as u64, template)? as CK_OBJECT_HANDLE;
        Ok(())
    }

    pub extern "C" fn C_DestroyObject(
        session: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        Ok(h.destroy_object(session as u64, obj as u64)?)
    }

    /// # Safety
    /// `size` null or writable.
    pub unsafe extern "C" fn C_GetObjectSize(
        session: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        size: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let size = unsafe { guard::out_ref(size, "pulSize is NULL") }?;
        *size = h.object_size(session as u64, obj as u64)? as CK_ULONG;
        Ok(())
    }

    /// # Safety
    /// `t` points to `n` attributes whose non-null values are writable for their lengths.
    pub unsafe extern "C" fn C_GetAttributeValue(
        session: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV = |h| {
        if t.is_null() && n > 0 {
            return Err(Error::bad("pTemplate is NULL"));
        }
        let attrs = h.object_attributes(session as u64, obj as u64)?;
        // SAFETY: forwarded contract.
        unsafe { template::fill(&attrs, t, n) }
    }

    /// # Safety
    /// `t` readable for `n` attributes.
    pub unsafe extern "C" fn C_SetAttributeValue(
        session: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        Ok(h.set_attributes(session as u64, obj as u64, template)?)
    }

    /// # Safety
    /// `t` readable for `n` attributes.
    pub unsafe extern "C" fn C_FindObjectsInit(
        session: CK_SESSION_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        Ok(h.find_init(session as u64, template)?)
    }

    /// # Safety
    /// `out` writable for `max` handles; `count` writable.
    pub unsafe extern "C" fn C_FindObjects(
        session: CK_SESSION_HANDLE,
        out: *mut CK_OBJECT_HANDLE,
        max: CK_ULONG,
        count: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let count = unsafe { guard::out_ref(count, "pulObjectCount is NULL") }?;
        guard::out_array(out, max, "phObject is NULL")?;
        let found: Vec<CK_OBJECT_HANDLE> = h
            .find_next(session as u64, max as usize)?
            .into_iter()
            .map(|f| f as CK_OBJECT_HANDLE)
            .collect();
        // The answer may come from a server: never write past the caller's array.
        if found.len() > max as usize {
            return Err(CoreError::DeviceError("the token answered with too many handles".into()).into());
        }
        // SAFETY: out passed out_array and is writable for max >= found.len() handles.
        unsafe { guard::write_array(out, &found) };
        *count = found.len() as CK_ULONG;
        Ok(())
    }

    pub extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV = |h| {
        Ok(h.find_final(session as u64)?)
    }
}
