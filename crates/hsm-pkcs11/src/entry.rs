//! The built `C_*` entry points. Each is a shim: pointer guards, one call into the token
//! runtime (`hsm_core::Hsm`), error mapping — inside the panic boundary.

use crate::boundary::{Error, ffi, out_ref, pad};
use crate::state::hsm;
use crate::template::{self, data, mechanism, parse, produce, slice};
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::runtime::PinStatus;
use hsm_core::types::{MechanismType, SecretString};
use hsm_core::{LoginKind, OpKind};
use std::ffi::c_void;

/// Every entry point built here (the rest are in `stubs`).
pub const IMPLEMENTED: &[&str] = &[
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetInterfaceList",
    "C_GetInterface",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_WaitForSlotEvent",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_SessionCancel",
    "C_MessageEncryptInit",
    "C_EncryptMessage",
    "C_MessageEncryptFinal",
    "C_MessageDecryptInit",
    "C_DecryptMessage",
    "C_MessageDecryptFinal",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_GetObjectSize",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_GenerateKey",
    "C_GenerateKeyPair",
    "C_SignInit",
    "C_Sign",
    "C_SignUpdate",
    "C_SignFinal",
    "C_VerifyInit",
    "C_Verify",
    "C_VerifyUpdate",
    "C_VerifyFinal",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_WrapKey",
    "C_UnwrapKey",
    "C_DeriveKey",
    "C_GenerateRandom",
    "C_SeedRandom",
    "C_GetFunctionStatus",
    "C_CancelFunction",
];

/// Runs the body of a call that belongs to an operation (`C_Encrypt`, `C_SignUpdate`,
/// `C_DigestFinal`, …) and ends that operation when the call fails with anything but
/// `CKR_BUFFER_TOO_SMALL`, as PKCS#11 says: the next `*Init` then succeeds.
fn ending<T>(
    h: &hsm_core::Hsm,
    session: u64,
    kind: OpKind,
    body: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    let r = body();
    if let Err(e) = &r {
        if !matches!(e, Error::Core(CoreError::BufferTooSmall(_))) {
            let _ = h.cancel(session, &[kind]);
        }
    }
    r
}

/// Writes a list with the two-call length convention.
///
/// # Safety
/// `count` is valid; a non-null `out` is writable for `*count` items.
unsafe fn write_list<T: Copy>(items: &[T], out: *mut T, count: *mut CK_ULONG) -> Result<(), Error> {
    // SAFETY: null rejected; valid per the contract.
    let n = unsafe { out_ref(count, "pulCount is NULL") }?;
    if out.is_null() {
        *n = items.len() as CK_ULONG;
        return Ok(());
    }
    if (*n as usize) < items.len() {
        *n = items.len() as CK_ULONG;
        return Err(CoreError::BufferTooSmall(items.len()).into());
    }
    // SAFETY: out is writable for *n >= items.len() items.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), out, items.len()) };
    *n = items.len() as CK_ULONG;
    Ok(())
}

/// A PIN argument. NULL means a protected authentication path, which this token lacks.
///
/// # Safety
/// A non-null `pin` points to `len` readable bytes.
unsafe fn pin(pin: *const CK_UTF8CHAR, len: CK_ULONG, strict: bool) -> Result<SecretString, Error> {
    if pin.is_null() {
        return Err(Error::bad(
            "NULL PIN: this token has no protected authentication path",
        ));
    }
    // SAFETY: forwarded contract; capped at 1 KiB.
    let bytes = unsafe { slice(pin, len, 1024, "PIN") }.map_err(|_| CoreError::PinLenRange)?;
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(SecretString::new(s.to_owned())),
        Err(_) if strict => Err(CoreError::PinInvalid("a PIN must be UTF-8").into()),
        // A wrong PIN stays wrong; it is still counted.
        Err(_) => Ok(SecretString::new(
            String::from_utf8_lossy(bytes).into_owned(),
        )),
    }
}

const VERSION: CK_VERSION = CK_VERSION {
    major: crate::LIBRARY_VERSION.0,
    minor: crate::LIBRARY_VERSION.1,
};

// ------------------------------------------------------------------ slots and tokens

