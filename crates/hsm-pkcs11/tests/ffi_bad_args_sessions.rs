//! Bad logins and session rules, through the raw `C_*` functions of the rlib: login
//! errors and the PIN lockout, `CKA_ALWAYS_AUTHENTICATE` keys and the context-specific
//! login, and `C_InitToken` (refused with sessions open or a wrong SO PIN, wiping the
//! token's objects otherwise).
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

#[test]
fn login_rules() {
    let _env = setup();
    let h = token_session();
    // SAFETY: valid buffers.
    unsafe {
        assert_eq!(
            C_Login(h, CKU_USER, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_USER_ALREADY_LOGGED_IN
        );
        assert_eq!(
            C_Login(h, CKU_SO, SO.as_ptr() as *mut _, SO.len() as _),
            CKR_USER_ANOTHER_ALREADY_LOGGED_IN
        );
        assert_eq!(
            C_Login(h, 7, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_USER_TYPE_INVALID
        );
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(C_Logout(h), CKR_USER_NOT_LOGGED_IN);
        assert_eq!(
            C_Login(h, CKU_USER, b"ab".as_ptr() as *mut _, 2),
            CKR_PIN_LEN_RANGE
        );
        assert_eq!(C_Login(h, CKU_USER, null_mut(), 0), CKR_ARGUMENTS_BAD);
        let wrong = b"wrong-pin";
        let mut ti: CK_TOKEN_INFO = std::mem::zeroed();
        for i in 0..3 {
            assert_eq!(
                C_Login(h, CKU_USER, wrong.as_ptr() as *mut _, wrong.len() as _),
                CKR_PIN_INCORRECT,
                "attempt {i}"
            );
        }
        assert_eq!(C_GetTokenInfo(1, &mut ti), CKR_OK);
        assert_ne!(ti.flags & CKF_USER_PIN_LOCKED, 0);
        assert_eq!(
            C_Login(h, CKU_USER, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_PIN_LOCKED
        );
        let mut si: CK_SESSION_INFO = std::mem::zeroed();
        assert_eq!(C_GetSessionInfo(h, &mut si), CKR_OK);
        assert_eq!(si.state, CKS_RW_PUBLIC_SESSION);
        // C_WaitForSlotEvent never blocks on a software token.
        let mut slot = 0;
        assert_eq!(
            C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut()),
            CKR_NO_EVENT
        );
    }
}

#[test]
fn always_authenticate_keys_need_a_context_specific_login() {
    let _env = setup();
    let h = token_session();
    let mut params = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut pt = [bytes_attr(CKA_EC_PARAMS, &mut params)];
    let (mut yes, mut yes2): (CK_BBOOL, CK_BBOOL) = (1, 1);
    let mut st = [
        bool_attr(CKA_SIGN, &mut yes),
        bool_attr(CKA_ALWAYS_AUTHENTICATE, &mut yes2),
    ];
    let mut keygen = CK_MECHANISM {
        mechanism: CKM_EC_KEY_PAIR_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let (mut p, mut s) = (0, 0);
    let mut data = *b"x";
    let mut sig = [0u8; 64];
    // SAFETY: valid templates and buffers.
    unsafe {
        assert_eq!(
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.as_mut_ptr(),
                1,
                st.as_mut_ptr(),
                2,
                &mut p,
                &mut s
            ),
            CKR_OK
        );
        let mut m = CK_MECHANISM {
            mechanism: CKM_ECDSA_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_SignInit(h, &mut m, s), CKR_OK);
        let mut n = 64;
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 1, sig.as_mut_ptr(), &mut n),
            CKR_USER_NOT_LOGGED_IN
        );
        // That failed C_Sign ended the operation, as any failure but a small buffer does.
        assert_eq!(
            C_Login(
                h,
                CKU_CONTEXT_SPECIFIC,
                USER.as_ptr() as *mut _,
                USER.len() as _
            ),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(C_SignInit(h, &mut m, s), CKR_OK);
        let wrong = b"wrong-pin";
        assert_eq!(
            C_Login(
                h,
                CKU_CONTEXT_SPECIFIC,
                wrong.as_ptr() as *mut _,
                wrong.len() as _
            ),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            C_Login(
                h,
                CKU_CONTEXT_SPECIFIC,
                USER.as_ptr() as *mut _,
                USER.len() as _
            ),
            CKR_OK
        );
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 1, sig.as_mut_ptr(), &mut n),
            CKR_OK
        );
        // Each use needs its own authentication.
        assert_eq!(C_SignInit(h, &mut m, s), CKR_OK);
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 1, sig.as_mut_ptr(), &mut n),
            CKR_USER_NOT_LOGGED_IN
        );
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 1, sig.as_mut_ptr(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
        // CKA_ALWAYS_AUTHENTICATE only turns on.
        let mut off: CK_BBOOL = 0;
        let mut t = [bool_attr(CKA_ALWAYS_AUTHENTICATE, &mut off)];
        assert_eq!(
            C_SetAttributeValue(h, s, t.as_mut_ptr(), 1),
            CKR_ATTRIBUTE_READ_ONLY
        );
    }
}

#[test]
fn reinitialising_a_token_wipes_its_objects() {
    let _env = setup();
    let h = token_session();
    let mut class: CK_ULONG = CKO_DATA;
    let (mut token, mut label) = (1 as CK_BBOOL, *b"old-data");
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        bool_attr(CKA_TOKEN, &mut token),
        bytes_attr(CKA_LABEL, &mut label),
    ];
    let mut o = 0;
    let mut new_label = [b' '; 32];
    new_label[..5].copy_from_slice(b"fresh");
    // SAFETY: valid templates and buffers.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 3, &mut o), CKR_OK);
        // Not while sessions are open.
        assert_eq!(
            C_InitToken(
                1,
                SO.as_ptr() as *mut _,
                SO.len() as _,
                new_label.as_mut_ptr()
            ),
            CKR_SESSION_EXISTS
        );
        assert_eq!(C_CloseAllSessions(1), CKR_OK);
        let wrong = b"wrong-so";
        assert_eq!(
            C_InitToken(
                1,
                wrong.as_ptr() as *mut _,
                wrong.len() as _,
                new_label.as_mut_ptr()
            ),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            C_InitToken(
                1,
                SO.as_ptr() as *mut _,
                SO.len() as _,
                new_label.as_mut_ptr()
            ),
            CKR_OK
        );
        let mut ti: CK_TOKEN_INFO = std::mem::zeroed();
        assert_eq!(C_GetTokenInfo(1, &mut ti), CKR_OK);
        assert_eq!(&ti.label[..5], b"fresh");
        assert_eq!(
            ti.flags & CKF_USER_PIN_INITIALIZED,
            0,
            "the user PIN is gone with the old token"
        );
        let mut h2 = 0;
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, &mut h2),
            CKR_OK
        );
        let mut q = [bytes_attr(CKA_LABEL, &mut label)];
        assert_eq!(C_FindObjectsInit(h2, q.as_mut_ptr(), 1), CKR_OK);
        let mut found = [0 as CK_OBJECT_HANDLE; 4];
        let mut n = 0;
        assert_eq!(C_FindObjects(h2, found.as_mut_ptr(), 4, &mut n), CKR_OK);
        assert_eq!(n, 0, "the old token's objects are gone");
        assert_eq!(C_FindObjectsFinal(h2), CKR_OK);
    }
}
