//! `WHERE rownum <= N` over `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) AS rownum`
//! lowered onto the top-N operator: the filter, the projections and aliases between it and
//! the window function, and the window function read together, since none of them means
//! anything on a stream alone.

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator};

use super::lower::{Context, Lowered, alias, lower_node, project, unalias, weir_name};
use crate::plan::flow::Step;
use crate::plan::top_n::TopNSpec;

/// The row-number column inside the plan (a query names it as it likes with `AS`).
const ROW_NUMBER: &str = "__row_number";

/// `f` as a top-N, or `None` when it is not a filter on a row number.
///
/// # Errors
/// A top-N Weir cannot run, in words for the user.
pub(super) fn lower(f: &Filter, cx: &Context<'_>) -> Result<Option<Lowered>, String> {
    let Some((mut col, n)) = limit(&f.predicate) else {
        return Ok(None);
    };
    // Down to the window function, following the filtered column back to where it is made.
    let mut chain: Vec<&LogicalPlan> = Vec::new();
    let mut node = f.input.as_ref();
    let window = loop {
        match node {
            LogicalPlan::SubqueryAlias(a) => {
                let Some(i) = a.schema.columns().iter().position(|c| *c == col) else {
                    return Ok(None);
                };
                col = a.input.schema().columns()[i].clone();
                chain.push(node);
                node = &a.input;
            }
            LogicalPlan::Projection(p) => {
                let Some(i) = p.schema.columns().iter().position(|c| *c == col) else {
                    return Ok(None);
                };
                let Expr::Column(c) = unalias(&p.expr[i]) else {
                    return Ok(None);
                };
                col = c.clone();
                chain.push(node);
                node = &p.input;
            }
            LogicalPlan::Window(w) => break w,
            _ => return Ok(None),
        }
    };
    let width = window.input.schema().fields().len();
    if window.schema.columns().iter().position(|c| *c == col) != Some(width) {
        return Ok(None);
    }
    let [Expr::WindowFunction(wf)] = window.window_expr.as_slice() else {
        return Err("one window function per OVER query: ROW_NUMBER() for a top-N".into());
    };
    if wf.fun.name() != "row_number" {
        return Err(format!(
            "`{}` OVER (...) is not supported; ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) <= N is (a top-N)",
            wf.fun.name()
        ));
    }
    let mut inner = lower_node(&window.input, cx)?;
    if inner.pending.is_some() {
        return Err(
            "a window table function is only supported under `GROUP BY window_start, window_end, ...`; rank the results of a windowed GROUP BY"
                .into(),
        );
    }
    let column = |e: &Expr| match e {
        Expr::Column(c) => weir_name(c, &inner.names),
        other => Err(format!(
            "`{other}`: PARTITION BY and ORDER BY take columns; compute the value in a subquery"
        )),
    };
    let partition = wf
        .params
        .partition_by
        .iter()
        .map(column)
        .collect::<Result<Vec<_>, _>>()?;
    let order = wf
        .params
        .order_by
        .iter()
        .map(|s| column(&s.expr).map(|c| (c, !s.asc, s.nulls_first)))
        .collect::<Result<Vec<_>, _>>()?;
    if order.is_empty() {
        return Err(
            "ROW_NUMBER() OVER (...) needs an ORDER BY to say which rows are the top".into(),
        );
    }
    inner.steps.push(Step::TopN(TopNSpec {
        partition,
        order,
        n,
        rownum: ROW_NUMBER.into(),
        ttl: cx.state_ttl,
    }));
    inner.names.push((col, ROW_NUMBER.into()));
    // Back up through the projections and aliases, as the query wrote them.
    for node in chain.into_iter().rev() {
        inner = match node {
            LogicalPlan::Projection(p) => project(p, inner)?,
            LogicalPlan::SubqueryAlias(a) => alias(a, inner),
            _ => inner,
        };
    }
    Ok(Some(inner))
}

/// `c <= N`, `c < N`, `N >= c`, `N > c` or `c = 1`: the column and how many rows it keeps.
fn limit(e: &Expr) -> Option<(Column, usize)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let (c, op, v) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, op.swap()?, v),
        _ => return None,
    };
    let v = match v {
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok()?,
        _ => return None,
    };
    let n = match op {
        Operator::LtEq => v,
        Operator::Lt => v - 1,
        Operator::Eq if v == 1 => 1,
        _ => return None,
    };
    Some((c.clone(), usize::try_from(n).ok()?))
}
