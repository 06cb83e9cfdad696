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

use crate::operator::window::{WINDOW_END, WINDOW_START};
use crate::schema::timestamp_type;

/// Functions and planners: those of the context expressions are compiled with
/// ([`crate::expr`]), so SQL and YAML jobs know the same functions and they are registered
/// once.
static STATE: LazyLock<SessionState> = LazyLock::new(|| crate::expr::CONTEXT.state());

/// The tables one statement may read.
#[derive(Default)]
pub struct Catalog {
    tables: Vec<(String, Arc<dyn TableSource>)>,
}

impl Catalog {
    /// A source under its name.
    pub fn add_source(&mut self, name: &str, schema: &SchemaRef) {
        self.add(&name.to_lowercase(), Arc::clone(schema));
    }

    /// A window call's table: the source's columns plus `window_start` and `window_end`.
    pub fn add_window(&mut self, table: &str, source: &SchemaRef) {
        let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(WINDOW_START, timestamp_type(), false));
        fields.push(Field::new(WINDOW_END, timestamp_type(), false));
        self.add(table, Arc::new(Schema::new(fields)));
    }

    /// A view, readable by the statements after it.
    pub fn add_view(&mut self, name: &str, schema: SchemaRef) {
        self.add(name, schema);
    }

    fn add(&mut self, name: &str, schema: SchemaRef) {
        self.tables
            .push((name.to_string(), Arc::new(LogicalTableSource::new(schema))));
    }
}

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
