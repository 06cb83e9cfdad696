//! `filter`: keep rows for which a SQL predicate is true (null counts as false).

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::FilterBuilder;
use datafusion::arrow::datatypes::SchemaRef;

use super::{Input, Operator, Output, StandIns, produced};
use crate::error::{Error, Result};
use crate::expr::CompiledExpr;

/// A compiled predicate.
#[derive(Debug)]
pub struct Filter {
    predicate: CompiledExpr,
    /// What it filters (and emits).
    schema: SchemaRef,
    /// Per column, whether it is filtered; `None`: all are. Others are emitted as stand-ins
    /// (null, or a default where null is not allowed), since nothing after the filter reads
    /// them (see [`Operator::narrow`]).
    kept: Option<Vec<bool>>,
    stand_ins: StandIns,
}

impl Filter {
    /// Wrap a predicate over `schema` the planner has checked to be boolean.
    #[must_use]
    pub fn new(predicate: CompiledExpr, schema: SchemaRef) -> Self {
        Self {
            predicate,
            schema,
            kept: None,
            stand_ins: StandIns::default(),
        }
    }
}

impl Operator for Filter {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = self.predicate.eval(&batch)?;
        let mask = mask.as_boolean_opt().ok_or_else(|| {
            Error::internal(format!(
                "filter `{}` did not yield booleans",
                self.predicate.sql
            ))
        })?;
        let predicate = FilterBuilder::new(mask).optimize().build();
        let rows = predicate.count();
        if rows == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        let columns = batch
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| match &self.kept {
                Some(kept) if !kept[i] => self.stand_ins.get(i, schema.field(i), rows),
                _ => Ok(predicate.filter(c)?),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        out.batches.push(RecordBatch::try_new_with_options(
            schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?);
        Ok(())
    }

    fn reads(&self, needed: Option<&[usize]>) -> Option<Vec<usize>> {
        let kept = produced(&self.schema, needed?);
        let mut cols: Vec<usize> = (0..self.schema.fields().len())
            .filter(|&i| kept.as_ref().is_none_or(|k| k[i]))
            .chain(self.predicate.columns())
            .collect();
        cols.sort_unstable();
        cols.dedup();
        Some(cols)
    }

    fn narrow(&mut self, needed: &[usize]) {
        self.kept = produced(&self.schema, needed);
    }
}
