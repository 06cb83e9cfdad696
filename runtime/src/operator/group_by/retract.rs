//! Accumulators that take rows back: a `GROUP BY` over a changelog adds the rows that add
//! (`+I`, `+U`) and removes the rows that retract (`-U`, `-D`). Counts and sums subtract; a
//! minimum or maximum keeps how many times each value is held, so removing the current
//! extreme reveals the next; a distinct count keeps how many rows hold each value. A group
//! also counts its rows, and is gone when that reaches zero. Their serde form is checkpoint
//! format.

use std::collections::BTreeMap;

use datafusion::arrow::array::Array;
use foldhash::{HashMap, HashMapExt};

use serde::{Deserialize, Serialize};
use weir_crds::AggregateFn;

use crate::operator::window::accumulators::{Outcome, Value};
use crate::operator::window::{Aggregate, ValueKind};

/// One group's accumulator for one aggregate, over rows that come and go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Retractable {
    /// `count(*)` or `count(e)`.
    Count(i64),
    /// Integer `sum`.
    SumI(i64),
    /// Float `sum`.
    SumF(f64),
    /// `avg`: sum and count.
    Avg(f64, i64),
    /// Integer `min` (`max: false`) or `max`: each value held, and by how many rows.
    ExtremeI { max: bool, held: BTreeMap<i64, i64> },
    /// Float `min` or `max`, values as order-preserving integers ([`float_key`]).
    ExtremeF { max: bool, held: BTreeMap<i64, i64> },
    /// `count_distinct`: each row-format value, and by how many rows.
    Distinct(#[serde(with = "crate::operator::byte_strings::counted")] HashMap<Vec<u8>, i64>),
    /// With the `disk` backend, a `min` or `max` whose values are held in the store
    /// ([`super::held`]): the current extreme, as [`ExtremeI`](Self::ExtremeI) or
    /// [`ExtremeF`](Self::ExtremeF) keys it.
    ExtremeOnDisk {
        max: bool,
        float: bool,
        current: Option<i64>,
    },
}

/// A float as an integer with the same order (`total_cmp`'s), so floats can key a map.
pub(super) fn float_key(x: f64) -> i64 {
    let b = x.to_bits().cast_signed();
    b ^ ((b >> 63).cast_unsigned() >> 1).cast_signed()
}

pub(super) fn float_of(k: i64) -> f64 {
    let b = k ^ ((k >> 63).cast_unsigned() >> 1).cast_signed();
    f64::from_bits(b.cast_unsigned())
}

/// Add `sign` (1 or -1) to a value's row count; whether it reached zero (drop the value).
fn step(count: &mut i64, sign: i64) -> bool {
    *count += sign;
    *count == 0
}

impl Retractable {
    /// The empty accumulator for `a`.
    #[must_use]
    pub fn new(a: &Aggregate) -> Self {
        let int = matches!(a.kind, ValueKind::Int { .. });
        match a.func {
            AggregateFn::Count => Self::Count(0),
            AggregateFn::CountDistinct => Self::Distinct(HashMap::new()),
            AggregateFn::Avg => Self::Avg(0.0, 0),
            AggregateFn::Sum if int => Self::SumI(0),
            AggregateFn::Sum => Self::SumF(0.0),
            AggregateFn::Min | AggregateFn::Max => {
                let max = a.func == AggregateFn::Max;
                let held = BTreeMap::new();
                if int {
                    Self::ExtremeI { max, held }
                } else {
                    Self::ExtremeF { max, held }
                }
            }
        }
    }

    /// Add (`sign` 1) or take back (`sign` -1) row `row` of `v`.
    pub fn update(&mut self, v: &Value<'_>, row: usize, sign: i64) {
        match (self, v) {
            (Self::Count(c), Value::Star) => *c += sign,
            (Self::Count(c), Value::Valid(valid)) => {
                *c += sign * i64::from(valid.is_valid(row));
            }
            (Self::Distinct(held), Value::Rows(rows, valid)) if valid.is_valid(row) => {
                let k = rows.row(row).as_ref().to_vec();
                let c = held.entry(k.clone()).or_insert(0);
                if step(c, sign) {
                    held.remove(&k);
                }
            }
            (acc, Value::Int(a)) if a.is_valid(row) => {
                let x = a.value(row);
                match acc {
                    Self::SumI(s) => *s = s.wrapping_add(sign.wrapping_mul(x)),
                    Self::Avg(s, c) => {
                        *s += sign as f64 * x as f64;
                        *c += sign;
                    }
                    Self::ExtremeI { held, .. } => {
                        let c = held.entry(x).or_insert(0);
                        if step(c, sign) {
                            held.remove(&x);
                        }
                    }
                    _ => {}
                }
            }
            (acc, Value::Float(a)) if a.is_valid(row) => {
                let x = a.value(row);
                match acc {
                    Self::SumF(s) => *s += sign as f64 * x,
                    Self::Avg(s, c) => {
                        *s += sign as f64 * x;
                        *c += sign;
                    }
                    Self::ExtremeF { held, .. } => {
                        let k = float_key(x);
                        let c = held.entry(k).or_insert(0);
                        if step(c, sign) {
                            held.remove(&k);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The result this accumulator gives now.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        let extreme = |max: bool, held: &BTreeMap<i64, i64>| {
            if max {
                held.keys().next_back().copied()
            } else {
                held.keys().next().copied()
            }
        };
        match self {
            Self::Count(c) | Self::SumI(c) => Outcome::Int(Some(*c)),
            Self::SumF(s) => Outcome::Float(Some(*s)),
            Self::Avg(s, c) => Outcome::Float((*c > 0).then(|| s / *c as f64)),
            Self::ExtremeI { max, held } => Outcome::Int(extreme(*max, held)),
            Self::ExtremeF { max, held } => Outcome::Float(extreme(*max, held).map(float_of)),
            Self::Distinct(held) => Outcome::Int(Some(held.len() as i64)),
            Self::ExtremeOnDisk {
                float: true,
                current,
                ..
            } => Outcome::Float(current.map(float_of)),
            Self::ExtremeOnDisk { current, .. } => Outcome::Int(*current),
        }
    }
}

/// A group over a changelog: its rows (it is gone at zero) and its accumulators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Rows added minus rows taken back.
    pub rows: i64,
    /// One per aggregate.
    pub accs: Vec<Retractable>,
}

/// Whether restored groups fit the job's aggregates (see the window's `check_restored`).
///
/// # Errors
/// What does not fit.
pub fn check_restored(aggregates: &[Aggregate], g: &Group) -> Result<(), String> {
    if g.accs.len() != aggregates.len()
        || aggregates.iter().zip(&g.accs).any(|(a, acc)| {
            std::mem::discriminant(&Retractable::new(a)) != std::mem::discriminant(acc)
        })
    {
        return Err(format!(
            "the checkpoint keeps {} accumulators per group of other kinds than the job's {} aggregates: aggregates were added, removed or changed since the checkpoint was taken",
            g.accs.len(),
            aggregates.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{float_key, float_of};

    #[test]
    fn float_keys_keep_the_order_of_floats_and_come_back() {
        let xs = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(float_key(w[0]) <= float_key(w[1]), "{w:?}");
        }
        for x in xs {
            assert_eq!(float_of(float_key(x)).to_bits(), x.to_bits());
        }
    }
}
