//! DataFusion's logical plan of one statement, lowered onto Weir's streaming operators.
//!
//! The plan is read bottom-up, unoptimised, so each node is what the user wrote: a scan of
//! the source (or of a window call's table), `WHERE` and `HAVING` (filters), the `SELECT`
//! list (a projection), `GROUP BY window_start, window_end, ...` (a window) and `UNION ALL`
//! (a union of the inputs' own steps). Each becomes
//! the transform the YAML form would have, so SQL and YAML jobs share one planner, one set of
//! operators and one checkpoint format. What has no streaming operator yet is refused here,
//! naming the construct, never approximated.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan, Projection, SubqueryAlias};
use datafusion::sql::unparser::Unparser;
use indexmap::IndexMap;
use weir_crds::sql::{WindowCall, WindowKind};
use weir_crds::{Duration, LatePolicy, SessionSpec, SlidingSpec, Transform, WindowSpec};

use crate::operator::window::{WINDOW_END, WINDOW_START};
use crate::plan::flow::Step;

/// What a statement lowers to so far: steps in order, the name each output column of
/// the plan node has in Weir's records, and a window call whose `GROUP BY` is still to come.
#[derive(Debug, Default)]
pub struct Lowered {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Weir's columns, in order: (DataFusion's column, Weir's column name).
    pub names: Vec<(Column, String)>,
    /// A window call read but not yet grouped.
    pub pending: Option<WindowCall>,
}

/// A source as a table a statement reads.
pub struct SourceTable {
    /// Its name, lowercase.
    pub name: String,
    /// Its column names.
    pub columns: Vec<String>,
    /// Its records' schema.
    pub schema: datafusion::arrow::datatypes::SchemaRef,
}

/// What a plan node may read: the sources (the job's `source` first, then its `sources`),
/// window tables and views defined before.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The sources, in the plan's order.
    pub sources: &'a [SourceTable],
    /// Every window call of the script.
    pub windows: &'a [WindowCall],
    /// Views defined so far, with their plans.
    pub views: &'a [(String, LogicalPlan)],
    /// How long a regular join keeps a row (`stateTtl`), in milliseconds of event time.
    pub state_ttl: Option<crate::ids::Millis>,
    /// What the statement reads of each join's output (set by [`lower`]).
    pub join_needs: Option<&'a super::needs::JoinNeeds>,
    /// How much of the statement has been lowered so far (set by [`lower`]).
    pub budget: Option<&'a Budget>,
}

/// Plan nodes one statement may lower, its views inlined. Each read of a view lowers the
/// view's plan again, so a script a few lines long (each view reading the one before twice)
/// would otherwise lower 2^n nodes; a person's statement lowers a few dozen.
pub const MAX_NODES: usize = 10_000;

/// How deep lowering may recurse: plan nodes within one another, the plans of the views
/// read inlined. The token bound (`weir_crds::sql::MAX_DEPTH`) keeps each statement
/// shallow, but a chain of views, each reading the one before, lowers as one plan as deep as
/// all of them together. [`lower_node`] grows the stack as it goes, so this bounds what the
/// steps built from the plan (and the walks over them) can be, not the stack; a chain at
/// this depth lowers on a 2 MiB thread stack in an unoptimised build (`sql::tests`).
pub const MAX_NESTING: usize = 512;

/// What lowering one statement has used of [`MAX_NODES`] and [`MAX_NESTING`].
#[derive(Debug, Default)]
pub struct Budget {
    nodes: std::cell::Cell<usize>,
    nesting: std::cell::Cell<usize>,
}

/// Lower `plan`.
///
/// # Errors
/// The construct that has no streaming operator, or an expression that cannot be written
/// back as SQL, in words for the user.
pub fn lower(plan: &LogicalPlan, cx: &Context<'_>) -> Result<Lowered, String> {
    let needs = super::needs::JoinNeeds::of(plan);
    let budget = Budget::default();
    let cx = Context {
        join_needs: Some(&needs),
        budget: Some(&budget),
        ..*cx
    };
    let mut out = lower_node(plan, &cx)?;
    if let Some(w) = out.pending.take() {
        return Err(format!(
            "a window table function is only supported under `GROUP BY window_start, window_end, ...`; {}({}) here has none",
            kind_name(w.kind),
            w.input
        ));
    }
    // A sink's columns (and a view's) are what the statement names; DataFusion's names for
    // unnamed expressions (`count(*)`, `amount * 2`) are not names a table can have, and
    // would differ between two statements that compute the same thing.
    for (i, name) in field_names(plan.schema()).iter().enumerate() {
        if !is_plain_name(name) {
            return Err(format!(
                "output column {} (`{}`) has no name; name it with `AS <name>`",
                i + 1,
                crate::sql::without_window_tables(name)
            ));
        }
    }
    Ok(out)
}

