//! Keyed event-time windows: tumbling, sliding and session, with count, sum, min, max, avg and
//! count_distinct.
//!
//! Watermark convention (as in Flink): watermark `w` promises no more records with event
//! time `<= w`. A window `[start, end)` fires once `w >= end - 1`; a record is late when every
//! window it belongs to has fired. Results carry the key columns, `window_start`,
//! `window_end`, and one column per aggregate, in the order the manifest lists them.
//!
//! # Caveats
//! Float sums depend on the order rows arrive in, and rows of one key from several upstream
//! subtasks interleave freely, so float results may differ in the last bits between runs.
//! Integer sums, counts, min and max are exact.
//!
//! # Two layouts, one behaviour
//! Tumbling and sliding windows share their boundaries across keys, so [`aligned`] keeps one
//! table of groups per window with accumulators in vectors; session windows differ per key, so
//! [`session`] keeps windows per key. Both fire a window's groups sorted by key and store the
//! same checkpoint format (per key: its windows by start), so a job's state does not depend on
//! which one wrote it.

/// The column a window result starts with after its keys: where the window begins
/// (inclusive). SQL reads the same name from a window table function.
pub const WINDOW_START: &str = "window_start";
/// The column after [`WINDOW_START`]: where the window ends (exclusive).
pub const WINDOW_END: &str = "window_end";

pub(crate) mod accumulators;
mod aligned;
mod disk;
pub(crate) mod distinct;
mod groups;
mod session;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};
use weir_crds::AggregateFn;

use super::{Input, KeyedState, Operator, OperatorCounters, Output};
use crate::error::Result;
use crate::expr::CompiledExpr;
use crate::ids::Millis;
use crate::keys::KeyCodec;
use crate::state::disk::Place;
use accumulators::{Acc, Value};
use datafusion::arrow::datatypes::SchemaRef;

/// Window geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// `[k*size, (k+1)*size)`.
    Tumbling {
        /// Length, ms.
        size: Millis,
    },
    /// Windows of `size` starting at multiples of `slide`.
    Sliding {
        /// Length, ms.
        size: Millis,
        /// Start spacing, ms.
        slide: Millis,
    },
    /// Merged `[ts, ts+gap)` intervals per key.
    Session {
        /// Inactivity gap, ms.
        gap: Millis,
    },
}

impl Assigner {
    fn windows(self, ts: Millis, out: &mut Vec<(Millis, Millis)>) {
        out.clear();
        match self {
            Self::Tumbling { size } => {
                let start = ts - ts.rem_euclid(size);
                out.push((start, start + size));
            }
            Self::Sliding { size, slide } => {
                let mut start = ts - ts.rem_euclid(slide);
                while start > ts - size {
                    out.push((start, start + size));
                    start -= slide;
                }
            }
            Self::Session { gap } => out.push((ts, ts + gap)),
        }
    }
}

/// How an aggregate reads its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Integers (and timestamps, whose results are timestamps again).
    Int {
        /// Whether results are timestamps.
        timestamp: bool,
    },
    /// Floats.
    Float,
    /// Any type: only counted (`count(e)`, `count_distinct(e)`).
    Any,
}

/// One aggregate column.
#[derive(Debug)]
pub struct Aggregate {
    /// Function.
    pub func: AggregateFn,
    /// Argument; `None` for `count(*)`.
    pub arg: Option<CompiledExpr>,
    /// How the argument is read; decides the result type.
    pub kind: ValueKind,
}

impl Aggregate {
    /// The Arrow type this aggregate produces.
    #[must_use]
    pub fn output_type(&self) -> DataType {
        match (self.func, self.kind) {
            (AggregateFn::Count | AggregateFn::CountDistinct, _) => DataType::Int64,
            (AggregateFn::Avg, _) | (_, ValueKind::Float | ValueKind::Any) => DataType::Float64,
            (_, ValueKind::Int { timestamp: true }) => crate::schema::timestamp_type(),
            (_, ValueKind::Int { timestamp: false }) => DataType::Int64,
        }
    }
}

/// One window of one key, as checkpoints store it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    end: Millis,
    accs: Vec<Acc>,
}

/// Per-key windows, by start: the checkpoint format of both layouts.
type KeyWindows = BTreeMap<Millis, Window>;

/// Everything the planner decided about a window.
#[derive(Debug)]
pub struct WindowConfig {
    /// Geometry.
    pub assigner: Assigner,
    /// Key codec over the input schema.
    pub keys: KeyCodec,
    /// Event-time column index in the input.
    pub time_col: usize,
    /// Aggregates, in output order.
    pub aggregates: Vec<Aggregate>,
    /// Output schema: keys, window_start, window_end, aggregates.
    pub output: SchemaRef,
    /// Late records go to the side output instead of being dropped.
    pub side_output: bool,
    /// Key groups in the job.
    pub max_parallelism: u32,
}

/// The input columns an aggregation reads: its keys, its aggregates' arguments and `more`
/// (its event time), in order, each once. Windows and `GROUP BY` keep only accumulators of
/// these, so a stage before them may leave the other columns out.
#[must_use]
pub fn aggregation_reads(
    keys: &KeyCodec,
    aggregates: &[Aggregate],
    more: Option<usize>,
) -> Vec<usize> {
    let mut cols: Vec<usize> = keys.columns().to_vec();
    for a in aggregates {
        cols.extend(a.arg.iter().flat_map(CompiledExpr::columns));
    }
    cols.extend(more);
    cols.sort_unstable();
    cols.dedup();
    cols
}

