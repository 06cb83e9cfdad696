//! Prometheus metrics of one job (served on `/metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

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
    /// Time producers waited on full channels, seconds.
    pub backpressure: Counter<f64, AtomicU64>,
    /// Time inputs were blocked for barrier alignment, seconds.
    pub alignment: Counter<f64, AtomicU64>,
    /// When the newest checkpoint completed, Unix seconds.
    pub last_checkpoint_completed: Gauge<f64, AtomicU64>,
    /// Checkpoint durations, seconds.
    pub checkpoint_duration: Histogram,
    /// State the last completed checkpoint holds (what a restore reads).
    pub checkpoint_size: Gauge,
    /// Bytes the last completed checkpoint wrote (less than its size when `disk` state refers
    /// to tables earlier checkpoints uploaded).
    pub checkpoint_written: Gauge,
    /// Completed checkpoints.
    pub checkpoints_completed: Counter,
    /// Failed checkpoints.
    pub checkpoints_failed: Counter,
    /// Failed deletions of checkpoints beyond `retained` (retried after the next checkpoint).
    pub checkpoint_cleanups_failed: Counter,
    /// Bytes this pod sent to other pods' subtasks (multi-pod jobs).
    pub exchange_sent: Counter,
    /// Bytes this pod received from other pods' subtasks (multi-pod jobs).
    pub exchange_received: Counter,
    watermarks: Vec<AtomicI64>,
    /// Sink transactions pre-committed and not yet committed, for the console.
    pub in_flight: super::in_flight::InFlight,
    /// Nanoseconds each task waited on full channels (by watermark slot).
    blocked_ns: Vec<AtomicU64>,
    /// Nanoseconds each task waited for input (or, a source, for its rate or new data).
    idle_ns: Vec<AtomicU64>,
    task_names: Vec<String>,
    task_watermark: Family<TaskLabel, Gauge<f64, AtomicU64>>,
    started: Instant,
    uptime: Gauge<f64, AtomicU64>,
    source_lag: Family<PartitionLabel, Gauge>,
    split_watermark: Family<SplitLabel, Gauge<f64, AtomicU64>>,
    split_idle: Family<SplitLabel, Gauge>,
    lags: Mutex<BTreeMap<(String, i32), i64>>,
    state_bytes: Family<OperatorTaskLabel, Gauge>,
    state_uploaded: Family<OperatorTaskLabel, Gauge>,
    state_disk: Family<OperatorTaskLabel, Gauge>,
    state_buffered: Family<OperatorTaskLabel, Gauge>,
    /// The `disk` backend's memory budget, when the job has one: read at scrape time.
    state_budget: Mutex<Option<weir_state::Budget>>,
    state_memory: Gauge,
    state_memory_limit: Gauge,
}

/// Labels of per-operator, per-subtask gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperatorTaskLabel {
    /// Operator id.
    pub operator: String,
    /// Task id (`s<stage>-t<subtask>`).
    pub task: String,
}

