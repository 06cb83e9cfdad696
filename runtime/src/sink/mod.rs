//! Sinks. Exactly-once sinks implement [`TwoPhaseCommitSink`]; the checkpoint protocol drives
//! them:
//!
//! ```text
//!  begin(n+1) ── write … write ── barrier n+1 ──► pre_commit() ──► committable → checkpoint n+1
//!                                                                   │
//!                    _metadata of n+1 written (commit point) ◄──────┘
//!                                   │
//!                                   ▼
//!                   commit(committables of n+1)          (idempotent)
//!
//!  restore from n:  SinkConnector::recover_and_commit(committables recorded in n)
//!                   commits what n promised and aborts everything left from later attempts
//! ```
//!
//! A sink that cannot be exactly-once ([`Guarantee::AtLeastOnce`]) says so in its docs and in
//! `GET /v1/job`.

pub mod file;
pub mod stdout;
pub mod table;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use futures::future::BoxFuture;

pub use crate::checkpoint::state::Committable;
use crate::error::Result;
use crate::ids::CheckpointId;

/// What a sink promises about duplicates after a failure; part of `GET /v1/job`, so the type is
/// the operator–runtime contract's.
pub use weir_crds::control::Guarantee;

/// Where a sink instance runs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// Subtask index.
    pub subtask: u32,
    /// Subtasks of this sink.
    pub parallelism: u32,
    /// Storage generation of this incarnation; makes transaction names unique per incarnation.
    pub generation: u64,
    /// Lineage id; part of deduplication identities that must survive a restore.
    pub job_id: String,
}

/// What a connector knows about the job it serves.
#[derive(Debug, Clone)]
pub struct SinkEnv {
    /// The sink's id in the plan (`sink-0`, or its name): part of the identities a sink
    /// leaves in its target, so two sinks of a job into one database never touch each other's.
    pub sink: String,
    /// Job name.
    pub job_name: String,
    /// Sink subtasks.
    pub parallelism: u32,
    /// `checkpoint.exactlyOnce`.
    pub exactly_once: bool,
}

/// A sink subtask that commits in two phases with the checkpoint.
///
/// # Guarantees implementors give
/// - Records written after `begin(n)` become visible only through `commit` of the
///   committable returned by the next `pre_commit`.
/// - `commit` is idempotent: committing a committable twice, or one already committed by
///   [`SinkConnector::recover_and_commit`], succeeds without writing anything twice.
/// - `pre_commit` makes the transaction durable: after it returns, a crash does not lose it.
pub trait TwoPhaseCommitSink: Send {
    /// Open the transaction that collects records until checkpoint `txn`'s barrier.
    fn begin(&mut self, txn: CheckpointId) -> BoxFuture<'_, Result<()>>;
    /// Add records to the open transaction.
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>>;
    /// The barrier arrived: make the open transaction durable and return how to commit it.
    fn pre_commit(&mut self) -> BoxFuture<'_, Result<Committable>>;
    /// The checkpoint completed: make these transactions visible.
    fn commit(&mut self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>>;
    /// Throw away the open transaction (job stopping without a checkpoint).
    fn abort(&mut self) -> BoxFuture<'_, Result<()>>;
}

/// A sink subtask without transactions.
pub trait PlainSink: Send {
    /// Write records.
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>>;
    /// Flush on checkpoint `checkpoint`'s barrier so that a completed checkpoint implies
    /// delivered output.
    fn flush(&mut self, checkpoint: CheckpointId) -> BoxFuture<'_, Result<()>>;
}

/// One sink subtask.
pub enum SinkInstance {
    /// Exactly-once.
    TwoPhase(Box<dyn TwoPhaseCommitSink>),
    /// At-least-once or none.
    Plain(Box<dyn PlainSink>),
}

/// A configured sink: opens subtask instances and performs restore-time recovery.
pub trait SinkConnector: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> String;
    /// What this sink guarantees.
    fn guarantee(&self) -> Guarantee;
    /// Open subtask `ctx.subtask`.
    ///
    /// # Errors
    /// Connection or file errors naming the target.
    fn open(&self, ctx: &SinkContext) -> Result<SinkInstance>;
    /// Before any subtask starts after a restore: commit the transactions recorded in the
    /// restored checkpoint (commit-phase recovery) and abort anything else left pending.
    /// Runs also on a fresh start with no committables, to clear leftovers.
    fn recover_and_commit(&self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>>;
    /// Before anything runs: check the target against the records this sink will receive
    /// (columns, types, reachability), so a wrong table or topic fails fast by name.
    fn prepare<'a>(&'a self, _input: &'a SchemaRef) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Records as JSON lines, the format every text sink writes.
///
/// # Errors
/// Arrow's error for types JSON cannot represent.
pub fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>> {
    let batch = zoned_timestamps(batch)?;
    let mut w = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    w.write(&batch)?;
    w.finish()?;
    Ok(w.into_inner())
}

/// Weir's timestamps carry no zone because they are all UTC; text written for others says
/// so (RFC 3339 with `Z`), so no reader has to guess. Only the column type changes: the
/// values are the same instants.
fn zoned_timestamps(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::datatypes::{Field, Schema};
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(_, None)))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let c = zoned(c)?;
        fields.push(Field::new(f.name(), c.data_type().clone(), f.is_nullable()));
        cols.push(c);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// A timestamp column without a zone as the same instants in UTC (any other column as is),
/// so that casting it to text writes `Z`.
///
/// # Errors
/// Arrow's cast error.
pub fn zoned(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Timestamp(unit, None) => {
            datafusion::arrow::compute::cast(a, &DataType::Timestamp(*unit, Some("+00:00".into())))?
        }
        _ => Arc::clone(a),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn json_timestamps_carry_their_zone_and_parse_back_to_the_same_instant() {
        let instants = [1_773_478_740_000_i64, 1_773_478_740_123, 0];
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(instants[0]),
                    Some(instants[1]),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let text = String::from_utf8(json_lines(&batch).unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (i, line) in lines.iter().take(2).enumerate() {
            let s = line["window_start"].as_str().unwrap();
            assert!(s.ends_with('Z'), "{s}: no zone");
            let back = crate::schema::parse_timestamp_millis(s).unwrap();
            assert_eq!(back, instants[i], "{s}");
        }
        assert!(lines[2].get("window_start").is_none_or(|v| v.is_null()));
        // Keys and value fields are cast to text the same way.
        let text =
            datafusion::arrow::compute::cast(&zoned(batch.column(0)).unwrap(), &DataType::Utf8)
                .unwrap();
        let text = text
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>();
        assert_eq!(text.unwrap().value(0), "2026-03-14T08:59:00Z");
    }
}
