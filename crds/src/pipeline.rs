//! The pipeline spec: `source`, `transforms`, `sinks`, plus how the job checkpoints.
//!
//! These serde types are what `weir-runtime run job.yaml` reads and what the StreamJob CRD
//! embeds under `spec.pipeline`, so a pipeline moves between laptop and cluster unchanged.
//! Every struct denies unknown fields: a typo is an error naming the field and its line,
//! never a silently ignored setting.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connectors::{ClickHouseSinkSpec, KafkaSinkSpec, KafkaSourceSpec};
use crate::duration::Duration;
use crate::mysql::MysqlSinkSpec;
use crate::postgres::PostgresSinkSpec;
use crate::state_backend::StateBackendSpec;

/// A whole job as run locally: the pipeline plus its execution settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "JobFileRepr", into = "JobFileRepr")]
pub struct JobFile {
    /// Job name; names the storage directory `<storage>/<namespace>/<name>/`. Defaults to the
    /// file name without extension.
    pub name: Option<String>,
    /// Subtasks per operator. A savepoint restores at any parallelism up to `maxParallelism`.
    pub parallelism: u32,
    /// Number of key groups: the unit in which keyed state is split and moved on rescale.
    pub max_parallelism: u32,
    /// Checkpointing; on by default with local storage under `./.weir/`.
    pub checkpoint: CheckpointSpec,
    /// Where operators keep keyed state.
    pub state_backend: StateBackendSpec,
    /// What the job computes.
    pub pipeline: Pipeline,
}

/// The on-disk shape of [`JobFile`]: flat, because `#[serde(flatten)]` would hide the field
/// path and line of every error inside the pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobFileRepr {
    /// Job name; names the storage directory `<storage>/<namespace>/<name>/`. Defaults to the
    /// file name without extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Subtasks per operator. A savepoint restores at any parallelism up to `maxParallelism`.
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Number of key groups: the unit in which keyed state is split and moved on rescale.
    /// Fixed for the life of the job's state.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u32,
    /// Checkpointing; on by default with local storage under `./.weir/`.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// Where operators keep keyed state: `memory` (default) or `disk`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub state_backend: StateBackendSpec,
    /// Where records come from, their schema and their event time.
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    #[schemars(with = "SourceSpec")]
    pub source: SourceSpec,
    /// See [`Pipeline::sources`].
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "serde_yaml::with::singleton_map_recursive"
    )]
    #[schemars(with = "Vec<SourceSpec>")]
    pub sources: Vec<SourceSpec>,
    /// Applied in order.
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    #[schemars(with = "Vec<Transform>")]
    pub transforms: Vec<Transform>,
    /// The pipeline as SQL instead of `transforms`: `INSERT INTO <sink> SELECT ... FROM
    /// <source>` statements over the source and sinks by their `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// See [`Pipeline::state_ttl`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_ttl: Option<Duration>,
    /// With `transforms`, every sink receives every result record; with `sql`, each sink
    /// receives what its `INSERT` computes.
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    #[schemars(with = "Vec<SinkSpec>")]
    pub sinks: Vec<SinkSpec>,
}

impl From<JobFileRepr> for JobFile {
    fn from(r: JobFileRepr) -> Self {
        Self {
            name: r.name,
            parallelism: r.parallelism,
            max_parallelism: r.max_parallelism,
            checkpoint: r.checkpoint,
            state_backend: r.state_backend,
            pipeline: Pipeline {
                source: r.source,
                sources: r.sources,
                transforms: r.transforms,
                sql: r.sql,
                state_ttl: r.state_ttl,
                sinks: r.sinks,
            },
        }
    }
}

