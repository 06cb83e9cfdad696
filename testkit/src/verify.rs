//! The read_committed verifier: reads every record batch of a topic with
//! read_uncommitted and decides visibility from the control batches in the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tracing::debug;
use weir_runtime::kafka::wire::{self, Cluster, Connection, WireError};

/// Newer Fetch versions address topics by id only; the verifier knows names, and v12
/// is supported by every broker since Kafka 2.7 as well as by nisshi.
const FETCH_MAX_VERSION: i16 = 12;
/// Kafka's isolation level 0: return everything up to the high watermark, including
/// aborted and still-open transactional records, which is what we need to classify.
const READ_UNCOMMITTED: i8 = 0;
const FETCH_MAX_WAIT_MS: i32 = 100;
const FETCH_PARTITION_MAX_BYTES: i32 = 4 * 1024 * 1024;
/// Upper bound for growing the per-partition fetch size when a broker without KIP-74
/// returns only part of a batch larger than the requested size.
const FETCH_PARTITION_MAX_BYTES_LIMIT: i32 = 128 * 1024 * 1024;
/// Fetches in a row that may return nothing before the verifier gives up; it bounds a
/// broker that reports a high watermark it cannot serve.
const MAX_EMPTY_FETCHES: u32 = 50;
/// How long Metadata may report a topic as unknown or leaderless (e.g. right after it
/// was created on a multi-broker cluster) before the verifier reports the error.
const METADATA_PATIENCE: Duration = Duration::from_secs(10);

/// Record batch header layout (magic v2), for the fields needed before decoding.
const BATCH_LOG_OVERHEAD: usize = 12; // base offset (8) + batch length (4)
const MAGIC_OFFSET: usize = 16;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;

/// Control record types from the control record key.
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// Kafka error codes the verifier treats specially.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Wire(#[from] WireError),

    #[error("topic '{topic}': Metadata error code {code}")]
    Topic { topic: String, code: i16 },

    #[error(
        "topic '{topic}' partition {partition}: no usable leader (error code {code}, leader id {leader_id})"
    )]
    NoLeader {
        topic: String,
        partition: i32,
        code: i16,
        leader_id: i32,
    },

    #[error(
        "Fetch of '{topic}' partition {partition} at offset {offset} from {addr}: error code {code}"
    )]
    Fetch {
        topic: String,
        partition: i32,
        offset: i64,
        addr: String,
        code: i16,
    },

    #[error(
        "'{topic}' partition {partition}: bad record batch at offset {offset} from {addr}: {message}"
    )]
    Decode {
        topic: String,
        partition: i32,
        offset: i64,
        addr: String,
        message: String,
    },

    #[error(
        "'{topic}' partition {partition}: stuck at offset {offset} below high watermark \
         {high_watermark} after {attempts} fetches from {addr}"
    )]
    Stalled {
        topic: String,
        partition: i32,
        offset: i64,
        high_watermark: i64,
        attempts: u32,
        addr: String,
    },
}

/// One record a read_committed consumer should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    /// Header keys in record order. kafka-protocol decodes headers into a map, so of
    /// repeated keys only the last value survives.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Records of one producer in one partition that have no COMMIT/ABORT marker yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    pub partition: i32,
    pub producer_id: i64,
    /// Highest epoch among the pending records; with the producer id this is what an
    /// EndTxn for the transaction needs.
    pub producer_epoch: i16,
    pub first_offset: i64,
    pub records: usize,
}

/// What the verifier saw in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReport {
    pub partition: i32,
    /// High watermark when the verifier started reading; it read up to here.
    pub high_watermark: i64,
    /// The broker's own last stable offset, for comparison only (nisshi's is not
    /// trustworthy).
    pub broker_last_stable_offset: i64,
    pub committed: usize,
    pub aborted: usize,
    pub open: usize,
    pub commit_markers: usize,
    pub abort_markers: usize,
}

/// The verifier's view of a whole topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    pub topic: String,
    /// Visible records, sorted by partition then offset.
    pub committed: Vec<CommittedRecord>,
    /// Transactional records followed by an ABORT from their producer.
    pub aborted: usize,
    /// Transactional records with no marker yet; a read_committed consumer stops
    /// before the first of them (the last stable offset) until the marker arrives.
    pub open: usize,
    /// Producer ids with open transactions in any partition, sorted.
    pub open_producers: Vec<i64>,
    /// Details of each open transaction, sorted by partition then producer id.
    pub open_transactions: Vec<OpenTransaction>,
    /// Sorted by partition.
    pub partitions: Vec<PartitionReport>,
}

