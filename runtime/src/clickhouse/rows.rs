//! Records to `JSONEachRow` text matching the target table's column types.
//!
//! The table is read once before the job starts, so a missing or mistyped column fails then,
//! by name, rather than as a parse error on the first insert. Values are written in the form
//! every server version parses: `DateTime` as epoch seconds, `DateTime64` as UTC text,
//! booleans as 0/1 unless the column is `Bool`. A changelog is written as upserts: each
//! row's newest version, numbered so that a `ReplacingMergeTree(version)` keeps it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::compute::{cast, filter_record_batch, kernels::numeric::div};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::changelog::Kind;
use crate::error::{Error, Result};
use crate::sink::json_lines;

/// One column of the target table, from `DESCRIBE TABLE`.
#[derive(Debug, Clone)]
pub struct TableColumn {
    /// Name.
    pub name: String,
    /// ClickHouse type text, e.g. `Nullable(DateTime)`.
    pub data_type: String,
    /// Has a DEFAULT / MATERIALIZED / ALIAS expression.
    pub has_default: bool,
}

/// How one record column becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conv {
    AsIs,
    EpochSeconds,
    UtcText,
    BoolAsInt,
}

/// Encodes batches of one schema for one table.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    convs: Vec<Conv>,
    out_schema: SchemaRef,
    version_column: Option<String>,
    columns: Vec<String>,
    /// The records are a changelog ([`crate::changelog`]): its last column is the change
    /// kind, which the table does not hold.
    changelog: bool,
}

/// `Nullable(LowCardinality(String))` -> `String`.
fn base_type(t: &str) -> &str {
    let mut t = t.trim();
    for wrapper in ["Nullable(", "LowCardinality("] {
        while let Some(inner) = t.strip_prefix(wrapper).and_then(|r| r.strip_suffix(')')) {
            t = inner;
        }
    }
    t
}

fn compatible(arrow: &DataType, ch: &str) -> Option<Conv> {
    let b = base_type(ch);
    let numeric = b.starts_with("Int")
        || b.starts_with("UInt")
        || b.starts_with("Float")
        || b.starts_with("Decimal");
    match arrow {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            (b == "String" || b.starts_with("FixedString") || b.starts_with("Enum") || b == "UUID")
                .then_some(Conv::AsIs)
        }
        DataType::Boolean if b == "Bool" => Some(Conv::AsIs),
        DataType::Boolean if b == "UInt8" => Some(Conv::BoolAsInt),
        t if t.is_integer() => numeric.then_some(Conv::AsIs),
        t if t.is_floating() => {
            (b.starts_with("Float") || b.starts_with("Decimal")).then_some(Conv::AsIs)
        }
        DataType::Timestamp(_, _) if b.starts_with("DateTime64") => Some(Conv::UtcText),
        DataType::Timestamp(_, _) if b.starts_with("DateTime") => Some(Conv::EpochSeconds),
        _ => None,
    }
}

