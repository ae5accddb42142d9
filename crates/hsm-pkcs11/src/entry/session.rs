//! Session management (PKCS#11 3.0 §5.6), and the two legacy parallel-function calls
//! (§5.20), which only check their session.

use super::pin;
use crate::boundary::Error;
use crate::guard;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::{LoginKind, OpKind};
use std::ffi::c_void;

entry_points! {
    /// # Safety
    /// `out` null or writable.
    pub unsafe extern "C" fn C_OpenSession(
        slot: CK_SLOT_ID,
        flags: CK_FLAGS,
        app: *mut c_void,
        notify: CK_NOTIFY,
        out: *mut CK_SESSION_HANDLE,
    ) -> CK_RV = |h| {
        let _ = (app, notify);
        // SAFETY: null rejected.
        let out = unsafe { guard::out_ref(out, "phSession is NULL") }?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(CoreError::SessionParallelNotSupported.into());
        }
        *out = h.open_session(slot as u64, flags & CKF_RW_SESSION != 0)? as CK_SESSION_HANDLE;
        Ok(())
    }

    pub extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV = |h| {
        Ok(h.close_session(session as u64)?)
    }

    pub extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV = |h| {
        Ok(h.close_all_sessions(slot as u64)?)
    }

    /// # Safety
    /// `info` null or writable.
    pub unsafe extern "C" fn C_GetSessionInfo(
        session: CK_SESSION_HANDLE,
        info: *mut CK_SESSION_INFO,
    ) -> CK_RV = |h| {
        // SAFETY: null rejected.
        let info = unsafe { guard::out_ref(info, "pInfo is NULL") }?;
        let s = h.session_info(session as u64)?;
        info.slotID = s.slot as CK_SLOT_ID;
        info.state = s.state as CK_STATE;
        info.flags = CKF_SERIAL_SESSION | if s.rw { CKF_RW_SESSION } else { 0 };
        info.ulDeviceError = 0;
        Ok(())
    }

    pub extern "C" fn C_SessionCancel(session: CK_SESSION_HANDLE, flags: CK_FLAGS) -> CK_RV = |h| {
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
    }

    /// # Safety
    /// `p` readable for `len`.
    pub unsafe extern "C" fn C_Login(
        session: CK_SESSION_HANDLE,
        user: CK_USER_TYPE,
        p: *mut CK_UTF8CHAR,
        len: CK_ULONG,
    ) -> CK_RV = |h| {
        let kind = match user {
            CKU_SO => LoginKind::So,
            CKU_USER => LoginKind::User,
            CKU_CONTEXT_SPECIFIC => LoginKind::ContextSpecific,
            _ => return Err(CoreError::UserTypeInvalid.into()),
        };
        // SAFETY: forwarded contract.
        let p = unsafe { pin(p, len, false) }?;
        Ok(h.login(session as u64, kind, p)?)
    }

    pub extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV = |h| {
        Ok(h.logout(session as u64)?)
    }

    pub extern "C" fn C_GetFunctionStatus(session: CK_SESSION_HANDLE) -> CK_RV = |h| {
        h.session_info(session as u64)?;
        Err(Error::FunctionNotParallel)
    }

    pub extern "C" fn C_CancelFunction(session: CK_SESSION_HANDLE) -> CK_RV = |h| {
        h.session_info(session as u64)?;
        Err(Error::FunctionNotParallel)
    }
}

not_supported! {
    C_GetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SetOperationState(
        a1: CK_SESSION_HANDLE,
        a2: *mut CK_BYTE,
        a3: CK_ULONG,
        a4: CK_OBJECT_HANDLE,
        a5: CK_OBJECT_HANDLE,
    );
    C_LoginUser(
        a1: CK_SESSION_HANDLE,
        a2: CK_USER_TYPE,
        a3: *mut CK_UTF8CHAR,
        a4: CK_ULONG,
        a5: *mut CK_UTF8CHAR,
        a6: CK_ULONG,
    );
}