/// # Safety
/// `list` null or writable for `*count` ids; `count` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotList(
    token_present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_GetSlotList", || {
        let slots: Vec<CK_SLOT_ID> = hsm()?
            .slot_list(token_present != 0)
            .into_iter()
            .map(|s| s as CK_SLOT_ID)
            .collect();
        // SAFETY: forwarded contract.
        unsafe { write_list(&slots, list, count) }
    })
}

/// # Safety
/// `info` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    ffi("C_GetSlotInfo", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let info = unsafe { out_ref(info, "pInfo is NULL") }?;
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
    })
}

/// # Safety
/// `info` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    ffi("C_GetTokenInfo", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let info = unsafe { out_ref(info, "pInfo is NULL") }?;
        let t = h.token_info(slot as u64)?;
        pad(&mut info.label, &t.label);
        pad(&mut info.manufacturerID, crate::MANUFACTURER);
        pad(&mut info.model, "FerroHSM");
        pad(&mut info.serialNumber, &t.serial);
        let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED;
        if t.error_state {
            flags |= CKF_ERROR_STATE;
        }
        if t.initialized {
            flags |= CKF_TOKEN_INITIALIZED;
        }
        if t.user_pin_initialized {
            flags |= CKF_USER_PIN_INITIALIZED;
        }
        flags |= pin_flags(
            t.user_pin,
            CKF_USER_PIN_COUNT_LOW,
            CKF_USER_PIN_FINAL_TRY,
            CKF_USER_PIN_LOCKED,
        );
        flags |= pin_flags(
            t.so_pin,
            CKF_SO_PIN_COUNT_LOW,
            CKF_SO_PIN_FINAL_TRY,
            CKF_SO_PIN_LOCKED,
        );
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
    })
}

/// The `CKF_*_PIN_*` flags of a PIN status.
fn pin_flags(status: PinStatus, low: CK_FLAGS, last: CK_FLAGS, locked: CK_FLAGS) -> CK_FLAGS {
    match status {
        PinStatus::Clear => 0,
        PinStatus::CountLow => low,
        PinStatus::FinalTry => last | low,
        PinStatus::Locked => locked,
    }
}

/// # Safety
/// `list` null or writable for `*count`; `count` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_GetMechanismList", || {
        let mechs: Vec<CK_MECHANISM_TYPE> = hsm()?
            .mechanism_list(slot as u64)?
            .into_iter()
            .map(|m| m.0 as CK_MECHANISM_TYPE)
            .collect();
        // SAFETY: forwarded contract.
        unsafe { write_list(&mechs, list, count) }
    })
}

/// # Safety
/// `info` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mech: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    ffi("C_GetMechanismInfo", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let info = unsafe { out_ref(info, "pInfo is NULL") }?;
        let i = h.mechanism_info(slot as u64, MechanismType(mech as u64))?;
        info.ulMinKeySize = i.min_key as CK_ULONG;
        info.ulMaxKeySize = i.max_key as CK_ULONG;
        info.flags = i.flags as CK_FLAGS;
        Ok(())
    })
}

/// # Safety
/// `so_pin` readable for `len`; `label` null or 32 readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    so_pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> CK_RV {
    ffi("C_InitToken", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let so_pin = unsafe { pin(so_pin, len, true) }?;
        if label.is_null() {
            return Err(Error::bad("pLabel is NULL"));
        }
        // SAFETY: PKCS#11 fixes the label at 32 bytes.
        let label = unsafe { std::slice::from_raw_parts(label, 32) };
        Ok(h.init_token(slot as u64, so_pin, crate::label::label_of(label))?)
    })
}

/// # Safety
/// `p` readable for `len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_InitPIN(
    session: CK_SESSION_HANDLE,
    p: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    ffi("C_InitPIN", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let p = unsafe { pin(p, len, true) }?;
        Ok(h.init_pin(session as u64, p)?)
    })
}

/// # Safety
/// `old` readable for `old_len`, `new` for `new_len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetPIN(
    session: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> CK_RV {
    ffi("C_SetPIN", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let old = unsafe { pin(old, old_len, false) }?;
        // SAFETY: forwarded contract.
        let new = unsafe { pin(new, new_len, true) }?;
        Ok(h.set_pin(session as u64, old, new)?)
    })
}

