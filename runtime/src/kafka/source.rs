//! Kafka source: partitions are splits.
//!
//! Subtask `s` of `p` reads partitions `q` with `q mod p == s` (the same rule as every split,
//! so a savepoint restores at any parallelism). Positions are the next offset to read, kept
//! in checkpoints; the consumer group only receives them after a checkpoint completes, so lag
//! tools see progress while restore never depends on the group. The consumer is `assign`ed
//! (no group rebalancing) and reads with `isolation.level=read_committed`.
//!
//! A partition first seen (no checkpoint knows it) starts at `startingOffsets`, resolved to a
//! concrete offset at once, so the first checkpoint records where reading began. Partitions
//! added to the topic later are found every `partitionDiscovery` and read from their start.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use weir_crds::{KafkaFormat, KafkaSourceSpec, StartingOffsets, parse_timestamp_ms};

use super::config::{METADATA_TIMEOUT, client_config, partition_count, wait_for_partitions};
use super::discovery::Discovery;
use super::security::ClientSecurity;
use super::wire::Cluster;
use crate::avro::AvroDecoder;
use crate::control::metrics::Metrics;
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::protobuf::ProtobufDecoder;
use crate::schema_registry::Registry;
use crate::source::decode_errors::{OnError, decode_errors_batch};
use crate::source::json::JsonDecoder;
use crate::source::{Poll, SourceReader, SplitState};

/// High watermarks per partition from librdkafka's statistics, read without a network call.
#[derive(Default)]
pub struct StatsContext {
    high: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        if let Ok(mut h) = self.high.lock() {
            for t in statistics.topics.values() {
                for (p, part) in &t.partitions {
                    // Last stable offset is what a read_committed consumer can reach.
                    let end = if part.ls_offset >= 0 {
                        part.ls_offset
                    } else {
                        part.hi_offset
                    };
                    if *p >= 0 && end >= 0 {
                        h.insert(*p, end);
                    }
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka consumer");
    }
}

impl ConsumerContext for StatsContext {}

/// Where reading stops, for bounded runs.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Never,
    At(i64),
}

struct Part {
    state: SplitState,
    stop: Stop,
}

/// One source subtask reading its share of a topic's partitions.
pub struct KafkaReader {
    spec: KafkaSourceSpec,
    consumer: BaseConsumer<StatsContext>,
    subtask: u32,
    parallelism: u32,
    parts: BTreeMap<i32, Part>,
    known_partitions: u32,
    /// Partition counts asked for in the background; `None` when discovery is off.
    discovery: Option<Discovery>,
    decoder: Values,
    schema: SchemaRef,
    time_col: Option<usize>,
    ts_field: Option<usize>,
    on_error: OnError,
    bounded: bool,
    metrics: Arc<Metrics>,
    last_error_log: Option<Instant>,
}

/// How record values become rows (`format: raw` needs no decoder).
enum Values {
    Json(JsonDecoder),
    Avro(Box<AvroDecoder>),
    Protobuf(Box<ProtobufDecoder>),
}

/// Schema of `format: raw` records.
#[must_use]
pub fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("headers", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("partition", DataType::Int64, false),
        Field::new("offset", DataType::Int64, false),
    ]))
}

/// What a reader needs besides the spec.
pub struct ReaderSetup<'a> {
    /// Job name, for the default group id.
    pub job_name: &'a str,
    /// Record schema.
    pub schema: SchemaRef,
    /// Event-time column.
    pub time_col: Option<usize>,
    /// Decode-error policy.
    pub on_error: OnError,
    /// This subtask.
    pub subtask: u32,
    /// All subtasks.
    pub parallelism: u32,
    /// Positions from the restored checkpoint (any split of the job).
    pub restored: Vec<SplitState>,
    /// Stop at the offsets that are the newest when the reader starts.
    pub bounded: bool,
    /// Lag gauges.
    pub metrics: Arc<Metrics>,
}

