//! Records into statements. Every column travels as a text array parameter that the server
//! unnests and casts to the column's type (`unnest($1::text[], ...)`), so one statement
//! writes a whole batch, any column type the server can parse is written without a client-side
//! encoder, and the same statements run inside a prepared transaction (where a temporary
//! staging table, as COPY-then-merge needs, is not allowed).
//!
//! Appends are plain `INSERT`s. Upserts (`upsert` mode, or a changelog) go by the key:
//! `INSERT ... ON CONFLICT (key) DO UPDATE`, and a changelog's deletions are a `DELETE` by
//! key. Within one batch only the last change of a key is written (a statement may not touch
//! a row twice), which is the same final table.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};

use super::client::ident;
use super::table::Column;
use crate::changelog::{self, Kind};
use crate::error::{Error, Result};

/// One statement to run with its parameters: a text array per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write<'a> {
    /// The statement.
    pub sql: &'a str,
    /// Its parameters, `$1..$n`.
    pub params: Vec<Vec<Option<String>>>,
}

/// The statements of one sink, built once from the records' schema and the table.
#[derive(Debug, Clone)]
pub struct Writer {
    changelog: bool,
    /// Records' key columns (indexes into the data columns); empty when the sink appends.
    key: Vec<usize>,
    insert: String,
    upsert: Option<String>,
    delete: Option<String>,
    batch_rows: usize,
}

impl Writer {
    /// Statements into `table` (already quoted, `"schema"."table"`) for records of `input`
    /// written to `targets` (the table's columns, in the records' order). `key` names the
    /// columns upserts and deletes go by; empty means append.
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
        let unnest = |cols: &[usize]| {
            let params = (1..=cols.len())
                .map(|i| format!("${i}::text[]"))
                .collect::<Vec<_>>()
                .join(", ");
            let casts = cols
                .iter()
                .map(|&i| format!("u.{}::{}", names[i], targets[i].type_name))
                .collect::<Vec<_>>()
                .join(", ");
            let aliases = cols
                .iter()
                .map(|&i| names[i].clone())
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT {casts} FROM unnest({params}) AS u({aliases})")
        };
        let all: Vec<usize> = (0..targets.len()).collect();
        let list = names.join(", ");
        let insert = format!("INSERT INTO {table} ({list}) {}", unnest(&all));
        let (upsert, delete) = if key_idx.is_empty() {
            (None, None)
        } else {
            let keys = key_idx
                .iter()
                .map(|&i| names[i].clone())
                .collect::<Vec<_>>()
                .join(", ");
            let sets: Vec<String> = all
                .iter()
                .filter(|i| !key_idx.contains(i))
                .map(|&i| format!("{0} = EXCLUDED.{0}", names[i]))
                .collect();
            let action = if sets.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", sets.join(", "))
            };
            (
                Some(format!("{insert} ON CONFLICT ({keys}) {action}")),
                Some(format!(
                    "DELETE FROM {table} WHERE ({keys}) IN ({})",
                    unnest(&key_idx)
                )),
            )
        };
        Ok(Self {
            changelog,
            key: key_idx,
            insert,
            upsert,
            delete,
            batch_rows: batch_rows.max(1) as usize,
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

    /// The statements that write `batch`, in order, each of at most `batchRows` rows.
    ///
    /// # Errors
    /// A column Arrow cannot cast to text; a changelog row with an unknown change kind.
    pub fn writes(&self, batch: &RecordBatch) -> Result<Vec<Write<'_>>> {
        let width = changelog::data_width(batch.schema_ref());
        let mut text: Vec<Vec<Option<String>>> = Vec::with_capacity(width);
        for c in batch.columns().iter().take(width) {
            text.push(as_text(c)?);
        }
        let rows = batch.num_rows();
        let Some(upsert) = &self.upsert else {
            return Ok(self.chunks(&self.insert, &text, &(0..rows).collect::<Vec<_>>(), None));
        };
        let kinds = if self.changelog {
            changelog::kinds(batch)?
        } else {
            vec![Kind::Insert; rows]
        };
        let (deletes, upserts) = changelog::last_per_key(&kinds, |r| {
            self.key
                .iter()
                .map(|&c| text[c][r].as_deref())
                .collect::<Vec<_>>()
        });
        let mut out = Vec::new();
        if let Some(delete) = &self.delete {
            out.extend(self.chunks(delete, &text, &deletes, Some(&self.key)));
        }
        out.extend(self.chunks(upsert, &text, &upserts, None));
        Ok(out)
    }

    fn chunks<'a>(
        &self,
        sql: &'a str,
        text: &[Vec<Option<String>>],
        rows: &[usize],
        cols: Option<&[usize]>,
    ) -> Vec<Write<'a>> {
        let all: Vec<usize> = (0..text.len()).collect();
        let cols = cols.unwrap_or(&all);
        rows.chunks(self.batch_rows)
            .map(|chunk| Write {
                sql,
                params: cols
                    .iter()
                    .map(|&c| chunk.iter().map(|&r| text[c][r].clone()).collect())
                    .collect(),
            })
            .collect()
    }
}

