//! Sessions: opening and closing them, and what `C_GetSessionInfo` reports. A session's
//! operations live in [`crate::ops::Ops`] behind its mutex.

use super::slots::Login;
use super::{Hsm, read, write};
use crate::error::{Error, Result};
use crate::ops::Ops;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// `CKS_*` session states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SessionState {
    RoPublic = 0,
    RoUser = 1,
    RwPublic = 2,
    RwUser = 3,
    RwSo = 4,
}

pub struct SessionInfo {
    pub slot: u64,
    pub state: SessionState,
    pub rw: bool,
}

/// A session: what never changes beside the operations, which its mutex guards.
pub(crate) struct SessionEntry {
    pub handle: u64,
    pub slot: u64,
    pub rw: bool,
    pub ops: Mutex<Ops>,
}

impl Hsm {
    pub fn open_session(&self, slot: u64, rw: bool) -> Result<u64> {
        let s = self.slot(slot)?;
        if s.token_id().is_none() {
            return Err(Error::TokenNotRecognized(
                "the token in this slot is not initialised".into(),
            ));
        }
        if !rw && matches!(*read(&s.login), Login::So(_)) {
            return Err(Error::SessionReadWriteSoExists);
        }
        let h = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = SessionEntry {
            handle: h,
            slot,
            rw,
            ops: Mutex::new(Ops::default()),
        };
        write(&self.sessions).insert(h, Arc::new(session));
        Ok(h)
    }

    pub(crate) fn session(&self, h: u64) -> Result<Arc<SessionEntry>> {
        read(&self.sessions)
            .get(&h)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)
    }

    pub fn close_session(&self, h: u64) -> Result<()> {
        let s = write(&self.sessions)
            .remove(&h)
            .ok_or(Error::SessionHandleInvalid)?;
        let slot = s.slot;
        write(&self.session_objects).retain(|_, o| o.session != h);
        if self.session_counts(slot).0 == 0 {
            // The last session closed: the token logs out (PKCS#11 §5.6).
            if let Ok(s) = self.slot(slot) {
                s.logout();
            }
        }
        Ok(())
    }

    pub fn close_all_sessions(&self, slot: u64) -> Result<()> {
        let s = self.slot(slot)?;
        let handles: Vec<u64> = read(&self.sessions)
            .iter()
            .filter(|(_, v)| v.slot == slot)
            .map(|(k, _)| *k)
            .collect();
        for h in handles {
            let _ = self.close_session(h);
        }
        s.logout();
        Ok(())
    }

    pub fn session_info(&self, h: u64) -> Result<SessionInfo> {
        let (slot, rw) = {
            let s = self.session(h)?;
            (s.slot, s.rw)
        };
        let sl = self.slot(slot)?;
        let state = match (&*read(&sl.login), rw) {
            (Login::So(_), _) => SessionState::RwSo,
            (Login::User(_), true) => SessionState::RwUser,
            (Login::User(_), false) => SessionState::RoUser,
            (Login::Public, true) => SessionState::RwPublic,
            (Login::Public, false) => SessionState::RoPublic,
        };
        Ok(SessionInfo { slot, state, rw })
    }

    /// Sessions open on a slot, and how many of them are read/write.
    pub(crate) fn session_counts(&self, slot: u64) -> (u64, u64) {
        let sessions = read(&self.sessions);
        let mut all = 0;
        let mut rw = 0;
        for s in sessions.values().filter(|s| s.slot == slot) {
            all += 1;
            rw += s.rw as u64;
        }
        (all, rw)
    }

    /// Every session on a slot (to end their operations at logout).
    pub(crate) fn sessions_on(&self, slot: u64) -> Vec<Arc<SessionEntry>> {
        read(&self.sessions)
            .values()
            .filter(|s| s.slot == slot)
            .cloned()
            .collect()
    }
}
