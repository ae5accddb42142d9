//! Sessions: opening and closing them, and what `C_GetSessionInfo` reports. A session's
//! operations live in [`crate::ops::Ops`] behind its mutex.

use super::slots::{AppSlot, Login};
use super::{Hsm, read, write};
use crate::error::{Error, Result};
use crate::ops::Ops;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// `CKS_*` session states.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum SessionState {
    RoPublic = 0,
    RoUser = 1,
    RwPublic = 2,
    RwUser = 3,
    RwSo = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionInfo {
    pub slot: u64,
    pub state: SessionState,
    pub rw: bool,
}

/// A session: what never changes beside the operations, which its mutex guards.
pub(crate) struct SessionEntry {
    pub handle: u64,
    /// The application that opened it ([`Hsm::new_app`]).
    pub app: u64,
    pub slot: u64,
    pub rw: bool,
    /// The application's place at the slot, fixed when the session opens: a call finds
    /// it here without looking the application and its seats up again.
    pub seat: Arc<AppSlot>,
    pub ops: Mutex<Ops>,
    /// Closed: gone from the table (a thread's [`LAST_SESSION`] may still reach it).
    closed: AtomicBool,
}

thread_local! {
    /// The session this thread looked up last: the runtime's instance, the handle, and
    /// the session, weakly.
    static LAST_SESSION: RefCell<Option<(u64, u64, Weak<SessionEntry>)>> =
        const { RefCell::new(None) };
}

impl Hsm {
    /// `C_OpenSession` for application `app`.
    pub fn open_session(&self, app: u64, slot: u64, rw: bool) -> Result<u64> {
        let s = self.app_slot(app, slot)?;
        if !s.shared.present() {
            return Err(Error::TokenNotPresent);
        }
        if s.shared.token_id().is_none() {
            return Err(Error::TokenNotRecognized(
                "the token in this slot is not initialised".into(),
            ));
        }
        if !rw && matches!(*s.login(), Login::So(_)) {
            return Err(Error::SessionReadWriteSoExists);
        }
        let h = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = SessionEntry {
            handle: h,
            app,
            slot,
            rw,
            seat: s,
            ops: Mutex::new(Ops::default()),
            closed: AtomicBool::new(false),
        };
        write(&self.sessions).insert(h, Arc::new(session));
        Ok(h)
    }

    /// The session behind a handle. A thread usually calls on one session again and
    /// again, so it keeps the last one it looked up (weakly: a closed session is not kept
    /// alive by it, and its operations' keys go when it closes); that saves the table's
    /// read lock, whose counter every thread's every call would otherwise write.
    pub(crate) fn session(&self, h: u64) -> Result<Arc<SessionEntry>> {
        let cached = LAST_SESSION.with(|c| match &*c.borrow() {
            Some((instance, handle, s)) if *instance == self.instance && *handle == h => {
                s.upgrade()
            }
            _ => None,
        });
        if let Some(s) = cached.filter(|s| !s.closed.load(Ordering::Acquire)) {
            return Ok(s);
        }
        let s = read(&self.sessions)
            .get(&h)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)?;
        LAST_SESSION.with(|c| *c.borrow_mut() = Some((self.instance, h, Arc::downgrade(&s))));
        Ok(s)
    }

    pub fn close_session(&self, h: u64) -> Result<()> {
        let s = write(&self.sessions)
            .remove(&h)
            .ok_or(Error::SessionHandleInvalid)?;
        s.closed.store(true, Ordering::Release);
        write(&self.session_objects).retain(|_, o| o.session != h);
        if self.sessions_of(s.app, s.slot).is_empty() {
            // The application's last session on the token closed: it logs out (§5.6).
            if let Some(seat) = read(&self.app_slots).get(&(s.app, s.slot)) {
                seat.logout();
            }
        }
        Ok(())
    }

    /// `C_CloseAllSessions` for application `app`: its sessions on the slot, no others.
    pub fn close_all_sessions(&self, app: u64, slot: u64) -> Result<()> {
        let seat = self.app_slot(app, slot)?;
        for s in self.sessions_of(app, slot) {
            let _ = self.close_session(s.handle);
        }
        seat.logout();
        Ok(())
    }

    pub fn session_info(&self, h: u64) -> Result<SessionInfo> {
        let s = self.session(h)?;
        let seat = self.app_slot(s.app, s.slot)?;
        let state = match (&*seat.login(), s.rw) {
            (Login::So(_), _) => SessionState::RwSo,
            (Login::User(_), true) => SessionState::RwUser,
            (Login::User(_), false) => SessionState::RoUser,
            (Login::Public, true) => SessionState::RwPublic,
            (Login::Public, false) => SessionState::RoPublic,
        };
        Ok(SessionInfo {
            slot: s.slot,
            state,
            rw: s.rw,
        })
    }

    /// Sessions open on a slot, by every application, and how many are read/write.
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

    /// One application's sessions on a slot (to end their operations at logout).
    pub(crate) fn sessions_of(&self, app: u64, slot: u64) -> Vec<Arc<SessionEntry>> {
        read(&self.sessions)
            .values()
            .filter(|s| s.slot == slot && s.app == app)
            .cloned()
            .collect()
    }
}
