//! SQL expressions (`amount > 0`, `amount * quantity`) compiled once by DataFusion into
//! physical expressions and evaluated vectorised over whole batches.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::Result;

/// A compiled expression and its result type.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    /// The SQL text, for messages.
    pub sql: String,
    expr: Arc<dyn PhysicalExpr>,
    /// Result type over the input schema.
    pub data_type: DataType,
}

/// Function registry and planner; built once because building a context registers hundreds
/// of functions. `CAST(x AS VARCHAR)` gives Utf8, the string type every operator and sink
/// reads, not DataFusion's default Utf8View.
pub(crate) static CONTEXT: LazyLock<SessionContext> = LazyLock::new(|| {
    SessionContext::new_with_config(
        SessionConfig::new().set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false),
    )
});

impl CompiledExpr {
    /// Parse and plan `sql` against `schema`.
    ///
    /// # Errors
    /// DataFusion's message, which names a missing column and lists the valid ones.
    pub fn compile(sql: &str, schema: &SchemaRef) -> std::result::Result<Self, String> {
        // Validation refuses these naming the field; this keeps any other caller from handing
        // DataFusion's recursive planner a tree deep enough to overflow the stack.
        weir_crds::validate::expr_limits::check("expression", sql).map_err(|e| e.message)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
        let logical = CONTEXT
            .parse_sql_expr(sql, &df_schema)
            .map_err(|e| clean(&e.to_string()))?;
        let expr = CONTEXT
            .create_physical_expr(logical, &df_schema)
            .map_err(|e| clean(&e.to_string()))?;
        let data_type = expr.data_type(schema).map_err(|e| clean(&e.to_string()))?;
        Ok(Self {
            sql: sql.to_string(),
            expr,
            data_type,
        })
    }

    /// Indices of the input columns the expression reads.
    #[must_use]
    pub fn columns(&self) -> Vec<usize> {
        let mut out: Vec<usize> = datafusion::physical_expr::utils::collect_columns(&self.expr)
            .iter()
            .map(datafusion::physical_expr::expressions::Column::index)
            .collect();
        out.sort_unstable();
        out
    }

    /// Evaluate over a batch, one array of `batch.num_rows()` values.
    ///
    /// # Errors
    /// Evaluation errors (overflow, invalid cast) from DataFusion.
    pub fn eval(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        Ok(self.expr.evaluate(batch)?.into_array(batch.num_rows())?)
    }
}

/// DataFusion prefixes messages with error kinds and backtrace hints; users need the sentence.
pub(crate) fn clean(msg: &str) -> String {
    let m = msg
        .trim_start_matches("Schema error: ")
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("SQL error: ");
    m.split("\n").next().unwrap_or(m).to_string()
}
