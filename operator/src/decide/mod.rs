//! Every reconcile decision, as pure functions of what was observed.
//!
//! [`decide`] takes the job (spec, status, deletion mark), what [`crate::observe`] saw (pods,
//! the runtime's own report, missing Secrets) and `now`, and returns a [`Decision`]: the new
//! status, the actions to carry out and the events to record. It performs no I/O and reads no
//! clock, so every transition is a row of a table in `tests/`. The shell in
//! [`crate::reconcile`] gathers the facts, calls it, and applies the result.
//!
//! Inside, sub-decisions are free functions over [`Facts`] (what was observed; read-only)
//! and [`Step`] (the status, actions and events produced so far); where the caller branches
//! on their result they return an enum saying what they did. `choose` orders them; each
//! lives with its concern: `deploy` (start and remove incarnations), `operation`
//! (stop-then-start), `restart` (healing, backoff, budget), `savepoints`, `lifecycle`
//! (conditions) and `spec_change` (classifying a change).
//!
//! An incarnation is one start of the job's pods: one pod, or `spec.pods` of them
//! (`<job>-<incarnation>-<index>`), which live and die together. It runs when every one of
//! its pods runs and pod 0 (the coordinator) reports running; any pod failing fails it, and
//! it is replaced whole, never before every pod of it is gone. Stops, savepoints and how
//! the job ended are pod 0's, the only pod the operator talks to ([`Facts::coordinator`]).
//!
//! ```text
//! Created ─first deploy─► Deploying ─runtime running─► Running ─spec change─► Upgrading
//!    ▲                      ▲   │ pod failed (backoff, budget)   │  stop (savepoint |
//!    │ invalid spec         │   ▼                                │  checkpoint | stateless)
//!    └── stays Created      └─ restart ◄── no progress ◄─────────┘  then start ─► Running
//! Running ─state: suspended─► (stop with savepoint) ─► Suspended ─state: running─► Deploying
//! budget exhausted / upgrade not ready (no rollback) ─► Failed ─new spec or nonce─► Deploying
//! deletionTimestamp ─► Deleting ─(final savepoint)─► pods removed ─► finalizer removed
//! ```

pub mod acted;
mod deploy;
mod lifecycle;
mod operation;
mod restart;
mod savepoints;
pub mod spec_change;
#[cfg(test)]
mod tests;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weir_crds::control::{JobReport, JobState, SavepointState};
use weir_crds::{LifecycleState, StreamJobSpec, StreamJobStatus};

use crate::events::{Event, Reason};

/// What the shell knows about a job when it decides.
#[derive(Debug, Clone)]
pub struct JobView {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The spec.
    pub spec: StreamJobSpec,
    /// The status as last written.
    pub status: StreamJobStatus,
}

/// Phase of a runtime pod, as the kubelet reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Not running yet.
    Pending,
    /// Containers running.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero or was killed.
    Failed,
    /// Node lost.
    Unknown,
}

/// How a runtime process ended, from its termination message (the contract's
/// [`Outcome`](weir_crds::control::Outcome)).
pub use weir_crds::control::Outcome as RuntimeOutcome;

/// One runtime pod owned by the job.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Incarnation label.
    pub incarnation: u64,
    /// Index label within the incarnation; 0 (the coordinator) for a job of one pod.
    pub index: u32,
    /// The runtime container passes its readiness probe.
    pub ready: bool,
    /// Phase.
    pub phase: PodPhase,
    /// Being deleted.
    pub deleting: bool,
    /// Kubelet's reason for a terminated container, e.g. `OOMKilled`.
    pub reason: Option<String>,
    /// Exit code of a terminated container.
    pub exit_code: Option<i32>,
    /// The runtime's own account of how it ended.
    pub outcome: Option<RuntimeOutcome>,
}

impl PodView {
    /// Whether this is the running pod whose report is the job's: pod 0 (in a job of several
    /// pods, the coordinator) of incarnation `incarnation`.
    #[must_use]
    pub fn reports_for(&self, incarnation: u64) -> bool {
        self.incarnation == incarnation && self.index == 0 && self.phase == PodPhase::Running
    }

    /// The savepoint a stop with savepoint left, once the pod exited with it.
    #[must_use]
    pub fn stop_savepoint(&self) -> Option<&str> {
        match (&self.phase, &self.outcome) {
            (PodPhase::Succeeded, Some(RuntimeOutcome::Stopped { savepoint })) => {
                savepoint.as_deref()
            }
            _ => None,
        }
    }
}

