//! The target table as the server describes it, and the check that the records fit it:
//! every record column exists with a type that takes its values, every other column can be
//! left out, and the key that upserts and deletes go by is a unique index.

use datafusion::arrow::datatypes::{DataType, Schema};
use tokio_postgres::Client;

use super::client::PgError;

/// A column of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Its type as the server writes it (`format_type`), e.g. `timestamp without time zone`.
    pub type_name: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// A default, identity or generated value fills it when an insert leaves it out.
    pub has_default: bool,
}

/// The table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Primary key columns, in index order (empty without one).
    pub primary_key: Vec<String>,
    /// The columns of every unique index (the primary key among them).
    pub unique: Vec<Vec<String>>,
}

/// Describe `schema.table`; `None` when there is no such table.
///
/// # Errors
/// The server's error.
pub async fn describe(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Option<Table>, PgError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let columns = rows
        .iter()
        .map(|r| Column {
            name: r.get(0),
            type_name: r.get(1),
            not_null: r.get(2),
            has_default: r.get(3),
        })
        .collect();
    let indexes = client
        .query(
            "SELECT i.indisprimary, array_agg(a.attname::text ORDER BY k.ord) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL \
             GROUP BY i.indexrelid, i.indisprimary",
            &[&schema, &table],
        )
        .await?;
    let mut primary_key = Vec::new();
    let mut unique = Vec::new();
    for r in indexes {
        let cols: Vec<String> = r.get(1);
        if r.get::<_, bool>(0) {
            primary_key.clone_from(&cols);
        }
        unique.push(cols);
    }
    Ok(Some(Table {
        columns,
        primary_key,
        unique,
    }))
}

impl Table {
    /// The columns the records write, each with the table's type (to cast the text to),
    /// in the records' order.
    ///
    /// # Errors
    /// A record column the table lacks or whose type cannot take the values, or a table
    /// column the insert would leave empty although it needs a value; each named.
    pub fn targets(&self, input: &Schema, data_width: usize) -> Result<Vec<Column>, String> {
        let listing = || {
            self.columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.type_name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = Vec::with_capacity(data_width);
        for f in input.fields().iter().take(data_width) {
            let Some(col) = self.columns.iter().find(|c| &c.name == f.name()) else {
                return Err(format!(
                    "column `{}` of the records is not in the table (the table has: {})",
                    f.name(),
                    listing()
                ));
            };
            if !takes(f.data_type(), &col.type_name) {
                return Err(format!(
                    "column `{}`: the records carry {}, the table's column is {}",
                    f.name(),
                    f.data_type(),
                    col.type_name
                ));
            }
            out.push(col.clone());
        }
        for c in &self.columns {
            let written = input
                .fields()
                .iter()
                .take(data_width)
                .any(|f| f.name() == &c.name);
            if !written && c.not_null && !c.has_default {
                return Err(format!(
                    "column `{}` ({}) is NOT NULL without a default, and the records have no such column",
                    c.name, c.type_name
                ));
            }
        }
        Ok(out)
    }

    /// The key upserts and deletes go by: `wanted` when given (it must be a unique index's
    /// columns), else the primary key.
    ///
    /// # Errors
    /// No such unique index, or no primary key.
    pub fn key(&self, wanted: &[String]) -> Result<Vec<String>, String> {
        if wanted.is_empty() {
            return if self.primary_key.is_empty() {
                Err("the table has no primary key: give it one, or name a unique index's columns in primaryKey".into())
            } else {
                Ok(self.primary_key.clone())
            };
        }
        let mut w = wanted.to_vec();
        w.sort();
        let found = self.unique.iter().any(|u| {
            let mut u = u.clone();
            u.sort();
            u == w
        });
        if found {
            Ok(wanted.to_vec())
        } else {
            Err(format!(
                "primaryKey [{}] is not the columns of a unique index of the table (its unique keys: {})",
                wanted.join(", "),
                if self.unique.is_empty() {
                    "none".to_string()
                } else {
                    self.unique
                        .iter()
                        .map(|u| format!("[{}]", u.join(", ")))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        }
    }
}

/// Whether a column of type `pg` (as `format_type` writes it) takes values of type `arrow`,
/// sent as text and cast by the server.
#[must_use]
pub fn takes(arrow: &DataType, pg: &str) -> bool {
    let pg = pg.split('(').next().unwrap_or(pg).trim();
    let pg = pg.strip_suffix("[]").map_or(pg, |_| "");
    let numeric = matches!(
        pg,
        "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision"
    );
    match arrow {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => numeric,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => {
            matches!(pg, "numeric" | "real" | "double precision")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => matches!(
            pg,
            "text" | "character varying" | "character" | "json" | "jsonb" | "uuid"
        ),
        DataType::Boolean => pg == "boolean",
        DataType::Timestamp(..) => pg.starts_with("timestamp"),
        DataType::Date32 | DataType::Date64 => pg == "date" || pg.starts_with("timestamp"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn types_take_what_the_server_would_cast_and_nothing_else() {
        let ts = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None);
        assert!(takes(&ts, "timestamp without time zone"));
        assert!(takes(&ts, "timestamp(3) with time zone"));
        assert!(!takes(&ts, "text"));
        assert!(takes(&DataType::Int64, "bigint"));
        assert!(takes(&DataType::Int64, "numeric(20,0)"));
        assert!(!takes(&DataType::Int64, "text"));
        assert!(takes(&DataType::Utf8, "character varying(20)"));
        assert!(!takes(&DataType::Utf8, "integer"));
        assert!(!takes(&DataType::Float64, "bigint"));
        assert!(!takes(&DataType::Utf8, "text[]"));
    }

    #[test]
    fn a_key_must_be_a_unique_index() {
        let t = Table {
            columns: vec![],
            primary_key: vec!["a".into(), "b".into()],
            unique: vec![vec!["a".into(), "b".into()], vec!["c".into()]],
        };
        assert_eq!(t.key(&[]).unwrap_or_default(), vec!["a", "b"]);
        assert!(t.key(&["b".into(), "a".into()]).is_ok());
        assert!(t.key(&["c".into()]).is_ok());
        let e = t.key(&["a".into()]).unwrap_err();
        assert!(e.contains("[a, b], [c]"), "{e}");
        let none = Table {
            primary_key: vec![],
            unique: vec![],
            ..t
        };
        assert!(none.key(&[]).unwrap_err().contains("no primary key"));
    }
}
