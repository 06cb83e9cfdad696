//! Records a source cannot decode: what the job does with them (its `onDecodeError`
//! policy) and the schema of the side output they go to, the same for every source.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Result;

/// What to do with a line that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop the job, naming the line.
    Fail,
    /// Count and drop.
    Skip,
    /// Send to the side output.
    SideOutput,
}

/// Schema of decode-error side-output records.
pub static DECODE_ERROR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
    ]))
});

/// Side-output records for undecodable input; `None` when there are none.
///
/// # Errors
/// Never in practice (the columns match the schema).
pub fn decode_errors_batch(
    sources: Vec<String>,
    raws: Vec<String>,
    errors: Vec<String>,
) -> Result<Option<RecordBatch>> {
    if sources.is_empty() {
        return Ok(None);
    }
    Ok(Some(RecordBatch::try_new(
        DECODE_ERROR_SCHEMA.clone(),
        vec![
            Arc::new(StringArray::from(sources)),
            Arc::new(StringArray::from(raws)),
            Arc::new(StringArray::from(errors)),
        ],
    )?))
}
