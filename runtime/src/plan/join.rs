//! A join in the plan: what the SQL front end says about it ([`JoinSpec`]), checked against
//! its two inputs' schemas and event time, and resolved into what the operator runs.
//!
//! The condition arrives split: equalities between a left and a right column (the keys both
//! inputs are shuffled by), comparisons of a left and a right column with a constant
//! offset, and everything else. Comparisons of the two inputs' event-time columns that bound
//! `left.t - right.t` from both sides make an interval join (an equality of the time
//! columns, as a window join has on `window_end`, bounds it to 0); every other comparison is
//! checked pair by pair with the rest of the condition.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use weir_crds::FieldError;

use super::Operation;
use super::check::Incoming;
use crate::changelog::is_changelog;
use crate::expr::CompiledExpr;
use crate::ids::Millis;
use crate::operator::join::{JoinConfig, JoinKind, RowBound, TimeBound};

/// A join as the SQL front end lowers it; names are Weir's column names in each input.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinSpec {
    /// Inner or outer.
    pub kind: JoinKind,
    /// Equal columns: (left column, right column).
    pub on: Vec<(String, String)>,
    /// Comparisons of a left and a right column.
    pub compares: Vec<Compare>,
    /// The rest of the condition, as SQL over the output's column names.
    pub filter: Option<String>,
    /// Output column names: the left input's columns, then the right's (unique).
    pub names: Vec<String>,
    /// For a regular join: how long a row is kept, in event time.
    pub ttl: Option<Millis>,
}

/// `lo <= left - right <= hi` on a left and a right column (either bound may be missing).
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    /// The left input's column.
    pub left: String,
    /// The right input's column.
    pub right: String,
    /// Least `left - right`, in milliseconds.
    pub lo: Option<Millis>,
    /// Greatest `left - right`, in milliseconds.
    pub hi: Option<Millis>,
    /// The comparison as SQL over the output's column names, for when it is not a time
    /// bound.
    pub sql: String,
}

/// A join resolved against its inputs.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// Key columns of each input.
    pub keys: [Vec<usize>; 2],
    /// The interval, when the inputs' event-time columns are bounded both ways (one way
    /// open where a row bound closes it).
    pub bound: Option<TimeBound>,
    /// Each side's row bound.
    pub row_bounds: [Option<RowBound>; 2],
    /// What is checked pair by pair, over the output.
    pub filter: Option<String>,
    /// The output.
    pub out: Incoming,
    /// Which input's event time the output carries.
    pub time_from: Option<usize>,
}

