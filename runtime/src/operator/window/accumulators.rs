//! Aggregate state. [`Acc`] is one group's accumulator: what session windows keep per key and
//! what checkpoints store. [`Column`] holds one aggregate for every group of a window in a
//! plain vector, updated a batch at a time by a loop per aggregate, which is what lets the
//! tumbling and sliding path run at memory speed.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use serde::{Deserialize, Serialize};
use weir_crds::AggregateFn;

use super::distinct::DistinctSet;
use super::{Aggregate, ValueKind};
use crate::error::{Error, Result};

/// One group's accumulator for one aggregate. Its serde form is checkpoint format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    /// `count`.
    Count(i64),
    /// Integer `sum`.
    SumI(i64),
    /// Float `sum`.
    SumF(f64),
    /// Integer `min`.
    MinI(Option<i64>),
    /// Integer `max`.
    MaxI(Option<i64>),
    /// Float `min`.
    MinF(Option<f64>),
    /// Float `max`.
    MaxF(Option<f64>),
    /// `avg`: sum and count.
    Avg(f64, i64),
    /// `count_distinct`: the row-format values seen.
    Distinct(DistinctSet),
}

/// Whether restored accumulators fit the job's aggregates: as many, and each of the kind its
/// aggregate keeps. A job edited between checkpoint and restore (an aggregate added, removed,
/// reordered or now over a float column) would otherwise restore some accumulators into the
/// wrong aggregate and drop the rest without a word.
///
/// # Errors
/// What does not fit, naming the aggregate by position and function.
pub fn check_restored(aggregates: &[Aggregate], accs: &[Acc]) -> Result<(), String> {
    if accs.len() != aggregates.len() {
        return Err(format!(
            "the checkpoint keeps {} accumulators per window and key, the job has {} aggregates: \
             aggregates were added or removed since the checkpoint was taken",
            accs.len(),
            aggregates.len()
        ));
    }
    for (i, (a, acc)) in aggregates.iter().zip(accs).enumerate() {
        let want = Acc::new(a);
        if std::mem::discriminant(&want) != std::mem::discriminant(acc) {
            return Err(format!(
                "aggregate {} ({:?}) needs {} state, the checkpoint holds {} state there: \
                 aggregates were reordered or changed since the checkpoint was taken",
                i + 1,
                a.func,
                want.kind(),
                acc.kind()
            ));
        }
    }
    Ok(())
}

