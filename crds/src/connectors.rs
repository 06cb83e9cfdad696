//! Settings of the external connectors: Kafka (source and sink) and ClickHouse (sink).
//!
//! Secrets never appear here: Kafka SASL and ClickHouse passwords and TLS keys are read from
//! environment variables whose names the manifest gives (the operator fills them from Secret
//! references).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Read a Kafka topic. Partitions are assigned by Weir (`partition mod parallelism`), never
/// by consumer-group rebalancing, and positions live in checkpoints; the group only receives
/// offset commits after each completed checkpoint so that lag tools see progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.format) && (self.format == 'avro' || self.format == 'protobuf')) == has(self.schemaRegistry)",
    "message": "schemaRegistry goes with format: avro or protobuf, and they need it"
}, {
    "rule": "!has(self.schemaRegistry) || !has(self.schemaRegistry.subject)",
    "message": "schemaRegistry.subject is only used by sinks (a source finds each record's schema by the id in the record)"
}]))]
pub struct KafkaSourceSpec {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Topic to read.
    pub topic: String,
    /// How record values are decoded.
    #[serde(default)]
    pub format: KafkaFormat,
    /// Where `format: avro` or `protobuf` finds the writer schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<Box<SchemaRegistrySpec>>,
    /// Where a partition starts when no checkpoint knows it.
    #[serde(default)]
    pub starting_offsets: StartingOffsets,
    /// For `startingOffsets: timestamp`: RFC 3339 time or epoch milliseconds; each partition
    /// starts at its first record at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_timestamp: Option<String>,
    /// Consumer group that receives offset commits after each completed checkpoint
    /// (default `weir-<job name>`). Only for monitoring: restore never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// How often the partition count is re-read so new partitions are picked up; `0s` never.
    #[serde(default = "default_discovery")]
    pub partition_discovery: Duration,
    /// A `timestamp` field of the schema to fill with each record's Kafka timestamp instead of
    /// a JSON field, so `eventTime.field` can use the broker's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_field: Option<String>,
    /// Stop at the offsets that are the newest when the job (or a restore) starts, take a
    /// final checkpoint and end: for backfills and tests.
    #[serde(default)]
    pub bounded: bool,
    /// Records read per poll at most.
    #[serde(default = "default_max_batch")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_batch_size: u32,
    /// How the client connects: TLS and SASL.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka consumer properties; nothing secret and nothing of `security`
    /// (`security.protocol`, `sasl.*`, `ssl.*` are refused here).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_discovery() -> Duration {
    Duration::from_secs(30)
}
fn default_max_batch() -> u32 {
    4096
}

/// Record value format of a Kafka source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// One JSON object per record, decoded into `schema`.
    #[default]
    Json,
    /// No decoding: columns `key`, `value` (text), `headers` (JSON object text), `timestamp`,
    /// `partition`, `offset`. `schema` must list exactly these (see the README).
    Raw,
    /// Avro in the Confluent wire format (a zero byte, the writer schema's id in the registry,
    /// the Avro body), as Confluent's serializers, Flink's `avro-confluent` and Debezium write
    /// it. Each writer schema is fetched from `schemaRegistry` once and resolved against
    /// `schema` by field name, so producers may evolve their schema the way Avro allows
    /// (fields added, fields a `nullable` column reads removed, `int` widened to `long`).
    Avro,
    /// Protobuf in the Confluent wire format (a zero byte, the schema id, the message's
    /// index path, the message). Each `.proto` is fetched from `schemaRegistry` once; columns
    /// read the message fields of the same name (a nullable column the message lacks reads
    /// as null).
    Protobuf,
}

impl KafkaFormat {
    /// Whether values carry a schema id of `schemaRegistry`.
    #[must_use]
    pub fn uses_registry(self) -> bool {
        matches!(self, Self::Avro | Self::Protobuf)
    }
}

/// How a Kafka sink writes record values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KafkaSinkFormat {
    /// One JSON object per record.
    #[default]
    Json,
    /// Avro in the Confluent wire format. The value schema, derived from the records'
    /// columns, is registered under `schemaRegistry.subject` when the job starts (the
    /// registry refuses it when it breaks the subject's compatibility rule, and the job
    /// does not start).
    Avro,
    /// Protobuf in the Confluent wire format: a `proto3` message derived from the records'
    /// columns (nullable ones `optional`, timestamps `google.protobuf.Timestamp`), registered
    /// the same way.
    Protobuf,
}