impl KafkaReader {
    /// Connect, find the partitions, and position every owned one.
    ///
    /// # Errors
    /// Unreachable brokers or a missing topic (both named), bad client settings.
    pub fn open(spec: &KafkaSourceSpec, setup: ReaderSetup<'_>) -> Result<Self> {
        let src_err = |message: String| Error::Source {
            source_name: format!("kafka topic {}", spec.topic),
            message,
        };
        let security =
            ClientSecurity::from_spec("source.kafka.security", &spec.security).map_err(src_err)?;
        let mut cfg = client_config(
            &format!("source-{}", setup.job_name),
            &spec.bootstrap_servers,
            &spec.properties,
            &security,
        );
        // Discovery asks with a client of its own, made before the group settings: it only
        // reads metadata.
        let every = spec.partition_discovery.get();
        let discovery = if every.is_zero() {
            None
        } else {
            Some(
                Discovery::start(&cfg, &spec.bootstrap_servers, &spec.topic, every)
                    .map_err(src_err)?,
            )
        };
        let group = spec
            .group_id
            .clone()
            .unwrap_or_else(|| format!("weir-{}", setup.job_name));
        cfg.set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "2000");
        let consumer: BaseConsumer<StatsContext> = cfg
            .create_with_context(StatsContext::default())
            .map_err(|e| src_err(format!("client settings: {e}")))?;
        let count = partition_count(
            consumer.client(),
            &spec.bootstrap_servers,
            &spec.topic,
            METADATA_TIMEOUT,
        )
        .map_err(|a| src_err(a.into_message()))?;
        let ts_field = spec
            .timestamp_field
            .as_ref()
            .and_then(|f| setup.schema.index_of(f).ok());
        // Decode with the Kafka-timestamp column optional: it is filled from the record.
        let decode_schema = Arc::new(Schema::new(
            setup
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    if Some(i) == ts_field {
                        f.as_ref().clone().with_nullable(true)
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let decoder = match (spec.format, spec.schema_registry.as_deref()) {
            (KafkaFormat::Avro | KafkaFormat::Protobuf, Some(reg)) => {
                let registry = Registry::from_spec(reg, "source.kafka.schemaRegistry", |n| {
                    std::env::var(n).ok()
                })
                .map_err(src_err)?;
                if spec.format == KafkaFormat::Avro {
                    Values::Avro(Box::new(AvroDecoder::new(registry, decode_schema)))
                } else {
                    Values::Protobuf(Box::new(ProtobufDecoder::new(registry, decode_schema)))
                }
            }
            (KafkaFormat::Avro | KafkaFormat::Protobuf, None) => {
                return Err(src_err(
                    "format: avro and protobuf need schemaRegistry (the writer schemas live there)"
                        .into(),
                ));
            }
            _ => Values::Json(JsonDecoder::new(decode_schema)),
        };
        let mut r = Self {
            spec: spec.clone(),
            consumer,
            subtask: setup.subtask,
            parallelism: setup.parallelism.max(1),
            parts: BTreeMap::new(),
            known_partitions: 0,
            discovery,
            decoder,
            schema: setup.schema,
            time_col: setup.time_col,
            ts_field,
            on_error: setup.on_error,
            bounded: setup.bounded,
            metrics: setup.metrics,
            last_error_log: None,
        };
        let restored: HashMap<u32, SplitState> =
            setup.restored.into_iter().map(|s| (s.split, s)).collect();
        r.add_partitions(count, &restored)?;
        Ok(r)
    }

    fn src_err(&self, message: String) -> Error {
        Error::Source {
            source_name: format!("kafka topic {}", self.spec.topic),
            message,
        }
    }

    /// Take the owned partitions among `known_partitions..count`, position them, and extend
    /// the assignment.
    fn add_partitions(&mut self, count: u32, restored: &HashMap<u32, SplitState>) -> Result<()> {
        let topic = self.spec.topic.clone();
        let new: Vec<u32> = (self.known_partitions..count)
            .filter(|p| p % self.parallelism == self.subtask)
            .collect();
        let first_start = self.known_partitions == 0;
        self.known_partitions = count;
        if new.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &new {
            let pi = p as i32;
            let state = match restored.get(&p) {
                Some(s) => *s,
                None => {
                    // Partitions created while running start at their beginning; only the
                    // ones present at the first start honour `startingOffsets`.
                    let offset = if first_start {
                        self.resolve_start(pi)?
                    } else {
                        self.watermarks(pi)?.0
                    };
                    SplitState {
                        offset: offset.max(0) as u64,
                        ..SplitState::new(p)
                    }
                }
            };
            let stop = if self.bounded {
                Stop::At(self.watermarks(pi)?.1)
            } else {
                Stop::Never
            };
            let finished = matches!(stop, Stop::At(end) if state.offset as i64 >= end);
            tracing::info!(topic = %topic, partition = p, offset = state.offset, ?stop, "kafka partition assigned");
            tpl.add_partition_offset(&topic, pi, Offset::Offset(state.offset as i64))
                .map_err(|e| self.src_err(format!("partition {p}: {e}")))?;
            self.parts.insert(
                pi,
                Part {
                    state: SplitState { finished, ..state },
                    stop,
                },
            );
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| self.src_err(format!("assign: {e}")))?;
        Ok(())
    }

    fn watermarks(&self, partition: i32) -> Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(&self.spec.topic, partition, METADATA_TIMEOUT)
            .map_err(|e| {
                self.src_err(format!(
                    "partition {partition}: cannot read offsets from {}: {e}",
                    self.spec.bootstrap_servers
                ))
            })
    }

    fn resolve_start(&self, partition: i32) -> Result<i64> {
        let (low, high) = self.watermarks(partition)?;
        match self.spec.starting_offsets {
            StartingOffsets::Earliest => Ok(low),
            StartingOffsets::Latest => Ok(high),
            StartingOffsets::Timestamp => {
                let ts = self
                    .spec
                    .starting_timestamp
                    .as_deref()
                    .map(parse_timestamp_ms)
                    .transpose()
                    .map_err(|e| self.src_err(format!("startingTimestamp: {e}")))?
                    .unwrap_or(0);
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(&self.spec.topic, partition, Offset::Offset(ts))
                    .map_err(|e| self.src_err(e.to_string()))?;
                let r = self
                    .consumer
                    .offsets_for_times(q, METADATA_TIMEOUT)
                    .map_err(|e| self.src_err(format!("offsets for time {ts}: {e}")))?;
                Ok(
                    match r
                        .find_partition(&self.spec.topic, partition)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(o)) => o,
                        // No record at or after the time: start at the end.
                        _ => high,
                    },
                )
            }
        }
    }

    /// Take the partitions the background discovery found since the last poll.
    fn discover(&mut self) -> Result<()> {
        match self.discovery.as_ref().and_then(Discovery::latest) {
            Some(n) if n > self.known_partitions => {
                tracing::info!(topic = %self.spec.topic, from = self.known_partitions, to = n, "new kafka partitions");
                self.add_partitions(n, &HashMap::new())
            }
            _ => Ok(()),
        }
    }

    fn update_lag(&self) {
        let Ok(high) = self.consumer.context().high.lock() else {
            return;
        };
        for (p, part) in &self.parts {
            if let Some(h) = high.get(p) {
                let lag = (*h - part.state.offset as i64).max(0);
                self.metrics.set_source_lag(&self.spec.topic, *p, lag);
            }
        }
    }

    /// Decode the records of one partition.
    fn decode(
        &mut self,
        partition: i32,
        msgs: &[Msg],
        side: &mut (Vec<String>, Vec<String>, Vec<String>),
    ) -> Result<RecordBatch> {
        if self.spec.format == KafkaFormat::Raw {
            return self.raw_batch(msgs);
        }
        let values: Vec<&[u8]> = msgs.iter().map(|m| m.value.as_slice()).collect();
        let decoded = match &mut self.decoder {
            Values::Json(d) => d.decode(&values)?,
            Values::Avro(d) => match d.decode(&values) {
                Ok(decoded) => decoded,
                Err(message) => return Err(self.src_err(message)),
            },
            Values::Protobuf(d) => match d.decode(&values) {
                Ok(decoded) => decoded,
                Err(message) => return Err(self.src_err(message)),
            },
        };
        for (i, e) in &decoded.bad {
            let m = &msgs[*i];
            let location = format!("{}/{partition}@{}", self.spec.topic, m.offset);
            match self.on_error {
                OnError::Fail => {
                    return Err(Error::Decode {
                        location,
                        message: e.clone(),
                    });
                }
                OnError::Skip => {}
                OnError::SideOutput => {
                    side.0.push(location);
                    side.1.push(match self.decoder {
                        // Binary: kept whole, as base64, so nothing is lost.
                        Values::Avro(_) | Values::Protobuf(_) => {
                            base64::engine::general_purpose::STANDARD.encode(&m.value)
                        }
                        Values::Json(_) => String::from_utf8_lossy(&m.value).into_owned(),
                    });
                    side.2.push(e.clone());
                }
            }
            self.metrics.decode_errors.inc();
            tracing::warn!(topic = %self.spec.topic, partition, offset = m.offset, error = %e, "undecodable record");
        }
        let mut data = decoded.data;
        if let Some(tf) = self.ts_field {
            let good: Vec<usize> = (0..msgs.len())
                .filter(|i| !decoded.bad.iter().any(|(b, _)| b == i))
                .collect();
            let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(
                good.iter().map(|&i| msgs[i].timestamp).collect::<Vec<_>>(),
            ));
            let mut cols = data.columns().to_vec();
            cols[tf] = ts;
            data = RecordBatch::try_new(self.schema.clone(), cols)?;
        } else if data.schema() != self.schema {
            data = RecordBatch::try_new(self.schema.clone(), data.columns().to_vec())?;
        }
        Ok(data)
    }

    fn raw_batch(&self, msgs: &[Msg]) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(
                msgs.iter()
                    .map(|m| {
                        m.key
                            .as_ref()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                    })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                msgs.iter()
                    .map(|m| Some(String::from_utf8_lossy(&m.value).into_owned()))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                msgs.iter().map(|m| m.headers.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                msgs.iter().map(|m| m.timestamp).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                msgs.iter()
                    .map(|m| i64::from(m.partition))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                msgs.iter().map(|m| m.offset).collect::<Vec<_>>(),
            )),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// A record copied out of librdkafka's buffer.
