//! Checks a parsed job that the type system cannot express, and the loader that turns YAML
//! text into a [`JobFile`] or a list of errors that each name a field and a line.
//!
//! Checks that need the data's types (does a column exist, does an expression type-check)
//! live in the runtime's planner, which reports through the same [`FieldError`].

use std::fmt;

use crate::connectors::{ClickHouseMode, Delivery, KafkaFormat, KafkaSourceSpec, StartingOffsets};
use crate::locate::LineIndex;
use crate::pipeline::{
    CheckpointSpec, DatagenSpec, DecodeErrorPolicy, FieldGenerator, FieldType, JobFile, LatePolicy,
    SinkSpec, SourceSpec, Transform, WindowSpec,
};

/// One problem in a job file: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `transforms[1].window.keyBy[0]`.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

impl FieldError {
    /// An error at `path`; the line is filled in by [`JobErrors::locate`].
    #[must_use]
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{} (line {l}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem found in one job file. Reported together so one edit cycle fixes them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JobErrors {
    /// The file the errors are in.
    pub file: String,
    /// The problems, in file order where lines are known.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for JobErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid job file {}:", self.file)?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl JobErrors {
    /// Fill in lines from the YAML text and sort by them.
    #[must_use]
    pub fn locate(file: &str, src: &str, mut errors: Vec<FieldError>) -> Self {
        let index = LineIndex::new(src);
        for e in &mut errors {
            if e.line.is_none() {
                e.line = index.line_of(&e.path);
            }
        }
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Self {
            file: file.to_string(),
            errors,
        }
    }
}

/// Parse and check a job file. `file` is only used in messages.
///
/// # Errors
/// Unknown fields, wrong types and every failed check, each with its field path and line.
pub fn load_job(file: &str, src: &str) -> Result<JobFile, JobErrors> {
    let job: JobFile = serde_yaml::from_str(src).map_err(|e| {
        let path = serde_path(&e);
        let line = e.location().map(|l| l.line());
        let message = with_hint(strip_location(&e.to_string()));
        JobErrors {
            file: file.to_string(),
            errors: vec![FieldError {
                path,
                line,
                message,
            }],
        }
    })?;
    let errors = validate(&job);
    if errors.is_empty() {
        Ok(job)
    } else {
        Err(JobErrors::locate(file, src, errors))
    }
}

/// serde_yaml prints `path: message at line L column C`; keep the path separately.
fn serde_path(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    match s.split_once(": ") {
        Some((p, _)) if !p.contains(' ') => p.to_string(),
        _ => "(document)".to_string(),
    }
}

/// serde's words for a one-of written as a bare word (`sequence` for `{sequence: {}}`) say
/// nothing about the fix; the manifest syntax does.
fn with_hint(message: String) -> String {
    if message.contains("unit variant, expected struct variant")
        || message.contains("unit variant, expected newtype variant")
    {
        format!(
            "{message}: a choice is written as a map with one key, e.g. `{{sequence: {{}}}}`, `{{skip: {{}}}}`, `{{sideOutput: {{file: {{path: dead}}}}}}`"
        )
    } else {
        message
    }
}

fn strip_location(s: &str) -> String {
    let body = match s.split_once(": ") {
        Some((p, rest)) if !p.contains(' ') => rest,
        _ => s,
    };
    match body.rfind(" at line ") {
        Some(i) => body[..i].to_string(),
        None => body.to_string(),
    }
}

/// The checks that need no data: counts, ranges, exactly-one-of, references to schema fields.
/// Performs no I/O; called by [`load_job`] and by the operator before deploying.
#[must_use]
pub fn validate(job: &JobFile) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if job.parallelism == 0 {
        errs.push(FieldError::new("parallelism", "must be at least 1"));
    }
    if job.max_parallelism == 0 || job.max_parallelism > 32_768 {
        errs.push(FieldError::new(
            "maxParallelism",
            "must be between 1 and 32768",
        ));
    } else if job.parallelism > job.max_parallelism {
        errs.push(FieldError::new(
            "parallelism",
            format!(
                "{} exceeds maxParallelism {}",
                job.parallelism, job.max_parallelism
            ),
        ));
    }
    let c = &job.checkpoint;
    if c.retained == 0 {
        errs.push(FieldError::new("checkpoint.retained", "must be at least 1"));
    }
    if c.interval.get().is_zero() {
        errs.push(FieldError::new(
            "checkpoint.interval",
            "must be greater than 0",
        ));
    }
    if c.timeout <= c.interval {
        errs.push(FieldError::new(
            "checkpoint.timeout",
            format!(
                "{} must be longer than checkpoint.interval {}",
                c.timeout, c.interval
            ),
        ));
    }
    if !(c.storage.starts_with("file://") || c.storage.starts_with("s3://")) {
        errs.push(FieldError::new(
            "checkpoint.storage",
            format!("`{}` is not a file:// or s3:// URI", c.storage),
        ));
    }
    validate_source(&job.pipeline.source, &mut errs);
    let has_event_time = job.pipeline.source.event_time.is_some();
    for (i, t) in job.pipeline.transforms.iter().enumerate() {
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
                validate_window(&format!("{base}.window"), w, has_event_time, &mut errs)
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
    if job.pipeline.sinks.is_empty() {
        errs.push(FieldError::new("sinks", "needs at least one sink"));
    }
    // The same bounds the CRD states, so a job file that runs locally also applies.
    if job.pipeline.sinks.len() > crate::MAX_SINKS {
        errs.push(FieldError::new(
            "sinks",
            format!("at most {} sinks", crate::MAX_SINKS),
        ));
    }
    if job.pipeline.transforms.len() > crate::MAX_TRANSFORMS {
        errs.push(FieldError::new(
            "transforms",
            format!("at most {} transforms", crate::MAX_TRANSFORMS),
        ));
    }
    for (i, s) in job.pipeline.sinks.iter().enumerate() {
        validate_sink(&format!("sinks[{i}]"), s, c, &mut errs);
    }
    for (i, t) in job.pipeline.transforms.iter().enumerate() {
        if let Transform::Window(w) = t
            && let LatePolicy::SideOutput(s) = &w.late_records
        {
            let path = format!("transforms[{i}].window.lateRecords.sideOutput");
            validate_sink(&path, s, c, &mut errs);
        }
    }
    if let DecodeErrorPolicy::SideOutput(s) = &job.pipeline.source.on_decode_error {
        validate_sink("source.onDecodeError.sideOutput", s, c, &mut errs);
    }
    errs
}

/// Columns of a `format: raw` Kafka source, in order.
pub const KAFKA_RAW_COLUMNS: [(&str, FieldType); 6] = [
    ("key", FieldType::String),
    ("value", FieldType::String),
    ("headers", FieldType::String),
    ("timestamp", FieldType::Timestamp),
    ("partition", FieldType::Int64),
    ("offset", FieldType::Int64),
];

fn validate_kafka_source(k: &KafkaSourceSpec, src: &SourceSpec, errs: &mut Vec<FieldError>) {
    let base = "source.kafka";
    if k.bootstrap_servers.trim().is_empty() {
        errs.push(FieldError::new(
            format!("{base}.bootstrapServers"),
            "is empty",
        ));
    }
    if k.topic.trim().is_empty() {
        errs.push(FieldError::new(format!("{base}.topic"), "is empty"));
    }
    if k.max_batch_size == 0 {
        errs.push(FieldError::new(
            format!("{base}.maxBatchSize"),
            "must be at least 1",
        ));
    }
    match (k.starting_offsets, &k.starting_timestamp) {
        (StartingOffsets::Timestamp, None) => errs.push(FieldError::new(
            format!("{base}.startingTimestamp"),
            "is required with startingOffsets: timestamp",
        )),
        (StartingOffsets::Timestamp, Some(t)) => {
            if let Err(e) = parse_timestamp_ms(t) {
                errs.push(FieldError::new(format!("{base}.startingTimestamp"), e));
            }
        }
        (_, Some(_)) => errs.push(FieldError::new(
            format!("{base}.startingTimestamp"),
            "is only used with startingOffsets: timestamp",
        )),
        (_, None) => {}
    }
    if let Some(tf) = &k.timestamp_field {
        match src.schema.iter().find(|f| &f.name == tf) {
            Some(f) if f.data_type == FieldType::Timestamp => {}
            Some(f) => errs.push(FieldError::new(
                format!("{base}.timestampField"),
                format!(
                    "`{tf}` has type {:?}; it must be a timestamp field",
                    f.data_type
                ),
            )),
            None => errs.push(FieldError::new(
                format!("{base}.timestampField"),
                format!("`{tf}` is not in source.schema ({})", field_names(src)),
            )),
        }
    }
    if k.format == KafkaFormat::Raw {
        let want: Vec<(&str, FieldType)> = KAFKA_RAW_COLUMNS.to_vec();
        let got: Vec<(&str, FieldType)> = src
            .schema
            .iter()
            .map(|f| (f.name.as_str(), f.data_type))
            .collect();
        if got != want {
            errs.push(FieldError::new(
                "source.schema",
                format!(
                    "format: raw needs exactly these fields in order: {}",
                    want.iter()
                        .map(|(n, t)| format!("{n} ({t:?})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}

/// Epoch milliseconds from RFC 3339 text or a plain integer.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_timestamp_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{s}` is neither RFC 3339 time nor epoch milliseconds ({e})"))
}

fn validate_sink(path: &str, sink: &SinkSpec, c: &CheckpointSpec, errs: &mut Vec<FieldError>) {
    match sink {
        SinkSpec::Kafka(k) => {
            if k.bootstrap_servers.trim().is_empty() {
                errs.push(FieldError::new(
                    format!("{path}.kafka.bootstrapServers"),
                    "is empty",
                ));
            }
            if k.topic.trim().is_empty() {
                errs.push(FieldError::new(format!("{path}.kafka.topic"), "is empty"));
            }
            let delivery = k.delivery.unwrap_or(if c.exactly_once {
                Delivery::ExactlyOnce
            } else {
                Delivery::AtLeastOnce
            });
            if delivery == Delivery::ExactlyOnce {
                match &k.transactional_id_prefix {
                    None => errs.push(FieldError::new(
                        format!("{path}.kafka.transactionalIdPrefix"),
                        "is required for delivery: exactly-once (unique per job in the cluster)",
                    )),
                    Some(p) if p.trim().is_empty() => errs.push(FieldError::new(
                        format!("{path}.kafka.transactionalIdPrefix"),
                        "is empty",
                    )),
                    Some(_) => {}
                }
                if k.transaction_pool_size < 2 {
                    errs.push(FieldError::new(
                        format!("{path}.kafka.transactionPoolSize"),
                        "must be at least 2 (one transaction commits while the next writes)",
                    ));
                }
                let needed = c.timeout.get() + k.restart_budget.get();
                if k.transaction_timeout.get() < needed {
                    errs.push(FieldError::new(
                        format!("{path}.kafka.transactionTimeout"),
                        format!(
                            "{} is shorter than checkpoint.timeout {} plus restartBudget {}: \
                             the broker could abort a transaction a completed checkpoint \
                             promised; raise transactionTimeout (and the broker's \
                             transaction.max.timeout.ms) to at least {}s, or lower \
                             checkpoint.timeout or restartBudget",
                            k.transaction_timeout,
                            c.timeout,
                            k.restart_budget,
                            needed.as_secs()
                        ),
                    ));
                }
            }
        }
        SinkSpec::ClickHouse(ch) => {
            if !(ch.url.starts_with("http://") || ch.url.starts_with("https://")) {
                errs.push(FieldError::new(
                    format!("{path}.clickhouse.url"),
                    format!("`{}` is not an http:// or https:// URL", ch.url),
                ));
            }
            if ch.table.trim().is_empty() {
                errs.push(FieldError::new(
                    format!("{path}.clickhouse.table"),
                    "is empty",
                ));
            }
            if ch.block_rows == 0 {
                errs.push(FieldError::new(
                    format!("{path}.clickhouse.blockRows"),
                    "must be at least 1",
                ));
            }
            if ch.initial_backoff.get().is_zero() || ch.max_backoff < ch.initial_backoff {
                errs.push(FieldError::new(
                    format!("{path}.clickhouse.maxBackoff"),
                    "initialBackoff must be > 0 and maxBackoff >= initialBackoff",
                ));
            }
            if ch.mode == ClickHouseMode::WriteAhead && !c.exactly_once {
                errs.push(FieldError::new(
                    format!("{path}.clickhouse.mode"),
                    "writeAhead needs checkpoint.exactlyOnce: true; use mode: replacing",
                ));
            }
        }
        _ => {}
    }
}

fn validate_source(src: &SourceSpec, errs: &mut Vec<FieldError>) {
    let given: Vec<&str> = [
        ("datagen", src.datagen.is_some()),
        ("file", src.file.is_some()),
        ("kafka", src.kafka.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    if given.len() != 1 {
        errs.push(FieldError::new(
            "source",
            format!(
                "give exactly one of datagen, file, kafka; found {}",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ),
        ));
    }
    if let Some(k) = &src.kafka {
        validate_kafka_source(k, src, errs);
    }
    if src.file.as_ref().is_some_and(|f| f.batch_size == 0) {
        errs.push(FieldError::new(
            "source.file.batchSize",
            "must be at least 1",
        ));
    }
    if src.schema.is_empty() {
        errs.push(FieldError::new("source.schema", "needs at least one field"));
    }
    for (i, f) in src.schema.iter().enumerate() {
        if src.schema[..i].iter().any(|g| g.name == f.name) {
            errs.push(FieldError::new(
                format!("source.schema[{i}].name"),
                format!("duplicate field `{}`", f.name),
            ));
        }
    }
    if let Some(et) = &src.event_time {
        match src.schema.iter().find(|f| f.name == et.field) {
            None => errs.push(FieldError::new(
                "source.eventTime.field",
                format!(
                    "`{}` is not in source.schema ({})",
                    et.field,
                    field_names(src)
                ),
            )),
            Some(f) if f.data_type != FieldType::Timestamp => errs.push(FieldError::new(
                "source.eventTime.field",
                format!(
                    "`{}` has type {:?}; event time needs a timestamp field",
                    et.field, f.data_type
                ),
            )),
            Some(_) => {}
        }
    }
    if let Some(d) = &src.datagen {
        validate_datagen(d, src, errs);
    }
}

fn field_names(src: &SourceSpec) -> String {
    let names: Vec<&str> = src.schema.iter().map(|f| f.name.as_str()).collect();
    format!("fields: {}", names.join(", "))
}

fn validate_datagen(d: &DatagenSpec, src: &SourceSpec, errs: &mut Vec<FieldError>) {
    if d.splits == 0 {
        errs.push(FieldError::new(
            "source.datagen.splits",
            "must be at least 1",
        ));
    }
    if d.batch_size == 0 {
        errs.push(FieldError::new(
            "source.datagen.batchSize",
            "must be at least 1",
        ));
    }
    if d.rate == Some(0) {
        errs.push(FieldError::new(
            "source.datagen.rate",
            "must be at least 1 (omit it for no limit)",
        ));
    }
    for f in &src.schema {
        if !d.fields.contains_key(&f.name) {
            errs.push(FieldError::new(
                "source.datagen.fields",
                format!("no generator for schema field `{}`", f.name),
            ));
        }
    }
    for (name, g) in &d.fields {
        let path = format!("source.datagen.fields.{name}");
        let Some(field) = src.schema.iter().find(|f| &f.name == name) else {
            errs.push(FieldError::new(
                path,
                format!("`{name}` is not in source.schema ({})", field_names(src)),
            ));
            continue;
        };
        let ok = match g {
            FieldGenerator::Sequence {} => field.data_type == FieldType::Int64,
            FieldGenerator::Key { cardinality, .. } => {
                if *cardinality == 0 {
                    errs.push(FieldError::new(
                        format!("{path}.key.cardinality"),
                        "must be at least 1",
                    ));
                }
                field.data_type == FieldType::String
            }
            FieldGenerator::Uniform { min, max } => {
                if min > max || !min.is_finite() || !max.is_finite() {
                    errs.push(FieldError::new(
                        format!("{path}.uniform"),
                        "needs finite min <= max",
                    ));
                }
                matches!(field.data_type, FieldType::Int64 | FieldType::Float64)
            }
            FieldGenerator::Bernoulli { p } => {
                if !(0.0..=1.0).contains(p) {
                    errs.push(FieldError::new(
                        format!("{path}.bernoulli.p"),
                        "must be within [0, 1]",
                    ));
                }
                field.data_type == FieldType::Boolean
            }
            FieldGenerator::EventTime { step, .. } => {
                if step.get().is_zero() {
                    errs.push(FieldError::new(
                        format!("{path}.eventTime.step"),
                        "must be greater than 0",
                    ));
                }
                field.data_type == FieldType::Timestamp
            }
        };
        if !ok {
            errs.push(FieldError::new(
                path,
                format!(
                    "generator cannot produce type {:?} of field `{name}`",
                    field.data_type
                ),
            ));
        }
    }
}

fn validate_window(path: &str, w: &WindowSpec, has_event_time: bool, errs: &mut Vec<FieldError>) {
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