impl KafkaSinkFormat {
    /// Whether values carry a schema id of `schemaRegistry`.
    #[must_use]
    pub fn uses_registry(self) -> bool {
        matches!(self, Self::Avro | Self::Protobuf)
    }
}

/// A Confluent-compatible Schema Registry (Confluent Platform or Cloud, Karapace, Apicurio's
/// `ccompat` API, Redpanda).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.username) == has(self.passwordEnv)",
    "message": "username and passwordEnv go together (HTTP basic authentication needs both)"
}]))]
pub struct SchemaRegistrySpec {
    /// `http://` or `https://` base URL.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// User for HTTP basic authentication (Confluent Cloud: the API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub username: Option<String>,
    /// Environment variable holding the basic-authentication password (Confluent Cloud: the
    /// API secret), filled from a Secret by `secretEnv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 253))]
    pub password_env: Option<String>,
    /// TLS for an `https://` registry: the CA to trust and a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Sinks only: the subject the value schema is registered under (default
    /// `<topic>-value`, Confluent's topic-name strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub subject: Option<String>,
}

impl SchemaRegistrySpec {
    /// `(field below schemaRegistry, variable)` of each environment variable named.
    #[must_use]
    pub fn env_vars(&self) -> Vec<(String, &str)> {
        password_and_tls_vars(self.password_env.as_deref(), self.tls.as_ref())
    }
}

/// Where a Kafka partition starts without a checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartingOffsets {
    /// The oldest record still in the log.
    #[default]
    Earliest,
    /// Only records produced after the job first starts.
    Latest,
    /// The first record at or after `startingTimestamp`.
    Timestamp,
}

/// Write records as JSON to a Kafka topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.format) && (self.format == 'avro' || self.format == 'protobuf')) == has(self.schemaRegistry)",
    "message": "schemaRegistry goes with format: avro or protobuf, and they need it"
}, {
    "rule": "!(has(self.format) && self.format != 'json' && has(self.valueField))",
    "message": "valueField writes one column as the value; with format: avro or protobuf the value is the whole record"
}]))]
pub struct KafkaSinkSpec {
    /// The table name a `sql` pipeline writes to (`INSERT INTO <name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 63))]
    pub name: Option<String>,
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Topic to write.
    pub topic: String,
    /// Delivery guarantee; `exactly-once` by default when `checkpoint.exactlyOnce` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Transactional ids are `<prefix>-<subtask>-<n mod transactionPoolSize>`; required for
    /// exactly-once and unique per job across the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub transactional_id_prefix: Option<String>,
    /// Transactional ids per subtask. Checkpoint `n` uses id `n mod pool`, so a transaction
    /// can wait for its commit while the next checkpoint's transaction is already writing.
    #[serde(default = "default_pool")]
    #[schemars(range(min = 2))]
    pub transaction_pool_size: u32,
    /// `transaction.timeout.ms`. A pre-committed transaction must outlive the checkpoint
    /// interval and timeout plus a restart (backoff and `restartBudget`), or the broker
    /// aborts what a checkpoint already promised; at most the brokers'
    /// `transaction.max.timeout.ms` (15m by default).
    #[serde(default = "default_txn_timeout")]
    pub transaction_timeout: Duration,
    /// How long a restarted pod may take to reach its commit after the restart backoff:
    /// rescheduling, image pull, and the start-up waits for storage and brokers (each up to
    /// `WEIR_WAIT_TIMEOUT`, 2m). Checked against `transactionTimeout` with the checkpoint
    /// interval and timeout and `restart.maxBackoff`.
    #[serde(default = "default_restart_budget")]
    pub restart_budget: Duration,
    /// Columns whose values form the record key (one column: its text; several: a JSON
    /// array). No key when empty.
    #[serde(default)]
    pub key_by: Vec<String>,
    /// An integer column choosing the partition (`value mod partitions`); by key hash when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
    /// Write this text column as the record value instead of the whole record as JSON (for
    /// dead-letter topics: `raw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub value_field: Option<String>,
    /// Text columns also written as record headers (for dead-letter topics: `error`,
    /// `source`).
    #[serde(default)]
    pub header_fields: Vec<String>,
    /// How record values are written.
    #[serde(default)]
    pub format: KafkaSinkFormat,
    /// Where `format: avro` or `protobuf` registers the value schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<Box<SchemaRegistrySpec>>,
    /// How the producer and the transaction-recovery client connect: TLS and SASL.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka producer properties; nothing secret and nothing of `security`
    /// (`security.protocol`, `sasl.*`, `ssl.*` are refused here).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How a Kafka client reaches the brokers. The same settings serve librdkafka (source,
/// sink) and the client that finishes transactions after a restart, so both reach the
/// brokers the same way. Secrets (password, private key) come from environment variables
/// the manifest names, which `secretEnv` fills from Secrets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl` (TLS), `sasl-plaintext` (SASL without TLS) or `sasl-ssl`.
    #[serde(default)]
    pub protocol: KafkaProtocol,
    /// SASL mechanism and credentials; required for the `sasl-*` protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,
    /// TLS: the CA bundle to trust and a client certificate; for `ssl` and `sasl-ssl`. The
    /// system's CA bundle when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// Transport and authentication of a Kafka connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS; the broker's certificate is verified (and a client certificate sent, if given).
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl KafkaProtocol {
    /// Whether the connection is TLS.
    #[must_use]
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
    /// Whether the client authenticates with SASL.
    #[must_use]
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
    /// librdkafka's `security.protocol` value.
    #[must_use]
    pub fn librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// SASL credentials of a Kafka client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaslSpec {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// User name.
    #[schemars(length(min = 1))]
    pub username: String,
    /// Environment variable holding the password (from `secretEnv`).
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub password_env: String,
}

/// A SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    /// User name and password in the clear (inside TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256; the password never crosses the wire.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name on the wire and in librdkafka's `sasl.mechanism`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS settings of a client: whom to trust and who it is. PEM text comes from environment
/// variables (filled by `secretEnv`), never from the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// Environment variable holding the PEM CA bundle that signs the server's certificate;
    /// the system's CA bundle when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub ca_pem_env: Option<String>,
    /// Environment variable holding the client certificate chain (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub certificate_pem_env: Option<String>,
    /// Environment variable holding the client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub key_pem_env: Option<String>,
}

