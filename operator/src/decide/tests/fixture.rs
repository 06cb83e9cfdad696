//! The job fixture every decision test starts from, the steps that move it, and the one
//! check every row and script step makes.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weir_crds::control::{JobState, SavepointState};
use weir_crds::{
    CheckpointStatus, LifecycleState, OperationKind, OperationPhase, SavepointStatus,
    SavepointTrigger, StopMode, StreamJobSpec, StreamJobStatus,
};

use crate::decide::{
    Action, Decision, JobView, Observed, PodPhase, PodView, RuntimeOutcome, RuntimeSavepoint,
    RuntimeView, Settings, decide,
};
use crate::events::Reason;

const SPEC: &str = r#"
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

/// Seconds from the fixture's epoch; rows speak in small numbers.
fn t(secs: i64) -> Timestamp {
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
    settings: Settings,
}

impl Fx {
    pub(super) fn new() -> Self {
        Self {
            job: JobView {
                name: "sales".into(),
                generation: 1,
                deleting: false,
                spec: parse_spec(),
                status: StreamJobStatus::default(),
            },
            obs: Observed::default(),
            settings: settings(),
        }
    }

    /// Pod 1 was asked for at t(0) and is not listed yet.
    pub(super) fn deployed() -> Self {
        Self::new().at(0)
    }

    /// Deployed and running at incarnation 1 since t(0), with a checkpoint at t(0). What a
    /// running job reports is checked here, once for every test that starts from it.
    pub(super) fn running() -> Self {
        let mut fx = Self::deployed();
        fx.runs(1);
        let st = fx.step(0).status;
        assert_eq!(st.lifecycle_state, LifecycleState::Running);
        assert_eq!(st.job_id.as_deref(), Some("lineage-a"));
        assert_eq!(st.last_checkpoint.as_ref().unwrap().id, 4);
        assert!(st.last_stable_spec.is_some());
        assert_eq!(st.deployed_image.as_deref(), Some("weir-runtime:test"));
        fx
    }

    /// The user edits the spec (a new generation).
    pub(super) fn spec(mut self, f: impl FnOnce(&mut StreamJobSpec)) -> Self {
        f(&mut self.job.spec);
        self.job.generation += 1;
        self
    }

    /// Changes what is observed (or the settings) without deciding, for fixtures built in
    /// one expression (table rows take a plain `fn() -> Fx`).
    pub(super) fn then(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }

    /// Decides at `at` and carries the status forward, for fixtures built in one expression:
    /// the passes a row needs before the one it checks.
    pub(super) fn at(mut self, at: i64) -> Self {
        self.step(at);
        self
    }

    /// Decides at `at` and carries the status forward, as the shell writes it.
    pub(super) fn step(&mut self, at: i64) -> Decision {
        let d = decide(&self.job, &self.obs, t(at), &self.settings);
        self.job.status = d.status.clone();
        d
    }

    /// Pod `incarnation` of a job of one pod is listed in `phase` (replacing what was listed
    /// for it).
    pub(super) fn pod(&mut self, incarnation: u64, phase: PodPhase) -> &mut PodView {
        self.listed(format!("sales-{incarnation}"), incarnation, 0, phase)
    }

    /// Pod `index` of `incarnation` of a job of several pods (`sales-<incarnation>-<index>`)
    /// is listed in `phase`, ready when running (replacing what was listed for it).
    pub(super) fn pod_of(&mut self, incarnation: u64, index: u32, phase: PodPhase) -> &mut PodView {
        let name = format!("sales-{incarnation}-{index}");
        self.listed(name, incarnation, index, phase)
    }

    fn listed(
        &mut self,
        name: String,
        incarnation: u64,
        index: u32,
        phase: PodPhase,
    ) -> &mut PodView {
        self.obs
            .pods
            .retain(|p| (p.incarnation, p.index) != (incarnation, index));
        self.obs.pods.push(PodView {
            name,
            incarnation,
            index,
            ready: phase == PodPhase::Running,
            phase,
            deleting: false,
            reason: None,
            exit_code: None,
            outcome: None,
        });
        self.obs.pods.last_mut().unwrap()
    }

