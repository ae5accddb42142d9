//! A device connection as every adapter keeps one: made on first use (so a device that is
//! missing at start-up only leaves its slot without a token), dropped when a call finds
//! the device gone (`Error::DeviceRemoved`), made again on a later call — at most once a
//! `RETRY`, so a dead device does not cost every call a connection attempt.

use crate::error::{Error, Result};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a device that does not answer is tried again.
pub const RETRY: Duration = Duration::from_secs(1);

/// A connection of type `C` and what was learnt from the device when it was made.
pub struct Reconnecting<C, I> {
    state: Mutex<State<C, I>>,
}

struct State<C, I> {
    conn: Option<C>,
    /// The device's identity and capabilities, kept after the connection goes.
    seen: Option<I>,
    failed: Option<(Instant, String)>,
}

impl<C, I: Clone> Default for Reconnecting<C, I> {
    fn default() -> Self {
        Reconnecting {
            state: Mutex::new(State {
                conn: None,
                seen: None,
                failed: None,
            }),
        }
    }
}

impl<C, I: Clone> Reconnecting<C, I> {
    fn state(&self) -> MutexGuard<'_, State<C, I>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection, calling `connect` first when there is none (its error
    /// is logged with `what` and kept as the answer until the next attempt is due).
    pub fn with<T>(
        &self,
        what: &str,
        connect: impl FnOnce() -> Result<(C, I)>,
        f: impl FnOnce(&mut C) -> Result<T>,
    ) -> Result<T> {
        let mut st = self.state();
        if st.conn.is_none() {
            if let Some((at, why)) = &st.failed
                && at.elapsed() < RETRY
            {
                return Err(Error::DeviceRemoved(why.clone()));
            }
            match connect() {
                Ok((c, seen)) => {
                    st.conn = Some(c);
                    st.seen = Some(seen);
                    st.failed = None;
                }
                Err(e) => {
                    let why = format!("{what}: {e}");
                    tracing::warn!("{why}");
                    st.failed = Some((Instant::now(), why.clone()));
                    return Err(match e {
                        Error::DeviceRemoved(_) => Error::DeviceRemoved(why),
                        Error::DeviceError(_) => Error::DeviceError(why),
                        other => other,
                    });
                }
            }
        }
        let conn = st.conn.as_mut().expect("connected above");
        let out = f(conn);
        if matches!(out, Err(Error::DeviceRemoved(_))) {
            st.conn = None;
        }
        out
    }

    /// What the device said when a connection was last made, connecting if it never was.
    pub fn seen(&self, what: &str, connect: impl FnOnce() -> Result<(C, I)>) -> Option<I> {
        if self.state().seen.is_none() {
            let _ = self.with(what, connect, |_| Ok(()));
        }
        self.state().seen.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_device_gone_is_tried_again_but_not_on_every_call() {
        let r: Reconnecting<u32, &str> = Reconnecting::default();
        let attempts = Cell::new(0);
        let down = || {
            attempts.set(attempts.get() + 1);
            Err::<(u32, &str), _>(Error::DeviceRemoved("no answer".into()))
        };
        assert!(r.with("dev", down, |_| Ok(())).is_err());
        assert!(r.with("dev", down, |_| Ok(())).is_err());
        assert_eq!(
            attempts.get(),
            1,
            "the second call within RETRY does not connect"
        );
        assert_eq!(r.seen("dev", down), None);
        // Up: a connection is made once and used until a call finds the device gone.
        let r: Reconnecting<u32, &str> = Reconnecting::default();
        let up = || {
            attempts.set(attempts.get() + 1);
            Ok((7, "serial-1"))
        };
        assert_eq!(r.with("dev", up, |c| Ok(*c)).unwrap(), 7);
        assert_eq!(r.with("dev", up, |c| Ok(*c + 1)).unwrap(), 8);
        assert_eq!(attempts.get(), 2);
        let gone = r.with("dev", up, |_| {
            Err::<(), _>(Error::DeviceRemoved("pulled".into()))
        });
        assert!(gone.is_err());
        assert_eq!(r.with("dev", up, |c| Ok(*c)).unwrap(), 7, "connected again");
        assert_eq!(attempts.get(), 3);
        assert_eq!(r.seen("dev", up), Some("serial-1"));
    }
}
