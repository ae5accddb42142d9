//! The PIN-lockout flags of `CK_TOKEN_INFO`: the core says where each PIN stands
//! ([`PinStatus`]); this maps it to the flag bits.

use cryptoki_sys::{
    CK_FLAGS, CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED,
    CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED,
};
use hsm_core::runtime::{PinStatus, TokenInfo};

/// `CKF_USER_PIN_COUNT_LOW` / `_FINAL_TRY` / `_LOCKED` and their SO equivalents.
pub fn pin_flags(info: &TokenInfo) -> CK_FLAGS {
    let user = one_pin(
        info.user_pin,
        [
            CKF_USER_PIN_COUNT_LOW,
            CKF_USER_PIN_FINAL_TRY,
            CKF_USER_PIN_LOCKED,
        ],
    );
    let so = one_pin(
        info.so_pin,
        [
            CKF_SO_PIN_COUNT_LOW,
            CKF_SO_PIN_FINAL_TRY,
            CKF_SO_PIN_LOCKED,
        ],
    );
    user | so
}

/// One PIN's flags; `[low, last, locked]` are its three bits. The final try is also a
/// low count.
fn one_pin(status: PinStatus, [low, last, locked]: [CK_FLAGS; 3]) -> CK_FLAGS {
    match status {
        PinStatus::Clear => 0,
        PinStatus::CountLow => low,
        PinStatus::FinalTry => last | low,
        PinStatus::Locked => locked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user_failures: u32, so_failures: u32, max_failures: u32) -> TokenInfo {
        TokenInfo {
            label: String::new(),
            serial: String::new(),
            initialized: true,
            user_pin_initialized: true,
            user_failures,
            so_failures,
            user_pin: PinStatus::of(user_failures, max_failures),
            so_pin: PinStatus::of(so_failures, max_failures),
            max_failures,
            min_pin: 4,
            max_pin: 16,
            sessions: 0,
            rw_sessions: 0,
            error_state: false,
        }
    }

    #[test]
    fn no_failures_no_flags() {
        assert_eq!(pin_flags(&info(0, 0, 3)), 0);
        assert_eq!(pin_flags(&info(0, 0, 0)), 0);
    }

    #[test]
    fn user_pin_counts_down_to_locked() {
        assert_eq!(pin_flags(&info(1, 0, 3)), CKF_USER_PIN_COUNT_LOW);
        assert_eq!(
            pin_flags(&info(2, 0, 3)),
            CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY
        );
        assert_eq!(pin_flags(&info(3, 0, 3)), CKF_USER_PIN_LOCKED);
        assert_eq!(pin_flags(&info(7, 0, 3)), CKF_USER_PIN_LOCKED);
    }

    #[test]
    fn so_pin_has_its_own_bits() {
        assert_eq!(pin_flags(&info(0, 1, 3)), CKF_SO_PIN_COUNT_LOW);
        assert_eq!(
            pin_flags(&info(0, 2, 3)),
            CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY
        );
        assert_eq!(pin_flags(&info(0, 3, 3)), CKF_SO_PIN_LOCKED);
        assert_eq!(
            pin_flags(&info(3, 2, 3)),
            CKF_USER_PIN_LOCKED | CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY
        );
    }

    #[test]
    fn a_limit_of_one_is_final_try_from_the_start() {
        // failures + 1 == max with no failure yet: the first try is the last.
        assert_eq!(
            pin_flags(&info(0, 0, 1)),
            CKF_USER_PIN_COUNT_LOW
                | CKF_USER_PIN_FINAL_TRY
                | CKF_SO_PIN_COUNT_LOW
                | CKF_SO_PIN_FINAL_TRY
        );
    }

    #[test]
    fn no_limit_never_locks() {
        assert_eq!(pin_flags(&info(1, 0, 0)), CKF_USER_PIN_COUNT_LOW);
        assert_eq!(
            pin_flags(&info(u32::MAX, u32::MAX, 0)),
            CKF_USER_PIN_COUNT_LOW | CKF_SO_PIN_COUNT_LOW
        );
    }
}