    /// The runtime (pod 0) reports running: lineage-a, checkpoint 4 at t(0).
    pub(super) fn reports_running(&mut self) {
        self.obs.runtime = Some(RuntimeView {
            progress: Default::default(),
            job_id: "lineage-a".into(),
            state: JobState::Running,
            last_checkpoint: Some(CheckpointStatus {
                id: 4,
                path: Some("s3://bucket/weir/ns/sales/lineage-a/chk-4".into()),
                completed_at: Some(Time(t(0))),
                size_bytes: Some(100),
                written_bytes: Some(40),
                disk_bytes: None,
                memory_bytes: None,
            }),
            savepoints: vec![],
        });
    }

    /// Pod `incarnation` runs and its runtime reports running (lineage-a, checkpoint 4 at
    /// t(0)).
    pub(super) fn runs(&mut self, incarnation: u64) {
        self.pod(incarnation, PodPhase::Running);
        self.reports_running();
    }

    /// Every pod of `incarnation` of a job of `pods` pods runs, and pod 0 reports running.
    pub(super) fn all_run(&mut self, incarnation: u64, pods: u32) {
        for i in 0..pods {
            self.pod_of(incarnation, i, PodPhase::Running);
        }
        self.reports_running();
    }

    /// The runtime reports a checkpoint completed at `at`.
    pub(super) fn checkpoint_at(&mut self, at: i64) {
        let runtime = self.obs.runtime.as_mut().unwrap();
        let c = runtime.last_checkpoint.as_mut().unwrap();
        c.id += 1;
        c.completed_at = Some(Time(t(at)));
    }

    /// Pod `incarnation` failed; its runtime no longer answers. Returns the pod for the
    /// kubelet's reason, exit code or the runtime's outcome.
    pub(super) fn fails(&mut self, incarnation: u64) -> &mut PodView {
        self.obs.runtime = None;
        self.pod(incarnation, PodPhase::Failed)
    }

    pub(super) fn oom_killed(&mut self, incarnation: u64) {
        let p = self.fails(incarnation);
        p.reason = Some("OOMKilled".into());
        p.exit_code = Some(137);
    }

    /// Pod `incarnation` stopped with a savepoint at `path` and exited 0.
    pub(super) fn exited_with_savepoint(&mut self, incarnation: u64, path: &str) {
        self.obs.runtime = None;
        self.pod(incarnation, PodPhase::Succeeded).outcome = Some(RuntimeOutcome::Stopped {
            savepoint: Some(path.into()),
        });
    }

    /// Every pod is gone, terminating ones too.
    pub(super) fn no_pods(&mut self) {
        self.obs.pods.clear();
        self.obs.runtime = None;
    }

    /// Pod `incarnation`, asked to stop with a savepoint, exits with one at `path`; decides
    /// at `at` (the pods go) and at `at + 2` (the next incarnation starts), returning the
    /// latter decision.
    pub(super) fn exits_with_savepoint_and_restarts(
        &mut self,
        incarnation: u64,
        path: &str,
        at: i64,
    ) -> Decision {
        self.exited_with_savepoint(incarnation, path);
        self.step(at);
        self.no_pods();
        self.step(at + 2)
    }

    /// Restarts already counted in the window, at these times.
    pub(super) fn recent_restarts(&mut self, at: &[i64]) {
        self.job.status.restarts.recent = at.iter().map(|&s| Time(t(s))).collect();
    }

    /// The shell sent the pending savepoint request and recorded the runtime's id for it.
    pub(super) fn savepoint_accepted(&mut self, id: &str) {
        let pending = self.job.status.pending_savepoint.as_mut();
        pending.expect("a savepoint was requested").request_id = id.into();
    }

