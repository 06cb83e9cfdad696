//! Kafka sink: two-phase commit on Kafka transactions.
//!
//! Each subtask owns a pool of transactional ids `<prefix>-<subtask>-<k>`; checkpoint `n`'s
//! records go into a transaction on id `n mod pool`, so that transaction can wait for the
//! checkpoint to complete while the next one is already being written. At the barrier the
//! transaction is flushed (pre-commit) and its producer id and epoch go into the checkpoint;
//! once `_metadata` is written the transaction is committed.
//!
//! After a crash, [`KafkaSinkConnector::recover_and_commit`] finishes what the restored
//! checkpoint promised: it resumes each recorded transaction with the stored producer id and
//! epoch and sends `EndTxn(commit)` (librdkafka cannot resume a transaction it did not begin;
//! [`super::wire`] speaks that one step), then reads the transaction's COMMIT or ABORT marker
//! in the log ([`super::txn_outcome`]) from the first offsets recorded at pre-commit: EndTxn's
//! answer does not tell a transaction committed earlier from one the broker aborted, and an
//! aborted one stops the start instead of being taken as committed. Transactions of later,
//! unfinished checkpoints are
//! aborted when the new incarnation initialises every id of its pool, which bumps the epoch —
//! the same step fences a zombie incarnation still writing with the old epoch.
//!
//! Every transaction has an epoch of its own: after a commit the id is initialised again in the
//! background, ready before the id comes round again. With one epoch for many transactions
//! (Kafka's transaction protocol v1), a recovery's `EndTxn` for a recorded transaction would
//! commit whatever a still-running old incarnation had begun next under the same id.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use futures::future::BoxFuture;
use rdkafka::ClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use weir_crds::{Delivery, KafkaSinkFormat, KafkaSinkSpec};

use super::config::{client_config, wait_for_partitions};
use super::security::ClientSecurity;
use super::txn_outcome::{self, TxnOutcome};
use super::wire::{self, Cluster, EndTxnOutcome};
use crate::avro::{AvroEncoder, record_name};
use crate::changelog::{Kind, is_changelog};
use crate::checkpoint::state::{FirstOffset, KafkaTransaction};
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::protobuf::ProtobufEncoder;
use crate::schema_registry::{Registry, SchemaType};
use crate::sink::{
    Committable, Guarantee, PlainSink, SinkConnector, SinkContext, SinkEnv, SinkInstance,
    TwoPhaseCommitSink, json_lines, zoned,
};

