//! Supervising a deployed job: healing failed or vanished pods with exponential backoff and
//! a restart budget per window, and restarting a job that stopped making checkpoints.
//!
//! Backoff and budget are computed from `status.restarts`, never from operator memory, so
//! they hold across operator restarts and leader changes.

use weir_crds::LifecycleState;

use super::{Decider, PodPhase, PodView, RuntimeOutcome, SHORT};
use crate::events::Reason;

/// A pod created this recently and not listed yet is still being created, not vanished.
const CREATE_GRACE_SECS: f64 = 10.0;

/// A pod's failure in one line, e.g. `pod store-sales-3 OOMKilled (exit 137)`.
#[must_use]
pub fn describe_failure(p: &PodView) -> String {
    let mut s = format!("pod {}", p.name);
    match (&p.outcome, &p.reason) {
        (Some(RuntimeOutcome::Failed { error }), _) => s.push_str(&format!(" failed: {error}")),
        (_, Some(r)) => s.push_str(&format!(" {r}")),
        _ => s.push_str(&format!(" {:?}", p.phase).to_lowercase()),
    }
    if let Some(c) = p.exit_code {
        s.push_str(&format!(" (exit {c})"));
    }
    s
}

/// Wait before restart number `n + 1` of a window: `initial * 2^n`, at most `max`.
#[must_use]
pub fn backoff(
    initial: std::time::Duration,
    max: std::time::Duration,
    n: usize,
) -> std::time::Duration {
    let factor = 1u32
        .checked_shl(u32::try_from(n).unwrap_or(31))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

impl Decider<'_> {
    /// Keep a deployed job healthy. Performs no I/O.
    pub(crate) fn supervise(&mut self) {
        if self.heal() {
            return;
        }
        if !self.runtime_running() {
            if self.current_pod().is_some() {
                self.st.lifecycle_state = LifecycleState::Deploying;
                self.requeue = SHORT;
            }
            return;
        }
        if self.st.lifecycle_state != LifecycleState::Running {
            self.event(
                Reason::Running,
                format!(
                    "incarnation {} is running{}",
                    self.st.incarnation,
                    self.st
                        .job_id
                        .as_deref()
                        .map(|j| format!(" (lineage {j})"))
                        .unwrap_or_default()
                ),
            );
            self.st.lifecycle_state = LifecycleState::Running;
        }
        if self.st.running_since.is_none() {
            self.st.running_since = Some(self.now_time());
        }
        self.st.last_stable_spec = self.st.last_reconciled_spec.clone();
        if self.no_progress() {
            return;
        }
        self.savepoints();
    }

    /// Restart a job whose newest checkpoint is older than the progress timeout.
    fn no_progress(&mut self) -> bool {
        let limit = self.job.spec.progress_timeout();
        let since_checkpoint = self
            .st
            .last_checkpoint
            .as_ref()
            .and_then(|c| c.completed_at.as_ref())
            .map(|t| t.0);
        let since_running = self.st.running_since.as_ref().map(|t| t.0);
        let Some(last) = since_checkpoint.max(since_running) else {
            return false;
        };
        let idle = self.secs_since(last);
        if idle <= limit.as_secs_f64() {
            return false;
        }
        let why = format!(
            "no checkpoint completed for {}s (limit {}s)",
            idle as u64,
            limit.as_secs()
        );
        if self.budget_exhausted(&why) {
            return true;
        }
        self.begin_restart(&why, true);
        true
    }

    /// Restarts left in the window? When not, the job is `Failed` with `why`.
    fn budget_exhausted(&mut self, why: &str) -> bool {
        let window = self.job.spec.restart.window.get().as_secs_f64();
        let now = self.now;
        self.st
            .restarts
            .recent
            .retain(|t| now.duration_since(t.0).as_secs_f64() < window);
        let max = self.job.spec.restart.max_restarts as usize;
        if self.st.restarts.recent.len() < max {
            return false;
        }
        let msg = format!(
            "{max} restarts within {}; last: {why}",
            self.job.spec.restart.window
        );
        self.event(Reason::RestartBudgetExhausted, msg.clone());
        self.st.restarts.last_reason = Some(msg);
        self.st.lifecycle_state = LifecycleState::Failed;
        self.st.operation = None;
        true
    }

    /// Replace the current incarnation's pod if it failed or vanished; returns whether it
    /// did (or is waiting to). Performs no I/O.
    pub(crate) fn heal(&mut self) -> bool {
        if self.st.incarnation == 0 {
            return false;
        }
        let pod = self.current_pod().cloned();
        let just_created = self
            .st
            .incarnation_started_at
            .as_ref()
            .is_some_and(|t| self.secs_since(t.0) < CREATE_GRACE_SECS);
        let failure = match &pod {
            None if just_created => None,
            None => Some(format!(
                "pod {}-{} vanished",
                self.job.name, self.st.incarnation
            )),
            Some(p) if p.deleting => None,
            Some(p) if matches!(p.phase, PodPhase::Failed | PodPhase::Unknown) => {
                Some(describe_failure(p))
            }
            Some(p) if p.phase == PodPhase::Succeeded => match &p.outcome {
                Some(RuntimeOutcome::Finished) => {
                    self.st.lifecycle_state = LifecycleState::Finished;
                    self.st.operation = None;
                    self.st.restarts.last_reason =
                        Some("input finished; the final checkpoint is committed".into());
                    self.event(
                        Reason::Finished,
                        "input finished; final checkpoint committed",
                    );
                    return true;
                }
                // A stop the operator asked for is handled by the operation.
                Some(RuntimeOutcome::Stopped { .. }) if self.st.operation.is_some() => None,
                _ => Some(describe_failure(p)),
            },
            Some(_) => None,
        };
        let Some(why) = failure else { return false };
        let started = self.st.incarnation_started_at.as_ref().map(|t| t.0);
        let recorded = self
            .st
            .restarts
            .last_failure_at
            .as_ref()
            .is_some_and(|t| started.is_none_or(|s| t.0 >= s));
        if !recorded {
            self.st.restarts.last_failure_at = Some(self.now_time());
            self.st.restarts.last_reason = Some(why.clone());
        }
        let why = self.st.restarts.last_reason.clone().unwrap_or(why);
        if self.budget_exhausted(&why) {
            return true;
        }
        let r = &self.job.spec.restart;
        let wait = backoff(
            r.initial_backoff.get(),
            r.max_backoff.get(),
            self.st.restarts.recent.len(),
        );
        let failed_at = self
            .st
            .restarts
            .last_failure_at
            .as_ref()
            .map_or(self.now, |t| t.0);
        let waited = self.secs_since(failed_at);
        if self.delete_all_pods() {
            self.requeue = SHORT;
            return true;
        }
        if waited < wait.as_secs_f64() {
            self.requeue = std::time::Duration::from_secs_f64(wait.as_secs_f64() - waited);
            if self.st.operation.is_none() {
                self.st.lifecycle_state = LifecycleState::Deploying;
            }
            return true;
        }
        self.st.restarts.count += 1;
        self.st.restarts.recent.push(self.now_time());
        self.event(
            Reason::Restarting,
            format!(
                "{why}; restart {} from the newest checkpoint (waited {}s)",
                self.st.restarts.count, waited as u64
            ),
        );
        self.create_pod();
        true
    }
}
