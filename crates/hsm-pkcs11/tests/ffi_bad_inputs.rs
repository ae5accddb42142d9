//! In-process tests through the rlib: the raw `C_*` functions with the bad inputs of
//! ROBUSTNESS.md (#1-#21 that touch the functions built so far), where the exact `CKR_*`
//! and the output-length conventions matter.
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use ferrohsm_pkcs11::*;
use std::ptr::null_mut;

/// An EC P-256 key pair as session objects; returns (public, private).
fn ec_pair(h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut params = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut pt = [bytes_attr(CKA_EC_PARAMS, &mut params)];
    let mut yes: CK_BBOOL = 1;
    let mut st = [bool_attr(CKA_SIGN, &mut yes)];
    let mut m = CK_MECHANISM {
        mechanism: CKM_EC_KEY_PAIR_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let (mut p, mut s) = (0, 0);
    // SAFETY: valid templates and outputs.
    let rv = unsafe {
        C_GenerateKeyPair(
            h,
            &mut m,
            pt.as_mut_ptr(),
            1,
            st.as_mut_ptr(),
            1,
            &mut p,
            &mut s,
        )
    };
    assert_eq!(rv, CKR_OK);
    (p, s)
}

#[test]
fn before_initialize_and_after_finalize() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointers throughout.
    unsafe {
        assert_eq!(C_GetInfo(&mut info), CKR_CRYPTOKI_NOT_INITIALIZED);
        let mut n: CK_ULONG = 0;
        assert_eq!(
            C_GetSlotList(0, null_mut(), &mut n),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(C_CloseSession(1), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_eq!(C_Finalize(null_mut()), CKR_CRYPTOKI_NOT_INITIALIZED);
        // The function list is available before initialisation.
        let mut list: *mut CK_FUNCTION_LIST = null_mut();
        assert_eq!(C_GetFunctionList(&mut list), CKR_OK);
        assert!(!list.is_null());
        assert_eq!(C_GetFunctionList(null_mut()), CKR_ARGUMENTS_BAD);
    }
}

#[test]
fn initialize_argument_rules() {
    let env = setup();
    // SAFETY: argument structs are valid for the calls.
    unsafe {
        assert_eq!(C_Initialize(null_mut()), CKR_CRYPTOKI_ALREADY_INITIALIZED);
        assert_eq!(C_Finalize(1 as *mut _), CKR_ARGUMENTS_BAD);
        assert_eq!(C_Finalize(null_mut()), CKR_OK);
        let mut args: CK_C_INITIALIZE_ARGS = std::mem::zeroed();
        args.pReserved = 1 as *mut _;
        assert_eq!(
            C_Initialize(&mut args as *mut _ as *mut _),
            CKR_ARGUMENTS_BAD
        );
        unsafe extern "C" fn create(_: *mut *mut std::ffi::c_void) -> CK_RV {
            CKR_OK
        }
        unsafe extern "C" fn other(_: *mut std::ffi::c_void) -> CK_RV {
            CKR_OK
        }
        let mut partial: CK_C_INITIALIZE_ARGS = std::mem::zeroed();
        partial.CreateMutex = Some(create);
        assert_eq!(
            C_Initialize(&mut partial as *mut _ as *mut _),
            CKR_ARGUMENTS_BAD
        );
        let mut all: CK_C_INITIALIZE_ARGS = std::mem::zeroed();
        all.CreateMutex = Some(create);
        all.DestroyMutex = Some(other);
        all.LockMutex = Some(other);
        all.UnlockMutex = Some(other);
        assert_eq!(C_Initialize(&mut all as *mut _ as *mut _), CKR_CANT_LOCK);
        all.flags = CKF_OS_LOCKING_OK;
        assert_eq!(C_Initialize(&mut all as *mut _ as *mut _), CKR_OK);
    }
    drop(env);
}

#[test]
fn null_pointers_and_invalid_handles() {
    let _env = setup();
    // SAFETY: every non-null pointer is valid.
    unsafe {
        assert_eq!(C_GetInfo(null_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(C_GetSlotList(0, null_mut(), null_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(C_GetTokenInfo(1, null_mut()), CKR_ARGUMENTS_BAD);
        let mut ti: CK_TOKEN_INFO = std::mem::zeroed();
        assert_eq!(C_GetTokenInfo(99, &mut ti), CKR_SLOT_ID_INVALID);
        assert_eq!(C_GetTokenInfo(0, &mut ti), CKR_SLOT_ID_INVALID);
        let mut h = 0;
        assert_eq!(
            C_OpenSession(1, 0, null_mut(), None, &mut h),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        let mut si: CK_SESSION_INFO = std::mem::zeroed();
        assert_eq!(C_GetSessionInfo(12345, &mut si), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(C_GetSessionInfo(0, &mut si), CKR_SESSION_HANDLE_INVALID);
        let h = token_session();
        let mut size = 0;
        assert_eq!(C_GetObjectSize(h, 0, &mut size), CKR_OBJECT_HANDLE_INVALID);
        assert_eq!(
            C_GetObjectSize(h, 0xdead_beef, &mut size),
            CKR_OBJECT_HANDLE_INVALID
        );
        let mut m = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_SignInit(h, &mut m, 0xdead_beef), CKR_KEY_HANDLE_INVALID);
        assert_eq!(C_SignInit(h, null_mut(), 1), CKR_ARGUMENTS_BAD);
        assert_eq!(C_FindObjectsInit(h, null_mut(), 3), CKR_ARGUMENTS_BAD);
        let mut unknown = CK_MECHANISM {
            mechanism: 0x8000_7777,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (_, private) = ec_pair(h);
        assert_eq!(C_SignInit(h, &mut unknown, private), CKR_MECHANISM_INVALID);
        // A stale session handle stays invalid; handles are never reused.
        assert_eq!(C_CloseSession(h), CKR_OK);
        assert_eq!(C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
        let mut h2 = 0;
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, &mut h2),
            CKR_OK
        );
        assert_ne!(h2, h);
    }
}

#[test]
fn huge_counts_and_lengths_are_refused_before_use() {
    let _env = setup();
    let h = token_session();
    let mut label = *b"x";
    // SAFETY: the claimed sizes are refused before anything is read past the real buffers.
    unsafe {
        let mut t = [bytes_attr(CKA_LABEL, &mut label)];
        assert_eq!(
            C_FindObjectsInit(h, t.as_mut_ptr(), 1 << 32),
            CKR_ARGUMENTS_BAD
        );
        t[0].ulValueLen = 1 << 63;
        assert_eq!(
            C_FindObjectsInit(h, t.as_mut_ptr(), 1),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut m = CK_MECHANISM {
            mechanism: CKM_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_DigestInit(h, &mut m), CKR_OK);
        let mut out = [0u8; 32];
        let mut n = out.len() as CK_ULONG;
        assert_eq!(
            C_Digest(h, label.as_mut_ptr(), 1 << 62, out.as_mut_ptr(), &mut n),
            CKR_DATA_LEN_RANGE
        );
        assert_eq!(
            C_GenerateRandom(h, out.as_mut_ptr(), 1 << 40),
            CKR_DATA_LEN_RANGE
        );
    }
}

#[test]
fn template_value_rules() {
    let _env = setup();
    let h = token_session();
    // SAFETY: valid templates with deliberately wrong sizes.
    unsafe {
        let mut class: CK_ULONG = CKO_DATA;
        let mut two = [1u8, 1];
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            bytes_attr(CKA_TOKEN, &mut two),
        ];
        let mut o = 0;
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 2, &mut o),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut short = [1u8; 3];
        let mut t = [bytes_attr(CKA_CLASS, &mut short)];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 1, &mut o),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut t = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: null_mut(),
            ulValueLen: 4,
        }];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 1, &mut o),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut x = [0u8; 4];
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            bytes_attr(0x8765_4321, &mut x),
        ];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 2, &mut o),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        let mut secret: CK_ULONG = CKO_SECRET_KEY;
        let mut t = [ulong_attr(CKA_CLASS, &mut secret)];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 1, &mut o),
            CKR_TEMPLATE_INCOMPLETE
        );
        let (mut a, mut b): (CK_BBOOL, CK_BBOOL) = (1, 0);
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            bool_attr(CKA_TOKEN, &mut a),
            bool_attr(CKA_TOKEN, &mut b),
        ];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 3, &mut o),
            CKR_TEMPLATE_INCONSISTENT
        );
        let mut trusted: CK_BBOOL = 1;
        let mut cert: CK_ULONG = CKO_CERTIFICATE;
        let mut x509: CK_ULONG = CKC_X_509;
        let (mut subj, mut val) = (*b"subject", *b"der");
        let mut t = [
            ulong_attr(CKA_CLASS, &mut cert),
            ulong_attr(CKA_CERTIFICATE_TYPE, &mut x509),
            bytes_attr(CKA_SUBJECT, &mut subj),
            bytes_attr(CKA_VALUE, &mut val),
            bool_attr(CKA_TRUSTED, &mut trusted),
        ];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 5, &mut o),
            CKR_ATTRIBUTE_READ_ONLY,
            "only the SO sets CKA_TRUSTED"
        );
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 4, &mut o), CKR_OK);
    }
}

