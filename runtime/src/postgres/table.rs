//! The target table as PostgreSQL describes it (its catalog), and which of its types take
//! which record types; the checks themselves are the database sinks' shared ones
//! ([`crate::sink::table`]).

use datafusion::arrow::datatypes::DataType;
use tokio_postgres::Client;

use super::client::PgError;
pub use crate::sink::table::{Column, Table};

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
}
