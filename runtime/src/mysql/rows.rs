//! Records into statements: multi-row `INSERT ... VALUES (?, ...), (?, ...)` with the values
//! as binary-protocol parameters (no escaping, no text parsing on the server), as many rows
//! per statement as `batchRows` and MySQL's 65 535 parameters allow.
//!
//! Upserts (`upsert` mode, or a changelog) are `INSERT ... ON DUPLICATE KEY UPDATE` and a
//! changelog's deletions a `DELETE ... WHERE (key) IN (...)`. Within one batch only the last
//! change of a key is written ([`changelog::last_per_key`]). `ON DUPLICATE KEY` fires on any
//! unique index of the table, so the key should be the table's only one.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Schema, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::temporal_conversions::as_datetime;
use mysql_async::Value;

use super::client::ident;
use super::table::Column;
use crate::changelog::{self, Kind};
use crate::error::{Error, Result};

/// MySQL's limit on a prepared statement's parameters.
const MAX_PARAMS: usize = 65_535;

/// One statement and its parameters, row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The statement.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<Value>,
}

/// The statements of one sink, built once from the records' schema and the table.
#[derive(Debug, Clone)]
pub struct Writer {
    changelog: bool,
    /// Records' key columns (indexes into the data columns); empty when the sink appends.
    key: Vec<usize>,
    /// `INSERT INTO t (a, b) VALUES`.
    insert: String,
    /// `(?, ?)`.
    row: String,
    /// ` ON DUPLICATE KEY UPDATE ...` when rows go by key.
    upsert: Option<String>,
    /// `DELETE FROM t WHERE (k) IN (`.
    delete: String,
    /// `(?)` of the key.
    key_row: String,
    batch_rows: usize,
}

impl Writer {
    /// Statements into `table` (already quoted) for records of `input` written to `targets`
    /// (the table's columns, in the records' order). `key` names the columns upserts and
    /// deletes go by; empty means append.
    ///
    /// # Errors
    /// A key column that the records do not carry.
    pub fn new(
        input: &Arc<Schema>,
        table: &str,
        targets: &[Column],
        key: &[String],
        batch_rows: u32,
    ) -> std::result::Result<Self, String> {
        let changelog = changelog::is_changelog(input);
        let key_idx = crate::sink::table::key_positions(targets, key)?;
        let names: Vec<String> = targets.iter().map(|c| ident(&c.name)).collect();
        let marks = |n: usize| format!("({})", vec!["?"; n].join(", "));
        let upsert = (!key_idx.is_empty()).then(|| {
            let sets: Vec<String> = (0..names.len())
                .filter(|i| !key_idx.contains(i))
                .map(|i| format!("{0} = VALUES({0})", names[i]))
                .collect();
            if sets.is_empty() {
                // Only key columns: a repeat changes nothing.
                format!(" ON DUPLICATE KEY UPDATE {0} = {0}", names[key_idx[0]])
            } else {
                format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
            }
        });
        let key_names: Vec<&str> = key_idx.iter().map(|&i| names[i].as_str()).collect();
        let width = targets.len().max(1);
        Ok(Self {
            changelog,
            insert: format!("INSERT INTO {table} ({}) VALUES ", names.join(", ")),
            row: marks(targets.len()),
            upsert,
            delete: format!("DELETE FROM {table} WHERE ({}) IN (", key_names.join(", ")),
            key_row: marks(key_idx.len()),
            key: key_idx,
            batch_rows: (batch_rows.max(1) as usize).min(MAX_PARAMS / width),
        })
    }

    /// Whether rows are written by key (upserts and deletes) rather than appended.
    #[must_use]
    pub fn by_key(&self) -> bool {
        self.upsert.is_some()
    }

    /// Whether the records are a changelog.
    #[must_use]
    pub fn is_changelog(&self) -> bool {
        self.changelog
    }

    /// The statements that write `batch`, in order.
    ///
    /// # Errors
    /// A column type with no MySQL value; a changelog row with an unknown change kind.
    pub fn writes(&self, batch: &RecordBatch) -> Result<Vec<Write>> {
        let width = changelog::data_width(batch.schema_ref());
        let values: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .take(width)
            .map(values)
            .collect::<Result<_>>()?;
        let rows = batch.num_rows();
        let Some(upsert) = &self.upsert else {
            let all: Vec<usize> = (0..rows).collect();
            return Ok(self.inserts(&values, &all, ""));
        };
        let kinds = if self.changelog {
            changelog::kinds(batch)?
        } else {
            vec![Kind::Insert; rows]
        };
        let (deletes, upserts) = changelog::last_per_key(&kinds, |r| {
            self.key
                .iter()
                .map(|&c| key_part(&values[c][r]))
                .collect::<Vec<_>>()
        });
        let mut out = Vec::new();
        for chunk in deletes.chunks(self.batch_rows) {
            let marks = vec![self.key_row.as_str(); chunk.len()].join(", ");
            out.push(Write {
                sql: format!("{}{marks})", self.delete),
                params: chunk
                    .iter()
                    .flat_map(|&r| self.key.iter().map(move |&c| (c, r)))
                    .map(|(c, r)| values[c][r].clone())
                    .collect(),
            });
        }
        out.extend(self.inserts(&values, &upserts, upsert));
        Ok(out)
    }

