//! Checks a parsed job that the type system cannot express, and the loader that turns YAML
//! text into a [`JobFile`] or a list of errors that each name a field and a line.
//!
//! Checks that need the data's types (does a column exist, does an expression type-check)
//! live in the runtime's planner, which reports through the same [`FieldError`].
//!
//! Each connector's checks live in the file named after it (`kafka.rs` holds the Kafka
//! source's and sink's); this file holds the job-level checks and calls the rest.

mod clickhouse;
mod database;
mod datagen;
pub mod expr_limits;
mod file;
mod kafka;
mod nexmark;
mod source;
pub mod sql;
pub mod transactional;
pub(crate) mod transforms;

use std::fmt;

use crate::locate::LineIndex;
use crate::pipeline::{
    CheckpointSpec, DecodeErrorPolicy, JobFile, LatePolicy, SinkSpec, Transform,
};

pub use kafka::{KAFKA_RAW_COLUMNS, parse_timestamp_ms};
pub use nexmark::NEXMARK_COLUMNS;
pub use transforms::{AggregateFn, parse_aggregate};

/// One problem in a job file: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `transforms[1].window.keyBy[0]`.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
    /// For a multi-line value (an SQL script): the 1-based line within it the problem is on,
    /// which [`JobErrors::locate`] turns into the file's line.
    pub within: Option<usize>,
}

impl FieldError {
    /// An error at `path`; the line is filled in by [`JobErrors::locate`].
    #[must_use]
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            message: message.into(),
            within: None,
        }
    }

    /// An error on line `within` of the multi-line value at `path`.
    #[must_use]
    pub fn within(path: impl Into<String>, within: usize, message: impl Into<String>) -> Self {
        Self {
            within: Some(within),
            ..Self::new(path, message)
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
                e.line = e
                    .within
                    .and_then(|w| index.line_within(&e.path, w))
                    .or_else(|| index.line_of(&e.path));
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
                within: None,
            }],
        }
    })?;
    let mut errors = validate(&job);
    if let Some(script) = &job.pipeline.sql
        && LineIndex::new(src).joins_lines("sql")
        && crate::sql::has_line_comment(script)
    {
        // YAML joined the script's lines, so the comment now hides everything after it: a
        // condition or a statement would vanish without an error.
        errors.push(FieldError::new(
            "sql",
            "the script has a `--` comment, but YAML joins the lines of a folded (`>`), plain or quoted value, so the comment would swallow the rest of the script; write it as a literal block (`sql: |`)",
        ));
    }
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

/// A connector's `tls` block at `path`: only where the connection is TLS (`usable`, else
/// "is only used with `when`"), and a client key only with its certificate.
fn check_tls(
    t: &crate::connectors::TlsSpec,
    usable: bool,
    when: &str,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if !usable {
        errs.push(FieldError::new(path, format!("is only used with {when}")));
    }
    if t.certificate_pem_env.is_some() != t.key_pem_env.is_some() {
        errs.push(FieldError::new(
            path,
            "certificatePemEnv and keyPemEnv go together (mutual TLS needs both)",
        ));
    }
}

/// The checks that need no data: counts, ranges, exactly-one-of, references to schema fields.
/// Performs no I/O; called by [`load_job`] and by the operator before deploying.
#[must_use]
pub fn validate(job: &JobFile) -> Vec<FieldError> {
    validate_with(job, std::time::Duration::ZERO)
}

/// [`validate`] for a job whose restarts wait up to `restart_wait` (the StreamJob's
/// `restart.maxBackoff`) before the new pod starts: that wait counts against a Kafka sink's
/// `transactionTimeout` too.
#[must_use]
pub fn validate_with(job: &JobFile, restart_wait: std::time::Duration) -> Vec<FieldError> {
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
    if let Err(message) = job.state_backend.memory_bytes() {
        let message = message
            .trim_start_matches("stateBackend.memory: ")
            .to_string();
        errs.push(FieldError::new("stateBackend.memory", message));
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
    if !["file://", "s3://", "az://", "gs://"]
        .iter()
        .any(|scheme| c.storage.starts_with(scheme))
    {
        errs.push(FieldError::new(
            "checkpoint.storage",
            format!(
                "`{}` is not a file://, s3://, az:// (Azure Blob Storage) or gs:// (Google Cloud Storage) URI",
                c.storage
            ),
        ));
    }
    source::check(&job.pipeline.source, &mut errs);
    for (i, s) in job.pipeline.sources.iter().enumerate() {
        // The same checks, reported at `sources[i]` rather than `source`.
        let mut found = Vec::new();
        source::check(s, &mut found);
        errs.extend(found.into_iter().map(|mut e| {
            e.path = e.path.replacen("source", &format!("sources[{i}]"), 1);
            e
        }));
        if let DecodeErrorPolicy::SideOutput(_) = &s.on_decode_error {
            errs.push(FieldError::new(
                format!("sources[{i}].onDecodeError"),
                "sideOutput is for `source` only so far; choose fail or skip",
            ));
        }
    }
    if job.pipeline.sources.len() > crate::MAX_SOURCES {
        errs.push(FieldError::new(
            "sources",
            format!("at most {} further sources", crate::MAX_SOURCES),
        ));
    }
    let has_event_time = job.pipeline.source.event_time.is_some();
    transforms::check(&job.pipeline.transforms, has_event_time, &mut errs);
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
        check_sink(&format!("sinks[{i}]"), s, c, restart_wait, &mut errs);
    }
    for (i, t) in job.pipeline.transforms.iter().enumerate() {
        if let Transform::Window(w) = t
            && let LatePolicy::SideOutput(s) = &w.late_records
        {
            let path = format!("transforms[{i}].window.lateRecords.sideOutput");
            check_sink(&path, s, c, restart_wait, &mut errs);
        }
    }
    if let DecodeErrorPolicy::SideOutput(s) = &job.pipeline.source.on_decode_error {
        check_sink(
            "source.onDecodeError.sideOutput",
            s,
            c,
            restart_wait,
            &mut errs,
        );
    }
    transactional::check(job, &mut errs);
    sql::check(job, &mut errs);
    errs
}

/// One sink (or side output) at `path`: the connector's own checks.
fn check_sink(
    path: &str,
    sink: &SinkSpec,
    c: &CheckpointSpec,
    restart_wait: std::time::Duration,
    errs: &mut Vec<FieldError>,
) {
    match sink {
        SinkSpec::Kafka(k) => kafka::check_sink(path, k, c, restart_wait, errs),
        SinkSpec::ClickHouse(ch) => clickhouse::check_sink(path, ch, c, errs),
        SinkSpec::Postgres(pg) => database::check_postgres(path, pg, c, errs),
        SinkSpec::Mysql(m) => database::check_mysql(path, m, c, errs),
        // Nothing to check without I/O (see `file.rs` for the file sink).
        SinkSpec::File(_) | SinkSpec::Stdout { .. } | SinkSpec::Blackhole { .. } => {}
    }
}