/// How long transactional calls may block before the job fails (a restore then retries).
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Producer id and epoch as librdkafka reports them in its statistics (it has no API for
/// them, and commit-phase recovery needs them).
struct EosContext {
    ids: Arc<Mutex<Option<(i64, i16)>>>,
}

impl ClientContext for EosContext {
    fn stats(&self, s: Statistics) {
        if let Some(eos) = s.eos
            && eos.producer_id >= 0
            && eos.producer_epoch >= 0
            && let Ok(mut g) = self.ids.lock()
        {
            *g = Some((eos.producer_id, eos.producer_epoch as i16));
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka producer");
    }
}

type Prod = FutureProducer<EosContext>;

/// A configured Kafka sink.
pub struct KafkaSinkConnector {
    spec: KafkaSinkSpec,
    delivery: Delivery,
    env: SinkEnv,
    /// Partition count, read by `prepare` (needed for `partitionBy`).
    partitions: Arc<OnceLock<u32>>,
    /// `format: avro` or `protobuf`: the value schema `prepare` registered.
    values: Arc<OnceLock<ValueEncoder>>,
}

impl KafkaSinkConnector {
    /// Connector for `spec`; nothing connects until [`SinkConnector::prepare`].
    #[must_use]
    pub fn new(spec: &KafkaSinkSpec, env: &SinkEnv) -> Self {
        let delivery = spec.delivery.unwrap_or(if env.exactly_once {
            Delivery::ExactlyOnce
        } else {
            Delivery::AtLeastOnce
        });
        Self {
            spec: spec.clone(),
            delivery,
            env: env.clone(),
            partitions: Arc::new(OnceLock::new()),
            values: Arc::new(OnceLock::new()),
        }
    }

    /// Registers the value schema of records of `input` (without a changelog's change
    /// kind), so the registry refuses an incompatible change before anything is written.
    async fn register_value_schema(&self, input: &SchemaRef) -> Result<()> {
        let Some(reg) = self
            .spec
            .schema_registry
            .as_deref()
            .filter(|_| self.spec.format.uses_registry())
        else {
            return Ok(());
        };
        let columns = if is_changelog(input) {
            input.project(&(0..input.fields().len() - 1).collect::<Vec<_>>())?
        } else {
            input.as_ref().clone()
        };
        let format = match self.spec.format {
            KafkaSinkFormat::Protobuf => "protobuf",
            _ => "avro",
        };
        let name = record_name(&self.spec.topic);
        let (schema_type, schema, cast_to) = if self.spec.format == KafkaSinkFormat::Protobuf {
            let proto = crate::protobuf::sink_proto(&columns, &name)
                .map_err(|e| self.err(format!("format: {format}: {e}")))?;
            (SchemaType::Protobuf, proto, None)
        } else {
            let (schema, cast_to) = crate::avro::writer_schema(&columns, &name)
                .map_err(|e| self.err(format!("format: {format}: {e}")))?;
            (SchemaType::Avro, schema, Some(cast_to))
        };
        let registry = Registry::from_spec(reg, "kafka.schemaRegistry", |n| std::env::var(n).ok())
            .map_err(|e| self.err(e))?;
        let subject = reg
            .subject
            .clone()
            .unwrap_or_else(|| format!("{}-value", self.spec.topic));
        let id = registry
            .register(&subject, &schema_type, &schema)
            .await
            .map_err(|e| self.err(e.to_string()))?;
        tracing::info!(topic = %self.spec.topic, %subject, schema_id = id, "value schema registered");
        let encoder = match cast_to {
            Some(cast_to) => ValueEncoder::Avro(AvroEncoder::new(id, &schema, &cast_to)),
            None => ValueEncoder::Protobuf(
                ProtobufEncoder::new(id, &schema)
                    .map_err(|e| self.err(format!("format: {format}: {e}")))?,
            ),
        };
        let _ = self.values.set(encoder);
        Ok(())
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Sink {
            sink: format!("kafka topic {}", self.spec.topic),
            message: message.into(),
        }
    }

    fn txn_id(&self, subtask: u32, k: u32) -> String {
        format!(
            "{}-{subtask}-{k}",
            self.spec
                .transactional_id_prefix
                .as_deref()
                .unwrap_or("weir")
        )
    }

    /// The brokers and how to reach them, read from the environment each time (cheap), so
    /// the producer and commit-phase recovery always agree.
    fn cluster(&self) -> Result<Cluster> {
        let security =
            ClientSecurity::from_spec("security", &self.spec.security).map_err(|e| self.err(e))?;
        Ok(Cluster {
            bootstrap: self.spec.bootstrap_servers.clone(),
            security,
        })
    }

    fn producer_config(&self, txn_id: Option<&str>) -> Result<rdkafka::ClientConfig> {
        let cluster = self.cluster()?;
        let mut c = client_config(
            &format!("sink-{}", self.env.job_name),
            &cluster.bootstrap,
            &self.spec.properties,
            &cluster.security,
        );
        // Same key -> same partition as Java clients.
        c.set("partitioner", "murmur2_random");
        match (self.delivery, txn_id) {
            (Delivery::ExactlyOnce, Some(id)) => {
                c.set("transactional.id", id)
                    .set(
                        "transaction.timeout.ms",
                        self.spec.transaction_timeout.get().as_millis().to_string(),
                    )
                    .set("statistics.interval.ms", "200");
            }
            (Delivery::AtLeastOnce, _) => {
                c.set("enable.idempotence", "true");
            }
            _ => {}
        }
        Ok(c)
    }

    /// A transactional producer for `txn_id`, initialised (which aborts whatever an earlier
    /// holder of the id left open and fences it), with its producer id and epoch.
    async fn init_txn_producer(&self, txn_id: String) -> Result<(Prod, i64, i16)> {
        let cfg = self.producer_config(Some(&txn_id))?;
        let id2 = txn_id.clone();
        let topic = self.spec.topic.clone();
        let ids = Arc::new(Mutex::new(None));
        let ctx = EosContext {
            ids: Arc::clone(&ids),
        };
        let joined = tokio::task::spawn_blocking(move || -> std::result::Result<Prod, String> {
            let p: Prod = cfg
                .create_with_context(ctx)
                .map_err(|e| format!("producer {id2}: {e}"))?;
            p.init_transactions(TXN_CALL_TIMEOUT)
                .map_err(|e| format!("init_transactions for {id2}: {e}"))?;
            Ok(p)
        })
        .await
        .map_err(|e| self.err(format!("producer setup panicked: {e}")))?;
        let p = joined.map_err(|m| self.err(m))?;
        // Statistics arrive every 200 ms; wait for the first one after init.
        for _ in 0..100 {
            if let Ok(g) = ids.lock()
                && let Some((pid, epoch)) = *g
            {
                tracing::debug!(topic = %topic, transactional_id = %txn_id, pid, epoch, "transactional producer ready");
                return Ok((p, pid, epoch));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(self.err(format!(
            "transactional id {txn_id}: producer id/epoch not reported within 5 s; \
             cannot record the transaction for commit-phase recovery"
        )))
    }

    fn clone_for_reinit(&self) -> Self {
        Self {
            spec: self.spec.clone(),
            delivery: self.delivery,
            env: self.env.clone(),
            partitions: Arc::clone(&self.partitions),
            values: Arc::clone(&self.values),
        }
    }

    /// Confirms from the log that `t`, which recovery just asked to commit (EndTxn answered
    /// `answer`), is committed; an aborted or unknown outcome stops the start with
    /// [`Error::Unconfirmed`], because restoring the checkpoint would lose its records.
    async fn confirm(
        &self,
        cluster: &Cluster,
        t: &KafkaTransaction,
        answer: EndTxnOutcome,
    ) -> Result<()> {
        let outcome = txn_outcome::read(cluster, &self.spec.topic, t)
            .await
            .map_err(|e| {
                self.err(format!(
                    "reading the outcome of {} (checkpoint {}) from the log: {e}",
                    t.transactional_id, t.checkpoint
                ))
            })?;
        let what = format!(
            "transaction {} of checkpoint {} ({} records)",
            t.transactional_id, t.checkpoint, t.records
        );
        let why_lost = format!(
            "A broker aborts a transaction when its transactionTimeout ({} s) runs out before \
             the commit (an outage or a stop longer than that), and when another producer \
             initialises the same transactional id (another job using transactionalIdPrefix \
             {}). Restoring checkpoint {} would lose these records, so the job does not \
             start. To go on, start it from the checkpoint before {} (spec.initialSavepointPath; \
             its input is read again and these records written again, while other sinks of \
             the job may write checkpoint {}'s output a second time), and raise \
             transactionTimeout (and the brokers' transaction.max.timeout.ms) above the longest \
             outage to ride out",
            self.spec.transaction_timeout.get().as_secs(),
            self.spec
                .transactional_id_prefix
                .as_deref()
                .unwrap_or("weir"),
            t.checkpoint,
            t.checkpoint,
            t.checkpoint,
        );
        match outcome {
            TxnOutcome::Committed => {
                tracing::info!(
                    transactional_id = %t.transactional_id, checkpoint = t.checkpoint,
                    records = t.records, end_txn = ?answer,
                    "committed transaction recorded in the restored checkpoint (its COMMIT marker is in the log)"
                );
                Ok(())
            }
            TxnOutcome::Unknown(why) if t.first_offsets.is_empty() => {
                // Checkpoints from before first offsets were recorded, or a transaction whose
                // every partition had a retried batch answered without offsets: the old
                // reading of the answer, said out loud.
                tracing::warn!(
                    transactional_id = %t.transactional_id, checkpoint = t.checkpoint,
                    end_txn = ?answer, %why,
                    "cannot confirm the transaction from the log; taking EndTxn's answer as committed"
                );
                Ok(())
            }
            TxnOutcome::Aborted { partition, offset } => Err(Error::Unconfirmed {
                sink: self.name(),
                message: format!(
                    "{what} was aborted, not committed: its ABORT marker is at offset {offset} \
                     of partition {partition} of topic {}. {why_lost}.",
                    self.spec.topic
                ),
            }),
            TxnOutcome::Unknown(why) => Err(Error::Unconfirmed {
                sink: self.name(),
                message: format!("cannot tell whether {what} was committed: {why}. {why_lost}."),
            }),
        }
    }

    /// Fence `txn_id`: initialise it once and drop the producer.
    async fn fence(&self, txn_id: String) -> Result<()> {
        let (p, _, _) = self.init_txn_producer(txn_id).await?;
        drop(p);
        Ok(())
    }
}

impl SinkConnector for KafkaSinkConnector {
    fn name(&self) -> String {
        format!("kafka {}", self.spec.topic)
    }

    fn guarantee(&self) -> Guarantee {
        match self.delivery {
            Delivery::ExactlyOnce => Guarantee::ExactlyOnce,
            Delivery::AtLeastOnce => Guarantee::AtLeastOnce,
            Delivery::None => Guarantee::None,
        }
    }

    fn prepare<'a>(&'a self, input: &'a SchemaRef) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let names: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
            let check = |field: &str, col: &str, int: bool| -> Result<()> {
                match input.field_with_name(col) {
                    Err(_) => Err(self.err(format!(
                        "{field}: column `{col}` is not in the sink's records ({})",
                        names.join(", ")
                    ))),
                    Ok(f) if int && !f.data_type().is_integer() => Err(self.err(format!(
                        "{field}: column `{col}` has type {}; an integer column is needed",
                        f.data_type()
                    ))),
                    Ok(_) => Ok(()),
                }
            };
            for c in &self.spec.key_by {
                check("keyBy", c, false)?;
            }
            if is_changelog(input) && self.spec.key_by.is_empty() {
                return Err(self.err(
                    "keyBy: the records are a changelog (the statement's result updates), written as upserts by key; keyBy must name the result's key columns",
                ));
            }
            if let Some(c) = &self.spec.partition_by {
                check("partitionBy", c, true)?;
            }
            if let Some(c) = &self.spec.value_field {
                check("valueField", c, false)?;
            }
            for c in &self.spec.header_fields {
                check("headerFields", c, false)?;
            }
            let cfg = self.producer_config(None)?;
            let n = wait_for_partitions(&cfg, &self.cluster()?, &self.spec.topic)
                .await
                .map_err(|m| self.err(m))?;
            let _ = self.partitions.set(n);
            self.register_value_schema(input).await
        })
    }

    fn open(&self, ctx: &SinkContext) -> Result<SinkInstance> {
        let values = self.values.get().cloned();
        if self.spec.format.uses_registry() && values.is_none() {
            return Err(self.err("no value schema was registered"));
        }
        let encoder = Encoder {
            spec: self.spec.clone(),
            partitions: self.partitions.get().copied(),
            values,
        };
        match self.delivery {
            Delivery::ExactlyOnce => Ok(SinkInstance::TwoPhase(Box::new(TxnWriter {
                connector: self.clone_for_reinit(),
                subtask: ctx.subtask,
                parallelism: ctx.parallelism,
                pool: Vec::new(),
                current: None,
                encoder,
                deliveries: Deliveries::default(),
                records: 0,
            }))),
            _ => {
                let cfg = self.producer_config(None)?;
                let producer: FutureProducer = cfg
                    .create()
                    .map_err(|e| self.err(format!("producer: {e}")))?;
                Ok(SinkInstance::Plain(Box::new(PlainWriter {
                    producer,
                    encoder,
                    deliveries: Deliveries::default(),
                    track: self.delivery == Delivery::AtLeastOnce,
                    topic: self.spec.topic.clone(),
                })))
            }
        }
    }

    fn recover_and_commit(&self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.delivery != Delivery::ExactlyOnce {
                return Ok(());
            }
            let mut prev_parallelism = 0;
            let mut txns: Vec<KafkaTransaction> = Vec::new();
            for c in committables {
                let t = match c {
                    Committable::KafkaTransaction(t) => t,
                    Committable::Empty => continue,
                    other => {
                        return Err(self.err(format!(
                            "checkpoint records a committable of another sink: {other:?}"
                        )));
                    }
                };
                prev_parallelism = prev_parallelism.max(t.parallelism);
                txns.push(t);
            }
            txns.sort_by_key(|t| t.checkpoint);
            let cluster = self.cluster()?;
            for t in txns.iter().filter(|t| t.records > 0) {
                let outcome = wire::end_txn(
                    &cluster,
                    &t.transactional_id,
                    t.producer_id,
                    t.producer_epoch,
                    true,
                )
                .await;
                let outcome = match outcome {
                    // A broker that closes the connection instead of answering
                    // PRODUCER_FENCED (the local test broker does): the epoch was superseded.
                    Err(wire::WireError::EndTxnRejected { .. }) => {
                        tracing::warn!(transactional_id = %t.transactional_id, "broker closed the connection on EndTxn (the producer epoch was superseded); reading the outcome from the log");
                        EndTxnOutcome::Fenced
                    }
                    other => other.map_err(|e| {
                        self.err(format!(
                            "commit-phase recovery of {} (checkpoint {}): {e}",
                            t.transactional_id, t.checkpoint
                        ))
                    })?,
                };
                self.confirm(&cluster, t, outcome).await?;
            }
            // Ids of subtasks that no longer exist are fenced here; the current subtasks fence
            // their own pool when they start.
            for sub in self.env.parallelism..prev_parallelism {
                for k in 0..self.spec.transaction_pool_size {
                    self.fence(self.txn_id(sub, k)).await?;
                }
            }
            Ok(())
        })
    }
}

