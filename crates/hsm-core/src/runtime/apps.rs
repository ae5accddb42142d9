//! Applications: PKCS#11 keeps sessions' login state per application and token. The
//! embedded module is one application for its process; the server opens one per client
//! connection and ends it when the client goes, which closes its sessions and drops its
//! logins.

use super::slots::AppSlot;
use super::{Hsm, read, write};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Hsm {
    /// A new application, with no sessions and nobody logged in.
    pub fn new_app(&self) -> u64 {
        let app = self.next_app.fetch_add(1, Ordering::Relaxed);
        write(&self.apps).insert(app);
        app
    }

    /// Ends an application: its sessions close (their session objects go), its logins
    /// end. Unknown or already ended: nothing to do.
    pub fn end_app(&self, app: u64) {
        if !write(&self.apps).remove(&app) {
            return;
        }
        // A call already past its session lookup sees this and stops.
        for s in read(&self.app_slots).values().filter(|s| s.app == app) {
            s.end();
        }
        let handles: Vec<u64> = read(&self.sessions)
            .values()
            .filter(|s| s.app == app)
            .map(|s| s.handle)
            .collect();
        for h in handles {
            let _ = self.close_session(h);
        }
        let seats: Vec<Arc<AppSlot>> = {
            let mut all = write(&self.app_slots);
            let mine: Vec<(u64, u64)> = all.keys().filter(|(a, _)| *a == app).copied().collect();
            mine.into_iter().filter_map(|k| all.remove(&k)).collect()
        };
        for s in seats {
            s.logout();
        }
    }

    /// The application a session belongs to (the server checks it before serving a call
    /// of one client on a session handle).
    pub fn session_app(&self, h: u64) -> Option<u64> {
        self.session(h).ok().map(|s| s.app)
    }

    /// This application's place at a slot, made on first use.
    pub(crate) fn app_slot(&self, app: u64, id: u64) -> Result<Arc<AppSlot>> {
        if !read(&self.apps).contains(&app) {
            return Err(Error::General(format!("application {app} has ended")));
        }
        if let Some(s) = read(&self.app_slots).get(&(app, id)) {
            return Ok(s.clone());
        }
        let shared = self.slot(id)?;
        Ok(write(&self.app_slots)
            .entry((app, id))
            .or_insert_with(|| Arc::new(AppSlot::new(app, shared)))
            .clone())
    }
}
