//! Weir's stream-processing engine.
//!
//! A job file ([`weir_crds::JobFile`]) is planned ([`plan::plan`]) into stages of chained
//! operators over Arrow record batches; [`job::start`] restores state, claims a storage
//! generation, and runs each stage as `parallelism` tokio tasks ([`task`]) connected by
//! bounded channels, with a key-group shuffle in front of every keyed operator. The
//! [`checkpoint`] module holds the whole checkpoint protocol: aligned barriers, `_metadata` as
//! the commit point, fencing, restore and retention. Sinks that commit in two phases implement
//! [`sink::TwoPhaseCommitSink`]. State lives in [`storage`] (`file://` or `s3://`). A job may
//! run as several pods, each with a slice of every stage's subtasks ([`cluster`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), weir_runtime::error::Error> {
//! let plan = weir_runtime::load_plan("examples/quickstart.yaml")?;
//! let job = weir_runtime::job::start(plan, weir_runtime::job::RunOptions::default()).await?;
//! let outcome = job.wait().await?;
//! # Ok(()) }
//! ```

pub mod avro;
pub mod changelog;
pub mod checkpoint;
pub mod clickhouse;
pub mod cluster;
pub mod connectors;
pub mod console;
pub mod control;
pub mod error;
pub mod explain;
pub mod expr;
pub mod fault;
pub mod ids;
pub mod job;
pub mod kafka;
pub mod keys;
pub mod mysql;
pub mod operator;
pub mod plan;
pub mod postgres;
pub mod protobuf;
mod retry;
pub mod schema;
pub mod schema_registry;
pub mod sink;
pub mod source;
pub mod sql;
pub mod state;
pub mod storage;
pub mod task;
pub mod tls;
pub mod wait;
pub mod watermark;

use error::{Error, Result};

/// Read, validate and plan a job file. Nothing runs; every error names the field and line.
///
/// # Errors
/// [`Error::Job`] with all problems found, or [`Error::Source`] if the file cannot be read.
pub fn load_plan(path: &str) -> Result<plan::Plan> {
    let src = std::fs::read_to_string(path).map_err(|e| Error::Source {
        source_name: path.to_string(),
        message: format!("cannot read job file: {e}"),
    })?;
    plan_source(path, &src)
}

/// [`load_plan`] over text already read.
///
/// # Errors
/// [`Error::Job`] with all problems found.
pub fn plan_source(path: &str, src: &str) -> Result<plan::Plan> {
    let job = weir_crds::load_job(path, src)?;
    let name = job.name.clone().unwrap_or_else(|| {
        std::path::Path::new(path)
            .file_stem()
            .map_or_else(|| "job".to_string(), |s| s.to_string_lossy().to_string())
    });
    Ok(plan::plan(&job, &name, path, src)?)
}