#[test]
fn get_attribute_value_buffer_and_sensitive_rules() {
    let _env = setup();
    let h = token_session();
    let (_, private) = ec_pair(h);
    // SAFETY: valid templates; value buffers sized as stated.
    unsafe {
        // NULL value: lengths only, CKR_OK.
        let mut t = [CK_ATTRIBUTE {
            type_: CKA_EC_PARAMS,
            pValue: null_mut(),
            ulValueLen: 0,
        }];
        assert_eq!(C_GetAttributeValue(h, private, t.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(t[0].ulValueLen, 10);
        // Too small: that entry unavailable, BUFFER_TOO_SMALL.
        let mut small = [0u8; 4];
        let mut t = [bytes_attr(CKA_EC_PARAMS, &mut small)];
        assert_eq!(
            C_GetAttributeValue(h, private, t.as_mut_ptr(), 1),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        // Sensitive value: unavailable, ATTRIBUTE_SENSITIVE, the other entries still filled.
        let mut value = [0u8; 64];
        let mut sign: CK_BBOOL = 0;
        let mut t = [
            bytes_attr(CKA_VALUE, &mut value),
            bool_attr(CKA_SIGN, &mut sign),
        ];
        assert_eq!(
            C_GetAttributeValue(h, private, t.as_mut_ptr(), 2),
            CKR_ATTRIBUTE_SENSITIVE
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(t[1].ulValueLen, 1);
        assert_eq!(sign, 1);
        assert!(
            value.iter().all(|b| *b == 0),
            "nothing of the key was written"
        );
        // An attribute the object lacks.
        let mut m = [0u8; 8];
        let mut t = [bytes_attr(CKA_MODULUS, &mut m)];
        assert_eq!(
            C_GetAttributeValue(h, private, t.as_mut_ptr(), 1),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    }
}

#[test]
fn output_length_convention_keeps_the_operation() {
    let _env = setup();
    let h = token_session();
    let (public, private) = ec_pair(h);
    let mut data = *b"message";
    // SAFETY: valid buffers; lengths as stated.
    unsafe {
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, null_mut(), &mut 0),
            CKR_OPERATION_NOT_INITIALIZED
        );
        let mut m = CK_MECHANISM {
            mechanism: CKM_ECDSA_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_SignInit(h, &mut m, private), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, private), CKR_OPERATION_ACTIVE);
        let mut n: CK_ULONG = 0;
        assert_eq!(C_Sign(h, data.as_mut_ptr(), 7, null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 64, "NULL output reports the length");
        let mut small = [0u8; 10];
        let mut n_small = small.len() as CK_ULONG;
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, small.as_mut_ptr(), &mut n_small),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(n_small, 64);
        let mut sig = [0u8; 64];
        let mut n = sig.len() as CK_ULONG;
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), &mut n),
            CKR_OK,
            "still active after the two queries"
        );
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED,
            "ended"
        );
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 64),
            CKR_OK
        );
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        sig[5] ^= 1;
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 64),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 63),
            CKR_SIGNATURE_LEN_RANGE
        );
        // Wrong key class for the operation.
        assert_eq!(C_SignInit(h, &mut m, public), CKR_KEY_TYPE_INCONSISTENT);
        // GCM with bad parameters.
        let mut gcm = CK_GCM_PARAMS {
            pIv: null_mut(),
            ulIvLen: 0,
            ulIvBits: 0,
            pAAD: null_mut(),
            ulAADLen: 0,
            ulTagBits: 0,
        };
        let mut mg = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: &mut gcm as *mut _ as *mut _,
            ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as _,
        };
        let mut len: CK_ULONG = 32;
        let mut class: CK_ULONG = CKO_SECRET_KEY;
        let mut t = [
            ulong_attr(CKA_VALUE_LEN, &mut len),
            ulong_attr(CKA_CLASS, &mut class),
        ];
        let mut kg = CK_MECHANISM {
            mechanism: CKM_AES_KEY_GEN,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut aes = 0;
        assert_eq!(
            C_GenerateKey(h, &mut kg, t.as_mut_ptr(), 2, &mut aes),
            CKR_OK
        );
        assert_eq!(C_EncryptInit(h, &mut mg, aes), CKR_MECHANISM_PARAM_INVALID);
        let mut bad_len = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: &mut gcm as *mut _ as *mut _,
            ulParameterLen: 3,
        };
        assert_eq!(
            C_EncryptInit(h, &mut bad_len, aes),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
}

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
fn finalize_while_other_threads_are_mid_call() {
    let env = setup();
    let h = token_session();
    let (_, private) = ec_pair(h);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let endings: Vec<CK_RV> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut data = *b"data";
                    let mut sig = [0u8; 64];
                    let mut signed = 0u64;
                    loop {
                        let mut m = CK_MECHANISM {
                            mechanism: CKM_ECDSA_SHA256,
                            pParameter: null_mut(),
                            ulParameterLen: 0,
                        };
                        let mut n = sig.len() as CK_ULONG;
                        // SAFETY: valid buffers; the handles may die under us, which is the point.
                        let rv = unsafe {
                            let rv = C_SignInit(h, &mut m, private);
                            if rv == CKR_OK {
                                C_Sign(h, data.as_mut_ptr(), 4, sig.as_mut_ptr(), &mut n)
                            } else {
                                rv
                            }
                        };
                        match rv {
                            CKR_OK => signed += 1,
                            // Two threads share the session: one may find the other's operation.
                            CKR_OPERATION_ACTIVE | CKR_OPERATION_NOT_INITIALIZED => {}
                            other => return (other, signed),
                        }
                        if stop.load(std::sync::atomic::Ordering::Relaxed) && signed > 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: NULL is the required argument.
        assert_eq!(unsafe { C_Finalize(null_mut()) }, CKR_OK);
        workers
            .into_iter()
            .map(|w| w.join().expect("no worker panicked").0)
            .collect()
    });
    assert!(
        endings.iter().all(|rv| *rv == CKR_CRYPTOKI_NOT_INITIALIZED),
        "{endings:?}"
    );
    // Initialise again so the guard's finalize has something to end.
    // SAFETY: NULL arguments are allowed.
    assert_eq!(unsafe { C_Initialize(null_mut()) }, CKR_OK);
    drop(env);
}

fn rocksdb_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("rocksdb"))
        .count()
}

#[test]
fn no_thread_outlives_finalize() {
    let env = setup();
    let h = token_session();
    ec_pair(h);
    assert!(
        rocksdb_threads() > 0,
        "the store's workers run while initialised"
    );
    drop(env);
    assert_eq!(
        rocksdb_threads(),
        0,
        "C_Finalize ends the store's worker threads"
    );
    // And a new C_Initialize brings them back for the new store.
    let env = setup();
    token_session();
    assert!(rocksdb_threads() > 0);
    drop(env);
}

