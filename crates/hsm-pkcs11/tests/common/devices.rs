//! What the adapter tests share: a FerroHSM token to bind to a device, a user session on
//! its slot, and the calls they make over and over.

use super::*;
use std::path::Path;

/// A FerroHSM store with token 1 initialised (user PIN `USER`), in `dir`.
pub fn ferro_token(dir: &Path) {
    let _env = setup_in(None, "", Some(dir));
    let h = token_session();
    C_CloseSession(h);
}

pub fn user_session() -> CK_SESSION_HANDLE {
    let mut h = 0;
    // SAFETY: valid outputs and PIN buffer.
    unsafe {
        let rv = C_OpenSession(
            1,
            CKF_SERIAL_SESSION | CKF_RW_SESSION,
            null_mut(),
            None,
            &mut h,
        );
        assert_eq!(rv, CKR_OK);
        assert_eq!(
            C_Login(h, CKU_USER, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_OK
        );
    }
    h
}

pub fn find_by_label(
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    label: &str,
) -> Vec<CK_OBJECT_HANDLE> {
    let mut t = Template::new(&[
        (CKA_CLASS, Val::Ulong(class)),
        (CKA_LABEL, Val::Bytes(label.into())),
    ]);
    let (p, n) = t.raw();
    let mut found = vec![0; 8];
    let mut count = 0;
    // SAFETY: valid template and output buffers.
    unsafe {
        assert_eq!(C_FindObjectsInit(h, p, n), CKR_OK);
        assert_eq!(C_FindObjects(h, found.as_mut_ptr(), 8, &mut count), CKR_OK);
        assert_eq!(C_FindObjectsFinal(h), CKR_OK);
    }
    found.truncate(count as usize);
    found
}

/// `C_Sign` with a mechanism that has parameters.
pub fn sign_with(
    h: CK_SESSION_HANDLE,
    m: &mut Mech,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Vec<u8> {
    let mut raw = m.raw();
    let mut data = data.to_vec();
    let mut out = vec![0u8; 512];
    let mut n = out.len() as CK_ULONG;
    // SAFETY: valid mechanism and buffers.
    unsafe {
        assert_eq!(C_SignInit(h, &mut raw, key), CKR_OK);
        let rv = C_Sign(
            h,
            data.as_mut_ptr(),
            data.len() as _,
            out.as_mut_ptr(),
            &mut n,
        );
        assert_eq!(rv, CKR_OK);
    }
    out.truncate(n as usize);
    out
}
