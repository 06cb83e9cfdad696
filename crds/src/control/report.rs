//! What `GET /v1/job` and `GET /v1/savepoints/{id}` answer. The runtime keeps its live status
//! as a [`JobReport`] and serves it as is, so what it serves and what the operator reads are
//! one type.

use serde::{Deserialize, Serialize};

/// Lifecycle of the job inside one runtime process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Restoring and starting tasks.
    #[default]
    Initializing,
    /// Processing.
    Running,
    /// Taking the final checkpoint or savepoint of a stop.
    Stopping,
    /// Stopped on request (with or without savepoint).
    Stopped,
    /// All input consumed, final checkpoint committed.
    Finished,
    /// Failed; see [`JobReport::failure`].
    Failed,
}

/// Why a checkpoint was taken (the runtime's barrier kind, in the same JSON form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointKind {
    /// Periodic checkpoint.
    Checkpoint,
    /// Checkpoint also copied into a self-contained savepoint.
    Savepoint,
    /// The last checkpoint of a stop; with `savepoint`, also copied into a savepoint.
    Stop {
        /// Also a savepoint.
        savepoint: bool,
    },
    /// The last checkpoint after all input was consumed.
    Final,
}

/// Where a checkpoint attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptStatus {
    /// Triggered, not yet complete.
    InProgress,
    /// `_metadata` written: restorable.
    Completed,
    /// Given up; see `error`.
    Failed,
}

/// One checkpoint attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointReport {
    /// Checkpoint id.
    pub id: u64,
    /// Why it was taken.
    pub kind: CheckpointKind,
    /// Where it is.
    pub status: AttemptStatus,
    /// Trigger time, ms since epoch.
    pub triggered_at_ms: i64,
    /// Trigger to completion, ms.
    pub duration_ms: Option<u64>,
    /// State bytes the checkpoint holds (what a restore reads).
    pub size_bytes: Option<u64>,
    /// Bytes it wrote: less than `size_bytes` when `disk` state refers to tables earlier
    /// checkpoints uploaded (incremental checkpoints). Absent from older runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_bytes: Option<u64>,
    /// With `stateBackend` `disk`: the stores' table files on local disk at the barrier,
    /// summed over subtasks (state larger than memory lives here). Absent with `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// With `stateBackend` `disk`: the stores' write buffers at the barrier (state not yet
    /// flushed to disk; the checkpoint then flushes them, so `diskBytes` counts them too),
    /// summed over subtasks. The block cache is a cache of `diskBytes`, not counted. Absent
    /// with `memory`, where all state is in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Longest alignment among subtasks, ms.
    pub alignment_ms: Option<u64>,
    /// Directory URI.
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Where a savepoint request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavepointState {
    /// Requested, not yet taken.
    Pending,
    /// Taken; `path` names it.
    Completed,
    /// Not taken; `error` says why.
    Failed,
}

/// A savepoint request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointReport {
    /// Request id ([`SavepointAccepted::id`](super::SavepointAccepted::id)).
    pub id: String,
    /// Where it is.
    pub status: SavepointState,
    /// Savepoint URI when completed.
    pub path: Option<String>,
    /// Checkpoint id it was taken as.
    pub checkpoint: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What a sink promises about duplicates after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Every result exactly once.
    ExactlyOnce,
    /// Results written before a failure may be written again after it.
    AtLeastOnce,
    /// Nothing is written.
    None,
}

/// A sink and its guarantee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkReport {
    /// Sink id.
    pub id: String,
    /// Connector description.
    pub name: String,
    /// Delivery guarantee.
    pub guarantee: Guarantee,
}

/// A subtask, as the runtime's task id serialises: stage index in the graph, subtask index
/// within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    /// Stage (0 holds the source).
    pub stage: u32,
    /// Subtask within the stage.
    pub subtask: u32,
}

/// A task's watermark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskWatermark {
    /// Task.
    pub task: TaskRef,
    /// Output watermark, ms since epoch (`null` before the first).
    pub watermark: Option<i64>,
}

/// How far a source partition is behind its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Records not yet read (up to the last stable offset).
    pub lag: i64,
}

/// The job as `GET /v1/job` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
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
    pub last_checkpoint: Option<CheckpointReport>,
    /// Recent attempts, newest last.
    pub checkpoints: Vec<CheckpointReport>,
    /// Savepoint requests.
    pub savepoints: Vec<SavepointReport>,
    /// Sinks.
    pub sinks: Vec<SinkReport>,
    /// Watermarks (filled in per request).
    pub watermarks: Vec<TaskWatermark>,
    /// Records emitted by the source.
    pub records_in: u64,
    /// Per-partition lag of a Kafka source (filled in per request).
    pub source_lag: Vec<SourceLag>,
    /// Failure reason.
    pub failure: Option<String>,
}
