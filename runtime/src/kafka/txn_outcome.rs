//! Whether a transaction a checkpoint recorded was committed, read from its COMMIT or ABORT
//! marker in the log.
//!
//! EndTxn's answer cannot say it: "fenced" or "no longer ongoing" come back both for a
//! transaction committed earlier and for one the broker aborted (its transaction timeout ran
//! out during an outage, or another producer initialised the same transactional id), and the
//! local test broker answers success even for a commit of an aborted transaction. The marker
//! is the fact: the first control record of the transaction's producer after its first record,
//! in any partition it wrote to.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use super::log::{self, CONTROL_COMMIT, LogError};
use super::wire::{Cluster, Connection};
use crate::checkpoint::state::{FirstOffset, KafkaTransaction};

/// How long a transaction may stay without a marker (Kafka writes markers after it answers
/// EndTxn) before its outcome is reported as unknown.
const MARKER_PATIENCE: Duration = Duration::from_secs(30);

/// What the log says about a recorded transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// A COMMIT marker follows its records.
    Committed,
    /// An ABORT marker follows its records: they are not visible to read_committed readers.
    Aborted {
        /// Partition of the marker.
        partition: i32,
        /// Offset of the marker.
        offset: i64,
    },
    /// The log cannot tell (records removed by retention, another producer's record where the
    /// transaction's first one should be, no marker within [`MARKER_PATIENCE`]).
    Unknown(String),
}

/// One partition's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Marker {
        commit: bool,
        offset: i64,
    },
    /// The transaction's records, no marker yet.
    Open,
    Unknown(String),
}