/// Turns rows into Kafka records.
struct Encoder {
    spec: KafkaSinkSpec,
    partitions: Option<u32>,
    /// `format: avro` or `protobuf`: the registered value schema.
    values: Option<ValueEncoder>,
}

/// Values written with a registered schema.
#[derive(Clone)]
enum ValueEncoder {
    Avro(AvroEncoder),
    Protobuf(ProtobufEncoder),
}

impl ValueEncoder {
    fn encode(&self, batch: &RecordBatch) -> std::result::Result<Vec<Vec<u8>>, String> {
        match self {
            Self::Avro(e) => e.encode(batch),
            Self::Protobuf(e) => e.encode(batch),
        }
    }
}

struct OutRecord {
    key: Option<String>,
    /// `None`: a tombstone (a changelog's deletion of the key).
    value: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
    partition: Option<i32>,
}

fn strings(batch: &RecordBatch, col: &str) -> Result<Vec<Option<String>>> {
    let a = batch
        .column_by_name(col)
        .ok_or_else(|| Error::internal(format!("column {col} missing")))?;
    let s = cast(&zoned(a)?, &DataType::Utf8)?;
    let s = s.as_string::<i32>();
    Ok((0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect())
}

impl Encoder {
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<OutRecord>> {
        let n = batch.num_rows();
        // A changelog is written as upserts by key: `+I`/`+U` as the row (without its change
        // kind), `-D` as a tombstone, `-U` not at all (the `+U` after it replaces it).
        let (data, kinds) = if is_changelog(batch.schema_ref()) {
            let last = batch.num_columns() - 1;
            let kinds = batch
                .column(last)
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::internal("the change kind is not a string column"))?
                .iter()
                .map(|k| k.and_then(Kind::parse))
                .collect::<Vec<_>>();
            (batch.project(&(0..last).collect::<Vec<_>>())?, Some(kinds))
        } else {
            (batch.clone(), None)
        };
        let values: Vec<Vec<u8>> = match (&self.values, &self.spec.value_field) {
            (Some(a), _) => a.encode(&data).map_err(|e| Error::Sink {
                sink: format!("kafka topic {}", self.spec.topic),
                message: e,
            })?,
            (None, Some(c)) => strings(&data, c)?
                .into_iter()
                .map(|v| v.unwrap_or_default().into_bytes())
                .collect(),
            (None, None) => json_lines(&data)?
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
        };
        let key_cols: Vec<Vec<Option<String>>> = self
            .spec
            .key_by
            .iter()
            .map(|c| strings(batch, c))
            .collect::<Result<_>>()?;
        let header_cols: Vec<(String, Vec<Option<String>>)> = self
            .spec
            .header_fields
            .iter()
            .map(|c| Ok((c.clone(), strings(batch, c)?)))
            .collect::<Result<_>>()?;
        let parts: Option<Vec<Option<i64>>> = match (&self.spec.partition_by, self.partitions) {
            (Some(c), Some(_)) => {
                let a = batch
                    .column_by_name(c)
                    .ok_or_else(|| Error::internal(format!("column {c} missing")))?;
                let a = cast(a, &DataType::Int64)?;
                let a = a.as_primitive::<Int64Type>();
                Some(
                    (0..a.len())
                        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
                        .collect(),
                )
            }
            _ => None,
        };
        let mut out = Vec::with_capacity(n);
        for (i, value) in values.into_iter().enumerate().take(n) {
            let value = match kinds.as_ref().map(|k| k[i]) {
                None | Some(Some(Kind::Insert | Kind::UpdateAfter)) => Some(value),
                Some(Some(Kind::Delete)) => None,
                Some(Some(Kind::UpdateBefore)) => continue,
                Some(None) => return Err(Error::internal("an unknown change kind")),
            };
            let key = match key_cols.len() {
                0 => None,
                1 => key_cols[0][i].clone(),
                _ => Some(
                    serde_json::Value::Array(
                        key_cols
                            .iter()
                            .map(|c| c[i].clone().map_or(serde_json::Value::Null, Into::into))
                            .collect(),
                    )
                    .to_string(),
                ),
            };
            let partition = match (&parts, self.partitions) {
                (Some(p), Some(count)) => p[i].map(|v| v.rem_euclid(i64::from(count)) as i32),
                _ => None,
            };
            out.push(OutRecord {
                key,
                value,
                headers: header_cols
                    .iter()
                    .filter_map(|(name, c)| c[i].clone().map(|v| (name.clone(), v)))
                    .collect(),
                partition,
            });
        }
        Ok(out)
    }
}

