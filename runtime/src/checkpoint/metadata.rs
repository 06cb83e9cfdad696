//! `_metadata` and state-file encoding. Both carry a CRC32 so that a truncated or corrupted
//! object is detected on restore (and the previous checkpoint used) instead of being loaded.
//!
//! `_metadata` is one header line, `WEIR-CHECKPOINT v1 crc32=<hex> len=<bytes>`, followed by a
//! JSON body: readable with `cat` when debugging, checked before it is trusted. State files are
//! postcard-encoded; their CRC and size are recorded in `_metadata`.

use serde::{Deserialize, Serialize};

use super::BarrierKind;
use super::compat::{OperatorRecord, SourceRecord};
use super::state::{Committable, KeyedState, SplitState, StatePart, WriteAheadData};
use crate::ids::{CheckpointId, TaskId};

const MAGIC: &str = "WEIR-CHECKPOINT v1";

/// Everything a restore needs, written last; its existence is the checkpoint's completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointMetadata {
    /// Job name.
    pub job: String,
    /// Lineage id.
    pub job_id: String,
    /// Generation of the incarnation that wrote it.
    pub generation: u64,
    /// Checkpoint id.
    pub id: CheckpointId,
    /// What triggered it.
    pub kind: BarrierKind,
    /// Parallelism it was taken at.
    pub parallelism: u32,
    /// Key groups; must match on restore.
    pub max_parallelism: u32,
    /// Wall-clock completion time, ms since epoch.
    pub completed_at_ms: i64,
    /// Time from trigger to all acks, ms.
    pub duration_ms: u64,
    /// State files, relative to the checkpoint directory.
    pub state_files: Vec<StateFileRef>,
    /// Uncommitted sink transactions this checkpoint promises: committed after `_metadata`,
    /// or by commit-phase recovery on restore.
    pub committables: Vec<SinkCommittable>,
    /// What each stateful operator's state means, checked on restore (absent in checkpoints
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<OperatorRecord>,
    /// What each source's positions are positions in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRecord>,
}

impl CheckpointMetadata {
    /// Bytes of state the checkpoint holds: its state files and the shared tables they refer
    /// to (what a restore reads).
    #[must_use]
    pub fn state_size(&self) -> u64 {
        self.state_files
            .iter()
            .map(|f| f.size + f.shared_bytes + f.parts_bytes)
            .sum()
    }

    /// Bytes this checkpoint wrote: its state files and the shared tables it uploaded (less
    /// than [`Self::state_size`] when `disk` state refers to tables earlier checkpoints
    /// uploaded).
    #[must_use]
    pub fn written_size(&self) -> u64 {
        self.state_files
            .iter()
            .map(|f| f.size + f.uploaded_bytes + f.parts_bytes)
            .sum()
    }
}

/// One uploaded state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFileRef {
    /// Subtask that wrote it.
    pub task: TaskId,
    /// File name within the checkpoint directory.
    pub file: String,
    /// Bytes.
    pub size: u64,
    /// CRC32 of the bytes.
    pub crc32: u32,
    /// Objects under the lineage's `shared/` directory (table files of `disk` state) the
    /// state file refers to: retention deletes one only when no kept checkpoint lists it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
    /// Bytes of the `shared` tables.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_bytes: u64,
    /// Bytes of the `shared` tables this checkpoint uploaded (the others earlier ones did).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uploaded_bytes: u64,
    /// Bytes of the parts stored beside the state file (streamed state, listed in it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A pre-committed sink transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkCommittable {
    /// Sink id within the plan (`sink-0`, `late-2`, …).
    pub sink: String,
    /// Checkpoint whose barrier closed the transaction.
    pub checkpoint: CheckpointId,
    /// Subtask that wrote it.
    pub subtask: u32,
    /// Sink-specific commit information.
    pub committable: Committable,
}

/// One subtask's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// Source positions (source subtasks only).
    pub splits: Vec<SplitState>,
    /// Keyed state per operator id.
    #[serde(with = "keyed_state_bytes")]
    pub operators: Vec<(String, KeyedState)>,
    /// Rows of this subtask's write-ahead sink transactions that the checkpoint promises
    /// (kept here so that `_metadata` does not grow with throughput).
    pub write_ahead: Vec<WriteAheadData>,
    /// Checkpoints of operators whose state is on disk (`disk` backend), by reference to
    /// their uploaded tables. Last, so that state files written before it existed decode
    /// ([`decode_state`] reads them as [`TaskStateV1`]).
    pub disk: Vec<crate::state::files::DiskSnapshot>,
    /// Keyed state stored beside this file in parts (savepoints of disk state), read one part
    /// at a time on restore. Last, for the same reason as `disk` ([`TaskStateV2`]).
    pub parts: Vec<StatePart>,
}

