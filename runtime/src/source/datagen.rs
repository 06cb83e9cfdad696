//! The deterministic generator. Record `i` is a pure function of `(seed, i)`: the stream is the
//! same at any parallelism, across restarts, and in the test that computes the oracle.
//! Split `s` of `S` holds records `s, s+S, s+2S, …`.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringBuilder,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimestampMillisecondType};
use weir_crds::{DatagenSpec, FieldGenerator};

use super::{CountedSplits, Poll, SourceReader, SplitState};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::schema::parse_timestamp_millis;

/// SplitMix64: a tiny, well-mixed, stable hash of a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A field's generator with its parameters resolved.
#[derive(Debug, Clone)]
enum Gen {
    Sequence,
    Key {
        cardinality: u64,
        prefix: String,
    },
    UniformInt {
        min: i64,
        span: u64,
    },
    UniformFloat {
        min: f64,
        width: f64,
    },
    Bernoulli(f64),
    EventTime {
        start: Millis,
        step: Millis,
        disorder: Millis,
    },
}

/// A value of one generated field; the oracle in tests uses this same function.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// int64 or timestamp millis.
    Int(i64),
    /// float64.
    Float(f64),
    /// string.
    Str(String),
    /// boolean.
    Bool(bool),
}

/// The generator, independent of any subtask: what record `i` looks like.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    fields: Vec<Gen>,
    schema: SchemaRef,
    /// Records in all, if bounded.
    pub count: Option<u64>,
}

impl Generator {
    /// Resolve the spec against the (already validated) schema.
    ///
    /// # Errors
    /// A bad `start` timestamp, naming the field.
    pub fn new(spec: &DatagenSpec, schema: SchemaRef) -> Result<Self> {
        let mut fields = Vec::new();
        for f in schema.fields() {
            let g = spec
                .fields
                .get(f.name())
                .ok_or_else(|| Error::internal(format!("no generator for {}", f.name())))?;
            fields.push(match g {
                FieldGenerator::Sequence {} => Gen::Sequence,
                FieldGenerator::Key {
                    cardinality,
                    prefix,
                } => Gen::Key {
                    cardinality: (*cardinality).max(1),
                    prefix: prefix.clone(),
                },
                FieldGenerator::Uniform { min, max } if f.data_type() == &DataType::Int64 => {
                    Gen::UniformInt {
                        min: min.ceil() as i64,
                        span: (max.floor() - min.ceil()) as u64 + 1,
                    }
                }
                FieldGenerator::Uniform { min, max } => Gen::UniformFloat {
                    min: *min,
                    width: max - min,
                },
                FieldGenerator::Bernoulli { p } => Gen::Bernoulli(*p),
                FieldGenerator::EventTime {
                    start,
                    step,
                    disorder,
                } => Gen::EventTime {
                    start: parse_timestamp_millis(start).map_err(|m| Error::Source {
                        source_name: format!("datagen field {}", f.name()),
                        message: m,
                    })?,
                    step: step.as_millis_i64(),
                    disorder: disorder.as_millis_i64(),
                },
            });
        }
        Ok(Self {
            seed: spec.seed,
            fields,
            schema,
            count: spec.count,
        })
    }

    /// Value of field `f` in record `i`.
    #[must_use]
    pub fn value(&self, f: usize, i: u64) -> Value {
        let r = mix(self.seed ^ mix((f as u64) << 48 ^ i));
        match &self.fields[f] {
            Gen::Sequence => Value::Int(i as i64),
            Gen::Key {
                cardinality,
                prefix,
            } => Value::Str(format!("{prefix}{}", r % cardinality)),
            Gen::UniformInt { min, span } => Value::Int(min.wrapping_add((r % span) as i64)),
            Gen::UniformFloat { min, width } => {
                Value::Float(min + width * ((r >> 11) as f64 / (1u64 << 53) as f64))
            }
            Gen::Bernoulli(p) => Value::Bool(((r >> 11) as f64 / (1u64 << 53) as f64) < *p),
            Gen::EventTime {
                start,
                step,
                disorder,
            } => {
                let lag = if *disorder > 0 {
                    (r % *disorder as u64) as i64
                } else {
                    0
                };
                Value::Int(start + (i as i64) * step - lag)
            }
        }
    }

