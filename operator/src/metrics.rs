//! Prometheus metrics of the operator, served on `/metrics`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weir_crds::{LifecycleState, OperationKind, StreamJobStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The content type of [`Metrics::encode`]'s text (OpenMetrics, ending in `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    failures: Family<ErrorLabel, Counter>,
    duration: Histogram,
    jobs: Family<StateLabel, Gauge>,
    restarts: Counter,
    upgrade_duration: Histogram,
    states: Mutex<HashMap<String, LifecycleState>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a reconcile pass ended: the `result` label of `weir_operator_reconciles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// The pass decided, acted and wrote what it decided.
    Done,
    /// An API call failed and the pass stopped (`weir_operator_reconcile_errors` says which
    /// kind); the controller retries it.
    Error,
}

impl ReconcileResult {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Error => "error",
        }
    }
}

/// Observes a reconcile's duration and result when dropped, so no exit path is missed. A pass
/// counts as [`ReconcileResult::Error`] unless it called [`ReconcileTimer::done`]: every early
/// return (`?`) is a failure.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
    result: ReconcileResult,
}

impl ReconcileTimer<'_> {
    /// The pass completed.
    pub fn done(mut self) {
        self.result = ReconcileResult::Done;
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics
            .reconciles
            .get_or_create(&ResultLabel {
                result: self.result.as_str().into(),
            })
            .inc();
    }
}

impl Metrics {
    /// Registers every metric.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let failures = Family::<ErrorLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let jobs = Family::<StateLabel, Gauge>::default();
        let restarts = Counter::default();
        let upgrade_duration = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "reconciles",
            "Reconcile passes, by result (done, error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile pass",
            duration.clone(),
        );
        registry.register("jobs", "StreamJobs per lifecycle state", jobs.clone());
        registry.register(
            "restarts",
            "Automatic restarts of runtime pods",
            restarts.clone(),
        );
        registry.register(
            "upgrade_duration_seconds",
            "Time from the start of an upgrade to the new spec running",
            upgrade_duration.clone(),
        );
        for s in LifecycleState::ALL {
            jobs.get_or_create(&StateLabel {
                state: s.as_str().into(),
            })
            .set(0);
        }
        Self {
            registry,
            reconciles,
            failures,
            duration,
            jobs,
            restarts,
            upgrade_duration,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Starts timing a reconcile.
    #[must_use]
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
            result: ReconcileResult::Error,
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, label: &str) {
        self.failures
            .get_or_create(&ErrorLabel {
                error: label.into(),
            })
            .inc();
    }

    /// Updates per-state counts, restarts and upgrade durations from a status change.
    pub fn observe_transition(
        &self,
        name: &str,
        ns: &str,
        old: &StreamJobStatus,
        new: &StreamJobStatus,
        now: jiff::Timestamp,
    ) {
        let key = format!("{ns}/{name}");
        if let Ok(mut states) = self.states.lock() {
            let previous = states.insert(key, new.lifecycle_state);
            if previous != Some(new.lifecycle_state) {
                if let Some(p) = previous {
                    self.jobs
                        .get_or_create(&StateLabel {
                            state: p.as_str().into(),
                        })
                        .dec();
                }
                self.jobs
                    .get_or_create(&StateLabel {
                        state: new.lifecycle_state.as_str().into(),
                    })
                    .inc();
            }
        }
        if new.restarts.count > old.restarts.count {
            self.restarts
                .inc_by(u64::from(new.restarts.count - old.restarts.count));
        }
        if let (Some(op), None) = (&old.operation, &new.operation)
            && op.kind == OperationKind::Upgrade
            && new.lifecycle_state == LifecycleState::Running
        {
            let secs = now.duration_since(op.started_at.0).as_secs_f64();
            self.upgrade_duration.observe(secs.max(0.0));
        }
    }

    /// Forgets a deleted job.
    pub fn forget(&self, ns: &str, name: &str) {
        if let Ok(mut states) = self.states.lock()
            && let Some(p) = states.remove(&format!("{ns}/{name}"))
        {
            self.jobs
                .get_or_create(&StateLabel {
                    state: p.as_str().into(),
                })
                .dec();
        }
    }

    /// Prometheus text.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `weir_operator_reconciles_total{result}` as `/metrics` shows it.
    fn reconciles(m: &Metrics, result: &str) -> u64 {
        let line = format!("weir_operator_reconciles_total{{result=\"{result}\"}} ");
        m.encode()
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn a_pass_that_ends_early_counts_as_an_error() {
        let m = Metrics::new();
        {
            // Dropped without being marked done: a `?` returned an error.
            let _timer = m.reconcile_started();
        }
        assert_eq!(reconciles(&m, "error"), 1, "{}", m.encode());
        assert_eq!(reconciles(&m, "done"), 0, "{}", m.encode());
        m.reconcile_started().done();
        assert_eq!(reconciles(&m, "done"), 1, "{}", m.encode());
        assert_eq!(reconciles(&m, "error"), 1, "{}", m.encode());
    }
}