/// # Safety
/// Pointers as PKCS#11 defines them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    flags: CK_FLAGS,
    slot: *mut CK_SLOT_ID,
    reserved: *mut c_void,
) -> CK_RV {
    let _ = slot;
    ffi("C_WaitForSlotEvent", || {
        hsm()?;
        if !reserved.is_null() {
            return Err(Error::bad("pReserved must be NULL"));
        }
        // Slots of a software token never change by themselves.
        if flags & CKF_DONT_BLOCK != 0 {
            Err(CoreError::NoEvent.into())
        } else {
            Err(Error::FunctionNotSupported)
        }
    })
}

// ------------------------------------------------------------------ sessions

/// # Safety
/// `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    app: *mut c_void,
    notify: CK_NOTIFY,
    out: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    let _ = (app, notify);
    ffi("C_OpenSession", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let out = unsafe { out_ref(out, "phSession is NULL") }?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(CoreError::SessionParallelNotSupported.into());
        }
        *out = h.open_session(slot as u64, flags & CKF_RW_SESSION != 0)? as CK_SESSION_HANDLE;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV {
    ffi("C_CloseSession", || {
        Ok(hsm()?.close_session(session as u64)?)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    ffi("C_CloseAllSessions", || {
        Ok(hsm()?.close_all_sessions(slot as u64)?)
    })
}

/// # Safety
/// `info` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSessionInfo(
    session: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    ffi("C_GetSessionInfo", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let info = unsafe { out_ref(info, "pInfo is NULL") }?;
        let s = h.session_info(session as u64)?;
        info.slotID = s.slot as CK_SLOT_ID;
        info.state = s.state as CK_STATE;
        info.flags = CKF_SERIAL_SESSION | if s.rw { CKF_RW_SESSION } else { 0 };
        info.ulDeviceError = 0;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_SessionCancel(session: CK_SESSION_HANDLE, flags: CK_FLAGS) -> CK_RV {
    ffi("C_SessionCancel", || {
        let h = hsm()?;
        let mut kinds = Vec::new();
        for (f, k) in [
            (CKF_SIGN, OpKind::Sign),
            (CKF_VERIFY, OpKind::Verify),
            (CKF_ENCRYPT, OpKind::Encrypt),
            (CKF_DECRYPT, OpKind::Decrypt),
            (CKF_DIGEST, OpKind::Digest),
            (CKF_FIND_OBJECTS, OpKind::Find),
            (CKF_MESSAGE_ENCRYPT, OpKind::MessageEncrypt),
            (CKF_MESSAGE_DECRYPT, OpKind::MessageDecrypt),
        ] {
            if flags & f != 0 {
                kinds.push(k);
            }
        }
        Ok(h.cancel(session as u64, &kinds)?)
    })
}

/// # Safety
/// `p` readable for `len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    p: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    ffi("C_Login", || {
        let h = hsm()?;
        let kind = match user {
            CKU_SO => LoginKind::So,
            CKU_USER => LoginKind::User,
            CKU_CONTEXT_SPECIFIC => LoginKind::ContextSpecific,
            _ => return Err(CoreError::UserTypeInvalid.into()),
        };
        // SAFETY: forwarded contract.
        let p = unsafe { pin(p, len, false) }?;
        Ok(h.login(session as u64, kind, p)?)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV {
    ffi("C_Logout", || Ok(hsm()?.logout(session as u64)?))
}

#[unsafe(no_mangle)]
pub extern "C" fn C_GetFunctionStatus(session: CK_SESSION_HANDLE) -> CK_RV {
    ffi("C_GetFunctionStatus", || {
        hsm()?.session_info(session as u64)?;
        Err(Error::FunctionNotParallel)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_CancelFunction(session: CK_SESSION_HANDLE) -> CK_RV {
    ffi("C_CancelFunction", || {
        hsm()?.session_info(session as u64)?;
        Err(Error::FunctionNotParallel)
    })
}

// ------------------------------------------------------------------ objects

/// # Safety
/// `t` readable for `n` attributes; `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CreateObject(
    session: CK_SESSION_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_CreateObject", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let out = unsafe { out_ref(out, "phObject is NULL") }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.create_object(session as u64, template)? as CK_OBJECT_HANDLE;
        Ok(())
    })
}

/// # Safety
/// As C_CreateObject.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CopyObject(
    session: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_CopyObject", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let out = unsafe { out_ref(out, "phNewObject is NULL") }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.copy_object(session as u64, obj as u64, template)? as CK_OBJECT_HANDLE;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_DestroyObject(session: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> CK_RV {
    ffi("C_DestroyObject", || {
        Ok(hsm()?.destroy_object(session as u64, obj as u64)?)
    })
}

/// # Safety
/// `size` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetObjectSize(
    session: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_GetObjectSize", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let size = unsafe { out_ref(size, "pulSize is NULL") }?;
        *size = h.object_size(session as u64, obj as u64)? as CK_ULONG;
        Ok(())
    })
}

