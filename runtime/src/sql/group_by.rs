//! `GROUP BY` without a window table function, and `SELECT DISTINCT`. Two ways to run it,
//! chosen when planning (`plan/check.rs::time_key`), where event time is known:
//! - over rows that carry their event time in a group key (`GROUP BY starttime, endtime`
//!   over a windowed query's results, Nexmark q5) every row of a group has the group's event
//!   time, so the group is complete once the watermark passes it and its aggregate is final,
//!   append-only: a tumbling window of one millisecond keyed by every group key (the window
//!   `[t, t + 1)` of a group at time `t` holds exactly that group);
//! - otherwise the result updates as rows arrive: a changelog (`operator/group_by.rs`).
//!
//! `SELECT DISTINCT` is a `GROUP BY` of every column without aggregates: each row is emitted
//! once, the first time it is seen, so its result only ever inserts.

use datafusion::common::Column;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use indexmap::IndexMap;
use weir_crds::{Duration, LatePolicy, Transform, WindowSpec};

use super::lower::{Lowered, aggregates_of, to_sql, unalias, weir_name};
use crate::operator::window::{WINDOW_END, WINDOW_START};
use crate::plan::flow::Step;

/// Lower `a` over `inner` (which has no pending window call). A key that is an expression
/// (`GROUP BY auction, to_char(date_time, '%Y-%m-%d')`) is computed first, by a select that
/// passes every column on beside it.
///
/// # Errors
/// An aggregate Weir does not run.
pub(super) fn lower(
    a: &Aggregate,
    mut inner: Lowered,
    ttl: Option<crate::ids::Millis>,
) -> Result<Lowered, String> {
    let out = a.schema.columns();
    let mut names: Vec<(Column, String)> = Vec::new();
    let mut keys = Vec::new();
    let mut computed: IndexMap<String, String> = IndexMap::new();
    for (i, (g, df)) in a.group_expr.iter().zip(&out).enumerate() {
        let weir = match unalias(g) {
            Expr::Column(c) => weir_name(c, &inner.names)?,
            e => {
                let name = format!("__key_{i}");
                computed.insert(name.clone(), to_sql(e, &inner.names)?);
                name
            }
        };
        keys.push(weir.clone());
        names.push((df.clone(), weir));
    }
    if !computed.is_empty() {
        // Only what the keys and the aggregates read is shuffled on.
        let mut select: IndexMap<String, String> = IndexMap::new();
        for e in &a.aggr_expr {
            for c in e.column_refs() {
                let w = weir_name(c, &inner.names)?;
                select.insert(w.clone(), w);
            }
        }
        for k in &keys {
            if !computed.contains_key(k) {
                select.insert(k.clone(), k.clone());
            }
        }
        select.extend(computed);
        inner.steps.push(Step::Transform(Transform::Select(select)));
    }
    // A window's bounds follow its keys (when it runs as one); nothing after reads them.
    for bound in [WINDOW_START, WINDOW_END] {
        names.push((Column::new_unqualified(format!("__{bound}")), bound.into()));
    }
    let mut aggregates = IndexMap::new();
    aggregates_of(a, &out, &inner.names, &mut aggregates, &mut names)?;
    inner
        .steps
        .push(Step::GroupBy(group_spec(keys, aggregates), ttl));
    inner.names = names;
    Ok(inner)
}

/// `SELECT DISTINCT` over `plan`, which lowered to `inner`: a `GROUP BY` of every column
/// without aggregates, then only those columns.
///
/// # Errors
/// A window call not grouped.
pub(super) fn distinct(
    plan: &LogicalPlan,
    mut inner: Lowered,
    ttl: Option<crate::ids::Millis>,
) -> Result<Lowered, String> {
    if inner.pending.is_some() {
        return Err(
            "SELECT DISTINCT over a window table function: group by window_start, window_end instead"
                .into(),
        );
    }
    let columns = plan.schema().columns();
    let keys = columns
        .iter()
        .map(|c| weir_name(c, &inner.names))
        .collect::<Result<Vec<_>, _>>()?;
    inner.steps.push(Step::GroupBy(
        group_spec(keys.clone(), IndexMap::new()),
        ttl,
    ));
    let select = keys.iter().map(|k| (k.clone(), k.clone())).collect();
    inner.steps.push(Step::Transform(Transform::Select(select)));
    inner.names = columns.into_iter().zip(keys).collect();
    Ok(inner)
}

/// A `GROUP BY` as its step holds it: keys and aggregates, and the one-millisecond window it
/// is when planning finds the event time among the keys.
fn group_spec(key_by: Vec<String>, aggregates: IndexMap<String, String>) -> WindowSpec {
    WindowSpec {
        id: None,
        tumbling: Some(Duration::from_millis(1)),
        sliding: None,
        session: None,
        key_by,
        aggregates,
        late_records: LatePolicy::Drop {},
    }
}