/// Deliveries the producer has not confirmed yet, and the first offset each partition got
/// since the last [`Deliveries::take_first_offsets`]: commit-phase recovery finds a
/// transaction's markers in the log from there.
#[derive(Default)]
struct Deliveries {
    inflight: VecDeque<DeliveryFuture>,
    first_offsets: BTreeMap<i32, i64>,
    /// Partitions where a delivery came back without a real offset: librdkafka reports a
    /// batch the broker answered DUPLICATE_SEQUENCE_NUMBER (a retry of a batch it had
    /// stored) as delivered with offsets counted from the answer's -1, so every offset of
    /// that batch is made up. The transaction's first offset there is unknown; recovery
    /// reads its marker in the other partitions (one transaction, one outcome).
    unknown: BTreeSet<i32>,
}

impl Deliveries {
    /// Waits for the oldest delivery; false when none is in flight.
    async fn settle_one(&mut self, topic: &str) -> Result<bool> {
        let Some(f) = self.inflight.pop_front() else {
            return Ok(false);
        };
        let err = |m: String| Error::Sink {
            sink: format!("kafka topic {topic}"),
            message: m,
        };
        match f.await {
            Ok(Ok(d)) => {
                self.delivered(d.partition, d.offset);
                Ok(true)
            }
            Ok(Err((e, _))) => Err(err(format!("delivery failed: {e}"))),
            Err(_) => Err(err("delivery report lost (producer closed)".to_string())),
        }
    }