/// # Safety
/// `t` points to `n` attributes whose non-null values are writable for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    ffi("C_GetAttributeValue", || {
        let h = hsm()?;
        if t.is_null() && n > 0 {
            return Err(Error::bad("pTemplate is NULL"));
        }
        let attrs = h.object_attributes(session as u64, obj as u64)?;
        // SAFETY: forwarded contract.
        unsafe { template::fill(&attrs, t, n) }
    })
}

/// # Safety
/// `t` readable for `n` attributes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetAttributeValue(
    session: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    ffi("C_SetAttributeValue", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        Ok(h.set_attributes(session as u64, obj as u64, template)?)
    })
}

/// # Safety
/// `t` readable for `n` attributes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjectsInit(
    session: CK_SESSION_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    ffi("C_FindObjectsInit", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        Ok(h.find_init(session as u64, template)?)
    })
}

/// # Safety
/// `out` writable for `max` handles; `count` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjects(
    session: CK_SESSION_HANDLE,
    out: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_FindObjects", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let count = unsafe { out_ref(count, "pulObjectCount is NULL") }?;
        if out.is_null() && max > 0 {
            return Err(Error::bad("phObject is NULL"));
        }
        let found = h.find_next(session as u64, max as usize)?;
        for (i, f) in found.iter().enumerate() {
            // SAFETY: out is writable for max >= found.len() handles.
            unsafe { *out.add(i) = *f as CK_OBJECT_HANDLE };
        }
        *count = found.len() as CK_ULONG;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    ffi("C_FindObjectsFinal", || {
        Ok(hsm()?.find_final(session as u64)?)
    })
}

// ------------------------------------------------------------------ keys

/// # Safety
/// `m` valid; `t` readable for `n`; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateKey(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_GenerateKey", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let out = unsafe { out_ref(out, "phKey is NULL") }?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.generate_key(session as u64, &mech, template)? as CK_OBJECT_HANDLE;
        Ok(())
    })
}

/// # Safety
/// `m` valid; templates readable; outputs writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateKeyPair(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    pt: *mut CK_ATTRIBUTE,
    pn: CK_ULONG,
    st: *mut CK_ATTRIBUTE,
    sn: CK_ULONG,
    pub_out: *mut CK_OBJECT_HANDLE,
    priv_out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_GenerateKeyPair", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let pub_out = unsafe { out_ref(pub_out, "phPublicKey is NULL") }?;
        // SAFETY: null rejected.
        let priv_out = unsafe { out_ref(priv_out, "phPrivateKey is NULL") }?;
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
    })
}

// ------------------------------------------------------------------ sign and verify

/// # Safety
/// `m` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignInit(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_SignInit", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.sign_init(session as u64, &mech, key as u64)?)
    })
}

/// # Safety
/// `d` readable for `dl`; `sig` null or writable for `*sl`; `sl` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Sign(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    sig: *mut CK_BYTE,
    sl: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_Sign", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Sign, || {
            let s = session as u64;
            let needed = h.sign_len(s)?;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pData") }?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, sig, sl, || Ok(h.sign(s, input)?)) }
        })
    })
}

/// # Safety
/// `d` readable for `dl`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignUpdate(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
) -> CK_RV {
    ffi("C_SignUpdate", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Sign, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            Ok(h.sign_update(session as u64, input)?)
        })
    })
}

/// # Safety
/// `sig` null or writable for `*sl`; `sl` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignFinal(
    session: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sl: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_SignFinal", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Sign, || {
            let s = session as u64;
            let needed = h.sign_len(s)?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, sig, sl, || Ok(h.sign_final(s)?)) }
        })
    })
}

/// # Safety
/// `m` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyInit(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_VerifyInit", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.verify_init(session as u64, &mech, key as u64)?)
    })
}

