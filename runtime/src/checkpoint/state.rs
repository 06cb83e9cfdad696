//! What a checkpoint stores for each subtask, as the protocol sees it: source positions,
//! keyed operator state, and the sink transactions a checkpoint promises. Sources, operators
//! and sinks produce these; the checkpoint modules encode, verify and redistribute them.

use serde::{Deserialize, Serialize};

use crate::ids::{CheckpointId, Millis};

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

/// Keyed state captured at a barrier, still to be encoded: the operator copies what it needs
/// on its task, and this runs off it while records flow again.
pub type DeferredState = Box<dyn FnOnce() -> crate::error::Result<KeyedState> + Send>;

/// Where streamed keyed state goes: one piece of a key group at a time (a key group may
/// come in several pieces, each decoding on its own).
pub type PieceSink<'a> = &'a mut dyn FnMut(u32, Vec<u8>) -> crate::error::Result<()>;

/// Keyed state captured at a barrier that may be larger than memory (a savepoint of a disk
/// store): encoded off the task into `sink` piece by piece, so that neither the encoding nor
/// the upload ever holds all of it.
pub type StreamedState = Box<dyn FnOnce(PieceSink<'_>) -> crate::error::Result<()> + Send>;

/// An operator's state at a barrier, on its way to storage (see
/// `crate::operator::Operator::capture`).
pub enum Capture {
    /// Encoded per key group, off the task.
    Keyed(DeferredState),
    /// Encoded per key group in pieces, off the task, each stored as it is made
    /// ([`StatePart`]s beside the state file).
    Streamed(StreamedState),
    /// A checkpoint of a disk store, whose new table files the uploader sends.
    Disk(crate::state::disk::DiskCapture),
}

/// One object of streamed keyed state (see [`Capture::Streamed`]): pieces of one operator's
/// key groups `first_group..=last_group`, encoded as [`KeyedState`], stored in the checkpoint's
/// directory beside the state file that lists it. A restore reads the parts whose key groups it
/// owns one at a time, so that state larger than memory restores in bounded memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePart {
    /// Operator id.
    pub operator: String,
    /// File name, relative to the checkpoint directory.
    pub file: String,
    /// First key group it holds pieces of.
    pub first_group: u32,
    /// Last key group it holds pieces of.
    pub last_group: u32,
    /// Bytes.
    pub size: u64,
    /// CRC32 of its bytes.
    pub crc32: u32,
}

/// What a pre-committed sink transaction needs to be committed later, possibly by another
/// process after a restore. Recorded in the checkpoint's `_metadata`, which is the commit
/// point and must stay small: anything that grows with the data (write-ahead rows) travels in
/// the state file of the subtask that wrote it, and `_metadata` keeps only its size and CRC.
///
/// The variants are the commit mechanisms the protocol knows, not connectors: a connector
/// picks the one it commits with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Committable {
    /// The transaction received no records: nothing to commit.
    Empty,
    /// A file written aside, moved into place on commit.
    StagedFile(StagedFile),
    /// A Kafka transaction left open at pre-commit, ended by the producer that began it or,
    /// after a restore, by an `EndTxn` with the recorded producer id and epoch.
    KafkaTransaction(KafkaTransaction),
    /// Rows the checkpoint keeps and the sink writes after the checkpoint completes, in blocks
    /// the target deduplicates by a token.
    WriteAhead(WriteAhead),
    /// A database transaction prepared at pre-commit (PostgreSQL `PREPARE TRANSACTION`),
    /// committed by its global id from any session, also after a restore.
    PreparedTransaction(PreparedTransaction),
}

/// A prepared database transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreparedTransaction {
    /// The global transaction id it was prepared under:
    /// `<prefix>:<subtask>:<checkpoint>:<generation>` (the prefix names the sink).
    pub gid: String,
}

impl PreparedTransaction {
    /// The id of checkpoint `checkpoint`'s transaction of a sink subtask in the attempt of
    /// `generation`: a later attempt never reuses an earlier one's id.
    #[must_use]
    pub fn new(prefix: &str, subtask: u32, checkpoint: CheckpointId, generation: u64) -> Self {
        Self {
            gid: format!("{prefix}:{subtask}:{}:{generation}", checkpoint.0),
        }
    }

