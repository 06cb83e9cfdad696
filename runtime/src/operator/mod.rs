//! Operators: what a subtask does to each batch and watermark between its input and output.
//!
//! An operator sees one subtask's share of the data. Stateless operators (`filter`, `select`)
//! are chained into whatever task precedes them; keyed operators (`window`, `dedup`) start a
//! new stage fed by a key-group shuffle, and keep their state per key group so that it can
//! move between subtasks on rescale.

pub mod byte_strings;
pub mod dedup;
pub mod filter;
pub mod group_by;
pub mod join;
pub mod keyed_store;
pub mod select;
pub mod top_n;
pub mod ttl;
pub mod union;
pub mod window;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::ScalarValue;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::checkpoint::state::{Capture, DeferredState, KeyedState, PieceSink};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::key_group;

/// What an operator emits in one call: results for the next operator, and records for its
/// side output (late records), if it has one.
#[derive(Debug, Default)]
pub struct Output {
    /// Main output, in order.
    pub batches: Vec<RecordBatch>,
    /// Side output, in order.
    pub side: Vec<RecordBatch>,
}

/// Counters an operator keeps for metrics and `GET /v1/job`.
#[derive(Debug, Default, Clone, Copy)]
pub struct OperatorCounters {
    /// Records that arrived after all their windows had closed.
    pub late_records: u64,
    /// Records dropped as duplicates.
    pub duplicates: u64,
}

/// Which of an operator's inputs a batch arrived on. Single-input operators have only
/// [`Input::ONLY`]; a two-input operator (a join) is told which side each batch is from,
/// since the two sides carry different schemas and fill different state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Input(pub u8);

impl Input {
    /// The input of a single-input operator (and the first of a two-input one).
    pub const ONLY: Self = Self(0);
}

/// Which columns of `schema` an operator narrowed to `needed` (see [`Operator::narrow`])
/// still produces: those read after it, and those that cannot be null and have no stand-in
/// ([`stand_in`]). `None` when that is all of them, so that nothing changes.
#[must_use]
pub fn produced(schema: &Schema, needed: &[usize]) -> Option<Vec<bool>> {
    let produced: Vec<bool> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            // Trying a row of stand-in costs once, at planning.
            needed.contains(&i) || stand_in(f, 1).is_err()
        })
        .collect();
    produced.contains(&false).then_some(produced)
}

/// What fills `rows` rows of `field` that an operator does not produce ([`produced`]):
/// nulls where the field allows them, else its type's default (zero, empty), which nothing
/// reads. A `SELECT` thus need not compute the `extra` of a view nothing uses, nor a source
/// make it.
///
/// # Errors
/// The type has no default, or DataFusion cannot make an array of it (`produced` keeps such
/// columns).
pub fn stand_in(field: &Field, rows: usize) -> Result<ArrayRef> {
    if field.is_nullable() {
        return Ok(new_null_array(field.data_type(), rows));
    }
    Ok(ScalarValue::new_default(field.data_type())?.to_array_of_size(rows)?)
}

/// An operator's stand-ins ([`stand_in`]) by column, each made once at the largest batch
/// yet and sliced for each batch: a column nothing reads then costs neither an allocation
/// nor zeroing per batch (q0 left 17 columns out, whose fresh null arrays were a twentieth of
/// its time).
#[derive(Debug, Default, Clone)]
pub struct StandIns(Vec<Option<ArrayRef>>);

impl StandIns {
    /// `rows` rows of stand-in for column `i`, of `field`.
    ///
    /// # Errors
    /// As [`stand_in`].
    pub fn get(&mut self, i: usize, field: &Field, rows: usize) -> Result<ArrayRef> {
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        let slot = &mut self.0[i];
        match slot {
            Some(made) if made.len() >= rows => Ok(made.slice(0, rows)),
            _ => {
                let made = stand_in(field, rows)?;
                *slot = Some(Arc::clone(&made));
                Ok(made)
            }
        }
    }
}