#[test]
fn interfaces_offer_the_3_0_and_2_40_tables() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: valid out pointers; the returned interfaces point to static tables.
    unsafe {
        let mut n: CK_ULONG = 0;
        assert_eq!(C_GetInterfaceList(null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 2);
        let mut list: [CK_INTERFACE; 2] = std::mem::zeroed();
        assert_eq!(C_GetInterfaceList(list.as_mut_ptr(), &mut n), CKR_OK);
        let versions: Vec<(u8, u8)> = list
            .iter()
            .map(|i| {
                let v = &*(i.pFunctionList as *const CK_VERSION);
                (v.major, v.minor)
            })
            .collect();
        assert_eq!(versions, vec![(3, 0), (2, 40)]);
        let mut iface: *mut CK_INTERFACE = null_mut();
        assert_eq!(
            C_GetInterface(null_mut(), null_mut(), &mut iface, 0),
            CKR_OK
        );
        let table = &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0);
        assert_eq!((table.version.major, table.version.minor), (3, 0));
        assert!(table.C_SessionCancel.is_some() && table.C_Sign.is_some());
        let mut v2 = CK_VERSION {
            major: 2,
            minor: 40,
        };
        assert_eq!(
            C_GetInterface(b"PKCS 11\0".as_ptr() as *mut _, &mut v2, &mut iface, 0),
            CKR_OK
        );
        let mut v9 = CK_VERSION { major: 9, minor: 9 };
        assert_eq!(
            C_GetInterface(null_mut(), &mut v9, &mut iface, 0),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_GetInterface(b"Vendor\0".as_ptr() as *mut _, null_mut(), &mut iface, 0),
            CKR_ARGUMENTS_BAD
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
fn copy_object_keeps_the_sticky_rules() {
    let _env = setup();
    let h = token_session();
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut value = [5u8; 16];
    let (mut sensitive, mut label) = (1 as CK_BBOOL, *b"orig");
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
        bool_attr(CKA_SENSITIVE, &mut sensitive),
        bytes_attr(CKA_LABEL, &mut label),
    ];
    let mut o = 0;
    // SAFETY: valid templates.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 5, &mut o), CKR_OK);
        let mut new_label = *b"copy";
        let mut ct = [bytes_attr(CKA_LABEL, &mut new_label)];
        let mut c = 0;
        assert_eq!(C_CopyObject(h, o, ct.as_mut_ptr(), 1, &mut c), CKR_OK);
        assert_ne!(c, o);
        let mut got = [0u8; 4];
        let mut q = [bytes_attr(CKA_LABEL, &mut got)];
        assert_eq!(C_GetAttributeValue(h, c, q.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(&got, b"copy");
        let mut no: CK_BBOOL = 0;
        let mut relax = [bool_attr(CKA_SENSITIVE, &mut no)];
        assert_eq!(
            C_CopyObject(h, o, relax.as_mut_ptr(), 1, &mut c),
            CKR_ATTRIBUTE_READ_ONLY
        );
        let mut copyable: CK_BBOOL = 0;
        let mut freeze = [bool_attr(CKA_COPYABLE, &mut copyable)];
        assert_eq!(C_SetAttributeValue(h, o, freeze.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(
            C_CopyObject(h, o, ct.as_mut_ptr(), 1, &mut c),
            CKR_ACTION_PROHIBITED
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

#[test]
fn a_failed_self_test_leaves_the_module_in_its_error_state() {
    let env = setup_with_injected_failure(Some("aes-gcm"));
    let h = token_session();
    let mut random = [0u8; 16];
    let mut data = *b"abc";
    let mut out = [0u8; 32];
    let mut n = out.len() as CK_ULONG;
    // SAFETY: valid buffers.
    unsafe {
        let mut ti: CK_TOKEN_INFO = std::mem::zeroed();
        assert_eq!(C_GetTokenInfo(1, &mut ti), CKR_OK);
        assert_ne!(ti.flags & CKF_ERROR_STATE, 0);
        assert_eq!(
            C_GenerateRandom(h, random.as_mut_ptr(), 16),
            CKR_DEVICE_ERROR
        );
        assert_eq!(random, [0u8; 16], "no output in the error state");
        let mut m = CK_MECHANISM {
            mechanism: CKM_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_DigestInit(h, &mut m), CKR_DEVICE_ERROR);
        assert_eq!(
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
        let mut params = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let mut pt = [bytes_attr(CKA_EC_PARAMS, &mut params)];
        let mut keygen = CK_MECHANISM {
            mechanism: CKM_EC_KEY_PAIR_GEN,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (mut p, mut s) = (0, 0);
        assert_eq!(
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.as_mut_ptr(),
                1,
                null_mut(),
                0,
                &mut p,
                &mut s
            ),
            CKR_DEVICE_ERROR
        );
    }
    drop(env);
    // A clean start runs the self-tests again and passes.
    let _env = setup();
    let h = token_session();
    // SAFETY: valid buffer.
    assert_eq!(
        unsafe { C_GenerateRandom(h, random.as_mut_ptr(), 16) },
        CKR_OK
    );
}

#[test]
fn hmac_sign_and_verify_with_generic_secret_keys() {
    let _env = setup();
    let h = token_session();
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_GENERIC_SECRET;
    let mut value = *b"Jefe";
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
    ];
    let mut key = 0;
    let mut data = *b"what do ya want for nothing?";
    let rfc4231 = [
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75,
        0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec,
        0x38, 0x43,
    ];
    // SAFETY: valid templates and buffers.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 3, &mut key), CKR_OK);
        let mut m = CK_MECHANISM {
            mechanism: CKM_SHA256_HMAC,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_SignInit(h, &mut m, key), CKR_OK);
        let mut n: CK_ULONG = 0;
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), data.len() as _, null_mut(), &mut n),
            CKR_OK
        );
        assert_eq!(n, 32);
        let mut tag = [0u8; 32];
        assert_eq!(
            C_Sign(
                h,
                data.as_mut_ptr(),
                data.len() as _,
                tag.as_mut_ptr(),
                &mut n
            ),
            CKR_OK
        );
        assert_eq!(tag, rfc4231, "RFC 4231 test case 2");
        // Multi-part gives the same tag.
        assert_eq!(C_SignInit(h, &mut m, key), CKR_OK);
        assert_eq!(C_SignUpdate(h, data.as_mut_ptr(), 10), CKR_OK);
        assert_eq!(
            C_SignUpdate(h, data.as_mut_ptr().add(10), data.len() as CK_ULONG - 10),
            CKR_OK
        );
        let mut tag2 = [0u8; 32];
        let mut n2: CK_ULONG = 32;
        assert_eq!(C_SignFinal(h, tag2.as_mut_ptr(), &mut n2), CKR_OK);
        assert_eq!(tag2, rfc4231);
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, tag.as_mut_ptr(), 32),
            CKR_OK
        );
        tag[3] ^= 1;
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, tag.as_mut_ptr(), 32),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, tag.as_mut_ptr(), 31),
            CKR_SIGNATURE_LEN_RANGE
        );
        // HMAC wants a generic secret, not an AES key.
        let mut aes_kt: CK_ULONG = CKK_AES;
        let mut aes_value = [1u8; 16];
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            ulong_attr(CKA_KEY_TYPE, &mut aes_kt),
            bytes_attr(CKA_VALUE, &mut aes_value),
        ];
        let mut aes = 0;
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 3, &mut aes), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, aes), CKR_KEY_TYPE_INCONSISTENT);
    }
}

