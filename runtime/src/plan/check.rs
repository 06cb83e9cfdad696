//! What each transform needs of its input and what it gives: columns that exist, boolean
//! filters, aggregates over numbers, an event-time column where time matters. Checked per
//! node of the dataflow, each against the schema and event time of what it reads.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir_crds::{AggregateFn, FieldError, LatePolicy, SinkSpec, Transform, parse_aggregate};

use crate::expr::CompiledExpr;
use crate::operator::window::{Aggregate, Assigner, ValueKind, WINDOW_END, WINDOW_START};
use crate::schema::timestamp_type;

/// What a node reads, as far as checking it goes.
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    /// The records' schema.
    pub schema: SchemaRef,
    /// Their event-time column.
    pub time_col: Option<usize>,
    /// The select that dropped the source's event-time column on the way, if one did.
    pub time_lost_at: Option<String>,
}

/// A checked node.
#[derive(Debug, Clone)]
pub(super) struct Checked {
    /// Field path of the transform.
    pub path: String,
    /// What it gives the nodes after it.
    pub out: Incoming,
    /// For a keyed transform: the key columns its input is shuffled by.
    pub keys: Option<Vec<usize>>,
    /// Late-record side output.
    pub side_sink: Option<(String, SinkSpec)>,
}

/// Check transform `t`, node `i` of the dataflow, over `input`. `source_has_time` tells
/// whether the source declares event time (a window without it counts in one window).
pub(super) fn node(
    i: usize,
    t: &Transform,
    input: &Incoming,
    source_has_time: bool,
    errs: &mut Vec<FieldError>,
) -> Checked {
    let schema = &input.schema;
    let mut time_col = input.time_col;
    let mut time_lost_at = input.time_lost_at.clone();
    let mut side_sink = None;
    let (path, output, keys) = match t {
        Transform::Filter(sql) => {
            let path = format!("transforms[{i}].filter");
            match CompiledExpr::compile(sql, schema) {
                Ok(c) if c.data_type != DataType::Boolean => {
                    errs.push(FieldError::new(
                        &path,
                        format!("`{sql}` is {}, a filter must be boolean", c.data_type),
                    ));
                }
                Ok(_) => {}
                Err(m) => errs.push(FieldError::new(&path, format!("in `{sql}`: {m}"))),
            }
            (path, Arc::clone(schema), None)
        }
        Transform::Select(cols) => {
            let path = format!("transforms[{i}].select");
            let mut fields = Vec::new();
            for (name, sql) in cols {
                if name == crate::changelog::CHANGE
                    && let Ok(f) = schema.field_with_name(sql)
                {
                    // The change kind passes through as it is (whether it may delete).
                    fields.push(f.clone());
                    continue;
                }
                match CompiledExpr::compile(sql, schema) {
                    Ok(c) => fields.push(Field::new(name, c.data_type.clone(), true)),
                    Err(m) => errs.push(FieldError::new(
                        format!("{path}.{name}"),
                        format!("in `{sql}`: {m}"),
                    )),
                }
            }
            let out: SchemaRef = Arc::new(Schema::new(fields));
            // Event time survives a select only when passed through under a name.
            time_col = time_col.and_then(|tc| {
                let tname = schema.field(tc).name();
                cols.iter().position(|(_, sql)| sql.trim() == tname)
            });
            if time_col.is_none() && time_lost_at.is_none() && source_has_time {
                time_lost_at = Some(path.clone());
            }
            (path, out, None)
        }
        Transform::Window(w) => {
            let path = format!("transforms[{i}].window");
            if time_col.is_none() && source_has_time {
                let at = time_lost_at.clone().unwrap_or_default();
                errs.push(FieldError::new(
                    &path,
                    format!("needs the event-time column, which {at} does not pass through"),
                ));
            }
            if let LatePolicy::SideOutput(s) = &w.late_records {
                side_sink = Some((format!("late-{i}"), (**s).clone()));
            }
            match window_parts(w, schema, &path) {
                Ok((_, keys, aggs)) => {
                    let mut fields: Vec<Field> =
                        keys.iter().map(|&k| schema.field(k).clone()).collect();
                    fields.push(Field::new(WINDOW_START, timestamp_type(), false));
                    fields.push(Field::new(WINDOW_END, timestamp_type(), false));
                    for ((name, _), a) in w.aggregates.iter().zip(&aggs) {
                        fields.push(Field::new(name, a.output_type(), true));
                    }
                    // After a window, event time is the window end (the column after the
                    // keys and window_start), so a later window sees results on time.
                    time_col = Some(keys.len() + 1);
                    (path, Arc::new(Schema::new(fields)) as SchemaRef, Some(keys))
                }
                Err(e) => {
                    errs.extend(e);
                    (path, Arc::clone(schema), Some(Vec::new()))
                }
            }
        }
        Transform::Dedup(d) => {
            let path = format!("transforms[{i}].dedup");
            if time_col.is_none() {
                errs.push(FieldError::new(
                    &path,
                    "needs an event-time column (source.eventTime), passed through every select",
                ));
            }
            let keys = columns(&d.key_by, schema, &format!("{path}.keyBy")).unwrap_or_else(|e| {
                errs.extend(e);
                Vec::new()
            });
            (path, Arc::clone(schema), Some(keys))
        }
    };
    Checked {
        path,
        out: Incoming {
            schema: output,
            time_col,
            time_lost_at,
        },
        keys,
        side_sink,
    }
}

