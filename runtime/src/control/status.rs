//! What `GET /v1/job` reports. The coordinator writes it; the control API reads it.
//!
//! The status is kept as the contract's own [`JobReport`] (`weir_crds::control`), so what the
//! runtime serves is by construction what the operator decodes. The runtime's id and barrier
//! types are converted at the boundary, here.

use weir_crds::control::{
    AttemptStatus, CheckpointKind, CheckpointReport, SavepointReport, SavepointState, TaskRef,
};
/// The job's status is the report the control API serves, so it is the contract's type.
pub use weir_crds::control::{JobReport, JobState, SinkReport};

use crate::checkpoint::BarrierKind;
use crate::checkpoint::progress::{Progress, Report};
use crate::ids::{CheckpointId, TaskId};

impl From<BarrierKind> for CheckpointKind {
    fn from(k: BarrierKind) -> Self {
        match k {
            BarrierKind::Checkpoint => Self::Checkpoint,
            BarrierKind::Savepoint => Self::Savepoint,
            BarrierKind::Stop { savepoint } => Self::Stop { savepoint },
            BarrierKind::Final => Self::Final,
        }
    }
}

impl From<TaskId> for TaskRef {
    fn from(t: TaskId) -> Self {
        Self {
            stage: t.stage,
            subtask: t.subtask,
        }
    }
}

/// A checkpoint attempt as reported, before its outcome is known.
fn attempt(id: CheckpointId, kind: BarrierKind, at_ms: i64) -> CheckpointReport {
    CheckpointReport {
        id: id.0,
        kind: kind.into(),
        status: AttemptStatus::InProgress,
        triggered_at_ms: at_ms,
        duration_ms: None,
        size_bytes: None,
        written_bytes: None,
        disk_bytes: None,
        memory_bytes: None,
        alignment_ms: None,
        path: None,
        error: None,
    }
}

/// Record a checkpoint attempt's latest state, keeping the 20 most recent.
fn upsert_checkpoint(s: &mut JobReport, c: CheckpointReport) {
    if c.status == AttemptStatus::Completed {
        s.last_checkpoint = Some(c.clone());
    }
    if let Some(old) = s.checkpoints.iter_mut().find(|x| x.id == c.id) {
        *old = c;
    } else {
        s.checkpoints.push(c);
    }
    let len = s.checkpoints.len();
    if len > 20 {
        s.checkpoints.drain(..len - 20);
    }
}

/// The job's status and metrics, as the coordinator's progress reports update them.
pub struct StatusBoard {
    /// What `GET /v1/job` shows.
    pub status: std::sync::Arc<std::sync::RwLock<JobReport>>,
    /// What `/metrics` shows.
    pub metrics: std::sync::Arc<super::metrics::Metrics>,
}

impl StatusBoard {
    fn update(&self, f: impl FnOnce(&mut JobReport)) {
        if let Ok(mut s) = self.status.write() {
            f(&mut s);
        }
    }
}