    async fn drain(&mut self, topic: &str) -> Result<()> {
        while self.settle_one(topic).await? {}
        Ok(())
    }

    fn delivered(&mut self, partition: i32, offset: i64) {
        if offset < 0 {
            self.unknown.insert(partition);
        }
        let first = self.first_offsets.entry(partition).or_insert(offset);
        *first = (*first).min(offset);
    }

    fn take_first_offsets(&mut self) -> Vec<FirstOffset> {
        let unknown = std::mem::take(&mut self.unknown);
        if !unknown.is_empty() {
            tracing::warn!(
                ?unknown,
                "the broker answered a retried batch without its offsets \
                 (DUPLICATE_SEQUENCE_NUMBER); recovery reads this transaction's outcome in its \
                 other partitions"
            );
        }
        std::mem::take(&mut self.first_offsets)
            .into_iter()
            .filter(|(partition, _)| !unknown.contains(partition))
            .map(|(partition, offset)| FirstOffset { partition, offset })
            .collect()
    }

    fn clear(&mut self) {
        self.inflight.clear();
        self.first_offsets.clear();
        self.unknown.clear();
    }
}

/// Hand `records` to the producer, waiting for earlier deliveries when its queue is full.
async fn send_all<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    records: Vec<OutRecord>,
    deliveries: &mut Deliveries,
    track: bool,
) -> Result<()> {
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut rec = FutureRecord::<[u8], Vec<u8>>::to(topic).headers(headers);
        if let Some(v) = &r.value {
            rec = rec.payload(v);
        }
        if let Some(k) = &r.key {
            rec = rec.key(k.as_bytes());
        }
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    if track {
                        deliveries.inflight.push_back(f);
                    }
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    rec = back;
                    if !deliveries.settle_one(topic).await? {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                Err((e, _)) => {
                    return Err(Error::Sink {
                        sink: format!("kafka topic {topic}"),
                        message: format!("send: {e}"),
                    });
                }
            }
        }
    }
    Ok(())
}