/// Lower `plan` and what it reads, within the statement's [`Budget`]. Every recursion of
/// lowering passes through here, which grows the stack when little is left: in an
/// unoptimised build a level takes about 18 KiB, so a 2 MiB task stack held only about a
/// hundred levels.
#[recursive::recursive]
pub(super) fn lower_node(plan: &LogicalPlan, cx: &Context<'_>) -> Result<Lowered, String> {
    let Some(budget) = cx.budget else {
        return lower_one(plan, cx);
    };
    let nodes = budget.nodes.get() + 1;
    if nodes > MAX_NODES {
        return Err(format!(
            "lowers to more than {MAX_NODES} plan nodes once the views it reads are inlined (a view read twice is inlined twice, so views that each read the one before more than once double with every level); read such views once, or write the query without them"
        ));
    }
    budget.nodes.set(nodes);
    let nesting = budget.nesting.get() + 1;
    if nesting > MAX_NESTING {
        return Err(format!(
            "is nested more than {MAX_NESTING} plan nodes deep once the views it reads are inlined (a chain of views, each reading the one before, is one query as deep as all of them); merge some of the views"
        ));
    }
    budget.nesting.set(nesting);
    let out = lower_one(plan, cx);
    budget.nesting.set(nesting - 1);
    out
}

/// Lower one plan node (its inputs through [`lower_node`]).
fn lower_one(plan: &LogicalPlan, cx: &Context<'_>) -> Result<Lowered, String> {
    let windows = cx.windows;
    match plan {
        LogicalPlan::TableScan(scan) => {
            if !scan.filters.is_empty() || scan.fetch.is_some() {
                return Err("internal: a scan with pushed-down filters".into());
            }
            let table = scan.table_name.table().to_lowercase();
            if let Some((_, view)) = cx.views.iter().find(|(v, _)| *v == table) {
                // A view is its query, inlined: the same transforms as if written here.
                let mut inner = lower_node(view, cx)?;
                inner.names = requalify(inner.names, view.schema(), &scan.projected_schema);
                return Ok(inner);
            }
            // Reading source `i`: the steps start there (the first source is where every
            // chain starts unless told otherwise).
            let from_source = |i: usize| Lowered {
                steps: if i == 0 { Vec::new() } else { vec![Step::Read(i)] },
                names: cx.sources[i]
                    .columns
                    .iter()
                    .map(|c| (Column::new_unqualified(c), c.clone()))
                    .collect(),
                pending: None,
            };
            if let Some(i) = cx.sources.iter().position(|s| s.name == table) {
                return Ok(from_source(i));
            }
            let Some(w) = windows.iter().find(|w| w.table == table) else {
                let names: Vec<&str> = cx.sources.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "table `{table}` not found; the sources are {}",
                    names.join(", ")
                ));
            };
            // A window over a view windows what the view computes (its columns, and the
            // event time it passes through).
            let mut inner = match cx.views.iter().find(|(v, _)| *v == w.input) {
                Some((_, view)) => {
                    let mut inner = lower_node(view, cx)?;
                    inner.names = requalify(inner.names, view.schema(), &scan.projected_schema);
                    inner
                }
                None => from_source(
                    cx.sources
                        .iter()
                        .position(|s| s.name == w.input)
                        .unwrap_or(0),
                ),
            };
            for bound in [WINDOW_START, WINDOW_END] {
                inner
                    .names
                    .push((Column::new_unqualified(bound), bound.into()));
            }
            inner.pending = Some(w.clone());
            Ok(inner)
        }
        LogicalPlan::SubqueryAlias(a) => Ok(alias(a, lower_node(&a.input, cx)?)),
        LogicalPlan::Filter(f) => {
            if let Some(top) = super::top_n::lower(f, cx)? {
                return Ok(top);
            }
            if let LogicalPlan::Join(j) = f.input.as_ref() {
                // `FROM a, b WHERE a.k = b.k AND ...`: the WHERE of an inner join is its
                // condition.
                if j.join_type == datafusion::logical_expr::JoinType::Inner {
                    return super::join::lower(j, Some(&f.predicate), cx);
                }
            }
            let mut inner = lower_node(&f.input, cx)?;
            if inner.pending.is_some() && uses_window_columns(&f.predicate) {
                return Err(
                    "window_start and window_end can be filtered only after the GROUP BY (in HAVING or an outer query)"
                        .into(),
                );
            }
            let sql = to_sql(&f.predicate, &inner.names)?;
            inner.steps.push(Step::Transform(Transform::Filter(sql)));
            Ok(inner)
        }
        LogicalPlan::Projection(p) => project(p, lower_node(&p.input, cx)?),
        LogicalPlan::Aggregate(a) => {
            let mut inner = lower_node(&a.input, cx)?;
            let Some(window) = inner.pending.take() else {
                return super::group_by::lower(a, inner, cx.state_ttl);
            };
            let mut keys = Vec::new();
            let (mut has_start, mut has_end) = (false, false);
            for g in &a.group_expr {
                let Expr::Column(c) = g else {
                    return Err(format!(
                        "GROUP BY `{g}`: group by columns; compute the value in a subquery and group by its name"
                    ));
                };
                let weir = weir_name(c, &inner.names)?;
                match weir.as_str() {
                    WINDOW_START => has_start = true,
                    WINDOW_END => has_end = true,
                    _ => keys.push(weir),
                }
            }
            if !(has_start && has_end) {
                return Err("a windowed GROUP BY groups by both window_start and window_end".into());
            }
            if !window.partition_by.is_empty() {
                let mut p = window.partition_by.clone();
                let mut k = keys.clone();
                p.sort();
                k.sort();
                if p != k {
                    return Err(format!(
                        "SESSION(... PARTITION BY {}) must partition by the GROUP BY keys ({})",
                        window.partition_by.join(", "),
                        keys.join(", ")
                    ));
                }
            }
            if window.partition_by.is_empty()
                && !keys.is_empty()
                && matches!(window.kind, WindowKind::Session { .. })
            {
                // Without PARTITION BY a session spans every key (a gap in one key's records
                // does not end it while others arrive); Weir's sessions are per key.
                return Err(format!(
                    "SESSION without PARTITION BY makes sessions across all keys; write SESSION(TABLE {} PARTITION BY {}, ...) for sessions per key",
                    window.input,
                    keys.join(", ")
                ));
            }
            let out_names = a.schema.columns();
            let mut aggregates = IndexMap::new();
            // In the order the window operator emits: keys, window_start, window_end, then
            // the aggregates; a SELECT in another order is then a projection, not skipped.
            let mut grouped: Vec<(Column, String)> = Vec::new();
            for (g, df) in a.group_expr.iter().zip(&out_names) {
                if let Expr::Column(c) = g {
                    grouped.push((df.clone(), weir_name(c, &inner.names)?));
                }
            }
            let is_bound = |w: &str| w == WINDOW_START || w == WINDOW_END;
            let mut names: Vec<(Column, String)> = grouped
                .iter()
                .filter(|(_, w)| !is_bound(w))
                .cloned()
                .collect();
            for bound in [WINDOW_START, WINDOW_END] {
                names.extend(grouped.iter().filter(|(_, w)| w == bound).cloned());
            }
            aggregates_of(a, &out_names, &inner.names, &mut aggregates, &mut names)?;
            let mut spec = WindowSpec {
                id: None,
                tumbling: None,
                sliding: None,
                session: None,
                key_by: keys,
                aggregates,
                late_records: LatePolicy::Drop {},
            };
            let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(1));
            match window.kind {
                WindowKind::Tumble { size_ms } => spec.tumbling = Some(ms(size_ms)),
                WindowKind::Hop { slide_ms, size_ms } => {
                    spec.sliding = Some(SlidingSpec {
                        size: ms(size_ms),
                        slide: ms(slide_ms),
                    });
                }
                WindowKind::Session { gap_ms } => {
                    spec.session = Some(SessionSpec { gap: ms(gap_ms) });
                }
            }
            inner.steps.push(Step::Transform(Transform::Window(spec)));
            inner.names = names;
            Ok(inner)
        }
        LogicalPlan::Join(j) => super::join::lower(j, None, cx),
        LogicalPlan::Union(u) => {
            let mut chains = Vec::new();
            let mut first: Option<Vec<(Column, String)>> = None;
            for input in &u.inputs {
                let l = lower_node(input, cx)?;
                if let Some(w) = l.pending {
                    return Err(format!(
                        "a window table function is only supported under `GROUP BY window_start, window_end, ...`; {}({}) here feeds UNION ALL directly",
                        kind_name(w.kind),
                        w.input
                    ));
                }
                first.get_or_insert(l.names);
                chains.push(l.steps);
            }
            // The union's columns are its first input's, by position.
            let names = u
                .schema
                .columns()
                .into_iter()
                .zip(first.unwrap_or_default())
                .map(|(df, (_, weir))| (df, weir))
                .collect();
            Ok(Lowered {
                steps: vec![Step::Union(chains)],
                names,
                pending: None,
            })
        }
        LogicalPlan::Sort(_) => {
            Err("ORDER BY has no end on a stream; use it inside ROW_NUMBER() OVER (...) (top-N, not supported yet)".into())
        }
        LogicalPlan::Limit(_) => Err("LIMIT has no meaning on a stream".into()),
        LogicalPlan::Distinct(Distinct::All(input)) => {
            super::group_by::distinct(input, lower_node(input, cx)?, cx.state_ttl)
        }
        LogicalPlan::Distinct(Distinct::On(_)) => {
            Err("SELECT DISTINCT ON is not supported; use ROW_NUMBER() OVER (PARTITION BY ...) = 1".into())
        }
        LogicalPlan::Window(_) => {
            Err("OVER (...) window functions are not supported yet".into())
        }
        other => Err(format!(
            "{} is not supported in a streaming query",
            other.display().to_string().split(':').next().unwrap_or("this")
        )),
    }
}

