//! The login cache on a real RocksDB store. A right PIN may skip the KDF, but it never
//! skips the lockout: wrong PINs run the full KDF and are counted as before, a changed
//! PIN is not answered from the cache, and it is off unless the opener turns it on.

mod common;

use common::*;
use hsm_store::{LoginStats, Store, StoreError};
use hsm_types::UserKind;
use std::time::Duration;

fn store(dir: &std::path::Path, ttl: Option<Duration>) -> (Store, hsm_types::TokenId) {
    let s = Store::open_dir(&dir.join("store")).unwrap();
    s.set_login_cache(ttl);
    let t = new_token(&s);
    (s, t)
}

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

#[test]
fn a_right_pin_proved_once_skips_the_kdf_and_unwraps_the_same_keys() {
    let d = tempfile::tempdir().unwrap();
    let (s, t) = store(d.path(), MINUTE);
    let first = s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let o = s
        .create_object(&first, data_object(b"cached", b"v", true))
        .unwrap();
    assert_eq!(
        s.login_stats(),
        LoginStats {
            cached: 0,
            derived: 1
        }
    );
    let again = s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    assert_eq!(
        s.login_stats(),
        LoginStats {
            cached: 1,
            derived: 1
        }
    );
    // The keys from the cache open what the derived ones sealed.
    assert!(s.read_object(&again, o).is_ok());
}

#[test]
fn wrong_pins_still_run_the_kdf_and_the_lockout_holds() {
    let d = tempfile::tempdir().unwrap();
    let (s, t) = store(d.path(), MINUTE);
    s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    // The attack: with the right PIN cached, guess. Every guess costs the KDF and counts.
    for i in 1..=5 {
        let e = s.login(t, UserKind::User, &pin("wrong-pin-0")).unwrap_err();
        assert!(
            matches!(e, StoreError::PinIncorrect { failures, .. } if failures == i),
            "{e}"
        );
        assert_eq!(s.login_stats().derived, 1 + u64::from(i));
    }
    // Locked: the cached right PIN does not get around the counter.
    assert!(matches!(
        s.login(t, UserKind::User, &pin(USER_PIN)),
        Err(StoreError::PinLocked)
    ));
    assert_eq!(s.login_stats().cached, 0);
}

#[test]
fn a_changed_pin_is_not_answered_from_the_cache() {
    let d = tempfile::tempdir().unwrap();
    let (s, t) = store(d.path(), MINUTE);
    s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    s.change_pin(t, UserKind::User, &pin(USER_PIN), &pin("new-pin-9999"))
        .unwrap();
    // (The change itself checked the old PIN, from the cache.)
    let before = s.login_stats().cached;
    assert!(matches!(
        s.login(t, UserKind::User, &pin(USER_PIN)),
        Err(StoreError::PinIncorrect { .. })
    ));
    s.login(t, UserKind::User, &pin("new-pin-9999")).unwrap();
    assert_eq!(
        s.login_stats().cached,
        before,
        "an old or new PIN came from the cache"
    );
}

#[test]
fn it_is_off_by_default_and_entries_expire() {
    let d = tempfile::tempdir().unwrap();
    let (s, t) = store(d.path(), None);
    s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    assert_eq!(
        s.login_stats(),
        LoginStats {
            cached: 0,
            derived: 2
        }
    );
    s.set_login_cache(Some(Duration::from_millis(200)));
    s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    assert_eq!(
        s.login_stats(),
        LoginStats {
            cached: 1,
            derived: 3
        }
    );
    std::thread::sleep(Duration::from_millis(300));
    s.expire_login_cache();
    s.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    assert_eq!(
        s.login_stats(),
        LoginStats {
            cached: 1,
            derived: 4
        }
    );
}
