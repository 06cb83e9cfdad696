//! What the console's pages show, computed from the controllers' cache of StreamJobs, the
//! jobs' Events and each running job's own report. Read-only: nothing here writes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use weir_crds::StreamJob;

use crate::decide::Progress;
use crate::observe;
use crate::runtime_client::{Endpoint, RuntimeApi};

/// One row of the job list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRow {
    pub namespace: String,
    pub name: String,
    /// Lifecycle state.
    pub state: String,
    /// The `Ready` condition: `True`, `False` or `Unknown`, and its reason and message.
    pub ready: Option<Health>,
    pub pods: Option<String>,
    pub parallelism: Option<u32>,
    pub desired_parallelism: u32,
    pub restarts: u32,
    pub last_restart_reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub last_checkpoint_at_ms: Option<i64>,
    pub last_checkpoint_bytes: Option<u64>,
    /// Records/s read by the sources, from the job's own reports; `None` until two reports.
    pub records_per_s: Option<f64>,
    pub lag: Option<i64>,
}

/// A condition as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// Everything the job page shows besides the runtime's own page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    pub row: JobRow,
    /// The status as the operator wrote it (restarts with reasons, savepoints, conditions,
    /// the operation in flight).
    pub status: Value,
    /// The spec as YAML.
    pub spec: String,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    /// Who last changed the spec, and when (from `metadata.managedFields`).
    pub last_change: Option<Change>,
    /// Top-level spec fields that differ from what the pods run (a change not rolled out).
    pub pending: Vec<String>,
    /// The job's Events, newest first.
    pub events: Vec<EventRow>,
    /// Why the events could not be read, if they could not.
    pub events_error: Option<String>,
}

/// A write to the spec.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub manager: String,
    pub operation: String,
    pub time: Option<String>,
}

/// One Event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
}

/// The last report of each running job, so a rate can be computed between two of them and a
/// page open in several tabs does not multiply the calls to the pods.
#[derive(Default)]
pub struct Rates {
    seen: Mutex<HashMap<(String, String), Sample>>,
}

#[derive(Clone)]
struct Sample {
    at: Instant,
    job_id: String,
    progress: Progress,
    rate: Option<f64>,
}

/// Reports younger than this are reused.
const FRESH: std::time::Duration = std::time::Duration::from_millis(1500);

impl Rates {
    /// Records/s and lag of a running job; `None` when it has no running coordinator.
    pub async fn of(
        &self,
        client: &Client,
        runtime: &dyn RuntimeApi,
        job: &StreamJob,
    ) -> Option<(Option<f64>, i64)> {
        let ns = job.namespace().unwrap_or_default();
        let name = job.name_any();
        let key = (ns.clone(), name.clone());
        let before = self.seen.lock().ok()?.get(&key).cloned();
        if let Some(s) = before.as_ref().filter(|s| s.at.elapsed() < FRESH) {
            return Some((s.rate, s.progress.lag));
        }
        let located = observe::coordinator(client, job, &ns, &name).await.ok()??;
        let (base, token) = located;
        let at = Endpoint {
            base: &base,
            token: token.as_ref(),
        };
        let view = runtime.job(at).await.ok()?;
        let now = Instant::now();
        let rate = before.and_then(|b| {
            let secs = now.duration_since(b.at).as_secs_f64();
            (b.job_id == view.job_id
                && view.progress.records_in >= b.progress.records_in
                && secs > 0.0)
                .then(|| (view.progress.records_in - b.progress.records_in) as f64 / secs)
        });
        let sample = Sample {
            at: now,
            job_id: view.job_id,
            progress: view.progress,
            rate,
        };
        let out = (sample.rate, sample.progress.lag);
        if let Ok(mut m) = self.seen.lock() {
            m.insert(key, sample);
        }
        Some(out)
    }
}