impl RowEncoder {
    /// Match `input` against the table.
    ///
    /// # Errors
    /// A message naming the first column that is missing from the table or has a type the
    /// table cannot take.
    pub fn new(
        input: &SchemaRef,
        table: &[TableColumn],
        version_column: Option<&str>,
    ) -> std::result::Result<Self, String> {
        let mut convs = Vec::new();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let listing = table
            .iter()
            .map(|c| format!("{} {}", c.name, c.data_type))
            .collect::<Vec<_>>()
            .join(", ");
        let changelog = crate::changelog::is_changelog(input);
        if changelog && version_column.is_none() {
            return Err("the records are a changelog (the statement's result updates) and need a table that replaces a row by a newer one of the same key: a ReplacingMergeTree(<version>) ordered by the result's key, with versionColumn naming <version>; versionColumn is not set".to_string());
        }
        let data_fields = input.fields().len() - usize::from(changelog);
        for f in input.fields().iter().take(data_fields) {
            let Some(col) = table.iter().find(|c| &c.name == f.name()) else {
                return Err(format!(
                    "column `{}` of the records is not in the table (table has: {listing})",
                    f.name()
                ));
            };
            let conv = compatible(f.data_type(), &col.data_type).ok_or_else(|| {
                format!(
                    "column `{}`: records carry {}, the table column is {}",
                    f.name(),
                    f.data_type(),
                    col.data_type
                )
            })?;
            let dt = match conv {
                Conv::AsIs => f.data_type().clone(),
                Conv::EpochSeconds => DataType::Int64,
                Conv::UtcText => DataType::Utf8,
                Conv::BoolAsInt => DataType::UInt8,
            };
            fields.push(Field::new(f.name(), dt, f.is_nullable()));
            convs.push(conv);
            columns.push(format!("`{}`", f.name()));
        }
        if let Some(v) = version_column {
            let Some(col) = table.iter().find(|c| c.name == v) else {
                return Err(format!(
                    "versionColumn `{v}` is not in the table ({listing})"
                ));
            };
            if !base_type(&col.data_type).starts_with("UInt64") {
                return Err(format!(
                    "versionColumn `{v}` is {}; it must be UInt64",
                    col.data_type
                ));
            }
            if input.field_with_name(v).is_ok() {
                return Err(format!(
                    "versionColumn `{v}` is also a column of the records; choose another"
                ));
            }
            fields.push(Field::new(v, DataType::UInt64, false));
            columns.push(format!("`{v}`"));
        }
        for c in table {
            let carried =
                input.field_with_name(&c.name).is_ok() || version_column == Some(c.name.as_str());
            if !carried && !c.has_default && !c.data_type.starts_with("Nullable") {
                tracing::warn!(column = %c.name, "table column is not in the records and has no default; ClickHouse will store its type's zero value");
            }
        }
        Ok(Self {
            convs,
            out_schema: Arc::new(Schema::new(fields)),
            version_column: version_column.map(str::to_string),
            columns,
            changelog,
        })
    }

    /// Whether the records are a changelog, written as upserts.
    #[must_use]
    pub fn is_changelog(&self) -> bool {
        self.changelog
    }

    /// `a, b, c` for the INSERT statement.
    #[must_use]
    pub fn column_list(&self) -> String {
        self.columns.join(", ")
    }

