//! The read_committed verifier: reads every record batch of a topic with
//! read_uncommitted and decides visibility from the control batches in the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Record;
use tracing::debug;
use weir_runtime::kafka::log::{self, CONTROL_COMMIT, LogError, control_type};
use weir_runtime::kafka::wire::{Cluster, Connection};

/// The verifier's errors are the log reader's.
pub type VerifyError = LogError;

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
    let partitions = log::partition_leaders(cluster, topic).await?;
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
        let end = log::read_partition(conn, topic, partition, 0, |r| {
            classifier.add(r).map(|()| ControlFlow::Continue(()))
        })
        .await?;
        classifier.finish(&mut report, end.high_watermark, end.last_stable_offset);
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

#[cfg(test)]
mod tests {
    use super::*;
    use weir_runtime::kafka::log::fixtures::{marker, record as rec};

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
}
