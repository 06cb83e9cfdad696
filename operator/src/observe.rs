//! Gathering the facts a decision needs: the job's pods (a fresh list, not a cache, so a pod
//! created a moment ago is seen), the current runtime's report, and missing Secrets.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use weir_crds::StreamJob;

use crate::context::Context;
use crate::decide::{Observed, PodPhase, PodView, RuntimeOutcome};
use crate::error::{Error, Result};
use crate::pods::{CONTROL_PORT, CONTROL_PORT_ANNOTATION, INCARNATION_LABEL, JOB_LABEL};

/// What was observed, plus the control API address of each pod that has one.
#[derive(Debug, Default)]
pub struct Observation {
    /// Input of the decision.
    pub observed: Observed,
    /// Pod name -> `http://<ip>:<port>`.
    pub addresses: HashMap<String, String>,
}

/// Observe `job` in `ns`.
///
/// # Errors
/// A failed pod list or Secret read (the runtime being unreachable is a fact, not an error).
pub async fn observe(ctx: &Context, job: &StreamJob, ns: &str, name: &str) -> Result<Observation> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={name}")))
        .await
        .map_err(|e| Error::kube(format!("list pods of {ns}/{name}"), e))?;
    let mut obs = Observation::default();
    for p in list.items {
        let Some(view) = pod_view(&p) else { continue };
        if let Some(addr) = address(&p) {
            obs.addresses.insert(view.name.clone(), addr);
        }
        obs.observed.pods.push(view);
    }
    let incarnation = job.status.as_ref().map_or(0, |s| s.incarnation);
    let current = obs
        .observed
        .pods
        .iter()
        .find(|p| p.incarnation == incarnation && p.phase == PodPhase::Running);
    if let Some(addr) = current.and_then(|p| obs.addresses.get(&p.name)) {
        match ctx.runtime.job(addr).await {
            Ok(v) => obs.observed.runtime = Some(v),
            Err(e) => tracing::debug!(error = %e, "runtime status not available"),
        }
    }
    obs.observed.problems = missing_secrets(ctx, job, ns).await?;
    Ok(obs)
}

/// A pod as decisions see it; `None` for a pod without our incarnation label.
#[must_use]
pub fn pod_view(p: &Pod) -> Option<PodView> {
    let name = p.metadata.name.clone()?;
    let incarnation = p
        .metadata
        .labels
        .as_ref()?
        .get(INCARNATION_LABEL)?
        .parse()
        .ok()?;
    let status = p.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Unknown") => PodPhase::Unknown,
        _ => PodPhase::Pending,
    };
    let state = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let waiting_reason = state
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    Some(PodView {
        name,
        incarnation,
        phase,
        deleting: p.metadata.deletion_timestamp.is_some(),
        reason: terminated
            .and_then(|t| t.reason.clone())
            .or(waiting_reason)
            .or_else(|| status.and_then(|s| s.reason.clone())),
        exit_code: terminated.map(|t| t.exit_code),
        outcome: terminated
            .and_then(|t| t.message.as_deref())
            .and_then(parse_outcome),
    })
}

/// The runtime's termination message (`WEIR_TERMINATION_LOG`); `None` for anything else the
/// container left there (a panic's log tail).
#[must_use]
pub fn parse_outcome(message: &str) -> Option<RuntimeOutcome> {
    serde_json::from_str(message.trim()).ok()
}

fn address(p: &Pod) -> Option<String> {
    let ip = p.status.as_ref()?.pod_ip.clone()?;
    let port = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTROL_PORT_ANNOTATION))
        .and_then(|v| v.parse::<u16>().ok())
        .map_or(CONTROL_PORT, i32::from);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    Some(format!("http://{host}:{port}"))
}

/// `(field, message)` for each referenced Secret or key that does not exist.
async fn missing_secrets(
    ctx: &Context,
    job: &StreamJob,
    ns: &str,
) -> Result<Vec<(String, String)>> {
    let spec = &job.spec;
    let mut wanted: Vec<(String, String, Vec<String>)> = Vec::new();
    if let Some(s) = &spec.checkpoint.s3.credentials_secret {
        wanted.push((
            "spec.checkpoint.s3.credentialsSecret".into(),
            s.clone(),
            vec!["AWS_ACCESS_KEY_ID".into(), "AWS_SECRET_ACCESS_KEY".into()],
        ));
    }
    for (i, e) in spec.secret_env.iter().enumerate() {
        wanted.push((
            format!("spec.secretEnv[{i}]"),
            e.secret.clone(),
            vec![e.key.clone()],
        ));
    }
    let names: BTreeSet<&String> = wanted.iter().map(|(_, s, _)| s).collect();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut found: HashMap<String, Option<BTreeSet<String>>> = HashMap::new();
    for n in names {
        let s = api
            .get_opt(n)
            .await
            .map_err(|e| Error::kube(format!("read Secret {ns}/{n}"), e))?;
        let keys = s.map(|s| {
            s.data
                .unwrap_or_default()
                .into_keys()
                .chain(s.string_data.unwrap_or_default().into_keys())
                .collect()
        });
        found.insert(n.clone(), keys);
    }
    let mut problems = Vec::new();
    for (field, secret, keys) in wanted {
        match found.get(&secret).cloned().flatten() {
            None => problems.push((
                field,
                format!("Secret `{secret}` does not exist in namespace {ns}"),
            )),
            Some(have) => {
                for k in keys.iter().filter(|k| !have.contains(*k)) {
                    problems.push((field.clone(), format!("Secret `{secret}` has no key `{k}`")));
                }
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn termination_messages_become_outcomes() {
        assert_eq!(
            parse_outcome(r#"{"outcome":"stopped","savepoint":"s3://b/sp-1"}"#),
            Some(RuntimeOutcome::Stopped {
                savepoint: Some("s3://b/sp-1".into())
            })
        );
        assert_eq!(
            parse_outcome(r#"{"outcome":"stopped","savepoint":null}"#),
            Some(RuntimeOutcome::Stopped { savepoint: None })
        );
        assert_eq!(
            parse_outcome(r#"{"outcome":"failed","error":"boom"}"#),
            Some(RuntimeOutcome::Failed {
                error: "boom".into()
            })
        );
        assert_eq!(
            parse_outcome("panicked at main.rs"),
            None,
            "log tail, not ours"
        );
    }

    #[test]
    fn pod_view_reads_labels_phase_and_termination() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sales-4", "labels": {"weir.dev/incarnation": "4"},
                         "annotations": {"weir.dev/control-port": "18081"}},
            "status": {"phase": "Failed", "podIP": "10.0.0.7", "containerStatuses": [{
                "name": "runtime", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }))
        .unwrap();
        let v = pod_view(&p).unwrap();
        assert_eq!(
            (v.incarnation, v.phase, v.exit_code),
            (4, PodPhase::Failed, Some(137))
        );
        assert_eq!(v.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(address(&p).as_deref(), Some("http://10.0.0.7:18081"));
    }
}
