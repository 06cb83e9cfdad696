//! The checkpoint coordinator: triggers barriers, collects acks, writes `_metadata` (the commit
//! point), tells sinks to commit, applies retention, copies savepoints, and ends the job after
//! a final or stop checkpoint. One checkpoint is in flight at a time.
//!
//! # Guarantees
//! - `_metadata` of checkpoint `n` is written only after every subtask acknowledged `n` with an
//!   uploaded state file, and only while this incarnation's generation is current.
//! - Sinks are told to commit `n` only after `_metadata` of `n` exists.
//! - A failed or timed-out checkpoint leaves earlier ones untouched; its sinks' transactions
//!   stay pending and are committed with the next completed checkpoint, whose `_metadata`
//!   lists them too.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::layout::Layout;
use super::messages::{Ack, Control, LocalState, TaskEvent};
use super::metadata::{CheckpointMetadata, decode_metadata, encode_metadata};
use super::progress::{Progress, Report};
use super::schedule::{self, Facts, Next, Timing};
use super::snapshot::Uploader;
use super::{Barrier, BarrierKind, fencing, restore, retention};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, TaskId};

/// Tries of the retention pass after a job's last checkpoint, which nothing retries later.
const FINAL_RETENTION_ATTEMPTS: u32 = 3;

/// Requests from the control API and signal handlers.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Request {
    /// Take a savepoint; `id` names the request in `GET /v1/savepoints/{id}`.
    Savepoint {
        /// Request id.
        id: String,
    },
    /// Stop after a final checkpoint, optionally written as a savepoint.
    Stop {
        /// Also write a savepoint.
        savepoint: bool,
    },
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// All input processed and committed.
    Finished,
    /// Stopped on request; the savepoint URI when one was taken.
    Stopped {
        /// Savepoint URI.
        savepoint: Option<String>,
    },
}

/// Timing and retention settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Job name.
    pub name: String,
    /// Between triggers.
    pub interval: Duration,
    /// Abandon a checkpoint after this.
    pub timeout: Duration,
    /// Least time from a completion to the next trigger.
    pub min_pause: Duration,
    /// Completed checkpoints kept.
    pub retained: usize,
    /// Parallelism.
    pub parallelism: u32,
    /// Key groups.
    pub max_parallelism: u32,
    /// What each stateful operator's state means, recorded in every `_metadata`.
    pub operators: Vec<super::compat::OperatorRecord>,
    /// What each source reads, recorded in every `_metadata`.
    pub sources: Vec<super::compat::SourceRecord>,
}

struct Pending {
    barrier: Barrier,
    started: Instant,
    triggered_at_ms: i64,
    acks: BTreeMap<TaskId, Ack>,
    savepoint_request: Option<String>,
}

/// The coordinator of one job incarnation.
pub struct Coordinator {
    /// Settings.
    pub cfg: CoordinatorConfig,
    /// Storage and lineage.
    pub up: Uploader,
    /// Control channels of source tasks.
    pub sources: Vec<(TaskId, mpsc::UnboundedSender<Control>)>,
    /// Control channels of every task (sources included).
    pub tasks: Vec<(TaskId, mpsc::UnboundedSender<Control>)>,
    /// From tasks.
    pub events: mpsc::UnboundedReceiver<TaskEvent>,
    /// From the control API and signals.
    pub requests: mpsc::Receiver<Request>,
    /// Id of the next checkpoint.
    pub next_id: CheckpointId,
    /// Where progress is reported (the control API's status, the metrics).
    pub progress: Arc<dyn Report>,
}