struct Msg {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: String,
    timestamp: i64,
}

fn headers_json(m: &rdkafka::message::BorrowedMessage<'_>) -> String {
    let mut obj = serde_json::Map::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            let v = h
                .value
                .map(|v| serde_json::Value::String(String::from_utf8_lossy(v).into_owned()))
                .unwrap_or(serde_json::Value::Null);
            obj.insert(h.key.to_string(), v);
        }
    }
    serde_json::Value::Object(obj).to_string()
}

/// Before the readers open: wait until the brokers answer for the topic, logging each failed
/// attempt (see [`crate::wait`]), so a broker that is still starting delays the job instead
/// of failing it, and a missing topic fails at once.
///
/// # Errors
/// A missing topic, bad settings, or brokers still unreachable after the wait limit.
pub async fn wait_until_reachable(spec: &KafkaSourceSpec, job_name: &str) -> Result<()> {
    let src_err = |message: String| Error::Source {
        source_name: format!("kafka topic {}", spec.topic),
        message,
    };
    let security =
        ClientSecurity::from_spec("source.kafka.security", &spec.security).map_err(src_err)?;
    let cfg = client_config(
        &format!("source-{job_name}"),
        &spec.bootstrap_servers,
        &spec.properties,
        &security,
    );
    let cluster = Cluster {
        bootstrap: spec.bootstrap_servers.clone(),
        security,
    };
    wait_for_partitions(&cfg, &cluster, &spec.topic)
        .await
        .map(|_| ())
        .map_err(src_err)
}