impl TlsSpec {
    /// `(field, variable)` of each environment variable named.
    #[must_use]
    pub fn env_vars(&self) -> Vec<(&'static str, &str)> {
        [
            ("caPemEnv", &self.ca_pem_env),
            ("certificatePemEnv", &self.certificate_pem_env),
            ("keyPemEnv", &self.key_pem_env),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.as_deref().map(|v| (f, v)))
        .collect()
    }
}

impl KafkaSourceSpec {
    /// `(field below kafka, variable)` of each environment variable named.
    #[must_use]
    pub fn env_vars(&self) -> Vec<(String, &str)> {
        connector_env_vars(&self.security, self.schema_registry.as_deref())
    }
}

impl KafkaSinkSpec {
    /// `(field below kafka, variable)` of each environment variable named.
    #[must_use]
    pub fn env_vars(&self) -> Vec<(String, &str)> {
        connector_env_vars(&self.security, self.schema_registry.as_deref())
    }
}

fn connector_env_vars<'a>(
    security: &'a KafkaSecurity,
    registry: Option<&'a SchemaRegistrySpec>,
) -> Vec<(String, &'a str)> {
    let mut out: Vec<(String, &str)> = security
        .env_vars()
        .into_iter()
        .map(|(f, v)| (format!("security.{f}"), v))
        .collect();
    if let Some(r) = registry {
        out.extend(
            r.env_vars()
                .into_iter()
                .map(|(f, v)| (format!("schemaRegistry.{f}"), v)),
        );
    }
    out
}

impl KafkaSecurity {
    /// `(field below security, variable)` of each environment variable named.
    #[must_use]
    pub fn env_vars(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(s) = &self.sasl {
            out.push(("sasl.passwordEnv".to_string(), s.password_env.as_str()));
        }
        if let Some(t) = &self.tls {
            for (f, v) in t.env_vars() {
                out.push((format!("tls.{f}"), v));
            }
        }
        out
    }
}

fn default_pool() -> u32 {
    4
}
fn default_txn_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_restart_budget() -> Duration {
    Duration::from_secs(3 * 60)
}

