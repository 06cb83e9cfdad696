//! The target table as MySQL describes it (`information_schema`), and which of its types take
//! which record types; the checks themselves are the database sinks' shared ones
//! ([`crate::sink::table`]).

use datafusion::arrow::datatypes::DataType;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::client::MyError;
pub use crate::sink::table::{Column, Table};

/// What [`describe`] gives as the engine of a view (which has none).
pub const VIEW: &str = "(view)";

/// A table as the server's catalog describes it.
#[derive(Debug, Clone)]
pub struct Described {
    /// Columns and keys.
    pub table: Table,
    /// Its storage engine ([`VIEW`] for a view).
    pub engine: String,
    /// Columns compared by a collation that is not binary (`..._bin`), with that collation:
    /// `'A'` and `'a'` are one key there.
    pub loose: Vec<(String, String)>,
}

/// The table; `None` when there is no such table in the connection's database.
///
/// # Errors
/// The server's error.
pub async fn describe(conn: &mut Conn, table: &str) -> Result<Option<Described>, MyError> {
    let engine: Option<Option<String>> = conn
        .exec_first(
            "SELECT ENGINE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (table,),
        )
        .await?;
    let Some(engine) = engine else {
        return Ok(None);
    };
    let engine = engine.unwrap_or_else(|| VIEW.into());
    let rows: Vec<(String, String, String, bool, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
                    COLUMN_DEFAULT IS NOT NULL OR EXTRA LIKE '%auto_increment%' \
                    OR EXTRA LIKE '%GENERATED%' OR EXTRA LIKE '%VIRTUAL%' \
                    OR EXTRA LIKE '%PERSISTENT%', COLLATION_NAME \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (table,),
        )
        .await?;
    let mut loose = Vec::new();
    let mut columns = Vec::with_capacity(rows.len());
    for (name, type_name, nullable, has_default, collation) in rows {
        if let Some(c) = collation.filter(|c| !c.ends_with("_bin")) {
            loose.push((name.clone(), c));
        }
        columns.push(Column {
            name,
            type_name,
            not_null: nullable == "NO",
            has_default,
        });
    }
    let keys: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (table,),
        )
        .await?;
    let mut primary_key = Vec::new();
    let mut unique: Vec<Vec<String>> = Vec::new();
    let mut last: Option<String> = None;
    for (index, column) in keys {
        if index == "PRIMARY" {
            primary_key.push(column.clone());
        }
        match (&last, unique.last_mut()) {
            (Some(l), Some(cols)) if *l == index => cols.push(column),
            _ => unique.push(vec![column]),
        }
        last = Some(index);
    }
    Ok(Some(Described {
        table: Table {
            columns,
            primary_key,
            unique,
        },
        engine,
        loose,
    }))
}

/// Whether a column of type `my` (`COLUMN_TYPE`, e.g. `bigint(20) unsigned`) takes values of
/// type `arrow`, sent as the matching MySQL value.
#[must_use]
pub fn takes(arrow: &DataType, my: &str) -> bool {
    let base = my
        .split(['(', ' '])
        .next()
        .unwrap_or(my)
        .trim()
        .to_ascii_lowercase();
    let base = base.as_str();
    let integer = matches!(
        base,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint"
    );
    let numeric = integer || matches!(base, "decimal" | "numeric" | "float" | "double" | "real");
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
            matches!(base, "decimal" | "numeric" | "float" | "double" | "real")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => matches!(
            base,
            "char"
                | "varchar"
                | "tinytext"
                | "text"
                | "mediumtext"
                | "longtext"
                | "json"
                | "enum"
                | "set"
                | "uuid"
        ),
        DataType::Boolean => matches!(base, "tinyint" | "bool" | "boolean" | "bit"),
        DataType::Timestamp(..) => matches!(base, "datetime" | "timestamp"),
        DataType::Date32 | DataType::Date64 => matches!(base, "date" | "datetime" | "timestamp"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_take_what_the_column_holds_and_nothing_else() {
        let ts = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None);
        assert!(takes(&ts, "datetime(3)"));
        assert!(takes(&ts, "timestamp"));
        assert!(!takes(&ts, "varchar(20)"));
        assert!(takes(&DataType::Int64, "bigint(20) unsigned"));
        assert!(takes(&DataType::Int64, "decimal(20,0)"));
        assert!(!takes(&DataType::Int64, "text"));
        assert!(takes(&DataType::Utf8, "varchar(255)"));
        assert!(takes(&DataType::Utf8, "longtext"));
        assert!(!takes(&DataType::Utf8, "int(11)"));
        assert!(!takes(&DataType::Float64, "bigint"));
        assert!(takes(&DataType::Boolean, "tinyint(1)"));
    }
}