/// # Safety
/// `d` readable for `dl`, `sig` for `sl`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Verify(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    sig: *mut CK_BYTE,
    sl: CK_ULONG,
) -> CK_RV {
    ffi("C_Verify", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Verify, || {
            let s = session as u64;
            // SAFETY: forwarded contract.
            let parsed = unsafe { data(d, dl, "pData") }.and_then(|input| {
                // SAFETY: forwarded contract.
                unsafe { slice(sig, sl, 64 * 1024, "pSignature") }.map(|sig| (input, sig))
            });
            let (input, sig) = parsed?;
            Ok(h.verify(s, input, sig)?)
        })
    })
}

/// # Safety
/// `d` readable for `dl`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyUpdate(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
) -> CK_RV {
    ffi("C_VerifyUpdate", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Verify, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            Ok(h.verify_update(session as u64, input)?)
        })
    })
}

/// # Safety
/// `sig` readable for `sl`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyFinal(
    session: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sl: CK_ULONG,
) -> CK_RV {
    ffi("C_VerifyFinal", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Verify, || {
            // SAFETY: forwarded contract.
            let sig = unsafe { slice(sig, sl, 64 * 1024, "pSignature") }?;
            Ok(h.verify_final(session as u64, sig)?)
        })
    })
}

// ------------------------------------------------------------------ encrypt and decrypt

/// # Safety
/// `m` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptInit(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_EncryptInit", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.encrypt_init(session as u64, &mech, key as u64)?)
    })
}

/// # Safety
/// `d` readable for `dl`; `out` null or writable for `*ol`; `ol` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Encrypt(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_Encrypt", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Encrypt, || {
            let s = session as u64;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pData") }?;
            let needed = h.encrypt_len(s, input.len())?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.encrypt(s, input)?)) }
        })
    })
}

/// # Safety
/// `d` readable for `dl`; `out` null or writable for `*ol`; `ol` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptUpdate(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_EncryptUpdate", || {
        let h = hsm()?;
        let s = session as u64;
        ending(&h, s, OpKind::Encrypt, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            // ECB and CBC hand back whole blocks at once; the other modes answer at the
            // end. A length query (NULL output) consumes nothing.
            let needed = h.update_len(s, true, input.len())?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.encrypt_update(s, input)?)) }
        })
    })
}

/// # Safety
/// `out` null or writable for `*ol`; `ol` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptFinal(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_EncryptFinal", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Encrypt, || {
            let s = session as u64;
            let needed = h.encrypt_len(s, 0)?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.encrypt_final(s)?)) }
        })
    })
}

/// # Safety
/// `m` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptInit(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_DecryptInit", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.decrypt_init(session as u64, &mech, key as u64)?)
    })
}

/// # Safety
/// As C_Encrypt.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Decrypt(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_Decrypt", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Decrypt, || {
            let s = session as u64;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pEncryptedData") }?;
            let needed = h.decrypt_len(s, input.len())?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.decrypt(s, input)?)) }
        })
    })
}

/// # Safety
/// As C_EncryptUpdate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptUpdate(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_DecryptUpdate", || {
        let h = hsm()?;
        let s = session as u64;
        ending(&h, s, OpKind::Decrypt, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pEncryptedPart") }?;
            // ECB and CBC hand back whole blocks at once; the other modes answer at the
            // end. A length query (NULL output) consumes nothing.
            let needed = h.update_len(s, false, input.len())?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.decrypt_update(s, input)?)) }
        })
    })
}

/// # Safety
/// As C_EncryptFinal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptFinal(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_DecryptFinal", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Decrypt, || {
            let s = session as u64;
            let needed = h.decrypt_len(s, 0)?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.decrypt_final(s)?)) }
        })
    })
}

// ------------------------------------------------------------------ wrap and unwrap

/// # Safety
/// `m` valid; `out` null or writable for `*ol`; `ol` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_WrapKey(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    wrapping: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_WrapKey", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        if ol.is_null() {
            return Err(Error::bad("pulWrappedKeyLen is NULL"));
        }
        let wrapped = h.wrap_key(session as u64, &mech, wrapping as u64, key as u64)?;
        // SAFETY: forwarded contract.
        unsafe { template::write_out(&wrapped, out, ol) }
    })
}

