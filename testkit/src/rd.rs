//! rdkafka helpers for Kafka tests: topics, producers, and a read_committed consumer
//! to compare against the verifier on brokers that implement read_committed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::TopicReport;

/// Generous bound for broker operations in tests; a slow CI broker should not cause
/// spurious failures, a hung one should.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `topic` with `partitions` partitions (replication factor 1); an existing
/// topic is fine, so reruns against a long-lived broker work.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> KafkaResult<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// Configuration of a transactional producer, for tests to add settings to.
pub fn transactional_config(bootstrap: &str, transactional_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        // Send each record right away so the log order in tests is the send order.
        .set("linger.ms", "0");
    config
}

/// A transactional producer (not yet initialised: call `init_transactions`).
pub fn transactional_producer(
    bootstrap: &str,
    transactional_id: &str,
) -> KafkaResult<FutureProducer> {
    transactional_config(bootstrap, transactional_id).create()
}

/// Configuration of a producer without transactions or idempotence (plain batches).
pub fn plain_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("linger.ms", "0");
    config
}

/// A producer without transactions or idempotence.
pub fn plain_producer(bootstrap: &str) -> KafkaResult<FutureProducer> {
    plain_config(bootstrap).create()
}

/// Sends one record and waits for the broker's acknowledgement, so the record is in the
/// log (in send order) when this returns. Returns its offset.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
    value: &str,
) -> KafkaResult<i64> {
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
            TIMEOUT,
        )
        .await
        .map(|delivery| delivery.offset)
        .map_err(|(err, _)| err)
}

/// The verifier's committed records next to what a real read_committed consumer
/// returns, both as [`ConsumedRecord`]s, for `assert_eq!`.
///
/// The verifier side is cut at each partition's first open transaction, because a
/// Kafka consumer does not read past the last stable offset.
pub async fn consumer_vs_verifier(
    bootstrap: &str,
    report: &TopicReport,
) -> KafkaResult<(Vec<ConsumedRecord>, Vec<ConsumedRecord>)> {
    let partitions: Vec<i32> = report.partitions.iter().map(|p| p.partition).collect();
    let bootstrap = bootstrap.to_owned();
    let topic = report.topic.clone();
    let consumed = tokio::task::spawn_blocking(move || {
        consume_read_committed(&bootstrap, &topic, &partitions)
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    let mut expected: Vec<ConsumedRecord> = report
        .committed_below_lso()
        .iter()
        .map(ConsumedRecord::from)
        .collect();
    expected.sort();
    Ok((consumed, expected))
}

/// A record as returned by a consumer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Everything an rdkafka `isolation.level=read_committed` consumer returns for
/// `partitions` of `topic` from the beginning, sorted by partition and offset.
///
/// Blocking; stops when every partition reported end-of-partition (for read_committed,
/// librdkafka reports it at the last stable offset) or after [`TIMEOUT`].
pub fn consume_read_committed(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<Vec<ConsumedRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique_name("weir-testkit-verify"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for &p in partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let mut at_end: HashSet<i32> = HashSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while at_end.len() < partitions.len() {
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(err)) => return Err(err),
            Some(Ok(msg)) => {
                at_end.remove(&msg.partition());
                out.push(ConsumedRecord {
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: msg.key().map(Bytes::copy_from_slice),
                    value: msg.payload().map(Bytes::copy_from_slice),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

impl From<&crate::CommittedRecord> for ConsumedRecord {
    fn from(r: &crate::CommittedRecord) -> Self {
        ConsumedRecord {
            partition: r.partition,
            offset: r.offset,
            key: r.key.clone(),
            value: r.value.clone(),
        }
    }
}