/// Where among `keys` (column indices) a `GROUP BY` finds its input's event time, if it
/// groups by it: then each group is complete once the watermark passes it, and the grouping
/// runs as a window; otherwise its result updates (see [`group_by`]).
pub(super) fn time_key(keys: &[usize], time_col: Option<usize>) -> Option<usize> {
    time_col.and_then(|t| keys.iter().position(|&k| k == t))
}

/// Check an updating `GROUP BY` (node `i`): the keys and aggregates of `w` (its window fields
/// unset) over `input`. It gives the keys, then the aggregates, then the change kind
/// ([`crate::changelog`]) when there are aggregates to update; with none (`SELECT DISTINCT`)
/// each group is emitted once, when first seen, and never changes. Over a changelog a group
/// can also lose every row, so the result may delete. No event time survives it.
pub(super) fn group_by(
    i: usize,
    w: &weir_crds::WindowSpec,
    input: &Incoming,
    errs: &mut Vec<FieldError>,
) -> Checked {
    let path = format!("transforms[{i}].groupBy");
    let schema = &input.schema;
    let (out, keys) = match window_parts(w, schema, &path) {
        Ok((_, keys, aggs)) => {
            let mut fields: Vec<Field> = keys.iter().map(|&k| schema.field(k).clone()).collect();
            for ((name, _), a) in w.aggregates.iter().zip(&aggs) {
                fields.push(Field::new(name, a.output_type(), true));
            }
            if crate::changelog::is_changelog(schema) {
                // Over a changelog a group can lose all its rows: it is deleted then.
                fields.push(crate::changelog::field_with_deletes());
            } else if !aggs.is_empty() {
                fields.push(crate::changelog::field());
            }
            (Arc::new(Schema::new(fields)) as SchemaRef, keys)
        }
        Err(e) => {
            errs.extend(e);
            (Arc::clone(schema), Vec::new())
        }
    };
    Checked {
        out: Incoming {
            schema: out,
            time_col: None,
            time_lost_at: Some(path.clone()),
        },
        path,
        keys: Some(keys),
        side_sink: None,
    }
}