/// A savepoint request as the runtime reports it, reduced to what decisions read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSavepoint {
    /// Request id.
    pub id: String,
    /// Where it is.
    pub status: SavepointState,
    /// URI when completed.
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The runtime's `GET /v1/job` ([`JobReport`]), reduced to what decisions need, so decision
/// tests build a few fields instead of a whole report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuntimeView {
    /// Lineage id.
    pub job_id: String,
    /// Lifecycle inside the runtime process.
    pub state: JobState,
    /// Newest completed checkpoint: id, path, completion time, size.
    pub last_checkpoint: Option<weir_crds::CheckpointStatus>,
    /// Savepoint requests of this process.
    pub savepoints: Vec<RuntimeSavepoint>,
    /// How far the job has got; decisions do not use it, the console shows it.
    pub progress: Progress,
}

/// Records read so far and the sources' lag, from one report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records read by every source since this process started.
    pub records_in: u64,
    /// Records behind the end of every source partition, summed.
    pub lag: i64,
}

impl From<JobReport> for RuntimeView {
    fn from(r: JobReport) -> Self {
        let last_checkpoint = r.last_checkpoint.map(|c| {
            // The report has trigger time and duration; the status wants the completion time.
            let done_ms = c
                .triggered_at_ms
                .saturating_add(i64::try_from(c.duration_ms.unwrap_or(0)).unwrap_or(0));
            weir_crds::CheckpointStatus {
                id: c.id,
                path: c.path,
                completed_at: Timestamp::from_millisecond(done_ms).ok().map(Time),
                size_bytes: c.size_bytes,
                written_bytes: c.written_bytes,
                disk_bytes: c.disk_bytes,
                memory_bytes: c.memory_bytes,
            }
        });
        let progress = Progress {
            records_in: r.records_in,
            lag: r.source_lag.iter().map(|l| l.lag.max(0)).sum(),
        };
        Self {
            progress,
            job_id: r.job_id,
            state: r.state,
            last_checkpoint,
            savepoints: r
                .savepoints
                .into_iter()
                .map(|s| RuntimeSavepoint {
                    id: s.id,
                    status: s.status,
                    path: s.path,
                    error: s.error,
                })
                .collect(),
        }
    }
}

/// Everything observed for one job.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Runtime pods owned by the job.
    pub pods: Vec<PodView>,
    /// Report of the current incarnation's runtime, when it answered.
    pub runtime: Option<RuntimeView>,
    /// Semantic problems found by looking at the cluster (a Secret that does not exist),
    /// as `(field path, message)`.
    pub problems: Vec<(String, String)>,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply the ConfigMap (job file of `status.lastReconciledSpec`) and the Service; for a
    /// job of several pods also the headless peers Service and the exchange Secret.
    EnsureConfig,
    /// Create runtime pod `index` of `incarnation` from the reconciled spec and
    /// `status.start`. An incarnation's pods are created together, in one pass.
    CreatePod {
        /// Incarnation number.
        incarnation: u64,
        /// Pod within the incarnation (0 for a job of one pod).
        index: u32,
    },
    /// Delete a pod (the runtime takes a final checkpoint on SIGTERM).
    DeletePod {
        /// Pod name.
        name: String,
    },
    /// `POST /v1/stop {"savepoint": true}` to the pod's runtime.
    StopWithSavepoint {
        /// Pod name.
        pod: String,
    },
    /// `POST /v1/savepoints`; the shell records the request id in `status.pendingSavepoint`.
    TriggerSavepoint {
        /// Pod name.
        pod: String,
    },
    /// Delete a savepoint dropped from the history.
    DisposeSavepoint {
        /// Savepoint URI.
        path: String,
    },
    /// Deletion may finish.
    RemoveFinalizer,
}

/// The result of one decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Status to write.
    pub status: StreamJobStatus,
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// Events to record.
    pub events: Vec<Event>,
    /// When to look again, at the latest.
    pub requeue: std::time::Duration,
}

/// Operator-wide settings decisions depend on.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Image used when `spec.image` is absent. Part of the job's effective spec: a changed
    /// default upgrades running jobs through their `upgradeMode` (see [`Settings::image`]).
    pub default_image: String,
    /// S3 settings for jobs whose `checkpoint.s3` leaves a field unset (the Helm chart's
    /// `s3` values), so a cluster with one object store needs them in one place.
    pub s3_defaults: weir_crds::JobS3Spec,
}

