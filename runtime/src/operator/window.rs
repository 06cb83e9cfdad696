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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimestampMillisecondType,
};
use datafusion::arrow::row::{RowConverter, SortField};
use serde::{Deserialize, Serialize};
use weir_crds::AggregateFn;

use super::{KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed};
use crate::error::{Error, Result};
use crate::expr::CompiledExpr;
use crate::ids::Millis;
use crate::keys::KeyCodec;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Acc {
    Count(i64),
    SumI(i64),
    SumF(f64),
    MinI(Option<i64>),
    MaxI(Option<i64>),
    MinF(Option<f64>),
    MaxF(Option<f64>),
    Avg(f64, i64),
    Distinct(HashSet<Vec<u8>>),
}

impl Acc {
    fn new(a: &Aggregate) -> Self {
        let int = matches!(a.kind, ValueKind::Int { .. });
        match a.func {
            AggregateFn::Count => Self::Count(0),
            AggregateFn::CountDistinct => Self::Distinct(HashSet::new()),
            AggregateFn::Avg => Self::Avg(0.0, 0),
            AggregateFn::Sum if int => Self::SumI(0),
            AggregateFn::Sum => Self::SumF(0.0),
            AggregateFn::Min if int => Self::MinI(None),
            AggregateFn::Min => Self::MinF(None),
            AggregateFn::Max if int => Self::MaxI(None),
            AggregateFn::Max => Self::MaxF(None),
        }
    }

