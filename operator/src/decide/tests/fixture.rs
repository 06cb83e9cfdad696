//! The job fixture the decision tests start from: one spec, one clock, one way to step.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weir_crds::{CheckpointStatus, LifecycleState, StreamJobSpec, StreamJobStatus};

use crate::decide::*;
use crate::events::Reason;

pub(super) const SPEC: &str = r#"
parallelism: 2
checkpoint: {interval: 30s, timeout: 2m, storage: "s3://bucket/weir"}
restart: {initialBackoff: 1s, maxBackoff: 1m, maxRestarts: 3, window: 1h}
savepoint: {historyMaxCount: 2, timeout: 1m}
upgrade: {readyTimeout: 5m}
pipeline:
  source:
    kafka: {bootstrapServers: "kafka:9092", topic: orders}
    schema: [{name: store_id, type: string}, {name: amount, type: int64}, {name: ts, type: timestamp}]
    eventTime: {field: ts}
  transforms:
    - window: {tumbling: 1m, keyBy: [store_id], aggregates: {sales: sum(amount)}}
  sinks:
    - kafka: {bootstrapServers: "kafka:9092", topic: out, transactionalIdPrefix: out}
"#;

/// Specs are JSON-shaped (as the apiserver stores them); YAML is only the notation here.
pub(super) fn parse_spec() -> StreamJobSpec {
    let v: serde_json::Value = serde_yaml::from_str(SPEC).unwrap();
    serde_json::from_value(v).unwrap()
}

pub(super) fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

pub(super) fn settings() -> Settings {
    Settings {
        default_image: "weir-runtime:test".into(),
        ..Settings::default()
    }
}

/// A job fixture: spec, status and what is observed.
#[derive(Clone)]
pub(super) struct Fx {
    pub(super) job: JobView,
    pub(super) obs: Observed,
    pub(super) settings: Settings,
}

impl Fx {
    pub(super) fn new() -> Self {
        let spec = parse_spec();
        Self {
            job: JobView {
                name: "sales".into(),
                generation: 1,
                deleting: false,
                spec,
                status: StreamJobStatus::default(),
            },
            obs: Observed::default(),
            settings: settings(),
        }
    }

    /// Deployed and running at incarnation 1 since t(0), with a checkpoint at `t(0)`.
    pub(super) fn running() -> Self {
        let mut fx = Self::new();
        let d = fx.decide(0);
        fx.job.status = d.status;
        fx.pod(1, PodPhase::Running).runtime_running();
        let d = fx.decide(0);
        assert_eq!(d.status.lifecycle_state, LifecycleState::Running);
        fx.job.status = d.status;
        fx
    }

    pub(super) fn spec(mut self, f: impl FnOnce(&mut StreamJobSpec)) -> Self {
        f(&mut self.job.spec);
        self.job.generation += 1;
        self
    }

    pub(super) fn pod(&mut self, incarnation: u64, phase: PodPhase) -> &mut Self {
        self.obs.pods.retain(|p| p.incarnation != incarnation);
        self.obs.pods.push(PodView {
            name: format!("sales-{incarnation}"),
            incarnation,
            phase,
            deleting: false,
            reason: None,
            exit_code: None,
            outcome: None,
        });
        self
    }

    pub(super) fn last_pod(&mut self) -> &mut PodView {
        self.obs.pods.last_mut().unwrap()
    }

    /// Pod `incarnation` stopped with a savepoint at `path` and exited 0.
    pub(super) fn exited_with_savepoint(&mut self, incarnation: u64, path: &str) -> &mut Self {
        self.pod(incarnation, PodPhase::Succeeded);
        self.last_pod().outcome = Some(RuntimeOutcome::Stopped {
            savepoint: Some(path.into()),
        });
        self.obs.runtime = None;
        self
    }

    pub(super) fn no_pods(&mut self) -> &mut Self {
        self.obs.pods.clear();
        self.obs.runtime = None;
        self
    }

    pub(super) fn runtime_running(&mut self) -> &mut Self {
        self.obs.runtime = Some(RuntimeView {
            job_id: "lineage-a".into(),
            state: JobState::Running,
            last_checkpoint: Some(CheckpointStatus {
                id: 4,
                path: Some("s3://bucket/weir/ns/sales/lineage-a/chk-4".into()),
                completed_at: Some(Time(t(0))),
                size_bytes: Some(100),
            }),
            savepoints: vec![],
        });
        self
    }

    /// The runtime reports a checkpoint completed at `at`.
    pub(super) fn checkpoint_at(&mut self, at: i64) -> &mut Self {
        let c = self
            .obs
            .runtime
            .as_mut()
            .unwrap()
            .last_checkpoint
            .as_mut()
            .unwrap();
        c.id += 1;
        c.completed_at = Some(Time(t(at)));
        self
    }

    pub(super) fn decide(&self, at: i64) -> Decision {
        decide(&self.job, &self.obs, t(at), &self.settings)
    }

    /// Decide at `at` and carry the status forward.
    pub(super) fn step(&mut self, at: i64) -> Decision {
        let d = self.decide(at);
        self.job.status = d.status.clone();
        d
    }
}

pub(super) fn reasons(d: &Decision) -> Vec<Reason> {
    d.events.iter().map(|e| e.reason).collect()
}

pub(super) fn condition<'a>(
    d: &'a Decision,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    d.status.conditions.iter().find(|c| c.type_ == t).unwrap()
}
