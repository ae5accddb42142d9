//! Races through the C ABI: wrong PINs at once against the lockout, lock order under a
//! storm of creates, token-info calls and session churn (with a watchdog), key state that
//! must not outlive `C_SetAttributeValue`, `C_DestroyObject` or `C_Logout`, and two PIN
//! changes that must both survive.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn open(rw: bool) -> CK_SESSION_HANDLE {
    let mut s = 0;
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    // SAFETY: a valid output.
    assert_eq!(
        // SAFETY: `s` is a live local the module writes the handle into.
        unsafe { C_OpenSession(1, flags, null_mut(), None, &mut s) },
        CKR_OK
    );
    s
}

fn login(h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> CK_RV {
    // SAFETY: a valid PIN buffer.
    unsafe { C_Login(h, user, pin.as_ptr() as *mut _, pin.len() as _) }
}

/// Seconds a stress test runs: `FERROHSM_STRESS_SECONDS`, else `default`.
fn stress_seconds(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("FERROHSM_STRESS_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Stops its watchdog when dropped, so a test that fails (or ends) does not leave one
/// running that would later end the whole test process.
struct Watchdog(Arc<AtomicBool>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Fails the test process if the counter stops moving for `limit` while `done` is unset:
/// a deadlock would otherwise hang the test run instead of failing it.
#[must_use]
fn watchdog(progress: Arc<AtomicU64>, done: Arc<AtomicBool>, limit: Duration) -> Watchdog {
    let guard = Watchdog(done.clone());
    std::thread::spawn(move || {
        let mut last = progress.load(Ordering::SeqCst);
        let mut since = Instant::now();
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(250));
            let now = progress.load(Ordering::SeqCst);
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > limit {
                eprintln!("watchdog: no call finished for {limit:?}: deadlock");
                std::process::exit(101);
            }
        }
    });
    guard
}

#[test]
fn thirty_two_wrong_pins_at_once_are_at_most_max_failures_guesses() {
    let _env = setup_with_max_failures(5);
    let h = token_session();
    assert_eq!(C_Logout(h), CKR_OK);
    let sessions: Vec<_> = (0..32).map(|_| open(false)).collect();
    let barrier = Arc::new(Barrier::new(sessions.len()));
    let answers: Vec<CK_RV> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter()
            .map(|&s| {
                let barrier = barrier.clone();
                scope.spawn(move || {
                    barrier.wait();
                    login(s, CKU_USER, b"wrong-pin")
                })
            })
            .collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let tried = answers
        .iter()
        .filter(|rv| **rv == CKR_PIN_INCORRECT)
        .count();
    let locked = answers.iter().filter(|rv| **rv == CKR_PIN_LOCKED).count();
    assert_eq!(
        tried + locked,
        32,
        "every attempt is answered one or the other"
    );
    assert!(
        tried <= 5,
        "{tried} wrong PINs were tried with max_failures = 5"
    );
    assert_eq!(tried, 5, "and the limit is reached");
    assert_eq!(login(sessions[0], CKU_USER, USER), CKR_PIN_LOCKED);
}

#[test]
fn creates_token_info_and_session_churn_never_deadlock() {
    let _env = setup();
    let h = token_session();
    let run_for = stress_seconds(60);
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let _watchdog = watchdog(progress.clone(), done.clone(), Duration::from_secs(20));
    let deadline = Instant::now() + run_for;
    let created = AtomicU64::new(0);
    std::thread::scope(|scope| {
        // Creators: token and session objects, each thread in its own session.
        for t in 0..2u8 {
            let (progress, created) = (&progress, &created);
            scope.spawn(move || {
                let s = open(true);
                let mut i = 0u32;
                while Instant::now() < deadline {
                    let mut label = vec![t];
                    label.extend(i.to_be_bytes());
                    create(
                        s,
                        &[
                            (CKA_CLASS, Val::Ulong(CKO_DATA)),
                            (CKA_TOKEN, Val::Bool(i.is_multiple_of(2))),
                            (CKA_LABEL, Val::Bytes(label)),
                        ],
                    )
                    .unwrap();
                    if i.is_multiple_of(2) {
                        created.fetch_add(1, Ordering::SeqCst);
                    }
                    progress.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            });
        }
        // Token info, which counts sessions.
        {
            let progress = &progress;
            scope.spawn(move || {
                while Instant::now() < deadline {
                    // SAFETY: an all-zero CK_TOKEN_INFO is valid to write into.
                    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
                    // SAFETY: a valid output.
                    assert_eq!(unsafe { C_GetTokenInfo(1, &mut info) }, CKR_OK);
                    progress.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // Session churn: the table's writers.
        for _ in 0..2 {
            let progress = &progress;
            scope.spawn(move || {
                while Instant::now() < deadline {
                    let s = open(true);
                    // SAFETY: an all-zero CK_SESSION_INFO is valid to write into.
                    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
                    // SAFETY: valid handles and output.
                    unsafe {
                        assert_eq!(C_GetSessionInfo(s, &mut info), CKR_OK);
                        assert_eq!(C_CloseSession(s), CKR_OK);
                    }
                    progress.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    done.store(true, Ordering::SeqCst);
    // Every created token object is there (the session ones died with their sessions).
    let mut t = Template::new(&[
        (CKA_CLASS, Val::Ulong(CKO_DATA)),
        (CKA_TOKEN, Val::Bool(true)),
    ]);
    let (p, n) = t.raw();
    let mut found = vec![0 as CK_OBJECT_HANDLE; 1 << 20];
    let mut count: CK_ULONG = 0;
    // SAFETY: `found` holds as many handles as claimed.
    unsafe {
        assert_eq!(C_FindObjectsInit(h, p, n), CKR_OK);
        assert_eq!(
            C_FindObjects(h, found.as_mut_ptr(), found.len() as _, &mut count),
            CKR_OK
        );
        assert_eq!(C_FindObjectsFinal(h), CKR_OK);
    }
    let total = created.load(Ordering::SeqCst);
    assert!(total > 0);
    assert_eq!(
        count, total as CK_ULONG,
        "every token object created is found"
    );
}

/// `C_SignInit` + `C_Sign` with ECDSA over a few bytes.
fn sign_once(s: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    let mut m = Mech::plain(CKM_ECDSA_SHA256).raw();
    let mut data = *b"data";
    let mut sig = [0u8; 64];
    let mut n = 64;
    // SAFETY: valid mechanism and buffers.
    unsafe {
        let rv = C_SignInit(s, &mut m, key);
        if rv != CKR_OK {
            return rv;
        }
        C_Sign(s, data.as_mut_ptr(), 4, sig.as_mut_ptr(), &mut n)
    }
}

#[test]
fn no_sign_init_on_old_key_state_and_no_key_left_after_logout() {
    let _env = setup();
    let h = token_session();
    let run_for = stress_seconds(15);
    let deadline = Instant::now() + run_for;
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let _watchdog = watchdog(progress.clone(), done.clone(), Duration::from_secs(20));
    let mut rounds = 0;
    while Instant::now() < deadline {
        rounds += 1;
        let (_, key) = generate_pair(
            h,
            CKM_EC_KEY_PAIR_GEN,
            &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
            &[(CKA_TOKEN, Val::Bool(true)), (CKA_SIGN, Val::Bool(true))],
        )
        .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Hammers keep loading (and caching) the key while it changes.
            for _ in 0..2 {
                let (stop, progress) = (&stop, &progress);
                scope.spawn(move || {
                    let s = open(false);
                    while !stop.load(Ordering::SeqCst) {
                        let _ = sign_once(s, key);
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    C_CloseSession(s);
                });
            }
            // A failed assertion below must stop the hammers too, or the scope never ends.
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _stop = StopOnDrop(&stop);
            std::thread::sleep(Duration::from_millis(5));
            let mut t = Template::new(&[(CKA_SIGN, Val::Bool(false))]);
            let (p, n) = t.raw();
            // SAFETY: a valid template.
            assert_eq!(unsafe { C_SetAttributeValue(h, key, p, n) }, CKR_OK);
            // Once it returned, no new C_SignInit uses the old state.
            let probe = open(false);
            for _ in 0..20 {
                let mut m = Mech::plain(CKM_ECDSA_SHA256).raw();
                // SAFETY: a valid mechanism.
                let rv = unsafe { C_SignInit(probe, &mut m, key) };
                assert_eq!(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "round {rounds}");
            }
            // SAFETY: valid handles.
            unsafe {
                assert_eq!(C_DestroyObject(h, key), CKR_OK);
                let mut m = Mech::plain(CKM_ECDSA_SHA256).raw();
                assert_eq!(C_SignInit(probe, &mut m, key), CKR_KEY_HANDLE_INVALID);
                C_CloseSession(probe);
            }
        });
    }
    // Logout while signers run: afterwards no session has an operation left and the
    // slot caches no key.
    let (_, key) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
        &[(CKA_TOKEN, Val::Bool(true))],
    )
    .unwrap();
    let sessions: Vec<_> = (0..2).map(|_| open(false)).collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for &s in &sessions {
            let stop = &stop;
            scope.spawn(move || {
                let mut m = Mech::plain(CKM_ECDSA_SHA256).raw();
                while !stop.load(Ordering::SeqCst) {
                    // SAFETY: a valid mechanism.
                    let _ = unsafe { C_SignInit(s, &mut m, key) };
                }
            });
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(ferrohsm_pkcs11::runtime().unwrap().cached_keys(1).unwrap() > 0);
        assert_eq!(C_Logout(h), CKR_OK);
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
    });
    done.store(true, Ordering::SeqCst);
    assert_eq!(
        ferrohsm_pkcs11::runtime().unwrap().cached_keys(1).unwrap(),
        0,
        "no key material cached after C_Logout"
    );
    for &s in &sessions {
        let mut data = *b"data";
        let mut sig = [0u8; 64];
        let mut n = 64;
        // SAFETY: valid buffers.
        let rv = unsafe { C_Sign(s, data.as_mut_ptr(), 4, sig.as_mut_ptr(), &mut n) };
        assert_eq!(
            rv, CKR_OPERATION_NOT_INITIALIZED,
            "an operation outlived the logout"
        );
    }
}

#[test]
fn init_pin_racing_the_sos_set_pin_loses_neither() {
    let _env = setup();
    let h = token_session();
    assert_eq!(C_Logout(h), CKR_OK);
    assert_eq!(login(h, CKU_SO, SO), CKR_OK);
    let other = open(true);
    let mut so_pin = SO.to_vec();
    for round in 0..20u8 {
        let new_user = format!("user-{round:02}").into_bytes();
        let new_so = format!("so-pin-{round:02}").into_bytes();
        let barrier = Barrier::new(2);
        let (a, b) = std::thread::scope(|scope| {
            let init = scope.spawn(|| {
                barrier.wait();
                // SAFETY: a valid PIN buffer.
                unsafe { C_InitPIN(h, new_user.as_ptr() as *mut _, new_user.len() as _) }
            });
            let set = scope.spawn(|| {
                barrier.wait();
                // SAFETY: valid PIN buffers.
                unsafe {
                    C_SetPIN(
                        other,
                        so_pin.as_ptr() as *mut _,
                        so_pin.len() as _,
                        new_so.as_ptr() as *mut _,
                        new_so.len() as _,
                    )
                }
            });
            (init.join().unwrap(), set.join().unwrap())
        });
        assert_eq!((a, b), (CKR_OK, CKR_OK), "round {round}");
        so_pin = new_so;
        // Both changes hold: the user's new PIN and the SO's new PIN open the token.
        // (R/W: no R/O session may open while the SO is logged in.)
        let probe = open(true);
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(login(probe, CKU_USER, &new_user), CKR_OK, "round {round}");
        assert_eq!(C_Logout(probe), CKR_OK);
        assert_eq!(C_CloseSession(probe), CKR_OK);
        assert_eq!(login(h, CKU_SO, &so_pin), CKR_OK, "round {round}");
    }
}
