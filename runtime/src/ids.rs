//! Identifier newtypes shared by the protocol, storage paths and logs. Each has one `Display`
//! so that a checkpoint id in a log line and in a path look the same.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A checkpoint (or savepoint) number; increases by one per trigger within a lineage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which subtask of a stage: stage index in the graph, subtask index within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// Stage (0 holds the source).
    pub stage: u32,
    /// Subtask within the stage, `0..parallelism`.
    pub subtask: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}-t{}", self.stage, self.subtask)
    }
}

/// Event time and watermarks, in milliseconds since the Unix epoch.
pub type Millis = i64;

/// Wall-clock now, as [`Millis`] (for reports: when a sample or an action happened).
#[must_use]
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
        })
}