struct PoolSlot {
    producer: Prod,
    txn_id: String,
    producer_id: i64,
    epoch: i16,
    /// Checkpoint whose transaction is pre-committed on this id and awaits its commit.
    precommitted: Option<u64>,
    /// A fresh producer for this id being initialised after the last commit.
    next: Option<tokio::task::JoinHandle<Result<(Prod, i64, i16)>>>,
}

/// Exactly-once writer of one subtask.
struct TxnWriter {
    connector: KafkaSinkConnector,
    subtask: u32,
    parallelism: u32,
    pool: Vec<PoolSlot>,
    /// Pool slot and checkpoint of the open transaction.
    current: Option<(usize, u64)>,
    encoder: Encoder,
    deliveries: Deliveries,
    records: u64,
}

impl TxnWriter {
    async fn init_pool(&mut self) -> Result<()> {
        let c = &self.connector;
        let ids: Vec<String> = (0..c.spec.transaction_pool_size)
            .map(|k| c.txn_id(self.subtask, k))
            .collect();
        let inits = ids.into_iter().map(|id| async move {
            let (producer, pid, epoch) = c.init_txn_producer(id.clone()).await?;
            Ok::<_, Error>(PoolSlot {
                producer,
                txn_id: id,
                producer_id: pid,
                epoch,
                precommitted: None,
                next: None,
            })
        });
        self.pool = futures::future::try_join_all(inits).await?;
        Ok(())
    }