impl From<JobFile> for JobFileRepr {
    fn from(j: JobFile) -> Self {
        Self {
            name: j.name,
            parallelism: j.parallelism,
            max_parallelism: j.max_parallelism,
            checkpoint: j.checkpoint,
            state_backend: j.state_backend,
            source: j.pipeline.source,
            sources: j.pipeline.sources,
            transforms: j.pipeline.transforms,
            sql: j.pipeline.sql,
            state_ttl: j.pipeline.state_ttl,
            sinks: j.pipeline.sinks,
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_parallelism() -> u32 {
    1
}

fn default_max_parallelism() -> u32 {
    128
}

/// Source, transforms (or SQL) and sinks: the dataflow itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.sql) || !has(self.transforms) || size(self.transforms) == 0",
    "message": "a pipeline is either transforms or sql, not both"
}, {
    "rule": "!has(self.sources) || size(self.sources) == 0 || has(self.sql)",
    "message": "sources: further sources are read by sql statements, by name; a transforms pipeline reads its one source"
}, {
    "rule": "!has(self.stateTtl) || has(self.sql)",
    "message": "stateTtl applies to sql pipelines (a regular join's rows); transforms bound their state themselves"
}]))]
pub struct Pipeline {
    /// Where records come from, their schema and their event time.
    pub source: SourceSpec,
    /// Further sources of a `sql` pipeline, each a table its statements read by `name`
    /// (joined with the others, or unioned): another topic, or a bounded file read as a
    /// side table. Each has its own schema, event time and splits; a join or union of
    /// results from several sources takes the lower of their watermarks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_SOURCES))]
    pub sources: Vec<SourceSpec>,
    /// Applied in order.
    #[serde(default)]
    #[schemars(length(max = MAX_TRANSFORMS))]
    pub transforms: Vec<Transform>,
    /// The pipeline as SQL instead of `transforms`: one or more `INSERT INTO <sink> SELECT
    /// ... FROM <source>` statements (one per sink, one dataflow), naming the source and the
    /// sinks by their `name`.
    /// Windows are the table functions `TUMBLE`, `HOP` and `SESSION` over the source's
    /// event-time column, as in Flink SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SQL_BYTES))]
    pub sql: Option<String>,
    /// How long state that nothing else ends is kept, counted in event time, like Flink's
    /// `table.exec.state.ttl` (which counts in processing time; event time replays the same
    /// after a restore): a regular join's row (from its own event time), an updating `GROUP
    /// BY`'s group and a top-N's partition over all time (from their newest row's). What
    /// expired is forgotten: a later row no longer joins it, a group or partition starts
    /// again. Without it these keep everything for ever. Windows and interval joins drop
    /// state on their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_ttl: Option<Duration>,
    /// With `transforms`, every sink receives every result record; with `sql`, each sink
    /// receives what its `INSERT` computes.
    #[schemars(length(min = 1, max = MAX_SINKS))]
    pub sinks: Vec<SinkSpec>,
}

/// Most transforms a pipeline may have. A bound the CRD states, so that the apiserver can
/// estimate the cost of the CEL rules that walk the list (an unbounded list fails the budget).
pub const MAX_TRANSFORMS: usize = 64;

/// Longest `sql` script, in bytes: a bound the CRD states (CEL cost), far above any query
/// a person writes.
pub const MAX_SQL_BYTES: usize = 65_536;

/// Most further sources a pipeline may have (the same reason as [`MAX_TRANSFORMS`]).
pub const MAX_SOURCES: usize = 8;

/// Most sinks a pipeline may have (the same reason as [`MAX_TRANSFORMS`]).
pub const MAX_SINKS: usize = 16;

/// How and where the job checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between the end of one checkpoint and the trigger of the next.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// A checkpoint not completed within this time is abandoned.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Least time between the completion of one checkpoint and the start of the next.
    #[serde(default)]
    pub min_pause: Duration,
    /// `file:///abs/path`, `file://./relative`, `s3://bucket/prefix`, and in a local job
    /// file also `az://container/prefix` (Azure Blob Storage) or `gs://bucket/prefix` (Google
    /// Cloud Storage), with credentials from the environment.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Completed checkpoints kept; older ones are deleted. All are kept on cancellation.
    #[serde(default = "default_retained")]
    pub retained: u32,
    /// S3 connection settings, used when `storage` is `s3://`.
    #[serde(default)]
    pub s3: S3Spec,
    /// Refuse storage without conditional writes (needed to fence zombies). Turning this off
    /// gives up the exactly-once guarantee when two incarnations run at once.
    #[serde(default = "default_true")]
    pub exactly_once: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_storage() -> String {
    "file://./.weir".to_string()
}
fn default_retained() -> u32 {
    3
}
fn default_true() -> bool {
    true
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            min_pause: Duration::default(),
            storage: default_storage(),
            retained: default_retained(),
            s3: S3Spec::default(),
            exactly_once: true,
        }
    }
}

