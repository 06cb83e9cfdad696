//! Pipeline spec -> execution plan: stages of chained operators separated by key-group
//! shuffles, with every schema known. All data-dependent checks happen here, before anything
//! runs: unknown columns, non-boolean filters, aggregates over the wrong types, windows after
//! the event-time column was dropped. Each error names the field path; the caller adds lines.
//!
//! ```text
//! stage 0: source ─ filter ─ select ──shuffle(keyBy)──► stage 1: window ─ select ──► sinks
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir_crds::{
    AggregateFn, FieldError, JobErrors, JobFile, LatePolicy, SinkSpec, Transform, parse_aggregate,
};

use crate::expr::CompiledExpr;
use crate::keys::KeyCodec;
use crate::operator::window::{
    Aggregate, Assigner, ValueKind, WINDOW_END, WINDOW_START, WindowConfig, WindowOperator,
};
use crate::operator::{Operator, dedup::Dedup, filter::Filter, select::Select};
use crate::schema::timestamp_type;

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Job name.
    pub name: String,
    /// The job as given.
    pub job: JobFile,
    /// Source record schema.
    pub source_schema: SchemaRef,
    /// Event-time column of the source.
    pub source_time_col: Option<usize>,
    /// Stages in order; stage 0 contains the source.
    pub stages: Vec<StagePlan>,
    /// Sinks, fed by the last stage: (sink id, spec).
    pub sinks: Vec<(String, SinkSpec)>,
    /// Side output for undecodable source records: (sink id, spec).
    pub decode_side: Option<(String, SinkSpec)>,
}

/// Operators chained in one task, and how the stage's input is partitioned.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Key columns (indices in the previous stage's output) the input is shuffled by;
    /// `None` for stage 0.
    pub shuffle_keys: Option<Vec<usize>>,
    /// Schema entering the stage (for stage 0: the source schema).
    pub input: SchemaRef,
    /// Operators in order.
    pub ops: Vec<OpPlan>,
    /// Schema leaving the stage.
    pub output: SchemaRef,
}

/// One operator, ready to instantiate per subtask.
#[derive(Debug, Clone)]
pub struct OpPlan {
    /// Stable id used for state: `window-0`, `dedup-1`; stateless ops `t<i>-filter`.
    pub id: String,
    /// Field path of the transform, for messages.
    pub path: String,
    /// The transform.
    pub transform: Transform,
    /// Input schema.
    pub input: SchemaRef,
    /// Output schema.
    pub output: SchemaRef,
    /// Event-time column in the input.
    pub time_col: Option<usize>,
    /// Late-record side output: (sink id, spec).
    pub side_sink: Option<(String, SinkSpec)>,
}

impl OpPlan {
    /// Whether the operator keeps keyed state.
    #[must_use]
    pub fn is_stateful(&self) -> bool {
        matches!(self.transform, Transform::Window(_) | Transform::Dedup(_))
    }

    /// A fresh instance for one subtask. Re-compiles expressions: they were checked when
    /// planning, so this fails only on internal errors.
    ///
    /// # Errors
    /// [`crate::error::Error::Internal`] if planning and instantiation disagree.
    pub fn instantiate(&self, max_parallelism: u32) -> crate::error::Result<Box<dyn Operator>> {
        let ie = |e: String| crate::error::Error::internal(format!("{}: {e}", self.path));
        Ok(match &self.transform {
            Transform::Filter(sql) => Box::new(Filter::new(
                CompiledExpr::compile(sql, &self.input).map_err(ie)?,
            )),
            Transform::Select(cols) => Box::new(Select::new(
                cols.values()
                    .map(|sql| CompiledExpr::compile(sql, &self.input))
                    .collect::<Result<_, _>>()
                    .map_err(ie)?,
                Arc::clone(&self.output),
            )),
            Transform::Window(w) => {
                let (assigner, keys, aggs) =
                    window_parts(w, &self.input, &self.path).map_err(|e| ie(format!("{e:?}")))?;
                Box::new(WindowOperator::new(WindowConfig {
                    assigner,
                    keys: KeyCodec::new(&self.input, keys)?,
                    time_col: self.time_col.ok_or_else(|| ie("no time column".into()))?,
                    aggregates: aggs,
                    output: Arc::clone(&self.output),
                    side_output: self.side_sink.is_some(),
                    max_parallelism,
                })?)
            }
            Transform::Dedup(d) => {
                let keys = columns(&d.key_by, &self.input, &format!("{}.keyBy", self.path))
                    .map_err(|e| ie(format!("{e:?}")))?;
                Box::new(Dedup::new(
                    KeyCodec::new(&self.input, keys)?,
                    self.time_col.ok_or_else(|| ie("no time column".into()))?,
                    d.ttl.as_millis_i64(),
                    max_parallelism,
                ))
            }
        })
    }
}

