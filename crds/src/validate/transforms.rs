//! The transforms' checks (window geometry, aggregates, dedup), and the aggregate parser the
//! runtime's window operator shares so that what validation accepts is what runs.

use super::FieldError;
use crate::pipeline::{Transform, WindowSpec};

/// Every transform, in order. `has_event_time`: windows close by event time, so they need a
/// source that has one.
pub(super) fn check(transforms: &[Transform], has_event_time: bool, errs: &mut Vec<FieldError>) {
    for (i, t) in transforms.iter().enumerate() {
        let base = format!("transforms[{i}]");
        match t {
            Transform::Filter(e) if e.trim().is_empty() => {
                errs.push(FieldError::new(
                    format!("{base}.filter"),
                    "expression is empty",
                ));
            }
            Transform::Select(cols) if cols.is_empty() => {
                errs.push(FieldError::new(
                    format!("{base}.select"),
                    "needs at least one column",
                ));
            }
            Transform::Window(w) => {
                check_window(&format!("{base}.window"), w, has_event_time, errs)
            }
            Transform::Dedup(d) => {
                if d.key_by.is_empty() {
                    errs.push(FieldError::new(
                        format!("{base}.dedup.keyBy"),
                        "needs at least one column",
                    ));
                }
                if d.ttl.get().is_zero() {
                    errs.push(FieldError::new(
                        format!("{base}.dedup.ttl"),
                        "must be greater than 0",
                    ));
                }
            }
            _ => {}
        }
    }
    // Two operators with one id would restore each other's state.
    let ids = crate::pipeline::state_ids(transforms);
    for (i, id) in ids.iter().enumerate() {
        let Some(id) = id else { continue };
        let kind = match &transforms[i] {
            Transform::Window(_) => "window",
            _ => "dedup",
        };
        let shaped = !id.is_empty()
            && id.len() <= 63
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if !shaped {
            errs.push(FieldError::new(
                format!("transforms[{i}].{kind}.id"),
                format!("`{id}` is not a state id: lowercase letters, digits and `-`, at most 63, starting and ending with a letter or digit"),
            ));
        }
        if let Some(j) = ids[..i].iter().position(|x| x.as_ref() == Some(id)) {
            errs.push(FieldError::new(
                format!("transforms[{i}].{kind}.id"),
                format!(
                    "`{id}` is already the state id of transforms[{j}]; state ids must be unique"
                ),
            ));
        }
    }
}

fn check_window(path: &str, w: &WindowSpec, has_event_time: bool, errs: &mut Vec<FieldError>) {
    let kinds = usize::from(w.tumbling.is_some())
        + usize::from(w.sliding.is_some())
        + usize::from(w.session.is_some());
    if kinds != 1 {
        errs.push(FieldError::new(
            path,
            format!("give exactly one of tumbling, sliding, session; found {kinds}"),
        ));
    }
    if !has_event_time {
        errs.push(FieldError::new(
            path,
            "windows need source.eventTime (a timestamp field)",
        ));
    }
    let zero = |d: crate::Duration| d.get().is_zero();
    if w.tumbling.is_some_and(zero) {
        errs.push(FieldError::new(
            format!("{path}.tumbling"),
            "must be greater than 0",
        ));
    }
    if let Some(s) = &w.sliding {
        if zero(s.size) || zero(s.slide) {
            errs.push(FieldError::new(
                format!("{path}.sliding"),
                "size and slide must be greater than 0",
            ));
        } else if s.slide > s.size {
            errs.push(FieldError::new(
                format!("{path}.sliding.slide"),
                "must not exceed size",
            ));
        } else if let Some(n) = windows_per_record(s.size.as_millis_i64(), s.slide.as_millis_i64())
        {
            errs.push(FieldError::new(
                format!("{path}.sliding.slide"),
                format!(
                    "puts each record in {n} windows (size over slide); at most {}: make the slide larger",
                    crate::pipeline::MAX_WINDOWS_PER_RECORD
                ),
            ));
        }
    }
    if w.session.as_ref().is_some_and(|s| zero(s.gap)) {
        errs.push(FieldError::new(
            format!("{path}.session.gap"),
            "must be greater than 0",
        ));
    }
    if w.aggregates.is_empty() {
        errs.push(FieldError::new(
            format!("{path}.aggregates"),
            "needs at least one aggregate",
        ));
    }
    for (name, agg) in &w.aggregates {
        if let Err(m) = parse_aggregate(agg) {
            errs.push(FieldError::new(format!("{path}.aggregates.{name}"), m));
        }
    }
}

/// Aggregate functions a window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateFn {
    /// Rows (`count(*)`) or non-null values (`count(e)`).
    Count,
    /// Sum.
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Mean.
    Avg,
    /// Distinct non-null values.
    CountDistinct,
}

/// Split `sum(amount * 2)` into the function and its argument (`None` for `count(*)`).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_aggregate(s: &str) -> Result<(AggregateFn, Option<String>), String> {
    let s = s.trim();
    let bad = || {
        format!(
            "`{s}` is not an aggregate; expected count(*), count(e), sum(e), min(e), max(e), avg(e) or count_distinct(e)"
        )
    };
    let open = s.find('(').ok_or_else(bad)?;
    if !s.ends_with(')') {
        return Err(bad());
    }
    let func = s[..open].trim().to_ascii_lowercase();
    let arg = s[open + 1..s.len() - 1].trim();
    let f = match func.as_str() {
        "count" => AggregateFn::Count,
        "sum" => AggregateFn::Sum,
        "min" => AggregateFn::Min,
        "max" => AggregateFn::Max,
        "avg" => AggregateFn::Avg,
        "count_distinct" => AggregateFn::CountDistinct,
        _ => return Err(bad()),
    };
    match (f, arg) {
        (_, "") => Err(bad()),
        (AggregateFn::Count, "*") => Ok((f, None)),
        (_, "*") => Err(format!("`{s}`: only count takes *")),
        (_, a) => Ok((f, Some(a.to_string()))),
    }
}

/// How many windows a record of a sliding window of `size` slid by `slide` (milliseconds,
/// both above 0) enters, when that is over [`crate::pipeline::MAX_WINDOWS_PER_RECORD`].
pub(crate) fn windows_per_record(size: i64, slide: i64) -> Option<i64> {
    // Rounded up: a window starts every `slide`, so when the slide does not divide the size
    // some records are in one more.
    let slide = slide.max(1);
    let n = size / slide + i64::from(size % slide != 0);
    (n > crate::pipeline::MAX_WINDOWS_PER_RECORD).then_some(n)
}
