//! The one place that maps a pipeline's specs to the code that serves them: a sink spec to
//! its connector, a source spec to its subtasks' readers and pacing. The connectors live in their
//! own modules (`kafka`, `clickhouse`, `source::{datagen, file}`, `sink::{file, stdout}`) and
//! implement the traits of `source` and `sink`; none of them imports this module, so adding a
//! connector touches its own module and one `match` here, and no module imports its importer.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::{SinkSpec, SourceConnector, SourceSpec};

use crate::checkpoint::restore::Restored;
use crate::control::metrics::Metrics;
use crate::error::{Error, Result};
use crate::kafka::source::{KafkaReader, ReaderSetup};
use crate::sink::{SinkConnector, SinkEnv};
use crate::source::datagen::{DatagenReader, Generator};
use crate::source::decode_errors::OnError;
use crate::source::file::FileReader;
use crate::source::nexmark::{NexmarkGenerator, NexmarkReader};
use crate::source::{SourceReader, SplitState, owned_splits};

/// The connector of a sink spec; nothing connects until its `prepare`.
#[must_use]
pub fn sink(spec: &SinkSpec, env: &SinkEnv) -> Arc<dyn SinkConnector> {
    match spec {
        SinkSpec::File(f) => Arc::new(crate::sink::file::FileSinkConnector::new(&f.path)),
        SinkSpec::Stdout { .. } => {
            Arc::new(crate::sink::stdout::StdoutConnector { discard: false })
        }
        SinkSpec::Blackhole { .. } => {
            Arc::new(crate::sink::stdout::StdoutConnector { discard: true })
        }
        SinkSpec::Kafka(k) => Arc::new(crate::kafka::sink::KafkaSinkConnector::new(k, env)),
        SinkSpec::ClickHouse(c) => Arc::new(crate::clickhouse::ClickHouseConnector::new(c, env)),
        SinkSpec::Postgres(p) => Arc::new(crate::postgres::PostgresConnector::new(p, env)),
        SinkSpec::Mysql(m) => Arc::new(crate::mysql::MysqlConnector::new(m, env)),
    }
}

/// Wait until the source's external system answers (Kafka brokers), logging the wait, so the
/// readers open against a system that is there. Sources without one are ready at once.
///
/// # Errors
/// The system still unreachable after the wait limit, or an answer that waiting cannot
/// change (a missing topic), naming the source.
pub async fn wait_for_source(source: &SourceSpec, job_name: &str) -> Result<()> {
    match source.connector() {
        Some(SourceConnector::Kafka(k)) => {
            crate::kafka::source::wait_until_reachable(k, job_name).await
        }
        _ => Ok(()),
    }
}

/// The records a source emits: its declared `schema`, or the fixed one of a connector
/// that brings its own (Kafka's `format: raw`, Nexmark).
#[must_use]
pub fn source_schema(spec: &SourceSpec) -> SchemaRef {
    match spec.connector() {
        Some(SourceConnector::Kafka(k)) if k.format == weir_crds::KafkaFormat::Raw => {
            crate::kafka::source::raw_schema()
        }
        Some(SourceConnector::Nexmark(_)) => crate::source::nexmark::schema(),
        _ => crate::schema::source_schema(&spec.schema),
    }
}

/// A pipeline's source as its subtasks open it: built once per job, so what every subtask
/// shares (a generator's compiled columns) is built once.
pub struct Source<'a> {
    spec: &'a SourceSpec,
    job_name: &'a str,
    schema: SchemaRef,
    time_col: Option<usize>,
    generator: Option<Generator>,
}

impl<'a> Source<'a> {
    /// The source `spec` of job `job_name`, emitting `schema` with its event time in column
    /// `time_col`.
    ///
    /// # Errors
    /// A generator whose columns do not compile against the source schema.
    pub fn new(
        spec: &'a SourceSpec,
        job_name: &'a str,
        schema: SchemaRef,
        time_col: Option<usize>,
    ) -> Result<Self> {
        let generator = match &spec.datagen {
            Some(d) => Some(Generator::new(d, Arc::clone(&schema))?),
            None => None,
        };
        Ok(Self {
            spec,
            job_name,
            schema,
            time_col,
            generator,
        })
    }

    /// The reader of one source subtask: the splits it owns (from the restored checkpoint
    /// when there is one) of whichever connector the spec names.
    ///
    /// # Errors
    /// Connection or file errors naming the source.
    pub fn reader(
        &self,
        stage: u32,
        subtask: u32,
        parallelism: u32,
        restored: Option<&Restored>,
        metrics: &Arc<Metrics>,
    ) -> Result<Box<dyn SourceReader>> {
        let source = self.spec;
        let on_error = match &source.on_decode_error {
            weir_crds::DecodeErrorPolicy::Fail {} => OnError::Fail,
            weir_crds::DecodeErrorPolicy::Skip {} => OnError::Skip,
            weir_crds::DecodeErrorPolicy::SideOutput(_) => OnError::SideOutput,
        };
        let splits = |total: u32| -> Vec<SplitState> {
            let owned = owned_splits(total, subtask, parallelism);
            match restored {
                Some(r) => r.splits_for(stage, &owned),
                None => owned.into_iter().map(SplitState::new).collect(),
            }
        };
        match source.connector() {
            Some(SourceConnector::Kafka(k)) => Ok(Box::new(KafkaReader::open(
                k,
                ReaderSetup {
                    job_name: self.job_name,
                    schema: Arc::clone(&self.schema),
                    time_col: self.time_col,
                    on_error,
                    subtask,
                    parallelism,
                    restored: restored.map(|r| r.all_splits(stage)).unwrap_or_default(),
                    bounded: k.bounded,
                    metrics: Arc::clone(metrics),
                },
            )?)),
            Some(SourceConnector::Datagen(d)) => {
                let g = self
                    .generator
                    .as_ref()
                    .ok_or_else(|| Error::internal("datagen source without its generator"))?;
                Ok(Box::new(DatagenReader::new(
                    g.clone(),
                    d.splits,
                    d.batch_size,
                    splits(d.splits),
                )))
            }
            Some(SourceConnector::Nexmark(n)) => Ok(Box::new(NexmarkReader::new(
                NexmarkGenerator::new(n, Arc::clone(&self.schema)),
                n.splits,
                n.batch_size,
                splits(n.splits),
            ))),
            Some(SourceConnector::File(f)) => Ok(Box::new(FileReader::new(
                f.path.clone(),
                Arc::clone(&self.schema),
                self.time_col,
                f.batch_size,
                on_error,
                splits(1).into_iter().next(),
            ))),
            // Validation refuses a source without exactly one connector before anything runs.
            None => Err(Error::internal("source has not exactly one connector")),
        }
    }

    /// Records per second one subtask may emit, when the source is paced (a generator's
    /// `rate`, shared out by the splits each subtask owns).
    #[must_use]
    pub fn rate(&self, subtask: u32, parallelism: u32) -> Option<f64> {
        let (rate, splits) = match self.spec.connector()? {
            SourceConnector::Datagen(d) => (d.rate?, d.splits),
            SourceConnector::Nexmark(n) => (n.rate?, n.splits),
            SourceConnector::File(_) | SourceConnector::Kafka(_) => return None,
        };
        let owned = owned_splits(splits, subtask, parallelism).len() as f64;
        Some(rate as f64 * owned / f64::from(splits.max(1)))
    }
}