/// S3 endpoint settings. Credentials come from the standard AWS chain (environment, profile,
/// web identity), never from the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Spec {
    /// Custom endpoint, e.g. `http://127.0.0.1:9000`; AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when absent and none is configured in the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most non-AWS servers need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Environment variable holding the PEM CA bundle that signs an `https://` endpoint's
    /// certificate (a private CA); the system's CA bundle when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub ca_pem_env: Option<String>,
}

/// The source: exactly one connector, the schema of its records and its event time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.datagen), has(self.file), has(self.kafka), has(self.nexmark)].filter(x, x).size() == 1",
    "message": "source needs exactly one of datagen, file, kafka, nexmark"
}]))]
pub struct SourceSpec {
    /// The table name a `sql` pipeline reads the source by (required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 63))]
    pub name: Option<String>,
    /// Seeded, deterministic generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagen: Option<DatagenSpec>,
    /// JSON lines from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSourceSpec>,
    /// A Kafka topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSourceSpec>,
    /// The Nexmark benchmark's auction events (persons, auctions, bids), generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexmark: Option<NexmarkSpec>,
    /// Record fields, in order.
    pub schema: Vec<FieldSpec>,
    /// Which field carries event time, and how late records may arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTimeSpec>,
    /// What to do with a record that cannot be decoded: `{fail: {}}` (the default),
    /// `{skip: {}}` or `{sideOutput: <sink>}`.
    #[serde(default)]
    pub on_decode_error: DecodeErrorPolicy,
}

/// The connector of a [`SourceSpec`], as the enum [`SinkSpec`] is on the wire. The wire form
/// keeps three optional fields and a CEL exactly-one rule because serde cannot flatten an
/// enum into a struct that denies unknown fields; code matches on this instead, so a new
/// connector is a compile error wherever one is handled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SourceConnector<'a> {
    /// Seeded, deterministic generator.
    Datagen(&'a DatagenSpec),
    /// JSON lines from a file.
    File(&'a FileSourceSpec),
    /// A Kafka topic.
    Kafka(&'a KafkaSourceSpec),
    /// Nexmark's generated auction events.
    Nexmark(&'a NexmarkSpec),
}

impl SourceConnector<'_> {
    /// The connector's key in a manifest, as messages name it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Datagen(_) => "datagen",
            Self::File(_) => "file",
            Self::Kafka(_) => "kafka",
            Self::Nexmark(_) => "nexmark",
        }
    }
}

impl SourceSpec {
    /// The one connector given; `None` when there are none or several, which validation
    /// reports (so a validated source always has one).
    #[must_use]
    pub fn connector(&self) -> Option<SourceConnector<'_>> {
        let mut given = self.connectors();
        match (given.next(), given.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }

    /// Every connector given, in manifest order (`datagen`, `file`, `kafka`, `nexmark`). Validation
    /// checks each even when several are given, so one edit cycle fixes them all.
    pub(crate) fn connectors(&self) -> impl Iterator<Item = SourceConnector<'_>> {
        [
            self.datagen.as_ref().map(SourceConnector::Datagen),
            self.file.as_ref().map(SourceConnector::File),
            self.kafka.as_ref().map(SourceConnector::Kafka),
            self.nexmark.as_ref().map(SourceConnector::Nexmark),
        ]
        .into_iter()
        .flatten()
    }
}

/// One schema field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSpec {
    /// Column name.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub data_type: FieldType,
    /// Whether the field may be null or absent.
    #[serde(default)]
    pub nullable: bool,
}

/// Column types a schema can declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// true / false.
    Boolean,
    /// Millisecond timestamp (UTC). In JSON: RFC 3339 text or epoch milliseconds.
    Timestamp,
}

/// Event time: the field and the bounded out-of-orderness the watermark allows for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTimeSpec {
    /// A `timestamp` field of the schema.
    pub field: String,
    /// Watermark = highest event time seen minus this.
    #[serde(default)]
    pub max_out_of_orderness: Duration,
    /// A partition (Kafka) or split (file, datagen) that delivers no record for this long
    /// stops holding the watermark back, so one silent partition does not stop every window;
    /// it rejoins with its next record, and records that are late by then follow the job's
    /// late-record policy. Absent: a silent partition holds the watermark (Flink's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// What happens to an undecodable source record. An object with exactly one member (like a
