//! `select`: compute output columns from SQL expressions over the input columns.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;

use super::{Input, Operator, Output, StandIns, produced};
use crate::error::Result;
use crate::expr::CompiledExpr;

/// Compiled projections and the schema they produce.
#[derive(Debug)]
pub struct Select {
    columns: Vec<CompiledExpr>,
    schema: SchemaRef,
    /// Per output column, whether it is computed; `None`: all are. The others are stand-ins
    /// (null, or a default where null is not allowed), as nothing after the select reads
    /// them (see [`Operator::narrow`]).
    computed: Option<Vec<bool>>,
    stand_ins: StandIns,
}

impl Select {
    /// `columns[i]` produces field `i` of `schema`.
    #[must_use]
    pub fn new(columns: Vec<CompiledExpr>, schema: SchemaRef) -> Self {
        Self {
            columns,
            schema,
            computed: None,
            stand_ins: StandIns::default(),
        }
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
                Some(computed) if !computed[i] => self.stand_ins.get(i, self.schema.field(i), rows),
                _ => c.eval(&batch),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?);
        Ok(())
    }

    fn reads(&self, needed: Option<&[usize]>) -> Option<Vec<usize>> {
        let computed = needed.and_then(|n| produced(&self.schema, n));
        let mut cols: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| computed.as_ref().is_none_or(|c| c[*i]))
            .flat_map(|(_, c)| c.columns())
            .collect();
        cols.sort_unstable();
        cols.dedup();
        Some(cols)
    }

    fn narrow(&mut self, needed: &[usize]) {
        self.computed = produced(&self.schema, needed);
    }
}