/// # Safety
/// `m` valid; `w` readable for `wl`; `t` readable for `n`; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_UnwrapKey(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    unwrapping: CK_OBJECT_HANDLE,
    w: *mut CK_BYTE,
    wl: CK_ULONG,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_UnwrapKey", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let out = unsafe { out_ref(out, "phKey is NULL") }?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // SAFETY: forwarded contract; a wrapped key is small.
        let wrapped = unsafe { slice(w, wl, 64 * 1024, "pWrappedKey") }
            .map_err(|_| CoreError::WrappedKeyLenRange)?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        *out = h.unwrap_key(session as u64, &mech, unwrapping as u64, wrapped, template)?
            as CK_OBJECT_HANDLE;
        Ok(())
    })
}

/// # Safety
/// `m` valid; `t` readable for `n`; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DeriveKey(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    ffi("C_DeriveKey", || {
        let h = hsm()?;
        // SAFETY: null rejected.
        let out = unsafe { out_ref(out, "phKey is NULL") }?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        // SAFETY: forwarded contract.
        let template = unsafe { parse(t, n) }?;
        if let hsm_core::Mechanism::Kbkdf { .. } = mech {
            // SP 800-108: the keys of CK_DERIVED_KEY get their handles too, all or none.
            let result = h.derive_keys(session as u64, &mech, base as u64, template);
            // SAFETY: `m` parsed as an SP 800-108 mechanism above.
            unsafe { template::kbkdf_write_handles(m, result.as_deref().ok().map(|h| &h[1..])) };
            *out = result?[0] as CK_OBJECT_HANDLE;
            return Ok(());
        }
        *out = h.derive_key(session as u64, &mech, base as u64, template)? as CK_OBJECT_HANDLE;
        Ok(())
    })
}

// ------------------------------------------------------------------ digest and random

/// # Safety
/// `m` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestInit(session: CK_SESSION_HANDLE, m: *mut CK_MECHANISM) -> CK_RV {
    ffi("C_DigestInit", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        let mech = unsafe { mechanism(m) }?;
        Ok(h.digest_init(session as u64, &mech)?)
    })
}

/// # Safety
/// As C_Encrypt.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Digest(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_Digest", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Digest, || {
            let s = session as u64;
            let needed = h.digest_len(s)?;
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pData") }?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.digest(s, input)?)) }
        })
    })
}

/// # Safety
/// `d` readable for `dl`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestUpdate(
    session: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
) -> CK_RV {
    ffi("C_DigestUpdate", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Digest, || {
            // SAFETY: forwarded contract.
            let input = unsafe { data(d, dl, "pPart") }?;
            Ok(h.digest_update(session as u64, input)?)
        })
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_DigestKey(session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    ffi("C_DigestKey", || {
        Ok(hsm()?.digest_key(session as u64, key as u64)?)
    })
}

/// # Safety
/// As C_EncryptFinal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestFinal(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_DigestFinal", || {
        let h = hsm()?;
        ending(&h, session as u64, OpKind::Digest, || {
            let s = session as u64;
            let needed = h.digest_len(s)?;
            // SAFETY: forwarded contract.
            unsafe { produce(needed, out, ol, || Ok(h.digest_final(s)?)) }
        })
    })
}

/// # Safety
/// `out` writable for `len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateRandom(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    ffi("C_GenerateRandom", || {
        let h = hsm()?;
        let n = usize::try_from(len).map_err(|_| CoreError::DataLenRange)?;
        if n > template::MAX_DATA {
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
        let buf = unsafe { std::slice::from_raw_parts_mut(out, n) };
        Ok(h.generate_random(session as u64, buf)?)
    })
}

/// # Safety
/// `seed` readable for `len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SeedRandom(
    session: CK_SESSION_HANDLE,
    seed: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    ffi("C_SeedRandom", || {
        let h = hsm()?;
        // SAFETY: forwarded contract.
        unsafe { slice(seed, len, template::MAX_DATA, "pSeed") }?;
        Ok(h.seed_random(session as u64)?)
    })
}

// ---------------------------------------------------------------- message-based (3.0)

