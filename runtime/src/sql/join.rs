//! A SQL join lowered onto Weir's join operator: both inputs lowered on their own, the
//! condition (`ON`, `USING`, or the `WHERE` of `FROM a, b`) split into what the operator
//! needs to know apart: equalities between a column of each input (the keys), comparisons of
//! a column of each input with a constant interval between them (candidates for the time
//! bound), and the rest. Which comparisons bound event time is decided by the planner,
//! which knows each input's event-time column.

use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, JoinType, Operator};

use super::lower::{Context, Lowered, lower_node, same_column, to_sql, weir_name};
use crate::ids::Millis;
use crate::operator::join::JoinKind;
use crate::plan::flow::Step;
use crate::plan::join::{Compare, JoinSpec};

/// Lower `join`, with `extra` (the `WHERE` over an inner join) as part of its condition.
///
/// # Errors
/// A join type or condition Weir cannot run, in words for the user.
pub(super) fn lower(
    join: &Join,
    extra: Option<&Expr>,
    cx: &Context<'_>,
) -> Result<Lowered, String> {
    let kind = match join.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::Right => JoinKind::Right,
        JoinType::Full => JoinKind::Full,
        other => {
            return Err(format!(
                "{other} joins (from IN, EXISTS or a semi/anti join) are not supported yet; write an inner or outer join"
            ));
        }
    };
    let mut sides = [lower_node(&join.left, cx)?, lower_node(&join.right, cx)?];
    if sides.iter().any(|s| s.pending.is_some()) {
        return Err(
            "a window table function is only supported under `GROUP BY window_start, window_end, ...`; group each input of the join first"
                .into(),
        );
    }
    if let Some(needed) = cx.join_needs.and_then(|n| n.of_join(join)) {
        let inputs = [join.left.schema(), join.right.schema()];
        for (side, schema) in sides.iter_mut().zip(inputs) {
            narrow(side, schema, needed)?;
        }
    }
    // The output: the left input's columns, then the right's, each keeping its name unless
    // the left has it already.
    let mut names: Vec<(Column, String)> = Vec::new();
    for side in &sides {
        for (c, w) in &side.names {
            let mut name = w.clone();
            let mut n = 2;
            while names.iter().any(|(_, x)| *x == name) {
                name = format!("{w}_{n}");
                n += 1;
            }
            names.push((c.clone(), name));
        }
    }
    let inputs = [join.left.schema(), join.right.schema()];
    let mut spec = JoinSpec {
        kind,
        on: Vec::new(),
        compares: Vec::new(),
        filter: None,
        names: names.iter().map(|(_, w)| w.clone()).collect(),
        ttl: cx.state_ttl,
    };
    let mut rest: Vec<String> = Vec::new();
    let mut conjuncts: Vec<Expr> = Vec::new();
    for (l, r) in &join.on {
        conjuncts.push(l.clone().eq(r.clone()));
    }
    for e in join.filter.iter().chain(extra) {
        conjuncts.extend(split_conjunction(e).into_iter().cloned());
    }
    for e in &conjuncts {
        for part in between_parts(e) {
            match compare(&part, &inputs) {
                Some(Cmp { left, right, op, k }) => {
                    let lw = weir_name(&left, &sides[0].names)?;
                    let rw = weir_name(&right, &sides[1].names)?;
                    let (lo, hi) = match op {
                        Operator::Eq if k == 0 => {
                            spec.on.push((lw, rw));
                            continue;
                        }
                        Operator::Eq => (Some(k), Some(k)),
                        Operator::Lt => (None, Some(k.saturating_sub(1))),
                        Operator::LtEq => (None, Some(k)),
                        Operator::Gt => (Some(k.saturating_add(1)), None),
                        _ => (Some(k), None),
                    };
                    spec.compares.push(Compare {
                        left: lw,
                        right: rw,
                        lo,
                        hi,
                        sql: to_sql(&part, &names)?,
                    });
                }
                None => match one_side(&part, &inputs) {
                    // A condition on one input only is applied before the shuffle, where
                    // that does not change which rows an outer join pads: fewer rows
                    // travel and fewer are kept.
                    Some(side) if kind == JoinKind::Inner || kind.keeps_unmatched(1 - side) => {
                        let sql = to_sql(&part, &sides[side].names)?;
                        sides[side]
                            .steps
                            .push(Step::Transform(weir_crds::Transform::Filter(sql)));
                    }
                    _ => rest.push(to_sql(&part, &names)?),
                },
            }
        }
    }
    spec.filter = (!rest.is_empty()).then(|| {
        rest.iter()
            .map(|f| format!("({f})"))
            .collect::<Vec<_>>()
            .join(" AND ")
    });
    let [left, right] = [
        std::mem::take(&mut sides[0].steps),
        std::mem::take(&mut sides[1].steps),
    ];
    Ok(Lowered {
        steps: vec![Step::Join(spec, Box::new([left, right]))],
        names,
        pending: None,
    })
}

