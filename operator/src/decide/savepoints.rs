//! Savepoints of a running job: triggered by `savepointTriggerNonce` or `savepoint.periodic`,
//! followed until the runtime reports them, and listed in `status.savepoints`. Periodic and
//! manual ones are kept up to `historyMaxCount` (older ones are disposed, except the one the
//! lineage started from, and stay listed until their delete succeeded; failed deletes are
//! retried); upgrade, suspend and delete savepoints are always kept.

use weir_crds::control::SavepointState;
use weir_crds::{Disposal, PendingSavepoint, SavepointStatus, SavepointTrigger, StreamJobStatus};

use super::{Action, Facts, SHORT, Step};
use crate::events::Reason;

/// Where a pending savepoint request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    /// The process that had the request is gone, or the request never reached it.
    Lost,
    /// Completed at this path.
    Completed(String),
    /// Failed, with the runtime's reason.
    Failed(String),
    /// Not done within `savepoint.timeout`.
    TimedOut,
    /// Still being taken.
    Pending,
}

/// Follow the pending savepoint, or start one when due. The job is running.
pub(crate) fn run(f: &Facts<'_>, s: &mut Step) {
    if let Some(p) = s.st.pending_savepoint.clone() {
        return follow(f, s, p);
    }
    let nonce = f.job.spec.savepoint_trigger_nonce;
    if nonce != s.st.observed_savepoint_trigger_nonce {
        return trigger(f, s, SavepointTrigger::Manual, nonce);
    }
    let Some(every) = f.job.spec.savepoint.periodic else {
        return;
    };
    let last =
        s.st.savepoints
            .iter()
            .map(|sp| sp.completed_at.0)
            .max()
            .into_iter()
            .chain(s.st.running_since.as_ref().map(|t| t.0))
            .max();
    let due = last.is_none_or(|l| f.secs_since(l) >= every.get().as_secs_f64());
    if due {
        trigger(f, s, SavepointTrigger::Periodic, nonce);
    } else if let Some(l) = last {
        let left = every.get().as_secs_f64() - f.secs_since(l);
        s.requeue = s
            .requeue
            .min(std::time::Duration::from_secs_f64(left.max(1.0)));
    }
}

fn trigger(f: &Facts<'_>, s: &mut Step, trigger: SavepointTrigger, nonce: i64) {
    // Pod 0: the coordinator takes savepoints, and the request's id is known only there.
    let Some(pod) = f.coordinator(&s.st).map(|p| p.name.clone()) else {
        return;
    };
    s.st.pending_savepoint = Some(PendingSavepoint {
        request_id: String::new(),
        incarnation: s.st.incarnation,
        trigger,
        requested_at: f.now_time(),
        nonce,
    });
    s.event(
        Reason::SavepointTriggered,
        format!("{trigger:?} savepoint requested from {pod}").to_lowercase(),
    );
    s.actions.push(Action::TriggerSavepoint { pod });
}

/// Where request `p` stands, from the runtime's report and the time. Performs no I/O.
fn progress(f: &Facts<'_>, st: &StreamJobStatus, p: &PendingSavepoint) -> Progress {
    if p.incarnation != st.incarnation || p.request_id.is_empty() {
        return Progress::Lost;
    }
    let report = f
        .obs
        .runtime
        .as_ref()
        .and_then(|r| r.savepoints.iter().find(|sp| sp.id == p.request_id));
    let timeout = f.job.spec.savepoint.timeout.get().as_secs_f64();
    match report {
        Some(sp) if sp.status == SavepointState::Completed => {
            Progress::Completed(sp.path.clone().unwrap_or_default())
        }
        Some(sp) if sp.status == SavepointState::Failed => {
            Progress::Failed(sp.error.clone().unwrap_or_default())
        }
        _ if f.secs_since(p.requested_at.0) > timeout => Progress::TimedOut,
        _ => Progress::Pending,
    }
}

