//! `UNION ALL`: every input's records, as they come, under the union's column names. The
//! inputs have the same column types by position (checked when planning), so a batch is
//! relabelled, not copied. A union of changelogs is a changelog: each input's changes pass
//! as they are, and the rows of an input of inserts only become `+I`.

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
        let mut columns = batch.columns().to_vec();
        if columns.len() + 1 == self.schema.fields().len()
            && crate::changelog::is_changelog(&self.schema)
        {
            let inserts = vec![crate::changelog::Kind::Insert; batch.num_rows()];
            columns.push(crate::changelog::column(&inserts));
        }
        let relabelled = RecordBatch::try_new(std::sync::Arc::clone(&self.schema), columns)
            .map_err(|e| Error::internal(format!("UNION ALL input {}: {e}", input.0 + 1)))?;
        out.batches.push(relabelled);
        Ok(())
    }
}
