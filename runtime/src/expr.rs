//! SQL expressions (`amount > 0`, `amount * quantity`) compiled once by DataFusion into
//! physical expressions and evaluated vectorised over whole batches.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
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

/// [`CONTEXT`]'s settings, for the simplifier: read once, as reading them copies the
/// whole session state.
static CONFIG: LazyLock<Arc<ConfigOptions>> =
    LazyLock::new(|| Arc::clone(CONTEXT.state().config_options()));

/// Functions of the wall clock, refused: see [`CompiledExpr::compile`].
const CLOCK_FUNCTIONS: [&str; 4] = ["now", "current_date", "current_time", "current_timestamp"];

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
        // The wall clock at planning would be frozen into every result, and unplanned it
        // fails at the first batch: results must come from the records (and replay alike).
        let mut clock = None;
        logical
            .apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && CLOCK_FUNCTIONS.contains(&f.name())
                {
                    clock = Some(f.name().to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .map_err(|e| clean(&e.to_string()))?;
        if let Some(f) = clock {
            return Err(format!(
                "{f}() reads the clock, so a replay after a restore would give other results; use the event-time column (or a value from the records) instead"
            ));
        }
        // Some functions exist only to be rewritten by the simplifier (`coalesce` becomes a
        // CASE) and fail if evaluated as they are; a query's optimizer would run it, so run it
        // here too.
        let df_schema = Arc::new(df_schema);
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::clone(&df_schema))
                .with_config_options(Arc::clone(&CONFIG))
                .build(),
        );
        let logical = simplifier
            .coerce(logical, &df_schema)
            .and_then(|e| simplifier.simplify(e))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;

    /// Functions the simplifier must rewrite before they can run (DataFusion's `coalesce`
    /// is one) evaluate.
    #[test]
    fn functions_that_only_run_simplified_evaluate() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, None])),
                Arc::new(Int64Array::from(vec![Some(5), Some(6), None])),
            ],
        )
        .unwrap();
        let e = CompiledExpr::compile("coalesce(a, b, -1)", &schema).unwrap();
        assert_eq!(e.data_type, DataType::Int64);
        let got = e.eval(&batch).unwrap();
        let got: Vec<i64> = got.as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(got, [1, 6, -1]);
        assert_eq!(e.columns(), [0, 1]);
        // The clock is refused by name, not left to fail at the first batch.
        for f in ["now()", "current_date()", "current_time()"] {
            let err =
                CompiledExpr::compile(&format!("a > 0 AND {f} IS NOT NULL"), &schema).unwrap_err();
            assert!(err.contains("reads the clock"), "{f}: {err}");
        }
    }
}