impl Report for StatusBoard {
    fn report(&self, p: Progress) {
        match p {
            Progress::Triggered { id, kind, at_ms } => {
                self.update(|s| upsert_checkpoint(s, attempt(id, kind, at_ms)));
            }
            Progress::Failed {
                id,
                kind,
                triggered_at_ms,
                error,
                savepoint_request,
            } => {
                self.metrics.checkpoints_failed.inc();
                self.update(|s| {
                    upsert_checkpoint(
                        s,
                        CheckpointReport {
                            status: AttemptStatus::Failed,
                            error: Some(error.clone()),
                            ..attempt(id, kind, triggered_at_ms)
                        },
                    );
                    if let Some(req) = &savepoint_request
                        && let Some(sp) = s.savepoints.iter_mut().find(|x| &x.id == req)
                    {
                        sp.status = SavepointState::Failed;
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
                written_bytes,
                alignment_ms,
                local,
                path,
            } => {
                self.metrics.checkpoints_completed.inc();
                self.metrics
                    .checkpoint_duration
                    .observe(duration_ms as f64 / 1000.0);
                self.metrics
                    .checkpoint_size
                    .set(i64::try_from(size_bytes).unwrap_or(i64::MAX));
                self.metrics
                    .checkpoint_written
                    .set(i64::try_from(written_bytes).unwrap_or(i64::MAX));
                self.metrics
                    .last_checkpoint_completed
                    .set((triggered_at_ms as f64 + duration_ms as f64) / 1000.0);
                self.update(|s| {
                    upsert_checkpoint(
                        s,
                        CheckpointReport {
                            status: AttemptStatus::Completed,
                            duration_ms: Some(duration_ms),
                            size_bytes: Some(size_bytes),
                            written_bytes: Some(written_bytes),
                            disk_bytes: local.map(|l| l.disk_bytes),
                            memory_bytes: local.map(|l| l.memory_bytes),
                            alignment_ms,
                            path: Some(path),
                            ..attempt(id, kind, triggered_at_ms)
                        },
                    );
                });
            }
            Progress::SavepointRequested { request } => {
                self.update(|s| add_pending_savepoint(s, &request));
            }
            Progress::SavepointDone {
                request,
                checkpoint,
                result,
            } => self.update(|s| {
                let info = SavepointReport {
                    id: request
                        .clone()
                        .unwrap_or_else(|| format!("stop-{checkpoint}")),
                    status: if result.is_ok() {
                        SavepointState::Completed
                    } else {
                        SavepointState::Failed
                    },
                    path: result.as_ref().ok().cloned(),
                    checkpoint: Some(checkpoint.0),
                    error: result.err(),
                };
                match request
                    .as_ref()
                    .and_then(|r| s.savepoints.iter_mut().find(|x| &x.id == r))
                {
                    Some(e) => *e = info,
                    None => s.savepoints.push(info),
                }
                forget_old_savepoints(s);
            }),
            Progress::CleanupFailed { .. } => {
                self.metrics.checkpoint_cleanups_failed.inc();
            }
            Progress::Stopping => self.update(|s| s.state = JobState::Stopping),
        }
    }
}

/// The report of job `name` before it has started.
#[must_use]
pub fn initializing(name: &str, parallelism: u32, max_parallelism: u32) -> JobReport {
    JobReport {
        name: name.to_string(),
        job_id: String::new(),
        generation: 0,
        state: JobState::Initializing,
        parallelism,
        max_parallelism,
        restored_from: None,
        last_checkpoint: None,
        checkpoints: Vec::new(),
        savepoints: Vec::new(),
        sinks: Vec::new(),
        watermarks: Vec::new(),
        source_lag: Vec::new(),
        records_in: 0,
        failure: None,
    }
}

/// Lists savepoint request `id` as pending unless it is listed already (the control API lists
/// it when it accepts the request, the coordinator reports it when it takes it up).
pub fn add_pending_savepoint(s: &mut JobReport, id: &str) {
    if !s.savepoints.iter().any(|x| x.id == id) {
        s.savepoints.push(SavepointReport {
            id: id.to_string(),
            status: SavepointState::Pending,
            path: None,
            checkpoint: None,
            error: None,
        });
    }
    forget_old_savepoints(s);
}

/// Finished savepoint requests kept for `GET /v1/savepoints/{id}` and the console, the
/// newest: a job that runs for months, savepointed every hour, would otherwise report a list
/// that only grows.
pub const KEPT_FINISHED_SAVEPOINTS: usize = 100;

/// Drop the oldest finished savepoint requests beyond [`KEPT_FINISHED_SAVEPOINTS`]; pending
/// ones always stay.
fn forget_old_savepoints(s: &mut JobReport) {
    let finished = s
        .savepoints
        .iter()
        .filter(|x| x.status != SavepointState::Pending)
        .count();
    let mut over = finished.saturating_sub(KEPT_FINISHED_SAVEPOINTS);
    s.savepoints.retain(|x| {
        let drop = over > 0 && x.status != SavepointState::Pending;
        over -= usize::from(drop);
        !drop
    });
}