/// One operator instance in one subtask.
///
/// # Guarantees implementors give
/// - `process` and `on_watermark` are deterministic given the same inputs in the same order;
///   exactly-once output rests on replay producing the same results.
/// - `snapshot` captures everything needed to continue; `restore` accepts the key groups of
///   any number of former subtasks (a rescale) and ignores none of them.
pub trait Operator: Send {
    /// Handle one batch from input `input`.
    ///
    /// # Errors
    /// Expression evaluation errors.
    fn process(&mut self, input: Input, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// The input watermark advanced to `watermark`; emit what it completes.
    ///
    /// # Errors
    /// Expression or Arrow errors while building results.
    fn on_watermark(&mut self, _watermark: Millis, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Input `input` finished: every upstream subtask of it sent the end of event time (its
    /// sources are bounded and were read to their end) or closed, so no more records will
    /// arrive on it. A join stops keeping the
    /// other input's rows, which nothing could join any more; the default does nothing.
    ///
    /// # Errors
    /// Arrow errors while building results.
    fn on_input_end(&mut self, _input: Input, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// The input columns it reads to produce output columns `needed` (`None`: all of them),
    /// so that the operator before it in a chain may leave the others out. `None`: every
    /// input column (the default, always right).
    fn reads(&self, _needed: Option<&[usize]>) -> Option<Vec<usize>> {
        None
    }

    /// Only output columns `needed` are read after it: it may leave the others null where
    /// their field allows it, rather than compute or move them (a filter then copies only
    /// the strings something reads). The default computes everything.
    fn narrow(&mut self, _needed: &[usize]) {}

    /// How far behind its input's watermark the operator's results can lie in event time
    /// (a join pairing a new row with an older one): the watermark after it is held back by
    /// this, so that nothing downstream sees them as late.
    fn watermark_delay(&self) -> Millis {
        0
    }

    /// Encode state per key group. Stateless operators return nothing.
    ///
    /// # Errors
    /// Encoding errors.
    fn snapshot(&self) -> Result<KeyedState> {
        Ok(Vec::new())
    }

    /// Capture state at a barrier and return what encodes it: the task calls this, and the
    /// encoding runs off the task while records flow again. An operator with much state
    /// copies it here cheaply and encodes later; the default encodes at once. `portable`:
    /// the barrier's checkpoint is also a savepoint, whose state must be encoded per key group
    /// whatever the backend (so that it restores into either one).
    ///
    /// # Errors
    /// Encoding errors.
    fn capture(&self, _portable: bool) -> Result<Capture> {
        let state = self.snapshot()?;
        Ok(Capture::Keyed(Box::new(move || Ok(state))))
    }

    /// Load key groups (already filtered to this subtask's range) from a checkpoint.
    ///
    /// # Errors
    /// Decoding errors naming the operator.
    fn restore(&mut self, _state: KeyedState) -> Result<()> {
        Ok(())
    }

    /// Load state from checkpoints of disk stores (`disk` backend), downloaded: the former
    /// subtasks' stores that hold key groups this subtask now owns. Only operators that keep
    /// state on disk accept it.
    ///
    /// # Errors
    /// The operator keeps its state in memory, or a store does not open.
    fn restore_disk(&mut self, _fetched: Vec<crate::state::disk::Fetched>) -> Result<()> {
        Err(disk_state_refused(""))
    }

    /// Counters since start.
    fn counters(&self) -> OperatorCounters {
        OperatorCounters::default()
    }
}

/// What an operator keeping its state in `store` hands over at a barrier: for a checkpoint,
/// hard links for the uploader; for a savepoint (`portable`), a frozen copy of the store that
/// `encode` streams as keyed state, piece by piece, off the task (a store may be far larger than
/// memory, so a savepoint of it is never whole in memory).
///
/// # Errors
/// The store's checkpoint (hard links) fails.
pub fn capture_store(
    store: &crate::state::disk::DiskState,
    portable: bool,
    families: &[crate::state::disk::Family],
    encode: impl FnOnce(&weir_state::Store, weir_state::KeyGroups, PieceSink<'_>) -> Result<()>
    + Send
    + 'static,
) -> Result<Capture> {
    if !portable {
        return Ok(Capture::Disk(store.capture()?));
    }
    let (checkpoint, frozen) = store.frozen(families)?;
    let groups = store.groups();
    Ok(Capture::Streamed(Box::new(move |sink| {
        let encoded = encode(&frozen, groups, sink);
        drop(frozen);
        drop(checkpoint);
        encoded
    })))
}

/// Keyed state a streaming encoder makes, gathered in memory (for `snapshot`, whose caller
/// wants it whole, and for tests). Several pieces of one key group stay several entries.
///
/// # Errors
/// Whatever `encode` returns.
pub fn gather(encode: impl FnOnce(PieceSink<'_>) -> Result<()>) -> Result<KeyedState> {
    let mut all = Vec::new();
    encode(&mut |kg, bytes| {
        all.push((kg, bytes));
        Ok(())
    })?;
    Ok(all)
}

/// How large a piece grows. Unit tests cut key groups into pieces of a few entries, so that
/// every operator's restore is shown to take a key group in several pieces.
#[cfg(not(test))]
const PIECE_BYTES: usize = crate::checkpoint::parts::PIECE_BYTES;
#[cfg(test)]
const PIECE_BYTES: usize = 64;

/// Streams per-key entries as [`encode_keyed`] lays them out, a piece at a time: entries of one
/// key group, in the order given, cut into pieces of about
/// [`crate::checkpoint::parts::PIECE_BYTES`], each decoding on its own with [`decode_keyed`].
/// Entries must come grouped by key group, as a store's scan gives them.
pub struct KeyedPieces<'s, 'o> {
    operator: &'o str,
    sink: PieceSink<'s>,
    group: Option<u32>,
    entries: u64,
    buf: Vec<u8>,
}

impl<'s, 'o> KeyedPieces<'s, 'o> {
    /// Pieces of `operator`'s state, handed to `sink`.
    pub fn new(operator: &'o str, sink: PieceSink<'s>) -> Self {
        Self {
            operator,
            sink,
            group: None,
            entries: 0,
            buf: Vec::new(),
        }
    }

    /// Add the entry (`key`, `value`) of key group `kg`.
    ///
    /// # Errors
    /// Encoding errors naming the operator; what the sink returns.
    pub fn push<T: Serialize>(&mut self, kg: u32, key: &[u8], value: &T) -> Result<()> {
        if self.group != Some(kg) || self.buf.len() >= PIECE_BYTES {
            self.flush()?;
            self.group = Some(kg);
        }
        let buf = std::mem::take(&mut self.buf);
        self.buf =
            postcard::to_extend(&(serde_bytes::Bytes::new(key), value), buf).map_err(|e| {
                Error::State {
                    operator: self.operator.to_string(),
                    message: e.to_string(),
                }
            })?;
        self.entries += 1;
        Ok(())
    }

    /// Hand over the last piece.
    ///
    /// # Errors
    /// What the sink returns.
    pub fn finish(mut self) -> Result<()> {
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        let Some(kg) = self.group.filter(|_| self.entries > 0) else {
            return Ok(());
        };
        // A sequence in postcard: its length as a varint (as postcard writes any integer),
        // then its elements.
        let mut piece = postcard::to_extend(&self.entries, Vec::with_capacity(self.buf.len() + 10))
            .map_err(|e| Error::State {
                operator: self.operator.to_string(),
                message: e.to_string(),
            })?;
        piece.append(&mut self.buf);
        self.entries = 0;
        (self.sink)(kg, piece)
    }
}

/// Why an operator keeping its state in memory refuses a checkpoint of it on disk, and the
/// way out.
#[must_use]
pub fn disk_state_refused(operator: &str) -> Error {
    Error::State {
        operator: operator.to_string(),
        message: "the checkpoint holds this operator's state on disk (stateBackend type disk); \
                  restore it with the disk backend, or from a savepoint, which holds state in a \
                  form either backend reads"
            .into(),
    }
}

/// Column `col` of `batch` as event times, when there is such a column.
///
/// # Errors
/// The column is not a millisecond timestamp (planning and the operator disagree), naming
/// `operator`.
pub fn event_times<'a>(
    batch: &'a RecordBatch,
    col: Option<usize>,
    operator: &str,
) -> Result<Option<&'a datafusion::arrow::array::TimestampMillisecondArray>> {
    use datafusion::arrow::array::AsArray;
    col.map(|c| {
        batch
            .column(c)
            .as_primitive_opt::<datafusion::arrow::datatypes::TimestampMillisecondType>()
            .ok_or_else(|| {
                Error::internal(format!(
                    "{operator}: the time column is not a millisecond timestamp"
                ))
            })
    })
    .transpose()
}

/// Encode per-key entries into [`KeyedState`]: grouped by key group, in the order given
/// within a group (an operator's map's, hash order). Not sorted by key: nothing reads them in
/// order, and sorting the keys of a large state (millions, each behind its own pointer) took
/// several times as long as copying them. So equal state need not encode to equal bytes; compare
/// it decoded.
///
/// # Errors
/// Encoding errors, naming `operator`.
pub fn encode_keyed<'a, T: Serialize + 'a>(
    operator: &str,
    max_parallelism: u32,
    entries: impl Iterator<Item = (&'a [u8], T)>,
) -> Result<KeyedState> {
    // Keys as bytes: see `byte_strings`.
    let mut groups: std::collections::BTreeMap<u32, Vec<(&serde_bytes::Bytes, T)>> =
        std::collections::BTreeMap::new();
    for (k, v) in entries {
        groups
            .entry(key_group(k, max_parallelism))
            .or_default()
            .push((serde_bytes::Bytes::new(k), v));
    }
    groups
        .into_iter()
        .map(|(kg, group)| {
            postcard::to_stdvec(&group)
                .map(|b| (kg, b))
                .map_err(|e| Error::State {
                    operator: operator.to_string(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Decode what [`encode_keyed`] wrote, over all the key groups given.
///
/// # Errors
/// Decoding errors, naming `operator`.
pub fn decode_keyed<T: DeserializeOwned>(
    operator: &str,
    state: KeyedState,
) -> Result<Vec<(Vec<u8>, T)>> {
    let mut out = Vec::new();
    for (kg, bytes) in state {
        let entries: Vec<(serde_bytes::ByteBuf, T)> =
            postcard::from_bytes(&bytes).map_err(|e| Error::State {
                operator: operator.to_string(),
                message: format!("key group {kg}: {e}"),
            })?;
        out.extend(entries.into_iter().map(|(k, v)| (k.into_vec(), v)));
    }
    Ok(out)
}