    fn inserts(&self, values: &[Vec<Value>], rows: &[usize], tail: &str) -> Vec<Write> {
        rows.chunks(self.batch_rows)
            .map(|chunk| Write {
                sql: format!(
                    "{}{}{tail}",
                    self.insert,
                    vec![self.row.as_str(); chunk.len()].join(", ")
                ),
                params: chunk
                    .iter()
                    .flat_map(|&r| values.iter().map(move |col| col[r].clone()))
                    .collect(),
            })
            .collect()
    }
}

/// A value as a hashable key part (`Value` holds floats, so it is not `Hash` itself).
fn key_part(v: &Value) -> Vec<u8> {
    match v {
        Value::NULL => vec![0],
        Value::Bytes(b) => [&[1][..], b].concat(),
        other => [&[2][..], format!("{other:?}").as_bytes()].concat(),
    }
}

/// A column's values as MySQL values: integers and floats as such, text as bytes, booleans as
/// 0/1, decimals as their text, timestamps as the UTC wall time (the session's time zone is
/// UTC, so a `TIMESTAMP` column stores the same instant) and dates as dates.
fn values(c: &ArrayRef) -> Result<Vec<Value>> {
    let n = c.len();
    let each = |f: &dyn Fn(usize) -> Value| -> Vec<Value> {
        (0..n)
            .map(|i| if c.is_null(i) { Value::NULL } else { f(i) })
            .collect()
    };
    macro_rules! ints {
        ($t:ty, $v:ident) => {{
            let a = c.as_primitive::<$t>();
            each(&|i| Value::$v(a.value(i).into()))
        }};
    }
    Ok(match c.data_type() {
        DataType::Int8 => ints!(Int8Type, Int),
        DataType::Int16 => ints!(Int16Type, Int),
        DataType::Int32 => ints!(Int32Type, Int),
        DataType::Int64 => ints!(Int64Type, Int),
        DataType::UInt8 => ints!(UInt8Type, UInt),
        DataType::UInt16 => ints!(UInt16Type, UInt),
        DataType::UInt32 => ints!(UInt32Type, UInt),
        DataType::UInt64 => ints!(UInt64Type, UInt),
        DataType::Float16 => {
            let a = c.as_primitive::<Float16Type>();
            each(&|i| Value::Double(a.value(i).to_f64()))
        }
        DataType::Float32 => ints!(Float32Type, Double),
        DataType::Float64 => ints!(Float64Type, Double),
        DataType::Boolean => {
            let a = c.as_boolean();
            each(&|i| Value::Int(i64::from(a.value(i))))
        }
        DataType::Timestamp(unit, _) => {
            let v = datafusion::arrow::compute::cast(c, &DataType::Int64)?;
            let v = v.as_primitive::<Int64Type>();
            let at = |x: i64| match unit {
                TimeUnit::Second => {
                    as_datetime::<datafusion::arrow::datatypes::TimestampSecondType>(x)
                }
                TimeUnit::Millisecond => {
                    as_datetime::<datafusion::arrow::datatypes::TimestampMillisecondType>(x)
                }
                TimeUnit::Microsecond => {
                    as_datetime::<datafusion::arrow::datatypes::TimestampMicrosecondType>(x)
                }
                TimeUnit::Nanosecond => {
                    as_datetime::<datafusion::arrow::datatypes::TimestampNanosecondType>(x)
                }
            };
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                if v.is_null(i) {
                    out.push(Value::NULL);
                    continue;
                }
                let t = at(v.value(i)).ok_or_else(|| {
                    Error::internal(format!("timestamp {} is out of range", v.value(i)))
                })?;
                out.push(datetime(t)?);
            }
            out
        }
        DataType::Date32 => {
            let a = c.as_primitive::<Date32Type>();
            dates(n, |i| {
                (!a.is_null(i)).then(|| as_datetime::<Date32Type>(a.value(i).into()))
            })?
        }
        DataType::Date64 => {
            let a = c.as_primitive::<Date64Type>();
            dates(n, |i| {
                (!a.is_null(i)).then(|| as_datetime::<Date64Type>(a.value(i)))
            })?
        }
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => {
            let s = datafusion::arrow::compute::cast(c, &DataType::Utf8)?;
            let s = s
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::internal("a cast to Utf8 gave no string array"))?;
            (0..n)
                .map(|i| {
                    if s.is_null(i) {
                        Value::NULL
                    } else {
                        Value::Bytes(s.value(i).as_bytes().to_vec())
                    }
                })
                .collect()
        }
        other => {
            return Err(Error::internal(format!(
                "no MySQL value for records of type {other}"
            )));
        }
    })
}