#[test]
fn hmac_key_types_generate_and_serve_only_their_own_hash() {
    let _env = setup();
    let h = token_session();
    let keygen = |mech: CK_MECHANISM_TYPE, len: CK_ULONG| {
        let mut m = CK_MECHANISM {
            mechanism: mech,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut len = len;
        let (mut s, mut v): (CK_BBOOL, CK_BBOOL) = (1, 1);
        let mut t = [
            ulong_attr(CKA_VALUE_LEN, &mut len),
            bool_attr(CKA_SIGN, &mut s),
            bool_attr(CKA_VERIFY, &mut v),
        ];
        let mut key = 0;
        // SAFETY: valid mechanism and template.
        match unsafe { C_GenerateKey(h, &mut m, t.as_mut_ptr(), 3, &mut key) } {
            CKR_OK => Ok(key),
            rv => Err(rv),
        }
    };
    let mac = |mech: CK_MECHANISM_TYPE, key: CK_OBJECT_HANDLE| {
        let mut m = CK_MECHANISM {
            mechanism: mech,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        // SAFETY: valid mechanism.
        match unsafe { C_SignInit(h, &mut m, key) } {
            CKR_OK => {}
            rv => return Err(rv),
        }
        let mut data = *b"sha2 hmac key";
        let mut tag = [0u8; 64];
        let mut n = tag.len() as CK_ULONG;
        // SAFETY: buffers of the given lengths.
        let rv = unsafe {
            C_Sign(
                h,
                data.as_mut_ptr(),
                data.len() as _,
                tag.as_mut_ptr(),
                &mut n,
            )
        };
        assert_eq!(rv, CKR_OK);
        Ok(n)
    };
    for (gen_mech, kt, own, tag_len, other) in [
        (
            CKM_SHA_1_KEY_GEN,
            CKK_SHA_1_HMAC,
            CKM_SHA_1_HMAC,
            20,
            CKM_SHA256_HMAC,
        ),
        (
            CKM_SHA224_KEY_GEN,
            CKK_SHA224_HMAC,
            CKM_SHA224_HMAC,
            28,
            CKM_SHA_1_HMAC,
        ),
        (
            CKM_SHA256_KEY_GEN,
            CKK_SHA256_HMAC,
            CKM_SHA256_HMAC,
            32,
            CKM_SHA512_HMAC,
        ),
        (
            CKM_SHA384_KEY_GEN,
            CKK_SHA384_HMAC,
            CKM_SHA384_HMAC,
            48,
            CKM_SHA256_HMAC,
        ),
        (
            CKM_SHA512_KEY_GEN,
            CKK_SHA512_HMAC,
            CKM_SHA512_HMAC,
            64,
            CKM_SHA384_HMAC,
        ),
    ] {
        let key = keygen(gen_mech, 256).unwrap();
        let mut got: CK_ULONG = 0;
        let mut q = [ulong_attr(CKA_KEY_TYPE, &mut got)];
        // SAFETY: valid template.
        assert_eq!(
            unsafe { C_GetAttributeValue(h, key, q.as_mut_ptr(), 1) },
            CKR_OK
        );
        assert_eq!(got, kt, "key type of {gen_mech:#x}");
        assert_eq!(mac(own, key), Ok(tag_len));
        assert_eq!(mac(other, key), Err(CKR_KEY_TYPE_INCONSISTENT));
    }
    assert_eq!(keygen(CKM_SHA256_KEY_GEN, 0), Err(CKR_KEY_SIZE_RANGE));
    assert_eq!(keygen(CKM_SHA256_KEY_GEN, 513), Err(CKR_KEY_SIZE_RANGE));
}

/// An AES session key with this value and ENCRYPT/DECRYPT.
fn aes_key(h: CK_SESSION_HANDLE, value: &mut [u8]) -> CK_OBJECT_HANDLE {
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let (mut e, mut d): (CK_BBOOL, CK_BBOOL) = (1, 1);
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, value),
        bool_attr(CKA_ENCRYPT, &mut e),
        bool_attr(CKA_DECRYPT, &mut d),
    ];
    let mut key = 0;
    // SAFETY: valid template.
    assert_eq!(
        unsafe { C_CreateObject(h, t.as_mut_ptr(), 5, &mut key) },
        CKR_OK
    );
    key
}

/// One C_EncryptInit + C_Encrypt (or decrypt) with the given mechanism, sizing the output
/// with a length query first.
fn crypt(
    h: CK_SESSION_HANDLE,
    m: &mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    encrypt: bool,
) -> Result<Vec<u8>, CK_RV> {
    let mut input = data.to_vec();
    let mut n: CK_ULONG = 0;
    let call = |out: *mut u8, n: &mut CK_ULONG, input: &mut Vec<u8>| {
        // SAFETY: valid buffers of the stated lengths (or a NULL output for the length).
        unsafe {
            if encrypt {
                C_Encrypt(h, input.as_mut_ptr(), input.len() as _, out, n)
            } else {
                C_Decrypt(h, input.as_mut_ptr(), input.len() as _, out, n)
            }
        }
    };
    // SAFETY: valid mechanism.
    let rv = unsafe {
        if encrypt {
            C_EncryptInit(h, m, key)
        } else {
            C_DecryptInit(h, m, key)
        }
    };
    if rv != CKR_OK {
        return Err(rv);
    }
    match call(null_mut(), &mut n, &mut input) {
        CKR_OK => {}
        rv => return Err(rv),
    }
    let mut out = vec![0u8; n as usize];
    match call(out.as_mut_ptr(), &mut n, &mut input) {
        CKR_OK => {}
        rv => return Err(rv),
    }
    out.truncate(n as usize);
    Ok(out)
}

