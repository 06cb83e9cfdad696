//! Reading a partition's raw log: every record batch from an offset up to the high watermark,
//! control batches (transaction markers) included, with Kafka's read_uncommitted Fetch.
//!
//! Commit-phase recovery decides whether a transaction was committed from the markers in the
//! log itself, not from a read_committed consumer: a broker's read_committed filtering is only
//! as good as its aborted-transaction index (the local test broker's is wrong), while the
//! markers are what every broker writes. The test kit's read_committed verifier reads topics
//! the same way.

use std::ops::ControlFlow;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::wire::{self, Cluster, Connection, WireError};

/// Newer Fetch versions address topics by id only; callers know names, and v12 is supported
/// by every broker since Kafka 2.7 as well as by nisshi.
const FETCH_MAX_VERSION: i16 = 12;
/// Kafka's isolation level 0: everything up to the high watermark, aborted and still-open
/// transactional records included, which is what classifying them needs.
const READ_UNCOMMITTED: i8 = 0;
const FETCH_MAX_WAIT_MS: i32 = 100;
const FETCH_PARTITION_MAX_BYTES: i32 = 4 * 1024 * 1024;
/// Upper bound for growing the per-partition fetch size when a broker without KIP-74
/// returns only part of a batch larger than the requested size.
const FETCH_PARTITION_MAX_BYTES_LIMIT: i32 = 128 * 1024 * 1024;
/// Fetches in a row that may return nothing before the reader gives up; it bounds a broker
/// that reports a high watermark it cannot serve.
const MAX_EMPTY_FETCHES: u32 = 50;
/// How long Metadata may report a topic as unknown or leaderless (right after it was created
/// on a multi-broker cluster) before the error is reported.
const METADATA_PATIENCE: Duration = Duration::from_secs(10);

/// Record batch header layout (magic v2), for the fields needed before decoding.
const BATCH_LOG_OVERHEAD: usize = 12; // base offset (8) + batch length (4)
const MAGIC_OFFSET: usize = 16;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;

/// Control record type ABORT, from the control record key.
pub const CONTROL_ABORT: i16 = 0;
/// Control record type COMMIT.
pub const CONTROL_COMMIT: i16 = 1;

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;

/// Why a partition's log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Talking to a broker failed.
    #[error(transparent)]
    Wire(#[from] WireError),

    /// Metadata reported an error for the topic.
    #[error("topic '{topic}': Metadata error code {code}")]
    Topic {
        /// Topic.
        topic: String,
        /// Kafka error code.
        code: i16,
    },

    /// A partition has no leader the client can reach.
    #[error(
        "topic '{topic}' partition {partition}: no usable leader (error code {code}, leader id {leader_id})"
    )]
    NoLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Kafka error code.
        code: i16,
        /// Leader broker id as reported.
        leader_id: i32,
    },

    /// Fetch answered an error.
    #[error(
        "Fetch of '{topic}' partition {partition} at offset {offset} from {addr}: error code {code}"
    )]
    Fetch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset asked for.
        offset: i64,
        /// Broker address.
        addr: String,
        /// Kafka error code.
        code: i16,
    },

    /// A record batch could not be decoded.
    #[error(
        "'{topic}' partition {partition}: bad record batch at offset {offset} from {addr}: {message}"
    )]
    Decode {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset of the batch.
        offset: i64,
        /// Broker address.
        addr: String,
        /// What was wrong.
        message: String,
    },

    /// The broker kept answering empty fetches below its own high watermark.
    #[error(
        "'{topic}' partition {partition}: stuck at offset {offset} below high watermark \
         {high_watermark} after {attempts} fetches from {addr}"
    )]
    Stalled {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset the reader was at.
        offset: i64,
        /// High watermark of the first response.
        high_watermark: i64,
        /// Empty fetches in a row.
        attempts: u32,
        /// Broker address.
        addr: String,
    },
}

/// Where a read ended: the partition's high watermark and last stable offset as the first
/// Fetch response reported them (records produced while reading are not chased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionEnd {
    /// High watermark; the read covered offsets below it.
    pub high_watermark: i64,
    /// The broker's own last stable offset, for information only.
    pub last_stable_offset: i64,
}

