//! Sources: readers that own some splits of the input, remember their position per split,
//! and compute a watermark from the event times they have emitted.
//!
//! Positions are kept per split (not per subtask) so that a savepoint restores at another
//! parallelism: each new subtask takes the splits that now map to it, wherever they were.

pub mod datagen;
pub mod decode_errors;
pub mod file;
pub mod idleness;
pub mod json;
pub mod nexmark;

use datafusion::arrow::array::RecordBatch;

pub use crate::checkpoint::state::SplitState;
use crate::error::Result;

/// What a poll produced.
#[derive(Debug)]
pub enum Poll {
    /// Records, and records to the decode-error side output.
    Batch {
        /// Decoded records.
        data: RecordBatch,
        /// Undecodable records for the side output (`file`, `line`, `raw`, `error`).
        side: Option<RecordBatch>,
    },
    /// Nothing to read right now (unbounded sources); ask again shortly.
    Idle,
    /// Every owned split is finished.
    Finished,
}

/// A source subtask's reader.
pub trait SourceReader: Send {
    /// The next batch. Bounded sources return [`Poll::Finished`] when done.
    ///
    /// # Errors
    /// Read failures, and undecodable records under the `fail` policy.
    fn poll(&mut self) -> Result<Poll>;

    /// Positions of the owned splits.
    fn snapshot(&self) -> Vec<SplitState>;

    /// A checkpoint holding these positions completed. Sources with an external notion of
    /// progress (Kafka consumer groups) report it here; it never affects what is restored.
    fn checkpoint_completed(&mut self, _splits: &[SplitState]) {}
}

/// Split ids owned by `subtask`: round-robin, the same rule at every parallelism.
#[must_use]
pub fn owned_splits(splits: u32, subtask: u32, parallelism: u32) -> Vec<u32> {
    (0..splits).filter(|s| s % parallelism == subtask).collect()
}
