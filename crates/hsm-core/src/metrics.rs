//! The metrics room: how long each call took, which mechanism it used and how it ended,
//! and the state around it (sessions, logins, the audit log, the store). [`Metrics`] is
//! the hook a caller can install; [`Registry`] is the built-in one, kept in memory and
//! rendered in the Prometheus text format by [`Hsm::metrics_text`] — the server serves it
//! on `/metrics`, an embedded module writes it to a textfile for node_exporter. No
//! metrics crate is needed. No label ever carries a key label, a PIN or a handle: calls,
//! mechanisms, results, token numbers and version states only. `docs/metrics.md` lists
//! every series.

use crate::error::Error;
use crate::ops::Action;
use crate::runtime::{Hsm, lock, read};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One call, as the metrics see it.
pub struct Observation<'a> {
    pub action: Action,
    /// The mechanism the call used, when it had one.
    pub mechanism: Option<u64>,
    pub elapsed: Duration,
    pub outcome: Result<(), &'a Error>,
}

pub trait Metrics: Send + Sync {
    fn observe(&self, o: &Observation<'_>);
}

/// Upper bounds (seconds) of the latency histogram's buckets: 50 µs to 10 s.
const BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    /// (call, mechanism, result) → calls.
    operations: BTreeMap<(&'static str, Option<u64>, String), u64>,
    durations: BTreeMap<&'static str, Histogram>,
    /// `CKR_*` value → calls that answered it.
    errors: BTreeMap<u64, u64>,
    logins: u64,
    login_failures: u64,
}

/// The built-in metrics: counters and histograms in memory.
pub struct Registry {
    counters: Mutex<Counters>,
    /// Where an embedded module writes the text, and how often.
    textfile: Option<(PathBuf, Duration)>,
    written: Mutex<Option<Instant>>,
}

/// `PinIncorrect` → `pin_incorrect`: the error's kind without its message.
fn result_name(e: &Error) -> String {
    let debug = format!("{e:?}");
    let kind: String = debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let mut out = String::new();
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl Metrics for Registry {
    fn observe(&self, o: &Observation<'_>) {
        let call = crate::audit::call_name(o.action);
        let result = o.outcome.map_or_else(result_name, |()| "ok".into());
        let mut c = lock(&self.counters);
        *c.operations.entry((call, o.mechanism, result)).or_insert(0) += 1;
        let h = c.durations.entry(call).or_default();
        let secs = o.elapsed.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
        if let Err(e) = o.outcome {
            *c.errors.entry(e.ckr()).or_insert(0) += 1;
        }
        if o.action == Action::Login {
            c.logins += 1;
            if matches!(o.outcome, Err(Error::PinIncorrect | Error::PinLocked)) {
                c.login_failures += 1;
            }
        }
    }
}

/// Appends one metric family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn mechanism_label(m: Option<u64>) -> String {
    match m {
        None => "none".into(),
        Some(m) => hsm_types::MechanismType(m)
            .name()
            .map_or_else(|| format!("{m:#x}"), |n| format!("CKM_{n}")),
    }
}

impl Registry {
    pub fn new(textfile: Option<(PathBuf, Duration)>) -> Registry {
        Registry {
            counters: Mutex::new(Counters::default()),
            textfile,
            written: Mutex::new(None),
        }
    }

    fn render_counters(&self, out: &mut String) {
        let c = lock(&self.counters);
        family(
            out,
            "ferrohsm_operations_total",
            "counter",
            "Calls by PKCS#11 function, mechanism and result.",
        );
        for ((call, mech, result), n) in &c.operations {
            let m = mechanism_label(*mech);
            let _ = writeln!(
                out,
                "ferrohsm_operations_total{{call=\"{call}\",mechanism=\"{m}\",result=\"{result}\"}} {n}"
            );
        }
        family(
            out,
            "ferrohsm_operation_duration_seconds",
            "histogram",
            "How long calls took, by PKCS#11 function.",
        );
        for (call, h) in &c.durations {
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "ferrohsm_operation_duration_seconds_bucket{{call=\"{call}\",le=\"{le}\"}} {n}"
                );
            }
            let name = "ferrohsm_operation_duration_seconds";
            let _ = writeln!(
                out,
                "{name}_bucket{{call=\"{call}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{call=\"{call}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{call=\"{call}\"}} {}", h.count);
        }
        family(
            out,
            "ferrohsm_errors_total",
            "counter",
            "Calls answered with each CKR_* error.",
        );
        for (ckr, n) in &c.errors {
            let _ = writeln!(out, "ferrohsm_errors_total{{ckr=\"{ckr:#010x}\"}} {n}");
        }
        family(out, "ferrohsm_logins_total", "counter", "C_Login calls.");
        let _ = writeln!(out, "ferrohsm_logins_total {}", c.logins);
        family(
            out,
            "ferrohsm_login_failures_total",
            "counter",
            "C_Login calls refused for a wrong or locked PIN.",
        );
        let _ = writeln!(out, "ferrohsm_login_failures_total {}", c.login_failures);
    }

    /// Writes the textfile when one is configured and the last write is older than its
    /// interval: to a temporary name beside it, then renamed over it, so node_exporter
    /// never reads half a file. Failures are logged.
    fn maybe_write_textfile(&self, hsm: &Hsm) {
        let Some((path, every)) = &self.textfile else {
            return;
        };
        let Ok(mut last) = self.written.try_lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < *every) {
            return;
        }
        *last = Some(Instant::now());
        let text = hsm.render_metrics(self);
        let tmp = path.with_extension(format!("prom.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(file = %path.display(), "cannot write the metrics textfile: {e}");
        }
    }
}

