//! The token runtime: the [`Hsm`] type that the PKCS#11 module (and later the server)
//! drives, its slots over the store's tokens, login state and sessions, and the one entry
//! every operation goes through (`Hsm::run`).
//!
//! Locking: the session table and slot table are `RwLock`s held only to look up or
//! insert an `Arc`; each session has its own `Mutex`, so sessions run in parallel. A
//! session's slot, handle and R/W flag never change, so they live outside its mutex and
//! counting sessions takes no session lock. Order: the session table before a session's
//! mutex, never the other way round (a thread holding a session mutex takes no table
//! lock). No lock is held while calling out of the module.

mod apps;
pub(crate) mod handles;
mod login;
mod sessions;
mod slots;
mod token_admin;

pub use login::LoginKind;
pub use sessions::{SessionInfo, SessionState};
pub use slots::{PinStatus, SlotInfo, TokenInfo};

pub(crate) use handles::Location;
pub(crate) use sessions::SessionEntry;
pub(crate) use slots::{AppSlot, Login, Slot};

use crate::audit::{AuditEvent, AuditSink};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Observation};
use crate::objects::SessionObject;
use crate::ops::Action;
use crate::policy::{AllowAll, Decision, PolicyEngine, Request};
use crate::provider::{CryptoProvider, SoftwareProvider};
use handles::HandleMap;
use hsm_store::Store;
use hsm_types::{AttributeSet, TokenId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

/// What the runtime calls out to: the crypto provider, the policy engine, and the audit
/// and metrics sinks. [`Hooks::default`] is today's behaviour: the aws-lc-rs provider,
/// every operation allowed by policy (the attribute rules still apply), nothing audited
/// or measured.
pub struct Hooks {
    pub provider: Arc<dyn CryptoProvider>,
    /// The adapters a `[[slots]]` table may name besides `software` (the module and the
    /// server register the ones they are built with).
    pub adapters: crate::hardware::Adapters,
    pub policy: Arc<dyn PolicyEngine>,
    pub audit: Option<Arc<dyn AuditSink>>,
    pub metrics: Option<Arc<dyn Metrics>>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            provider: Arc::new(SoftwareProvider),
            adapters: crate::hardware::Adapters::default(),
            policy: Arc::new(AllowAll),
            audit: None,
            metrics: None,
        }
    }
}

/// Runtimes made in this process so far.
static INSTANCES: AtomicU64 = AtomicU64::new(1);

pub struct Hsm {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) hooks: Hooks,
    pub(crate) slots: RwLock<BTreeMap<u64, Arc<Slot>>>,
    pub(crate) apps: RwLock<HashSet<u64>>,
    pub(crate) next_app: AtomicU64,
    pub(crate) app_slots: RwLock<HashMap<(u64, u64), Arc<AppSlot>>>,
    pub(crate) sessions: RwLock<HandleMap<Arc<SessionEntry>>>,
    pub(crate) next_session: AtomicU64,
    pub(crate) session_objects: RwLock<HandleMap<SessionObject>>,
    pub(crate) next_session_object: AtomicU64,
    /// This runtime among those of the process (a thread's cached session names it).
    pub(crate) instance: u64,
    /// The power-on self-tests' verdict; a failure stops all cryptography.
    health: std::result::Result<(), String>,
    /// The built-in metrics, when configured (`crate::metrics`).
    pub(crate) registry: Option<Arc<crate::metrics::Registry>>,
}