    /// The runtime reports savepoint request `id` as `status`.
    pub(super) fn runtime_reports(
        &mut self,
        id: &str,
        status: SavepointState,
        path: Option<&str>,
        error: Option<&str>,
    ) {
        let savepoints = &mut self.obs.runtime.as_mut().unwrap().savepoints;
        savepoints.retain(|s| s.id != id);
        savepoints.push(RuntimeSavepoint {
            id: id.into(),
            status,
            path: path.map(Into::into),
            error: error.map(Into::into),
        });
    }

    /// `status.savepoints` from before: these paths and triggers, completed at t(-10).
    pub(super) fn history(&mut self, savepoints: &[(&str, SavepointTrigger)]) {
        self.job.status.savepoints = savepoints
            .iter()
            .map(|&(path, trigger)| SavepointStatus {
                path: path.into(),
                trigger,
                completed_at: Time(t(-10)),
                disposal: None,
            })
            .collect();
    }

    /// Savepoint `path` of the history is being disposed: its delete was last started at
    /// `at` and has failed `failed` times.
    pub(super) fn disposing(&mut self, path: &str, failed: u32, at: i64) {
        for sp in &mut self.job.status.savepoints {
            if sp.path == path {
                sp.disposal = Some(weir_crds::Disposal {
                    failed_attempts: failed,
                    last_attempt_at: Time(t(at)),
                    last_error: (failed > 0).then(|| "AccessDenied".to_string()),
                });
            }
        }
    }

    /// The operator now defaults to `image` (its `--runtime-image` changed).
    pub(super) fn default_image(&mut self, image: &str) {
        self.settings.default_image = image.into();
    }

    /// Decides at `at`, carries the status forward and checks the decision: the actions,
    /// lifecycle state and event reasons exactly, and each of `also`. `what` names the row
    /// or the step of a script in every failure.
    pub(super) fn expect(
        &mut self,
        what: &str,
        at: i64,
        actions: &[Action],
        state: LifecycleState,
        events: &[Reason],
        also: &[Has],
    ) -> Decision {
        let before = self.job.status.clone();
        let d = self.step(at);
        assert_eq!(d.actions, actions, "{what}: actions");
        assert_eq!(d.status.lifecycle_state, state, "{what}: lifecycle state");
        let reasons: Vec<Reason> = d.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, events, "{what}: events {:?}", d.events);
        for h in also {
            h.check(what, &before, &d);
        }
        for h in also {
            if let Has::Quiet(later) = *h {
                let next = self.step(later);
                assert!(
                    next.actions.is_empty() && next.events.is_empty(),
                    "{what}: at {later} again: {:?} {:?}",
                    next.actions,
                    next.events
                );
            }
        }
        d
    }
}

/// A new incarnation: its config is applied first, then its pod is created.
pub(super) fn new_pod(incarnation: u64) -> Vec<Action> {
    new_pods(incarnation, 1)
}

/// A new incarnation of `pods` pods: its config, then every pod of it.
pub(super) fn new_pods(incarnation: u64, pods: u32) -> Vec<Action> {
    std::iter::once(Action::EnsureConfig)
        .chain((0..pods).map(|index| Action::CreatePod { incarnation, index }))
        .collect()
}

pub(super) fn delete_pod(incarnation: u64) -> Action {
    Action::DeletePod {
        name: format!("sales-{incarnation}"),
    }
}

/// Deleting pod `index` of `incarnation` of a job of several pods.
pub(super) fn delete_pod_of(incarnation: u64, index: u32) -> Action {
    Action::DeletePod {
        name: format!("sales-{incarnation}-{index}"),
    }
}

pub(super) fn stop_with_savepoint(incarnation: u64) -> Action {
    Action::StopWithSavepoint {
        pod: format!("sales-{incarnation}"),
    }
}

pub(super) fn trigger_savepoint(incarnation: u64) -> Action {
    Action::TriggerSavepoint {
        pod: format!("sales-{incarnation}"),
    }
}

/// One transition: a fixture, a decision at `at`, and everything the decision must show.
pub(super) struct Row {
    pub(super) what: &'static str,
    pub(super) given: fn() -> Fx,
    pub(super) at: i64,
    pub(super) actions: Vec<Action>,
    pub(super) state: LifecycleState,
    pub(super) events: &'static [Reason],
    pub(super) also: &'static [Has],
}