/// A `SELECT` list over what `inner` computes: a select step, unless it passes every column
/// through unchanged.
pub(super) fn project(p: &Projection, mut inner: Lowered) -> Result<Lowered, String> {
    if inner.pending.is_some() {
        return Err(
                "a window table function is only supported under `GROUP BY window_start, window_end, ...`; select from it in a GROUP BY query"
                    .into(),
            );
    }
    let out_names = field_names(&p.schema);
    let identity = out_names.len() == inner.names.len()
        && p.expr
            .iter()
            .zip(&inner.names)
            .zip(&out_names)
            .all(|((e, (df, weir)), out)| {
                matches!(e, Expr::Column(c) if same_column(df, c)) && weir == out
            });
    if !identity {
        let mut select = IndexMap::new();
        for (e, name) in p.expr.iter().zip(&out_names) {
            if select.contains_key(name) {
                return Err(format!(
                    "two output columns are named `{name}`; give one another name with AS"
                ));
            }
            select.insert(name.clone(), to_sql(unalias(e), &inner.names)?);
        }
        inner.steps.push(Step::Transform(Transform::Select(select)));
    }
    inner.names = p.schema.columns().into_iter().zip(out_names).collect();
    Ok(inner)
}

/// An alias (`FROM t AS a`, a subquery's name) over what `inner` computes: the same
/// columns, named by the alias.
pub(super) fn alias(a: &SubqueryAlias, mut inner: Lowered) -> Lowered {
    inner.names = requalify(inner.names, a.input.schema(), &a.schema);
    inner
}