/// The parts both layouts share: what the planner decided, and how arguments are read.
struct Shared {
    assigner: Assigner,
    keys: KeyCodec,
    time_col: usize,
    aggregates: Vec<Aggregate>,
    args: accumulators::Arguments,
    output: SchemaRef,
    side_output: bool,
    max_parallelism: u32,
    /// The input watermark so far: records of windows that end at or before it are late.
    watermark: Millis,
    counters: OperatorCounters,
}

impl Shared {
    fn new(c: WindowConfig) -> Result<Self> {
        let args = accumulators::Arguments::new(&c.aggregates)?;
        Ok(Self {
            assigner: c.assigner,
            keys: c.keys,
            time_col: c.time_col,
            aggregates: c.aggregates,
            args,
            output: c.output,
            side_output: c.side_output,
            max_parallelism: c.max_parallelism,
            watermark: Millis::MIN,
            counters: OperatorCounters::default(),
        })
    }

    /// Move to `watermark`; whether it is later than before (then windows may fire).
    fn advance(&mut self, watermark: Millis) -> bool {
        let later = watermark > self.watermark;
        self.watermark = self.watermark.max(watermark);
        later
    }

    /// Count the rows of `batch` marked `late`, and send them to the side output if the job
    /// has one.
    fn late_rows(&mut self, batch: &RecordBatch, late: Vec<bool>, out: &mut Output) -> Result<()> {
        let n = late.iter().filter(|l| **l).count();
        if n == 0 {
            return Ok(());
        }
        self.counters.late_records += n as u64;
        if self.side_output {
            let rows = datafusion::arrow::compute::filter_record_batch(
                batch,
                &datafusion::arrow::array::BooleanArray::from(late),
            )?;
            out.side.push(rows);
        }
        Ok(())
    }

    /// The input columns it reads: keys, event time and the aggregates' arguments; all of
    /// them when late records go to the side output, which takes them whole.
    fn reads(&self) -> Option<Vec<usize>> {
        if self.side_output {
            return None;
        }
        Some(aggregation_reads(
            &self.keys,
            &self.aggregates,
            Some(self.time_col),
        ))
    }

    fn new_accs(&self) -> Vec<Acc> {
        self.aggregates.iter().map(Acc::new).collect()
    }

    /// Every aggregate's argument over `batch` (see [`accumulators::Arguments::eval`]).
    fn arguments(&self, batch: &RecordBatch) -> Result<Vec<Option<ArrayRef>>> {
        self.args.eval(&self.aggregates, batch)
    }

    /// Typed views of [`Shared::arguments`].
    fn values<'a>(&self, arrays: &'a [Option<ArrayRef>]) -> Result<Vec<Value<'a>>> {
        self.args.values(&self.aggregates, arrays)
    }
}

/// The window operator of one subtask.
pub struct WindowOperator {
    inner: Layout,
}

enum Layout {
    Aligned(aligned::AlignedWindows),
    Session(session::SessionWindows),
}

impl std::fmt::Debug for WindowOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (layout, shared) = match &self.inner {
            Layout::Aligned(w) => ("aligned", &w.shared),
            Layout::Session(w) => ("session", &w.shared),
        };
        f.debug_struct("WindowOperator")
            .field("layout", &layout)
            .field("assigner", &shared.assigner)
            .finish_non_exhaustive()
    }
}

impl WindowOperator {
    /// A window operator with no state.
    ///
    /// # Errors
    /// Arrow's error when a `count_distinct` argument type cannot be row-encoded.
    pub fn new(c: WindowConfig) -> Result<Self> {
        Self::new_in(c, None)
    }

    /// A window operator with no state, in memory or, given a place (the `disk` backend), in
    /// a store there: every geometry then takes the per-key layout, which a key-value store
    /// holds well; the aligned layout is memory's fast path.
    ///
    /// # Errors
    /// As [`Self::new`]; the store does not open.
    pub fn new_in(c: WindowConfig, place: Option<Place>) -> Result<Self> {
        let shared = Shared::new(c)?;
        let inner = match (shared.assigner, place) {
            (_, Some(place)) => Layout::Session(session::SessionWindows::on_disk(shared, place)?),
            (Assigner::Session { .. }, None) => {
                Layout::Session(session::SessionWindows::new(shared))
            }
            (Assigner::Tumbling { .. } | Assigner::Sliding { .. }, None) => {
                Layout::Aligned(aligned::AlignedWindows::new(shared))
            }
        };
        Ok(Self { inner })
    }

    fn layout_mut(&mut self) -> &mut dyn Operator {
        match &mut self.inner {
            Layout::Aligned(w) => w,
            Layout::Session(w) => w,
        }
    }

    fn layout(&self) -> &dyn Operator {
        match &self.inner {
            Layout::Aligned(w) => w,
            Layout::Session(w) => w,
        }
    }
}

impl Operator for WindowOperator {
    fn process(&mut self, input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        self.layout_mut().process(input, batch, out)
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.layout_mut().on_watermark(watermark, out)
    }

    fn reads(&self, _needed: Option<&[usize]>) -> Option<Vec<usize>> {
        match &self.inner {
            Layout::Aligned(w) => w.shared.reads(),
            Layout::Session(w) => w.shared.reads(),
        }
    }

    fn snapshot(&self) -> Result<KeyedState> {
        self.layout().snapshot()
    }

    fn capture(&self, portable: bool) -> Result<super::Capture> {
        self.layout().capture(portable)
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        self.layout_mut().restore(state)
    }

    fn restore_disk(&mut self, fetched: Vec<crate::state::disk::Fetched>) -> Result<()> {
        self.layout_mut().restore_disk(fetched)
    }

    fn counters(&self) -> OperatorCounters {
        self.layout().counters()
    }
}
