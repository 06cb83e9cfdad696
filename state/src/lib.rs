//! Keyed operator state on local disk, for state larger than memory.
//!
//! One [`Store`] holds one operator's state in one subtask: a RocksDB database whose every key
//! starts with its key group (4 bytes, big-endian), so that the state of a key-group range is
//! one contiguous range of keys. That is what rescaling needs: a subtask restored into another
//! parallelism takes the range it now owns from each former subtask's files
//! ([`Store::restore`]) without reading the others' ranges.
//!
//! A checkpoint of a store ([`Store::checkpoint`]) is a directory of hard links to the
//! database's files. RocksDB never changes a table file (`*.sst`) once written, so the
//! runtime uploads a table only the first time a checkpoint holds it and lets later
//! checkpoints refer to it: the incremental checkpoint. The few other files (the manifest,
//! options, `CURRENT`) are small and travel inline with the checkpoint.
//!
//! Memory is bounded by a [`Budget`] shared by every store of a process: the block cache and
//! the write buffers (memtables) are charged to one limit, as Flink's managed memory does.
//! Writes skip RocksDB's write-ahead log: durability comes from the checkpoints alone.

mod budget;
mod checkpoint;
mod error;
mod family;
mod keys;
mod restore;
mod store;
#[cfg(test)]
mod tests;

pub use budget::Budget;
pub use checkpoint::{CheckpointFile, LocalCheckpoint};
pub use error::{Error, Result};
pub use family::{Family, from_ordered, ordered};
pub use keys::KeyGroups;
pub use restore::Source;
pub use store::{Batch, Entry, LinkedTable, Store, Tables};