impl Hsm {
    /// Counts a finished call into the built-in registry (and writes the textfile when
    /// one is due).
    pub(crate) fn observe_builtin(&self, o: &Observation<'_>) {
        if let Some(r) = &self.registry {
            r.observe(o);
            r.maybe_write_textfile(self);
        }
    }

    /// The Prometheus text exposition of everything measured, or `None` when metrics are
    /// not configured (`[metrics]`, or `server.metrics_listen`).
    pub fn metrics_text(&self) -> Option<String> {
        self.registry.as_ref().map(|r| self.render_metrics(r))
    }

    fn render_metrics(&self, r: &Registry) -> String {
        let mut out = String::new();
        r.render_counters(&mut out);
        self.render_state(&mut out);
        out
    }

    /// The gauges: sessions, the audit log per token, key versions by state (tokens a
    /// user is logged in to: the rings are sealed), the store's size and write stalls.
    fn render_state(&self, out: &mut String) {
        family(out, "ferrohsm_sessions_open", "gauge", "Open sessions.");
        let _ = writeln!(out, "ferrohsm_sessions_open {}", read(&self.sessions).len());
        let stats = self.store.audit_stats();
        family(
            out,
            "ferrohsm_audit_records_written_total",
            "counter",
            "Audit records this process wrote.",
        );
        let _ = writeln!(
            out,
            "ferrohsm_audit_records_written_total {}",
            stats.records
        );
        family(
            out,
            "ferrohsm_audit_write_failures_total",
            "counter",
            "Audit records that could not be written.",
        );
        let _ = writeln!(
            out,
            "ferrohsm_audit_write_failures_total {}",
            stats.failures
        );
        family(
            out,
            "ferrohsm_audit_syncs_total",
            "counter",
            "Group commits: fsyncs that made records of key use durable.",
        );
        let _ = writeln!(out, "ferrohsm_audit_syncs_total {}", stats.syncs);
        family(
            out,
            "ferrohsm_audit_checkpoints_total",
            "counter",
            "Checkpoints this process signed.",
        );
        let _ = writeln!(
            out,
            "ferrohsm_audit_checkpoints_total {}",
            stats.checkpoints
        );
        self.render_tokens(out);
        let h = self.store.backend().health();
        family(
            out,
            "ferrohsm_store_size_bytes",
            "gauge",
            "Bytes the store's files take.",
        );
        let _ = writeln!(out, "ferrohsm_store_size_bytes {}", h.size_bytes);
        family(
            out,
            "ferrohsm_store_write_stalled",
            "gauge",
            "1 while writes are refused: the disk is full, or RocksDB stopped writes.",
        );
        let _ = writeln!(out, "ferrohsm_store_write_stalled {}", u8::from(h.stalled));
        family(
            out,
            "ferrohsm_store_delayed_write_rate_bytes",
            "gauge",
            "The rate RocksDB slows writes to while compaction catches up (0: not delayed).",
        );
        let _ = writeln!(
            out,
            "ferrohsm_store_delayed_write_rate_bytes {}",
            h.delayed_write_rate
        );
    }

    fn render_tokens(&self, out: &mut String) {
        let tokens = self.store.tokens().unwrap_or_default();
        family(
            out,
            "ferrohsm_audit_log_records",
            "gauge",
            "Records in a token's audit log.",
        );
        for t in &tokens {
            let n = self.store.audit_size(t.id).unwrap_or(0);
            let _ = writeln!(
                out,
                "ferrohsm_audit_log_records{{token=\"{}\"}} {n}",
                t.id.0
            );
        }
        family(
            out,
            "ferrohsm_audit_checkpoint_age_seconds",
            "gauge",
            "Age of the oldest audit record no signed checkpoint covers (0: all covered).",
        );
        let now = crate::lifecycle::now(&crate::config::LifecycleConfig::default());
        for t in &tokens {
            let age = self
                .store
                .audit_unsigned_since(t.id)
                .ok()
                .flatten()
                .map_or(0, |since| now.saturating_sub(since));
            let _ = writeln!(
                out,
                "ferrohsm_audit_checkpoint_age_seconds{{token=\"{}\"}} {age}",
                t.id.0
            );
        }
        family(
            out,
            "ferrohsm_key_versions",
            "gauge",
            "Key versions by state, on tokens a user is logged in to.",
        );
        for (token, states) in self.version_states() {
            for (state, n) in states {
                let _ = writeln!(
                    out,
                    "ferrohsm_key_versions{{token=\"{token}\",state=\"{state}\"}} {n}"
                );
            }
        }
    }

    /// Per logged-in token, how many key versions are in each state.
    fn version_states(&self) -> BTreeMap<u32, BTreeMap<&'static str, u64>> {
        let mut keys = BTreeMap::new();
        for a in read(&self.app_slots).values() {
            if let crate::runtime::Login::User(k) = &*a.login() {
                keys.entry(k.token().0).or_insert_with(|| k.clone());
            }
        }
        let mut out = BTreeMap::new();
        for (token, k) in keys {
            let km = crate::lifecycle::KeyManager::new(
                &self.store,
                &k,
                self.provider(),
                self.config.lifecycle,
            );
            let Ok(list) = km.list() else { continue };
            let states: &mut BTreeMap<&'static str, u64> = out.entry(token).or_default();
            for v in list.iter().flat_map(|k| &k.ring.versions) {
                *states.entry(v.state.name()).or_insert(0) += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_named_by_kind_without_their_message() {
        assert_eq!(result_name(&Error::PinIncorrect), "pin_incorrect");
        assert_eq!(
            result_name(&Error::General("a secret-looking message".into())),
            "general"
        );
        assert_eq!(
            result_name(&Error::ApprovalRequired("request 7".into())),
            "approval_required"
        );
    }
}