/// What a Kafka sink promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// One Kafka transaction per subtask per checkpoint, committed when it completes.
    ExactlyOnce,
    /// Flushed at every checkpoint; records may repeat after a failure.
    AtLeastOnce,
    /// Fire and forget.
    None,
}

/// Insert into a ClickHouse table over HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClickHouseSinkSpec {
    /// The table name a `sql` pipeline writes to (`INSERT INTO <name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 63))]
    pub name: Option<String>,
    /// HTTP endpoint, e.g. `http://clickhouse:8123`, or `https://clickhouse:8443` (TLS).
    pub url: String,
    /// Target table; its columns must match the records (checked before the job starts).
    pub table: String,
    /// Database of the table.
    #[serde(default = "default_database")]
    pub database: String,
    /// User name.
    #[serde(default = "default_user")]
    pub user: String,
    /// Environment variable holding the password (filled from a Secret by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// TLS for an `https://` URL: the CA bundle to trust (the system's when absent) and a
    /// client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// How duplicates are prevented.
    #[serde(default)]
    pub mode: ClickHouseMode,
    /// A `UInt64` column of a `ReplacingMergeTree(version)` table that receives a version
    /// growing with time, so the newest write of a key wins. Required for a statement whose
    /// result updates (a changelog), which is then written as upserts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_column: Option<String>,
    /// Rows per INSERT (one deduplication block each). In `writeAhead` mode a checkpoint
    /// that would need more blocks than its subtask's share of the table's deduplication
    /// window is written in larger blocks.
    #[serde(default = "default_block_rows")]
    #[schemars(range(min = 1))]
    pub block_rows: u32,
    /// First retry delay; doubles up to `maxBackoff`. A failing server stalls commits (and
    /// backpressures the job) rather than dropping rows.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest retry delay.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

fn default_database() -> String {
    "default".to_string()
}
fn default_user() -> String {
    "default".to_string()
}
fn default_block_rows() -> u32 {
    65_536
}
/// First retry delay of a database sink's writes and commits (ClickHouse, PostgreSQL).
pub(crate) fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
/// Longest retry delay of a database sink.
pub(crate) fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// How the ClickHouse sink avoids double counting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClickHouseMode {
    /// Rows of checkpoint `n` are stored with the checkpoint and inserted after it completes,
    /// in deterministic blocks with a deduplication identity; a replayed insert is dropped by
    /// the server (`insert_deduplication_token`, or block hashes of `Replicated*` tables).
    #[default]
    WriteAhead,
    /// Rows are inserted at every checkpoint barrier; a `ReplacingMergeTree` keyed on the
    /// result key collapses replays (read with `FINAL`).
    Replacing,
}

/// How a database sink (PostgreSQL, MySQL) avoids losing or doubling a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DatabaseMode {
    /// Two-phase commit: each subtask writes a checkpoint's rows in one transaction,
    /// prepares it at the barrier (PostgreSQL `PREPARE TRANSACTION`, MySQL `XA PREPARE`) and
    /// commits it once the checkpoint completes; a restore commits what the checkpoint
    /// promised and rolls back the rest. PostgreSQL needs `max_prepared_transactions` > 0.
    #[default]
    Transactional,
    /// Idempotent: rows are written by key (`INSERT ... ON CONFLICT (key) DO UPDATE`,
    /// MySQL's `ON DUPLICATE KEY UPDATE`) in a transaction that commits at every barrier with
    /// a progress row; a replay after a failure writes the same final table.
    Upsert,
}

/// `(field, variable)` of a connector's password and TLS variables.
#[must_use]
pub fn password_and_tls_vars<'a>(
    password_env: Option<&'a str>,
    tls: Option<&'a TlsSpec>,
) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    if let Some(p) = password_env {
        out.push(("passwordEnv".to_string(), p));
    }
    for (f, v) in tls.iter().flat_map(|t| t.env_vars()) {
        out.push((format!("tls.{f}"), v));
    }
    out
}

impl DatabaseMode {
    /// What the mode promises: `upsert` writes a result at least once, and the key makes a
    /// repeat overwrite the same row, which is exactly-once for the final table only.
    #[must_use]
    pub fn guarantee(self) -> crate::control::Guarantee {
        match self {
            Self::Transactional => crate::control::Guarantee::ExactlyOnce,
            Self::Upsert => crate::control::Guarantee::AtLeastOnce,
        }
    }
}
