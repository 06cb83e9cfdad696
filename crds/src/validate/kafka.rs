//! The Kafka source's and the Kafka sink's checks, together because they share the
//! connector's vocabulary (bootstrap servers, topics, transactions) and its reader.

use super::FieldError;
use super::source::field_names;
use crate::connectors::{Delivery, KafkaFormat, KafkaSinkSpec, KafkaSourceSpec, StartingOffsets};
use crate::pipeline::{CheckpointSpec, FieldType, SourceSpec};

/// Columns of a `format: raw` Kafka source, in order.
pub const KAFKA_RAW_COLUMNS: [(&str, FieldType); 6] = [
    ("key", FieldType::String),
    ("value", FieldType::String),
    ("headers", FieldType::String),
    ("timestamp", FieldType::Timestamp),
    ("partition", FieldType::Int64),
    ("offset", FieldType::Int64),
];

/// The source's settings, and the schema fields they name: `timestampField` must be a
/// timestamp, and `format: raw` fixes the whole schema.
pub(super) fn check_source(k: &KafkaSourceSpec, src: &SourceSpec, errs: &mut Vec<FieldError>) {
    let base = "source.kafka";
    if k.bootstrap_servers.trim().is_empty() {
        errs.push(FieldError::new(
            format!("{base}.bootstrapServers"),
            "is empty",
        ));
    }
    if k.topic.trim().is_empty() {
        errs.push(FieldError::new(format!("{base}.topic"), "is empty"));
    }
    if k.max_batch_size == 0 {
        errs.push(FieldError::new(
            format!("{base}.maxBatchSize"),
            "must be at least 1",
        ));
    }
    match (k.starting_offsets, &k.starting_timestamp) {
        (StartingOffsets::Timestamp, None) => errs.push(FieldError::new(
            format!("{base}.startingTimestamp"),
            "is required with startingOffsets: timestamp",
        )),
        (StartingOffsets::Timestamp, Some(t)) => {
            if let Err(e) = parse_timestamp_ms(t) {
                errs.push(FieldError::new(format!("{base}.startingTimestamp"), e));
            }
        }
        (_, Some(_)) => errs.push(FieldError::new(
            format!("{base}.startingTimestamp"),
            "is only used with startingOffsets: timestamp",
        )),
        (_, None) => {}
    }
    if let Some(tf) = &k.timestamp_field {
        match src.schema.iter().find(|f| &f.name == tf) {
            Some(f) if f.data_type == FieldType::Timestamp => {}
            Some(f) => errs.push(FieldError::new(
                format!("{base}.timestampField"),
                format!(
                    "`{tf}` has type {:?}; it must be a timestamp field",
                    f.data_type
                ),
            )),
            None => errs.push(FieldError::new(
                format!("{base}.timestampField"),
                format!("`{tf}` is not in source.schema ({})", field_names(src)),
            )),
        }
    }
    if k.format == KafkaFormat::Raw {
        let want: Vec<(&str, FieldType)> = KAFKA_RAW_COLUMNS.to_vec();
        let got: Vec<(&str, FieldType)> = src
            .schema
            .iter()
            .map(|f| (f.name.as_str(), f.data_type))
            .collect();
        if got != want {
            errs.push(FieldError::new(
                "source.schema",
                format!(
                    "format: raw needs exactly these fields in order: {}",
                    want.iter()
                        .map(|(n, t)| format!("{n} ({t:?})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}

/// Epoch milliseconds from RFC 3339 text or a plain integer.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_timestamp_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{s}` is neither RFC 3339 time nor epoch milliseconds ({e})"))
}

/// The sink at `path`. Exactly-once needs a transactional id and a transaction that outlives
/// a checkpoint timeout plus a restart, so the checkpoint settings take part.
pub(super) fn check_sink(
    path: &str,
    k: &KafkaSinkSpec,
    c: &CheckpointSpec,
    errs: &mut Vec<FieldError>,
) {
    if k.bootstrap_servers.trim().is_empty() {
        errs.push(FieldError::new(
            format!("{path}.kafka.bootstrapServers"),
            "is empty",
        ));
    }
    if k.topic.trim().is_empty() {
        errs.push(FieldError::new(format!("{path}.kafka.topic"), "is empty"));
    }
    let delivery = k.delivery.unwrap_or(if c.exactly_once {
        Delivery::ExactlyOnce
    } else {
        Delivery::AtLeastOnce
    });
    if delivery == Delivery::ExactlyOnce {
        match &k.transactional_id_prefix {
            None => errs.push(FieldError::new(
                format!("{path}.kafka.transactionalIdPrefix"),
                "is required for delivery: exactly-once (unique per job in the cluster)",
            )),
            Some(p) if p.trim().is_empty() => errs.push(FieldError::new(
                format!("{path}.kafka.transactionalIdPrefix"),
                "is empty",
            )),
            Some(_) => {}
        }
        if k.transaction_pool_size < 2 {
            errs.push(FieldError::new(
                format!("{path}.kafka.transactionPoolSize"),
                "must be at least 2 (one transaction commits while the next writes)",
            ));
        }
        let needed = c.timeout.get() + k.restart_budget.get();
        if k.transaction_timeout.get() < needed {
            errs.push(FieldError::new(
                format!("{path}.kafka.transactionTimeout"),
                format!(
                    "{} is shorter than checkpoint.timeout {} plus restartBudget {}: \
                     the broker could abort a transaction a completed checkpoint \
                     promised; raise transactionTimeout (and the broker's \
                     transaction.max.timeout.ms) to at least {}s, or lower \
                     checkpoint.timeout or restartBudget",
                    k.transaction_timeout,
                    c.timeout,
                    k.restart_budget,
                    needed.as_secs()
                ),
            ));
        }
    }
}