    /// The sink's prefix and the rest (`<subtask>:<checkpoint>:<generation>`).
    #[must_use]
    pub fn split(&self) -> Option<(&str, &str)> {
        let mut parts = self.gid.rsplitn(4, ':');
        let (g, c, s, prefix) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = &self.gid[prefix.len() + 1..];
        (!g.is_empty() && !c.is_empty() && !s.is_empty()).then_some((prefix, rest))
    }

    /// The checkpoint the transaction belongs to (0 for an id not in the format).
    #[must_use]
    pub fn checkpoint(&self) -> CheckpointId {
        CheckpointId(
            self.gid
                .rsplit(':')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        )
    }
}

/// A staged file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedFile {
    /// File name, the same in the staging directory and in the target directory.
    pub file: String,
    /// The sink directory it was staged in. A job started from another job's checkpoint
    /// (or with its sink moved) commits the file where it was staged, not in its own
    /// directory, where it never was. Absent in checkpoints written before it was recorded:
    /// the restoring sink's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// A pre-committed Kafka transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTransaction {
    /// `transactional.id`.
    pub transactional_id: String,
    /// Producer id at pre-commit.
    pub producer_id: i64,
    /// Producer epoch at pre-commit.
    pub producer_epoch: i16,
    /// Checkpoint the transaction belongs to.
    pub checkpoint: u64,
    /// Records in it; empty transactions need no commit.
    pub records: u64,
    /// Sink parallelism when it was written (recovery fences ids of every subtask that existed).
    pub parallelism: u32,
    /// Offset of the transaction's first record in each partition it wrote to. Recovery
    /// reads the transaction's COMMIT or ABORT marker from there instead of trusting what
    /// EndTxn answered. Empty in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_offsets: Vec<FirstOffset>,
}

/// Where a transaction's first record landed in one partition. A list of these rather than a
/// map: `_metadata`'s committables are an internally tagged enum, whose buffered decoding
/// refuses JSON object keys as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirstOffset {
    /// Partition.
    pub partition: i32,
    /// Offset of the transaction's first record in it.
    pub offset: i64,
}

/// Rows written ahead: encoded by the sink, kept by the checkpoint until it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteAhead {
    /// Checkpoint whose barrier closed the rows.
    pub checkpoint: u64,
    /// Subtask that wrote them.
    pub subtask: u32,
    /// Deduplication identity prefix; each block the sink writes appends its index.
    pub token: String,
    /// Number of rows.
    pub rows: u64,
    /// Bytes of [`Self::data`] and their CRC32, so that a restore can tell that the state file
    /// it read them from holds exactly what this checkpoint promised.
    pub bytes: u64,
    /// CRC32 of [`Self::data`].
    pub crc32: u32,
    /// The encoded rows. Never in `_metadata`: the uploader moves them into the subtask's
    /// state file and a restore puts them back.
    #[serde(skip)]
    pub data: bytes::Bytes,
}

impl WriteAhead {
    /// Rows of `checkpoint` from `subtask`, with their size and checksum.
    #[must_use]
    pub fn new(checkpoint: u64, subtask: u32, token: String, rows: u64, data: Vec<u8>) -> Self {
        Self {
            checkpoint,
            subtask,
            token,
            rows,
            bytes: data.len() as u64,
            crc32: crc32fast::hash(&data),
            data: bytes::Bytes::from(data),
        }
    }
}

/// Write-ahead rows of one sink transaction, as stored in the state file of the subtask that
/// wrote them (a restore matches them to the [`WriteAhead`] committables of `_metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAheadData {
    /// Sink id within the plan.
    pub sink: String,
    /// Checkpoint whose barrier closed the rows.
    pub checkpoint: u64,
    /// The encoded rows, stored as one byte string (not a sequence of numbers: postcard then
    /// copies them in one piece, which keeps a megabyte of rows off the barrier's path).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_transaction_id_names_its_sink_and_checkpoint() {
        let t = PreparedTransaction::new("weir:job:sink-0", 3, CheckpointId(17), 2);
        assert_eq!(t.gid, "weir:job:sink-0:3:17:2");
        assert_eq!(t.checkpoint(), CheckpointId(17));
        assert_eq!(t.split(), Some(("weir:job:sink-0", "3:17:2")));
        let odd = PreparedTransaction {
            gid: "nonsense".into(),
        };
        assert_eq!(odd.checkpoint(), CheckpointId(0));
        assert_eq!(odd.split(), None);
    }
}