    /// Append `batch` as JSON lines to `out`; returns how many rows were written. `version`
    /// fills the version column if any. Of a changelog only the rows that add (`+I`, `+U`)
    /// are written, the `k`-th with version `version + k`: a `-U` needs no row of its own
    /// (the `+U` after it replaces the old row, having the higher version), and the versions
    /// a caller hands out grow with time, so the newest row of a key wins.
    ///
    /// # Errors
    /// Arrow conversion errors; a deletion (`-D`), which the table cannot express without a
    /// deleted-flag column.
    pub fn encode_into(
        &self,
        batch: &RecordBatch,
        version: u64,
        out: &mut String,
    ) -> Result<usize> {
        let batch = if self.changelog {
            &self.additions(batch)?
        } else {
            batch
        };
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.convs.len() + 1);
        for (i, conv) in self.convs.iter().enumerate() {
            let a = batch.column(i);
            cols.push(match conv {
                Conv::AsIs => Arc::clone(a),
                Conv::EpochSeconds => {
                    let ms = cast(a, &DataType::Int64)?;
                    let k = datafusion::arrow::array::Int64Array::new_scalar(1000);
                    div(&ms, &k)?
                }
                Conv::UtcText => {
                    let t = cast(
                        a,
                        &DataType::Timestamp(
                            datafusion::arrow::datatypes::TimeUnit::Millisecond,
                            Some("+00:00".into()),
                        ),
                    )?;
                    cast(&t, &DataType::Utf8)?
                }
                Conv::BoolAsInt => cast(a, &DataType::UInt8)?,
            });
        }
        if self.version_column.is_some() {
            let n = batch.num_rows() as u64;
            cols.push(Arc::new(if self.changelog {
                UInt64Array::from_iter_values(version..version + n)
            } else {
                UInt64Array::from(vec![version; batch.num_rows()])
            }));
        }
        let b = RecordBatch::try_new(Arc::clone(&self.out_schema), cols)?;
        let text = json_lines(&b)?;
        out.push_str(&String::from_utf8_lossy(&text));
        Ok(batch.num_rows())
    }

    /// The rows of a changelog batch that add a row, without the change kind.
    fn additions(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let last = batch.num_columns() - 1;
        let kinds = batch
            .column(last)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::internal("the change kind is not a string column"))?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for k in kinds.iter() {
            match k.and_then(Kind::parse) {
                Some(Kind::Insert | Kind::UpdateAfter) => keep.push(true),
                Some(Kind::UpdateBefore) => keep.push(false),
                Some(Kind::Delete) => {
                    return Err(Error::internal(
                        "a deletion reached a ClickHouse sink, which has no deleted-flag column to write it to",
                    ));
                }
                None => return Err(Error::internal(format!("unknown change kind {k:?}"))),
            }
        }
        let data = batch.project(&(0..last).collect::<Vec<_>>())?;
        Ok(filter_record_batch(&data, &BooleanArray::from(keep))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::TimeUnit;

    fn col(name: &str, t: &str) -> TableColumn {
        TableColumn {
            name: name.into(),
            data_type: t.into(),
            has_default: false,
        }
    }

    #[test]
    fn encodes_for_the_table_and_names_bad_columns() -> Result<()> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("store_id", DataType::Utf8, false),
            Field::new("sales", DataType::Int64, true),
        ]));
        let table = vec![
            col("window_start", "DateTime"),
            col("store_id", "LowCardinality(String)"),
            col("sales", "Nullable(Int64)"),
            col("v", "UInt64"),
        ];
        let enc = RowEncoder::new(&schema, &table, Some("v")).map_err(Error::internal)?;
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![60_000])),
                Arc::new(StringArray::from(vec!["s1"])),
                Arc::new(Int64Array::from(vec![Some(5)])),
            ],
        )?;
        let mut out = String::new();
        enc.encode_into(&b, 7, &mut out)?;
        assert_eq!(
            out.trim(),
            r#"{"window_start":60,"store_id":"s1","sales":5,"v":7}"#
        );
        assert_eq!(
            enc.column_list(),
            "`window_start`, `store_id`, `sales`, `v`"
        );

        let missing = RowEncoder::new(&schema, &table[1..], None)
            .err()
            .unwrap_or_default();
        assert!(missing.contains("`window_start`"), "{missing}");
        let wrong = vec![
            col("window_start", "DateTime"),
            col("store_id", "Int32"),
            col("sales", "Int64"),
        ];
        let wrong = RowEncoder::new(&schema, &wrong, None)
            .err()
            .unwrap_or_default();
        assert!(
            wrong.contains("`store_id`") && wrong.contains("Int32"),
            "{wrong}"
        );
        Ok(())
    }

    #[test]
    fn a_changelog_is_written_as_upserts_numbered_from_the_version_given() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            crate::changelog::field(),
        ]));
        let table = vec![col("k", "String"), col("n", "Int64"), col("v", "UInt64")];
        let refused = RowEncoder::new(&schema, &table, None)
            .err()
            .unwrap_or_default();
        assert!(refused.contains("versionColumn"), "{refused}");
        let enc = RowEncoder::new(&schema, &table, Some("v")).map_err(Error::internal)?;
        assert!(enc.is_changelog());
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "a"])),
                Arc::new(Int64Array::from(vec![1, 1, 1, 2])),
                crate::changelog::column(&[
                    Kind::Insert,
                    Kind::Insert,
                    Kind::UpdateBefore,
                    Kind::UpdateAfter,
                ]),
            ],
        )?;
        let mut out = String::new();
        assert_eq!(enc.encode_into(&b, 100, &mut out)?, 3);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                r#"{"k":"a","n":1,"v":100}"#,
                r#"{"k":"b","n":1,"v":101}"#,
                r#"{"k":"a","n":2,"v":102}"#
            ]
        );
        Ok(())
    }
}