impl Settings {
    /// The job as the operator acts on it: unset `checkpoint.s3` fields take the operator's
    /// defaults. Applied once per reconcile, before anything reads the spec, so observe,
    /// decide and act agree; a changed default is then an ordinary `checkpoint.s3` change
    /// (an upgrade through `upgradeMode`), never a silent switch of storage under a running
    /// job.
    #[must_use]
    pub fn effective(&self, mut spec: StreamJobSpec) -> StreamJobSpec {
        let (s3, d) = (&mut spec.checkpoint.s3, &self.s3_defaults);
        s3.endpoint = s3.endpoint.take().or_else(|| d.endpoint.clone());
        s3.region = s3.region.take().or_else(|| d.region.clone());
        s3.path_style = s3.path_style.or(d.path_style);
        s3.credentials_secret = s3
            .credentials_secret
            .take()
            .or_else(|| d.credentials_secret.clone());
        spec
    }

    /// The image `spec` runs: `spec.image`, else the operator's default. Decisions compare
    /// it with the image the pods run, so a new default is an upgrade like any image change,
    /// never a silent switch at the next crash.
    #[must_use]
    pub fn image(&self, spec: &StreamJobSpec) -> String {
        spec.image
            .clone()
            .unwrap_or_else(|| self.default_image.clone())
    }
}

/// How often a job is looked at while nothing changes: the runtime status (checkpoints,
/// savepoints) is polled at this pace.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// Short wait while something is in motion (pods stopping, starting).
pub const SHORT: std::time::Duration = std::time::Duration::from_secs(2);

/// Pods of the incarnation `st` names: `spec.pods` of the spec they run (the reconciled spec
/// changes only when a new incarnation starts), 1 before there is one.
#[must_use]
pub fn pods_of(st: &StreamJobStatus) -> u32 {
    reconciled_spec(st).map_or(1, |s| s.pods.max(1))
}

fn incarnation_pods<'a>(obs: &'a Observed, st: &StreamJobStatus) -> Vec<&'a PodView> {
    let mut pods: Vec<&PodView> = obs
        .pods
        .iter()
        .filter(|p| p.incarnation == st.incarnation)
        .collect();
    pods.sort_by_key(|p| p.index);
    pods
}

/// `status.pods`: ready pods of the current incarnation over the pods it should have, as a
/// Deployment's READY; `None` before the first deploy and while suspended, when no pods are
/// wanted.
fn pods_ready(obs: &Observed, st: &StreamJobStatus) -> Option<String> {
    if st.incarnation == 0
        || matches!(
            st.lifecycle_state,
            LifecycleState::Created | LifecycleState::Suspended
        )
    {
        return None;
    }
    let ready = incarnation_pods(obs, st)
        .iter()
        .filter(|p| p.ready && p.phase == PodPhase::Running && !p.deleting)
        .count();
    Some(format!("{ready}/{}", pods_of(st)))
}

