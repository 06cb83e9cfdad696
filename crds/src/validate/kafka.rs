//! The Kafka source's and the Kafka sink's checks, together because they share the
//! connector's vocabulary (bootstrap servers, topics, transactions) and its reader.

use super::FieldError;
use super::source::field_names;
use crate::connectors::{
    Delivery, KafkaFormat, KafkaSecurity, KafkaSinkSpec, KafkaSourceSpec, SchemaRegistrySpec,
    StartingOffsets,
};
use crate::pipeline::{CheckpointSpec, FieldType, SourceSpec};

/// librdkafka properties that `security` sets; in `properties` they would configure
/// librdkafka one way and the transaction-recovery client another.
const SECURITY_PROPERTIES: [&str; 3] = ["security.protocol", "sasl.", "ssl."];

/// `security` is consistent (SASL settings exactly for the `sasl-*` protocols, TLS settings
/// only with TLS, a client key with its certificate) and `properties` does not configure
/// security behind its back.
fn check_security(
    sec: &KafkaSecurity,
    properties: &std::collections::BTreeMap<String, String>,
    base: &str,
    errs: &mut Vec<FieldError>,
) {
    let at = |f: &str| format!("{base}.security.{f}");
    match (sec.protocol.sasl(), &sec.sasl) {
        (true, None) => errs.push(FieldError::new(
            at("sasl"),
            format!(
                "is required with protocol {}",
                sec.protocol.librdkafka().replace('_', "-")
            ),
        )),
        (false, Some(_)) => errs.push(FieldError::new(
            at("sasl"),
            "is only used with protocol sasl-plaintext or sasl-ssl",
        )),
        _ => {}
    }
    if let Some(t) = &sec.tls {
        super::check_tls(
            t,
            sec.protocol.tls(),
            "protocol ssl or sasl-ssl",
            &at("tls"),
            errs,
        );
    }
    for key in properties.keys() {
        if SECURITY_PROPERTIES
            .iter()
            .any(|p| key == p || (p.ends_with('.') && key.starts_with(p)))
        {
            errs.push(FieldError::new(
                format!("{base}.properties.{key}"),
                "is set by `security` (protocol, sasl, tls), which the transaction-recovery \
                 client reads too; set it there",
            ));
        }
    }
}

