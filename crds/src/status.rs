//! What the operator reports about a `StreamJob`, and what it must remember between
//! reconciles.
//!
//! The operator keeps no memory of its own: backoff, restart budget, the operation in flight
//! and the spec the pods run all live here, so an operator restart or a change of leader
//! continues where the last one stopped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a `StreamJob`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// Where the job is in its life: Created, Deploying, Running, Upgrading, Suspended,
    /// Failed, Finished or Deleting.
    #[serde(default)]
    pub lifecycle_state: LifecycleState,
    /// Id of the checkpoint lineage the runtime writes (one per restore from a savepoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Newest completed checkpoint the runtime reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointStatus>,
    /// Savepoints taken, oldest first (at most `spec.savepoint.historyMaxCount` periodic and
    /// manual ones, besides those still being deleted: `disposal`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub savepoints: Vec<SavepointStatus>,
    /// Subtasks per operator of the pods that are running now: `spec.parallelism` of the spec
    /// they run, which lags the desired value during a rescale; absent when nothing runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// `ready/desired` pods of the current incarnation, e.g. `2/2`, as a Deployment's READY:
    /// a job of several pods runs only when all of them do. Absent before the first deploy
    /// and while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<String>,
    /// Automatic restarts and why the last one happened.
    #[serde(default)]
    pub restarts: RestartStatus,
    /// `Ready`, `Progressing` and `Degraded`, with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Image the current pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_image: Option<String>,
    /// Counter of starts of the runtime pods; the current pod is `<name>-<incarnation>`, or
    /// with `spec.pods` above 1 the pods are `<name>-<incarnation>-<index>`.
    #[serde(default)]
    pub incarnation: u64,
    /// When the current incarnation's pods were created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation_started_at: Option<Time>,
    /// When the current incarnation was first seen running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Time>,
    /// Where the current lineage started: passed to every incarnation until the next upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartPoint>,
    /// The spec (JSON) the pods run; changes are classified against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled_spec: Option<String>,
    /// A spec (JSON) whose upgrade failed and was rolled back; not retried until it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_spec: Option<String>,
    /// The last spec (JSON) that ran and became ready; the target of a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_spec: Option<String>,
    /// Stop/start in progress (upgrade, restart, suspend, rollback, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Savepoint requested from the running pod and not yet finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_savepoint: Option<PendingSavepoint>,
    /// `spec.restartNonce` last acted on.
    #[serde(default)]
    pub observed_restart_nonce: i64,
    /// `spec.savepointTriggerNonce` last acted on.
    #[serde(default)]
    pub observed_savepoint_trigger_nonce: i64,
}

/// Lifecycle states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum LifecycleState {
    /// Accepted, nothing deployed yet.
    #[default]
    Created,
    /// Pods are starting (first deploy or after a restart).
    Deploying,
    /// The runtime reports running.
    Running,
    /// Moving to a new spec (stop, savepoint, start).
    Upgrading,
    /// Stopped with a savepoint; no pods.
    Suspended,
    /// Stopped for good until the spec changes; see the `Ready` condition.
    Failed,
    /// A bounded source was read to its end and the final checkpoint committed.
    Finished,
    /// The finalizer is running.
    Deleting,
}

impl LifecycleState {
    /// Every state, for per-state metrics.
    pub const ALL: [Self; 8] = [
        Self::Created,
        Self::Deploying,
        Self::Running,
        Self::Upgrading,
        Self::Suspended,
        Self::Failed,
        Self::Finished,
        Self::Deleting,
    ];

    /// The name used in status and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Deploying => "Deploying",
            Self::Running => "Running",
            Self::Upgrading => "Upgrading",
            Self::Suspended => "Suspended",
            Self::Failed => "Failed",
            Self::Finished => "Finished",
            Self::Deleting => "Deleting",
        }
    }
}

