//! Supervising a deployed job: healing failed or vanished pods with exponential backoff and
//! a restart budget per window, and restarting a job that stopped making checkpoints.
//!
//! The unit of healing is the incarnation: in a job of several pods one pod failing or
//! vanishing fails them all (the others stop within seconds once their links break), so
//! every pod of it is deleted and, once all are gone, a new incarnation starts whole from
//! the newest checkpoint.
//!
//! Backoff and budget are computed from `status.restarts`, never from operator memory, so
//! they hold across operator restarts and leader changes.

use weir_crds::LifecycleState;

use super::deploy::{self, Pods};
use super::{
    Facts, PodPhase, PodView, RuntimeOutcome, SHORT, Step, operation, pods_of, savepoints,
};
use crate::events::Reason;

/// A pod created this recently and not listed yet is still being created, not vanished.
const CREATE_GRACE_SECS: f64 = 10.0;

/// A pod's failure in one line, e.g. `pod store-sales-3 OOMKilled (exit 137)`.
#[must_use]
pub fn describe_failure(p: &PodView) -> String {
    let mut s = format!("pod {}", p.name);
    match (&p.outcome, &p.reason) {
        (Some(RuntimeOutcome::Failed { error }), _) => s.push_str(&format!(" failed: {error}")),
        (Some(RuntimeOutcome::Refused { error }), _) => {
            s.push_str(&format!(" refused to start: {error}"));
        }
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

/// Whether [`heal`] took the job in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heal {
    /// The current pod is fine (or just being created, or going away on request).
    NotNeeded,
    /// The pod failed, vanished or finished: the step replaces it, waits for the backoff,
    /// or ends the job (finished, or out of restarts).
    Handled,
}

/// How the current incarnation's pods are doing, for healing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PodHealth {
    /// Running, starting, going away on request, or created a moment ago and not listed yet;
    /// in a job of several pods also a pod that ended well while pod 0 still runs (pod 0
    /// says how the job ends).
    Fine,
    /// The runtime finished its bounded input and committed the final checkpoint.
    Finished,
    /// Failed or vanished, in one line.
    Failed(String),
    /// The runtime refused to start: restarting it cannot help until the user decides.
    Refused(String),
}

/// Restarts left in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Left,
    /// The job is now `Failed`.
    Exhausted,
}

/// Keep a deployed job healthy. Performs no I/O.
pub(crate) fn supervise(f: &Facts<'_>, s: &mut Step) {
    if heal(f, s) == Heal::Handled {
        return;
    }
    if !f.runtime_running(&s.st) {
        if !f.incarnation_pods(&s.st).is_empty() {
            s.st.lifecycle_state = LifecycleState::Deploying;
            s.requeue = SHORT;
        }
        return;
    }
    if s.st.lifecycle_state != LifecycleState::Running {
        let lineage =
            s.st.job_id
                .as_deref()
                .map(|j| format!(" (lineage {j})"))
                .unwrap_or_default();
        let message = format!("incarnation {} is running{lineage}", s.st.incarnation);
        s.event(Reason::Running, message);
        s.st.lifecycle_state = LifecycleState::Running;
    }
    if s.st.running_since.is_none() {
        s.st.running_since = Some(f.now_time());
    }
    s.st.last_stable_spec = s.st.last_reconciled_spec.clone();
    if no_progress(f, s) == Heal::Handled {
        return;
    }
    savepoints::run(f, s);
}

/// Restart a job whose newest checkpoint is older than the progress timeout.
fn no_progress(f: &Facts<'_>, s: &mut Step) -> Heal {
    let limit = f.job.spec.progress_timeout();
    let since_checkpoint =
        s.st.last_checkpoint
            .as_ref()
            .and_then(|c| c.completed_at.as_ref())
            .map(|t| t.0);
    let since_running = s.st.running_since.as_ref().map(|t| t.0);
    let Some(last) = since_checkpoint.max(since_running) else {
        return Heal::NotNeeded;
    };
    let idle = f.secs_since(last);
    if idle <= limit.as_secs_f64() {
        return Heal::NotNeeded;
    }
    let why = format!(
        "no checkpoint completed for {}s (limit {}s)",
        idle as u64,
        limit.as_secs()
    );
    if budget(f, s, &why) == Budget::Left {
        operation::begin_restart(f, s, &why, true);
    }
    Heal::Handled
}

/// Drops restarts older than the window; when none are left, the job is `Failed` with `why`.
fn budget(f: &Facts<'_>, s: &mut Step, why: &str) -> Budget {
    let window = f.job.spec.restart.window.get().as_secs_f64();
    let now = f.now;
    s.st.restarts
        .recent
        .retain(|t| now.duration_since(t.0).as_secs_f64() < window);
    let max = f.job.spec.restart.max_restarts as usize;
    if s.st.restarts.recent.len() < max {
        return Budget::Left;
    }
    let msg = format!(
        "{max} restarts within {}; last: {why}",
        f.job.spec.restart.window
    );
    s.event(Reason::RestartBudgetExhausted, msg.clone());
    s.st.restarts.last_reason = Some(msg);
    s.st.lifecycle_state = LifecycleState::Failed;
    s.st.operation = None;
    Budget::Exhausted
}

