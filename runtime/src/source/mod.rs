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

    /// Only these columns (positions) of its batches are read after the source: a reader
    /// that makes its records (a generator) may leave the others empty. Readers of records
    /// that arrive whole ignore it.
    fn read_only(&mut self, _columns: &[usize]) {}
}

/// Split ids owned by `subtask`: round-robin, the same rule at every parallelism.
#[must_use]
pub fn owned_splits(splits: u32, subtask: u32, parallelism: u32) -> Vec<u32> {
    (0..splits).filter(|s| s % parallelism == subtask).collect()
}

/// Splits of a generated stream, record `i` in split `i mod total`, each position a count:
/// the bookkeeping every generator's reader shares (datagen, nexmark).
#[derive(Debug)]
pub struct CountedSplits {
    total: u64,
    batch_size: u64,
    splits: Vec<SplitState>,
    next: usize,
}

impl CountedSplits {
    /// `splits` (restored or fresh) of `total`, `batch_size` records at a time.
    #[must_use]
    pub fn new(total: u32, batch_size: u32, splits: Vec<SplitState>) -> Self {
        Self {
            total: u64::from(total.max(1)),
            batch_size: u64::from(batch_size.max(1)),
            splits,
            next: 0,
        }
    }

    /// The next batch's record numbers, from the splits in turn, and the split they came
    /// from (its position already advanced past them); `None` when every split is finished,
    /// `count` being the stream's length when it is bounded.
    pub fn next_batch(&mut self, count: Option<u64>) -> Option<(&mut SplitState, Vec<u64>)> {
        let n = self.splits.len();
        for k in 0..n {
            let idx = (self.next + k) % n;
            let s = &mut self.splits[idx];
            if s.finished {
                continue;
            }
            let first = u64::from(s.split) + s.offset * self.total;
            // This split's records still below `count`: `first`, `first + total`, ...
            let left = count.map_or(u64::MAX, |c| c.saturating_sub(first).div_ceil(self.total));
            let take = left.min(self.batch_size);
            let total = self.total;
            let ids: Vec<u64> = (0..take).map(|k| first + k * total).collect();
            s.offset += take;
            s.records += take;
            s.finished = left == take;
            if !ids.is_empty() {
                self.next = (idx + 1) % n;
                return Some((&mut self.splits[idx], ids));
            }
        }
        None
    }

    /// Positions of the splits.
    #[must_use]
    pub fn snapshot(&self) -> Vec<SplitState> {
        self.splits.clone()
    }
}