/// sink), because a Kubernetes schema cannot type a field that is "a word or an object".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum DecodeErrorPolicy {
    /// Stop the job with an error naming the record (the default: nothing is lost silently).
    Fail {},
    /// Drop the record and count it in `weir_decode_errors_total`.
    Skip {},
    /// Write the raw record and the error to a side output.
    SideOutput(Box<SinkSpec>),
}

impl Default for DecodeErrorPolicy {
    fn default() -> Self {
        Self::Fail {}
    }
}

/// The deterministic generator. Record `i` depends only on `seed` and `i`, so the same seed
/// yields the same stream at any parallelism; tests and benchmarks compute oracles from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatagenSpec {
    /// Seed of every generated value.
    #[serde(default)]
    pub seed: u64,
    /// Records in all; unbounded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Records per second over all subtasks; as fast as possible when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// Independent splits the stream is cut into (record `i` belongs to split `i mod splits`);
    /// the unit of source parallelism.
    #[serde(default = "default_splits")]
    #[schemars(range(min = 1, max = 65536))]
    pub splits: u32,
    /// Rows per emitted batch.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1048576))]
    pub batch_size: u32,
    /// How each schema field is generated: `{sequence: {}}`, `{key: ...}`, `{uniform: ...}`,
    /// `{bernoulli: ...}` or `{eventTime: ...}`.
    pub fields: IndexMap<String, FieldGenerator>,
}

/// The Nexmark benchmark's event stream, as its reference generator (Apache Beam's) makes it:
/// one person, three auctions and 46 bids in every 50 events, ids that grow with the
/// stream, bids mostly on recent and hot auctions by active and hot bidders, and event time
/// that advances `eventsPerSecond` events per second. Event `i` depends only on `i` and the
/// seed, so the stream is the same at any parallelism and after any restore.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NexmarkSpec {
    /// Seed of every generated value.
    #[serde(default)]
    pub seed: u64,
    /// Events in all; unbounded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// How fast event time advances: events per second of event time.
    #[serde(default = "default_nexmark_event_rate")]
    #[schemars(range(min = 1))]
    pub events_per_second: u64,
    /// Wall-clock pacing, events per second over all subtasks; as fast as possible when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// Independent splits the stream is cut into (event `i` belongs to split `i mod splits`);
    /// the unit of source parallelism.
    #[serde(default = "default_splits")]
    #[schemars(range(min = 1, max = 65536))]
    pub splits: u32,
    /// Events per emitted batch.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1048576))]
    pub batch_size: u32,
}

fn default_nexmark_event_rate() -> u64 {
    10_000
}

fn default_splits() -> u32 {
    8
}

fn default_batch_size() -> u32 {
    1024
}

/// Most rows a source emits in one batch (`batchSize`, `maxBatchSize`): a batch is allocated
/// whole, so a mistyped size would ask for gigabytes at the first read. Far more than any
/// operator gains from.
pub const MAX_BATCH_SIZE: u32 = 1 << 20;

/// Most splits a generator may be cut into: every subtask lists the splits it owns.
pub const MAX_SPLITS: u32 = 1 << 16;

/// How one generated field gets its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum FieldGenerator {
    /// The record index `i` (an `int64`): unique, useful as an id.
    Sequence {},
    /// `prefix` + a number uniform in `[0, cardinality)` (a `string`): a key.
    Key {
        /// Distinct keys.
        cardinality: u64,
        /// Text before the number.
        #[serde(default)]
        prefix: String,
    },
    /// Uniform in `[min, max]` (inclusive for `int64`, half-open for `float64`).
    Uniform {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// `true` with this probability (a `boolean`).
    Bernoulli {
        /// Probability of `true`.
        p: f64,
    },
    /// A `timestamp`: `start + i * step - d`, `d` uniform in `[0, disorder)`, so records
    /// arrive out of order by up to `disorder`.
    EventTime {
        /// RFC 3339 time of record 0.
        #[serde(default = "default_start")]
        start: String,
        /// Event-time distance between consecutive records.
        #[serde(default = "default_step")]
        step: Duration,
        /// Largest delay of a record behind its slot.
        #[serde(default)]
        disorder: Duration,
    },
}