/// `schemaRegistry` is there exactly for `format: avro` or `protobuf`, reachable by a URL it can use, with
/// basic-authentication user and password together.
fn check_registry(
    reg: Option<&SchemaRegistrySpec>,
    avro: bool,
    sink: bool,
    base: &str,
    errs: &mut Vec<FieldError>,
) {
    let at = |f: &str| format!("{base}.schemaRegistry{f}");
    let Some(r) = reg else {
        if avro {
            errs.push(FieldError::new(
                at(""),
                "is required with format: avro or protobuf (the writer schemas live there)",
            ));
        }
        return;
    };
    if !avro {
        errs.push(FieldError::new(
            at(""),
            "is only used with format: avro or protobuf",
        ));
    }
    let https = r.url.starts_with("https://");
    if !https && !r.url.starts_with("http://") {
        errs.push(FieldError::new(
            at(".url"),
            format!("`{}` is not an http:// or https:// URL", r.url),
        ));
    }
    let authority = r
        .url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    if authority.contains('@') {
        errs.push(FieldError::new(
            at(".url"),
            "holds credentials; put the user in username and the password in a Secret \
             (passwordEnv), so neither is logged with the URL",
        ));
    }
    if r.username.is_some() != r.password_env.is_some() {
        errs.push(FieldError::new(
            at(".username"),
            "username and passwordEnv go together (HTTP basic authentication needs both)",
        ));
    }
    if let Some(t) = &r.tls {
        super::check_tls(t, https, "an https:// url", &at(".tls"), errs);
    }
    if !sink && r.subject.is_some() {
        errs.push(FieldError::new(
            at(".subject"),
            "is only used by sinks (a source finds each record's schema by the id in the record)",
        ));
    }
}

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
    check_security(&k.security, &k.properties, base, errs);
    if k.max_batch_size == 0 || k.max_batch_size > crate::pipeline::MAX_BATCH_SIZE {
        errs.push(FieldError::new(
            format!("{base}.maxBatchSize"),
            format!("must be between 1 and {}", crate::pipeline::MAX_BATCH_SIZE),
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
        super::source::fixed_schema(src, &KAFKA_RAW_COLUMNS, "format: raw", errs);
    }
    check_registry(
        k.schema_registry.as_deref(),
        k.format.uses_registry(),
        false,
        base,
        errs,
    );
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
    restart_wait: std::time::Duration,
    errs: &mut Vec<FieldError>,
) {
    if k.bootstrap_servers.trim().is_empty() {
        errs.push(FieldError::new(
            format!("{path}.kafka.bootstrapServers"),
            "is empty",
        ));
    }
    check_security(&k.security, &k.properties, &format!("{path}.kafka"), errs);
    let avro = k.format.uses_registry();
    check_registry(
        k.schema_registry.as_deref(),
        avro,
        true,
        &format!("{path}.kafka"),
        errs,
    );
    if avro && k.value_field.is_some() {
        errs.push(FieldError::new(
            format!("{path}.kafka.valueField"),
            "writes one column as the value as it is; with format: avro or protobuf the value \
             is the whole record",
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
        check_txn_timeout(path, k, c, restart_wait, errs);
    }
}

/// Every wait between a transaction's first record and its commit after a crash: the
/// checkpoint interval (the transaction opens at the previous barrier), the checkpoint
/// timeout (it is promised at completion), the restart backoff and the restart itself
/// (`restartBudget`: rescheduling, image pull, start-up waits for storage and brokers). A
/// broker aborts a transaction older than `transactionTimeout`, and the output a completed
/// checkpoint promised is gone; recovery then refuses to start rather than lose it, but
/// the configuration that makes it possible is refused here first.
fn check_txn_timeout(
    path: &str,
    k: &KafkaSinkSpec,
    c: &CheckpointSpec,
    restart_wait: std::time::Duration,
    errs: &mut Vec<FieldError>,
) {
    let waits = [
        ("checkpoint.interval", c.interval.get()),
        ("checkpoint.timeout", c.timeout.get()),
        ("restart.maxBackoff", restart_wait),
        ("restartBudget", k.restart_budget.get()),
    ];
    let needed: std::time::Duration = waits.iter().map(|(_, d)| *d).sum();
    if k.transaction_timeout.get() < needed {
        let parts: Vec<String> = waits
            .iter()
            .filter(|(_, d)| !d.is_zero())
            .map(|(name, d)| format!("{name} {}s", d.as_secs()))
            .collect();
        errs.push(FieldError::new(
            format!("{path}.kafka.transactionTimeout"),
            format!(
                "{} is shorter than the longest a transaction can wait for its commit after a \
                 crash ({} = {}s): the broker could abort a transaction a completed checkpoint \
                 promised; raise transactionTimeout (and the broker's \
                 transaction.max.timeout.ms) to at least {}s, or lower one of the others",
                k.transaction_timeout,
                parts.join(" + "),
                needed.as_secs(),
                needed.as_secs()
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    /// Each row: a Kafka source's `security` and `properties`, and the paths refused.
    #[test]
    fn security_settings_must_agree_with_the_protocol() {
        let rows: [(&str, &str, &[&str]); 6] = [
            (
                "{protocol: sasl-ssl, sasl: {mechanism: SCRAM-SHA-512, username: u, passwordEnv: P}, tls: {caPemEnv: CA}}",
                "{}",
                &[],
            ),
            (
                "{protocol: sasl-plaintext}",
                "{}",
                &["source.kafka.security.sasl"],
            ),
            (
                "{protocol: ssl, sasl: {mechanism: PLAIN, username: u, passwordEnv: P}}",
                "{}",
                &["source.kafka.security.sasl"],
            ),
            (
                "{protocol: plaintext, tls: {caPemEnv: CA}}",
                "{}",
                &["source.kafka.security.tls"],
            ),
            (
                "{protocol: ssl, tls: {certificatePemEnv: CERT}}",
                "{}",
                &["source.kafka.security.tls"],
            ),
            (
                "{}",
                "{security.protocol: SASL_SSL, sasl.password: x, ssl.ca.location: /ca, linger.ms: '5'}",
                &[
                    "source.kafka.properties.sasl.password",
                    "source.kafka.properties.security.protocol",
                    "source.kafka.properties.ssl.ca.location",
                ],
            ),
        ];
        for (security, properties, want) in rows {
            let sec: KafkaSecurity = serde_yaml::from_str(security).unwrap();
            let props: std::collections::BTreeMap<String, String> =
                serde_yaml::from_str(properties).unwrap();
            let mut errs = Vec::new();
            check_security(&sec, &props, "source.kafka", &mut errs);
            let mut got: Vec<String> = errs.into_iter().map(|e| e.path).collect();
            got.sort();
            assert_eq!(got, want, "{security} {properties}");
        }
    }
}
