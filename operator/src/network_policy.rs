//! The NetworkPolicy each job gets: who may reach its runtime pods.
//!
//! A runtime pod listens on two ports. `control` (8081) serves the control API, health and
//! `/metrics`; its `/v1` routes also need the job's control token, but a port nobody else can
//! reach is the first line. `exchange` (7070) carries records between the pods of a job of
//! several pods, behind the job's exchange token. The policy admits the operator's own pods
//! (and the metrics peers the installer names, e.g. Prometheus) to `control`, and the pods of
//! the same job, only, to `exchange`; everything else is refused where the cluster's network
//! plugin enforces NetworkPolicy.
//!
//! Why the operator writes one per job instead of the chart writing one per namespace: with
//! all namespaces watched (the default install) the chart cannot know where jobs will run, so
//! the protection was off exactly where most installs run. Owned by the job, the policy is
//! created before its first pod and collected with it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::context::MANAGER;
use crate::error::{Error, Result};
use crate::pods::{JOB_LABEL, Owner};

/// The label every namespace carries with its own name (set by the apiserver since 1.22).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Who the policy admits besides the job's own pods. Built from the operator's flags (the
/// chart passes its release namespace, its pods' selector labels and
/// `networkPolicy.metricsFrom`).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    /// Namespace the operator's pods run in.
    pub operator_namespace: String,
    /// Labels that select the operator's pods (at least one: an empty selector would admit
    /// every pod of that namespace).
    pub operator_labels: BTreeMap<String, String>,
    /// Further peers admitted to `control`, as NetworkPolicy writes them.
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

/// Why the flags do not make a policy.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `--network-policy-operator-labels` is not a JSON object of strings.
    #[error("--network-policy-operator-labels: {0} (want a JSON object of label strings)")]
    OperatorLabels(String),
    /// The selector is empty.
    #[error(
        "--network-policy-operator-labels is empty: an empty selector would admit every pod of the operator's namespace"
    )]
    NoOperatorLabels,
    /// `--network-policy-metrics-from` is not a JSON list of NetworkPolicyPeers.
    #[error("--network-policy-metrics-from: {0} (want a JSON list of NetworkPolicyPeers)")]
    MetricsFrom(String),
}

impl PolicySettings {
    /// Reads the two JSON flags.
    ///
    /// # Errors
    /// A flag that is not the JSON it should be, or no operator label.
    pub fn from_flags(
        operator_namespace: String,
        operator_labels: &str,
        metrics_from: &str,
    ) -> std::result::Result<Self, SettingsError> {
        let operator_labels: BTreeMap<String, String> = serde_json::from_str(operator_labels)
            .map_err(|e| SettingsError::OperatorLabels(e.to_string()))?;
        if operator_labels.is_empty() {
            return Err(SettingsError::NoOperatorLabels);
        }
        let metrics_from = if metrics_from.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(metrics_from)
                .map_err(|e| SettingsError::MetricsFrom(e.to_string()))?
        };
        Ok(Self {
            operator_namespace,
            operator_labels,
            metrics_from,
        })
    }
}

/// Name of a job's policy.
#[must_use]
pub fn name(job: &str) -> String {
    format!("{job}-runtime")
}

/// The policy for `owner`'s pods.
#[must_use]
pub fn policy(owner: &Owner, settings: &PolicySettings) -> NetworkPolicy {
    let job_pods = BTreeMap::from([(JOB_LABEL.to_string(), owner.name.clone())]);
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                settings.operator_namespace.clone(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(settings.operator_labels.clone()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let port = |name: &str| NetworkPolicyPort {
        port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    };
    NetworkPolicy {
        metadata: owner.meta(name(&owner.name), owner.labels()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(job_pods.clone()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(
                        std::iter::once(operator)
                            .chain(settings.metrics_from.iter().cloned())
                            .collect(),
                    ),
                    ports: Some(vec![port("control")]),
                },
                // A bare podSelector means this namespace only: the job's own pods.
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(job_pods),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![port("exchange")]),
                },
            ]),
            egress: None,
        }),
    }
}

/// Jobs (by uid) whose policy this process has applied, so a running job gets it once after
/// the operator starts (an upgrade from a chart that wrote none), not at every reconcile.
#[derive(Debug, Default)]
pub struct Applied(Mutex<HashSet<String>>);

impl Applied {
    fn has(&self, uid: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(uid))
    }

    fn record(&self, uid: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(uid.to_string());
        }
    }

    /// Forgets a deleted job.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(uid);
        }
    }
}

/// Applies `owner`'s policy: always when `force` (every deploy, so a deleted policy comes
/// back before new pods start), else once per job in this process.
///
/// # Errors
/// The apply failed (the reconcile fails and is retried: no pod is created unprotected).
pub async fn ensure(
    client: &kube::Client,
    settings: &PolicySettings,
    applied: &Applied,
    owner: &Owner,
    force: bool,
) -> Result<()> {
    if !force && applied.has(&owner.uid) {
        return Ok(());
    }
    let policy_name = name(&owner.name);
    Api::<NetworkPolicy>::namespaced(client.clone(), &owner.namespace)
        .patch(
            &policy_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&policy(owner, settings)),
        )
        .await
        .map_err(|e| Error::kube(format!("apply NetworkPolicy {policy_name}"), e))?;
    applied.record(&owner.uid);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn owner() -> Owner {
        Owner {
            name: "sales".into(),
            namespace: "shop".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn the_operator_and_metrics_peers_reach_control_and_only_the_job_reaches_exchange() {
        let settings = PolicySettings::from_flags(
            "weir".into(),
            r#"{"app.kubernetes.io/name":"weir","app.kubernetes.io/instance":"weir"}"#,
            r#"[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
        )
        .unwrap();
        let p = serde_json::to_value(policy(&owner(), &settings)).unwrap();
        assert_eq!(p["metadata"]["name"], "sales-runtime");
        assert_eq!(p["metadata"]["namespace"], "shop");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            p["spec"],
            json!({
                "podSelector": {"matchLabels": {"weir.dev/job": "sales"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "weir"}},
                         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "weir",
                                                         "app.kubernetes.io/instance": "weir"}}},
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                     "ports": [{"port": "control", "protocol": "TCP"}]},
                    {"from": [{"podSelector": {"matchLabels": {"weir.dev/job": "sales"}}}],
                     "ports": [{"port": "exchange", "protocol": "TCP"}]}
                ]
            })
        );
    }

    #[test]
    fn flags_that_would_admit_too_much_or_are_not_json_are_refused() {
        for (labels, from, want) in [
            ("{}", "", "is empty"),
            ("app=weir", "", "--network-policy-operator-labels"),
            (r#"{"app":"weir"}"#, "{", "--network-policy-metrics-from"),
            (
                r#"{"app":"weir"}"#,
                r#"[{"podSelector":3}]"#,
                "--network-policy-metrics-from",
            ),
        ] {
            let e = PolicySettings::from_flags("weir".into(), labels, from).unwrap_err();
            assert!(e.to_string().contains(want), "{labels} {from}: {e}");
        }
        let ok = PolicySettings::from_flags("weir".into(), r#"{"app":"weir"}"#, " ").unwrap();
        assert!(ok.metrics_from.is_empty());
    }
}