/// Partition number -> leader address of `topic`, waiting briefly for a just-created topic.
///
/// # Errors
///
/// Metadata errors that persist for [`METADATA_PATIENCE`], and connection errors.
pub async fn partition_leaders(
    cluster: &Cluster,
    topic: &str,
) -> Result<Vec<(i32, String)>, LogError> {
    let deadline = tokio::time::Instant::now() + METADATA_PATIENCE;
    loop {
        let result = leaders_once(cluster, topic).await;
        match result {
            Err(LogError::Topic { code, .. } | LogError::NoLeader { code, .. })
                if matches!(code, UNKNOWN_TOPIC_OR_PARTITION | LEADER_NOT_AVAILABLE)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(LogError::NoLeader { code: 0, .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

async fn leaders_once(cluster: &Cluster, topic: &str) -> Result<Vec<(i32, String)>, LogError> {
    let topics = wire::metadata(cluster, &[topic]).await?;
    let Some(meta) = topics.into_iter().find(|t| t.name == topic) else {
        return Err(LogError::Topic {
            topic: topic.to_owned(),
            code: UNKNOWN_TOPIC_OR_PARTITION,
        });
    };
    if meta.error_code != 0 {
        return Err(LogError::Topic {
            topic: topic.to_owned(),
            code: meta.error_code,
        });
    }
    if meta.partitions.is_empty() {
        return Err(LogError::Topic {
            topic: topic.to_owned(),
            code: UNKNOWN_TOPIC_OR_PARTITION,
        });
    }
    meta.partitions
        .into_iter()
        .map(|p| match p.leader {
            Some(leader) if p.error_code == 0 => Ok((p.partition, leader)),
            _ => Err(LogError::NoLeader {
                topic: topic.to_owned(),
                partition: p.partition,
                code: p.error_code,
                leader_id: p.leader_id,
            }),
        })
        .collect()
}

/// Reads one partition from `from` (or the log start, when retention removed `from`) up to
/// the high watermark of the first response, handing each record, control records included,
/// to `visit` in offset order until it answers [`ControlFlow::Break`].
///
/// # Errors
///
/// Fetch and decode errors, a message `visit` returns (reported as a decode error at the
/// batch's offset), and a broker that stalls below its high watermark.
pub async fn read_partition(
    conn: &mut Connection,
    topic: &str,
    partition: i32,
    from: i64,
    mut visit: impl FnMut(Record) -> Result<ControlFlow<()>, String>,
) -> Result<PartitionEnd, LogError> {
    let version = conn.version_capped::<FetchRequest>(FETCH_MAX_VERSION)?;
    let mut offset = from;
    let mut max_bytes = FETCH_PARTITION_MAX_BYTES;
    let mut end: Option<PartitionEnd> = None;
    let mut empty_fetches = 0u32;
    loop {
        if let Some(e) = end
            && offset >= e.high_watermark
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
        let fetch_err = |code| LogError::Fetch {
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
        let hw = end
            .get_or_insert(PartitionEnd {
                high_watermark: data.high_watermark,
                last_stable_offset: data.last_stable_offset,
            })
            .high_watermark;
        let records = data.records.clone().unwrap_or_default();
        let addr = conn.addr().to_owned();
        let decode_err = |offset: i64| {
            let addr = addr.clone();
            move |message: String| LogError::Decode {
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
                continue; // a batch already processed, returned again
            }
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf)
                .map_err(|err| decode_err(offset)(format!("{err:#}")))?;
            for record in set.records {
                if record.offset >= offset
                    && record.offset < hw
                    && visit(record).map_err(decode_err(offset))?.is_break()
                {
                    return Ok(end.unwrap_or_default());
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
            return Err(LogError::Stalled {
                topic: topic.to_owned(),
                partition,
                offset,
                high_watermark: hw,
                attempts: empty_fetches,
                addr: conn.addr().to_owned(),
            });
        }
    }
    Ok(end.unwrap_or_default())
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

/// The offset after a batch, from its header, so batches whose records were all compacted
/// away still advance the fetch position.
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

/// The control type ([`CONTROL_ABORT`] or [`CONTROL_COMMIT`]) from a control record's key
/// (version i16, type i16).
///
/// # Errors
///
/// A key that is not a 4-byte control key, or an unknown type.
pub fn control_type(record: &Record) -> Result<i16, String> {
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

/// Records as a partition's log holds them, for tests of code that classifies them (here and
/// in the test kit's verifier).
#[doc(hidden)]
pub mod fixtures {
    use bytes::Bytes;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Record, TimestampType};

    /// A data record of producer `pid` at `epoch`, transactional or not.
    #[must_use]
    pub fn record(offset: i64, pid: i64, epoch: i16, transactional: bool) -> Record {
        Record {
            transactional,
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

    /// A COMMIT (`commit`) or ABORT marker of producer `pid` at `epoch`.
    #[must_use]
    pub fn marker(offset: i64, pid: i64, epoch: i16, commit: bool) -> Record {
        let mut r = record(offset, pid, epoch, true);
        r.control = true;
        r.key = Some(Bytes::from(vec![0, 0, 0, u8::from(commit)]));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
