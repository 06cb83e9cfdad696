//! Stop-then-start operations: upgrade, restart, suspend, rollback and the final savepoint
//! of a deletion. An operation lives in `status.operation`, so it survives operator
//! restarts; each pass moves it at most one step.
//!
//! # Guarantees
//! - At most one incarnation writes: the next incarnation's pods are created only when no
//!   pod of the job exists any more, not even a terminating one.
//! - In a job of several pods, the stop with a savepoint is asked of pod 0 (the
//!   coordinator; the others stop when it tells them), and its exit says what the stop left.
//! - No silent downgrade: a `savepoint` upgrade whose savepoint cannot be taken waits, with a
//!   condition saying why, until it can or the user changes `upgradeMode`.

use weir_crds::{
    LifecycleState, Operation, OperationKind, OperationPhase, SavepointTrigger, StartPoint,
    StopMode, StreamJobSpec, UpgradeMode,
};

use super::deploy::{self, Pods};
use super::restart::{self, Heal};
use super::spec_change::{SpecChange, classify};
use super::{Action, Facts, PodPhase, SHORT, Step, pods_of, savepoints, spec_json};
use crate::events::Reason;

/// Whether [`on_spec_change`] found a change that needs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpecChangeHandled {
    /// No change, only fields the operator reads, or a rolled-back spec not retried.
    No,
    /// A restart or upgrade began.
    Yes,
}

/// Whether the savepoint a stop needs is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SavepointWait {
    Taken,
    Waiting,
}

/// How an upgrade in `mode` stops the old pods.
fn stop_for(mode: UpgradeMode) -> StopMode {
    match mode {
        UpgradeMode::Savepoint => StopMode::Savepoint,
        UpgradeMode::LastState => StopMode::Checkpoint,
        UpgradeMode::Stateless => StopMode::Stateless,
    }
}

fn trigger_for(kind: OperationKind) -> SavepointTrigger {
    match kind {
        OperationKind::Suspend => SavepointTrigger::Suspend,
        OperationKind::Delete => SavepointTrigger::Delete,
        _ => SavepointTrigger::Upgrade,
    }
}

/// A fresh operation of `kind`, stopping the old pods by `stop`.
fn operation(f: &Facts<'_>, kind: OperationKind, stop: StopMode) -> Operation {
    Operation {
        kind,
        phase: OperationPhase::Stopping,
        stop,
        started_at: f.now_time(),
        stop_requested_at: None,
        savepoint: None,
        target_spec: None,
        waiting: None,
        started_incarnation: None,
    }
}

fn begin(
    f: &Facts<'_>,
    s: &mut Step,
    kind: OperationKind,
    stop: StopMode,
    target_spec: Option<String>,
) {
    s.st.operation = Some(Operation {
        target_spec,
        ..operation(f, kind, stop)
    });
    if matches!(kind, OperationKind::Upgrade | OperationKind::Rollback) {
        s.st.lifecycle_state = LifecycleState::Upgrading;
    }
    advance(f, s);
}

/// Acts on a change of the effective spec (the image included: a new operator default is an
/// image change).
pub(crate) fn on_spec_change(f: &Facts<'_>, s: &mut Step) -> SpecChangeHandled {
    let target = spec_json(&f.target);
    if s.st.last_reconciled_spec.as_deref() == Some(target.as_str()) {
        return SpecChangeHandled::No;
    }
    if s.st.rolled_back_spec.as_deref() == Some(target.as_str()) {
        // This spec failed and was rolled back; it is not retried until it changes.
        return SpecChangeHandled::No;
    }
    s.st.rolled_back_spec = None;
    let old = s.reconciled();
    let (class, fields) = match &old {
        Some(old) => classify(old, &f.target),
        None => (SpecChange::Upgrade, vec!["spec"]),
    };
    let fields = describe_change(old.as_ref(), &f.target, &fields);
    match class {
        SpecChange::Ignore => {
            s.st.last_reconciled_spec = Some(target);
            SpecChangeHandled::No
        }
        SpecChange::Restart => {
            s.event(
                Reason::UpgradeStarted,
                format!("{fields}: restarting from the newest checkpoint"),
            );
            begin(
                f,
                s,
                OperationKind::Restart,
                StopMode::Checkpoint,
                Some(target),
            );
            SpecChangeHandled::Yes
        }
        SpecChange::Upgrade => {
            let mode = f.job.spec.upgrade_mode;
            s.event(
                Reason::UpgradeStarted,
                format!("{fields}: upgrading in {mode:?} mode").replace("LastState", "last-state"),
            );
            begin(f, s, OperationKind::Upgrade, stop_for(mode), Some(target));
            SpecChangeHandled::Yes
        }
    }
}