#[test]
fn aes_block_modes_match_sp800_38a() {
    let _env = setup();
    let h = token_session();
    let mut value = hexv("2b7e151628aed2a6abf7158809cf4f3c");
    let key = aes_key(h, &mut value);
    let pt = hexv("6bc1bee22e409f96e93d7e117393172a");
    let mut iv = hexv("000102030405060708090a0b0c0d0e0f");
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    assert_eq!(
        crypt(h, &mut cbc, key, &pt, true).unwrap(),
        hexv("7649abac8119b246cee98e9b12e9197d")
    );
    assert_eq!(
        crypt(
            h,
            &mut cbc,
            key,
            &hexv("7649abac8119b246cee98e9b12e9197d"),
            false
        )
        .unwrap(),
        pt
    );
    let mut ecb = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        crypt(h, &mut ecb, key, &pt, true).unwrap(),
        hexv("3ad77bb40d7a3660a89ecaf32466ef97")
    );
    let mut ctr = CK_AES_CTR_PARAMS {
        ulCounterBits: 128,
        cb: hexv("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().unwrap(),
    };
    let mut mctr = CK_MECHANISM {
        mechanism: CKM_AES_CTR,
        pParameter: &mut ctr as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_AES_CTR_PARAMS>() as _,
    };
    assert_eq!(
        crypt(h, &mut mctr, key, &pt, true).unwrap(),
        hexv("874d6191b620e3261bef6864990db6ce")
    );
    // CBC-PAD: any length in, whole blocks out, the padding removed on the way back.
    let mut pad = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    let ct = crypt(h, &mut pad, key, b"seventeen bytes!!", true).unwrap();
    assert_eq!(ct.len(), 32);
    assert_eq!(
        crypt(h, &mut pad, key, &ct, false).unwrap(),
        b"seventeen bytes!!"
    );
    // Bad lengths and parameters.
    assert_eq!(
        crypt(h, &mut cbc, key, &[0u8; 15], true),
        Err(CKR_DATA_LEN_RANGE)
    );
    assert_eq!(
        crypt(h, &mut pad, key, &[0u8; 15], false),
        Err(CKR_ENCRYPTED_DATA_LEN_RANGE)
    );
    let mut short_iv = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 8,
    };
    assert_eq!(
        crypt(h, &mut short_iv, key, &pt, true),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    let mut no_iv = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        crypt(h, &mut no_iv, key, &pt, true),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

/// An AES key as a session object from raw attributes.
fn secret(
    h: CK_SESSION_HANDLE,
    value: &[u8],
    flags: &[(CK_ATTRIBUTE_TYPE, CK_BBOOL)],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut value = value.to_vec();
    let mut bools: Vec<CK_BBOOL> = flags.iter().map(|(_, v)| *v).collect();
    let mut t = vec![
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
    ];
    for (i, (a, _)) in flags.iter().enumerate() {
        t.push(CK_ATTRIBUTE {
            type_: *a,
            pValue: &mut bools[i] as *mut _ as *mut _,
            ulValueLen: 1,
        });
    }
    let mut o = 0;
    // SAFETY: valid template.
    match unsafe { C_CreateObject(h, t.as_mut_ptr(), t.len() as _, &mut o) } {
        CKR_OK => Ok(o),
        rv => Err(rv),
    }
}

fn wrap(
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    w: CK_OBJECT_HANDLE,
    k: CK_OBJECT_HANDLE,
) -> Result<Vec<u8>, CK_RV> {
    let mut m = CK_MECHANISM {
        mechanism: mech,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut n: CK_ULONG = 0;
    // SAFETY: length query, then a buffer of that length.
    unsafe {
        match C_WrapKey(h, &mut m, w, k, null_mut(), &mut n) {
            CKR_OK => {}
            rv => return Err(rv),
        }
        let mut out = vec![0u8; n as usize];
        assert_eq!(C_WrapKey(h, &mut m, w, k, out.as_mut_ptr(), &mut n), CKR_OK);
        out.truncate(n as usize);
        Ok(out)
    }
}

fn unwrap(
    h: CK_SESSION_HANDLE,
    w: CK_OBJECT_HANDLE,
    blob: &[u8],
    extractable: Option<CK_BBOOL>,
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let (mut e, mut d): (CK_BBOOL, CK_BBOOL) = (1, 1);
    let mut x = extractable.unwrap_or(0);
    let mut t = vec![
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bool_attr(CKA_ENCRYPT, &mut e),
        bool_attr(CKA_DECRYPT, &mut d),
    ];
    if extractable.is_some() {
        t.push(bool_attr(CKA_EXTRACTABLE, &mut x));
    }
    let mut blob = blob.to_vec();
    let mut o = 0;
    // SAFETY: valid template and blob.
    match unsafe {
        C_UnwrapKey(
            h,
            &mut m,
            w,
            blob.as_mut_ptr(),
            blob.len() as _,
            t.as_mut_ptr(),
            t.len() as _,
            &mut o,
        )
    } {
        CKR_OK => Ok(o),
        rv => Err(rv),
    }
}

#[test]
fn wrap_unwrap_and_the_key_separation_attacks() {
    let _env = setup();
    let h = token_session();
    let w = secret(h, &[1; 32], &[(CKA_WRAP, 1), (CKA_UNWRAP, 1)]).unwrap();
    let k = secret(
        h,
        &[2; 32],
        &[(CKA_EXTRACTABLE, 1), (CKA_ENCRYPT, 1), (CKA_DECRYPT, 1)],
    )
    .unwrap();
    let blob = wrap(h, CKM_AES_KEY_WRAP, w, k).unwrap();
    assert_eq!(blob.len(), 40);
    let k2 = unwrap(h, w, &blob, None).unwrap();
    // The unwrapped key is the same key: what one encrypts, the other decrypts.
    let mut iv = [3u8; 16];
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    let ct = crypt(h, &mut cbc, k, &[9u8; 32], true).unwrap();
    assert_eq!(crypt(h, &mut cbc, k2, &ct, false).unwrap(), vec![9u8; 32]);
    // Imported through unwrap: never local, always-sensitive or never-extractable.
    let (mut local, mut always, mut never) = (1 as CK_BBOOL, 1 as CK_BBOOL, 1 as CK_BBOOL);
    let mut q = [
        bool_attr(CKA_LOCAL, &mut local),
        bool_attr(CKA_ALWAYS_SENSITIVE, &mut always),
        bool_attr(CKA_NEVER_EXTRACTABLE, &mut never),
    ];
    // SAFETY: valid template.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, k2, q.as_mut_ptr(), 3) },
        CKR_OK
    );
    assert_eq!((local, always, never), (0, 0, 0));

    // Clulow: wrap K under W, then decrypt the blob with W. W cannot decrypt.
    let mut ecb = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        crypt(h, &mut ecb, w, &blob[..32], false),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // ... or encrypt chosen data with W and unwrap it as a key. W cannot encrypt.
    assert_eq!(
        crypt(h, &mut ecb, w, &[0u8; 32], true),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // (Keys asked to hold both roles: `ffi_key_separation.rs`, standard and strict.)

    // Unextractable keys never leave; nor under a weaker key; nor, when marked so, under an
    // untrusted key.
    let sealed = secret(h, &[5; 32], &[(CKA_EXTRACTABLE, 0)]).unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, w, sealed),
        Err(CKR_KEY_UNEXTRACTABLE)
    );
    let weak = secret(h, &[6; 16], &[(CKA_WRAP, 1)]).unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, weak, k),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );
    let picky = secret(
        h,
        &[7; 32],
        &[(CKA_EXTRACTABLE, 1), (CKA_WRAP_WITH_TRUSTED, 1)],
    )
    .unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, w, picky),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );
    // A key without CKA_WRAP wraps nothing; a key of the wrong type is refused as such.
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, k, k2),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, 0xdead, k),
        Err(CKR_WRAPPING_KEY_HANDLE_INVALID)
    );
    // KWP wraps any length.
    assert_eq!(wrap(h, CKM_AES_KEY_WRAP_KWP, w, k).unwrap().len(), 40);

    // The blob carries the key's length: a CKA_VALUE_LEN that disagrees is refused rather
    // than overridden, one that agrees is accepted.
    let unwrap_len = |len: CK_ULONG| {
        let mut m = CK_MECHANISM {
            mechanism: CKM_AES_KEY_WRAP,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (mut class, mut kt, mut len) = (CKO_SECRET_KEY, CKK_AES, len);
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            ulong_attr(CKA_KEY_TYPE, &mut kt),
            ulong_attr(CKA_VALUE_LEN, &mut len),
        ];
        let mut b = blob.clone();
        let mut o = 0;
        // SAFETY: valid template and blob.
        unsafe {
            C_UnwrapKey(
                h,
                &mut m,
                w,
                b.as_mut_ptr(),
                b.len() as _,
                t.as_mut_ptr(),
                t.len() as _,
                &mut o,
            )
        }
    };
    assert_eq!(unwrap_len(16), CKR_TEMPLATE_INCONSISTENT);
    assert_eq!(unwrap_len(blob.len() as CK_ULONG - 8), CKR_OK);

    // Damaged or truncated blobs are refused.
    let mut bad = blob.clone();
    bad[7] ^= 1;
    assert_eq!(unwrap(h, w, &bad, None), Err(CKR_WRAPPED_KEY_INVALID));
    assert_eq!(
        unwrap(h, w, &blob[..12], None),
        Err(CKR_WRAPPED_KEY_LEN_RANGE)
    );
    assert_eq!(
        unwrap(h, k, &blob, None),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
}

#[test]
fn unwrap_template_and_trusted_wrapping() {
    let _env = setup();
    let h = token_session();
    // An unwrapping key whose CKA_UNWRAP_TEMPLATE pins CKA_EXTRACTABLE = FALSE.
    let mut f: CK_BBOOL = 0;
    let mut inner = [bool_attr(CKA_EXTRACTABLE, &mut f)];
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut value = [8u8; 32];
    let (mut wr, mut un): (CK_BBOOL, CK_BBOOL) = (1, 1);
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
        bool_attr(CKA_WRAP, &mut wr),
        bool_attr(CKA_UNWRAP, &mut un),
        CK_ATTRIBUTE {
            type_: CKA_UNWRAP_TEMPLATE,
            pValue: inner.as_mut_ptr() as *mut _,
            ulValueLen: std::mem::size_of::<CK_ATTRIBUTE>() as _,
        },
    ];
    let mut w = 0;
    // SAFETY: valid template with a nested template.
    assert_eq!(
        unsafe { C_CreateObject(h, t.as_mut_ptr(), 6, &mut w) },
        CKR_OK
    );
    // The template reads back the way PKCS#11 reads array attributes: its size first,
    // then the element types and lengths, then the values.
    let size = std::mem::size_of::<CK_ATTRIBUTE>() as CK_ULONG;
    let mut q = [CK_ATTRIBUTE {
        type_: CKA_UNWRAP_TEMPLATE,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    // SAFETY: valid template, NULL pValue.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(q[0].ulValueLen, size, "one nested attribute");
    let mut elements = [CK_ATTRIBUTE {
        type_: 0xffff,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    q[0].pValue = elements.as_mut_ptr() as *mut _;
    q[0].ulValueLen = size - 1;
    // SAFETY: pValue is writable for ulValueLen bytes.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(q[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    q[0].ulValueLen = size;
    // SAFETY: room for one element whose pValue is NULL.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(
        (elements[0].type_, elements[0].ulValueLen),
        (CKA_EXTRACTABLE, 1)
    );
    let mut pinned: CK_BBOOL = 7;
    elements[0].pValue = &mut pinned as *mut CK_BBOOL as *mut _;
    // The write above went through `elements` itself: hand the module a fresh pointer.
    q[0].pValue = elements.as_mut_ptr() as *mut _;
    // SAFETY: the element's buffer holds one CK_BBOOL.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(
        pinned, 0,
        "CKA_EXTRACTABLE = FALSE read back from the template"
    );

    let k = secret(h, &[9; 32], &[(CKA_EXTRACTABLE, 1)]).unwrap();
    let blob = wrap(h, CKM_AES_KEY_WRAP, w, k).unwrap();
    assert_eq!(
        unwrap(h, w, &blob, Some(1)),
        Err(CKR_TEMPLATE_INCONSISTENT),
        "conflicts with CKA_UNWRAP_TEMPLATE"
    );
    let k2 = unwrap(h, w, &blob, None).unwrap();
    let mut x: CK_BBOOL = 1;
    let mut q = [bool_attr(CKA_EXTRACTABLE, &mut x)];
    // SAFETY: valid template.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, k2, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(x, 0, "the unwrap template applied");

    // CKA_WRAP_WITH_TRUSTED keys leave only under a key the SO marked trusted.
    let picky = secret(
        h,
        &[10; 32],
        &[(CKA_EXTRACTABLE, 1), (CKA_WRAP_WITH_TRUSTED, 1)],
    )
    .unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, w, picky),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );
    // The user cannot mark a key trusted.
    let mut yes: CK_BBOOL = 1;
    let mut trust = [bool_attr(CKA_TRUSTED, &mut yes)];
    // SAFETY: valid template.
    assert_eq!(
        unsafe { C_SetAttributeValue(h, w, trust.as_mut_ptr(), 1) },
        CKR_ATTRIBUTE_READ_ONLY
    );
    // The SO can (on a public key it can see).
    // SAFETY: valid buffers.
    unsafe {
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(
            C_Login(h, CKU_SO, SO.as_ptr() as *mut _, SO.len() as _),
            CKR_OK
        );
    }
    let trusted = secret(
        h,
        &[11; 32],
        &[(CKA_PRIVATE, 0), (CKA_WRAP, 1), (CKA_TRUSTED, 1)],
    )
    .unwrap();
    // SAFETY: valid buffers.
    unsafe {
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(
            C_Login(h, CKU_USER, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_OK
        );
    }
    assert_eq!(wrap(h, CKM_AES_KEY_WRAP, trusted, picky).unwrap().len(), 40);
}