/// Reads the outcome of `txn` in `topic`. A transaction with no recorded first offsets (a
/// checkpoint from before they were recorded) is [`TxnOutcome::Unknown`].
///
/// # Errors
///
/// The log cannot be read (broker unreachable, fetch errors); the caller fails the start and
/// a restart tries again.
pub async fn read(
    cluster: &Cluster,
    topic: &str,
    txn: &KafkaTransaction,
) -> Result<TxnOutcome, LogError> {
    if txn.first_offsets.is_empty() {
        return Ok(TxnOutcome::Unknown(
            "the checkpoint does not record where the transaction's records are (written by \
             an older runtime, or the broker answered every retried batch without its offsets)"
                .into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + MARKER_PATIENCE;
    loop {
        let seen = read_once(cluster, topic, txn).await?;
        match decide(&seen) {
            Some(outcome) => return Ok(outcome),
            None if tokio::time::Instant::now() >= deadline => {
                return Ok(TxnOutcome::Unknown(format!(
                    "no COMMIT or ABORT marker follows its records after {} s",
                    MARKER_PATIENCE.as_secs()
                )));
            }
            None => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn read_once(
    cluster: &Cluster,
    topic: &str,
    txn: &KafkaTransaction,
) -> Result<BTreeMap<i32, Seen>, LogError> {
    let leaders: BTreeMap<i32, String> = log::partition_leaders(cluster, topic)
        .await?
        .into_iter()
        .collect();
    let mut connections: BTreeMap<String, Connection> = BTreeMap::new();
    let mut seen = BTreeMap::new();
    for &FirstOffset {
        partition,
        offset: first,
    } in &txn.first_offsets
    {
        let Some(leader) = leaders.get(&partition) else {
            seen.insert(
                partition,
                Seen::Unknown(format!("partition {partition} no longer exists")),
            );
            continue;
        };
        if !connections.contains_key(leader) {
            let conn = Connection::connect(leader, &cluster.security).await?;
            connections.insert(leader.clone(), conn);
        }
        let Some(conn) = connections.get_mut(leader) else {
            continue; // inserted just above
        };
        let mut scan = Scan::new(partition, first, txn.producer_id, txn.producer_epoch);
        log::read_partition(conn, topic, partition, first, |r| scan.visit(&r)).await?;
        seen.insert(partition, scan.seen);
    }
    Ok(seen)
}

/// The partitions' answers combined; `None` while some partition still waits for its marker.
fn decide(seen: &BTreeMap<i32, Seen>) -> Option<TxnOutcome> {
    let mut committed = false;
    let mut aborted = None;
    let mut open = false;
    for (&partition, s) in seen {
        match s {
            Seen::Unknown(why) => return Some(TxnOutcome::Unknown(why.clone())),
            Seen::Open => open = true,
            Seen::Marker { commit: true, .. } => committed = true,
            Seen::Marker {
                commit: false,
                offset,
            } => {
                aborted.get_or_insert((partition, *offset));
            }
        }
    }
    match (committed, aborted) {
        (true, Some((p, o))) => Some(TxnOutcome::Unknown(format!(
            "committed in one partition and aborted in partition {p} (marker at offset {o}); \
             the broker broke the transaction's atomicity"
        ))),
        (false, Some((partition, offset))) => Some(TxnOutcome::Aborted { partition, offset }),
        _ if open => None,
        (true, None) => Some(TxnOutcome::Committed),
        (false, None) => Some(TxnOutcome::Unknown("no partition to read".into())),
    }
}

/// Walks one partition from the transaction's first record to its marker.
struct Scan {
    partition: i32,
    first: i64,
    producer_id: i64,
    epoch: i16,
    started: bool,
    seen: Seen,
}

impl Scan {
    fn new(partition: i32, first: i64, producer_id: i64, epoch: i16) -> Self {
        Self {
            partition,
            first,
            producer_id,
            epoch,
            started: false,
            seen: Seen::Open,
        }
    }

    fn visit(&mut self, r: &kafka_protocol::records::Record) -> Result<ControlFlow<()>, String> {
        if !self.started {
            self.started = true;
            if r.offset != self.first || r.producer_id != self.producer_id || r.control {
                self.seen = Seen::Unknown(format!(
                    "partition {} holds {} at offset {} where the transaction's first record \
                     (offset {}) should be; retention may have removed it",
                    self.partition,
                    if r.producer_id == self.producer_id {
                        "another record of its producer".to_string()
                    } else {
                        format!("a record of producer {}", r.producer_id)
                    },
                    r.offset,
                    self.first
                ));
                return Ok(ControlFlow::Break(()));
            }
            return Ok(ControlFlow::Continue(()));
        }
        // A marker of an older epoch ends an earlier transaction; Kafka writes the ABORT of a
        // fenced or timed-out transaction with a bumped epoch, so newer epochs count.
        if r.control && r.producer_id == self.producer_id && r.producer_epoch >= self.epoch {
            self.seen = Seen::Marker {
                commit: log::control_type(r)? == CONTROL_COMMIT,
                offset: r.offset,
            };
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::log::fixtures::marker;
    use kafka_protocol::records::Record;

    fn rec(offset: i64, pid: i64, epoch: i16) -> Record {
        crate::kafka::log::fixtures::record(offset, pid, epoch, true)
    }

    fn scan(first: i64, records: &[Record]) -> Seen {
        let mut s = Scan::new(0, first, 7, 3);
        for r in records {
            if s.visit(r).map(|f| f.is_break()).unwrap_or(true) {
                break;
            }
        }
        s.seen
    }

    #[test]
    fn the_producers_next_marker_decides() {
        let other = rec(11, 9, 0);
        assert_eq!(
            scan(
                10,
                &[
                    rec(10, 7, 3),
                    other.clone(),
                    marker(12, 9, 0, false),
                    marker(13, 7, 3, true)
                ]
            ),
            Seen::Marker {
                commit: true,
                offset: 13
            }
        );
        // The broker aborting a timed-out or fenced transaction writes a bumped epoch.
        assert_eq!(
            scan(10, &[rec(10, 7, 3), marker(11, 7, 4, false)]),
            Seen::Marker {
                commit: false,
                offset: 11
            }
        );
        // An older epoch's marker is not this transaction's.
        assert_eq!(
            scan(10, &[rec(10, 7, 3), marker(11, 7, 2, false)]),
            Seen::Open
        );
    }

    #[test]
    fn a_missing_first_record_is_unknown_not_committed() {
        assert!(matches!(
            scan(10, &[rec(12, 7, 3), marker(13, 7, 3, true)]),
            Seen::Unknown(_)
        ));
        assert!(matches!(
            scan(10, &[rec(10, 8, 3), marker(13, 7, 3, true)]),
            Seen::Unknown(_)
        ));
    }

    #[test]
    fn partitions_combine_into_one_outcome() {
        let m = |commit, offset| Seen::Marker { commit, offset };
        let of = |v: Vec<Seen>| {
            v.into_iter()
                .enumerate()
                .map(|(p, s)| (p as i32, s))
                .collect()
        };
        assert_eq!(
            decide(&of(vec![m(true, 1), m(true, 2)])),
            Some(TxnOutcome::Committed)
        );
        assert_eq!(
            decide(&of(vec![Seen::Open, m(false, 5)])),
            Some(TxnOutcome::Aborted {
                partition: 1,
                offset: 5
            })
        );
        assert_eq!(decide(&of(vec![m(true, 1), Seen::Open])), None);
        assert!(matches!(
            decide(&of(vec![m(true, 1), m(false, 2)])),
            Some(TxnOutcome::Unknown(_))
        ));
    }
}