/// Label naming a task (`s<stage>-t<subtask>`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    /// Task id.
    pub task: String,
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
    /// Metrics with one watermark slot per task, named by `tasks` (the labels of the
    /// watermark gauges).
    #[must_use]
    pub fn new(tasks: Vec<String>) -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("weir")),
            records_in: Family::default(),
            records_out: Family::default(),
            decode_errors: Counter::default(),
            late_records: Counter::default(),
            duplicates: Counter::default(),
            backpressure: Counter::default(),
            alignment: Counter::default(),
            last_checkpoint_completed: Gauge::default(),
            checkpoint_duration: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            checkpoint_size: Gauge::default(),
            checkpoint_written: Gauge::default(),
            checkpoints_completed: Counter::default(),
            checkpoints_failed: Counter::default(),
            checkpoint_cleanups_failed: Counter::default(),
            exchange_sent: Counter::default(),
            exchange_received: Counter::default(),
            watermarks: tasks.iter().map(|_| AtomicI64::new(Millis::MIN)).collect(),
            in_flight: super::in_flight::InFlight::default(),
            blocked_ns: tasks.iter().map(|_| AtomicU64::new(0)).collect(),
            idle_ns: tasks.iter().map(|_| AtomicU64::new(0)).collect(),
            task_names: tasks,
            task_watermark: Family::default(),
            started: Instant::now(),
            uptime: Gauge::default(),
            source_lag: Family::default(),
            split_watermark: Family::default(),
            split_idle: Family::default(),
            lags: Mutex::new(BTreeMap::new()),
            state_bytes: Family::default(),
            state_uploaded: Family::default(),
            state_disk: Family::default(),
            state_buffered: Family::default(),
            state_budget: Mutex::new(None),
            state_memory: Gauge::default(),
            state_memory_limit: Gauge::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "exchange_sent_bytes",
                "Bytes sent to subtasks in other pods",
                m.exchange_sent.clone(),
            );
            r.register(
                "exchange_received_bytes",
                "Bytes received from subtasks in other pods",
                m.exchange_received.clone(),
            );
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
                "source_split_watermark_timestamp_seconds",
                "A source split's own watermark, Unix seconds (the partition, for Kafka)",
                m.split_watermark.clone(),
            );
            r.register(
                "watermark_timestamp_seconds",
                "A task's output watermark, Unix seconds (absent until the first)",
                m.task_watermark.clone(),
            );
            r.register(
                "last_checkpoint_completed_timestamp_seconds",
                "When the newest checkpoint completed, Unix seconds",
                m.last_checkpoint_completed.clone(),
            );
            r.register(
                "uptime_seconds",
                "Seconds since the job started",
                m.uptime.clone(),
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
                "backpressure_seconds",
                "Time spent waiting on full channels",
                m.backpressure.clone(),
            );
            r.register(
                "alignment_seconds",
                "Time inputs were blocked for barrier alignment",
                m.alignment.clone(),
            );
            r.register(
                "checkpoint_duration_seconds",
                "Trigger to completion",
                m.checkpoint_duration.clone(),
            );
            r.register(
                "checkpoint_size_bytes",
                "State the last completed checkpoint holds (what a restore reads)",
                m.checkpoint_size.clone(),
            );
            r.register(
                "checkpoint_written_bytes",
                "Bytes the last completed checkpoint wrote (disk state: the tables it uploaded)",
                m.checkpoint_written.clone(),
            );
            r.register(
                "operator_state_bytes",
                "State of a stateful operator in one subtask in its last checkpoint (encoded, or its store's files)",
                m.state_bytes.clone(),
            );
            r.register(
                "operator_state_uploaded_bytes",
                "Bytes of an operator's state in one subtask its last checkpoint uploaded (disk state: new tables only)",
                m.state_uploaded.clone(),
            );
            r.register(
                "operator_state_disk_bytes",
                "Table files of an operator's store (disk backend) in one subtask on local disk, at its last checkpoint",
                m.state_disk.clone(),
            );
            r.register(
                "operator_state_buffered_bytes",
                "Write buffers of an operator's store (disk backend) in one subtask, at its last checkpoint's barrier",
                m.state_buffered.clone(),
            );
            r.register(
                "state_memory_bytes",
                "Memory the disk backend's block cache and write buffers hold in this process",
                m.state_memory.clone(),
            );
            r.register(
                "state_memory_limit_bytes",
                "The disk backend's memory budget in this process (stateBackend.memory)",
                m.state_memory_limit.clone(),
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
            r.register(
                "checkpoint_cleanups_failed",
                "Failed deletions of checkpoints beyond the retained ones (retried after the next checkpoint)",
                m.checkpoint_cleanups_failed.clone(),
            );
        }
        m
    }

    /// The size of `operator`'s state in `task` at the checkpoint just taken: set once it
    /// has held state, so stateless operators do not appear.
    pub fn set_state_size_if_kept(
        &self,
        operator: &str,
        task: &str,
        size: crate::checkpoint::snapshot::StateSize,
    ) {
        let label = OperatorTaskLabel {
            operator: operator.to_string(),
            task: task.to_string(),
        };
        if size.checkpoint == 0 && size.local.is_none() && self.state_bytes.get(&label).is_none() {
            return;
        }
        let set = |family: &Family<OperatorTaskLabel, Gauge>, bytes: u64| {
            family
                .get_or_create(&label)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        };
        set(&self.state_bytes, size.checkpoint);
        set(&self.state_uploaded, size.uploaded);
        if let Some((disk, buffered)) = size.local {
            set(&self.state_disk, disk);
            set(&self.state_buffered, buffered);
        }
    }

    /// Report the `disk` backend's memory use against `budget` at every scrape.
    pub fn watch_state_budget(&self, budget: weir_state::Budget) {
        self.state_memory_limit
            .set(i64::try_from(budget.bytes()).unwrap_or(i64::MAX));
        if let Ok(mut b) = self.state_budget.lock() {
            *b = Some(budget);
        }
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

    /// Total records into `operator`.
    #[must_use]
    pub fn records_in(&self, operator: &str) -> u64 {
        self.records_in
            .get(&OperatorLabel {
                operator: operator.to_string(),
            })
            .map_or(0, |c| c.get())
    }

    /// `operator`'s state as of the last checkpoint, summed over this process's subtasks
    /// (0 for an operator without state).
    #[must_use]
    pub fn state_bytes(&self, operator: &str) -> u64 {
        self.task_names
            .iter()
            .filter_map(|task| {
                self.state_bytes
                    .get(&OperatorTaskLabel {
                        operator: operator.to_string(),
                        task: task.clone(),
                    })
                    .map(|g| u64::try_from(g.get()).unwrap_or(0))
            })
            .sum()
    }

    /// Total records out of `operator`.
    #[must_use]
    pub fn records_out(&self, operator: &str) -> u64 {
        // `get`, not `get_or_create`: reading (the console, the progress line) must not add
        // a zero series to `/metrics` for an operator that has not counted yet.
        self.records_out
            .get(&OperatorLabel {
                operator: operator.to_string(),
            })
            .map_or(0, |c| c.get())
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
        if let Some(secs) = seconds(watermark) {
            self.split_watermark.get_or_create(&l).set(secs);
        }
        self.split_idle.get_or_create(&l).set(i64::from(idle));
    }

    /// Task `slot` waited `waited` on a full channel: backpressure, job-wide and per task.
    pub fn blocked(&self, slot: usize, waited: std::time::Duration) {
        self.backpressure.inc_by(waited.as_secs_f64());
        if let Some(b) = self.blocked_ns.get(slot) {
            b.fetch_add(
                u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Task `slot` waited `waited` with nothing to do (no input, or a source's rate limit).
    pub fn idle(&self, slot: usize, waited: std::time::Duration) {
        if let Some(b) = self.idle_ns.get(slot) {
            b.fetch_add(
                u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Seconds each task has waited on full channels and for input, with the task's name;
    /// the rest of its time it was busy.
    #[must_use]
    pub fn waits_by_task(&self) -> Vec<TaskWaits<'_>> {
        self.task_names
            .iter()
            .zip(self.blocked_ns.iter().zip(&self.idle_ns))
            .map(|(t, (b, i))| TaskWaits {
                task: t.as_str(),
                blocked: b.load(Ordering::Relaxed) as f64 / 1e9,
                idle: i.load(Ordering::Relaxed) as f64 / 1e9,
            })
            .collect()
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

    /// OpenMetrics text exposition (serve it as [`CONTENT_TYPE`]).
    #[must_use]
    pub fn encode(&self) -> String {
        // Gauges read at scrape time rather than written on every watermark.
        self.uptime.set(self.started.elapsed().as_secs_f64());
        if let Ok(b) = self.state_budget.lock()
            && let Some(b) = b.as_ref()
        {
            self.state_memory
                .set(i64::try_from(b.used()).unwrap_or(i64::MAX));
        }
        for (name, wm) in self.task_names.iter().zip(self.watermarks()) {
            if let Some(secs) = seconds(wm) {
                self.task_watermark
                    .get_or_create(&TaskLabel { task: name.clone() })
                    .set(secs);
            }
        }
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An event time as Unix seconds; none before the first watermark or at the end of time.
fn seconds(t: Millis) -> Option<f64> {
    (t != Millis::MIN && t != Millis::MAX).then(|| t as f64 / 1000.0)
}

/// How long one task has waited, in seconds since it started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskWaits<'a> {
    /// `s<stage>-t<subtask>`.
    pub task: &'a str,
    /// On full channels downstream (backpressure).
    pub blocked: f64,
    /// For input.
    pub idle: f64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;
    use crate::checkpoint::snapshot::StateSize;

    fn value(text: &str, series: &str) -> Option<i64> {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn disk_state_reports_its_sizes_and_memory_against_the_budget() {
        let m = Metrics::new(vec!["s1-t0".into()]);
        // Stateless: nothing; keyed state: checkpoint and uploaded, no local sizes.
        m.set_state_size_if_kept("t0-filter", "s0-t0", StateSize::default());
        m.set_state_size_if_kept(
            "window-0",
            "s1-t0",
            StateSize {
                checkpoint: 300,
                uploaded: 300,
                local: None,
            },
        );
        m.set_state_size_if_kept(
            "dedup-1",
            "s1-t0",
            StateSize {
                checkpoint: 5_000,
                uploaded: 700,
                local: Some((4_800, 64)),
            },
        );
        let budget = weir_state::Budget::new(32 << 20);
        m.watch_state_budget(budget.clone());
        let text = m.encode();
        let dedup = |name: &str| {
            value(
                &text,
                &format!("weir_{name}{{operator=\"dedup-1\",task=\"s1-t0\"}}"),
            )
        };
        assert_eq!(dedup("operator_state_bytes"), Some(5_000), "{text}");
        assert_eq!(dedup("operator_state_uploaded_bytes"), Some(700));
        assert_eq!(dedup("operator_state_disk_bytes"), Some(4_800));
        assert_eq!(dedup("operator_state_buffered_bytes"), Some(64));
        assert!(!text.contains("operator=\"t0-filter\""), "{text}");
        assert!(!text.contains("weir_operator_state_disk_bytes{operator=\"window-0\""));
        assert_eq!(
            value(&text, "weir_state_memory_limit_bytes"),
            Some(32 << 20)
        );
        assert_eq!(
            value(&text, "weir_state_memory_bytes"),
            Some(i64::try_from(budget.used()).unwrap())
        );
    }
}
