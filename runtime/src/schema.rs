//! Manifest schema -> Arrow schema. Timestamps are milliseconds, UTC, no zone attached, so
//! event time, watermarks and window bounds are all plain `i64` millis underneath.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_crds::{FieldSpec, FieldType};

/// The Arrow type of a manifest field type.
#[must_use]
pub fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::String => DataType::Utf8,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float64 => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Timestamp => timestamp_type(),
    }
}

/// The one timestamp type Weir uses.
#[must_use]
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// The Arrow schema of the source's records.
#[must_use]
pub fn source_schema(fields: &[FieldSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|f| Field::new(&f.name, arrow_type(f.data_type), f.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Parse RFC 3339 text into epoch milliseconds.
///
/// # Errors
/// A message quoting the text.
pub fn parse_timestamp_millis(s: &str) -> Result<i64, String> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
        .map(|ns| ns.div_euclid(1_000_000))
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp: {e}"))
}
