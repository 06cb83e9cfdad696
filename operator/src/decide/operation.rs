//! Stop-then-start operations: upgrade, restart, suspend, rollback and the final savepoint
//! of a deletion. An operation lives in `status.operation`, so it survives operator
//! restarts; each pass moves it at most one step.
//!
//! # Guarantees
//! - At most one incarnation writes: the next pod is created only when no pod of the job
//!   exists any more, not even a terminating one.
//! - No silent downgrade: a `savepoint` upgrade whose savepoint cannot be taken waits, with a
//!   condition saying why, until it can or the user changes `upgradeMode`.

use weir_crds::{
    LifecycleState, Operation, OperationKind, OperationPhase, SavepointTrigger, StartPoint,
    StopMode, UpgradeMode,
};

use super::spec_change::{SpecChange, classify};
use super::{Action, Decider, PodPhase, SHORT, spec_json};
use crate::events::Reason;

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

impl Decider<'_> {
    fn begin(&mut self, kind: OperationKind, stop: StopMode, target_spec: Option<String>) {
        self.st.operation = Some(Operation {
            kind,
            phase: OperationPhase::Stopping,
            stop,
            started_at: self.now_time(),
            stop_requested_at: None,
            savepoint: None,
            target_spec,
            waiting: None,
            started_incarnation: None,
        });
        if matches!(kind, OperationKind::Upgrade | OperationKind::Rollback) {
            self.st.lifecycle_state = LifecycleState::Upgrading;
        }
        self.continue_operation();
    }

    /// Acts on a change of the effective spec (the image included: a new operator default
    /// is an image change); returns whether one was found that needs the pods.
    pub(crate) fn spec_changed(&mut self) -> bool {
        let target = spec_json(&self.target);
        if self.st.last_reconciled_spec.as_deref() == Some(target.as_str()) {
            return false;
        }
        if self.st.rolled_back_spec.as_deref() == Some(target.as_str()) {
            // This spec failed and was rolled back; it is not retried until it changes.
            return false;
        }
        self.st.rolled_back_spec = None;
        let old = self.reconciled();
        let (class, fields) = match &old {
            Some(old) => classify(old, &self.target),
            None => (SpecChange::Upgrade, vec!["spec"]),
        };
        let fields = self.describe_change(old.as_ref(), &fields);
        match class {
            SpecChange::Ignore => {
                self.st.last_reconciled_spec = Some(target);
                false
            }
            SpecChange::Restart => {
                self.event(
                    Reason::UpgradeStarted,
                    format!("{fields}: restarting from the newest checkpoint"),
                );
                self.begin(OperationKind::Restart, StopMode::Checkpoint, Some(target));
                true
            }
            SpecChange::Upgrade => {
                let mode = self.job.spec.upgrade_mode;
                self.event(
                    Reason::UpgradeStarted,
                    format!("{fields}: upgrading in {mode:?} mode")
                        .replace("LastState", "last-state"),
                );
                self.begin(OperationKind::Upgrade, stop_for(mode), Some(target));
                true
            }
        }
    }

    /// `image changed from X to Y; parallelism, pipeline changed`.
    fn describe_change(
        &self,
        old: Option<&weir_crds::StreamJobSpec>,
        fields: &[&'static str],
    ) -> String {
        let mut parts = Vec::new();
        if fields.contains(&"image") {
            let image = |s: Option<&weir_crds::StreamJobSpec>| {
                s.and_then(|s| s.image.clone())
                    .unwrap_or_else(|| "the default image".into())
            };
            parts.push(format!(
                "image changed from {} to {}",
                image(old),
                image(Some(&self.target))
            ));
        }
        let others: Vec<&str> = fields.iter().copied().filter(|f| *f != "image").collect();
        if !others.is_empty() {
            parts.push(format!("{} changed", others.join(", ")));
        }
        parts.join("; ")
    }

    /// Restart with the current spec from the newest checkpoint.
    pub(crate) fn begin_restart(&mut self, why: &str, counted: bool) {
        if counted {
            self.st.restarts.count += 1;
            self.st.restarts.recent.push(self.now_time());
            self.st.restarts.last_reason = Some(why.to_string());
            self.event(Reason::NoProgress, format!("restarting: {why}"));
        } else {
            self.event(Reason::Restarting, format!("restarting: {why}"));
        }
        self.begin(OperationKind::Restart, StopMode::Checkpoint, None);
    }

    /// Stop as `upgradeMode` says (with a savepoint, a final checkpoint, or plainly) and
    /// remove the pods.
    pub(crate) fn begin_suspend(&mut self) {
        let stop = stop_for(self.job.spec.upgrade_mode);
        self.begin(OperationKind::Suspend, stop, None);
    }

    pub(crate) fn continue_operation(&mut self) {
        let Some(op) = self.st.operation.clone() else {
            return;
        };
        match op.phase {
            OperationPhase::Stopping => self.stopping(op),
            OperationPhase::Starting => self.starting(op),
        }
    }

    fn set_op(&mut self, op: Operation) {
        self.st.operation = Some(op);
    }

    /// Waits for a savepoint from the running pod; returns whether it is there.
    fn await_savepoint(&mut self, op: &mut Operation) -> bool {
        if op.savepoint.is_some() {
            return true;
        }
        let timeout = self.job.spec.savepoint.timeout.get();
        let pod = self.current_pod().cloned();
        match pod {
            Some(p) if p.phase == PodPhase::Succeeded => {
                if let Some(path) = p.stop_savepoint() {
                    op.savepoint = Some(path.to_string());
                    op.waiting = None;
                    self.add_savepoint(path.to_string(), trigger_for(op.kind));
                    return true;
                }
                // Exited without a savepoint: restart the old spec and ask again.
                op.waiting = Some(format!(
                    "pod {} exited without a savepoint ({:?}); restarting the job to try again",
                    p.name, p.outcome
                ));
                op.stop_requested_at = None;
                self.event(
                    Reason::SavepointFailed,
                    op.waiting.clone().unwrap_or_default(),
                );
                self.set_op(op.clone());
                self.heal();
                false
            }
            Some(_) if self.runtime_running() => {
                let due = op
                    .stop_requested_at
                    .as_ref()
                    .is_none_or(|t| self.secs_since(t.0) > timeout.as_secs_f64());
                if due {
                    if op.stop_requested_at.is_some() {
                        op.waiting = Some(format!(
                            "no savepoint within {}; asked again",
                            self.job.spec.savepoint.timeout
                        ));
                        self.event(
                            Reason::SavepointFailed,
                            op.waiting.clone().unwrap_or_default(),
                        );
                    }
                    op.stop_requested_at = Some(self.now_time());
                    if let Some(p) = self.current_pod() {
                        self.actions.push(Action::StopWithSavepoint {
                            pod: p.name.clone(),
                        });
                    }
                }
                self.requeue = SHORT;
                self.set_op(op.clone());
                false
            }
            other => {
                let why = match &other {
                    None => "no runtime pod exists".to_string(),
                    Some(p) if p.phase == PodPhase::Failed => format!("pod {} failed", p.name),
                    Some(p) => format!("pod {} is not running yet ({:?})", p.name, p.phase),
                };
                let w = format!(
                    "a savepoint needs a running job: {why}; waiting (set upgradeMode: last-state or stateless to go on without one)"
                );
                if op.waiting.as_deref() != Some(w.as_str()) {
                    self.event(Reason::SavepointFailed, w.clone());
                }
                op.waiting = Some(w);
                op.stop_requested_at = None;
                self.set_op(op.clone());
                // A failed or vanished pod is healed (old spec, budget and backoff apply),
                // so the savepoint can be taken once it runs again.
                self.heal();
                false
            }
        }
    }

    fn stopping(&mut self, mut op: Operation) {
        if matches!(op.kind, OperationKind::Upgrade | OperationKind::Suspend)
            && op.savepoint.is_none()
        {
            // The user may change upgradeMode while an upgrade waits: that is their decision.
            op.stop = stop_for(self.job.spec.upgrade_mode);
        }
        if op.stop == StopMode::Savepoint && !self.await_savepoint(&mut op) {
            return;
        }
        op.waiting = None;
        self.set_op(op.clone());
        if self.delete_all_pods() {
            self.requeue = SHORT;
            return;
        }
        match op.kind {
            OperationKind::Suspend => {
                self.st.operation = None;
                self.st.lifecycle_state = LifecycleState::Suspended;
                self.st.running_since = None;
                // Where resuming starts: the savepoint, the lineage's newest checkpoint
                // (start unchanged), or empty state.
                let how = match op.stop {
                    StopMode::Savepoint => {
                        self.st.start = Some(StartPoint {
                            id: self.start_id(),
                            from: op.savepoint.clone(),
                        });
                        format!("with savepoint {}", op.savepoint.as_deref().unwrap_or("-"))
                    }
                    StopMode::Checkpoint => "after a final checkpoint".to_string(),
                    StopMode::Stateless => {
                        self.st.start = Some(StartPoint {
                            id: self.start_id(),
                            from: None,
                        });
                        "(stateless: resuming starts empty)".to_string()
                    }
                };
                self.event(Reason::Suspended, format!("stopped {how}"));
            }
            OperationKind::Delete => {}
            _ => {
                op.phase = OperationPhase::Starting;
                self.set_op(op.clone());
                self.starting(op);
            }
        }
    }

    fn starting(&mut self, mut op: Operation) {
        if op.started_incarnation.is_none() {
            if self.delete_all_pods() {
                self.requeue = SHORT;
                return;
            }
            if let Some(t) = &op.target_spec {
                self.st.last_reconciled_spec = Some(t.clone());
            }
            match op.stop {
                StopMode::Savepoint => {
                    self.st.start = Some(StartPoint {
                        id: self.start_id(),
                        from: op.savepoint.clone(),
                    });
                }
                StopMode::Stateless => {
                    self.st.start = Some(StartPoint {
                        id: self.start_id(),
                        from: None,
                    });
                }
                StopMode::Checkpoint => {}
            }
            op.started_incarnation = Some(self.st.incarnation + 1);
            self.set_op(op);
            self.create_pod();
            return;
        }
        if self.runtime_running() {
            self.st.operation = None;
            self.st.lifecycle_state = LifecycleState::Running;
            self.st.running_since = Some(self.now_time());
            self.st.last_stable_spec = self.st.last_reconciled_spec.clone();
            let (reason, msg) = match op.kind {
                OperationKind::Upgrade => (Reason::UpgradeCompleted, "the new spec is running"),
                OperationKind::Rollback => (
                    Reason::UpgradeCompleted,
                    "rolled back: the last stable spec is running",
                ),
                _ => (Reason::Running, "restarted and running"),
            };
            self.event(reason, msg);
            return;
        }
        let deadline = self.job.spec.upgrade.ready_timeout.get();
        let elapsed = self
            .st
            .incarnation_started_at
            .as_ref()
            .map(|t| self.secs_since(t.0))
            .unwrap_or(0.0);
        if op.kind == OperationKind::Upgrade && elapsed > deadline.as_secs_f64() {
            return self.upgrade_not_ready(op);
        }
        if !self.heal() {
            self.st.lifecycle_state = LifecycleState::Upgrading;
            self.requeue = SHORT;
        }
    }

    fn upgrade_not_ready(&mut self, op: Operation) {
        let why = format!(
            "the new spec did not become ready within {}",
            self.job.spec.upgrade.ready_timeout
        );
        let stable = self.st.last_stable_spec.clone();
        if self.job.spec.upgrade.rollback
            && let (Some(stable), Some(sp)) = (stable, op.savepoint.clone())
        {
            self.st.rolled_back_spec = self.st.last_reconciled_spec.clone();
            self.event(
                Reason::RollingBack,
                format!("{why}; rolling back to the last stable spec from savepoint {sp}"),
            );
            self.st.operation = Some(Operation {
                kind: OperationKind::Rollback,
                phase: OperationPhase::Stopping,
                stop: StopMode::Savepoint,
                started_at: self.now_time(),
                stop_requested_at: None,
                savepoint: Some(sp),
                target_spec: Some(stable),
                waiting: None,
                started_incarnation: None,
            });
            self.continue_operation();
            return;
        }
        self.event(
            Reason::UpgradeFailed,
            format!("{why}; the job is Failed until the spec changes"),
        );
        self.st.operation = None;
        self.st.lifecycle_state = LifecycleState::Failed;
        self.st.restarts.last_reason = Some(why);
        self.delete_all_pods();
    }

    /// The finalizer: an optional final savepoint, then the pods go. Storage is never
    /// touched: checkpoints and savepoints outlive the StreamJob.
    pub(crate) fn delete(&mut self) {
        if self.st.lifecycle_state != LifecycleState::Deleting {
            self.st.lifecycle_state = LifecycleState::Deleting;
            self.event(
                Reason::Deleting,
                "removing the pods; checkpoints and savepoints are kept",
            );
        }
        let wants_savepoint = self.job.spec.savepoint_on_delete;
        let in_delete_op = matches!(&self.st.operation, Some(o) if o.kind == OperationKind::Delete);
        if wants_savepoint && !in_delete_op && self.runtime_running() {
            self.st.operation = Some(Operation {
                kind: OperationKind::Delete,
                phase: OperationPhase::Stopping,
                stop: StopMode::Savepoint,
                started_at: self.now_time(),
                stop_requested_at: Some(self.now_time()),
                savepoint: None,
                target_spec: None,
                waiting: None,
                started_incarnation: None,
            });
            if let Some(p) = self.current_pod() {
                self.actions.push(Action::StopWithSavepoint {
                    pod: p.name.clone(),
                });
            }
            self.requeue = SHORT;
            return;
        }
        if let Some(mut op) = self
            .st
            .operation
            .clone()
            .filter(|o| o.kind == OperationKind::Delete)
            && op.savepoint.is_none()
        {
            let timeout = self.job.spec.savepoint.timeout.get().as_secs_f64();
            let waited = op
                .stop_requested_at
                .as_ref()
                .map(|t| self.secs_since(t.0))
                .unwrap_or(0.0);
            let pod = self.current_pod().cloned();
            match pod {
                Some(p) if p.phase == PodPhase::Succeeded => {
                    if let Some(path) = p.stop_savepoint() {
                        op.savepoint = Some(path.to_string());
                        self.add_savepoint(path.to_string(), SavepointTrigger::Delete);
                    }
                }
                Some(p) if p.phase == PodPhase::Running && waited <= timeout => {
                    self.requeue = SHORT;
                    return;
                }
                _ => {
                    self.event(
                        Reason::SavepointFailed,
                        "the final savepoint was not taken; deleting anyway (checkpoints are kept)",
                    );
                    op.savepoint = Some(String::new());
                }
            }
            self.st.operation = Some(op);
        }
        if self.delete_all_pods() {
            self.requeue = SHORT;
            return;
        }
        self.actions.push(Action::RemoveFinalizer);
    }
}