    /// Index of the event-time field, if generated.
    fn time_field(&self) -> Option<usize> {
        self.fields
            .iter()
            .position(|g| matches!(g, Gen::EventTime { .. }))
    }

    /// Build the batch of records `ids`, a column at a time: one loop per field with its
    /// generator resolved outside the loop. Equal, value for value, to [`Generator::value`]
    /// (a test checks it); this is the hot path of every benchmark.
    ///
    /// # Errors
    /// Arrow's error if the schema and generators disagree (a bug).
    pub fn batch(&self, ids: &[u64]) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = (0..self.fields.len())
            .map(|f| self.column(f, ids))
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    fn column(&self, f: usize, ids: &[u64]) -> ArrayRef {
        let salt = (f as u64) << 48;
        let r = |i: u64| mix(self.seed ^ mix(salt ^ i));
        let unit = |i: u64| (r(i) >> 11) as f64 / (1u64 << 53) as f64;
        let data_type = self.schema.field(f).data_type();
        let ints = |v: Vec<i64>| -> ArrayRef {
            match data_type {
                DataType::Timestamp(..) => Arc::new(TimestampMillisecondArray::from(v)),
                _ => Arc::new(Int64Array::from(v)),
            }
        };
        match (&self.fields[f], data_type) {
            (g, DataType::Utf8) => {
                use std::fmt::Write as _;
                let mut b = StringBuilder::with_capacity(ids.len(), ids.len() * 8);
                for &i in ids {
                    match g {
                        // Written into the builder's buffer: no string per record.
                        Gen::Key {
                            cardinality,
                            prefix,
                        } => {
                            let _ = write!(b, "{prefix}{}", r(i) % cardinality);
                            b.append_value("");
                        }
                        _ => match self.value(f, i) {
                            Value::Str(s) => b.append_value(s),
                            _ => b.append_value(""),
                        },
                    }
                }
                Arc::new(b.finish())
            }
            (g, DataType::Float64) => Arc::new(Float64Array::from_iter_values(ids.iter().map(
                |&i| match g {
                    Gen::UniformFloat { min, width } => min + width * unit(i),
                    _ => match self.value(f, i) {
                        Value::Float(x) => x,
                        _ => 0.0,
                    },
                },
            ))),
            (_, DataType::Boolean) => Arc::new(BooleanArray::from(
                ids.iter()
                    .map(|&i| matches!(self.value(f, i), Value::Bool(true)))
                    .collect::<Vec<_>>(),
            )),
            (Gen::Sequence, _) => ints(ids.iter().map(|&i| i as i64).collect()),
            (Gen::UniformInt { min, span }, _) => ints(
                ids.iter()
                    .map(|&i| min.wrapping_add((r(i) % span) as i64))
                    .collect(),
            ),
            (
                Gen::EventTime {
                    start,
                    step,
                    disorder,
                },
                _,
            ) => ints(
                ids.iter()
                    .map(|&i| {
                        let lag = if *disorder > 0 {
                            (r(i) % *disorder as u64) as i64
                        } else {
                            0
                        };
                        start + (i as i64) * step - lag
                    })
                    .collect(),
            ),
            _ => ints(
                ids.iter()
                    .map(|&i| match self.value(f, i) {
                        Value::Int(x) => x,
                        _ => 0,
                    })
                    .collect(),
            ),
        }
    }
}

/// The latest event time in a generated time column (a timestamp, or an int64 of millis).
fn max_time(col: &ArrayRef) -> Option<Millis> {
    use datafusion::arrow::compute::max;
    match col.as_primitive_opt::<TimestampMillisecondType>() {
        Some(t) => max(t),
        None => col.as_primitive_opt::<Int64Type>().and_then(max),
    }
}

/// A subtask's share of the generator.
#[derive(Debug)]
pub struct DatagenReader {
    generator: Generator,
    splits: CountedSplits,
}

impl DatagenReader {
    /// Reader over `splits` (positions restored or fresh).
    #[must_use]
    pub fn new(
        generator: Generator,
        total_splits: u32,
        batch_size: u32,
        splits: Vec<SplitState>,
    ) -> Self {
        Self {
            generator,
            splits: CountedSplits::new(total_splits, batch_size, splits),
        }
    }
}