/// `image changed from X to Y; parallelism, pipeline changed`.
fn describe_change(
    old: Option<&StreamJobSpec>,
    new: &StreamJobSpec,
    fields: &[&'static str],
) -> String {
    let mut parts = Vec::new();
    if fields.contains(&"image") {
        let image = |s: Option<&StreamJobSpec>| {
            s.and_then(|s| s.image.clone())
                .unwrap_or_else(|| "the default image".into())
        };
        parts.push(format!(
            "image changed from {} to {}",
            image(old),
            image(Some(new))
        ));
    }
    let others: Vec<&str> = fields.iter().copied().filter(|f| *f != "image").collect();
    if !others.is_empty() {
        parts.push(format!("{} changed", others.join(", ")));
    }
    parts.join("; ")
}

/// Restart with the current spec from the newest checkpoint; `counted` restarts use the
/// restart budget (a job that stopped making progress), others do not (a restart nonce).
pub(crate) fn begin_restart(f: &Facts<'_>, s: &mut Step, why: &str, counted: bool) {
    if counted {
        s.st.restarts.count += 1;
        s.st.restarts.recent.push(f.now_time());
        s.st.restarts.last_reason = Some(why.to_string());
        s.event(Reason::NoProgress, format!("restarting: {why}"));
    } else {
        s.event(Reason::Restarting, format!("restarting: {why}"));
    }
    begin(f, s, OperationKind::Restart, StopMode::Checkpoint, None);
}

/// Stop as `upgradeMode` says (with a savepoint, a final checkpoint, or plainly) and remove
/// the pods.
pub(crate) fn begin_suspend(f: &Facts<'_>, s: &mut Step) {
    let stop = stop_for(f.job.spec.upgrade_mode);
    begin(f, s, OperationKind::Suspend, stop, None);
}

/// Move the operation in flight one step.
pub(crate) fn advance(f: &Facts<'_>, s: &mut Step) {
    let Some(op) = s.st.operation.clone() else {
        return;
    };
    match op.phase {
        OperationPhase::Stopping => stopping(f, s, op),
        OperationPhase::Starting => starting(f, s, op),
    }
}

/// Why the current incarnation cannot take a savepoint: no pod, a failed pod, or a pod that
/// does not run yet (in index order, so a job of one pod reads as it always did).
fn not_running(f: &Facts<'_>, st: &weir_crds::StreamJobStatus) -> String {
    let pods = f.incarnation_pods(st);
    if pods.is_empty() {
        return "no runtime pod exists".to_string();
    }
    if let Some(p) = pods.iter().find(|p| p.phase == PodPhase::Failed) {
        return format!("pod {} failed", p.name);
    }
    if let Some(p) = pods
        .iter()
        .find(|p| p.phase != PodPhase::Running || p.deleting)
    {
        return format!("pod {} is not running yet ({:?})", p.name, p.phase);
    }
    let count = pods_of(st);
    if let Some(i) = (0..count).find(|i| !pods.iter().any(|p| p.index == *i)) {
        let name = crate::pods::pod_name(&f.job.name, st.incarnation, i, count);
        return format!("pod {name} does not exist");
    }
    format!(
        "pod {} is not running yet ({:?})",
        pods[0].name, pods[0].phase
    )
}

/// Waits for a savepoint from the running job (pod 0), asking for it when due.
fn await_savepoint(f: &Facts<'_>, s: &mut Step, op: &mut Operation) -> SavepointWait {
    if op.savepoint.is_some() {
        return SavepointWait::Taken;
    }
    let timeout = f.job.spec.savepoint.timeout.get();
    let pod = f.coordinator(&s.st).cloned();
    match pod {
        Some(p) if p.phase == PodPhase::Succeeded => {
            if let Some(path) = p.stop_savepoint() {
                op.savepoint = Some(path.to_string());
                op.waiting = None;
                savepoints::record(f, s, path.to_string(), trigger_for(op.kind));
                return SavepointWait::Taken;
            }
            // Exited without a savepoint: restart the old spec and ask again.
            op.waiting = Some(format!(
                "pod {} exited without a savepoint ({:?}); restarting the job to try again",
                p.name, p.outcome
            ));
            op.stop_requested_at = None;
            s.event(
                Reason::SavepointFailed,
                op.waiting.clone().unwrap_or_default(),
            );
            s.st.operation = Some(op.clone());
            restart::heal(f, s);
            SavepointWait::Waiting
        }
        Some(p) if f.runtime_running(&s.st) => {
            let due = op
                .stop_requested_at
                .as_ref()
                .is_none_or(|t| f.secs_since(t.0) > timeout.as_secs_f64());
            if due {
                // A first request clears what an earlier wait said (e.g. "no runtime pod
                // exists" before a heal); a repeated one says why it repeats.
                op.waiting = None;
                if op.stop_requested_at.is_some() {
                    op.waiting = Some(format!(
                        "no savepoint within {}; asked again",
                        f.job.spec.savepoint.timeout
                    ));
                    s.event(
                        Reason::SavepointFailed,
                        op.waiting.clone().unwrap_or_default(),
                    );
                }
                op.stop_requested_at = Some(f.now_time());
                s.actions.push(Action::StopWithSavepoint { pod: p.name });
            }
            s.requeue = SHORT;
            s.st.operation = Some(op.clone());
            SavepointWait::Waiting
        }
        _ => {
            let why = not_running(f, &s.st);
            let w = format!(
                "a savepoint needs a running job: {why}; waiting (set upgradeMode: last-state or stateless to go on without one)"
            );
            if op.waiting.as_deref() != Some(w.as_str()) {
                s.event(Reason::SavepointFailed, w.clone());
            }
            op.waiting = Some(w);
            op.stop_requested_at = None;
            s.st.operation = Some(op.clone());
            // A failed or vanished pod is healed (old spec, budget and backoff apply), so
            // the savepoint can be taken once it runs again.
            restart::heal(f, s);
            SavepointWait::Waiting
        }
    }
}

fn stopping(f: &Facts<'_>, s: &mut Step, mut op: Operation) {
    if matches!(op.kind, OperationKind::Upgrade | OperationKind::Suspend) && op.savepoint.is_none()
    {
        // The user may change upgradeMode while an upgrade waits: that is their decision.
        op.stop = stop_for(f.job.spec.upgrade_mode);
    }
    if op.stop == StopMode::Savepoint && await_savepoint(f, s, &mut op) == SavepointWait::Waiting {
        return;
    }
    op.waiting = None;
    s.st.operation = Some(op.clone());
    if deploy::delete_all_pods(f, s) == Pods::Remaining {
        s.requeue = SHORT;
        return;
    }
    match op.kind {
        OperationKind::Suspend => suspended(f, s, &op),
        OperationKind::Delete => {}
        _ => {
            op.phase = OperationPhase::Starting;
            s.st.operation = Some(op.clone());
            starting(f, s, op);
        }
    }
}

/// The suspend's pods are gone: record where resuming starts (the savepoint, the lineage's
/// newest checkpoint with `start` unchanged, or empty state).
fn suspended(f: &Facts<'_>, s: &mut Step, op: &Operation) {
    s.st.operation = None;
    s.st.lifecycle_state = LifecycleState::Suspended;
    s.st.running_since = None;
    let how = match op.stop {
        StopMode::Savepoint => {
            s.st.start = Some(StartPoint {
                id: f.start_id(&s.st),
                from: op.savepoint.clone(),
            });
            format!("with savepoint {}", op.savepoint.as_deref().unwrap_or("-"))
        }
        StopMode::Checkpoint => "after a final checkpoint".to_string(),
        StopMode::Stateless => {
            s.st.start = Some(StartPoint {
                id: f.start_id(&s.st),
                from: None,
            });
            "(stateless: resuming starts empty)".to_string()
        }
    };
    s.event(Reason::Suspended, format!("stopped {how}"));
}

fn starting(f: &Facts<'_>, s: &mut Step, mut op: Operation) {
    if op.started_incarnation.is_none() {
        if deploy::delete_all_pods(f, s) == Pods::Remaining {
            s.requeue = SHORT;
            return;
        }
        if let Some(t) = &op.target_spec {
            s.st.last_reconciled_spec = Some(t.clone());
        }
        match op.stop {
            StopMode::Savepoint => {
                s.st.start = Some(StartPoint {
                    id: f.start_id(&s.st),
                    from: op.savepoint.clone(),
                });
            }
            StopMode::Stateless => {
                s.st.start = Some(StartPoint {
                    id: f.start_id(&s.st),
                    from: None,
                });
            }
            StopMode::Checkpoint => {}
        }
        op.started_incarnation = Some(s.st.incarnation + 1);
        s.st.operation = Some(op);
        deploy::create_pod(f, s);
        return;
    }
    if f.runtime_running(&s.st) {
        s.st.operation = None;
        s.st.lifecycle_state = LifecycleState::Running;
        s.st.running_since = Some(f.now_time());
        s.st.last_stable_spec = s.st.last_reconciled_spec.clone();
        let (reason, msg) = match op.kind {
            OperationKind::Upgrade => (Reason::UpgradeCompleted, "the new spec is running"),
            OperationKind::Rollback => (
                Reason::UpgradeCompleted,
                "rolled back: the last stable spec is running",
            ),
            _ => (Reason::Running, "restarted and running"),
        };
        s.event(reason, msg);
        return;
    }
    let deadline = f.job.spec.upgrade.ready_timeout.get();
    let elapsed =
        s.st.incarnation_started_at
            .as_ref()
            .map(|t| f.secs_since(t.0))
            .unwrap_or(0.0);
    if op.kind == OperationKind::Upgrade && elapsed > deadline.as_secs_f64() {
        return upgrade_not_ready(f, s, op);
    }
    if restart::heal(f, s) == Heal::NotNeeded {
        s.st.lifecycle_state = LifecycleState::Upgrading;
        s.requeue = SHORT;
    }
}

fn upgrade_not_ready(f: &Facts<'_>, s: &mut Step, op: Operation) {
    let why = format!(
        "the new spec did not become ready within {}",
        f.job.spec.upgrade.ready_timeout
    );
    let stable = s.st.last_stable_spec.clone();
    if f.job.spec.upgrade.rollback
        && let (Some(stable), Some(sp)) = (stable, op.savepoint.clone())
    {
        s.st.rolled_back_spec = s.st.last_reconciled_spec.clone();
        s.event(
            Reason::RollingBack,
            format!("{why}; rolling back to the last stable spec from savepoint {sp}"),
        );
        s.st.operation = Some(Operation {
            savepoint: Some(sp),
            target_spec: Some(stable),
            ..operation(f, OperationKind::Rollback, StopMode::Savepoint)
        });
        advance(f, s);
        return;
    }
    s.event(
        Reason::UpgradeFailed,
        format!("{why}; the job is Failed until the spec changes"),
    );
    s.st.operation = None;
    s.st.lifecycle_state = LifecycleState::Failed;
    s.st.restarts.last_reason = Some(why);
    deploy::delete_all_pods(f, s);
}

/// The finalizer: an optional final savepoint, then the pods go. Storage is never touched:
/// checkpoints and savepoints outlive the StreamJob.
pub(crate) fn delete(f: &Facts<'_>, s: &mut Step) {
    if s.st.lifecycle_state != LifecycleState::Deleting {
        s.st.lifecycle_state = LifecycleState::Deleting;
        s.event(
            Reason::Deleting,
            "removing the pods; checkpoints and savepoints are kept",
        );
    }
    let wants_savepoint = f.job.spec.savepoint_on_delete;
    let in_delete_op = matches!(&s.st.operation, Some(o) if o.kind == OperationKind::Delete);
    if wants_savepoint && !in_delete_op && f.runtime_running(&s.st) {
        s.st.operation = Some(Operation {
            stop_requested_at: Some(f.now_time()),
            ..operation(f, OperationKind::Delete, StopMode::Savepoint)
        });
        if let Some(p) = f.coordinator(&s.st) {
            s.actions.push(Action::StopWithSavepoint {
                pod: p.name.clone(),
            });
        }
        s.requeue = SHORT;
        return;
    }
    if let Some(mut op) =
        s.st.operation
            .clone()
            .filter(|o| o.kind == OperationKind::Delete)
        && op.savepoint.is_none()
    {
        let timeout = f.job.spec.savepoint.timeout.get().as_secs_f64();
        let waited = op
            .stop_requested_at
            .as_ref()
            .map(|t| f.secs_since(t.0))
            .unwrap_or(0.0);
        match f.coordinator(&s.st) {
            Some(p) if p.phase == PodPhase::Succeeded => {
                if let Some(path) = p.stop_savepoint() {
                    op.savepoint = Some(path.to_string());
                    savepoints::record(f, s, path.to_string(), SavepointTrigger::Delete);
                }
            }
            Some(p) if p.phase == PodPhase::Running && waited <= timeout => {
                s.requeue = SHORT;
                return;
            }
            _ => {
                s.event(
                    Reason::SavepointFailed,
                    "the final savepoint was not taken; deleting anyway (checkpoints are kept)",
                );
                op.savepoint = Some(String::new());
            }
        }
        s.st.operation = Some(op);
    }
    if deploy::delete_all_pods(f, s) == Pods::Remaining {
        s.requeue = SHORT;
        return;
    }
    s.actions.push(Action::RemoveFinalizer);
}