/// Resolve `spec` over its two inputs; `path` names it in messages.
pub(super) fn resolve(
    spec: &JoinSpec,
    inputs: [&Incoming; 2],
    path: &str,
) -> Result<Resolved, Vec<FieldError>> {
    let mut errs = Vec::new();
    let err = |m: String| FieldError::new(path, m);
    let col = |side: usize, name: &str| inputs[side].schema.index_of(name).ok();
    let mut keys = [Vec::new(), Vec::new()];
    let mut lo: Option<Millis> = None;
    let mut hi: Option<Millis> = None;
    let times = [inputs[0].time_col, inputs[1].time_col];
    let both_times = |l: usize, r: usize| times == [Some(l), Some(r)];
    for (l, r) in &spec.on {
        let (Some(li), Some(ri)) = (col(0, l), col(1, r)) else {
            errs.push(err(format!("internal: join key `{l}` = `{r}` not found")));
            continue;
        };
        let (lt, rt) = (
            inputs[0].schema.field(li).data_type(),
            inputs[1].schema.field(ri).data_type(),
        );
        if lt != rt {
            errs.push(err(format!(
                "join keys `{l}` ({lt}) and `{r}` ({rt}) have different types; CAST one to the other's"
            )));
            continue;
        }
        keys[0].push(li);
        keys[1].push(ri);
        if both_times(li, ri) {
            lo = Some(lo.map_or(0, |x| x.max(0)));
            hi = Some(hi.map_or(0, |x| x.min(0)));
        }
    }
    if spec.on.is_empty() {
        errs.push(err(
            "a join needs an equality between a column of each input (ON a.x = b.y): without one every row pairs with every other, for ever".into(),
        ));
    }
    let mut filter: Vec<String> = spec.filter.iter().cloned().collect();
    // Comparisons of the two event-time columns, checked pair by pair if they do not bound
    // the join both ways.
    let mut on_time: Vec<String> = Vec::new();
    for c in &spec.compares {
        match (col(0, &c.left), col(1, &c.right)) {
            (Some(li), Some(ri)) if both_times(li, ri) => {
                if let Some(x) = c.lo {
                    lo = Some(lo.map_or(x, |y| y.max(x)));
                }
                if let Some(x) = c.hi {
                    hi = Some(hi.map_or(x, |y| y.min(x)));
                }
                on_time.push(c.sql.clone());
            }
            _ => filter.push(c.sql.clone()),
        }
    }
    // An input that updates (a changelog) ends in its change kind, which is not a column of
    // the join's output: the output's own says what each pair does.
    let logs = [0, 1].map(|s| is_changelog(&inputs[s].schema));
    let row_bounds = if spec.kind == JoinKind::Inner && !logs.iter().any(|l| *l) {
        row_bounds(spec, inputs, [lo.is_none(), hi.is_none()])
    } else {
        [None, None]
    };
    // A way the event times leave open may be closed by each row's own column.
    let (lo, hi) = match (lo, hi, row_bounds) {
        (None, Some(hi), [Some(_), _]) => (Some(Millis::MIN), Some(hi)),
        (Some(lo), None, [_, Some(_)]) => (Some(lo), Some(Millis::MAX)),
        (None, None, [Some(_), Some(_)]) => (Some(Millis::MIN), Some(Millis::MAX)),
        _ => (lo, hi),
    };
    let row_bounds = if lo.is_some() && hi.is_some() {
        row_bounds
    } else {
        [None, None]
    };
    let bound = match (lo, hi) {
        (Some(lo), Some(hi)) if lo > hi => {
            errs.push(err(format!(
                "the time condition bounds left - right to [{lo} ms, {hi} ms], which nothing satisfies"
            )));
            None
        }
        (Some(lo), Some(hi)) => Some(TimeBound { lo, hi }),
        // Bounded one way only: state would still grow for ever on one side, so it is a
        // regular join with the comparison checked pair by pair.
        _ => {
            filter.extend(on_time);
            None
        }
    };
    let data = |side: usize| crate::changelog::data_width(&inputs[side].schema);
    if bound.is_some() && logs.iter().any(|l| *l) {
        let which = if logs[0] { "left" } else { "right" };
        errs.push(err(format!(
            "an interval or window join reads inserts only, and its {which} input updates (a changelog: the result of a GROUP BY without a window, or of an outer join without a time bound); a retraction could come after its row expired. Join without the time condition (a regular join, with stateTtl), or window the input first"
        )));
    }
    // A column may be null where its input's may, and wherever an outer join pads its
    // input with nulls.
    let side_fields = |side: usize| {
        let padded = spec.kind.keeps_unmatched(1 - side);
        inputs[side]
            .schema
            .fields()
            .iter()
            .take(data(side))
            .map(move |f| (f, padded || f.is_nullable()))
    };
    let mut fields: Vec<Field> = side_fields(0)
        .chain(side_fields(1))
        .zip(&spec.names)
        .map(|((f, nullable), n)| Field::new(n, f.data_type().clone(), nullable))
        .collect();
    let width = data(0) + data(1);
    if fields.len() != width || spec.names.len() != width {
        errs.push(err(
            "internal: join output names do not match its inputs".into()
        ));
    }
    // An outer join without a time bound never knows a row will stay unmatched: it emits
    // the row padded at once and retracts it (`-D`) when a partner arrives: a changelog. Over
    // a changelog, every pair of a row taken back is retracted.
    if bound.is_none() && (spec.kind != JoinKind::Inner || logs.iter().any(|l| *l)) {
        fields.push(crate::changelog::field_with_deletes());
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let filter = (!filter.is_empty()).then(|| {
        filter
            .iter()
            .map(|f| format!("({f})"))
            .collect::<Vec<_>>()
            .join(" AND ")
    });
    if let Some(f) = &filter {
        match CompiledExpr::compile(f, &schema) {
            Ok(c) if c.data_type != datafusion::arrow::datatypes::DataType::Boolean => {
                errs.push(err(format!("the join condition `{f}` is not boolean")));
            }
            Ok(_) => {}
            Err(m) => errs.push(err(format!("in the join condition `{f}`: {m}"))),
        }
    }
    let time_from = match (bound, spec.kind) {
        // A row bound lets a pair come any time before the row's own bound: no event time
        // the watermark could be held back for.
        _ if row_bounds.iter().any(Option::is_some) => None,
        (None, _) | (_, JoinKind::Full) => None,
        (Some(_), JoinKind::Right) => Some(1),
        (Some(_), _) => Some(0),
    };
    let left_width = inputs[0].schema.fields().len();
    let time_col =
        time_from.and_then(|s| times[s].map(|c| if s == 0 { c } else { left_width + c }));
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Resolved {
        keys,
        bound,
        row_bounds,
        filter,
        out: Incoming {
            schema,
            time_col,
            time_lost_at: (time_col.is_none() && times.iter().any(Option::is_some))
                .then(|| path.to_string()),
        },
        time_from,
    })
}