/// How the current incarnation's pods are doing, taken together. Performs no I/O.
///
/// In order: nothing listed (just created, or vanished); a pod going away (on the
/// operator's request or a person's: what is gone is judged once it is); a pod failed (see
/// below for which one names the failure);
/// pod 0 ended (finished, stopped on request, or ended unasked); a pod missing that was
/// created long enough ago to be listed (vanished).
///
/// When several pods have failed, the others usually followed the first when their links
/// broke, and the runtime says so in their termination message; a pod that ended without
/// one (killed: OOM, `kill -9`, a node gone) is the likelier cause, so it names the
/// failure, then the lowest index. The reason is recorded when a failure is first seen,
/// which is usually before the others follow.
fn pod_health(f: &Facts<'_>, st: &weir_crds::StreamJobStatus) -> PodHealth {
    let just_created = st
        .incarnation_started_at
        .as_ref()
        .is_some_and(|t| f.secs_since(t.0) < CREATE_GRACE_SECS);
    let pods = f.incarnation_pods(st);
    let count = pods_of(st);
    let vanished = |index: u32| {
        let name = crate::pods::pod_name(&f.job.name, st.incarnation, index, count);
        PodHealth::Failed(format!("pod {name} vanished"))
    };
    if pods.is_empty() {
        return if just_created {
            PodHealth::Fine
        } else {
            vanished(0)
        };
    }
    if pods.iter().any(|p| p.deleting) {
        return PodHealth::Fine;
    }
    if let Some(p) = pods
        .iter()
        .filter(|p| matches!(p.phase, PodPhase::Failed | PodPhase::Unknown))
        .min_by_key(|p| (p.outcome.is_some(), p.index))
    {
        if let Some(r) = pods
            .iter()
            .find(|p| matches!(p.outcome, Some(RuntimeOutcome::Refused { .. })))
        {
            return PodHealth::Refused(describe_failure(r));
        }
        return PodHealth::Failed(describe_failure(p));
    }
    if let Some(p) = f.coordinator(st)
        && p.phase == PodPhase::Succeeded
    {
        return match &p.outcome {
            Some(RuntimeOutcome::Finished) => PodHealth::Finished,
            // A stop the operator asked for is handled by the operation.
            Some(RuntimeOutcome::Stopped { .. }) if st.operation.is_some() => PodHealth::Fine,
            _ => PodHealth::Failed(describe_failure(p)),
        };
    }
    match (0..count).find(|i| !pods.iter().any(|p| p.index == *i)) {
        Some(missing) if !just_created => vanished(missing),
        _ => PodHealth::Fine,
    }
}

/// Replace the current incarnation (every pod of it) if a pod failed or vanished. Performs no
/// I/O.
pub(crate) fn heal(f: &Facts<'_>, s: &mut Step) -> Heal {
    if s.st.incarnation == 0 {
        return Heal::NotNeeded;
    }
    let why = match pod_health(f, &s.st) {
        PodHealth::Fine => return Heal::NotNeeded,
        PodHealth::Finished => {
            s.st.lifecycle_state = LifecycleState::Finished;
            s.st.operation = None;
            s.st.restarts.last_reason =
                Some("input finished; the final checkpoint is committed".into());
            s.event(
                Reason::Finished,
                "input finished; final checkpoint committed",
            );
            return Heal::Handled;
        }
        PodHealth::Failed(why) => why,
        PodHealth::Refused(why) => {
            // Not retried and not counted: the same start would be refused the same way. A
            // spec change (e.g. `checkpoint.skipUnreadable`) or `restartNonce` brings it back.
            s.st.lifecycle_state = LifecycleState::Failed;
            s.st.operation = None;
            s.st.restarts.last_failure_at = Some(f.now_time());
            s.st.restarts.last_reason = Some(why.clone());
            s.event(Reason::NeedsDecision, why);
            return Heal::Handled;
        }
    };
    let started = s.st.incarnation_started_at.as_ref().map(|t| t.0);
    let recorded =
        s.st.restarts
            .last_failure_at
            .as_ref()
            .is_some_and(|t| started.is_none_or(|st| t.0 >= st));
    if !recorded {
        s.st.restarts.last_failure_at = Some(f.now_time());
        s.st.restarts.last_reason = Some(why.clone());
    }
    let why = s.st.restarts.last_reason.clone().unwrap_or(why);
    if budget(f, s, &why) == Budget::Exhausted {
        return Heal::Handled;
    }
    let r = &f.job.spec.restart;
    let wait = backoff(
        r.initial_backoff.get(),
        r.max_backoff.get(),
        s.st.restarts.recent.len(),
    );
    let failed_at =
        s.st.restarts
            .last_failure_at
            .as_ref()
            .map_or(f.now, |t| t.0);
    let waited = f.secs_since(failed_at);
    if deploy::delete_all_pods(f, s) == Pods::Remaining {
        s.requeue = SHORT;
        return Heal::Handled;
    }
    if waited < wait.as_secs_f64() {
        s.requeue = std::time::Duration::from_secs_f64(wait.as_secs_f64() - waited);
        if s.st.operation.is_none() {
            s.st.lifecycle_state = LifecycleState::Deploying;
        }
        return Heal::Handled;
    }
    s.st.restarts.count += 1;
    s.st.restarts.recent.push(f.now_time());
    let message = format!(
        "{why}; restart {} from the newest checkpoint (waited {}s)",
        s.st.restarts.count, waited as u64
    );
    s.event(Reason::Restarting, message);
    deploy::create_pod(f, s);
    Heal::Handled
}