impl Acc {
    /// What kind of accumulator this is, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Self::Count(_) => "count",
            Self::SumI(_) => "integer sum",
            Self::SumF(_) => "float sum",
            Self::MinI(_) => "integer min",
            Self::MaxI(_) => "integer max",
            Self::MinF(_) => "float min",
            Self::MaxF(_) => "float max",
            Self::Avg(..) => "avg",
            Self::Distinct(_) => "count distinct",
        }
    }

    /// The empty accumulator for `a`.
    pub fn new(a: &Aggregate) -> Self {
        let int = matches!(a.kind, ValueKind::Int { .. });
        match a.func {
            AggregateFn::Count => Self::Count(0),
            AggregateFn::CountDistinct => Self::Distinct(DistinctSet::default()),
            AggregateFn::Avg => Self::Avg(0.0, 0),
            AggregateFn::Sum if int => Self::SumI(0),
            AggregateFn::Sum => Self::SumF(0.0),
            AggregateFn::Min if int => Self::MinI(None),
            AggregateFn::Min => Self::MinF(None),
            AggregateFn::Max if int => Self::MaxI(None),
            AggregateFn::Max => Self::MaxF(None),
        }
    }

    /// Add row `row` of `v`.
    pub fn update(&mut self, v: &Value<'_>, row: usize) {
        match (self, v) {
            (Self::Count(c), Value::Star) => *c += 1,
            (Self::Count(c), Value::Valid(valid)) => *c += i64::from(valid.is_valid(row)),
            (Self::Distinct(set), Value::Rows(conv_rows, valid)) if valid.is_valid(row) => {
                set.insert(conv_rows.row(row).as_ref());
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
    pub fn merge(&mut self, other: Self) {
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

/// An aggregate's argument over one batch, evaluated once.
pub enum Value<'a> {
    /// `count(*)`.
    Star,
    /// `count(e)`: only validity matters.
    Valid(&'a dyn Array),
    /// `count_distinct(e)`: row-format values, and validity.
    Rows(datafusion::arrow::row::Rows, &'a dyn Array),
    /// Integer argument.
    Int(&'a Int64Array),
    /// Float argument.
    Float(&'a Float64Array),
}

/// What an accumulator gives as its aggregate's result: a group's value, without the state
/// behind it (a count of distinct values, not the values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// An integer (or timestamp) result.
    Int(Option<i64>),
    /// A float result.
    Float(Option<f64>),
}

impl Acc {
    /// The result this accumulator gives now.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Count(c) | Self::SumI(c) => Outcome::Int(Some(*c)),
            Self::MinI(m) | Self::MaxI(m) => Outcome::Int(*m),
            Self::Distinct(s) => Outcome::Int(Some(s.len() as i64)),
            Self::SumF(s) => Outcome::Float(Some(*s)),
            Self::MinF(m) | Self::MaxF(m) => Outcome::Float(*m),
            Self::Avg(s, c) => Outcome::Float((*c > 0).then(|| s / *c as f64)),
        }
    }
}

/// Build the result column of `a` from accumulators.
pub fn finish<'a>(a: &Aggregate, accs: impl Iterator<Item = &'a Acc>) -> ArrayRef {
    finish_outcomes(a, accs.map(Acc::outcome))
}

/// Build the result column of `a` from results.
pub fn finish_outcomes(a: &Aggregate, outcomes: impl Iterator<Item = Outcome>) -> ArrayRef {
    let int = |o: Outcome| match o {
        Outcome::Int(v) => v,
        Outcome::Float(_) => None,
    };
    match a.output_type() {
        DataType::Int64 => Arc::new(outcomes.map(int).collect::<Int64Array>()),
        DataType::Timestamp(..) => {
            Arc::new(outcomes.map(int).collect::<TimestampMillisecondArray>())
        }
        _ => Arc::new(
            outcomes
                .map(|o| match o {
                    Outcome::Float(v) => v,
                    Outcome::Int(_) => None,
                })
                .collect::<Float64Array>(),
        ),
    }
}

/// How a set of aggregates reads its arguments from a batch: evaluated once per batch, cast
/// to what each accumulator reads, and row-encoded for `count_distinct`.
pub struct Arguments {
    distinct_converters: Vec<Option<RowConverter>>,
}

impl Arguments {
    /// Readers for `aggregates`.
    ///
    /// # Errors
    /// Arrow's error when a `count_distinct` argument type cannot be row-encoded.
    pub fn new(aggregates: &[Aggregate]) -> Result<Self> {
        let distinct_converters = aggregates
            .iter()
            .map(|a| match (a.func, &a.arg) {
                (AggregateFn::CountDistinct, Some(arg)) => {
                    RowConverter::new(vec![SortField::new(arg.data_type.clone())]).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            distinct_converters,
        })
    }

    /// Every aggregate's argument over `batch`, evaluated once and cast to what its
    /// accumulator reads.
    ///
    /// # Errors
    /// Expression evaluation and cast errors.
    pub fn eval(
        &self,
        aggregates: &[Aggregate],
        batch: &RecordBatch,
    ) -> Result<Vec<Option<ArrayRef>>> {
        let mut arrays = Vec::with_capacity(aggregates.len());
        for a in aggregates {
            let Some(arg) = &a.arg else {
                arrays.push(None);
                continue;
            };
            let v = arg.eval(batch)?;
            arrays.push(Some(match (a.func, a.kind) {
                (AggregateFn::Count | AggregateFn::CountDistinct, _) | (_, ValueKind::Any) => v,
                (_, ValueKind::Int { .. }) => cast(&v, &DataType::Int64)?,
                (_, ValueKind::Float) => cast(&v, &DataType::Float64)?,
            }));
        }
        Ok(arrays)
    }

    /// Typed views of [`Arguments::eval`]'s arrays.
    ///
    /// # Errors
    /// Row encoding errors.
    pub fn values<'a>(
        &self,
        aggregates: &[Aggregate],
        arrays: &'a [Option<ArrayRef>],
    ) -> Result<Vec<Value<'a>>> {
        let mut values = Vec::with_capacity(arrays.len());
        for (i, a) in aggregates.iter().enumerate() {
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
        Ok(values)
    }
}

/// One aggregate for every group of a window, indexed by group.
#[derive(Debug, Clone)]
pub enum Column {
    /// Counts.
    Count(Vec<i64>),
    /// Integer sums.
    SumI(Vec<i64>),
    /// Float sums.
    SumF(Vec<f64>),
    /// Integer minima.
    MinI(Vec<Option<i64>>),
    /// Integer maxima.
    MaxI(Vec<Option<i64>>),
    /// Float minima.
    MinF(Vec<Option<f64>>),
    /// Float maxima.
    MaxF(Vec<Option<f64>>),
    /// Sums and counts.
    Avg(Vec<(f64, i64)>),
    /// Distinct values.
    Distinct(Vec<DistinctSet>),
}

/// `f(slot, row)` for each row and its group, the per-aggregate inner loop. Rows where
/// `valid` is null are skipped; without nulls the check is not made at all.
#[inline]
fn each<T>(
    col: &mut [T],
    rows: &[u32],
    groups: &[u32],
    valid: &dyn Array,
    mut f: impl FnMut(&mut T, usize),
) {
    let pairs = rows.iter().zip(groups);
    if valid.null_count() == 0 {
        for (&r, &g) in pairs {
            f(&mut col[g as usize], r as usize);
        }
    } else {
        for (&r, &g) in pairs {
            if valid.is_valid(r as usize) {
                f(&mut col[g as usize], r as usize);
            }
        }
    }
}

impl Column {
    /// An empty column for `a`.
    pub fn new(a: &Aggregate) -> Self {
        match Acc::new(a) {
            Acc::Count(_) => Self::Count(Vec::new()),
            Acc::SumI(_) => Self::SumI(Vec::new()),
            Acc::SumF(_) => Self::SumF(Vec::new()),
            Acc::MinI(_) => Self::MinI(Vec::new()),
            Acc::MaxI(_) => Self::MaxI(Vec::new()),
            Acc::MinF(_) => Self::MinF(Vec::new()),
            Acc::MaxF(_) => Self::MaxF(Vec::new()),
            Acc::Avg(..) => Self::Avg(Vec::new()),
            Acc::Distinct(_) => Self::Distinct(Vec::new()),
        }
    }

    /// Grow to `groups` groups, new ones empty.
    pub fn resize(&mut self, groups: usize) {
        match self {
            Self::Count(v) | Self::SumI(v) => v.resize(groups, 0),
            Self::SumF(v) => v.resize(groups, 0.0),
            Self::MinI(v) | Self::MaxI(v) => v.resize(groups, None),
            Self::MinF(v) | Self::MaxF(v) => v.resize(groups, None),
            Self::Avg(v) => v.resize(groups, (0.0, 0)),
            Self::Distinct(v) => v.resize_with(groups, DistinctSet::default),
        }
    }

    /// Add `rows` of `v`, row `rows[i]` to group `groups[i]`. The column is already sized.
    pub fn update(&mut self, v: &Value<'_>, rows: &[u32], groups: &[u32]) {
        match (self, v) {
            (Self::Count(c), Value::Star) => {
                for &g in groups {
                    c[g as usize] += 1;
                }
            }
            (Self::Count(c), Value::Valid(a)) => each(c, rows, groups, *a, |c, _| *c += 1),
            (Self::Distinct(sets), Value::Rows(conv, a)) => each(sets, rows, groups, *a, |s, r| {
                s.insert(conv.row(r).as_ref());
            }),
            (Self::SumI(s), Value::Int(a)) => each(s, rows, groups, *a, |s, r| {
                *s = s.wrapping_add(a.value(r));
            }),
            (Self::MinI(m), Value::Int(a)) => each(m, rows, groups, *a, |m, r| {
                let x = a.value(r);
                *m = Some(m.map_or(x, |m| m.min(x)));
            }),
            (Self::MaxI(m), Value::Int(a)) => each(m, rows, groups, *a, |m, r| {
                let x = a.value(r);
                *m = Some(m.map_or(x, |m| m.max(x)));
            }),
            (Self::Avg(v), Value::Int(a)) => each(v, rows, groups, *a, |(s, c), r| {
                *s += a.value(r) as f64;
                *c += 1;
            }),
            (Self::SumF(s), Value::Float(a)) => {
                each(s, rows, groups, *a, |s, r| *s += a.value(r));
            }
            (Self::MinF(m), Value::Float(a)) => each(m, rows, groups, *a, |m, r| {
                let x = a.value(r);
                *m = Some(m.map_or(x, |m| m.min(x)));
            }),
            (Self::MaxF(m), Value::Float(a)) => each(m, rows, groups, *a, |m, r| {
                let x = a.value(r);
                *m = Some(m.map_or(x, |m| m.max(x)));
            }),
            (Self::Avg(v), Value::Float(a)) => each(v, rows, groups, *a, |(s, c), r| {
                *s += a.value(r);
                *c += 1;
            }),
            _ => {}
        }
    }

    /// An empty column of the same aggregate.
    pub fn empty_like(&self) -> Self {
        match self {
            Self::Count(_) => Self::Count(Vec::new()),
            Self::SumI(_) => Self::SumI(Vec::new()),
            Self::SumF(_) => Self::SumF(Vec::new()),
            Self::MinI(_) => Self::MinI(Vec::new()),
            Self::MaxI(_) => Self::MaxI(Vec::new()),
            Self::MinF(_) => Self::MinF(Vec::new()),
            Self::MaxF(_) => Self::MaxF(Vec::new()),
            Self::Avg(_) => Self::Avg(Vec::new()),
            Self::Distinct(_) => Self::Distinct(Vec::new()),
        }
    }

    /// Append `from`'s group `g` (a column of the same aggregate). A loop of these is a
    /// gather: its loads are independent, so the CPU overlaps their cache misses.
    pub fn push_from(&mut self, from: &Self, g: usize) {
        match (self, from) {
            (Self::Count(v), Self::Count(f)) | (Self::SumI(v), Self::SumI(f)) => v.push(f[g]),
            (Self::SumF(v), Self::SumF(f)) => v.push(f[g]),
            (Self::MinI(v), Self::MinI(f)) | (Self::MaxI(v), Self::MaxI(f)) => v.push(f[g]),
            (Self::MinF(v), Self::MinF(f)) | (Self::MaxF(v), Self::MaxF(f)) => v.push(f[g]),
            (Self::Avg(v), Self::Avg(f)) => v.push(f[g]),
            (Self::Distinct(v), Self::Distinct(f)) => v.push(f[g].clone()),
            _ => {}
        }
    }

    /// Group `g`'s accumulator, as checkpoints store it.
    pub fn get(&self, g: usize) -> Acc {
        match self {
            Self::Count(v) => Acc::Count(v[g]),
            Self::SumI(v) => Acc::SumI(v[g]),
            Self::SumF(v) => Acc::SumF(v[g]),
            Self::MinI(v) => Acc::MinI(v[g]),
            Self::MaxI(v) => Acc::MaxI(v[g]),
            Self::MinF(v) => Acc::MinF(v[g]),
            Self::MaxF(v) => Acc::MaxF(v[g]),
            Self::Avg(v) => Acc::Avg(v[g].0, v[g].1),
            Self::Distinct(v) => Acc::Distinct(v[g].clone()),
        }
    }

    /// Set group `g` from a restored accumulator, already checked by [`check_restored`].
    pub fn set(&mut self, g: usize, acc: Acc) {
        match (self, acc) {
            (Self::Count(v), Acc::Count(x)) | (Self::SumI(v), Acc::SumI(x)) => v[g] = x,
            (Self::SumF(v), Acc::SumF(x)) => v[g] = x,
            (Self::MinI(v), Acc::MinI(x)) | (Self::MaxI(v), Acc::MaxI(x)) => v[g] = x,
            (Self::MinF(v), Acc::MinF(x)) | (Self::MaxF(v), Acc::MaxF(x)) => v[g] = x,
            (Self::Avg(v), Acc::Avg(s, c)) => v[g] = (s, c),
            (Self::Distinct(v), Acc::Distinct(x)) => v[g] = x,
            _ => {}
        }
    }

    /// The result column for groups `order`, of `a`'s output type (the same values the
    /// per-key [`finish`] gives).
    pub fn finish(&self, a: &Aggregate, order: &[u32]) -> ArrayRef {
        let n = order.len();
        let at = |g: &u32| *g as usize;
        match (a.output_type(), self) {
            (DataType::Int64, Self::Count(v) | Self::SumI(v)) => {
                Arc::new(Int64Array::from_iter_values(order.iter().map(|g| v[at(g)])))
            }
            (DataType::Int64, Self::Distinct(v)) => Arc::new(Int64Array::from_iter_values(
                order.iter().map(|g| v[at(g)].len() as i64),
            )),
            (DataType::Int64, Self::MinI(v) | Self::MaxI(v)) => {
                Arc::new(order.iter().map(|g| v[at(g)]).collect::<Int64Array>())
            }
            (DataType::Int64, _) => Arc::new(Int64Array::new_null(n)),
            (DataType::Timestamp(..), Self::MinI(v) | Self::MaxI(v)) => Arc::new(
                order
                    .iter()
                    .map(|g| v[at(g)])
                    .collect::<TimestampMillisecondArray>(),
            ),
            (DataType::Timestamp(..), _) => Arc::new(TimestampMillisecondArray::new_null(n)),
            (_, Self::SumF(v)) => Arc::new(Float64Array::from_iter_values(
                order.iter().map(|g| v[at(g)]),
            )),
            (_, Self::MinF(v) | Self::MaxF(v)) => {
                Arc::new(order.iter().map(|g| v[at(g)]).collect::<Float64Array>())
            }
            (_, Self::Avg(v)) => Arc::new(
                order
                    .iter()
                    .map(|g| {
                        let (s, c) = v[at(g)];
                        (c > 0).then(|| s / c as f64)
                    })
                    .collect::<Float64Array>(),
            ),
            _ => Arc::new(Float64Array::new_null(n)),
        }
    }
}