impl SourceReader for KafkaReader {
    fn poll(&mut self) -> Result<Poll> {
        self.discover()?;
        if self.bounded && self.parts.values().all(|p| p.state.finished) {
            return Ok(Poll::Finished);
        }
        let max = self.spec.max_batch_size.max(1) as usize;
        let mut by_part: BTreeMap<i32, Vec<Msg>> = BTreeMap::new();
        let mut n = 0;
        while n < max {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    // librdkafka reconnects by itself; errors here are reports, not ends.
                    if self
                        .last_error_log
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
                    {
                        tracing::warn!(topic = %self.spec.topic, error = %e, "kafka consumer error; retrying");
                        self.last_error_log = Some(Instant::now());
                    }
                    if let Some((code, reason)) = self.consumer.client().fatal_error() {
                        return Err(self.src_err(format!("fatal: {code:?}: {reason}")));
                    }
                    break;
                }
                Some(Ok(m)) => {
                    let p = m.partition();
                    let Some(part) = self.parts.get(&p) else {
                        continue;
                    };
                    if let Stop::At(end) = part.stop
                        && m.offset() >= end
                    {
                        continue;
                    }
                    by_part.entry(p).or_default().push(Msg {
                        partition: p,
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        headers: headers_json(&m),
                        timestamp: m.timestamp().to_millis().unwrap_or(0),
                    });
                    n += 1;
                }
            }
        }
        // Bounded partitions whose end was reached (read_committed may hide the last records).
        for part in self.parts.values_mut() {
            if let Stop::At(end) = part.stop
                && part.state.offset as i64 >= end
            {
                part.state.finished = true;
            }
        }
        if by_part.is_empty() {
            self.update_lag();
            if self.bounded && self.parts.values().all(|p| p.state.finished) {
                return Ok(Poll::Finished);
            }
            return Ok(Poll::Idle);
        }
        let mut batches = Vec::new();
        let mut side = (Vec::new(), Vec::new(), Vec::new());
        for (p, msgs) in by_part {
            let data = self.decode(p, &msgs, &mut side)?;
            let mut max_ts: Option<Millis> = None;
            if let Some(tc) = self.time_col
                && let Some(ts) = data
                    .column(tc)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
            {
                max_ts = datafusion::arrow::compute::max(ts);
            }
            if let Some(part) = self.parts.get_mut(&p) {
                let last = msgs.last().map_or(part.state.offset as i64, |m| m.offset);
                part.state.offset = (last + 1) as u64;
                part.state.records += msgs.len() as u64;
                if let Some(m) = max_ts {
                    part.state.max_event_time = part.state.max_event_time.max(m);
                }
                if let Stop::At(end) = part.stop {
                    part.state.finished = last + 1 >= end;
                }
            }
            batches.push(data);
        }
        self.update_lag();
        let data = concat_batches(&self.schema, &batches)?;
        let side = decode_errors_batch(side.0, side.1, side.2)?;
        Ok(Poll::Batch { data, side })
    }

    fn snapshot(&self) -> Vec<SplitState> {
        self.parts.values().map(|p| p.state).collect()
    }

    fn checkpoint_completed(&mut self, splits: &[SplitState]) {
        let mut tpl = TopicPartitionList::new();
        for s in splits {
            if tpl
                .add_partition_offset(
                    &self.spec.topic,
                    s.split as i32,
                    Offset::Offset(s.offset as i64),
                )
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(topic = %self.spec.topic, error = %e, "committing group offsets failed (monitoring only)");
        }
    }
}