fn columns(
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

fn window_parts(
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

/// Plan a job. `file` and `src` are only used to locate errors.
///
/// # Errors
/// Every problem found, each naming its field and line.
pub fn plan(job: &JobFile, name: &str, file: &str, src: &str) -> Result<Plan, JobErrors> {
    let source = crate::connectors::source_schema(&job.pipeline.source);
    if job.pipeline.sql.is_some() {
        // SQL lowers to the transforms the YAML form would have; what is wrong after that is
        // reported at the statement, since the user never wrote those transforms.
        let lowered =
            crate::sql::lower_script(job, &source).map_err(|e| JobErrors::locate(file, src, e))?;
        let mut job = job.clone();
        job.pipeline.transforms = lowered.transforms;
        return plan_transforms(&job, name, source).map_err(|e| {
            let at = usize::try_from(lowered.at.line).unwrap_or(1);
            let errs = e
                .into_iter()
                .map(|f| FieldError::within("sql", at, f.message));
            JobErrors::locate(file, src, errs.collect())
        });
    }
    plan_transforms(job, name, source).map_err(|e| JobErrors::locate(file, src, e))
}

fn plan_transforms(job: &JobFile, name: &str, source: SchemaRef) -> Result<Plan, Vec<FieldError>> {
    let mut errs: Vec<FieldError> = Vec::new();
    let mut time_col = job
        .pipeline
        .source
        .event_time
        .as_ref()
        .and_then(|et| source.index_of(&et.field).ok());
    let source_time_col = time_col;
    let mut schema = Arc::clone(&source);
    let mut stages = vec![StagePlan {
        shuffle_keys: None,
        input: Arc::clone(&source),
        ops: Vec::new(),
        output: Arc::clone(&source),
    }];
    let mut stateful = 0usize;
    let mut time_lost_at: Option<String> = None;
    for (i, t) in job.pipeline.transforms.iter().enumerate() {
        let input = Arc::clone(&schema);
        let time_in = time_col;
        let mut side_sink = None;
        let (path, id, output, new_stage) = match t {
            Transform::Filter(sql) => {
                let path = format!("transforms[{i}].filter");
                match CompiledExpr::compile(sql, &input) {
                    Ok(c) if c.data_type != DataType::Boolean => {
                        errs.push(FieldError::new(
                            &path,
                            format!("`{sql}` is {}, a filter must be boolean", c.data_type),
                        ));
                    }
                    Ok(_) => {}
                    Err(m) => errs.push(FieldError::new(&path, format!("in `{sql}`: {m}"))),
                }
                (path, format!("t{i}-filter"), Arc::clone(&input), None)
            }
            Transform::Select(cols) => {
                let path = format!("transforms[{i}].select");
                let mut fields = Vec::new();
                for (name, sql) in cols {
                    match CompiledExpr::compile(sql, &input) {
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
                    let tname = input.field(tc).name();
                    cols.iter().position(|(_, sql)| sql.trim() == tname)
                });
                if time_col.is_none() && time_lost_at.is_none() && source_time_col.is_some() {
                    time_lost_at = Some(path.clone());
                }
                (path, format!("t{i}-select"), out, None)
            }
            Transform::Window(w) => {
                let path = format!("transforms[{i}].window");
                if time_col.is_none() && source_time_col.is_some() {
                    let at = time_lost_at.clone().unwrap_or_default();
                    errs.push(FieldError::new(
                        &path,
                        format!("needs the event-time column, which {at} does not pass through"),
                    ));
                }
                let keys = match window_parts(w, &input, &path) {
                    Ok((_, keys, aggs)) => {
                        let mut fields: Vec<Field> =
                            keys.iter().map(|&k| input.field(k).clone()).collect();
                        fields.push(Field::new(WINDOW_START, timestamp_type(), false));
                        fields.push(Field::new(WINDOW_END, timestamp_type(), false));
                        for ((name, _), a) in w.aggregates.iter().zip(&aggs) {
                            fields.push(Field::new(name, a.output_type(), true));
                        }
                        Some((keys, Arc::new(Schema::new(fields)) as SchemaRef))
                    }
                    Err(e) => {
                        errs.extend(e);
                        None
                    }
                };
                if let LatePolicy::SideOutput(s) = &w.late_records {
                    side_sink = Some((format!("late-{i}"), (**s).clone()));
                }
                let id = format!("window-{stateful}");
                stateful += 1;
                match keys {
                    Some((k, out)) => {
                        // After a window, event time is the window end (the column after the
                        // keys and window_start), so a later window sees results on time.
                        time_col = Some(k.len() + 1);
                        (path, id, out, Some(k))
                    }
                    None => (path, id, Arc::clone(&input), Some(Vec::new())),
                }
            }
            Transform::Dedup(d) => {
                let path = format!("transforms[{i}].dedup");
                if time_col.is_none() {
                    errs.push(FieldError::new(&path, "needs an event-time column (source.eventTime), passed through every select"));
                }
                let keys =
                    columns(&d.key_by, &input, &format!("{path}.keyBy")).unwrap_or_else(|e| {
                        errs.extend(e);
                        Vec::new()
                    });
                let id = format!("dedup-{stateful}");
                stateful += 1;
                (path, id, Arc::clone(&input), Some(keys))
            }
        };
        let op = OpPlan {
            id,
            path,
            transform: t.clone(),
            input: Arc::clone(&input),
            output: Arc::clone(&output),
            time_col: time_in,
            side_sink,
        };
        if let Some(keys) = new_stage {
            stages.push(StagePlan {
                shuffle_keys: Some(keys),
                input: Arc::clone(&input),
                ops: vec![op],
                output: Arc::clone(&output),
            });
        } else if let Some(last) = stages.last_mut() {
            last.ops.push(op);
            last.output = Arc::clone(&output);
        }
        schema = output;
    }
    let sinks: Vec<(String, SinkSpec)> = job
        .pipeline
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("sink-{i}"), s.clone()))
        .collect();
    for (i, s) in job.pipeline.sinks.iter().enumerate() {
        if let SinkSpec::File(f) = s
            && f.path.trim().is_empty()
        {
            errs.push(FieldError::new(
                format!("sinks[{i}].file.path"),
                "must not be empty",
            ));
        }
    }
    let decode_side = match &job.pipeline.source.on_decode_error {
        weir_crds::DecodeErrorPolicy::SideOutput(s) => {
            Some(("decode-errors".to_string(), (**s).clone()))
        }
        _ => None,
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Plan {
        name: name.to_string(),
        job: job.clone(),
        source_schema: source,
        source_time_col,
        stages,
        sinks,
        decode_side,
    })
}