/// Letters, digits and `_`, not starting with a digit: a name a user wrote, not one
/// DataFusion made up for an expression.
fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && !name.starts_with(weir_crds::sql::WINDOW_PREFIX)
}

fn kind_name(k: WindowKind) -> &'static str {
    match k {
        WindowKind::Tumble { .. } => "TUMBLE",
        WindowKind::Hop { .. } => "HOP",
        WindowKind::Session { .. } => "SESSION",
    }
}

fn field_names(schema: &DFSchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Whether `r`, as an expression refers to it, is column `d` of a node: the same name, and
/// the same table where both say one.
pub(super) fn same_column(d: &Column, r: &Column) -> bool {
    d.name == r.name && (d.relation.is_none() || r.relation.is_none() || d.relation == r.relation)
}

/// Weir's name of the column an expression calls `c`.
pub(super) fn weir_name(c: &Column, names: &[(Column, String)]) -> Result<String, String> {
    names
        .iter()
        .find(|(d, _)| d == c)
        .or_else(|| names.iter().find(|(d, _)| same_column(d, c)))
        .map(|(_, w)| w.clone())
        .ok_or_else(|| format!("internal: column `{c}` lost between plan nodes"))
}

/// Names as a node that renames its input's tables (an alias, a view read under its name)
/// calls them: each column of `from` is the column of `to` at its position.
fn requalify(
    names: Vec<(Column, String)>,
    from: &DFSchemaRef,
    to: &DFSchemaRef,
) -> Vec<(Column, String)> {
    let pairs: Vec<(Column, Column)> = from.columns().into_iter().zip(to.columns()).collect();
    names
        .into_iter()
        .map(|(c, w)| {
            let to = pairs
                .iter()
                .find(|(f, _)| *f == c)
                .or_else(|| pairs.iter().find(|(f, _)| same_column(f, &c)));
            match to {
                Some((_, t)) => (t.clone(), w),
                None => (c, w),
            }
        })
        .collect()
}

pub(super) fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

fn uses_window_columns(e: &Expr) -> bool {
    e.column_refs()
        .iter()
        .any(|c| c.name == WINDOW_START || c.name == WINDOW_END)
}

/// The expression as SQL text over Weir's column names.
pub(super) fn to_sql(e: &Expr, names: &[(Column, String)]) -> Result<String, String> {
    let subquery = e
        .exists(|x| {
            Ok(matches!(
                x,
                Expr::InSubquery(_) | Expr::Exists(_) | Expr::ScalarSubquery(_)
            ))
        })
        .unwrap_or(false);
    if subquery {
        return Err(format!(
            "`{e}`: a subquery in an expression (IN, EXISTS or a scalar subquery) is not supported yet; write it as an inner or outer join"
        ));
    }
    let renamed = e
        .clone()
        .transform_up(|x| match x {
            Expr::Column(c) => {
                let name =
                    weir_name(&c, names).map_err(datafusion::error::DataFusionError::Plan)?;
                Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                    name,
                ))))
            }
            other => Ok(Transformed::no(other)),
        })
        .map_err(|err| err.to_string())?
        .data;
    // Pretty: only the parentheses precedence needs, so a long OR chain stays flat and
    // within the expression compiler's nesting limit.
    Unparser::default()
        .with_pretty(true)
        .expr_to_sql(&renamed)
        .map(|ast| ast.to_string())
        .map_err(|err| format!("`{e}` cannot be run yet: {err}"))
}