impl SourceReader for DatagenReader {
    fn poll(&mut self) -> Result<Poll> {
        let Some((s, ids)) = self.splits.next_batch(self.generator.count) else {
            return Ok(Poll::Finished);
        };
        let batch = self.generator.batch(&ids)?;
        if let Some(max) = self
            .generator
            .time_field()
            .and_then(|tf| max_time(batch.column(tf)))
        {
            s.max_event_time = s.max_event_time.max(max);
        }
        Ok(Poll::Batch {
            data: batch,
            side: None,
        })
    }

    fn snapshot(&self) -> Vec<SplitState> {
        self.splits.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(splits: Vec<SplitState>) -> DatagenReader {
        // As job files read it: serde_yaml alone takes enums only as YAML tags (`!sequence`),
        // not as the one-key maps users write.
        let spec: DatagenSpec = serde_yaml::with::singleton_map_recursive::deserialize(
            serde_yaml::Deserializer::from_str(
                "count: 60\nbatchSize: 5\nsplits: 6\nfields: {id: {sequence: {}}}\n",
            ),
        )
        .expect("spec");
        let schema = crate::schema::source_schema(&[weir_crds::FieldSpec {
            name: "id".into(),
            data_type: weir_crds::FieldType::Int64,
            nullable: false,
        }]);
        DatagenReader::new(
            Generator::new(&spec, schema).expect("generator"),
            6,
            5,
            splits,
        )
    }

    fn drain(mut r: DatagenReader) -> Vec<i64> {
        let mut ids = Vec::new();
        while let Poll::Batch { data, .. } = r.poll().expect("poll") {
            let col = data
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64");
            ids.extend(col.values().iter().copied());
        }
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_generated_batch_holds_what_value_says_for_every_generator() {
        let spec: DatagenSpec = serde_yaml::with::singleton_map_recursive::deserialize(
            serde_yaml::Deserializer::from_str(
                "seed: 7\nfields:\n  id: {sequence: {}}\n  k: {key: {cardinality: 50, prefix: s-}}\n  n: {uniform: {min: -5, max: 9}}\n  x: {uniform: {min: -1.5, max: 2.5}}\n  b: {bernoulli: {p: 0.3}}\n  ts: {eventTime: {step: 2ms, disorder: 40ms}}\n",
            ),
        )
        .expect("spec");
        let field = |name: &str, data_type| weir_crds::FieldSpec {
            name: name.into(),
            data_type,
            nullable: false,
        };
        use weir_crds::FieldType as T;
        let schema = crate::schema::source_schema(&[
            field("id", T::Int64),
            field("k", T::String),
            field("n", T::Int64),
            field("x", T::Float64),
            field("b", T::Boolean),
            field("ts", T::Timestamp),
        ]);
        let g = Generator::new(&spec, schema).expect("generator");
        let ids: Vec<u64> = (0..300).map(|i| i * 7 + 3).collect();
        let batch = g.batch(&ids).expect("batch");
        for (f, col) in batch.columns().iter().enumerate() {
            for (row, &i) in ids.iter().enumerate() {
                let got = match g.value(f, i) {
                    Value::Str(_) => Value::Str(col.as_string::<i32>().value(row).to_string()),
                    Value::Float(_) => Value::Float(
                        col.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                            .value(row),
                    ),
                    Value::Bool(_) => Value::Bool(col.as_boolean().value(row)),
                    Value::Int(_) => Value::Int(match col.as_primitive_opt::<Int64Type>() {
                        Some(a) => a.value(row),
                        None => col.as_primitive::<TimestampMillisecondType>().value(row),
                    }),
                };
                assert_eq!(got, g.value(f, i), "field {f}, record {i}");
            }
        }
    }

    #[test]
    fn every_record_of_owned_splits_is_emitted_even_when_splits_finish_unevenly() {
        // Split 0 is ahead of split 3 by one batch, as after a restore at another parallelism.
        let mut a = SplitState::new(0);
        a.offset = 5;
        let mut b = SplitState::new(3);
        b.offset = 0;
        let ids = drain(reader(vec![a, b]));
        let expected: Vec<i64> = (0..60)
            .filter(|i| (i % 6 == 0 && *i >= 30) || i % 6 == 3)
            .collect();
        assert_eq!(ids, expected);
    }
}