fn dates(
    n: usize,
    at: impl Fn(usize) -> Option<Option<chrono::NaiveDateTime>>,
) -> Result<Vec<Value>> {
    (0..n)
        .map(|i| match at(i) {
            None => Ok(Value::NULL),
            Some(Some(t)) => datetime(t),
            Some(None) => Err(Error::internal("a date out of range")),
        })
        .collect()
}

/// A date and time as MySQL's; a year it cannot hold (before 0 or after 9999) is an error
/// naming the value, never a silently different date.
fn datetime(t: chrono::NaiveDateTime) -> Result<Value> {
    use chrono::{Datelike, Timelike};
    let year = u16::try_from(t.year())
        .ok()
        .filter(|y| *y <= 9999)
        .ok_or_else(|| Error::Sink {
            sink: "mysql".into(),
            message: format!("a record's date {t}: MySQL holds years 0 to 9999 only"),
        })?;
    Ok(Value::Date(
        year,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond() / 1_000,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn col(name: &str, t: &str) -> Column {
        Column {
            name: name.into(),
            type_name: t.into(),
            not_null: false,
            has_default: false,
        }
    }

    #[test]
    fn appends_insert_every_row_and_upserts_keep_the_last_change_of_a_key() {
        let mut fields = vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("n", DataType::Int64, true),
        ];
        let targets = [
            col("k", "varchar(9)"),
            col("t", "datetime(3)"),
            col("n", "bigint"),
        ];
        let plain = Arc::new(Schema::new(fields.clone()));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(0),
                None,
                Some(86_401_500),
            ])),
            Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&plain), cols.clone()).unwrap();
        let w = Writer::new(&plain, "`t`", &targets, &[], 2).unwrap();
        let writes = w.writes(&batch).unwrap();
        assert_eq!(writes.len(), 2, "3 rows in statements of 2");
        assert_eq!(
            writes[0].sql,
            "INSERT INTO `t` (`k`, `t`, `n`) VALUES (?, ?, ?), (?, ?, ?)"
        );
        assert_eq!(
            writes[0].params,
            vec![
                Value::Bytes(b"a".to_vec()),
                Value::Date(1970, 1, 1, 0, 0, 0, 0),
                Value::Int(1),
                Value::Bytes(b"b".to_vec()),
                Value::NULL,
                Value::Int(2),
            ]
        );
        assert_eq!(
            writes[1].params[1],
            Value::Date(1970, 1, 2, 0, 0, 1, 500_000)
        );

        let w = Writer::new(&plain, "`t`", &targets, &["k".into()], 100).unwrap();
        let writes = w.writes(&batch).unwrap();
        assert_eq!(writes.len(), 1);
        assert!(
            writes[0]
                .sql
                .ends_with("ON DUPLICATE KEY UPDATE `t` = VALUES(`t`), `n` = VALUES(`n`)"),
            "{}",
            writes[0].sql
        );
        // `a` twice: its last row only, after `b`.
        assert_eq!(writes[0].params[0], Value::Bytes(b"b".to_vec()));
        assert_eq!(writes[0].params[3], Value::Bytes(b"a".to_vec()));
        assert_eq!(writes[0].params[5], Value::NULL);

        fields.push(changelog::field_with_deletes());
        let log = Arc::new(Schema::new(fields));
        let mut cols = cols;
        cols.push(changelog::column(&[
            Kind::Insert,
            Kind::Insert,
            Kind::Delete,
        ]));
        let batch = RecordBatch::try_new(Arc::clone(&log), cols).unwrap();
        let w = Writer::new(&log, "`t`", &targets, &["k".into()], 100).unwrap();
        assert!(w.is_changelog());
        let writes = w.writes(&batch).unwrap();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(writes[0].sql, "DELETE FROM `t` WHERE (`k`) IN ((?))");
        assert_eq!(writes[0].params, vec![Value::Bytes(b"a".to_vec())]);
        assert_eq!(writes[1].params[0], Value::Bytes(b"b".to_vec()));
        assert!(
            Writer::new(&log, "t", &targets, &["x".into()], 1)
                .unwrap_err()
                .contains("`x`")
        );
        // Wide rows: no statement passes 65 535 parameters.
        let wide: Vec<Column> = (0..1000).map(|i| col(&format!("c{i}"), "int")).collect();
        let w = Writer::new(&plain, "t", &wide, &[], 5_000).unwrap();
        assert_eq!(w.batch_rows, 65);
    }
}
