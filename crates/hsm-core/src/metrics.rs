//! The metrics room: how long each call took and how it ended, for a Prometheus exporter
//! (which lives in the server, so hsm-core needs no metrics crate). Nothing is measured
//! until [`crate::runtime::Hooks::metrics`] holds an implementation; then the runtime
//! reads the clock around every call.

use crate::error::Error;
use crate::ops::Action;
use std::time::Duration;

pub trait Metrics: Send + Sync {
    fn observe(&self, action: Action, elapsed: Duration, outcome: Result<(), &Error>);
}