/// One call into the core, after [`Hsm::begin`]: the session it runs in, that session's
/// application's place at its slot, the token, and what it does.
pub(crate) struct Call {
    pub session: Arc<SessionEntry>,
    pub slot: Arc<AppSlot>,
    pub token: TokenId,
    pub action: Action,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read guard that survives a panic elsewhere (the data behind these locks is only
/// ever replaced whole, so a poisoned lock still holds a consistent value).
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Hsm {
    /// Opens the configured store and lays out the slots: one per token, plus one spare
    /// uninitialised slot where `C_InitToken` creates a new token.
    pub fn open(config: Config) -> Result<Hsm> {
        Self::open_with(config, Hooks::default())
    }

    /// [`Hsm::open`] with other hooks (a provider, a policy engine, audit or metrics).
    pub fn open_with(config: Config, hooks: Hooks) -> Result<Hsm> {
        let store = Store::open_dir(&config.store).map_err(|e| {
            tracing::error!(store = %config.store.display(), "cannot open the store: {e}");
            Error::from(e)
        })?;
        Self::with_store(config, store, hooks)
    }

    /// The runtime over a store its caller opened (the server, which tells a store held
    /// by another process from other failures).
    pub fn with_store(config: Config, store: Store, hooks: Hooks) -> Result<Hsm> {
        store.set_audit(config.audit.into());
        let registry = config.metrics_enabled().then(|| {
            let textfile = config.metrics.textfile.clone().map(|p| {
                (
                    p,
                    std::time::Duration::from_secs(config.metrics.textfile_interval_secs),
                )
            });
            Arc::new(crate::metrics::Registry::new(textfile))
        });
        let hsm = Hsm {
            registry,
            config,
            store,
            hooks,
            slots: RwLock::new(BTreeMap::new()),
            apps: RwLock::new(HashSet::new()),
            next_app: AtomicU64::new(1),
            app_slots: RwLock::new(HashMap::new()),
            sessions: RwLock::new(HandleMap::default()),
            next_session: AtomicU64::new(first_session_handle()),
            session_objects: RwLock::new(HandleMap::default()),
            next_session_object: AtomicU64::new(1),
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            health: crate::selftest::run_all(),
        };
        if let Err(e) = &hsm.health {
            tracing::error!("{e}: the module is in its error state and performs no cryptography");
        }
        hsm.refresh_slots()?;
        Ok(hsm)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn provider(&self) -> &dyn CryptoProvider {
        self.hooks.provider.as_ref()
    }

    /// Refuses cryptography after a failed self-test.
    pub(crate) fn check_health(&self) -> Result<()> {
        self.health
            .as_ref()
            .map_err(|e| Error::DeviceError(e.clone()))
            .copied()
    }

    /// Whether the module is in its error state (a self-test failed).
    pub fn error_state(&self) -> bool {
        self.health.is_err()
    }

    /// The one way into an operation: [`Hsm::begin`], the operation itself, then the
    /// outcome to the audit and metrics sinks. Every session-bound public method of the
    /// runtime is a `run` with its [`Action`].
    pub(crate) fn run<T>(
        &self,
        h: u64,
        action: Action,
        op: impl FnOnce(&Call) -> Result<T>,
    ) -> Result<T> {
        let measured = self.hooks.metrics.is_some() || self.registry.is_some();
        let started = measured.then(Instant::now);
        let mut mechanism = None;
        let (result, at) = match self.begin(h, action) {
            Ok(call) => {
                let _scope = self.audit_scope(&call, h);
                let mut result = op(&call);
                if let Err(e) = self.audit_outcome(&call, h, &result) {
                    result = Err(e);
                }
                mechanism = hsm_store::audit::scope_mechanism();
                (result, Some((call.slot.id, call.slot.actor())))
            }
            Err(e) => (Err(e), None),
        };
        let outcome = result.as_ref().map(|_| ());
        if let Some(audit) = &self.hooks.audit {
            audit.record(&AuditEvent {
                action,
                session: Some(h),
                slot: at.map(|(slot, _)| slot),
                actor: at.map(|(_, actor)| actor),
                outcome: outcome.map_err(|e| e as &dyn std::error::Error),
            });
        }
        if let Some(t) = started {
            let o = Observation {
                action,
                mechanism,
                elapsed: t.elapsed(),
                outcome,
            };
            if let Some(m) = &self.hooks.metrics {
                m.observe(&o);
            }
            self.observe_builtin(&o);
        }
        result
    }

    /// Looks the session up, refuses cryptography in the error state, and asks the policy
    /// engine whether the caller may do this at all (once per operation, at its start).
    pub(crate) fn begin(&self, h: u64, action: Action) -> Result<Call> {
        if action.performs_cryptography() {
            self.check_health()?;
        }
        let session = self.session(h)?;
        let slot = session.seat.clone();
        if slot.ended() {
            return Err(Error::General(format!(
                "application {} has ended",
                session.app
            )));
        }
        let token = slot.shared.token_id().ok_or(Error::TokenNotPresent)?;
        let call = Call {
            session,
            slot,
            token,
            action,
        };
        // An update, final or length query continues what the engine allowed at its
        // `*Init`: asking again would only cost every data call.
        if !matches!(action, Action::Continue(_)) {
            self.authorize(&call, None)?;
        }
        Ok(call)
    }

    /// The policy engine's verdict on this call, for the key it uses (if any).
    pub(crate) fn authorize(&self, call: &Call, key: Option<&AttributeSet>) -> Result<()> {
        let request = Request {
            actor: call.slot.actor(),
            action: call.action,
            slot: call.slot.id,
            key,
        };
        match self.hooks.policy.evaluate(&request) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(Error::PolicyDenied(reason)),
            Decision::NeedsApproval(pending) => Err(Error::ApprovalRequired(pending.reason)),
        }
    }
}

/// Where this runtime's session handles begin: a different place each time a store is
/// opened (the time in milliseconds, times 2^16), so a client that reaches a restarted
/// server with an old handle gets `CKR_SESSION_HANDLE_INVALID`, not somebody's new session.
fn first_session_handle() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ((ms & 0x7fff_ffff) << 16) | 1
}