fn default_start() -> String {
    "2026-01-01T00:00:00Z".to_string()
}

fn default_step() -> Duration {
    Duration::from_millis(1)
}

/// JSON lines from a file, read once (bounded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSourceSpec {
    /// Path of the file.
    pub path: String,
    /// Lines per emitted batch.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1048576))]
    pub batch_size: u32,
}

/// One transform step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Transform {
    /// Keep records for which this SQL expression is true.
    Filter(String),
    /// Output columns, in order: name -> SQL expression over the input columns.
    Select(IndexMap<String, String>),
    /// Keyed event-time window aggregation.
    Window(WindowSpec),
    /// Drop records whose key was seen within `ttl` of event time.
    Dedup(DedupSpec),
}

/// The state id of each transform (`None`: stateless): its `id`, else its kind and position
/// among the stateful transforms (`window-0`, `dedup-1`), the ids checkpoints have always
/// used.
#[must_use]
pub fn state_ids(transforms: &[Transform]) -> Vec<Option<String>> {
    let mut stateful = 0usize;
    transforms
        .iter()
        .map(|t| {
            let (kind, id) = match t {
                Transform::Window(w) => ("window", &w.id),
                Transform::Dedup(d) => ("dedup", &d.id),
                Transform::Filter(_) | Transform::Select(_) => return None,
            };
            stateful += 1;
            Some(
                id.clone()
                    .unwrap_or_else(|| format!("{kind}-{}", stateful - 1)),
            )
        })
        .collect()
}

/// A keyed window. Exactly one of `tumbling`, `sliding`, `session`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.tumbling), has(self.sliding), has(self.session)].filter(x, x).size() == 1",
    "message": "a window needs exactly one of tumbling, sliding, session"
}]))]
pub struct WindowSpec {
    /// Names the operator's state in checkpoints, so that it is restored into this operator
    /// whatever transforms are added or removed around it (default: its kind and position
    /// among the stateful transforms, `window-0`, `dedup-1`, which an inserted window or
    /// dedup shifts). A renamed id leaves the old state unclaimed: a restore refuses it unless
    /// `allowNonRestoredState` is set or `dropState` names the old id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub id: Option<String>,
    /// Fixed, non-overlapping windows of this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tumbling: Option<Duration>,
    /// Windows of `size` starting every `slide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding: Option<SlidingSpec>,
    /// Per-key windows closed by `gap` of inactivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSpec>,
    /// Key columns; results carry them plus `window_start` and `window_end`.
    pub key_by: Vec<String>,
    /// Output column -> aggregate: `count(*)`, `count(e)`, `sum(e)`, `min(e)`, `max(e)`,
    /// `avg(e)`, `count_distinct(e)`, with `e` a SQL expression.
    pub aggregates: IndexMap<String, String>,
    /// What happens to a record whose windows have all closed: `{drop: {}}` (the default)
    /// or `{sideOutput: <sink>}`.
    #[serde(default)]
    pub late_records: LatePolicy,
}

/// Sliding window geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlidingSpec {
    /// Window length.
    pub size: Duration,
    /// Distance between window starts.
    pub slide: Duration,
}

/// Most windows one record may enter: a sliding window's (or `HOP`'s) size over its slide.
/// Each is a window of its own to update, and the batch lists its rows per window, so a
/// slide typed in the wrong unit (`1d` slid by `1ms`: 86 million windows a record) would
/// exhaust memory at the first batch. A day slid by a minute and a half is within it.
pub const MAX_WINDOWS_PER_RECORD: i64 = 1_000;

/// Session window geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSpec {
    /// Inactivity that closes a session.
    pub gap: Duration,
}

/// Late-record handling: an object with exactly one member (see [`DecodeErrorPolicy`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum LatePolicy {
    /// Drop and count in `weir_late_records_total`.
    Drop {},
    /// Write late records, unchanged, to this sink.
    SideOutput(Box<SinkSpec>),
}

impl Default for LatePolicy {
    fn default() -> Self {
        Self::Drop {}
    }
}