fn follow(f: &Facts<'_>, s: &mut Step, p: PendingSavepoint) {
    let progress = progress(f, &s.st, &p);
    if progress == Progress::Pending {
        s.requeue = SHORT;
        return;
    }
    s.st.pending_savepoint = None;
    if progress == Progress::Lost {
        // Ask the current process.
        return trigger(f, s, p.trigger, p.nonce);
    }
    if p.trigger == SavepointTrigger::Manual {
        s.st.observed_savepoint_trigger_nonce = p.nonce;
    }
    match progress {
        Progress::Completed(path) => record(f, s, path, p.trigger),
        Progress::Failed(error) => s.event(
            Reason::SavepointFailed,
            format!("{:?} savepoint failed: {error}", p.trigger).to_lowercase(),
        ),
        Progress::TimedOut => s.event(
            Reason::SavepointFailed,
            format!(
                "{:?} savepoint not completed within {}",
                p.trigger, f.job.spec.savepoint.timeout
            )
            .to_lowercase(),
        ),
        Progress::Lost | Progress::Pending => {}
    }
}

/// Record a completed savepoint and trim the history.
pub(crate) fn record(f: &Facts<'_>, s: &mut Step, path: String, trigger: SavepointTrigger) {
    if s.st.savepoints.iter().any(|sp| sp.path == path) {
        return;
    }
    s.st.savepoints.push(SavepointStatus {
        path: path.clone(),
        trigger,
        completed_at: f.now_time(),
        disposal: None,
    });
    s.event(
        Reason::SavepointCompleted,
        format!("{trigger:?} savepoint {path}").to_lowercase(),
    );
    trim_history(f, s);
}

/// Whether `historyMaxCount` governs a savepoint: periodic and manual ones are routine and
/// replace each other; an upgrade, suspend or delete savepoint is the way back to a state the
/// user may need (the spec before an upgrade, the job before a suspend), as the field's
/// documentation promises, so it is never disposed automatically. One already being disposed
/// counts no more.
fn counts_toward_history(s: &SavepointStatus) -> bool {
    s.disposal.is_none()
        && matches!(
            s.trigger,
            SavepointTrigger::Periodic | SavepointTrigger::Manual
        )
}

/// Keep at most `historyMaxCount` periodic and manual savepoints; dispose the oldest beyond
/// it, never the one the current lineage started from. The entry stays, marked, until the
/// delete succeeded ([`super::acted::fold`] removes it), so a failed delete is retried.
fn trim_history(f: &Facts<'_>, s: &mut Step) {
    let max = f.job.spec.savepoint.history_max_count as usize;
    let keep = s.st.start.as_ref().and_then(|start| start.from.clone());
    while s
        .st
        .savepoints
        .iter()
        .filter(|sp| counts_toward_history(sp))
        .count()
        > max
    {
        let Some(gone) =
            s.st.savepoints
                .iter_mut()
                .find(|sp| counts_toward_history(sp) && Some(&sp.path) != keep.as_ref())
        else {
            break;
        };
        gone.disposal = Some(Disposal {
            failed_attempts: 0,
            last_attempt_at: f.now_time(),
            last_error: None,
        });
        let path = gone.path.clone();
        s.actions
            .push(Action::DisposeSavepoint { path: path.clone() });
        s.event(
            Reason::SavepointDisposed,
            format!("{path} dropped from the history (historyMaxCount {max}); deleting it"),
        );
    }
}

/// The longest pause between two deletes of one savepoint.
const MAX_DISPOSAL_PAUSE_SECS: f64 = 3600.0;

/// Delete again every savepoint whose delete failed, 30 s after the first failure, doubling
/// to at most an hour (and one whose delete's outcome was lost, after 30 s); runs on every
/// pass, whatever the job's state.
pub(crate) fn retry_disposals(f: &Facts<'_>, s: &mut Step) {
    let mut due = Vec::new();
    let mut wait = f64::INFINITY;
    for sp in &mut s.st.savepoints {
        let Some(d) = sp.disposal.as_mut() else {
            continue;
        };
        // Never failed: its delete started in this pass (then it is not due), or its outcome
        // was lost with the operator that sent it, so it is sent again after 30 s.
        let exp = d.failed_attempts.saturating_sub(1).min(16);
        let pause = (30.0 * f64::from(1u32 << exp)).min(MAX_DISPOSAL_PAUSE_SECS);
        let left = pause - f.secs_since(d.last_attempt_at.0);
        if left <= 0.0 {
            d.last_attempt_at = f.now_time();
            due.push(sp.path.clone());
        } else {
            wait = wait.min(left);
        }
    }
    for path in due {
        s.actions.push(Action::DisposeSavepoint { path });
    }
    if wait.is_finite() {
        s.requeue = s
            .requeue
            .min(std::time::Duration::from_secs_f64(wait.max(1.0)));
    }
}