/// Row bounds for the sides whose rows the event times leave unbounded (`open`: left,
/// right): a comparison of a timestamp column of that side's rows (not its event time) with
/// the other side's event time that caps the partner's time, `b.t <= a.expires` for a left
/// row. The comparison stays in the pair-by-pair filter; the bound only says when the row can
/// go.
fn row_bounds(spec: &JoinSpec, inputs: [&Incoming; 2], open: [bool; 2]) -> [Option<RowBound>; 2] {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let times = [inputs[0].time_col, inputs[1].time_col];
    let stamp = |side: usize, name: &str| {
        let i = inputs[side].schema.index_of(name).ok()?;
        let own = matches!(
            inputs[side].schema.field(i).data_type(),
            DataType::Timestamp(TimeUnit::Millisecond, _)
        );
        (own && Some(i) != times[side]).then_some(i)
    };
    let is_time = |side: usize, name: &str| {
        times[side].is_some() && inputs[side].schema.index_of(name).ok() == times[side]
    };
    let mut out = [None, None];
    for c in &spec.compares {
        // left.c - right.t >= lo: a left row pairs with right rows up to left.c - lo.
        if open[0]
            && out[0].is_none()
            && is_time(1, &c.right)
            && let (Some(col), Some(lo)) = (stamp(0, &c.left), c.lo)
        {
            out[0] = Some(RowBound {
                col,
                offset: lo.saturating_neg(),
            });
        }
        // left.t - right.c <= hi: a right row pairs with left rows up to right.c + hi.
        if open[1]
            && out[1].is_none()
            && is_time(0, &c.left)
            && let (Some(col), Some(hi)) = (stamp(1, &c.right), c.hi)
        {
            out[1] = Some(RowBound { col, offset: hi });
        }
    }
    out
}

/// How long join `op` keeps rows, in words for `explain`: by its time bound, by `stateTtl`,
/// or for ever.
#[must_use]
pub fn retention(op: &super::OpPlan) -> String {
    let Operation::Join(spec) = &op.operation else {
        return String::new();
    };
    let (input, Some(second)) = op.inputs() else {
        return String::new();
    };
    match (resolve(spec, [&input, &second], &op.path), spec.ttl) {
        (
            Ok(Resolved {
                bound: Some(b),
                row_bounds,
                ..
            }),
            _,
        ) if row_bounds.iter().any(Option::is_some) => {
            let side = |s: usize, this: &super::check::Incoming, other: &super::check::Incoming| {
                let name = |i: &super::check::Incoming, c: usize| i.schema.field(c).name().clone();
                match (row_bounds[s], other.time_col) {
                    (Some(rb), Some(t)) => format!(
                        "a {} row until the watermark passes its `{}`{} (the latest `{}` it pairs with)",
                        ["left", "right"][s],
                        name(this, rb.col),
                        offset(rb.offset),
                        name(other, t),
                    ),
                    _ => format!(
                        "a {} row until the watermark passes its event time{}",
                        ["left", "right"][s],
                        offset(if s == 0 { b.lo.saturating_neg() } else { b.hi }),
                    ),
                }
            };
            format!(
                "join bounded by a column of the rows: {}, {}; rows behind the watermark dropped as late, output without event time",
                side(0, &input, &second),
                side(1, &second, &input)
            )
        }
        (
            Ok(Resolved {
                bound: Some(b),
                time_from,
                ..
            }),
            _,
        ) => {
            let held = match time_from {
                Some(0) => (-b.lo).max(0),
                Some(_) => b.hi.max(0),
                None => 0,
            };
            format!(
                "interval join, left - right event time in [{} ms, {} ms]: rows dropped as the watermark passes, output watermark held back {held} ms",
                b.lo, b.hi
            )
        }
        (_, Some(ttl)) => format!("regular join: rows kept {ttl} ms of event time (stateTtl)"),
        (_, None) => "regular join: rows kept for ever (no stateTtl)".into(),
    }
}

/// ` + 5 ms`, ` - 5 ms`, or nothing for 0.
fn offset(ms: Millis) -> String {
    match ms {
        0 => String::new(),
        m if m > 0 => format!(" + {m} ms"),
        m => format!(" - {} ms", m.unsigned_abs()),
    }
}

/// What the operator runs.
///
/// # Errors
/// Planning and instantiation disagree (an internal error).
pub(super) fn config(
    spec: &JoinSpec,
    inputs: [&Incoming; 2],
    path: &str,
    max_parallelism: u32,
) -> Result<JoinConfig, String> {
    let r = resolve(spec, inputs, path).map_err(|e| format!("{e:?}"))?;
    let filter = r
        .filter
        .as_deref()
        .map(|f| CompiledExpr::compile(f, &r.out.schema))
        .transpose()?;
    Ok(JoinConfig {
        kind: spec.kind,
        inputs: [Arc::clone(&inputs[0].schema), Arc::clone(&inputs[1].schema)],
        keys: r.keys,
        time_cols: [inputs[0].time_col, inputs[1].time_col],
        time: r.bound,
        row_bounds: r.row_bounds,
        filter,
        output: r.out.schema,
        time_from: r.time_from,
        ttl: spec.ttl,
        max_parallelism,
    })
}