#[test]
fn aes_cmac_matches_sp800_38b() {
    let _env = setup();
    let h = token_session();
    let mut value = hexv("2b7e151628aed2a6abf7158809cf4f3c");
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
    ];
    let mut key = 0;
    let mut data = hexv("6bc1bee22e409f96e93d7e117393172a");
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_CMAC,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut tag = [0u8; 16];
    let mut n: CK_ULONG = 16;
    // SAFETY: valid template and buffers.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 3, &mut key), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 16, tag.as_mut_ptr(), &mut n),
            CKR_OK
        );
        assert_eq!(tag.to_vec(), hexv("070a16b46b4d4144f79bdd9dd04a287c"));
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 16, tag.as_mut_ptr(), 16),
            CKR_OK
        );
        tag[0] ^= 1;
        assert_eq!(C_VerifyInit(h, &mut m, key), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 16, tag.as_mut_ptr(), 16),
            CKR_SIGNATURE_INVALID
        );
    }
}

/// An EC P-256 pair with CKA_DERIVE on the private half; returns (public point, private).
fn derive_pair(h: CK_SESSION_HANDLE, derive: CK_BBOOL) -> (Vec<u8>, CK_OBJECT_HANDLE) {
    let mut params = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut pt = [bytes_attr(CKA_EC_PARAMS, &mut params)];
    let mut d = derive;
    let mut st = [bool_attr(CKA_DERIVE, &mut d)];
    let mut keygen = CK_MECHANISM {
        mechanism: CKM_EC_KEY_PAIR_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let (mut p, mut s) = (0, 0);
    let mut point = [0u8; 67];
    let mut q = [bytes_attr(CKA_EC_POINT, &mut point)];
    // SAFETY: valid templates and buffers.
    unsafe {
        assert_eq!(
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.as_mut_ptr(),
                1,
                st.as_mut_ptr(),
                1,
                &mut p,
                &mut s
            ),
            CKR_OK
        );
        assert_eq!(C_GetAttributeValue(h, p, q.as_mut_ptr(), 1), CKR_OK);
    }
    (point[2..].to_vec(), s)
}

fn ecdh_derive(
    h: CK_SESSION_HANDLE,
    base: CK_OBJECT_HANDLE,
    peer: &[u8],
    sensitive: CK_BBOOL,
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut peer = peer.to_vec();
    let mut params = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: null_mut(),
        ulPublicDataLen: peer.len() as _,
        pPublicData: peer.as_mut_ptr(),
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_ECDH1_DERIVE,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>() as _,
    };
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut len: CK_ULONG = 32;
    let (mut e, mut d, mut s) = (1 as CK_BBOOL, 1 as CK_BBOOL, sensitive);
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        ulong_attr(CKA_VALUE_LEN, &mut len),
        bool_attr(CKA_ENCRYPT, &mut e),
        bool_attr(CKA_DECRYPT, &mut d),
        bool_attr(CKA_SENSITIVE, &mut s),
    ];
    let mut out = 0;
    // SAFETY: valid mechanism, template and output.
    match unsafe { C_DeriveKey(h, &mut m, base, t.as_mut_ptr(), t.len() as _, &mut out) } {
        CKR_OK => Ok(out),
        rv => Err(rv),
    }
}

#[test]
fn ecdh_derive_agrees_and_propagates_sensitivity() {
    let _env = setup();
    let h = token_session();
    let (a_point, a) = derive_pair(h, 1);
    let (b_point, b) = derive_pair(h, 1);
    let ka = ecdh_derive(h, a, &b_point, 1).unwrap();
    let kb = ecdh_derive(h, b, &a_point, 1).unwrap();
    // Both sides hold the same key: what one encrypts the other decrypts.
    let mut iv = [1u8; 16];
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    let ct = crypt(h, &mut cbc, ka, &[7u8; 32], true).unwrap();
    assert_eq!(crypt(h, &mut cbc, kb, &ct, false).unwrap(), vec![7u8; 32]);
    // Generated base (always sensitive, never extractable) AND a sensitive new key.
    let (mut always, mut never, mut local) = (0 as CK_BBOOL, 0 as CK_BBOOL, 1 as CK_BBOOL);
    let mut q = [
        bool_attr(CKA_ALWAYS_SENSITIVE, &mut always),
        bool_attr(CKA_NEVER_EXTRACTABLE, &mut never),
        bool_attr(CKA_LOCAL, &mut local),
    ];
    // SAFETY: valid template.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, ka, q.as_mut_ptr(), 3) },
        CKR_OK
    );
    assert_eq!((always, never, local), (1, 1, 0));
    // A non-sensitive derived key is not "always sensitive".
    let kc = ecdh_derive(h, a, &b_point, 0).unwrap();
    let mut q = [bool_attr(CKA_ALWAYS_SENSITIVE, &mut always)];
    // SAFETY: valid template.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, kc, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(always, 0);
    // Refusals.
    let (_, no_derive) = derive_pair(h, 0);
    assert_eq!(
        ecdh_derive(h, no_derive, &b_point, 1),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        ecdh_derive(h, a, &[4u8; 65], 1),
        Err(CKR_MECHANISM_PARAM_INVALID),
        "a point off the curve"
    );
}

/// ECDH into an extractable, non-sensitive generic secret with the given KDF; returns
/// the derived value.
fn ecdh_value(
    h: CK_SESSION_HANDLE,
    base: CK_OBJECT_HANDLE,
    peer: &[u8],
    kdf: CK_ULONG,
    shared: &[u8],
    len: Option<CK_ULONG>,
) -> Result<Vec<u8>, CK_RV> {
    let mut peer = peer.to_vec();
    let mut shared = shared.to_vec();
    let mut params = CK_ECDH1_DERIVE_PARAMS {
        kdf,
        ulSharedDataLen: shared.len() as _,
        pSharedData: if shared.is_empty() {
            null_mut()
        } else {
            shared.as_mut_ptr()
        },
        ulPublicDataLen: peer.len() as _,
        pPublicData: peer.as_mut_ptr(),
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_ECDH1_DERIVE,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>() as _,
    };
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_GENERIC_SECRET;
    let mut n = len.unwrap_or(0);
    let (mut s, mut x) = (0 as CK_BBOOL, 1 as CK_BBOOL);
    let mut t = vec![
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bool_attr(CKA_SENSITIVE, &mut s),
        bool_attr(CKA_EXTRACTABLE, &mut x),
    ];
    if len.is_some() {
        t.push(ulong_attr(CKA_VALUE_LEN, &mut n));
    }
    let mut out = 0;
    // SAFETY: valid mechanism, template and output.
    match unsafe { C_DeriveKey(h, &mut m, base, t.as_mut_ptr(), t.len() as _, &mut out) } {
        CKR_OK => {}
        rv => return Err(rv),
    }
    let mut value = vec![0u8; 512];
    let mut q = [bytes_attr(CKA_VALUE, &mut value)];
    // SAFETY: valid template, 512-byte buffer.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, out, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    let got = q[0].ulValueLen as usize;
    value.truncate(got);
    Ok(value)
}