    async fn blocking<F>(&self, slot: usize, what: &'static str, f: F) -> Result<()>
    where
        F: FnOnce(&Prod) -> rdkafka::error::KafkaResult<()> + Send + 'static,
    {
        let p = self.pool[slot].producer.clone();
        let id = self.pool[slot].txn_id.clone();
        tokio::task::spawn_blocking(move || f(&p))
            .await
            .map_err(|e| self.connector.err(format!("{what} panicked: {e}")))?
            .map_err(|e| self.connector.err(format!("{what} on {id}: {e}")))
    }
}

impl TwoPhaseCommitSink for TxnWriter {
    fn begin(&mut self, txn: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.pool.is_empty() {
                self.init_pool().await?;
            }
            let slot = (txn.0 % self.pool.len() as u64) as usize;
            if let Some(next) = self.pool[slot].next.take() {
                let (producer, pid, epoch) = next.await.map_err(|e| {
                    self.connector
                        .err(format!("producer re-init panicked: {e}"))
                })??;
                let s = &mut self.pool[slot];
                let old = std::mem::replace(&mut s.producer, producer);
                s.producer_id = pid;
                s.epoch = epoch;
                // librdkafka's destructor may block on its threads.
                tokio::task::spawn_blocking(move || drop(old));
            }
            if let Some(waiting) = self.pool[slot].precommitted {
                return Err(self.connector.err(format!(
                    "transactional id {} still holds the transaction of checkpoint {waiting}, \
                     which has not completed; checkpoints are failing faster than \
                     transactionPoolSize ({}) allows",
                    self.pool[slot].txn_id,
                    self.pool.len()
                )));
            }
            self.pool[slot]
                .producer
                .begin_transaction()
                .map_err(|e| self.connector.err(format!("begin_transaction: {e}")))?;
            self.current = Some((slot, txn.0));
            self.records = 0;
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some((slot, _)) = self.current else {
                return Err(Error::internal("kafka sink write without a transaction"));
            };
            let records = self.encoder.encode(batch)?;
            self.records += records.len() as u64;
            let producer = self.pool[slot].producer.clone();
            send_all(
                &producer,
                &self.connector.spec.topic,
                records,
                &mut self.deliveries,
                true,
            )
            .await
        })
    }

    fn pre_commit(&mut self) -> BoxFuture<'_, Result<Committable>> {
        Box::pin(async move {
            let Some((slot, checkpoint)) = self.current.take() else {
                return Err(Error::internal(
                    "kafka sink pre-commit without a transaction",
                ));
            };
            self.deliveries.drain(&self.connector.spec.topic).await?;
            self.blocking(slot, "flush", |p| p.flush(TXN_CALL_TIMEOUT))
                .await?;
            let first_offsets = self.deliveries.take_first_offsets();
            crate::fault::point("kafka-after-precommit", CheckpointId(checkpoint));
            let s = &mut self.pool[slot];
            s.precommitted = Some(checkpoint);
            let t = KafkaTransaction {
                transactional_id: s.txn_id.clone(),
                producer_id: s.producer_id,
                producer_epoch: s.epoch,
                checkpoint,
                records: self.records,
                parallelism: self.parallelism,
                first_offsets,
            };
            Ok(Committable::KafkaTransaction(t))
        })
    }

    fn commit(&mut self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for c in committables {
                let t = match c {
                    Committable::KafkaTransaction(t) => t,
                    Committable::Empty => continue,
                    other => {
                        return Err(Error::internal(format!(
                            "kafka sink asked to commit {other:?}"
                        )));
                    }
                };
                let Some(slot) = self.pool.iter().position(|s| {
                    s.txn_id == t.transactional_id && s.precommitted == Some(t.checkpoint)
                }) else {
                    continue;
                };
                crate::fault::point("kafka-before-commit", CheckpointId(t.checkpoint));
                self.blocking(slot, "commit_transaction", |p| {
                    p.commit_transaction(TXN_CALL_TIMEOUT)
                })
                .await?;
                self.pool[slot].precommitted = None;
                // Every transaction gets its own epoch: with one epoch across transactions a
                // late EndTxn for a recorded transaction (a restore while this incarnation
                // still runs) would commit whatever this id wrote next.
                let connector = self.connector.clone_for_reinit();
                let id = self.pool[slot].txn_id.clone();
                self.pool[slot].next = Some(tokio::spawn(async move {
                    connector.init_txn_producer(id).await
                }));
            }
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.deliveries.clear();
            if let Some((slot, _)) = self.current.take() {
                self.blocking(slot, "abort_transaction", |p| {
                    p.abort_transaction(TXN_CALL_TIMEOUT)
                })
                .await?;
            }
            Ok(())
        })
    }
}

