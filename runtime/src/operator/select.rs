//! `select`: compute output columns from SQL expressions over the input columns.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;

use super::{Input, Operator, Output};
use crate::error::Result;
use crate::expr::CompiledExpr;

/// Compiled projections and the schema they produce.
#[derive(Debug)]
pub struct Select {
    columns: Vec<CompiledExpr>,
    schema: SchemaRef,
}

impl Select {
    /// `columns[i]` produces field `i` of `schema`.
    #[must_use]
    pub fn new(columns: Vec<CompiledExpr>, schema: SchemaRef) -> Self {
        Self { columns, schema }
    }
}

impl Operator for Select {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let arrays = self
            .columns
            .iter()
            .map(|c| c.eval(&batch))
            .collect::<Result<Vec<ArrayRef>>>()?;
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?);
        Ok(())
    }
}