impl Coordinator {
    /// Run until the job finishes, is stopped, or fails.
    ///
    /// # Errors
    /// A task failure, fencing by a newer incarnation, or a storage failure at the commit point.
    pub async fn run(mut self) -> Result<Outcome> {
        let mut pending: Option<Pending> = None;
        let mut queue: VecDeque<(BarrierKind, Option<String>)> = VecDeque::new();
        let mut finished_sources: HashSet<TaskId> = HashSet::new();
        let mut last_trigger = Instant::now();
        let mut last_complete = Instant::now();
        let mut finishing: Option<Outcome> = None;
        let mut done_tasks = 0usize;
        // The savepoint the stop checkpoint was copied to, for the outcome.
        let mut last_savepoint: Option<(CheckpointId, String)> = None;
        let timing = Timing {
            interval: self.cfg.interval,
            timeout: self.cfg.timeout,
            min_pause: self.cfg.min_pause,
        };
        loop {
            let facts = Facts {
                in_flight_since: pending.as_ref().map(|p| p.started),
                queued: !queue.is_empty(),
                sources_finished: finished_sources.len() == self.sources.len(),
                finishing: finishing.is_some(),
                last_trigger,
                last_complete,
            };
            let now = Instant::now();
            let wake = match schedule::next(&timing, &facts, now) {
                Next::WaitUntil(wake) => wake,
                Next::Abandon => {
                    if let Some(p) = pending.take() {
                        let kind = p.barrier.kind;
                        self.fail(p, format!("timed out after {:?}", self.cfg.timeout));
                        if kind.stops() {
                            return Err(Error::Checkpoint {
                                id: CheckpointId(self.next_id.0 - 1),
                                message: "the stop checkpoint timed out".into(),
                            });
                        }
                    }
                    last_complete = now;
                    continue;
                }
                trigger => {
                    let (kind, req) = match trigger {
                        Next::TriggerFinal => (BarrierKind::Final, None),
                        Next::TriggerPeriodic => (BarrierKind::Checkpoint, None),
                        _ => match queue.pop_front() {
                            Some(q) => q,
                            None => continue,
                        },
                    };
                    pending = Some(self.trigger(kind, req));
                    last_trigger = now;
                    continue;
                }
            };
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(TaskEvent::Ack(a)) => {
                        let Some(p) = pending.as_mut() else { continue };
                        if a.barrier.id != p.barrier.id {
                            continue; // ack of an abandoned checkpoint
                        }
                        p.acks.insert(a.task, a);
                        if p.acks.len() == self.tasks.len() {
                            let Some(p) = pending.take() else { continue };
                            let kind = p.barrier.kind;
                            match self.complete(p, &mut last_savepoint).await? {
                                true => {
                                    last_complete = Instant::now();
                                    if matches!(kind, BarrierKind::Final | BarrierKind::Stop { .. }) {
                                        let stopped_at = CheckpointId(self.next_id.0 - 1);
                                        let savepoint = last_savepoint.as_ref().filter(|(c, _)| *c == stopped_at).map(|(_, path)| path.clone());
                                        finishing = Some(if kind == BarrierKind::Final { Outcome::Finished } else { Outcome::Stopped { savepoint } });
                                        for (_, c) in &self.sources {
                                            let _ = c.send(Control::Finish);
                                        }
                                    }
                                }
                                false if kind.stops() => {
                                    return Err(Error::Checkpoint { id: CheckpointId(self.next_id.0 - 1), message: "the stop checkpoint failed; the job stops without it and restores from the previous checkpoint".into() });
                                }
                                false => last_complete = Instant::now(),
                            }
                        }
                    }
                    Some(TaskEvent::SourceFinished(t)) => {
                        finished_sources.insert(t);
                    }
                    Some(TaskEvent::Failed(t, e)) => {
                        tracing::error!(task = %t, error = %e, "task failed");
                        return Err(e);
                    }
                    Some(TaskEvent::PodLost { pod, error }) => {
                        tracing::error!(pod, error = %error, "lost a pod of this job");
                        return Err(error);
                    }
                    Some(TaskEvent::Done(_)) => {
                        done_tasks += 1;
                        if done_tasks == self.tasks.len()
                            && let Some(o) = finishing.take()
                        {
                            return Ok(o);
                        }
                    }
                    None => return Err(Error::internal("every task is gone")),
                },
                r = self.requests.recv() => match r {
                    Some(Request::Savepoint { id }) => {
                        self.progress.report(Progress::SavepointRequested { request: id.clone() });
                        queue.push_back((BarrierKind::Savepoint, Some(id)));
                    }
                    Some(Request::Stop { savepoint }) if !queue.iter().any(|(k, _)| k.stops()) => {
                        self.progress.report(Progress::Stopping);
                        queue.push_back((BarrierKind::Stop { savepoint }, None));
                    }
                    Some(Request::Stop { .. }) => {}
                    None => {}
                },
                () = tokio::time::sleep_until(wake.into()) => {},
            }
        }
    }

    fn trigger(&mut self, kind: BarrierKind, savepoint_request: Option<String>) -> Pending {
        let barrier = Barrier {
            id: self.next_id,
            kind,
        };
        self.next_id = CheckpointId(self.next_id.0 + 1);
        tracing::debug!(checkpoint = %barrier.id, ?kind, "triggering checkpoint");
        for (_, c) in &self.sources {
            let _ = c.send(Control::Trigger(barrier));
        }
        let p = Pending {
            barrier,
            started: Instant::now(),
            triggered_at_ms: crate::ids::now_millis(),
            acks: BTreeMap::new(),
            savepoint_request,
        };
        self.progress.report(Progress::Triggered {
            id: barrier.id,
            kind,
            at_ms: p.triggered_at_ms,
        });
        p
    }

    fn fail(&mut self, p: Pending, why: String) {
        tracing::warn!(checkpoint = %p.barrier.id, reason = %why, "checkpoint failed");
        self.progress.report(Progress::Failed {
            id: p.barrier.id,
            kind: p.barrier.kind,
            triggered_at_ms: p.triggered_at_ms,
            error: why,
            savepoint_request: p.savepoint_request,
        });
        // Its files stay until retention removes incomplete checkpoints older than the
        // newest completed one: a successor may be writing the same id right now.
    }

    /// Commit point. `Ok(false)` when the checkpoint failed but the job may go on.
    async fn complete(
        &mut self,
        p: Pending,
        last_savepoint: &mut Option<(CheckpointId, String)>,
    ) -> Result<bool> {
        let id = p.barrier.id;
        if let Some(e) = p.acks.values().find_map(|a| a.state.as_ref().err()) {
            let e = e.clone();
            self.fail(p, format!("state upload failed: {e}"));
            return Ok(false);
        }
        let duration_ms = p.started.elapsed().as_millis() as u64;
        let mut state_files: Vec<_> = p
            .acks
            .values()
            .filter_map(|a| a.state.as_ref().ok().cloned())
            .collect();
        state_files.sort_by_key(|f| f.task);
        let mut committables: Vec<_> = p
            .acks
            .values()
            .flat_map(|a| a.committables.iter().cloned())
            .collect();
        committables.sort_by(|a, b| {
            (&a.sink, a.checkpoint, a.subtask).cmp(&(&b.sink, b.checkpoint, b.subtask))
        });
        let meta = CheckpointMetadata {
            job: self.cfg.name.clone(),
            job_id: self.up.job_id.clone(),
            generation: self.up.generation,
            id,
            kind: p.barrier.kind,
            parallelism: self.cfg.parallelism,
            max_parallelism: self.cfg.max_parallelism,
            completed_at_ms: crate::ids::now_millis(),
            duration_ms,
            state_files,
            committables,
            operators: self.cfg.operators.clone(),
            sources: self.cfg.sources.clone(),
        };
        let bytes = encode_metadata(&meta).map_err(|e| Error::internal(e.to_string()))?;
        crate::fault::point("before-metadata", id);
        fencing::ensure_current(&self.up.storage, &self.up.layout, self.up.generation).await?;
        // The window a zombie slips through: checked, then paused, then writing `_metadata`
        // after its successor began (see `fencing`).
        crate::fault::point("metadata-write", id);
        let dir = self.up.layout.checkpoint_dir(&self.up.job_id, id);
        let bytes = Bytes::from(bytes);
        if !self
            .up
            .storage
            .put_if_absent(&Layout::metadata_in(&dir), bytes.clone())
            .await?
        {
            let key = Layout::metadata_in(&dir);
            let existing = self.up.storage.get(&key).await?;
            // The store kept an earlier attempt of this very write whose answer was lost (a
            // 500 or a dropped connection after the object was stored; the client's retry
            // then meets its own object): the checkpoint is complete.
            if existing.as_ref().is_some_and(|b| *b == bytes) {
                tracing::info!(checkpoint = %id, "the answer to writing _metadata was lost, but the store holds exactly what this incarnation wrote: the checkpoint is complete");
            } else if existing.as_ref().is_some_and(|b| {
                decode_metadata(b).is_ok_and(|m| m.generation < self.up.generation)
            }) {
                // A fenced predecessor may complete this id after this incarnation listed
                // the lineage; its checkpoint is never committed by it (see below). Skip the
                // id: the sinks' pending work rides with the next checkpoint.
                self.fail(
                    p,
                    format!("checkpoint {id} was completed by an older incarnation after this one started; continuing with the next id"),
                );
                return Ok(false);
            } else {
                return Err(Error::Checkpoint {
                    id,
                    message: "another incarnation completed this checkpoint first; stopping so that the next start restores from it".into(),
                });
            }
        }
        crate::fault::point("after-metadata", id);
        // Between the generation check above and `_metadata`, a successor may have claimed a
        // generation and listed the lineage without seeing this checkpoint. Committing it now
        // would duplicate what the successor replays; it commits it itself when it did see it.
        fencing::ensure_current(&self.up.storage, &self.up.layout, self.up.generation).await?;
        for (_, c) in &self.tasks {
            let _ = c.send(Control::Commit(id));
        }
        let (size, written) = (meta.state_size(), meta.written_size());
        let alignment = p.acks.values().map(|a| a.alignment_ms).max();
        let local = LocalState::sum(p.acks.values().map(|a| a.local));
        tracing::info!(checkpoint = %id, kind = ?p.barrier.kind, duration_ms, size_bytes = size, written_bytes = written, "checkpoint completed");
        let path = self.up.storage.uri(&dir);
        self.progress.report(Progress::Completed {
            id,
            kind: p.barrier.kind,
            triggered_at_ms: p.triggered_at_ms,
            duration_ms,
            size_bytes: size,
            written_bytes: written,
            alignment_ms: alignment,
            local,
            path,
        });
        if p.barrier.kind.is_savepoint() {
            let result = self.copy_savepoint(&meta).await;
            if let Err(e) = &result {
                tracing::error!(checkpoint = %id, error = %e, "savepoint copy failed; the checkpoint itself is complete");
            }
            if let Ok(path) = &result {
                *last_savepoint = Some((id, path.clone()));
            }
            self.progress.report(Progress::SavepointDone {
                request: p.savepoint_request.clone(),
                checkpoint: id,
                result: result.map_err(|e| e.to_string()),
            });
        }
        let up = self.up.clone();
        let retained = self.cfg.retained;
        let progress = self.progress.clone();
        let ends = matches!(
            p.barrier.kind,
            BarrierKind::Final | BarrierKind::Stop { .. }
        );
        let retention = async move {
            // After the job's last checkpoint no later one retries a failed pass, and one cut
            // short leaves old checkpoints (some of their tables gone) beside the retained.
            let attempts = if ends { FINAL_RETENTION_ATTEMPTS } else { 1 };
            for attempt in 1..=attempts {
                match apply_retention(&up, retained).await {
                    Ok(()) => return,
                    Err(e) if attempt < attempts => {
                        tracing::warn!(error = %e, attempt, "retention cleanup failed; retrying before the job ends");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                    Err(e) => {
                        if ends {
                            tracing::warn!(error = %e, attempts, "retention cleanup failed; the job's next run retries it");
                        } else {
                            tracing::warn!(error = %e, "retention cleanup failed; will retry after the next checkpoint");
                        }
                        progress.report(Progress::CleanupFailed {
                            error: e.to_string(),
                        });
                    }
                }
            }
        };
        if ends {
            // The job ends after this one: a spawned cleanup would race the exit and leave
            // more than `retained` checkpoints behind.
            retention.await;
        } else {
            tokio::spawn(retention);
        }
        Ok(true)
    }

    /// Copy the object `file` from directory `from` to `to`; returns its bytes.
    async fn copy(&self, from: &str, to: &str, file: &str) -> Result<Bytes> {
        let bytes = self
            .up
            .storage
            .get(&Layout::file_in(from, file))
            .await?
            .ok_or_else(|| Error::Restore(format!("{file} vanished from {from}")))?;
        self.up
            .storage
            .put(&Layout::file_in(to, file), bytes.clone())
            .await?;
        Ok(bytes)
    }

    /// Copy a completed checkpoint into a self-contained savepoint directory.
    async fn copy_savepoint(&self, meta: &CheckpointMetadata) -> Result<String> {
        let from = self.up.layout.checkpoint_dir(&self.up.job_id, meta.id);
        let to = self.up.layout.savepoint_dir(&self.up.job_id, meta.id);
        for f in &meta.state_files {
            let bytes = self.copy(&from, &to, &f.file).await?;
            // Streamed state: each part it lists, one at a time.
            if f.parts_bytes > 0 {
                let state = super::metadata::decode_state(&bytes)
                    .map_err(|e| Error::Restore(format!("state file {}: {e}", f.file)))?;
                for part in &state.parts {
                    self.copy(&from, &to, &part.file).await?;
                }
            }
        }
        let bytes = encode_metadata(meta).map_err(|e| Error::internal(e.to_string()))?;
        self.up
            .storage
            .put(&Layout::metadata_in(&to), Bytes::from(bytes))
            .await?;
        let uri = self.up.storage.uri(&to);
        tracing::info!(savepoint = %uri, "savepoint completed");
        Ok(uri.trim_end_matches('/').to_string())
    }
}