/// A column's values as the server parses them: timestamps in RFC 3339 with `Z` (a
/// `timestamp` column takes the UTC wall time, a `timestamptz` the instant).
fn as_text(c: &datafusion::arrow::array::ArrayRef) -> Result<Vec<Option<String>>> {
    let c = crate::sink::zoned(c)?;
    let s = datafusion::arrow::compute::cast(&c, &DataType::Utf8)?;
    let s = s
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::internal("a cast to Utf8 gave no string array"))?;
    Ok((0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, TimeUnit};

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
            col("k", "text"),
            col("t", "timestamp without time zone"),
            col("n", "bigint"),
        ];
        let plain = Arc::new(Schema::new(fields.clone()));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(0),
                None,
                Some(1500),
            ])),
            Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&plain), cols.clone()).unwrap();
        let w = Writer::new(&plain, "\"s\".\"t\"", &targets, &[], 2).unwrap();
        let writes = w.writes(&batch).unwrap();
        assert_eq!(writes.len(), 2, "3 rows in statements of 2");
        assert_eq!(
            writes[0].sql,
            "INSERT INTO \"s\".\"t\" (\"k\", \"t\", \"n\") SELECT u.\"k\"::text, u.\"t\"::timestamp without time zone, u.\"n\"::bigint FROM unnest($1::text[], $2::text[], $3::text[]) AS u(\"k\", \"t\", \"n\")"
        );
        assert_eq!(
            writes[0].params[1],
            vec![Some("1970-01-01T00:00:00Z".to_string()), None]
        );
        assert_eq!(writes[1].params[2], vec![None]);

        let w = Writer::new(&plain, "t", &targets, &["k".into()], 100).unwrap();
        let writes = w.writes(&batch).unwrap();
        assert_eq!(writes.len(), 1);
        assert!(
            writes[0].sql.ends_with(
                "ON CONFLICT (\"k\") DO UPDATE SET \"t\" = EXCLUDED.\"t\", \"n\" = EXCLUDED.\"n\""
            ),
            "{}",
            writes[0].sql
        );
        // `a` twice: its last row (1.5 s, NULL) only.
        assert_eq!(
            writes[0].params[0],
            vec![Some("b".into()), Some("a".into())]
        );
        assert_eq!(writes[0].params[2], vec![Some("2".into()), None]);

        fields.push(changelog::field_with_deletes());
        let log = Arc::new(Schema::new(fields));
        let mut cols = cols;
        cols.push(changelog::column(&[
            Kind::Insert,
            Kind::Insert,
            Kind::Delete,
        ]));
        let batch = RecordBatch::try_new(Arc::clone(&log), cols).unwrap();
        let w = Writer::new(&log, "t", &targets, &["k".into()], 100).unwrap();
        assert!(w.is_changelog());
        let writes = w.writes(&batch).unwrap();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(writes[0].sql.starts_with("DELETE FROM t WHERE (\"k\") IN (SELECT u.\"k\"::text FROM unnest($1::text[]) AS u(\"k\"))"), "{}", writes[0].sql);
        assert_eq!(writes[0].params, vec![vec![Some("a".to_string())]]);
        assert_eq!(writes[1].params[0], vec![Some("b".to_string())]);
        assert!(
            Writer::new(&log, "t", &targets, &["x".into()], 1)
                .unwrap_err()
                .contains("`x`")
        );
    }
}