/// The spec the pods run (`status.lastReconciledSpec`), when there is one.
#[must_use]
pub fn reconciled_spec(status: &StreamJobStatus) -> Option<StreamJobSpec> {
    status
        .last_reconciled_spec
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// Canonical JSON of the spec, as stored in `lastReconciledSpec`.
pub(crate) fn spec_json(spec: &StreamJobSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

/// Sets the image of the spec stored as JSON in `json` when it has none.
fn pin_image(json: &mut Option<String>, image: &str) {
    let Some(mut spec) = json
        .as_deref()
        .and_then(|s| serde_json::from_str::<StreamJobSpec>(s).ok())
    else {
        return;
    };
    if spec.image.is_none() {
        spec.image = Some(image.to_string());
        *json = Some(spec_json(&spec));
    }
}

/// Decide what to do with `job`. Performs no I/O; called by [`crate::reconcile`].
#[must_use]
pub fn decide(job: &JobView, obs: &Observed, now: Timestamp, settings: &Settings) -> Decision {
    let mut target = job.spec.clone();
    target.image = Some(settings.image(&job.spec));
    let f = Facts {
        job,
        target,
        obs,
        now,
        settings,
    };
    let mut s = Step {
        st: job.status.clone(),
        actions: Vec::new(),
        events: Vec::new(),
        requeue: POLL,
    };
    pin_legacy_images(settings, &mut s.st);
    choose(&f, &mut s);
    savepoints::retry_disposals(&f, &mut s);
    let mut status = s.st;
    status.observed_generation = Some(job.generation);
    lifecycle::set_conditions(&mut status, now);
    status.parallelism = (status.lifecycle_state == LifecycleState::Running)
        .then(|| reconciled_spec(&status).map(|s| s.parallelism))
        .flatten();
    status.pods = pods_ready(obs, &status);
    Decision {
        status,
        actions: s.actions,
        events: s.events,
        requeue: s.requeue,
    }
}

/// What one decision reads. Nothing in it changes while deciding; everything that does is in
/// [`Step`], so a sub-decision's signature says what it may change.
pub(crate) struct Facts<'a> {
    pub(crate) job: &'a JobView,
    /// `job.spec` with its image resolved (see [`Settings::image`]): the spec to deploy. The
    /// reconciled spec is stored this way, so it says which image the pods run, a heal keeps
    /// starting that image, and a rollback goes back to the stable spec's image.
    pub(crate) target: StreamJobSpec,
    pub(crate) obs: &'a Observed,
    pub(crate) now: Timestamp,
    pub(crate) settings: &'a Settings,
}

impl Facts<'_> {
    pub(crate) fn now_time(&self) -> Time {
        Time(self.now)
    }

    /// Seconds from `t` to now (negative when `t` is in the future).
    pub(crate) fn secs_since(&self, t: Timestamp) -> f64 {
        self.now.duration_since(t).as_secs_f64()
    }

    /// Pod 0 of the incarnation `st` names: the only pod of a job of one pod, the checkpoint
    /// coordinator of a job of several. Stops and savepoints are asked of it, and its end is
    /// how the incarnation ended.
    pub(crate) fn coordinator(&self, st: &StreamJobStatus) -> Option<&PodView> {
        self.obs
            .pods
            .iter()
            .find(|p| p.incarnation == st.incarnation && p.index == 0)
    }

    /// The pods of the incarnation `st` names that are listed, in index order.
    pub(crate) fn incarnation_pods(&self, st: &StreamJobStatus) -> Vec<&PodView> {
        incarnation_pods(self.obs, st)
    }

    /// Every pod of the incarnation `st` names is up and not going away, and the runtime
    /// (pod 0) reports processing.
    pub(crate) fn runtime_running(&self, st: &StreamJobStatus) -> bool {
        let pods = self.incarnation_pods(st);
        let up = |i: u32| {
            pods.iter()
                .any(|p| p.index == i && p.phase == PodPhase::Running && !p.deleting)
        };
        (0..pods_of(st)).all(up)
            && self
                .obs
                .runtime
                .as_ref()
                .is_some_and(|r| r.state == JobState::Running)
    }

    /// A fresh, unique id for a lineage start after the incarnation `st` names.
    pub(crate) fn start_id(&self, st: &StreamJobStatus) -> String {
        format!(
            "{}-g{}-i{}-{}",
            self.job.name,
            self.job.generation,
            st.incarnation + 1,
            self.now.as_millisecond()
        )
    }
}

/// What one decision has produced so far: the status being built, the actions and events in
/// order, and when to look again.
pub(crate) struct Step {
    pub(crate) st: StreamJobStatus,
    pub(crate) actions: Vec<Action>,
    pub(crate) events: Vec<Event>,
    pub(crate) requeue: std::time::Duration,
}

impl Step {
    pub(crate) fn event(&mut self, reason: Reason, message: impl Into<String>) {
        self.events.push(Event::new(reason, message));
    }

    /// The spec the pods run.
    pub(crate) fn reconciled(&self) -> Option<StreamJobSpec> {
        reconciled_spec(&self.st)
    }
}

/// The one place that orders the sub-decisions: deletion first, then an invalid spec, an
/// operation in flight, the first deploy, suspended or failed jobs, a wanted suspend, a spec
/// change, a restart nonce, and finally supervising a running job.
fn choose(f: &Facts<'_>, s: &mut Step) {
    if f.job.deleting {
        return operation::delete(f, s);
    }
    let problems = problems(f);
    if !problems.is_empty() {
        return invalid(f, s, &problems);
    }
    lifecycle::clear_invalid(&mut s.st);
    observe_runtime(f, &mut s.st);
    if s.st.operation.is_some() {
        return operation::advance(f, s);
    }
    if s.st.last_reconciled_spec.is_none() {
        return deploy::first(f, s);
    }
    match s.st.lifecycle_state {
        LifecycleState::Suspended => return deploy::while_suspended(f, s),
        LifecycleState::Failed | LifecycleState::Finished => return deploy::while_failed(f, s),
        _ => {}
    }
    if f.job.spec.state == weir_crds::DesiredState::Suspended {
        return operation::begin_suspend(f, s);
    }
    if operation::on_spec_change(f, s) == operation::SpecChangeHandled::Yes {
        return;
    }
    if f.job.spec.restart_nonce != s.st.observed_restart_nonce {
        s.st.observed_restart_nonce = f.job.spec.restart_nonce;
        return operation::begin_restart(f, s, "restartNonce changed", false);
    }
    restart::supervise(f, s);
}

