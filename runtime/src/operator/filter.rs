//! `filter`: keep rows for which a SQL predicate is true (null counts as false).

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;

use super::{Input, Operator, Output};
use crate::error::{Error, Result};
use crate::expr::CompiledExpr;

/// A compiled predicate.
#[derive(Debug)]
pub struct Filter {
    predicate: CompiledExpr,
}

impl Filter {
    /// Wrap a predicate the planner has checked to be boolean.
    #[must_use]
    pub fn new(predicate: CompiledExpr) -> Self {
        Self { predicate }
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
        let kept = filter_record_batch(&batch, mask)?;
        if kept.num_rows() > 0 {
            out.batches.push(kept);
        }
        Ok(())
    }
}