/// [`TaskState`] as written before `parts` existed.
#[derive(Deserialize)]
struct TaskStateV2 {
    splits: Vec<SplitState>,
    #[serde(with = "keyed_state_bytes")]
    operators: Vec<(String, KeyedState)>,
    write_ahead: Vec<WriteAheadData>,
    disk: Vec<crate::state::files::DiskSnapshot>,
}

/// [`TaskState`] as written before `disk` state existed.
#[derive(Deserialize)]
struct TaskStateV1 {
    splits: Vec<SplitState>,
    #[serde(with = "keyed_state_bytes")]
    operators: Vec<(String, KeyedState)>,
    write_ahead: Vec<WriteAheadData>,
}

/// Each key group's bytes as one byte string rather than a sequence of `u8`. postcard writes
/// both the same way (a length, then the bytes), so the format is unchanged, but a byte string
/// is one copy where a sequence is a call per byte: 100 MB of state encoded in tens of
/// milliseconds instead of hundreds.
mod keyed_state_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    use super::KeyedState;

    pub fn serialize<S: Serializer>(
        operators: &[(String, KeyedState)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(operators.iter().map(|(id, groups)| {
            let groups: Vec<(u32, &Bytes)> =
                groups.iter().map(|(kg, b)| (*kg, Bytes::new(b))).collect();
            (id, groups)
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, KeyedState)>, D::Error> {
        let raw: Vec<(String, Vec<(u32, ByteBuf)>)> = Deserialize::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|(id, groups)| {
                let groups = groups
                    .into_iter()
                    .map(|(kg, b)| (kg, b.into_vec()))
                    .collect();
                (id, groups)
            })
            .collect())
    }
}

/// Why stored bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptError {
    /// Header missing or malformed.
    #[error("not a Weir checkpoint header")]
    Header,
    /// Length or checksum mismatch.
    #[error(
        "checksum mismatch: expected crc32 {expected:08x} over {expected_len} bytes, found {found:08x} over {found_len}"
    )]
    Checksum {
        /// Recorded CRC.
        expected: u32,
        /// Actual CRC.
        found: u32,
        /// Recorded length.
        expected_len: u64,
        /// Actual length.
        found_len: u64,
    },
    /// Checksum fine, content not decodable (written by an incompatible version).
    #[error("cannot decode: {0}")]
    Decode(String),
}

