//! What a checkpoint stores for each subtask, as the protocol sees it: source positions,
//! keyed operator state, and the sink transactions a checkpoint promises. Sources, operators
//! and sinks produce these; the checkpoint modules encode, verify and redistribute them.

use serde::{Deserialize, Serialize};

use crate::ids::Millis;

/// Position of one split, as stored in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitState {
    /// Split id.
    pub split: u32,
    /// Records (datagen) or bytes (file) consumed.
    pub offset: u64,
    /// Records consumed (file: line number), for messages.
    pub records: u64,
    /// Highest event time emitted, for the watermark after restore.
    pub max_event_time: Millis,
    /// No more input in this split.
    pub finished: bool,
}

impl SplitState {
    /// A split at its beginning.
    #[must_use]
    pub fn new(split: u32) -> Self {
        Self {
            split,
            offset: 0,
            records: 0,
            max_event_time: Millis::MIN,
            finished: false,
        }
    }
}

/// Keyed state of one operator in one subtask: opaque bytes per key group.
pub type KeyedState = Vec<(u32, Vec<u8>)>;

/// What a transaction needs to be committed later, possibly by another process after a
/// restore. Stored in the checkpoint's `_metadata`.
pub type Committable = serde_json::Value;
