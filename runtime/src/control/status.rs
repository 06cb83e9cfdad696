//! What `GET /v1/job` reports. The coordinator writes it; the control API reads it.

use serde::Serialize;

use crate::checkpoint::BarrierKind;
use crate::checkpoint::progress::{Progress, Report};
use crate::ids::{CheckpointId, Millis, TaskId};
use crate::sink::Guarantee;

/// Lifecycle of the job inside this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Restoring and starting tasks.
    Initializing,
    /// Processing.
    Running,
    /// Taking the final checkpoint or savepoint of a stop.
    Stopping,
    /// Stopped on request (with or without savepoint).
    Stopped,
    /// All input consumed, final checkpoint committed.
    Finished,
    /// Failed; see `failure`.
    Failed,
}

/// One checkpoint attempt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    /// Id.
    pub id: CheckpointId,
    /// Kind.
    pub kind: BarrierKind,
    /// `in-progress`, `completed` or `failed`.
    pub status: String,
    /// Trigger time, ms since epoch.
    pub triggered_at_ms: i64,
    /// Trigger to completion, ms.
    pub duration_ms: Option<u64>,
    /// State bytes.
    pub size_bytes: Option<u64>,
    /// Longest alignment among subtasks, ms.
    pub alignment_ms: Option<u64>,
    /// Directory URI.
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A savepoint request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointInfo {
    /// Request id (`POST /v1/savepoints` returns it).
    pub id: String,
    /// `pending`, `completed` or `failed`.
    pub status: String,
    /// Savepoint URI when completed.
    pub path: Option<String>,
    /// Checkpoint id it was taken as.
    pub checkpoint: Option<CheckpointId>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A sink and its guarantee.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkInfo {
    /// Sink id.
    pub id: String,
    /// Connector description.
    pub name: String,
    /// Delivery guarantee.
    pub guarantee: Guarantee,
}

/// A task's watermark.
#[derive(Debug, Clone, Serialize)]
pub struct TaskWatermark {
    /// Task.
    pub task: TaskId,
    /// Output watermark, ms since epoch (`null` before the first).
    pub watermark: Option<Millis>,
}

/// How far a source partition is behind its end.
#[derive(Debug, Clone, Serialize)]
pub struct SourceLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Records not yet read (up to the last stable offset).
    pub lag: i64,
}

/// The job as seen by the control API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// Lineage id.
    pub job_id: String,
    /// Storage generation.
    pub generation: u64,
    /// State.
    pub state: JobState,
    /// Parallelism.
    pub parallelism: u32,
    /// Key groups.
    pub max_parallelism: u32,
    /// Checkpoint or savepoint restored from.
    pub restored_from: Option<String>,
    /// Newest completed checkpoint.
    pub last_checkpoint: Option<CheckpointInfo>,
    /// Recent attempts, newest last.
    pub checkpoints: Vec<CheckpointInfo>,
    /// Savepoint requests.
    pub savepoints: Vec<SavepointInfo>,
    /// Sinks.
    pub sinks: Vec<SinkInfo>,
    /// Watermarks (filled in per request).
    pub watermarks: Vec<TaskWatermark>,
    /// Records emitted by the source.
    pub records_in: u64,
    /// Per-partition lag of a Kafka source (filled in per request).
    pub source_lag: Vec<SourceLag>,
    /// Failure reason.
    pub failure: Option<String>,
}

impl JobStatus {
    /// Record a checkpoint attempt's latest state, keeping the 20 most recent.
    pub fn upsert_checkpoint(&mut self, c: CheckpointInfo) {
        if c.status == "completed" {
            self.last_checkpoint = Some(c.clone());
        }
        if let Some(old) = self.checkpoints.iter_mut().find(|x| x.id == c.id) {
            *old = c;
        } else {
            self.checkpoints.push(c);
        }
        let len = self.checkpoints.len();
        if len > 20 {
            self.checkpoints.drain(..len - 20);
        }
    }
}

/// The job's status and metrics, as the coordinator's progress reports update them.
pub struct StatusBoard {
    /// What `GET /v1/job` shows.
    pub status: std::sync::Arc<std::sync::RwLock<JobStatus>>,
    /// What `/metrics` shows.
    pub metrics: std::sync::Arc<super::metrics::Metrics>,
}

impl StatusBoard {
    fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        if let Ok(mut s) = self.status.write() {
            f(&mut s);
        }
    }
}

impl Report for StatusBoard {
    fn report(&self, p: Progress) {
        match p {
            Progress::Triggered { id, kind, at_ms } => self.update(|s| {
                s.upsert_checkpoint(CheckpointInfo {
                    id,
                    kind,
                    status: "in-progress".into(),
                    triggered_at_ms: at_ms,
                    duration_ms: None,
                    size_bytes: None,
                    alignment_ms: None,
                    path: None,
                    error: None,
                });
            }),
            Progress::Failed {
                id,
                kind,
                triggered_at_ms,
                error,
                savepoint_request,
            } => {
                self.metrics.checkpoints_failed.inc();
                self.update(|s| {
                    s.upsert_checkpoint(CheckpointInfo {
                        id,
                        kind,
                        status: "failed".into(),
                        triggered_at_ms,
                        duration_ms: None,
                        size_bytes: None,
                        alignment_ms: None,
                        path: None,
                        error: Some(error.clone()),
                    });
                    if let Some(req) = &savepoint_request
                        && let Some(sp) = s.savepoints.iter_mut().find(|x| &x.id == req)
                    {
                        sp.status = "failed".into();
                        sp.error = Some(error);
                    }
                });
            }
            Progress::Completed {
                id,
                kind,
                triggered_at_ms,
                duration_ms,
                size_bytes,
                alignment_ms,
                path,
            } => {
                self.metrics.checkpoints_completed.inc();
                self.metrics
                    .checkpoint_duration
                    .observe(duration_ms as f64 / 1000.0);
                self.metrics.checkpoint_size.set(size_bytes as i64);
                self.update(|s| {
                    s.upsert_checkpoint(CheckpointInfo {
                        id,
                        kind,
                        status: "completed".into(),
                        triggered_at_ms,
                        duration_ms: Some(duration_ms),
                        size_bytes: Some(size_bytes),
                        alignment_ms,
                        path: Some(path),
                        error: None,
                    });
                });
            }
            Progress::SavepointRequested { request } => self.update(|s| {
                s.savepoints.push(SavepointInfo {
                    id: request,
                    status: "pending".into(),
                    path: None,
                    checkpoint: None,
                    error: None,
                });
            }),
            Progress::SavepointDone {
                request,
                checkpoint,
                result,
            } => self.update(|s| {
                let info = SavepointInfo {
                    id: request
                        .clone()
                        .unwrap_or_else(|| format!("stop-{checkpoint}")),
                    status: if result.is_ok() {
                        "completed"
                    } else {
                        "failed"
                    }
                    .into(),
                    path: result.as_ref().ok().cloned(),
                    checkpoint: Some(checkpoint),
                    error: result.err(),
                };
                match request
                    .as_ref()
                    .and_then(|r| s.savepoints.iter_mut().find(|x| &x.id == r))
                {
                    Some(e) => *e = info,
                    None => s.savepoints.push(info),
                }
            }),
            Progress::Stopping => self.update(|s| s.state = JobState::Stopping),
        }
    }
}
