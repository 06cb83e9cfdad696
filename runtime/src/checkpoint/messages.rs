//! What the coordinator and the subtasks tell each other. The coordinator owns these types;
//! tasks import them, never the other way round.

use serde::{Deserialize, Serialize};

use super::Barrier;
use super::metadata::{SinkCommittable, StateFileRef};
use crate::error::Error;
use crate::ids::{CheckpointId, TaskId};

/// Coordinator -> task.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Control {
    /// Sources only: inject this barrier.
    Trigger(Barrier),
    /// Checkpoint completed: commit sink transactions up to it.
    Commit(CheckpointId),
    /// Sources only: stop and send `End` downstream.
    Finish,
}

/// Task -> coordinator.
#[derive(Debug)]
pub enum TaskEvent {
    /// Snapshot for a barrier is uploaded (or failed to upload).
    Ack(Ack),
    /// A source consumed all its input.
    SourceFinished(TaskId),
    /// The task failed; the job fails.
    Failed(TaskId, Error),
    /// The task ended normally.
    Done(TaskId),
    /// Another pod of the job died or cannot be reached; the incarnation fails.
    PodLost {
        /// Which pod.
        pod: u32,
        /// What was seen.
        error: Error,
    },
}

/// A subtask's acknowledgement of a barrier.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ack {
    /// The barrier.
    pub barrier: Barrier,
    /// Who.
    pub task: TaskId,
    /// The uploaded state file, or why the upload failed.
    pub state: std::result::Result<StateFileRef, String>,
    /// Every committable this subtask has not yet seen committed (including older ones of
    /// abandoned checkpoints, so a restore from this checkpoint commits them too).
    pub committables: Vec<SinkCommittable>,
    /// Time spent aligning, ms.
    pub alignment_ms: u64,
    /// Its `disk` stores at the barrier, summed; `None` without any. (Absent from the acks
    /// of pods of an older image, which read as `None`.)
    #[serde(default)]
    pub local: Option<LocalState>,
}

/// What a subtask's `disk` stores hold outside the checkpoint at its barrier: the status
/// reports it so that a user sees state outgrow memory without reading metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// Table files on local disk.
    pub disk_bytes: u64,
    /// Write buffers (memtables): state written and not yet flushed to a table file.
    pub memory_bytes: u64,
}

impl LocalState {
    /// The sum of several subtasks' (or stores') local state; `None` when none has any.
    pub fn sum(states: impl IntoIterator<Item = Option<Self>>) -> Option<Self> {
        states.into_iter().flatten().reduce(|a, b| Self {
            disk_bytes: a.disk_bytes + b.disk_bytes,
            memory_bytes: a.memory_bytes + b.memory_bytes,
        })
    }
}
