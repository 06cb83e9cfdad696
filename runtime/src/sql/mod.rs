//! The SQL front end: a pipeline's `sql` script, planned by DataFusion's SQL planner against
//! the source's schema, lowered onto Weir's operators (`lower.rs`).
//!
//! Parsing, statement shape and table names are checked by `weir_crds::sql` (the operator
//! runs those checks too); here DataFusion resolves columns, types and functions, and its
//! errors come back with the statement and the line and column in the script.
//!
//! Each `INSERT` lowers to the steps computing its result from the source (a branch of
//! the job's dataflow, [`crate::plan::flow`]); `CREATE VIEW`s are inlined where they are read,
//! and branches that begin alike share those operators when the plan is built.

mod catalog;
mod group_by;
mod join;
mod lower;
mod needs;
mod top_n;

#[cfg(test)]
mod tests;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::diagnostic::Diagnostic;
use datafusion::error::DataFusionError;
use datafusion::sql::planner::{NullOrdering, ParserOptions, SqlToRel};
use std::sync::Arc;

use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement as AstStatement;
use weir_crds::sql::{Pos, SqlError, Statement, Target, WindowCall};
use weir_crds::validate::sql::at_sql;
use weir_crds::{FieldError, JobFile};

use crate::plan::flow::{Branch, Step};

use catalog::Catalog;

/// What a script lowers to.
#[derive(Debug, Clone, PartialEq)]
pub struct Lowered {
    /// One branch per `INSERT`, in script order.
    pub branches: Vec<Branch>,
}

/// Plan the job's `sql` against the source's record schema. The job has passed
/// `weir_crds::validate` (as every job `load_job` returns has): the script parses, the
/// source is named, and every table a statement reads and every window input exist.
///
/// # Errors
/// Every problem found, as errors at the job's `sql` field carrying the statement, line and
/// column in the script.
pub fn lower_script(job: &JobFile, schemas: &[SchemaRef]) -> Result<Lowered, Vec<FieldError>> {
    // A statement may be as deep as the script's token bound allows (`weir_crds::sql::
    // MAX_DEPTH`), and more than DataFusion walks it: cloning, rewriting and dropping its
    // syntax tree recurse once per level, at several KiB a level in an unoptimised build, which
    // overflowed a 2 MiB task stack at the bound. So planning runs on a stack of its own when
    // less than `STACK_LEFT` is left.
    const STACK_LEFT: usize = 16 << 20;
    const STACK: usize = 64 << 20;
    stacker::maybe_grow(STACK_LEFT, STACK, || lower_script_here(job, schemas))
}

/// [`lower_script`], on whatever stack it was given.
fn lower_script_here(job: &JobFile, schemas: &[SchemaRef]) -> Result<Lowered, Vec<FieldError>> {
    let script = job.pipeline.sql.as_deref().unwrap_or_default();
    let statements =
        weir_crds::sql::parse(script).map_err(|e| e.iter().map(at_sql).collect::<Vec<_>>())?;
    // The sources in the plan's order (`source`, then `sources`), by name, with their
    // columns and schemas.
    let sources: Vec<lower::SourceTable> = std::iter::once(&job.pipeline.source)
        .chain(&job.pipeline.sources)
        .zip(schemas)
        .map(|(spec, schema)| lower::SourceTable {
            name: spec
                .name
                .as_deref()
                .map(str::to_lowercase)
                .unwrap_or_default(),
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            schema: Arc::clone(schema),
        })
        .collect();
    let windows: Vec<WindowCall> = statements.iter().flat_map(|s| s.windows.clone()).collect();
    let mut views: Vec<(String, LogicalPlan)> = Vec::new();
    let mut errs = Vec::new();
    let mut branches: Vec<Branch> = Vec::new();
    let mut failed_views: Vec<String> = Vec::new();
    for st in &statements {
        // A statement reading a view that failed would only repeat the view's error.
        if st
            .tables_read()
            .iter()
            .any(|(t, _)| failed_views.contains(t))
        {
            if let Target::View(name) = &st.target {
                failed_views.push(name.clone());
            }
            continue;
        }
        let cx = lower::Context {
            sources: &sources,
            windows: &windows,
            views: &views,
            state_ttl: job.pipeline.state_ttl.map(|d| d.as_millis_i64()),
            join_needs: None,
            budget: None,
        };
        let planned = statement(st, &cx);
        match (planned, &st.target) {
            (Ok((plan, _)), Target::View(name)) => views.push((name.clone(), plan)),
            (Ok((_, steps)), Target::Sink(sink)) => branches.push(Branch {
                steps,
                sinks: vec![sink.clone()],
                line: usize::try_from(st.at.line).unwrap_or(1),
            }),
            (Err(e), target) => {
                if let Target::View(name) = target {
                    failed_views.push(name.clone());
                }
                errs.push(at_sql(&e));
            }
        }
    }
    if errs.is_empty() {
        Ok(Lowered { branches })
    } else {
        Err(errs)
    }
}

