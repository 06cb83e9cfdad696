//! `UNION ALL`: every input's records, as they come, under the union's column names. The
//! inputs have the same column types by position (checked when planning), so a batch is
//! relabelled, not copied.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::{Input, Operator, Output};
use crate::error::{Error, Result};

/// The union of any number of inputs.
pub struct Union {
    schema: SchemaRef,
}

impl Union {
    /// A union producing records of `schema`.
    #[must_use]
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }
}

impl Operator for Union {
    fn process(&mut self, input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let relabelled = RecordBatch::try_new(
            std::sync::Arc::clone(&self.schema),
            batch.columns().to_vec(),
        )
        .map_err(|e| Error::internal(format!("UNION ALL input {}: {e}", input.0 + 1)))?;
        out.batches.push(relabelled);
        Ok(())
    }
}
