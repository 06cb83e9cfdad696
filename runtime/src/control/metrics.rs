//! Prometheus metrics of one job (served on `/metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ids::Millis;

/// Label set naming an operator.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperatorLabel {
    /// Operator id (`source`, `t0-filter`, `window-0`, `sinks`).
    pub operator: String,
}

/// Every metric the runtime exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    records_in: Family<OperatorLabel, Counter>,
    records_out: Family<OperatorLabel, Counter>,
    /// Undecodable source records (skipped or side-output).
    pub decode_errors: Counter,
    /// Records that arrived after their windows closed.
    pub late_records: Counter,
    /// Records dropped by dedup.
    pub duplicates: Counter,
    /// Time producers waited on full channels, ms.
    pub backpressure_ms: Counter,
    /// Time inputs were blocked for barrier alignment, ms.
    pub alignment_ms: Counter,
    /// Checkpoint durations, seconds.
    pub checkpoint_duration: Histogram,
    /// Size of the last completed checkpoint.
    pub checkpoint_size: Gauge,
    /// Completed checkpoints.
    pub checkpoints_completed: Counter,
    /// Failed checkpoints.
    pub checkpoints_failed: Counter,
    watermarks: Vec<AtomicI64>,
    source_lag: Family<PartitionLabel, Gauge>,
    split_watermark: Family<SplitLabel, Gauge>,
    split_idle: Family<SplitLabel, Gauge>,
    lags: Mutex<BTreeMap<(String, i32), i64>>,
}

/// Labels of per-split source gauges (for Kafka the split is the partition).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SplitLabel {
    /// Split id.
    pub split: u32,
}

/// Labels of per-partition source gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

impl Metrics {
    /// Metrics with one watermark slot per task.
    #[must_use]
    pub fn new(tasks: usize) -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("weir")),
            records_in: Family::default(),
            records_out: Family::default(),
            decode_errors: Counter::default(),
            late_records: Counter::default(),
            duplicates: Counter::default(),
            backpressure_ms: Counter::default(),
            alignment_ms: Counter::default(),
            checkpoint_duration: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            checkpoint_size: Gauge::default(),
            checkpoints_completed: Counter::default(),
            checkpoints_failed: Counter::default(),
            watermarks: (0..tasks).map(|_| AtomicI64::new(Millis::MIN)).collect(),
            source_lag: Family::default(),
            split_watermark: Family::default(),
            split_idle: Family::default(),
            lags: Mutex::new(BTreeMap::new()),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "records_in",
                "Records into an operator",
                m.records_in.clone(),
            );
            r.register(
                "records_out",
                "Records out of an operator",
                m.records_out.clone(),
            );
            r.register(
                "source_lag_records",
                "Records between a source partition's position and its end",
                m.source_lag.clone(),
            );
            r.register(
                "source_split_watermark_milliseconds",
                "A source split's own watermark (the partition, for Kafka)",
                m.split_watermark.clone(),
            );
            r.register(
                "source_split_idle",
                "1 while a source split is idle (eventTime.idleTimeout) and not holding the watermark back",
                m.split_idle.clone(),
            );
            r.register(
                "decode_errors",
                "Undecodable source records",
                m.decode_errors.clone(),
            );
            r.register(
                "late_records",
                "Records after their windows closed",
                m.late_records.clone(),
            );
            r.register(
                "duplicates",
                "Records dropped by dedup",
                m.duplicates.clone(),
            );
            r.register(
                "backpressure_milliseconds",
                "Time spent waiting on full channels",
                m.backpressure_ms.clone(),
            );
            r.register(
                "alignment_milliseconds",
                "Time inputs were blocked for barrier alignment",
                m.alignment_ms.clone(),
            );
            r.register(
                "checkpoint_duration_seconds",
                "Trigger to completion",
                m.checkpoint_duration.clone(),
            );
            r.register(
                "checkpoint_size_bytes",
                "State size of the last completed checkpoint",
                m.checkpoint_size.clone(),
            );
            r.register(
                "checkpoints_completed",
                "Completed checkpoints",
                m.checkpoints_completed.clone(),
            );
            r.register(
                "checkpoints_failed",
                "Failed checkpoints",
                m.checkpoints_failed.clone(),
            );
        }
        m
    }

    /// Count records into and out of `operator`.
    pub fn records(&self, operator: &str, input: u64, output: u64) {
        let l = OperatorLabel {
            operator: operator.to_string(),
        };
        if input > 0 {
            self.records_in.get_or_create(&l).inc_by(input);
        }
        if output > 0 {
            self.records_out.get_or_create(&l).inc_by(output);
        }
    }

    /// Total records out of `operator`.
    #[must_use]
    pub fn records_out(&self, operator: &str) -> u64 {
        self.records_out
            .get_or_create(&OperatorLabel {
                operator: operator.to_string(),
            })
            .get()
    }

    /// Records between a source partition's position and its end (last stable offset).
    pub fn set_source_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.source_lag
            .get_or_create(&PartitionLabel {
                topic: topic.to_string(),
                partition,
            })
            .set(lag);
        if let Ok(mut l) = self.lags.lock() {
            l.insert((topic.to_string(), partition), lag);
        }
    }

    /// Lag of every source partition seen.
    #[must_use]
    pub fn source_lags(&self) -> Vec<(String, i32, i64)> {
        self.lags
            .lock()
            .map(|l| l.iter().map(|((t, p), v)| (t.clone(), *p, *v)).collect())
            .unwrap_or_default()
    }

    /// A source split's own watermark and whether it is idle.
    pub fn set_split_watermark(&self, split: u32, watermark: Millis, idle: bool) {
        let l = SplitLabel { split };
        self.split_watermark.get_or_create(&l).set(watermark);
        self.split_idle.get_or_create(&l).set(i64::from(idle));
    }

    /// Record a task's output watermark.
    pub fn set_watermark(&self, slot: usize, wm: Millis) {
        if let Some(w) = self.watermarks.get(slot) {
            w.store(wm, Ordering::Relaxed);
        }
    }

    /// Output watermark of every task.
    #[must_use]
    pub fn watermarks(&self) -> Vec<Millis> {
        self.watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    /// Prometheus text exposition.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}