/// Keyed deduplication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DedupSpec {
    /// Names the operator's state in checkpoints, so that it is restored into this operator
    /// whatever transforms are added or removed around it (default: its kind and position
    /// among the stateful transforms, `window-0`, `dedup-1`, which an inserted window or
    /// dedup shifts). A renamed id leaves the old state unclaimed: a restore refuses it unless
    /// `allowNonRestoredState` is set or `dropState` names the old id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub id: Option<String>,
    /// Columns that identify a duplicate.
    pub key_by: Vec<String>,
    /// How long (event time) a key is remembered after its first record.
    pub ttl: Duration,
}

/// One sink. Exactly one connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SinkSpec {
    /// JSON lines on standard output. At-least-once: output before a crash repeats.
    Stdout {
        /// The table name a `sql` pipeline writes to (`INSERT INTO <name>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 63))]
        name: Option<String>,
    },
    /// Discards everything; for benchmarks.
    Blackhole {
        /// The table name a `sql` pipeline writes to (`INSERT INTO <name>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 63))]
        name: Option<String>,
    },
    /// JSON lines files, exactly-once: written pending, renamed when the checkpoint completes.
    File(FileSinkSpec),
    /// A Kafka topic; exactly-once through Kafka transactions.
    Kafka(KafkaSinkSpec),
    /// A ClickHouse table over HTTP; exactly-once through write-ahead, deduplicated inserts.
    #[serde(rename = "clickhouse")]
    ClickHouse(ClickHouseSinkSpec),
    /// A PostgreSQL table; exactly-once through two-phase commit, or idempotent upserts.
    Postgres(PostgresSinkSpec),
    /// A MySQL or MariaDB table; exactly-once through XA two-phase commit, or idempotent
    /// upserts.
    Mysql(MysqlSinkSpec),
}

impl SinkSpec {
    /// The connector's key as the sink is written (`- kafka: {...}`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdout { .. } => "stdout",
            Self::Blackhole { .. } => "blackhole",
            Self::File(_) => "file",
            Self::Kafka(_) => "kafka",
            Self::ClickHouse(_) => "clickhouse",
            Self::Postgres(_) => "postgres",
            Self::Mysql(_) => "mysql",
        }
    }

    /// The table name a `sql` pipeline writes to, if the sink has one.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Stdout { name } | Self::Blackhole { name } => name.as_deref(),
            Self::File(f) => f.name.as_deref(),
            Self::Kafka(k) => k.name.as_deref(),
            Self::ClickHouse(c) => c.name.as_deref(),
            Self::Postgres(c) => c.name.as_deref(),
            Self::Mysql(c) => c.name.as_deref(),
        }
    }
}

/// File sink settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSinkSpec {
    /// The table name a `sql` pipeline writes to (`INSERT INTO <name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 63))]
    pub name: Option<String>,
    /// Directory that receives `part-*.jsonl` files.
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::{SourceConnector, SourceSpec};

    fn source(connectors: &str) -> SourceSpec {
        let yaml = format!("{connectors}\nschema: [{{name: a, type: int64}}]\n");
        serde_yaml::from_str(&yaml).expect("a source")
    }

    const DATAGEN: &str = "datagen: {fields: {}}";
    const FILE: &str = "file: {path: in.jsonl}";
    const KAFKA: &str = "kafka: {bootstrapServers: k:9092, topic: t}";

    #[test]
    fn connector_is_the_one_given() {
        let s = source(DATAGEN);
        let d = s.datagen.as_ref().expect("datagen");
        assert_eq!(s.connector(), Some(SourceConnector::Datagen(d)));
        let s = source(FILE);
        let f = s.file.as_ref().expect("file");
        assert_eq!(s.connector(), Some(SourceConnector::File(f)));
        let s = source(KAFKA);
        let k = s.kafka.as_ref().expect("kafka");
        assert_eq!(s.connector(), Some(SourceConnector::Kafka(k)));
        assert_eq!(s.connector().map(SourceConnector::name), Some("kafka"));
    }

    #[test]
    fn connector_is_none_without_exactly_one() {
        assert_eq!(source("").connector(), None);
        let two = source(&format!("{FILE}\n{KAFKA}"));
        assert_eq!(two.connector(), None);
        let names: Vec<&str> = two.connectors().map(SourceConnector::name).collect();
        assert_eq!(names, ["file", "kafka"]);
    }
}