/// Runs every row on its own fixture, naming the row in any failure.
pub(super) fn run(rows: &[Row]) {
    for r in rows {
        (r.given)().expect(r.what, r.at, &r.actions, r.state, r.events, r.also);
    }
}

/// Where the next incarnation starts (`status.start`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// No start point: the runtime restores the newest checkpoint of its lineage itself.
    Newest,
    /// A start point without a path: a new lineage with empty state.
    Empty,
    /// A start point from this savepoint.
    From(&'static str),
}

/// A fact about a decision beyond its actions, state and events: the columns a row needs
/// only sometimes. Facts are data rather than closures so a row stays one line of a table
/// and a failure names both the row and the fact.
#[derive(Debug, Clone, Copy)]
pub(super) enum Has {
    /// The first event's message contains the text.
    Says(&'static str),
    /// Condition `type` with this status and reason.
    Condition(&'static str, &'static str, &'static str),
    /// Condition `type` whose message contains the text.
    ConditionSays(&'static str, &'static str),
    /// `status.start`.
    Start(Start),
    /// `status.deployedImage`.
    Image(&'static str),
    /// `status.restarts.count`.
    Restarts(u32),
    /// `status.restarts.recent` has this many entries.
    RecentRestarts(usize),
    /// `status.restarts.lastReason`.
    LastReason(&'static str),
    /// No operation in flight.
    NoOperation,
    /// The operation in flight: kind, phase and how the old pod stops.
    Operation(OperationKind, OperationPhase, StopMode),
    /// The operation in flight waits, and says why with the text.
    Waiting(&'static str),
    /// The operation in flight is not waiting for anything (no stale reason shown).
    NotWaiting,
    /// `status.lastReconciledSpec` contains the text.
    Reconciled(&'static str),
    /// `status.lastReconciledSpec` is what it was before the decision.
    ReconciledUnchanged,
    /// `status.lastStableSpec` is the reconciled spec: what runs is known to work.
    StableIsReconciled,
    /// `status.observedRestartNonce`.
    ObservedRestartNonce(i64),
    /// `status.observedSavepointTriggerNonce`.
    ObservedSavepointNonce(i64),
    /// The trigger of `status.pendingSavepoint`, if any.
    Pending(Option<SavepointTrigger>),
    /// `status.savepoints` not being disposed, oldest first: paths and triggers.
    Savepoints(&'static [(&'static str, SavepointTrigger)]),
    /// `status.savepoints` being disposed: paths and failed deletes so far.
    Disposing(&'static [(&'static str, u32)]),
    /// Looks again within this many seconds.
    Requeue(u64),
    /// `status.pods` (`ready/desired`), or its absence.
    Pods(Option<&'static str>),
    /// The next decision, at this time, does nothing and says nothing: what happened is
    /// acted on and reported once.
    Quiet(i64),
}

impl Has {
    fn check(self, what: &str, before: &StreamJobStatus, d: &Decision) {
        let st = &d.status;
        let condition = |type_: &str| {
            st.conditions
                .iter()
                .find(|c| c.type_ == type_)
                .unwrap_or_else(|| panic!("{what}: no condition {type_}"))
        };
        match self {
            Has::Says(text) => assert!(
                d.events.first().is_some_and(|e| e.message.contains(text)),
                "{what}: the first event should say {text:?}: {:?}",
                d.events
            ),
            Has::Condition(type_, status, reason) => {
                let c = condition(type_);
                assert_eq!(
                    (c.status.as_str(), c.reason.as_str()),
                    (status, reason),
                    "{what}: condition {type_} ({})",
                    c.message
                );
            }
            Has::ConditionSays(type_, text) => {
                let c = condition(type_);
                assert!(
                    c.message.contains(text),
                    "{what}: condition {type_} should say {text:?}: {:?}",
                    c.message
                );
            }
            Has::Start(start) => match start {
                Start::Newest => assert_eq!(st.start, None, "{what}: start"),
                Start::Empty => {
                    let s = st
                        .start
                        .as_ref()
                        .unwrap_or_else(|| panic!("{what}: no start point"));
                    assert_eq!(s.from, None, "{what}: start from");
                    assert!(!s.id.is_empty(), "{what}: a start id, so it runs once");
                }
                Start::From(path) => assert_eq!(
                    st.start.as_ref().and_then(|s| s.from.as_deref()),
                    Some(path),
                    "{what}: start from"
                ),
            },
            Has::Image(image) => {
                assert_eq!(st.deployed_image.as_deref(), Some(image), "{what}: image");
            }
            Has::Restarts(n) => assert_eq!(st.restarts.count, n, "{what}: restarts"),
            Has::RecentRestarts(n) => {
                assert_eq!(st.restarts.recent.len(), n, "{what}: recent restarts");
            }
            Has::LastReason(why) => assert_eq!(
                st.restarts.last_reason.as_deref(),
                Some(why),
                "{what}: last reason"
            ),
            Has::NoOperation => assert_eq!(st.operation, None, "{what}: operation"),
            Has::Operation(kind, phase, stop) => {
                let op = st
                    .operation
                    .as_ref()
                    .unwrap_or_else(|| panic!("{what}: no operation"));
                assert_eq!(
                    (op.kind, op.phase, op.stop),
                    (kind, phase, stop),
                    "{what}: operation"
                );
            }
            Has::Waiting(text) => {
                let waiting = st.operation.as_ref().and_then(|o| o.waiting.as_deref());
                assert!(
                    waiting.is_some_and(|w| w.contains(text)),
                    "{what}: the operation should wait because {text:?}: {waiting:?}"
                );
            }
            Has::NotWaiting => {
                let waiting = st.operation.as_ref().and_then(|o| o.waiting.as_deref());
                assert_eq!(waiting, None, "{what}: the operation should not wait");
            }
            Has::Reconciled(text) => {
                let spec = st.last_reconciled_spec.as_deref().unwrap_or_default();
                assert!(
                    spec.contains(text),
                    "{what}: reconciled spec has {text}: {spec}"
                );
            }
            Has::ReconciledUnchanged => assert_eq!(
                st.last_reconciled_spec, before.last_reconciled_spec,
                "{what}: reconciled spec"
            ),
            Has::StableIsReconciled => assert_eq!(
                st.last_stable_spec, st.last_reconciled_spec,
                "{what}: stable spec"
            ),
            Has::ObservedRestartNonce(n) => {
                assert_eq!(
                    st.observed_restart_nonce, n,
                    "{what}: observed restartNonce"
                );
            }
            Has::ObservedSavepointNonce(n) => assert_eq!(
                st.observed_savepoint_trigger_nonce, n,
                "{what}: observed savepointTriggerNonce"
            ),
            Has::Pending(trigger) => assert_eq!(
                st.pending_savepoint.as_ref().map(|p| p.trigger),
                trigger,
                "{what}: pending savepoint"
            ),
            Has::Savepoints(expected) => {
                let kept: Vec<(&str, SavepointTrigger)> = st
                    .savepoints
                    .iter()
                    .filter(|s| s.disposal.is_none())
                    .map(|s| (s.path.as_str(), s.trigger))
                    .collect();
                assert_eq!(kept, expected, "{what}: savepoints");
            }
            Has::Disposing(expected) => {
                let going: Vec<(&str, u32)> = st
                    .savepoints
                    .iter()
                    .filter_map(|s| Some((s.path.as_str(), s.disposal.as_ref()?.failed_attempts)))
                    .collect();
                assert_eq!(going, expected, "{what}: savepoints being disposed");
            }
            Has::Requeue(secs) => assert_eq!(d.requeue.as_secs(), secs, "{what}: requeue"),
            Has::Pods(pods) => assert_eq!(st.pods.as_deref(), pods, "{what}: status.pods"),
            // Decides again, so `expect` checks it after the facts about this decision.
            Has::Quiet(_) => {}
        }
    }
}
