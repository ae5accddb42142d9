//! Group commit for the records of key use (`[audit] level = "all"`). A record is written
//! to the log at once, unsynced — it is in the operating system's cache when the
//! operation answers, so a killed process loses none — and a thread of the store's own
//! makes it durable within the configured interval with one fsync for every record
//! written meanwhile. The caller never waits for the disk: on this machine one fsync of
//! the log takes about 4 ms, a P-256 signature about 20 µs, so a sync on the signing
//! thread every 20 ms cost a fifth of the signing rate.
//!
//! The thread starts with the first such record and ends when the store is dropped,
//! syncing what is still pending. A sync that fails is logged and counted; with
//! `required` auditing, records of key use are refused until a sync succeeds again (the
//! operation fails closed), since the log can no longer promise to keep them.

use super::guard as lock;
use crate::backend::KvBackend;
use crate::error::{Result, StoreError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Files synced with the log (the audit spool).
    files: Mutex<Vec<Arc<std::fs::File>>>,
    wake: Condvar,
    /// The last sync failed (cleared by the next one that succeeds).
    failing: AtomicBool,
    failures: AtomicU64,
    syncs: AtomicU64,
}

#[derive(Default)]
struct State {
    /// When the oldest record not yet synced was written.
    pending_since: Option<Instant>,
    interval: Duration,
    stop: bool,
}

impl GroupCommit {
    pub(super) fn new() -> GroupCommit {
        GroupCommit {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                files: Mutex::new(Vec::new()),
                wake: Condvar::new(),
                failing: AtomicBool::new(false),
                failures: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Refuses a record of key use when auditing is `required` and the log could not be
    /// synced the last time it tried.
    pub(super) fn check(&self, required: bool) -> Result<()> {
        if required && self.shared.failing.load(Ordering::Relaxed) {
            return Err(StoreError::AuditUnavailable(
                "the audit log could not be made durable (its last sync failed)".into(),
            ));
        }
        Ok(())
    }

    /// A record was written unsynced: it is made durable within `interval`.
    pub(super) fn written(&self, kv: &Arc<dyn KvBackend>, interval: Duration) {
        let mut s = lock(&self.shared.state);
        if s.pending_since.is_some() {
            return;
        }
        s.pending_since = Some(Instant::now());
        s.interval = interval;
        drop(s);
        if self.start(kv) {
            self.shared.wake.notify_one();
        } else {
            // No thread (the system refused one): sync here rather than not at all.
            sync(&self.shared, kv.as_ref());
        }
    }

    /// Syncs `file` with the log from now on.
    pub(super) fn watch(&self, file: Arc<std::fs::File>) {
        lock(&self.shared.files).push(file);
    }

    /// Fsyncs the log was given, and how many of them failed.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.shared.syncs.load(Ordering::Relaxed),
            self.shared.failures.load(Ordering::Relaxed),
        )
    }

    /// Starts the thread if it is not running; false if it cannot be started.
    fn start(&self, kv: &Arc<dyn KvBackend>) -> bool {
        let mut t = lock(&self.thread);
        if t.is_some() {
            return true;
        }
        let (shared, kv) = (self.shared.clone(), kv.clone());
        match std::thread::Builder::new()
            .name("ferrohsm-audit-sync".into())
            .spawn(move || run(&shared, kv.as_ref()))
        {
            Ok(h) => {
                *t = Some(h);
                true
            }
            Err(e) => {
                tracing::warn!("no group-commit thread ({e}): the audit log syncs inline");
                lock(&self.shared.state).pending_since = None;
                false
            }
        }
    }
}

impl Drop for GroupCommit {
    /// Stops the thread after it synced what is pending.
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }
}

fn run(shared: &Shared, kv: &dyn KvBackend) {
    let mut s = lock(&shared.state);
    loop {
        match s.pending_since {
            None if s.stop => return,
            None => s = wait(&shared.wake, s, None),
            Some(since) => {
                let due = since + s.interval;
                let now = Instant::now();
                if now < due && !s.stop {
                    s = wait(&shared.wake, s, Some(due - now));
                    continue;
                }
                s.pending_since = None;
                drop(s);
                sync(shared, kv);
                s = lock(&shared.state);
            }
        }
    }
}

