//! What DataFusion's SQL planner may see while planning a statement: the source, the tables
//! standing for its window calls, and DataFusion's own functions. Nothing else (no files,
//! no `information_schema`), so a statement cannot reach outside the job.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result as DfResult, TableReference, plan_datafusion_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner};
use datafusion::logical_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion::prelude::SessionContext;

use crate::schema::timestamp_type;

/// Functions and planners, built once: a context registers hundreds of functions.
static STATE: LazyLock<SessionState> = LazyLock::new(|| SessionContext::new().state());

/// The tables one statement may read.
pub struct Catalog {
    tables: Vec<(String, Arc<dyn TableSource>)>,
}

impl Catalog {
    /// The source under its name.
    pub fn new(source: &str, schema: &SchemaRef) -> Self {
        Self {
            tables: vec![(
                source.to_lowercase(),
                Arc::new(LogicalTableSource::new(Arc::clone(schema))),
            )],
        }
    }

    /// A window call's table: the source's columns plus `window_start` and `window_end`.
    pub fn add_window(&mut self, table: &str, source: &SchemaRef) {
        let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(WINDOW_START, timestamp_type(), false));
        fields.push(Field::new(WINDOW_END, timestamp_type(), false));
        self.tables.push((
            table.to_string(),
            Arc::new(LogicalTableSource::new(Arc::new(Schema::new(fields)))),
        ));
    }
}

impl Catalog {
    /// A view, readable by the statements after it.
    pub fn add_view(&mut self, name: &str, schema: SchemaRef) {
        self.tables
            .push((name.to_string(), Arc::new(LogicalTableSource::new(schema))));
    }
}

/// Column a window call adds: where the window begins (inclusive).
pub const WINDOW_START: &str = "window_start";
/// Column a window call adds: where the window ends (exclusive).
pub const WINDOW_END: &str = "window_end";

impl ContextProvider for Catalog {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        let wanted = name.table().to_lowercase();
        self.tables
            .iter()
            .find(|(n, _)| *n == wanted)
            .map(|(_, t)| Arc::clone(t))
            .ok_or_else(|| plan_datafusion_err!("table '{name}' not found"))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        STATE.expr_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        STATE.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        STATE.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        STATE.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        STATE.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        STATE.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        STATE.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        STATE.higher_order_functions().keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        STATE.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        STATE.window_functions().keys().cloned().collect()
    }
}
