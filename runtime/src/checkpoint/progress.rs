//! What the coordinator reports as checkpoints go: the control API's status and the metrics
//! are built from these reports by whoever implements [`Report`] (`crate::control`), so the
//! protocol does not know how either is shown.

use super::BarrierKind;
use super::messages::LocalState;
use crate::ids::CheckpointId;

/// One step of a checkpoint, savepoint or stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Barriers for `id` were injected at the sources.
    Triggered {
        /// Checkpoint id.
        id: CheckpointId,
        /// What it is for.
        kind: BarrierKind,
        /// Trigger time, ms since epoch.
        at_ms: i64,
    },
    /// `id` was abandoned; earlier checkpoints are untouched.
    Failed {
        /// Checkpoint id.
        id: CheckpointId,
        /// What it was for.
        kind: BarrierKind,
        /// Trigger time, ms since epoch.
        triggered_at_ms: i64,
        /// Why.
        error: String,
        /// The savepoint request it served, which fails with it.
        savepoint_request: Option<String>,
    },
    /// `_metadata` of `id` exists: the commit point passed.
    Completed {
        /// Checkpoint id.
        id: CheckpointId,
        /// What it was for.
        kind: BarrierKind,
        /// Trigger time, ms since epoch.
        triggered_at_ms: i64,
        /// Trigger to completion, ms.
        duration_ms: u64,
        /// State bytes it holds (what a restore reads).
        size_bytes: u64,
        /// State bytes it wrote (incremental `disk` state refers to earlier uploads).
        written_bytes: u64,
        /// Longest alignment among subtasks, ms.
        alignment_ms: Option<u64>,
        /// What the subtasks' `disk` stores held outside it at their barriers, summed.
        local: Option<LocalState>,
        /// Directory URI.
        path: String,
    },
    /// A savepoint was asked for; `request` names it until it completes or fails.
    SavepointRequested {
        /// Request id.
        request: String,
    },
    /// The savepoint copy of checkpoint `checkpoint` ended.
    SavepointDone {
        /// Request id, when one asked for it (a stop's savepoint has none).
        request: Option<String>,
        /// The checkpoint it copies.
        checkpoint: CheckpointId,
        /// Its URI, or why the copy failed.
        result: Result<String, String>,
    },
    /// Deleting checkpoints beyond `retained` failed (it is tried again after the next
    /// checkpoint); nothing a restore needs was touched.
    CleanupFailed {
        /// Why.
        error: String,
    },
    /// A stop was asked for; the stop checkpoint is queued.
    Stopping,
}

/// Receives the coordinator's reports. Implementations must not block.
pub trait Report: Send + Sync {
    /// One report.
    fn report(&self, p: Progress);
}