/// Plan one statement and lower it (a view is lowered too, so its errors are reported at
/// its own statement).
fn statement(
    st: &Statement,
    cx: &lower::Context<'_>,
) -> Result<(LogicalPlan, Vec<Step>), SqlError> {
    let err = |at: Option<Pos>, message: String| SqlError {
        statement: Some(st.number),
        at: at.or(Some(st.at)),
        message,
    };
    let mut catalog = Catalog::default();
    for s in cx.sources {
        catalog.add_source(&s.name, &s.schema);
    }
    for (name, plan) in cx.views {
        catalog.add_view(name, Arc::new(plan.schema().as_arrow().clone()));
    }
    for w in &st.windows {
        // Over a view, the window table has the view's columns; over a source, the source's.
        let view = cx
            .views
            .iter()
            .find(|(v, _)| *v == w.input)
            .map(|(_, plan)| Arc::new(plan.schema().as_arrow().clone()));
        let input = view.or_else(|| {
            cx.sources
                .iter()
                .find(|s| s.name == w.input)
                .map(|s| Arc::clone(&s.schema))
        });
        if let Some(input) = input {
            catalog.add_window(&w.table, &input);
        }
    }
    let options = ParserOptions {
        parse_float_as_decimal: false,
        // Column names are case-sensitive, as in Flink SQL and in the source's schema.
        enable_ident_normalization: false,
        support_varchar_with_length: true,
        enable_options_value_normalization: false,
        collect_spans: true,
        // The operators and sinks speak Utf8; a cast to VARCHAR must not bring in Utf8View.
        map_string_types_to_utf8view: false,
        default_null_ordering: NullOrdering::NullsMax,
    };
    let planner = SqlToRel::new_with_options(&catalog, options);
    let plan = planner
        .sql_statement_to_plan(AstStatement::Query(st.query.clone()))
        .map_err(|e| {
            let (at, message) = describe(&e);
            err(at, message)
        })?;
    let lowered = lower::lower(&plan, cx).map_err(|m| err(None, m))?;
    Ok((plan, lowered.steps))
}

/// DataFusion's error as a sentence, with where it points when it knows.
fn describe(e: &DataFusionError) -> (Option<Pos>, String) {
    let at = e
        .diagnostic()
        .and_then(|d: &Diagnostic| d.span)
        .and_then(|s| {
            (s.start.line > 0).then_some(Pos {
                line: s.start.line,
                column: s.start.column,
            })
        });
    (
        at,
        without_window_tables(&crate::expr::clean(&e.strip_backtrace())),
    )
}

/// DataFusion names columns of a window call by the table that stands for it; the user
/// never wrote that name.
pub(crate) fn without_window_tables(message: &str) -> String {
    let prefix = weir_crds::sql::WINDOW_PREFIX;
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        let after = &rest[i + prefix.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let after = &after[digits..];
        rest = after.strip_prefix('.').unwrap_or(after);
    }
    out.push_str(rest);
    out
}