/// The list row of `job`, with its rate when it runs.
pub fn row(job: &StreamJob, rate: Option<(Option<f64>, i64)>) -> JobRow {
    let status = job.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| Health {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
    JobRow {
        namespace: job.namespace().unwrap_or_default(),
        name: job.name_any(),
        state: status.lifecycle_state.as_str().into(),
        ready,
        pods: status.pods.clone(),
        parallelism: status.parallelism,
        desired_parallelism: job.spec.parallelism,
        restarts: status.restarts.count,
        last_restart_reason: status.restarts.last_reason.clone(),
        last_checkpoint_at_ms: status
            .last_checkpoint
            .as_ref()
            .and_then(|c| c.completed_at.as_ref())
            .map(|t| t.0.as_millisecond()),
        last_checkpoint_bytes: status.last_checkpoint.as_ref().and_then(|c| c.size_bytes),
        records_per_s: rate.and_then(|r| r.0),
        lag: rate.map(|r| r.1),
    }
}

/// The job page's facts besides the row.
pub async fn detail(client: &Client, job: &StreamJob, row: JobRow) -> JobDetail {
    let ns = job.namespace().unwrap_or_default();
    let (events, events_error) = match events(client, &ns, job).await {
        Ok(e) => (e, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let status = job.status.clone().unwrap_or_default();
    let spec_json = serde_json::to_value(&job.spec).unwrap_or_default();
    JobDetail {
        row,
        status: serde_json::to_value(&status).unwrap_or_default(),
        spec: serde_yaml::to_string(&job.spec).unwrap_or_default(),
        generation: job.metadata.generation,
        observed_generation: status.observed_generation,
        last_change: last_change(job),
        pending: pending(&spec_json, status.last_reconciled_spec.as_deref()),
        events,
        events_error,
    }
}

/// The newest managed-fields entry that touched the spec.
fn last_change(job: &StreamJob) -> Option<Change> {
    job.metadata
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:spec").is_some())
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .map(|m| Change {
            manager: m.manager.clone().unwrap_or_default(),
            operation: m.operation.clone().unwrap_or_default(),
            time: m.time.as_ref().map(|t| t.0.to_string()),
        })
}

/// Top-level spec fields whose value differs from the spec the pods run (recorded in status
/// as JSON). Nothing when the pods run this spec, or no spec was recorded yet.
fn pending(spec: &Value, running: Option<&str>) -> Vec<String> {
    let Some(running) = running.and_then(|r| serde_json::from_str::<Value>(r).ok()) else {
        return Vec::new();
    };
    let (Some(a), Some(b)) = (spec.as_object(), running.as_object()) else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// The job's Events, newest first (those regarding this object, by uid).
async fn events(client: &Client, ns: &str, job: &StreamJob) -> Result<Vec<EventRow>, String> {
    let api: Api<KubeEvent> = Api::namespaced(client.clone(), ns);
    let name = job.name_any();
    let list = api
        .list(&ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .map_err(|e| format!("cannot list the job's events: {e}"))?;
    let uid = job.metadata.uid.clone();
    let mut rows: Vec<(i64, EventRow)> = list
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("StreamJob") && (uid.is_none() || r.uid == uid)
            })
        })
        .map(|e| {
            let t = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
            (
                t.map_or(0, |t| t.as_millisecond()),
                EventRow {
                    time: t.map(|t| t.to_string()),
                    type_: e.type_.unwrap_or_default(),
                    reason: e.reason.unwrap_or_default(),
                    note: e.note.unwrap_or_default(),
                },
            )
        })
        .collect();
    rows.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    Ok(rows.into_iter().map(|(_, r)| r).take(100).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pending_names_the_fields_not_rolled_out() {
        let spec = json!({"parallelism": 3, "image": "a", "checkpoint": {"interval": "1s"}});
        let running =
            json!({"parallelism": 2, "image": "a", "checkpoint": {"interval": "1s"}, "pods": 2});
        assert_eq!(
            pending(&spec, Some(&running.to_string())),
            vec!["parallelism".to_string(), "pods".to_string()]
        );
        assert!(pending(&spec, Some(&spec.to_string())).is_empty());
        assert!(pending(&spec, None).is_empty());
    }
}