#[test]
fn ecdh_with_the_x963_sha_kdfs() {
    use sha2::Digest as _;
    let _env = setup();
    let h = token_session();
    let (a_point, a) = derive_pair(h, 1);
    let (b_point, b) = derive_pair(h, 1);
    let z = ecdh_value(h, a, &b_point, CKD_NULL, &[], None).unwrap();
    assert_eq!(z.len(), 32, "CKD_NULL gives the P-256 shared x-coordinate");
    // SHA-256 X9.63 with shared info, two hash blocks cut to 40 bytes, on both sides.
    let ka = ecdh_value(h, a, &b_point, CKD_SHA256_KDF, b"ferrohsm", Some(40)).unwrap();
    let kb = ecdh_value(h, b, &a_point, CKD_SHA256_KDF, b"ferrohsm", Some(40)).unwrap();
    assert_eq!(ka, kb);
    let block = |i: u32| {
        let mut d = sha2::Sha256::new();
        d.update(&z);
        d.update(i.to_be_bytes());
        d.update(b"ferrohsm");
        d.finalize().to_vec()
    };
    assert_eq!(ka, [block(1), block(2)].concat()[..40]);
    // Without CKA_VALUE_LEN a generic secret takes one hash output.
    assert_eq!(
        ecdh_value(h, a, &b_point, CKD_SHA512_KDF, &[], None)
            .unwrap()
            .len(),
        64
    );
    // Refusals: the ASN.1 and concatenation variants, shared data with CKD_NULL.
    for kdf in [CKD_SHA1_KDF_ASN1, CKD_SHA1_KDF_CONCATENATE, 0x99] {
        assert_eq!(
            ecdh_value(h, a, &b_point, kdf, &[], Some(16)),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
    }
    assert_eq!(
        ecdh_value(h, a, &b_point, CKD_NULL, b"info", Some(16)),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

#[test]
fn rsa_oaep_unwraps_a_key_sealed_to_our_public_key() {
    let _env = setup();
    let h = token_session();
    let (public, private) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[
            (CKA_MODULUS_BITS, Val::Ulong(2048)),
            (CKA_ENCRYPT, Val::Bool(true)),
        ],
        &[(CKA_UNWRAP, Val::Bool(true))],
    )
    .unwrap();
    let mut label = *b"import";
    let mut params = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: label.as_mut_ptr() as *mut _,
        ulSourceDataLen: label.len() as _,
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as _,
    };
    // The sender seals an AES-256 key to our public key (C_Encrypt stands in for it).
    let secret = [0x5au8; 32];
    let blob = crypt(h, &mut m, public, &secret, true).unwrap();
    let unwrap_with = |m: &mut CK_MECHANISM, key: CK_OBJECT_HANDLE, blob: &[u8]| {
        let (mut class, mut kt) = (CKO_SECRET_KEY, CKK_AES);
        let (mut s, mut x) = (0 as CK_BBOOL, 1 as CK_BBOOL);
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            ulong_attr(CKA_KEY_TYPE, &mut kt),
            bool_attr(CKA_SENSITIVE, &mut s),
            bool_attr(CKA_EXTRACTABLE, &mut x),
        ];
        let mut b = blob.to_vec();
        let mut out = 0;
        // SAFETY: valid mechanism, blob and template.
        match unsafe {
            C_UnwrapKey(
                h,
                m,
                key,
                b.as_mut_ptr(),
                b.len() as _,
                t.as_mut_ptr(),
                4,
                &mut out,
            )
        } {
            CKR_OK => Ok(out),
            rv => Err(rv),
        }
    };
    let k = unwrap_with(&mut m, private, &blob).unwrap();
    let mut value = [0u8; 32];
    let mut q = [bytes_attr(CKA_VALUE, &mut value)];
    // SAFETY: valid template.
    assert_eq!(
        unsafe { C_GetAttributeValue(h, k, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(value, secret);
    // A damaged blob, the public key, and the AES-wrap path for an RSA key are refused.
    let mut bad = blob.clone();
    bad[10] ^= 1;
    assert_eq!(
        unwrap_with(&mut m, private, &bad),
        Err(CKR_WRAPPED_KEY_INVALID)
    );
    assert_eq!(
        unwrap_with(&mut m, private, &blob[1..]),
        Err(CKR_WRAPPED_KEY_LEN_RANGE)
    );
    assert_eq!(
        unwrap_with(&mut m, public, &blob),
        Err(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)
    );
    let mut kw = CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        unwrap_with(&mut kw, private, &blob),
        Err(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)
    );
    // Sending it back the same way is refused: an AES-256 key does not leave under
    // RSA-2048 (112-bit strength), and this public key has no CKA_WRAP anyway.
    let mut n: CK_ULONG = 512;
    let mut out = [0u8; 512];
    // SAFETY: valid mechanism and buffers.
    assert_eq!(
        unsafe { C_WrapKey(h, &mut m, public, k, out.as_mut_ptr(), &mut n) },
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
}

#[test]
fn digest_key_feeds_a_secret_value_into_the_digest() {
    use sha2::Digest as _;
    let _env = setup();
    let h = token_session();
    let value = [0x3cu8; 32];
    let key = secret(h, &value, &[(CKA_SENSITIVE, 0), (CKA_EXTRACTABLE, 1)]).unwrap();
    let mut m = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut abc = *b"abc";
    let mut out = [0u8; 32];
    let mut n: CK_ULONG = 32;
    // SAFETY: valid mechanism and buffers.
    unsafe {
        assert_eq!(C_DigestKey(h, key), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(C_DigestInit(h, &mut m), CKR_OK);
        assert_eq!(C_DigestUpdate(h, abc.as_mut_ptr(), 3), CKR_OK);
        assert_eq!(C_DigestKey(h, key), CKR_OK);
        assert_eq!(C_DigestKey(h, 0xdead), CKR_KEY_HANDLE_INVALID);
        assert_eq!(C_DigestFinal(h, out.as_mut_ptr(), &mut n), CKR_OK);
    }
    let mut want = sha2::Sha256::new();
    want.update(b"abc");
    want.update(value);
    assert_eq!(out.as_slice(), want.finalize().as_slice());
    // Only non-sensitive, extractable secret keys are digested: a long HMAC key's digest
    // is the key HMAC uses.
    let (point, private) = derive_pair(h, 0);
    assert_eq!(point.len(), 65);
    let sensitive = secret(h, &value, &[(CKA_SENSITIVE, 1), (CKA_EXTRACTABLE, 1)]).unwrap();
    let sealed = secret(h, &value, &[(CKA_SENSITIVE, 0), (CKA_EXTRACTABLE, 0)]).unwrap();
    // SAFETY: valid mechanism.
    unsafe {
        assert_eq!(C_DigestInit(h, &mut m), CKR_OK);
        for k in [private, sensitive, sealed] {
            assert_eq!(C_DigestKey(h, k), CKR_KEY_INDIGESTIBLE);
        }
    }
}

#[test]
fn rsa_oaep_encrypt_and_decrypt() {
    let _env = setup();
    let h = token_session();
    let (public, private) = rsa_pair(h);
    let oaep = |label: &mut [u8], mgf: CK_ULONG| CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: label.as_mut_ptr() as *mut _,
        ulSourceDataLen: label.len() as _,
    };
    let mut label = *b"ferrohsm";
    let mut params = oaep(&mut label, CKG_MGF1_SHA256);
    let mut m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as _,
    };
    let ct = crypt(h, &mut m, public, b"key material", true).unwrap();
    assert_eq!(ct.len(), 256);
    assert_eq!(
        crypt(h, &mut m, private, &ct, false).unwrap(),
        b"key material"
    );
    let mut other = *b"another!";
    let mut wrong_label = oaep(&mut other, CKG_MGF1_SHA256);
    let mut m2 = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut wrong_label as *mut _ as *mut _,
        ulParameterLen: m.ulParameterLen,
    };
    assert_eq!(
        crypt(h, &mut m2, private, &ct, false),
        Err(CKR_ENCRYPTED_DATA_INVALID)
    );
    let mut mismatched = oaep(&mut label, CKG_MGF1_SHA1);
    let mut m3 = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut mismatched as *mut _ as *mut _,
        ulParameterLen: m.ulParameterLen,
    };
    assert_eq!(
        crypt(h, &mut m3, public, b"x", true),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    let mut null_label = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: null_mut(),
        ulSourceDataLen: 4,
    };
    let mut m4 = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut null_label as *mut _ as *mut _,
        ulParameterLen: m.ulParameterLen,
    };
    assert_eq!(
        crypt(h, &mut m4, public, b"x", true),
        Err(CKR_MECHANISM_PARAM_INVALID),
        "NULL label with a length"
    );
    assert_eq!(
        crypt(h, &mut m, private, b"x", true),
        Err(CKR_KEY_TYPE_INCONSISTENT),
        "encrypt with the private half"
    );
    assert_eq!(
        crypt(h, &mut m, public, &[1u8; 300], true),
        Err(CKR_DATA_LEN_RANGE)
    );
}

