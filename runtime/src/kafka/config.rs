//! librdkafka client settings shared by the source and the sink.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use weir_crds::KafkaProtocol;

use super::security::ClientSecurity;
use super::wire::{Cluster, Connection, WireError};
use crate::wait::Attempt;

/// How long metadata and coordinator calls may take before a clear error.
pub const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Base settings: brokers, security (TLS, SASL; its secrets came from the environment) and
/// the user's extra properties.
#[must_use]
pub fn client_config(
    what: &str,
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
    security: &ClientSecurity,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c.set("client.id", format!("weir-{what}"));
    c.set("allow.auto.create.topics", "false");
    for (k, v) in properties {
        c.set(k, v);
    }
    security.apply(&mut c);
    c
}

/// How long one metadata request may take while waiting for brokers at start-up: short, so
/// each failed attempt is logged within about two seconds (see [`crate::wait`]).
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Partition count of `topic`, saying whether the brokers or the topic are the problem:
/// brokers that do not answer within `timeout` are [`Attempt::Unreachable`], a topic that is
/// missing is [`Attempt::Refused`].
///
/// # Errors
/// Unreachable brokers or a missing topic.
pub fn partition_count<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    bootstrap: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> std::result::Result<u32, Attempt> {
    let md = client.fetch_metadata(Some(topic), timeout).map_err(|e| {
        Attempt::Unreachable(format!(
            "cannot reach Kafka at {bootstrap} within {}ms: {e}",
            timeout.as_millis()
        ))
    })?;
    let missing = || Attempt::Refused(format!("topic `{topic}` does not exist on {bootstrap}"));
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(missing)?;
    if let Some(e) = t.error() {
        return Err(match e {
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => missing(),
            other => Attempt::Refused(format!("topic `{topic}` on {bootstrap}: {other:?}")),
        });
    }
    if t.partitions().is_empty() {
        return Err(Attempt::Refused(format!(
            "topic `{topic}` does not exist on {bootstrap} (no partitions)"
        )));
    }
    Ok(t.partitions().len() as u32)
}

/// Partition count of `topic`, waiting (out loud, see [`crate::wait`]) for brokers that do
/// not answer yet. `cfg` holds the base settings ([`client_config`]); each attempt makes a
/// short-lived client from it.
///
/// With TLS or SASL, each attempt first connects once with the wire client, which says
/// exactly what failed: librdkafka only retries a refused certificate or password until the
/// timeout. Those fail at once, naming the broker; an unreachable broker is waited for.
///
/// # Errors
/// A missing topic, a refused certificate or password, or bad settings at once; brokers
/// still unreachable after the wait limit.
pub async fn wait_for_partitions(
    cfg: &ClientConfig,
    cluster: &Cluster,
    topic: &str,
) -> std::result::Result<u32, String> {
    let bootstrap = cluster.bootstrap.as_str();
    crate::wait::until_reached("Kafka", bootstrap, crate::wait::limit(), || {
        let (cfg, cluster, topic) = (cfg.clone(), cluster.clone(), topic.to_string());
        async move {
            if cluster.security.protocol() != KafkaProtocol::Plaintext {
                match Connection::connect_any(&cluster).await {
                    Ok(_) => {}
                    Err(e @ (WireError::Tls { .. } | WireError::Authentication { .. })) => {
                        return Err(Attempt::Refused(e.to_string()));
                    }
                    Err(e) => return Err(Attempt::Unreachable(e.to_string())),
                }
            }
            let bootstrap = cluster.bootstrap;
            tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer as _;
                let p: rdkafka::producer::BaseProducer = cfg
                    .create()
                    .map_err(|e| Attempt::Refused(format!("client settings: {e}")))?;
                partition_count(p.client(), &bootstrap, &topic, ATTEMPT_TIMEOUT)
            })
            .await
            .map_err(|e| Attempt::Refused(e.to_string()))?
        }
    })
    .await
}
