//! `filter`: keep rows for which a SQL predicate is true (null counts as false).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, RecordBatch, RecordBatchOptions, new_null_array,
};
use datafusion::arrow::compute::{FilterBuilder, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;

use super::{Input, Operator, Output};
use crate::error::{Error, Result};
use crate::expr::CompiledExpr;

/// A compiled predicate.
#[derive(Debug)]
pub struct Filter {
    predicate: CompiledExpr,
    /// What it filters (and emits).
    schema: SchemaRef,
    /// Per column, whether it is filtered; `None`: all are. Others are emitted null, since
    /// nothing after the filter reads them (see [`Operator::narrow`]).
    kept: Option<Vec<bool>>,
}

impl Filter {
    /// Wrap a predicate over `schema` the planner has checked to be boolean.
    #[must_use]
    pub fn new(predicate: CompiledExpr, schema: SchemaRef) -> Self {
        Self {
            predicate,
            schema,
            kept: None,
        }
    }

    /// Whether column `i` must be filtered when output columns `needed` are read: the
    /// predicate's own are read before filtering, so only `needed` and those that cannot be
    /// null.
    fn must_keep(&self, i: usize, needed: &[usize]) -> bool {
        needed.contains(&i) || !self.schema.field(i).is_nullable()
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
        let Some(kept) = &self.kept else {
            let kept = filter_record_batch(&batch, mask)?;
            if kept.num_rows() > 0 {
                out.batches.push(kept);
            }
            return Ok(());
        };
        let predicate = FilterBuilder::new(mask).optimize().build();
        let rows = predicate.count();
        if rows == 0 {
            return Ok(());
        }
        let columns = batch
            .columns()
            .iter()
            .zip(kept)
            .map(|(c, &keep)| {
                if keep {
                    predicate.filter(c)
                } else {
                    Ok(new_null_array(c.data_type(), rows))
                }
            })
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        out.batches.push(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?);
        Ok(())
    }

    fn reads(&self, needed: Option<&[usize]>) -> Option<Vec<usize>> {
        let needed = needed?;
        let mut cols: Vec<usize> = (0..self.schema.fields().len())
            .filter(|&i| self.must_keep(i, needed))
            .chain(self.predicate.columns())
            .collect();
        cols.sort_unstable();
        cols.dedup();
        Some(cols)
    }

    fn narrow(&mut self, needed: &[usize]) {
        let kept: Vec<bool> = (0..self.schema.fields().len())
            .map(|i| self.must_keep(i, needed))
            .collect();
        // Filtering every column the usual way is the same work.
        self.kept = kept.contains(&false).then_some(kept);
    }
}