/// The aggregate calls of `a` (whose output columns are `out`) as a window's `aggregates`
/// (`__agg_<i>`), each also appended to `names`.
pub(super) fn aggregates_of(
    a: &datafusion::logical_expr::Aggregate,
    out: &[Column],
    inner: &[(Column, String)],
    aggregates: &mut IndexMap<String, String>,
    names: &mut Vec<(Column, String)>,
) -> Result<(), String> {
    for (i, (e, df)) in a
        .aggr_expr
        .iter()
        .zip(out.iter().skip(a.group_expr.len()))
        .enumerate()
    {
        let name = format!("__agg_{i}");
        aggregates.insert(name.clone(), aggregate(unalias(e), inner)?);
        names.push((df.clone(), name));
    }
    Ok(())
}

/// An aggregate call as the window's `aggregates` entry (`sum(amount)`, `count(*)`).
fn aggregate(e: &Expr, names: &[(Column, String)]) -> Result<String, String> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return Err(format!("`{e}` is not an aggregate"));
    };
    if !params.order_by.is_empty() {
        return Err(format!(
            "`{e}`: ORDER BY inside an aggregate is not supported yet"
        ));
    }
    let f = func.name().to_lowercase();
    let supported = ["count", "sum", "min", "max", "avg"];
    if !supported.contains(&f.as_str()) {
        return Err(format!(
            "aggregate `{f}` is not supported yet; use {}",
            supported.join(", ")
        ));
    }
    let mut star = params.args.is_empty()
        || (f == "count"
            && matches!(params.args.as_slice(), [Expr::Literal(v, _)] if !v.is_null()));
    let mut args = params.args.clone();
    // `agg(x) FILTER (WHERE c)` is `agg(CASE WHEN c THEN x END)`: every aggregate Weir runs
    // skips nulls (`count(*) FILTER` counts the rows where c holds).
    if let Some(filter) = &params.filter {
        let arg = if star {
            datafusion::logical_expr::lit(1i64)
        } else {
            single(&params.args, e)?.clone()
        };
        let case = datafusion::logical_expr::when((**filter).clone(), arg)
            .end()
            .map_err(|err| format!("`{e}`: {err}"))?;
        args = vec![case];
        star = false;
    }
    match (f.as_str(), params.distinct, star) {
        ("count", false, true) => Ok("count(*)".into()),
        (_, _, true) => Err(format!("`{e}`: only count takes *")),
        ("count", true, false) => Ok(format!(
            "count_distinct({})",
            to_sql(single(&args, e)?, names)?
        )),
        (_, true, false) => Err(format!(
            "`{e}`: DISTINCT is supported in count only ({f} of distinct values is not)"
        )),
        (_, false, false) => Ok(format!("{f}({})", to_sql(single(&args, e)?, names)?)),
    }
}

fn single<'a>(args: &'a [Expr], e: &Expr) -> Result<&'a Expr, String> {
    match args {
        [a] => Ok(a),
        _ => Err(format!("`{e}` takes one argument")),
    }
}
