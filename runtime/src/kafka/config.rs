//! librdkafka client settings shared by the source and the sink.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::error::{Error, Result};

/// How long metadata and coordinator calls may take before a clear error.
pub const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Base settings: brokers, the user's extra properties, and the SASL password read from the
/// environment variable the manifest names (never from the manifest itself).
///
/// # Errors
/// A named password variable that is not set.
pub fn client_config(
    what: &str,
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
    sasl_password_env: Option<&str>,
) -> Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c.set("client.id", format!("weir-{what}"));
    c.set("allow.auto.create.topics", "false");
    for (k, v) in properties {
        c.set(k, v);
    }
    if let Some(var) = sasl_password_env {
        let pw = std::env::var(var).map_err(|_| Error::Sink {
            sink: what.to_string(),
            message: format!("environment variable {var} (saslPasswordEnv) is not set"),
        })?;
        c.set("sasl.password", pw);
    }
    Ok(c)
}

/// Partition count of `topic`, failing fast with a message that says whether the brokers or
/// the topic are the problem.
///
/// # Errors
/// Unreachable brokers or a missing topic.
pub fn partition_count<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    bootstrap: &str,
    topic: &str,
) -> std::result::Result<u32, String> {
    let md = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| {
            format!(
                "cannot reach Kafka at {bootstrap} within {}s: {e}",
                METADATA_TIMEOUT.as_secs()
            )
        })?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("topic `{topic}` does not exist on {bootstrap}"))?;
    if let Some(e) = t.error() {
        return Err(match e {
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => {
                format!("topic `{topic}` does not exist on {bootstrap}")
            }
            other => format!("topic `{topic}` on {bootstrap}: {other:?}"),
        });
    }
    if t.partitions().is_empty() {
        return Err(format!(
            "topic `{topic}` does not exist on {bootstrap} (no partitions)"
        ));
    }
    Ok(t.partitions().len() as u32)
}