/// Deletes what [`retention::to_delete`] names. The shared tables of `disk` state that only
/// the doomed checkpoints refer to go first ([`super::shared_tables`]; none when a kept
/// checkpoint's `_metadata` cannot be read): a pass cut short then leaves a doomed checkpoint
/// that the next pass finds and finishes, never tables that nothing lists. A doomed
/// checkpoint is never the newest, so no restore picks it meanwhile. Then each `_metadata`
/// goes on its own, before the rest of its directory: a delete that fails halfway leaves an
/// incomplete directory (collected on a later pass), never one that still looks complete while
/// its state files are gone.
async fn apply_retention(up: &Uploader, retained: usize) -> Result<()> {
    let dirs = restore::list(&up.storage, &up.layout, &up.job_id).await?;
    let doomed = retention::to_delete(&dirs, retained);
    let mut deleted_meta = Vec::new();
    for id in doomed
        .iter()
        .filter(|id| dirs.get(id).copied().unwrap_or(false))
    {
        if let Some(m) = read_metadata(up, *id).await? {
            deleted_meta.push(m);
        }
    }
    // Doomed checkpoints that list shared tables stay until a pass can tell which of their
    // tables nothing else lists (deleted without, those tables would wait for a restart).
    let mut spared = Vec::new();
    if deleted_meta
        .iter()
        .any(|m| m.state_files.iter().any(|f| !f.shared.is_empty()))
    {
        let mut kept = Vec::new();
        let mut complete = true;
        for (id, _) in dirs
            .iter()
            .filter(|(id, done)| **done && !doomed.contains(id))
        {
            match read_metadata(up, *id).await? {
                Some(m) => kept.push(m),
                None => complete = false,
            }
        }
        if complete {
            let unreferenced = super::shared_tables::unreferenced(&deleted_meta, &kept);
            for object in &unreferenced {
                up.storage.delete_prefix(object).await?;
                // Some tables gone, their checkpoints not yet: the next pass must finish.
                if let Some(first) = doomed.first() {
                    crate::fault::point("during-retention", *first);
                }
            }
            if !unreferenced.is_empty() {
                tracing::debug!(
                    tables = unreferenced.len(),
                    "deleted shared state tables no kept checkpoint refers to"
                );
            }
        } else {
            spared.extend(
                deleted_meta
                    .iter()
                    .filter(|m| m.state_files.iter().any(|f| !f.shared.is_empty()))
                    .map(|m| m.id),
            );
        }
    }
    for id in doomed.into_iter().filter(|id| !spared.contains(id)) {
        let dir = up.layout.checkpoint_dir(&up.job_id, id);
        up.storage.delete_prefix(&Layout::metadata_in(&dir)).await?;
        up.storage.delete_prefix(&dir).await?;
    }
    Ok(())
}

/// The `_metadata` of checkpoint `id` of the running lineage, if it is there and reads.
async fn read_metadata(up: &Uploader, id: CheckpointId) -> Result<Option<CheckpointMetadata>> {
    let dir = up.layout.checkpoint_dir(&up.job_id, id);
    Ok(up
        .storage
        .get(&Layout::metadata_in(&dir))
        .await?
        .and_then(|b| decode_metadata(&b).ok()))
}
