//! Bad inputs around the module's life, through the raw `C_*` functions of the rlib:
//! calls before `C_Initialize` and after `C_Finalize`, `C_Initialize`'s argument rules,
//! `C_Finalize` while other threads are mid-call (no thread outlives it), the interface
//! tables, and the error state a failed self-test leaves.
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use ferrohsm_pkcs11::*;
use std::ptr::null_mut;

#[test]
fn before_initialize_and_after_finalize() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: CK_INFO is a plain C struct of integers and byte arrays: all zeros is valid.
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
// `1 as *mut _` is the bad non-NULL `pReserved` under test, not a placeholder.
#[allow(clippy::manual_dangling_ptr)]
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
    // A joined thread's /proc entry can outlive pthread_join by a moment (the
    // kernel reaps it after waking the joiner), so wait a bounded while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while rocksdb_threads() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
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
// The interface names as a C caller spells them.
#[allow(clippy::manual_c_str_literals)]
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
    assert_eq!(
        // SAFETY: valid buffer.
        unsafe { C_GenerateRandom(h, random.as_mut_ptr(), 16) },
        CKR_OK
    );
}
