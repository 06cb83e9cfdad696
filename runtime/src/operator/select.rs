//! `select`: compute output columns from SQL expressions over the input columns.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;

use super::{Input, Operator, Output};
use crate::error::Result;
use crate::expr::CompiledExpr;

/// Compiled projections and the schema they produce.
#[derive(Debug)]
pub struct Select {
    columns: Vec<CompiledExpr>,
    schema: SchemaRef,
    /// Per output column, whether it is computed; `None`: all are. The others are null, as
    /// nothing after the select reads them (see [`Operator::narrow`]).
    computed: Option<Vec<bool>>,
}

impl Select {
    /// `columns[i]` produces field `i` of `schema`.
    #[must_use]
    pub fn new(columns: Vec<CompiledExpr>, schema: SchemaRef) -> Self {
        Self {
            columns,
            schema,
            computed: None,
        }
    }

    /// Whether output column `i` is computed when columns `needed` are read: those, and
    /// those that cannot be null.
    fn must_compute(&self, i: usize, needed: &[usize]) -> bool {
        needed.contains(&i) || !self.schema.field(i).is_nullable()
    }
}

impl Operator for Select {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = batch.num_rows();
        let arrays = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match &self.computed {
                Some(computed) if !computed[i] => {
                    Ok(new_null_array(self.schema.field(i).data_type(), rows))
                }
                _ => c.eval(&batch),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?);
        Ok(())
    }

    fn reads(&self, needed: Option<&[usize]>) -> Option<Vec<usize>> {
        let mut cols: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| needed.is_none_or(|n| self.must_compute(*i, n)))
            .flat_map(|(_, c)| c.columns())
            .collect();
        cols.sort_unstable();
        cols.dedup();
        Some(cols)
    }

    fn narrow(&mut self, needed: &[usize]) {
        let computed: Vec<bool> = (0..self.columns.len())
            .map(|i| self.must_compute(i, needed))
            .collect();
        self.computed = computed.contains(&false).then_some(computed);
    }
}