/// Encode `_metadata`.
///
/// # Errors
/// Only if serde_json fails, which it does not for these types.
pub fn encode_metadata(m: &CheckpointMetadata) -> Result<Vec<u8>, CorruptError> {
    let body = serde_json::to_vec_pretty(m).map_err(|e| CorruptError::Decode(e.to_string()))?;
    let mut out = format!(
        "{MAGIC} crc32={:08x} len={}\n",
        crc32fast::hash(&body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode and verify `_metadata`.
///
/// # Errors
/// [`CorruptError`] describing the first problem found.
pub fn decode_metadata(bytes: &[u8]) -> Result<CheckpointMetadata, CorruptError> {
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(CorruptError::Header)?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| CorruptError::Header)?;
    let rest = header
        .strip_prefix(MAGIC)
        .ok_or(CorruptError::Header)?
        .trim();
    let mut crc = None;
    let mut len = None;
    for part in rest.split_whitespace() {
        if let Some(v) = part.strip_prefix("crc32=") {
            crc = u32::from_str_radix(v, 16).ok();
        } else if let Some(v) = part.strip_prefix("len=") {
            len = v.parse::<u64>().ok();
        }
    }
    let (expected, expected_len) = crc.zip(len).ok_or(CorruptError::Header)?;
    let body = &bytes[nl + 1..];
    verify(body, expected, expected_len)?;
    serde_json::from_slice(body).map_err(|e| CorruptError::Decode(e.to_string()))
}

/// Check bytes against a recorded CRC and length.
///
/// # Errors
/// [`CorruptError::Checksum`] on mismatch.
pub fn verify(bytes: &[u8], expected: u32, expected_len: u64) -> Result<(), CorruptError> {
    let found = crc32fast::hash(bytes);
    if found != expected || bytes.len() as u64 != expected_len {
        return Err(CorruptError::Checksum {
            expected,
            found,
            expected_len,
            found_len: bytes.len() as u64,
        });
    }
    Ok(())
}

/// Encode a subtask's state.
///
/// # Errors
/// postcard errors (none for these types in practice).
pub fn encode_state(s: &TaskState) -> Result<Vec<u8>, CorruptError> {
    // The file is mostly key groups and write-ahead rows, copied in whole: a buffer sized for
    // them up front copies a state of hundreds of MiB once, where a growing one copies it
    // again at each doubling (and faults in each new buffer's pages).
    let groups: usize = s
        .operators
        .iter()
        .map(|(id, groups)| id.len() + groups.iter().map(|(_, b)| b.len() + 16).sum::<usize>())
        .sum();
    let rows: usize = s
        .write_ahead
        .iter()
        .map(|w| w.sink.len() + w.data.len() + 32)
        .sum();
    postcard::to_extend(s, Vec::with_capacity(groups + rows + 4096))
        .map_err(|e| CorruptError::Decode(e.to_string()))
}

/// Decode a subtask's state (after [`verify`]).
///
/// # Errors
/// [`CorruptError::Decode`].
pub fn decode_state(bytes: &[u8]) -> Result<TaskState, CorruptError> {
    let e = match postcard::from_bytes(bytes) {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    if let Ok((v2, [])) = postcard::take_from_bytes::<TaskStateV2>(bytes) {
        return Ok(TaskState {
            splits: v2.splits,
            operators: v2.operators,
            write_ahead: v2.write_ahead,
            disk: v2.disk,
            parts: Vec::new(),
        });
    }
    match postcard::take_from_bytes::<TaskStateV1>(bytes) {
        Ok((v1, [])) => Ok(TaskState {
            splits: v1.splits,
            operators: v1.operators,
            write_ahead: v1.write_ahead,
            disk: Vec::new(),
            parts: Vec::new(),
        }),
        _ => Err(CorruptError::Decode(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Also: state files written before `disk` state and before `parts` existed (the same
    /// fields without them) still decode.
    #[test]
    fn key_group_bytes_encode_as_the_plain_sequence_they_replaced() {
        #[derive(Serialize)]
        struct Plain {
            splits: Vec<SplitState>,
            operators: Vec<(String, KeyedState)>,
            write_ahead: Vec<WriteAheadData>,
        }
        let operators = vec![
            (
                "window-0".to_string(),
                vec![(3, vec![1, 2, 255]), (9, (0..=255).collect())],
            ),
            ("dedup-1".to_string(), vec![(0, Vec::new())]),
        ];
        let state = TaskState {
            splits: Vec::new(),
            operators: operators.clone(),
            write_ahead: Vec::new(),
            disk: Vec::new(),
            parts: Vec::new(),
        };
        let plain = Plain {
            splits: Vec::new(),
            operators,
            write_ahead: Vec::new(),
        };
        let bytes = encode_state(&state).expect("encodes");
        let old = postcard::to_stdvec(&plain).expect("encodes");
        // The new fields are two more sequences after the old ones: empty, one byte each.
        assert_eq!(bytes[..bytes.len() - 2], old[..]);
        assert_eq!(decode_state(&bytes).expect("decodes"), state);
        assert_eq!(
            decode_state(&old).expect("an older state file decodes"),
            state
        );
        assert_eq!(
            decode_state(&bytes[..bytes.len() - 1]).expect("a file without parts decodes"),
            state
        );
        assert!(
            decode_state(&old[..old.len() - 1]).is_err(),
            "a cut file must not decode"
        );
    }

    fn sample() -> CheckpointMetadata {
        CheckpointMetadata {
            job: "j".into(),
            job_id: "id".into(),
            generation: 3,
            id: CheckpointId(9),
            kind: BarrierKind::Checkpoint,
            parallelism: 2,
            max_parallelism: 128,
            completed_at_ms: 1,
            duration_ms: 2,
            state_files: vec![StateFileRef {
                task: TaskId {
                    stage: 0,
                    subtask: 1,
                },
                file: "s0-t1-g3.state".into(),
                shared: Vec::new(),
                shared_bytes: 0,
                uploaded_bytes: 0,
                parts_bytes: 0,
                size: 10,
                crc32: 5,
            }],
            committables: vec![],
            operators: vec![],
            sources: vec![],
        }
    }

    #[test]
    fn metadata_round_trips_and_any_flipped_byte_is_detected() {
        let bytes = encode_metadata(&sample()).expect("encode");
        assert_eq!(decode_metadata(&bytes), Ok(sample()));
        for i in [0, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(decode_metadata(&bad).is_err(), "flip at {i} not detected");
        }
        assert!(
            decode_metadata(&bytes[..bytes.len() - 3]).is_err(),
            "truncation not detected"
        );
    }
}