/// Check a `UNION ALL` (node `i`) of `inputs`: as many columns in each, of the same types
/// by position. It gives the first input's column names; event time survives only where
/// every input has it in the same column.
pub(super) fn union(i: usize, inputs: &[Incoming], errs: &mut Vec<FieldError>) -> Checked {
    use crate::changelog::{data_width, field, field_with_deletes, is_changelog, may_delete};
    let path = format!("transforms[{i}] (UNION ALL)");
    // Over changelogs the columns compared are the data (each input's change kind, if it has
    // one, is not a column of the union), and the union is a changelog: an input of inserts
    // only gives `+I` rows.
    let data = |s: &SchemaRef| -> Vec<Field> {
        s.fields()
            .iter()
            .take(data_width(s))
            .map(|f| f.as_ref().clone())
            .collect()
    };
    let first = data(&inputs[0].schema);
    for (k, inc) in inputs.iter().enumerate().skip(1) {
        let (a, b) = (&first, data(&inc.schema));
        if a.len() != b.len() {
            errs.push(FieldError::new(
                &path,
                format!(
                    "UNION ALL: input {} has {} columns, the first has {}",
                    k + 1,
                    b.len(),
                    a.len()
                ),
            ));
            continue;
        }
        for (c, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            if x.data_type() != y.data_type() {
                errs.push(FieldError::new(
                    &path,
                    format!(
                        "UNION ALL: column {} (`{}`) is {} in the first input and {} in input {}; CAST one of them",
                        c + 1,
                        x.name(),
                        x.data_type(),
                        y.data_type(),
                        k + 1
                    ),
                ));
            }
        }
    }
    let mut fields: Vec<Field> = first.into_iter().map(|f| f.with_nullable(true)).collect();
    if inputs.iter().any(|x| may_delete(&x.schema)) {
        fields.push(field_with_deletes());
    } else if inputs.iter().any(|x| is_changelog(&x.schema)) {
        fields.push(field());
    }
    let time_col = inputs[0]
        .time_col
        .filter(|tc| inputs.iter().all(|x| x.time_col == Some(*tc)));
    let time_lost_at = match time_col {
        Some(_) => None,
        None => inputs
            .iter()
            .find_map(|x| x.time_lost_at.clone())
            .or_else(|| Some(path.clone())),
    };
    Checked {
        path,
        out: Incoming {
            schema: Arc::new(Schema::new(fields)),
            time_col,
            time_lost_at,
        },
        keys: None,
        side_sink: None,
    }
}

/// Column indices of `names` in `schema`.
pub(super) fn columns(
    names: &[String],
    schema: &SchemaRef,
    path: &str,
) -> Result<Vec<usize>, Vec<FieldError>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match schema.index_of(n) {
            Ok(idx) => out.push(idx),
            Err(_) => errs.push(FieldError::new(
                format!("{path}[{i}]"),
                format!("column `{n}` not found; available: {}", names_of(schema)),
            )),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

fn names_of(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

type WindowParts = (Assigner, Vec<usize>, Vec<Aggregate>);

/// A window's assigner, key columns and aggregates over `input`.
pub(super) fn window_parts(
    w: &weir_crds::WindowSpec,
    input: &SchemaRef,
    path: &str,
) -> Result<WindowParts, Vec<FieldError>> {
    let mut errs = Vec::new();
    let assigner = if let Some(t) = w.tumbling {
        Assigner::Tumbling {
            size: t.as_millis_i64(),
        }
    } else if let Some(s) = &w.sliding {
        Assigner::Sliding {
            size: s.size.as_millis_i64(),
            slide: s.slide.as_millis_i64(),
        }
    } else if let Some(s) = &w.session {
        Assigner::Session {
            gap: s.gap.as_millis_i64(),
        }
    } else {
        Assigner::Tumbling { size: 1 }
    };
    let keys = columns(&w.key_by, input, &format!("{path}.keyBy")).unwrap_or_else(|e| {
        errs.extend(e);
        Vec::new()
    });
    let mut aggs = Vec::new();
    for (name, text) in &w.aggregates {
        let apath = format!("{path}.aggregates.{name}");
        let (func, arg) = match parse_aggregate(text) {
            Ok(x) => x,
            Err(m) => {
                errs.push(FieldError::new(apath, m));
                continue;
            }
        };
        let arg = match arg.map(|a| CompiledExpr::compile(&a, input)) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(m)) => {
                errs.push(FieldError::new(apath, format!("in `{text}`: {m}")));
                continue;
            }
        };
        let kind = match (&arg, func) {
            (None, _) | (_, AggregateFn::Count | AggregateFn::CountDistinct) => ValueKind::Any,
            (Some(a), _) => match &a.data_type {
                DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(..) => ValueKind::Float,
                t if t.is_integer() => ValueKind::Int { timestamp: false },
                DataType::Timestamp(..) if matches!(func, AggregateFn::Min | AggregateFn::Max) => {
                    ValueKind::Int { timestamp: true }
                }
                t => {
                    errs.push(FieldError::new(
                        apath,
                        format!("`{text}`: {func:?} needs a numeric argument, got {t}")
                            .to_lowercase(),
                    ));
                    continue;
                }
            },
        };
        aggs.push(Aggregate { func, arg, kind });
    }
    if errs.is_empty() {
        Ok((assigner, keys, aggs))
    } else {
        Err(errs)
    }
}
