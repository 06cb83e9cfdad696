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
use crate::operator::join::{JoinConfig, JoinKind, TimeBound};

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
    /// The interval, when the inputs' event-time columns are bounded both ways.
    pub bound: Option<TimeBound>,
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
    // An input that updates (a changelog) ends in its change kind, which is not a column of
    // the join's output: the output's own says what each pair does.
    let logs = [0, 1].map(|s| is_changelog(&inputs[s].schema));
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
        filter,
        output: r.out.schema,
        time_from: r.time_from,
        ttl: spec.ttl,
        max_parallelism,
    })
}