fn wait<'a>(
    c: &Condvar,
    s: MutexGuard<'a, State>,
    limit: Option<Duration>,
) -> MutexGuard<'a, State> {
    match limit {
        None => c.wait(s).unwrap_or_else(|p| p.into_inner()),
        Some(d) => c.wait_timeout(s, d).unwrap_or_else(|p| p.into_inner()).0,
    }
}

fn sync(shared: &Shared, kv: &dyn KvBackend) {
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    let files = lock(&shared.files).clone();
    let synced = files.iter().try_for_each(|f| {
        f.sync_data()
            .map_err(|e| crate::error::StoreError::Io(format!("the audit spool: {e}")))
    });
    match synced.and_then(|()| kv.sync_log()) {
        Ok(()) => shared.failing.store(false, Ordering::Relaxed),
        Err(e) => {
            shared.failing.store(true, Ordering::Relaxed);
            shared.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("the audit log's records of key use could not be synced: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemBackend;
    use crate::backend::{Batch, PurgeRange, Visitor};
    use crate::cf::Cf;
    use std::path::Path;

    /// A memory backend that counts syncs and fails them on demand.
    struct Counting {
        inner: MemBackend,
        syncs: AtomicU64,
        fail: AtomicBool,
    }

    impl KvBackend for Counting {
        fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(cf, key)
        }
        fn scan_prefix(&self, cf: Cf, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
            self.inner.scan_prefix(cf, prefix, visit)
        }
        fn write(&self, batch: Batch) -> Result<()> {
            self.inner.write(batch)
        }
        fn sync_log(&self) -> Result<()> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Io("injected".into()));
            }
            Ok(())
        }
        fn purge(&self, ranges: &[PurgeRange]) -> Result<()> {
            self.inner.purge(ranges)
        }
        fn checkpoint(&self, dir: &Path) -> Result<()> {
            self.inner.checkpoint(dir)
        }
    }

    fn counting() -> (Arc<Counting>, Arc<dyn KvBackend>) {
        let c = Arc::new(Counting {
            inner: MemBackend::new(),
            syncs: AtomicU64::new(0),
            fail: AtomicBool::new(false),
        });
        (c.clone(), c)
    }

    #[test]
    fn many_records_in_one_interval_share_one_sync() {
        let (c, kv) = counting();
        let g = GroupCommit::new();
        for _ in 0..1000 {
            g.written(&kv, Duration::from_millis(200));
        }
        assert_eq!(c.syncs.load(Ordering::SeqCst), 0, "nothing synced at once");
        let t = Instant::now();
        while c.syncs.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(c.syncs.load(Ordering::SeqCst), 1, "one sync for the group");
        g.written(&kv, Duration::from_secs(3600));
        drop(g);
        assert_eq!(
            c.syncs.load(Ordering::SeqCst),
            2,
            "dropping the store syncs what is pending at once"
        );
    }

    #[test]
    fn a_failed_sync_refuses_required_records_until_one_succeeds() {
        let (c, kv) = counting();
        let g = GroupCommit::new();
        c.fail.store(true, Ordering::SeqCst);
        g.written(&kv, Duration::from_millis(1));
        let wait_for = |n: u64| {
            let t = Instant::now();
            while g.stats().0 < n && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        wait_for(1);
        assert_eq!(g.stats(), (1, 1));
        assert!(matches!(
            g.check(true),
            Err(StoreError::AuditUnavailable(_))
        ));
        g.check(false).expect("not required: the operation goes on");
        c.fail.store(false, Ordering::SeqCst);
        g.written(&kv, Duration::from_millis(1));
        wait_for(2);
        assert_eq!(g.stats(), (2, 1));
        g.check(true).expect("the log syncs again");
    }
}
