//! What flows through the dataflow between records to cut a consistent snapshot.

use serde::{Deserialize, Serialize};

use crate::ids::CheckpointId;

/// Why a barrier was injected; decides what happens after the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BarrierKind {
    /// Periodic checkpoint.
    Checkpoint,
    /// Checkpoint that is also copied into a self-contained savepoint.
    Savepoint,
    /// Sources stop after this barrier; the job ends once it completes. With `savepoint`,
    /// it is also copied into a savepoint.
    Stop {
        /// Also write a savepoint.
        savepoint: bool,
    },
    /// All input is consumed; the last checkpoint, after which the job ends.
    Final,
}

impl BarrierKind {
    /// Whether this barrier's checkpoint is also written as a savepoint.
    #[must_use]
    pub fn is_savepoint(self) -> bool {
        matches!(self, Self::Savepoint | Self::Stop { savepoint: true })
    }

    /// Whether sources stop reading after this barrier.
    #[must_use]
    pub fn stops(self) -> bool {
        matches!(self, Self::Stop { .. })
    }
}

/// A barrier: checkpoint id and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// Checkpoint it cuts.
    pub id: CheckpointId,
    /// What it is for.
    pub kind: BarrierKind,
}