fn rsa_pair(h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[(CKA_MODULUS_BITS, Val::Ulong(2048))],
        &[],
    )
    .unwrap()
}

#[test]
fn rsa_pkcs1_v15_decryption_is_off_unless_configured() {
    {
        let _env = setup();
        let h = token_session();
        let (public, private) = rsa_pair(h);
        let mut m = CK_MECHANISM {
            mechanism: CKM_RSA_PKCS,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let ct = crypt(h, &mut m, public, b"legacy", true).unwrap();
        assert_eq!(ct.len(), 256);
        assert_eq!(
            crypt(h, &mut m, private, &ct, false),
            Err(CKR_MECHANISM_INVALID),
            "off by default"
        );
        let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: valid output.
        assert_eq!(
            unsafe { C_GetMechanismInfo(1, CKM_RSA_PKCS, &mut info) },
            CKR_OK
        );
        assert_eq!(info.flags & CKF_DECRYPT, 0);
    }
    let _env = setup_with(None, "allow_rsa_pkcs1_v15_decrypt = true\n");
    let h = token_session();
    let (public, private) = rsa_pair(h);
    let mut m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let ct = crypt(h, &mut m, public, b"legacy", true).unwrap();
    assert_eq!(crypt(h, &mut m, private, &ct, false).unwrap(), b"legacy");
}

#[test]
fn ed25519_keys_sign_and_verify() {
    let _env = setup();
    let h = token_session();
    let mut params = [0x06, 0x03, 0x2b, 0x65, 0x70];
    let mut pt = [bytes_attr(CKA_EC_PARAMS, &mut params)];
    let mut keygen = CK_MECHANISM {
        mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let (mut public, mut private) = (0, 0);
    let mut point = [0u8; 34];
    let mut q = [bytes_attr(CKA_EC_POINT, &mut point)];
    let mut data = *b"signed with Ed25519";
    let mut sig = [0u8; 64];
    let mut n: CK_ULONG = 64;
    let mut m = CK_MECHANISM {
        mechanism: CKM_EDDSA,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    // SAFETY: valid templates and buffers.
    unsafe {
        assert_eq!(
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.as_mut_ptr(),
                1,
                null_mut(),
                0,
                &mut public,
                &mut private
            ),
            CKR_OK
        );
        assert_eq!(C_GetAttributeValue(h, public, q.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(
            &point[..2],
            &[0x04, 0x20],
            "CKA_EC_POINT is a DER OCTET STRING of 32 bytes"
        );
        assert_eq!(C_SignInit(h, &mut m, private), CKR_OK);
        assert_eq!(
            C_Sign(
                h,
                data.as_mut_ptr(),
                data.len() as _,
                sig.as_mut_ptr(),
                &mut n
            ),
            CKR_OK
        );
        assert_eq!(n, 64);
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, sig.as_mut_ptr(), 64),
            CKR_OK
        );
        sig[0] ^= 1;
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), data.len() as _, sig.as_mut_ptr(), 64),
            CKR_SIGNATURE_INVALID
        );
        // ECDSA on an Edwards key, EdDSA on a Weierstrass key: both refused.
        let mut ecdsa = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(
            C_SignInit(h, &mut ecdsa, private),
            CKR_KEY_TYPE_INCONSISTENT
        );
        let (_, p256) = ec_pair(h);
        assert_eq!(C_SignInit(h, &mut m, p256), CKR_KEY_TYPE_INCONSISTENT);
        // Pre-hashed Ed25519ph is not offered.
        let mut ph = CK_EDDSA_PARAMS {
            phFlag: 1,
            ulContextDataLen: 0,
            pContextData: null_mut(),
        };
        let mut mph = CK_MECHANISM {
            mechanism: CKM_EDDSA,
            pParameter: &mut ph as *mut _ as *mut _,
            ulParameterLen: std::mem::size_of::<CK_EDDSA_PARAMS>() as _,
        };
        assert_eq!(
            C_SignInit(h, &mut mph, private),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn hkdf_derive_matches_rfc5869() {
    let _env = setup();
    let h = token_session();
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_GENERIC_SECRET;
    let mut ikm = hexv("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
    let mut derive: CK_BBOOL = 1;
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut ikm),
        bool_attr(CKA_DERIVE, &mut derive),
    ];
    let mut base = 0;
    let mut salt = hexv("000102030405060708090a0b0c");
    let mut info = hexv("f0f1f2f3f4f5f6f7f8f9");
    let mut params = CK_HKDF_PARAMS {
        bExtract: 1,
        bExpand: 1,
        prfHashMechanism: CKM_SHA256,
        ulSaltType: CKF_HKDF_SALT_DATA,
        pSalt: salt.as_mut_ptr(),
        ulSaltLen: salt.len() as _,
        hSaltKey: 0,
        pInfo: info.as_mut_ptr(),
        ulInfoLen: info.len() as _,
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_HKDF_DERIVE,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_HKDF_PARAMS>() as _,
    };
    let mut len: CK_ULONG = 42;
    let (mut sensitive, mut extractable) = (0 as CK_BBOOL, 1 as CK_BBOOL);
    let mut dt = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        ulong_attr(CKA_VALUE_LEN, &mut len),
        bool_attr(CKA_SENSITIVE, &mut sensitive),
        bool_attr(CKA_EXTRACTABLE, &mut extractable),
    ];
    let mut okm = [0u8; 42];
    let mut q = [bytes_attr(CKA_VALUE, &mut okm)];
    let mut derived = 0;
    // SAFETY: valid templates, parameters and buffers.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 4, &mut base), CKR_OK);
        assert_eq!(
            C_DeriveKey(
                h,
                &mut m,
                base,
                dt.as_mut_ptr(),
                dt.len() as _,
                &mut derived
            ),
            CKR_OK
        );
        assert_eq!(C_GetAttributeValue(h, derived, q.as_mut_ptr(), 1), CKR_OK);
    }
    assert_eq!(
        okm.to_vec(),
        hexv(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        )
    );
    // A salt from a key object is not supported.
    params.ulSaltType = CKF_HKDF_SALT_KEY;
    // The write above went through `params` itself: hand the module a fresh pointer.
    m.pParameter = &mut params as *mut _ as *mut _;
    // SAFETY: as above.
    assert_eq!(
        unsafe {
            C_DeriveKey(
                h,
                &mut m,
                base,
                dt.as_mut_ptr(),
                dt.len() as _,
                &mut derived,
            )
        },
        CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn multi_part_length_queries_consume_nothing() {
    let _env = setup();
    let h = token_session();
    let mut value = [3u8; 16];
    let key = aes_key(h, &mut value);
    let mut ecb = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut part = [9u8; 16];
    let mut out = [0u8; 64];
    // SAFETY: valid buffers.
    unsafe {
        assert_eq!(C_EncryptInit(h, &mut ecb, key), CKR_OK);
        let mut total = 0;
        for _ in 0..3 {
            let mut n: CK_ULONG = 0;
            // As the cryptoki crate does: ask for the length, then pass the part.
            assert_eq!(
                C_EncryptUpdate(h, part.as_mut_ptr(), 16, null_mut(), &mut n),
                CKR_OK
            );
            assert_eq!(n, 16, "ECB hands each whole block back at once");
            let mut n = out.len() as CK_ULONG;
            assert_eq!(
                C_EncryptUpdate(h, part.as_mut_ptr(), 16, out.as_mut_ptr(), &mut n),
                CKR_OK
            );
            total += n;
        }
        assert_eq!(total, 48, "three parts of 16 bytes, each counted once");
        let mut n: CK_ULONG = 0;
        assert_eq!(C_EncryptFinal(h, null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 0, "nothing left for the final part");
        let mut n = out.len() as CK_ULONG;
        assert_eq!(C_EncryptFinal(h, out.as_mut_ptr(), &mut n), CKR_OK);
        assert_eq!(n, 0);
        let mut n: CK_ULONG = 0;
        assert_eq!(
            C_EncryptUpdate(h, part.as_mut_ptr(), 16, null_mut(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
    }
}
