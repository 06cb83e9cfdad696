//! Which StreamJob owns a Kafka transactional-id prefix on a cluster.
//!
//! Two jobs with one prefix on one cluster fence each other's producers, and a commit-phase
//! recovery can then no longer tell whether a checkpoint's transaction committed (see
//! `weir_crds::validate::transactional`). The older job keeps the prefix; the newer one is
//! refused with a problem naming the field and the older job, so nothing of it is deployed
//! (or, when it already runs, its update is not). "Older" is the creation timestamp, then
//! namespace and name, an order every replica of the operator agrees on. Only jobs this
//! operator watches are seen: jobs in namespaces outside `watchNamespaces` are not.

use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;
use weir_crds::validate::transactional::{Claim, claims};
use weir_crds::{StreamJob, StreamJobSpec};

use crate::watched::Watched;

/// How long a reconcile waits for a cache's first list.
pub const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The controllers' caches of watched StreamJobs (one per watched namespace, or one for all),
/// so that one job's reconcile can see the others.
#[derive(Clone, Default)]
pub struct Directory {
    stores: Arc<RwLock<Vec<Store<Watched>>>>,
}

impl Directory {
    /// Add a controller's cache.
    pub fn add(&self, store: Store<Watched>) {
        if let Ok(mut s) = self.stores.write() {
            s.push(store);
        }
    }

    /// Every readable job, once each cache has listed its namespace(s) (a reconcile that
    /// looked earlier could miss the older holder of a prefix). A cache that cannot list
    /// (its namespace forbidden, say) is waited for at most [`READY_WAIT`] and then read as
    /// it is: one namespace's trouble must not stall every other job's reconcile.
    pub async fn jobs(&self) -> Vec<Arc<StreamJob>> {
        let stores: Vec<Store<Watched>> = self.stores.read().map(|s| s.clone()).unwrap_or_default();
        let mut jobs = Vec::new();
        for s in stores {
            // The writer lives as long as its controller; a dropped one has nothing to wait for.
            if tokio::time::timeout(READY_WAIT, s.wait_until_ready())
                .await
                .is_err()
            {
                tracing::warn!(
                    "a StreamJob cache has not listed its namespace after {READY_WAIT:?}; \
                     transactional-id prefixes are checked against the jobs it holds so far"
                );
            }
            jobs.extend(
                s.state()
                    .iter()
                    .filter_map(|w| w.job.as_ref().ok().cloned()),
            );
        }
        jobs
    }
}

/// `(creation, namespace, name)`: the older job sorts first.
fn age(meta: &ObjectMeta) -> (Option<jiff::Timestamp>, String, String) {
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// `(field, message)` for each prefix of `spec` (the job `meta`) that an older job in
/// `others` holds on the same cluster.
#[must_use]
pub fn conflicts(
    meta: &ObjectMeta,
    spec: &StreamJobSpec,
    others: &[Arc<StreamJob>],
) -> Vec<(String, String)> {
    let name = meta.name.clone().unwrap_or_default();
    let mine = claims(&spec.job_file(&name));
    if mine.is_empty() {
        return Vec::new();
    }
    let me = age(meta);
    let mut problems = Vec::new();
    for c in &mine {
        let holder = others
            .iter()
            .filter(|o| o.metadata.uid != meta.uid)
            .filter(|o| age(&o.metadata) < me)
            .find_map(|o| {
                let theirs: Vec<Claim> = claims(
                    &o.spec
                        .job_file(&o.metadata.name.clone().unwrap_or_default()),
                );
                theirs
                    .iter()
                    .find(|t| t.collides(c))
                    .map(|t| (o.clone(), t.field.clone()))
            });
        if let Some((o, field)) = holder {
            problems.push((
                format!("spec.pipeline.{}", c.field),
                format!(
                    "`{}` on brokers {} is already the prefix of StreamJob {}/{} ({}), an older \
                     job: two jobs with one prefix fence each other's transactions and can make \
                     a committed checkpoint's output unknown; give this job a prefix of its own",
                    c.prefix,
                    c.brokers.iter().cloned().collect::<Vec<_>>().join(","),
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                    field,
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn job(ns: &str, name: &str, created_s: i64, prefix: &str, brokers: &str) -> Arc<StreamJob> {
        let yaml = format!(
            "checkpoint: {{interval: 1s, storage: \"s3://b/{name}\"}}
pipeline:
  source:
    kafka: {{bootstrapServers: \"k:9092\", topic: in}}
    schema: [{{name: a, type: int64}}]
  sinks:
    - kafka: {{bootstrapServers: \"{brokers}\", topic: out, transactionalIdPrefix: {prefix}}}
"
        );
        // JSON-shaped, as the apiserver stores specs; YAML is only the notation here.
        let v: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        let spec: StreamJobSpec = serde_json::from_value(v).unwrap();
        let mut j = StreamJob::new(name, spec);
        j.metadata.namespace = Some(ns.into());
        j.metadata.uid = Some(format!("{ns}-{name}"));
        j.metadata.creation_timestamp =
            Some(Time(jiff::Timestamp::from_second(created_s).unwrap()));
        Arc::new(j)
    }

    #[test]
    fn the_older_job_keeps_its_prefix_and_the_newer_is_told_whose_it_is() {
        let old = job("a", "sales", 100, "sales", "k1:9092,k2:9092");
        let new = job("b", "copy", 200, "sales", "k2:9092");
        let all = vec![old.clone(), new.clone()];
        assert!(conflicts(&old.metadata, &old.spec, &all).is_empty());
        let p = conflicts(&new.metadata, &new.spec, &all);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "spec.pipeline.sinks[0].kafka.transactionalIdPrefix");
        assert!(p[0].1.contains("StreamJob a/sales"), "{}", p[0].1);
    }

    #[test]
    fn same_age_is_settled_by_name_and_other_prefixes_or_clusters_do_not_collide() {
        let a = job("ns", "a", 100, "p", "k:9092");
        let b = job("ns", "b", 100, "p", "k:9092");
        let all = vec![b.clone(), a.clone()];
        assert!(conflicts(&a.metadata, &a.spec, &all).is_empty());
        assert_eq!(conflicts(&b.metadata, &b.spec, &all).len(), 1);
        let other_prefix = job("ns", "c", 300, "q", "k:9092");
        let other_cluster = job("ns", "d", 300, "p", "elsewhere:9092");
        let all = vec![a, other_prefix.clone(), other_cluster.clone()];
        assert!(conflicts(&other_prefix.metadata, &other_prefix.spec, &all).is_empty());
        assert!(conflicts(&other_cluster.metadata, &other_cluster.spec, &all).is_empty());
    }
}