/// Keep of one input of a join only the columns `needed` (what the statement reads of the
/// join's output, and its condition's columns) and its timestamps (its event time, and any
/// column that may bound how long its rows are kept): a select step at the end of its
/// steps, unless it keeps everything.
fn narrow(side: &mut Lowered, schema: &DFSchemaRef, needed: &[Column]) -> Result<(), String> {
    use datafusion::arrow::datatypes::DataType;
    let kept: Vec<Column> = schema
        .columns()
        .into_iter()
        .zip(schema.fields())
        .filter(|(c, f)| {
            matches!(f.data_type(), DataType::Timestamp(..))
                || needed.iter().any(|n| same_column(c, n))
        })
        .map(|(c, _)| c)
        .collect();
    let names: Vec<(Column, String)> = side
        .names
        .iter()
        .filter(|(c, _)| kept.iter().any(|k| same_column(k, c)))
        .cloned()
        .collect();
    if names.len() == side.names.len() || names.is_empty() {
        return Ok(());
    }
    let mut select = indexmap::IndexMap::new();
    for (c, w) in &names {
        select.insert(w.clone(), to_sql(&Expr::Column(c.clone()), &side.names)?);
    }
    side.steps
        .push(Step::Transform(weir_crds::Transform::Select(select)));
    side.names = names;
    Ok(())
}

/// The one input whose columns `e` reads, if it reads columns of one input only.
fn one_side(e: &Expr, inputs: &[&DFSchemaRef; 2]) -> Option<usize> {
    let refs = e.column_refs();
    (0..2).find(|&s| !refs.is_empty() && refs.iter().all(|c| inputs[s].has_column(c)))
}

/// `x BETWEEN a AND b` as `x >= a` and `x <= b`; anything else as itself.
fn between_parts(e: &Expr) -> Vec<Expr> {
    match e {
        Expr::Between(b) if !b.negated => vec![
            (*b.expr).clone().gt_eq((*b.low).clone()),
            (*b.expr).clone().lt_eq((*b.high).clone()),
        ],
        other => vec![other.clone()],
    }
}

/// `left - right <op> k`: a comparison of a left and a right column.
struct Cmp {
    left: Column,
    right: Column,
    op: Operator,
    k: Millis,
}

/// `e` as a comparison of a column of each input, each plus or minus a constant interval.
fn compare(e: &Expr, inputs: &[&DFSchemaRef; 2]) -> Option<Cmp> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    if !matches!(
        op,
        Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
    ) {
        return None;
    }
    let (a, ka) = column_plus(left)?;
    let (b, kb) = column_plus(right)?;
    let side = |c: &Column| {
        if inputs[0].has_column(c) {
            Some(0)
        } else if inputs[1].has_column(c) {
            Some(1)
        } else {
            None
        }
    };
    // a + ka <op> b + kb  <=>  a - b <op> kb - ka
    let k = kb.checked_sub(ka)?;
    match (side(&a)?, side(&b)?) {
        (0, 1) => Some(Cmp {
            left: a,
            right: b,
            op: *op,
            k,
        }),
        // b - a <op'> -k, the comparison seen from the other side.
        (1, 0) => Some(Cmp {
            left: b,
            right: a,
            op: op.swap()?,
            k: k.checked_neg()?,
        }),
        _ => None,
    }
}

/// `c`, `c + INTERVAL ...` or `c - INTERVAL ...`, as the column and the offset in
/// milliseconds.
fn column_plus(e: &Expr) -> Option<(Column, Millis)> {
    match e {
        Expr::Column(c) => Some((c.clone(), 0)),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Expr::Column(c) = left.as_ref() else {
                return None;
            };
            let Expr::Literal(v, _) = right.as_ref() else {
                return None;
            };
            let ms = interval_ms(v)?;
            match op {
                Operator::Plus => Some((c.clone(), ms)),
                Operator::Minus => Some((c.clone(), ms.checked_neg()?)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A fixed-length interval in milliseconds (months have no fixed length).
fn interval_ms(v: &ScalarValue) -> Option<Millis> {
    match v {
        ScalarValue::IntervalDayTime(Some(d)) => {
            Some(i64::from(d.days) * 86_400_000 + i64::from(d.milliseconds))
        }
        ScalarValue::IntervalMonthDayNano(Some(m)) if m.months == 0 => {
            Some(i64::from(m.days) * 86_400_000 + m.nanoseconds / 1_000_000)
        }
        _ => None,
    }
}
