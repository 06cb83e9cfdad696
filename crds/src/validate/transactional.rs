//! Which Kafka transactional ids a job uses, so that no two sinks share them.
//!
//! Two producers with one transactional id fence each other: each start bumps the id's epoch,
//! the other's open transaction is aborted, and a commit-phase recovery can no longer tell
//! whether a checkpoint's transaction committed. Ids are `<prefix>-<subtask>-<n>`, always two
//! numeric segments after the prefix, so two different prefixes never produce the same id:
//! sinks collide exactly when their prefixes are equal and their clusters are the same.

use std::collections::BTreeSet;

use super::FieldError;
use crate::connectors::{Delivery, KafkaSinkSpec};
use crate::pipeline::{
    CheckpointSpec, DecodeErrorPolicy, JobFile, LatePolicy, SinkSpec, Transform,
};

/// One exactly-once Kafka sink's transactional ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Path of the prefix field, relative to the job file (`sinks[0].kafka.transactionalIdPrefix`).
    pub field: String,
    /// The prefix.
    pub prefix: String,
    /// Bootstrap addresses, lower-cased and trimmed: one shared address means one cluster.
    pub brokers: BTreeSet<String>,
}

impl Claim {
    /// Whether `self` and `other` would use the same transactional ids.
    #[must_use]
    pub fn collides(&self, other: &Claim) -> bool {
        self.prefix == other.prefix && !self.brokers.is_disjoint(&other.brokers)
    }
}

/// The claims of every exactly-once Kafka sink and side output of `job`.
#[must_use]
pub fn claims(job: &JobFile) -> Vec<Claim> {
    let mut sinks: Vec<(String, &SinkSpec)> = job
        .pipeline
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("sinks[{i}]"), s))
        .collect();
    for (i, t) in job.pipeline.transforms.iter().enumerate() {
        if let Transform::Window(w) = t
            && let LatePolicy::SideOutput(s) = &w.late_records
        {
            sinks.push((format!("transforms[{i}].window.lateRecords.sideOutput"), s));
        }
    }
    if let DecodeErrorPolicy::SideOutput(s) = &job.pipeline.source.on_decode_error {
        sinks.push(("source.onDecodeError.sideOutput".to_string(), s));
    }
    sinks
        .into_iter()
        .filter_map(|(path, s)| match s {
            SinkSpec::Kafka(k) => claim(&path, k, &job.checkpoint),
            _ => None,
        })
        .collect()
}

fn claim(path: &str, k: &KafkaSinkSpec, c: &CheckpointSpec) -> Option<Claim> {
    let exactly_once = k.delivery.unwrap_or(if c.exactly_once {
        Delivery::ExactlyOnce
    } else {
        Delivery::AtLeastOnce
    }) == Delivery::ExactlyOnce;
    let prefix = k.transactional_id_prefix.as_deref()?.trim();
    if !exactly_once || prefix.is_empty() {
        return None;
    }
    Some(Claim {
        field: format!("{path}.kafka.transactionalIdPrefix"),
        prefix: prefix.to_string(),
        brokers: k
            .bootstrap_servers
            .split(',')
            .map(|b| b.trim().to_ascii_lowercase())
            .filter(|b| !b.is_empty())
            .collect(),
    })
}

/// Two sinks of one job with one prefix on one cluster.
pub(super) fn check(job: &JobFile, errs: &mut Vec<FieldError>) {
    let claims = claims(job);
    for (i, later) in claims.iter().enumerate() {
        if let Some(first) = claims[..i].iter().find(|c| c.collides(later)) {
            errs.push(FieldError::new(
                later.field.clone(),
                format!(
                    "`{}` is also the prefix of {} on the same brokers: two sinks with one \
                     prefix fence each other's transactions; give each its own",
                    later.prefix,
                    first.field.trim_end_matches(".kafka.transactionalIdPrefix")
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    fn job(sinks: &str) -> JobFile {
        let yaml = format!(
            "name: t
checkpoint: {{interval: 1s, storage: \"file:///tmp/x\"}}
source:
  datagen: {{count: 1, fields: {{a: {{sequence: {{}}}}}}}}
  schema: [{{name: a, type: int64}}]
sinks:
{sinks}"
        );
        crate::validate::load_job("t.yaml", &yaml).expect("a valid job")
    }

    #[test]
    fn one_prefix_on_one_cluster_is_refused_in_one_job() {
        let errs = crate::validate::load_job(
            "t.yaml",
            "name: t
checkpoint: {interval: 1s, storage: \"file:///tmp/x\"}
source:
  datagen: {count: 1, fields: {a: {sequence: {}}}}
  schema: [{name: a, type: int64}]
sinks:
  - kafka: {bootstrapServers: \"k1:9092,k2:9092\", topic: a, transactionalIdPrefix: p}
  - kafka: {bootstrapServers: \" K2:9092 \", topic: b, transactionalIdPrefix: p}
",
        )
        .expect_err("shared prefix");
        let text = errs.to_string();
        assert!(
            text.contains("sinks[1].kafka.transactionalIdPrefix") && text.contains("sinks[0]"),
            "{text}"
        );
    }

    #[test]
    fn other_prefixes_other_clusters_and_at_least_once_sinks_do_not_collide() {
        let j = job(
            "  - kafka: {bootstrapServers: \"k1:9092\", topic: a, transactionalIdPrefix: p}
  - kafka: {bootstrapServers: \"k1:9092\", topic: b, transactionalIdPrefix: q}
  - kafka: {bootstrapServers: \"k9:9092\", topic: c, transactionalIdPrefix: p}
  - kafka: {bootstrapServers: \"k1:9092\", topic: d, transactionalIdPrefix: p, delivery: at-least-once}
",
        );
        let c = claims(&j);
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(!c[0].collides(&c[1]) && !c[0].collides(&c[2]));
        assert_eq!(c[0].field, "sinks[0].kafka.transactionalIdPrefix");
    }
}
