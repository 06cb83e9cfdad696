//! `GROUP BY` without a window table function, over rows that carry their event time in a
//! group key (`GROUP BY starttime, endtime` over a windowed query's results, Nexmark q5):
//! every row of a group has the group's event time, so the group is complete once the
//! watermark passes it and its aggregate is final, append-only. It runs as a tumbling window
//! of one millisecond keyed by every group key: the window `[t, t + 1)` of a group at time
//! `t` holds exactly that group. Whether a key is the event time is known when planning
//! (`plan/check.rs`), which refuses the grouping otherwise (its result would update).

use datafusion::common::Column;
use datafusion::logical_expr::{Aggregate, Expr};
use indexmap::IndexMap;
use weir_crds::{Duration, LatePolicy, WindowSpec};

use super::lower::{Lowered, aggregates_of, weir_name};
use crate::operator::window::{WINDOW_END, WINDOW_START};
use crate::plan::flow::Step;

/// Lower `a` over `inner` (which has no pending window call).
///
/// # Errors
/// A group key that is not a column; an aggregate Weir does not run.
pub(super) fn lower(a: &Aggregate, mut inner: Lowered) -> Result<Lowered, String> {
    let out = a.schema.columns();
    let mut names: Vec<(Column, String)> = Vec::new();
    let mut keys = Vec::new();
    for (g, df) in a.group_expr.iter().zip(&out) {
        let Expr::Column(c) = g else {
            return Err(format!(
                "GROUP BY `{g}`: group by columns; compute the value in a subquery and group by its name"
            ));
        };
        let weir = weir_name(c, &inner.names)?;
        keys.push(weir.clone());
        names.push((df.clone(), weir));
    }
    // The window's bounds follow its keys; nothing after reads them.
    for bound in [WINDOW_START, WINDOW_END] {
        names.push((Column::new_unqualified(format!("__{bound}")), bound.into()));
    }
    let mut aggregates = IndexMap::new();
    aggregates_of(a, &out, &inner.names, &mut aggregates, &mut names)?;
    inner.steps.push(Step::TimeGroup(WindowSpec {
        tumbling: Some(Duration::from_millis(1)),
        sliding: None,
        session: None,
        key_by: keys,
        aggregates,
        late_records: LatePolicy::Drop {},
    }));
    inner.names = names;
    Ok(inner)
}