/// A job whose spec cannot be read (`crate::watched`) and whose pods run no spec this
/// operator deployed: nothing is deployed, `Ready` says why naming the field (an event the
/// first time), and a deletion only removes the finalizer (there is no state to save).
/// A job with a deployed spec is decided by [`decide`] with that spec instead.
#[must_use]
pub fn unreadable(
    status: &StreamJobStatus,
    error: &weir_crds::validate::FieldError,
    deleting: bool,
    now: Timestamp,
) -> Decision {
    let mut s = Step {
        st: status.clone(),
        actions: Vec::new(),
        events: Vec::new(),
        requeue: POLL,
    };
    if deleting {
        s.actions.push(Action::RemoveFinalizer);
    } else {
        let message = format!("{}: {}", error.path, error.message);
        if lifecycle::mark_invalid(&mut s.st, &message) {
            s.event(Reason::InvalidSpec, format!("not deployed: {message}"));
        }
        lifecycle::set_conditions(&mut s.st, now);
    }
    Decision {
        status: s.st,
        actions: s.actions,
        events: s.events,
        requeue: s.requeue,
    }
}

/// Field errors from the spec itself and from the cluster.
fn problems(f: &Facts<'_>) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = f
        .job
        .spec
        .validate(&f.job.name)
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect();
    p.extend(f.obs.problems.iter().cloned());
    p
}

fn invalid(f: &Facts<'_>, s: &mut Step, problems: &[(String, String)]) {
    let message = problems
        .iter()
        .map(|(p, m)| format!("{p}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let first_time = lifecycle::mark_invalid(&mut s.st, &message);
    if first_time || s.st.observed_generation != Some(f.job.generation) {
        s.event(Reason::InvalidSpec, format!("not deployed: {message}"));
    }
    // A deployed job keeps running its last valid spec (and finishes an operation in
    // flight, whose target was valid); nothing new is deployed.
    s.requeue = POLL;
    if s.st.operation.is_some() {
        operation::advance(f, s);
    } else if s.st.last_reconciled_spec.is_some()
        && !matches!(
            s.st.lifecycle_state,
            LifecycleState::Suspended | LifecycleState::Failed | LifecycleState::Finished
        )
    {
        restart::supervise(f, s);
    }
}

/// Copy what the runtime reports into the status.
fn observe_runtime(f: &Facts<'_>, st: &mut StreamJobStatus) {
    let Some(rt) = &f.obs.runtime else { return };
    if !rt.job_id.is_empty() {
        st.job_id = Some(rt.job_id.clone());
    }
    if let Some(c) = &rt.last_checkpoint {
        let newer = st
            .last_checkpoint
            .as_ref()
            .is_none_or(|old| old.id != c.id || old.path != c.path);
        if newer {
            st.last_checkpoint = Some(c.clone());
        }
    }
}

/// Statuses written before the image was part of the reconciled spec leave it out (absent
/// meant "the operator's default, whatever it is now"). Pin it once: the spec the pods run
/// gets the image they run (`deployedImage`), so a default changed since is seen as a
/// change; specs not running (a stable spec the pods left, a rolled-back spec, the target
/// of an operation) get the default, which is what they would have started with.
fn pin_legacy_images(settings: &Settings, st: &mut StreamJobStatus) {
    let default = settings.default_image.clone();
    let deployed = st.deployed_image.clone().unwrap_or_else(|| default.clone());
    let stable_runs = st.last_stable_spec == st.last_reconciled_spec;
    pin_image(&mut st.last_reconciled_spec, &deployed);
    pin_image(
        &mut st.last_stable_spec,
        if stable_runs { &deployed } else { &default },
    );
    pin_image(&mut st.rolled_back_spec, &default);
    if let Some(op) = st.operation.as_mut() {
        pin_image(&mut op.target_spec, &default);
    }
}