/// `C_MessageEncryptInit` / `C_MessageDecryptInit`: the mechanism's type is what counts;
/// each message brings its own `CK_GCM_MESSAGE_PARAMS`.
///
/// # Safety
/// `m` readable.
unsafe fn message_init(
    name: &'static str,
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    encrypt: bool,
) -> CK_RV {
    ffi(name, || {
        let h = hsm()?;
        // SAFETY: null rejected; readable per the contract.
        let m = unsafe { m.as_ref() }.ok_or(Error::bad("pMechanism is NULL"))?;
        let mech = MechanismType(m.mechanism as u64);
        Ok(h.message_crypt_init(session as u64, mech, key as u64, encrypt)?)
    })
}

/// # Safety
/// `m` readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageEncryptInit(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    // SAFETY: forwarded contract.
    unsafe { message_init("C_MessageEncryptInit", session, m, key, true) }
}

/// # Safety
/// `m` readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageDecryptInit(
    session: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    // SAFETY: forwarded contract.
    unsafe { message_init("C_MessageDecryptInit", session, m, key, false) }
}

/// One message: the ciphertext has the plaintext's length, the tag goes to `pTag`, a
/// token-generated IV to `pIv`. A NULL or short output buffer answers the length and
/// generates nothing.
///
/// # Safety
/// `param` a `CK_GCM_MESSAGE_PARAMS` of `pl` bytes; `a`/`d` readable for `al`/`dl`; `ol`
/// valid; a non-null `out` writable for `*ol` bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn C_EncryptMessage(
    session: CK_SESSION_HANDLE,
    param: *mut c_void,
    pl: CK_ULONG,
    a: *mut CK_BYTE,
    al: CK_ULONG,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_EncryptMessage", || {
        let h = hsm()?;
        let s = session as u64;
        if !h.has_operation(s, OpKind::MessageEncrypt)? {
            return Err(CoreError::OperationNotInitialized.into());
        }
        // SAFETY: forwarded contract.
        let (raw, mut p) = unsafe { template::gcm_message(param, pl) }?;
        // SAFETY: forwarded contract.
        let aad = unsafe { data(a, al, "pAssociatedData") }?;
        // SAFETY: forwarded contract.
        let input = unsafe { data(d, dl, "pPlaintext") }?;
        // SAFETY: forwarded contract.
        unsafe {
            produce(input.len(), out, ol, || {
                let (ct, tag) = h.encrypt_message(s, &mut p, aad, input)?;
                // SAFETY: pIv holds ulIvLen == p.iv.len() bytes and pTag the tag's bytes
                // (checked by gcm_message; the runtime keeps both lengths).
                std::ptr::copy_nonoverlapping(p.iv.as_ptr(), raw.pIv, p.iv.len());
                std::ptr::copy_nonoverlapping(tag.as_ptr(), raw.pTag, tag.len());
                Ok(ct)
            })
        }
    })
}

/// # Safety
/// As [`C_EncryptMessage`]; `pTag` readable for the tag.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn C_DecryptMessage(
    session: CK_SESSION_HANDLE,
    param: *mut c_void,
    pl: CK_ULONG,
    a: *mut CK_BYTE,
    al: CK_ULONG,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    out: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    ffi("C_DecryptMessage", || {
        let h = hsm()?;
        let s = session as u64;
        if !h.has_operation(s, OpKind::MessageDecrypt)? {
            return Err(CoreError::OperationNotInitialized.into());
        }
        // SAFETY: forwarded contract.
        let (raw, p) = unsafe { template::gcm_message(param, pl) }?;
        // SAFETY: pTag readable for the tag's bytes (whole bytes, at most 16: checked).
        let tag = unsafe { std::slice::from_raw_parts(raw.pTag, p.tag_bits as usize / 8) };
        // SAFETY: forwarded contract.
        let aad = unsafe { data(a, al, "pAssociatedData") }?;
        // SAFETY: forwarded contract.
        let input = unsafe { data(d, dl, "pCiphertext") }?;
        // SAFETY: forwarded contract.
        unsafe {
            produce(input.len(), out, ol, || {
                Ok(h.decrypt_message(s, &p, tag, aad, input)?)
            })
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_MessageEncryptFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    ffi("C_MessageEncryptFinal", || {
        Ok(hsm()?.message_crypt_final(session as u64, true)?)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn C_MessageDecryptFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    ffi("C_MessageDecryptFinal", || {
        Ok(hsm()?.message_crypt_final(session as u64, false)?)
    })
}