/// A completed checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// Checkpoint id.
    pub id: u64,
    /// Directory URI (what `initialSavepointPath` or `--restore-from` accepts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Completion time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// State bytes the checkpoint holds (what a restore reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// State bytes it wrote: with `stateBackend` `disk`, only the files earlier checkpoints
    /// had not uploaded (incremental checkpoints); otherwise `sizeBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_bytes: Option<u64>,
    /// With `stateBackend` `disk`: state on the pods' local disks when it was taken (the
    /// stores' table files, summed over subtasks; more than `sizeBytes` until compaction
    /// drops what expired or moved away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// With `stateBackend` `disk`: state in memory when it was taken (the stores' write
    /// buffers at the barrier, summed over subtasks, which the checkpoint then flushes to
    /// disk, so `diskBytes` counts them too; the block cache, bounded by
    /// `stateBackend.memory`, is a cache of the disk's). Absent with `memory`, where all
    /// state is in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// Why a savepoint was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SavepointTrigger {
    /// Before an upgrade.
    Upgrade,
    /// `spec.savepointTriggerNonce` changed.
    Manual,
    /// `spec.savepoint.periodic`.
    Periodic,
    /// `spec.state: suspended`.
    Suspend,
    /// Deletion with `savepointOnDelete`.
    Delete,
}

/// A completed savepoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    /// Savepoint URI.
    pub path: String,
    /// Why it was taken.
    pub trigger: SavepointTrigger,
    /// Completion time (as observed by the operator).
    pub completed_at: Time,
    /// Set once the savepoint fell out of `historyMaxCount`: its files are being deleted. The
    /// entry stays until the delete succeeded, so a failed one is retried and shown here
    /// instead of leaving files nobody tracks. Not a restore point any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposal: Option<Disposal>,
}

/// A savepoint's deletion in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disposal {
    /// Deletes that failed so far (retried with a growing pause, at most an hour).
    #[serde(default)]
    pub failed_attempts: u32,
    /// When the last delete was started.
    pub last_attempt_at: Time,
    /// Why the last delete failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Restart bookkeeping; the budget and backoff are computed from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartStatus {
    /// Automatic restarts since the job was created.
    #[serde(default)]
    pub count: u32,
    /// Why the last restart happened, e.g. `pod store-sales-3 OOMKilled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// When a failure was last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<Time>,
    /// Restart times within `spec.restart.window`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Time>,
}

/// Start point of a lineage. Every incarnation passes it to the runtime; the runtime starts
/// from it once and afterwards continues the lineage that start created, so a pod that dies
/// right after an upgrade never restarts from the savepoint again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartPoint {
    /// Unique id of this start.
    pub id: String,
    /// Checkpoint or savepoint URI; absent = start with empty state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// What a stop/start operation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    /// Move to a new spec.
    Upgrade,
    /// Restart with the same spec (`restartNonce`, a restart-class change, no progress).
    Restart,
    /// Stop with a savepoint and remove the pods.
    Suspend,
    /// Go back to the last stable spec after a failed upgrade.
    Rollback,
    /// Final savepoint before deletion.
    Delete,
}

/// How the running pod is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StopMode {
    /// Stop with a savepoint through the control API; the next start uses it.
    Savepoint,
    /// SIGTERM: a final checkpoint, then the next start restores the newest checkpoint.
    Checkpoint,
    /// SIGTERM; the next start has empty state.
    Stateless,
}

/// Phase of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OperationPhase {
    /// Waiting for the old pod to stop (and its savepoint).
    Stopping,
    /// Old pods are gone; the new pod is being started.
    Starting,
}

/// A stop/start in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What it is for.
    pub kind: OperationKind,
    /// Where it is.
    pub phase: OperationPhase,
    /// How the old pod stops.
    pub stop: StopMode,
    /// When it began.
    pub started_at: Time,
    /// When the stop request was last sent to the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested_at: Option<Time>,
    /// The savepoint the stop produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<String>,
    /// Spec (JSON) to run after the stop; absent = the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_spec: Option<String>,
    /// Why the operation is waiting, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The incarnation started by this operation, once its pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_incarnation: Option<u64>,
}

/// A savepoint requested from a running pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingSavepoint {
    /// Request id the runtime returned.
    pub request_id: String,
    /// Incarnation that received the request (ids are per process).
    pub incarnation: u64,
    /// Why it was requested.
    pub trigger: SavepointTrigger,
    /// When.
    pub requested_at: Time,
    /// `spec.savepointTriggerNonce` it answers, for manual ones.
    #[serde(default)]
    pub nonce: i64,
}