    fn update(&mut self, v: &Value<'_>, row: usize) {
        match (self, v) {
            (Self::Count(c), Value::Star) => *c += 1,
            (Self::Count(c), Value::Valid(valid)) => *c += i64::from(valid.is_valid(row)),
            (Self::Distinct(set), Value::Rows(conv_rows, valid)) if valid.is_valid(row) => {
                set.insert(conv_rows.row(row).as_ref().to_vec());
            }
            (acc, Value::Int(a)) if a.is_valid(row) => {
                let x = a.value(row);
                match acc {
                    Self::SumI(s) => *s = s.wrapping_add(x),
                    Self::MinI(m) => *m = Some(m.map_or(x, |m| m.min(x))),
                    Self::MaxI(m) => *m = Some(m.map_or(x, |m| m.max(x))),
                    Self::Avg(s, c) => {
                        *s += x as f64;
                        *c += 1;
                    }
                    _ => {}
                }
            }
            (acc, Value::Float(a)) if a.is_valid(row) => {
                let x = a.value(row);
                match acc {
                    Self::SumF(s) => *s += x,
                    Self::MinF(m) => *m = Some(m.map_or(x, |m| m.min(x))),
                    Self::MaxF(m) => *m = Some(m.map_or(x, |m| m.max(x))),
                    Self::Avg(s, c) => {
                        *s += x;
                        *c += 1;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Merge two session windows' accumulators.
    fn merge(&mut self, other: Self) {
        match (self, other) {
            (Self::Count(a), Self::Count(b)) | (Self::SumI(a), Self::SumI(b)) => *a += b,
            (Self::SumF(a), Self::SumF(b)) => *a += b,
            (Self::MinI(a), Self::MinI(b)) => *a = opt(*a, b, i64::min),
            (Self::MaxI(a), Self::MaxI(b)) => *a = opt(*a, b, i64::max),
            (Self::MinF(a), Self::MinF(b)) => *a = opt(*a, b, f64::min),
            (Self::MaxF(a), Self::MaxF(b)) => *a = opt(*a, b, f64::max),
            (Self::Avg(s, c), Self::Avg(s2, c2)) => {
                *s += s2;
                *c += c2;
            }
            (Self::Distinct(a), Self::Distinct(b)) => a.extend(b),
            _ => {}
        }
    }
}

fn opt<T: Copy>(a: Option<T>, b: Option<T>, f: fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, y) => x.or(y),
    }
}

enum Value<'a> {
    Star,
    Valid(&'a dyn Array),
    Rows(datafusion::arrow::row::Rows, &'a dyn Array),
    Int(&'a Int64Array),
    Float(&'a Float64Array),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    end: Millis,
    accs: Vec<Acc>,
}

/// Per-key windows, by start.
type KeyWindows = BTreeMap<Millis, Window>;

/// The window operator of one subtask.
pub struct WindowOperator {
    assigner: Assigner,
    keys: KeyCodec,
    time_col: usize,
    aggregates: Vec<Aggregate>,
    distinct_converters: Vec<Option<RowConverter>>,
    output: SchemaRef,
    side_output: bool,
    max_parallelism: u32,
    state: HashMap<Vec<u8>, KeyWindows>,
    /// Fire order: (end, start, key).
    timers: BTreeSet<(Millis, Millis, Vec<u8>)>,
    watermark: Millis,
    counters: OperatorCounters,
}

impl std::fmt::Debug for WindowOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowOperator")
            .field("assigner", &self.assigner)
            .field("keys", &self.state.len())
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

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

impl WindowOperator {
    /// A window operator with no state.
    ///
    /// # Errors
    /// Arrow's error when a `count_distinct` argument type cannot be row-encoded.
    pub fn new(c: WindowConfig) -> Result<Self> {
        let distinct_converters = c
            .aggregates
            .iter()
            .map(|a| match (a.func, &a.arg) {
                (AggregateFn::CountDistinct, Some(arg)) => {
                    RowConverter::new(vec![SortField::new(arg.data_type.clone())]).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            assigner: c.assigner,
            keys: c.keys,
            time_col: c.time_col,
            aggregates: c.aggregates,
            distinct_converters,
            output: c.output,
            side_output: c.side_output,
            max_parallelism: c.max_parallelism,
            state: HashMap::new(),
            timers: BTreeSet::new(),
            watermark: Millis::MIN,
            counters: OperatorCounters::default(),
        })
    }

    fn new_accs(&self) -> Vec<Acc> {
        self.aggregates.iter().map(Acc::new).collect()
    }

    /// Insert or merge a session window `[start, end)` for `key`; returns its final start.
    fn add_session(&mut self, key: &[u8], start: Millis, end: Millis) -> Millis {
        let fresh = self.new_accs();
        let windows = self.state.entry(key.to_vec()).or_default();
        let overlapping: Vec<Millis> = windows
            .range(..end)
            .filter(|(_, w)| w.end > start)
            .map(|(s, _)| *s)
            .collect();
        let (mut new_start, mut new_end, mut accs) = (start, end, fresh);
        for s in overlapping {
            if let Some(w) = windows.remove(&s) {
                self.timers.remove(&(w.end, s, key.to_vec()));
                new_start = new_start.min(s);
                new_end = new_end.max(w.end);
                for (a, b) in accs.iter_mut().zip(w.accs) {
                    a.merge(b);
                }
            }
        }
        windows.insert(new_start, Window { end: new_end, accs });
        self.timers.insert((new_end, new_start, key.to_vec()));
        new_start
    }

    fn fire(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        let mut fired: Vec<(Vec<u8>, Millis, Window)> = Vec::new();
        while let Some(first) = self.timers.first() {
            if first.0 - 1 > watermark {
                break;
            }
            let Some((end, start, key)) = self.timers.pop_first() else {
                break;
            };
            let Some(windows) = self.state.get_mut(&key) else {
                continue;
            };
            if let Some(w) = windows.remove(&start) {
                debug_assert_eq!(w.end, end);
                fired.push((key.clone(), start, w));
            }
            if windows.is_empty() {
                self.state.remove(&key);
            }
        }
        if fired.is_empty() {
            return Ok(());
        }
        let mut columns = self
            .keys
            .decode(fired.iter().map(|(k, _, _)| k.as_slice()))?;
        columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            fired.iter().map(|(_, s, _)| *s),
        )));
        columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            fired.iter().map(|(_, _, w)| w.end),
        )));
        for (i, a) in self.aggregates.iter().enumerate() {
            columns.push(finish(a, fired.iter().map(|(_, _, w)| &w.accs[i])));
        }
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }
}

fn finish<'a>(a: &Aggregate, accs: impl Iterator<Item = &'a Acc>) -> ArrayRef {
    let accs: Vec<&Acc> = accs.collect();
    match a.output_type() {
        DataType::Int64 => Arc::new(Int64Array::from(
            accs.iter()
                .map(|acc| match acc {
                    Acc::Count(c) | Acc::SumI(c) => Some(*c),
                    Acc::MinI(m) | Acc::MaxI(m) => *m,
                    Acc::Distinct(s) => Some(s.len() as i64),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        DataType::Timestamp(..) => Arc::new(TimestampMillisecondArray::from(
            accs.iter()
                .map(|acc| match acc {
                    Acc::MinI(m) | Acc::MaxI(m) => *m,
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        _ => Arc::new(Float64Array::from(
            accs.iter()
                .map(|acc| match acc {
                    Acc::SumF(s) => Some(*s),
                    Acc::MinF(m) | Acc::MaxF(m) => *m,
                    Acc::Avg(s, c) if *c > 0 => Some(s / *c as f64),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
    }
}

impl Operator for WindowOperator {
    fn process(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let key_rows = self.keys.rows(&batch)?;
        let ts_arr = batch.column(self.time_col);
        let ts = ts_arr
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("window time column is not a millisecond timestamp"))?;
        // Evaluate every argument once per batch, vectorised.
        let mut arrays: Vec<Option<ArrayRef>> = Vec::with_capacity(self.aggregates.len());
        for a in &self.aggregates {
            let Some(arg) = &a.arg else {
                arrays.push(None);
                continue;
            };
            let v = arg.eval(&batch)?;
            arrays.push(Some(match (a.func, a.kind) {
                (AggregateFn::Count | AggregateFn::CountDistinct, _) | (_, ValueKind::Any) => v,
                (_, ValueKind::Int { .. }) => cast(&v, &DataType::Int64)?,
                (_, ValueKind::Float) => cast(&v, &DataType::Float64)?,
            }));
        }
        let mut values: Vec<Value<'_>> = Vec::with_capacity(arrays.len());
        for (i, a) in self.aggregates.iter().enumerate() {
            values.push(match (&arrays[i], a.func) {
                (None, _) => Value::Star,
                (Some(v), AggregateFn::Count) => Value::Valid(v.as_ref()),
                (Some(v), AggregateFn::CountDistinct) => {
                    let conv = self.distinct_converters[i]
                        .as_ref()
                        .ok_or_else(|| Error::internal("count_distinct without a row converter"))?;
                    Value::Rows(conv.convert_columns(&[Arc::clone(v)])?, v.as_ref())
                }
                (Some(v), _) => match a.kind {
                    ValueKind::Float => Value::Float(v.as_primitive::<Float64Type>()),
                    _ => Value::Int(v.as_primitive::<Int64Type>()),
                },
            });
        }

        let mut late = vec![false; n];
        let mut any_late = false;
        let mut wins = Vec::new();
        for (row, is_late) in late.iter_mut().enumerate() {
            if ts.is_null(row) {
                continue;
            }
            let t = ts.value(row);
            self.assigner.windows(t, &mut wins);
            wins.retain(|(_, end)| end - 1 > self.watermark);
            if wins.is_empty() {
                *is_late = true;
                any_late = true;
                self.counters.late_records += 1;
                continue;
            }
            let key = key_rows.row(row);
            let key = key.as_ref();
            for &(start, end) in &wins {
                let start = if matches!(self.assigner, Assigner::Session { .. }) {
                    self.add_session(key, start, end)
                } else {
                    let fresh = self.new_accs();
                    let windows = self.state.entry(key.to_vec()).or_default();
                    if let std::collections::btree_map::Entry::Vacant(e) = windows.entry(start) {
                        e.insert(Window { end, accs: fresh });
                        self.timers.insert((end, start, key.to_vec()));
                    }
                    start
                };
                if let Some(w) = self.state.get_mut(key).and_then(|ws| ws.get_mut(&start)) {
                    for (acc, v) in w.accs.iter_mut().zip(&values) {
                        acc.update(v, row);
                    }
                }
            }
        }
        if any_late && self.side_output {
            let late_rows = filter_record_batch(&batch, &BooleanArray::from(late))?;
            out.side.push(late_rows);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire(watermark, out)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        encode_keyed(
            "window",
            self.max_parallelism,
            self.state.iter().map(|(k, w)| (k.as_slice(), w)),
        )
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        for (key, windows) in decode_keyed::<KeyWindows>("window", state)? {
            for (start, w) in &windows {
                self.timers.insert((w.end, *start, key.clone()));
            }
            self.state.insert(key, windows);
        }
        Ok(())
    }

    fn counters(&self) -> OperatorCounters {
        self.counters
    }
}