/// At-least-once (flush at every barrier) or fire-and-forget writer.
struct PlainWriter {
    producer: FutureProducer,
    encoder: Encoder,
    deliveries: Deliveries,
    track: bool,
    topic: String,
}

impl PlainSink for PlainWriter {
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let records = self.encoder.encode(batch)?;
            send_all(
                &self.producer,
                &self.topic,
                records,
                &mut self.deliveries,
                self.track,
            )
            .await
        })
    }

    fn flush(&mut self, _checkpoint: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.track {
                self.deliveries.drain(&self.topic).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod deliveries_tests {
    use super::*;

    #[test]
    fn a_batch_answered_without_offsets_leaves_its_partition_out() {
        let mut d = Deliveries::default();
        d.delivered(0, 10);
        // DUPLICATE_SEQUENCE_NUMBER: librdkafka numbers the batch's records -1, 0, 1, ...
        d.delivered(1, -1);
        d.delivered(1, 0);
        d.delivered(1, 1);
        d.delivered(0, 11);
        assert_eq!(
            d.take_first_offsets(),
            vec![FirstOffset {
                partition: 0,
                offset: 10
            }]
        );
        // The next transaction starts clean.
        d.delivered(1, 40);
        assert_eq!(
            d.take_first_offsets(),
            vec![FirstOffset {
                partition: 1,
                offset: 40
            }]
        );
    }
}