impl TopicReport {
    /// The committed records a real read_committed consumer returns at this point:
    /// those before the first open transaction's first offset in their partition,
    /// because Kafka does not serve past the last stable offset.
    pub fn committed_below_lso(&self) -> Vec<CommittedRecord> {
        let mut lso: HashMap<i32, i64> = HashMap::new();
        for t in &self.open_transactions {
            let e = lso.entry(t.partition).or_insert(t.first_offset);
            *e = (*e).min(t.first_offset);
        }
        self.committed
            .iter()
            .filter(|r| lso.get(&r.partition).is_none_or(|lso| r.offset < *lso))
            .cloned()
            .collect()
    }
}

/// The records a read_committed consumer should see in `topic`, in partition/offset
/// order, ignoring records of still-open transactions.
pub async fn committed_records(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<CommittedRecord>, VerifyError> {
    Ok(read_topic(bootstrap, topic).await?.committed)
}

/// How long [`read_topic_settled`] waits for transaction markers to appear.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// [`read_topic`], repeated until at most `max_open` records are undecided or
/// [`SETTLE_TIMEOUT`] passed; returns the last report either way, so the caller's
/// assertions show the state.
///
/// Kafka answers EndTxn (and so `commit_transaction` returns) before the COMMIT/ABORT
/// markers are in the partitions, so a read right after a commit can still see the
/// transaction open.
pub async fn read_topic_settled(
    bootstrap: &str,
    topic: &str,
    max_open: usize,
) -> Result<TopicReport, VerifyError> {
    read_cluster_topic_settled(&Cluster::plaintext(bootstrap), topic, max_open).await
}

/// [`read_topic_settled`] on a cluster reached with TLS or SASL.
pub async fn read_cluster_topic_settled(
    cluster: &Cluster,
    topic: &str,
    max_open: usize,
) -> Result<TopicReport, VerifyError> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let report = read_cluster_topic(cluster, topic).await?;
        if report.open <= max_open || tokio::time::Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads every partition of `topic` from offset 0 (or the log start) to its high
/// watermark and classifies each record as committed, aborted or open.
///
/// Kafka's rule: records of non-transactional batches are visible; a transactional
/// record of producer P is visible iff the next control marker from P in the same
/// partition (with an epoch at least the record's) is COMMIT, invisible if it is ABORT,
/// and undecided (open) if no marker follows yet.
pub async fn read_topic(bootstrap: &str, topic: &str) -> Result<TopicReport, VerifyError> {
    read_cluster_topic(&Cluster::plaintext(bootstrap), topic).await
}

/// [`read_topic`] on a cluster reached with TLS or SASL (the same way the sink does).
pub async fn read_cluster_topic(
    cluster: &Cluster,
    topic: &str,
) -> Result<TopicReport, VerifyError> {
    let partitions = partition_leaders(cluster, topic).await?;
    let mut connections: HashMap<String, Connection> = HashMap::new();
    let mut report = TopicReport {
        topic: topic.to_owned(),
        committed: Vec::new(),
        aborted: 0,
        open: 0,
        open_producers: Vec::new(),
        open_transactions: Vec::new(),
        partitions: Vec::new(),
    };
    for (partition, leader) in partitions {
        if !connections.contains_key(&leader) {
            let conn = Connection::connect(&leader, &cluster.security).await?;
            connections.insert(leader.clone(), conn);
        }
        let Some(conn) = connections.get_mut(&leader) else {
            continue; // inserted just above
        };
        let mut classifier = Classifier::new(partition);
        let (high_watermark, broker_lso) =
            fetch_partition(conn, topic, partition, &mut classifier).await?;
        classifier.finish(&mut report, high_watermark, broker_lso);
    }
    report.committed.sort_by_key(|r| (r.partition, r.offset));
    report
        .open_transactions
        .sort_by_key(|t| (t.partition, t.producer_id));
    let producers: BTreeSet<i64> = report
        .open_transactions
        .iter()
        .map(|t| t.producer_id)
        .collect();
    report.open_producers = producers.into_iter().collect();
    report.partitions.sort_by_key(|p| p.partition);
    debug!(
        topic,
        committed = report.committed.len(),
        aborted = report.aborted,
        open = report.open,
        "verified topic"
    );
    Ok(report)
}

/// Partition number -> leader address, waiting briefly for a just-created topic.
async fn partition_leaders(
    cluster: &Cluster,
    topic: &str,
) -> Result<Vec<(i32, String)>, VerifyError> {
    let deadline = tokio::time::Instant::now() + METADATA_PATIENCE;
    loop {
        let result = leaders_once(cluster, topic).await;
        match result {
            Err(VerifyError::Topic { code, .. } | VerifyError::NoLeader { code, .. })
                if matches!(code, UNKNOWN_TOPIC_OR_PARTITION | LEADER_NOT_AVAILABLE)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(VerifyError::NoLeader { code: 0, .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

async fn leaders_once(cluster: &Cluster, topic: &str) -> Result<Vec<(i32, String)>, VerifyError> {
    let topics = wire::metadata(cluster, &[topic]).await?;
    let Some(meta) = topics.into_iter().find(|t| t.name == topic) else {
        return Err(VerifyError::Topic {
            topic: topic.to_owned(),
            code: UNKNOWN_TOPIC_OR_PARTITION,
        });
    };
    if meta.error_code != 0 {
        return Err(VerifyError::Topic {
            topic: topic.to_owned(),
            code: meta.error_code,
        });
    }
    if meta.partitions.is_empty() {
        return Err(VerifyError::Topic {
            topic: topic.to_owned(),
            code: UNKNOWN_TOPIC_OR_PARTITION,
        });
    }
    meta.partitions
        .into_iter()
        .map(|p| match p.leader {
            Some(leader) if p.error_code == 0 => Ok((p.partition, leader)),
            _ => Err(VerifyError::NoLeader {
                topic: topic.to_owned(),
                partition: p.partition,
                code: p.error_code,
                leader_id: p.leader_id,
            }),
        })
        .collect()
}

/// Fetches all batches of one partition up to the high watermark seen by the first
/// fetch, feeding records to `classifier`. Returns (high watermark, broker LSO).
async fn fetch_partition(
    conn: &mut Connection,
    topic: &str,
    partition: i32,
    classifier: &mut Classifier,
) -> Result<(i64, i64), VerifyError> {
    let version = conn.version_capped::<FetchRequest>(FETCH_MAX_VERSION)?;
    let mut offset = 0i64;
    let mut max_bytes = FETCH_PARTITION_MAX_BYTES;
    // Fixed at the first response so records produced while we read do not keep us
    // chasing the end of the log.
    let mut end: Option<(i64, i64)> = None;
    let mut empty_fetches = 0u32;
    loop {
        if let Some((hw, _)) = end
            && offset >= hw
        {
            break;
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(FETCH_MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(READ_UNCOMMITTED)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let resp = conn.request(req, version).await?;
        let fetch_err = |code| VerifyError::Fetch {
            topic: topic.to_owned(),
            partition,
            offset,
            addr: conn.addr().to_owned(),
            code,
        };
        if resp.error_code != 0 {
            return Err(fetch_err(resp.error_code));
        }
        let Some(data) = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
        else {
            return Err(fetch_err(UNKNOWN_TOPIC_OR_PARTITION));
        };
        if data.error_code == OFFSET_OUT_OF_RANGE && data.log_start_offset > offset {
            // Retention or DeleteRecords removed the log head; start where it begins.
            offset = data.log_start_offset;
            continue;
        }
        if data.error_code != 0 {
            return Err(fetch_err(data.error_code));
        }
        let (hw, _) = *end.get_or_insert((data.high_watermark, data.last_stable_offset));
        let records = data.records.clone().unwrap_or_default();
        let addr = conn.addr().to_owned();
        let decode_err = |offset: i64| {
            let addr = addr.clone();
            move |message: String| VerifyError::Decode {
                topic: topic.to_owned(),
                partition,
                offset,
                addr,
                message,
            }
        };
        let (batches, partial) = split_batches(records).map_err(decode_err(offset))?;
        let mut progressed = false;
        for batch in batches {
            let next = batch_next_offset(&batch).map_err(decode_err(offset))?;
            if next <= offset {
                continue; // a batch we already processed, returned again
            }
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf)
                .map_err(|err| decode_err(offset)(format!("{err:#}")))?;
            for record in set.records {
                if record.offset >= offset && record.offset < hw {
                    classifier.add(record).map_err(decode_err(offset))?;
                }
            }
            offset = next;
            progressed = true;
        }
        if progressed {
            empty_fetches = 0;
            continue;
        }
        if partial && max_bytes < FETCH_PARTITION_MAX_BYTES_LIMIT {
            // Only part of one large batch fit; ask for more.
            max_bytes = max_bytes.saturating_mul(2);
            continue;
        }
        empty_fetches += 1;
        if empty_fetches >= MAX_EMPTY_FETCHES {
            return Err(VerifyError::Stalled {
                topic: topic.to_owned(),
                partition,
                offset,
                high_watermark: hw,
                attempts: empty_fetches,
                addr: conn.addr().to_owned(),
            });
        }
    }
    Ok(end.unwrap_or((0, 0)))
}

/// Splits a Fetch `records` blob into complete batches. A broker may cut the last batch
/// short at the size limit; that partial tail is dropped and reported as `true`.
fn split_batches(mut records: Bytes) -> Result<(Vec<Bytes>, bool), String> {
    let mut batches = Vec::new();
    while records.len() >= BATCH_LOG_OVERHEAD {
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
        let len = usize::try_from(len).map_err(|_| format!("negative batch length {len}"))?;
        let total = BATCH_LOG_OVERHEAD + len;
        if records.len() < total {
            return Ok((batches, true));
        }
        batches.push(records.split_to(total));
    }
    Ok((batches, !records.is_empty()))
}

/// The offset after a batch, from its header, so batches whose records were all
/// compacted away still advance the fetch position.
fn batch_next_offset(batch: &Bytes) -> Result<i64, String> {
    let Some(header) = batch.get(..LAST_OFFSET_DELTA_OFFSET + 4) else {
        return Err(format!(
            "batch of {} bytes is shorter than a header",
            batch.len()
        ));
    };
    let magic = header[MAGIC_OFFSET];
    if magic != 2 {
        return Err(format!(
            "record batch magic {magic} is not supported (only v2)"
        ));
    }
    let base = i64::from_be_bytes([
        header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7],
    ]);
    let o = LAST_OFFSET_DELTA_OFFSET;
    let last_delta = i32::from_be_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
    Ok(base + i64::from(last_delta) + 1)
}

struct Pending {
    epoch: i16,
    record: CommittedRecord,
}

/// Applies Kafka's read_committed rule to one partition's records in offset order.
struct Classifier {
    partition: i32,
    committed: Vec<CommittedRecord>,
    aborted: usize,
    commit_markers: usize,
    abort_markers: usize,
    /// Undecided transactional records per producer id, in offset order.
    pending: BTreeMap<i64, Vec<Pending>>,
}

impl Classifier {
    fn new(partition: i32) -> Self {
        Classifier {
            partition,
            committed: Vec::new(),
            aborted: 0,
            commit_markers: 0,
            abort_markers: 0,
            pending: BTreeMap::new(),
        }
    }

    fn add(&mut self, record: Record) -> Result<(), String> {
        if record.control {
            let commit = control_type(&record)? == CONTROL_COMMIT;
            if commit {
                self.commit_markers += 1;
            } else {
                self.abort_markers += 1;
            }
            self.resolve(record.producer_id, record.producer_epoch, commit);
            return Ok(());
        }
        let transactional = record.transactional;
        let (pid, epoch) = (record.producer_id, record.producer_epoch);
        let visible = CommittedRecord {
            partition: self.partition,
            offset: record.offset,
            key: record.key,
            value: record.value,
            timestamp: record.timestamp,
            headers: record
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        if transactional {
            self.pending.entry(pid).or_default().push(Pending {
                epoch,
                record: visible,
            });
        } else {
            self.committed.push(visible);
        }
        Ok(())
    }

    /// A marker from (pid, epoch) decides the producer's pending records of that epoch
    /// or older: a fencing producer's coordinator writes the ABORT with a bumped epoch
    /// (Kafka) or the old one (nisshi), and both must cover the fenced records.
    fn resolve(&mut self, pid: i64, epoch: i16, commit: bool) {
        let Some(pending) = self.pending.remove(&pid) else {
            return;
        };
        let (decided, rest): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| p.epoch <= epoch);
        if commit {
            self.committed.extend(decided.into_iter().map(|p| p.record));
        } else {
            self.aborted += decided.len();
        }
        if !rest.is_empty() {
            self.pending.insert(pid, rest);
        }
    }

    fn finish(self, report: &mut TopicReport, high_watermark: i64, broker_lso: i64) {
        let mut open = 0;
        for (pid, pending) in &self.pending {
            let (Some(first), Some(epoch)) = (
                pending.iter().map(|p| p.record.offset).min(),
                pending.iter().map(|p| p.epoch).max(),
            ) else {
                continue;
            };
            open += pending.len();
            report.open_transactions.push(OpenTransaction {
                partition: self.partition,
                producer_id: *pid,
                producer_epoch: epoch,
                first_offset: first,
                records: pending.len(),
            });
        }
        report.partitions.push(PartitionReport {
            partition: self.partition,
            high_watermark,
            broker_last_stable_offset: broker_lso,
            committed: self.committed.len(),
            aborted: self.aborted,
            open,
            commit_markers: self.commit_markers,
            abort_markers: self.abort_markers,
        });
        report.aborted += self.aborted;
        report.open += open;
        report.committed.extend(self.committed);
    }
}

/// The control type (ABORT/COMMIT) from a control record's key: version i16, type i16.
fn control_type(record: &Record) -> Result<i16, String> {
    let key = record.key.as_ref().map(|k| k.as_ref()).unwrap_or_default();
    match key.get(..4) {
        Some(&[_, _, hi, lo]) => match i16::from_be_bytes([hi, lo]) {
            t @ (CONTROL_ABORT | CONTROL_COMMIT) => Ok(t),
            t => Err(format!(
                "control record at offset {} has unknown type {t}",
                record.offset
            )),
        },
        _ => Err(format!(
            "control record at offset {} has a {}-byte key, expected 4",
            record.offset,
            key.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::TimestampType;

    fn rec(offset: i64, pid: i64, epoch: i16, txn: bool) -> Record {
        Record {
            transactional: txn,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: 0,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from(format!("v{offset}"))),
            headers: IndexMap::new(),
        }
    }

    fn marker(offset: i64, pid: i64, epoch: i16, commit: bool) -> Record {
        let mut r = rec(offset, pid, epoch, true);
        r.control = true;
        r.key = Some(Bytes::from(vec![0, 0, 0, u8::from(commit)]));
        r
    }

    fn classify(records: Vec<Record>) -> TopicReport {
        let mut c = Classifier::new(0);
        for r in records {
            assert!(c.add(r).is_ok());
        }
        let mut report = TopicReport {
            topic: "t".into(),
            committed: vec![],
            aborted: 0,
            open: 0,
            open_producers: vec![],
            open_transactions: vec![],
            partitions: vec![],
        };
        c.finish(&mut report, 0, 0);
        report.committed.sort_by_key(|r| r.offset);
        report
    }

    fn offsets(r: &TopicReport) -> Vec<i64> {
        r.committed.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn interleaved_producers() {
        let r = classify(vec![
            rec(0, 1, 0, true),
            rec(1, 2, 0, true),
            rec(2, -1, -1, false),
            rec(3, 1, 0, true),
            marker(4, 2, 0, false),
            marker(5, 1, 0, true),
            rec(6, 2, 0, true),
        ]);
        assert_eq!(offsets(&r), vec![0, 2, 3]);
        assert_eq!(r.aborted, 1);
        assert_eq!(r.open, 1);
        assert_eq!(r.open_transactions[0].producer_id, 2);
        assert_eq!(r.open_transactions[0].first_offset, 6);
    }

    #[test]
    fn fence_marker_with_bumped_epoch_aborts_older_epoch() {
        let r = classify(vec![rec(0, 7, 3, true), marker(1, 7, 4, false)]);
        assert!(r.committed.is_empty());
        assert_eq!(r.aborted, 1);
        assert_eq!(r.open, 0);
    }

    #[test]
    fn marker_of_older_epoch_leaves_newer_records_pending() {
        let r = classify(vec![rec(0, 7, 4, true), marker(1, 7, 3, true)]);
        assert!(r.committed.is_empty());
        assert_eq!(r.open, 1);
    }

    #[test]
    fn marker_without_pending_records_is_ignored() {
        let r = classify(vec![
            marker(0, 7, 0, true),
            rec(1, 7, 0, true),
            marker(2, 7, 0, true),
        ]);
        assert_eq!(offsets(&r), vec![1]);
    }

    #[test]
    fn split_keeps_partial_tail_out() {
        let mut blob = vec![0u8; 8];
        blob.extend_from_slice(&5i32.to_be_bytes());
        blob.extend_from_slice(&[1, 2, 3, 4, 5]);
        blob.extend_from_slice(&[0; 8]);
        blob.extend_from_slice(&100i32.to_be_bytes());
        blob.extend_from_slice(&[9; 10]);
        let (batches, partial) = split_batches(Bytes::from(blob)).unwrap_or_default();
        assert_eq!(batches.len(), 1);
        assert!(partial);
    }
}
