//! Savepoints of a running job: triggered by `savepointTriggerNonce` or `savepoint.periodic`,
//! followed until the runtime reports them, and listed in `status.savepoints`. Periodic and
//! manual ones are kept up to `historyMaxCount` (older ones are disposed, except the one the
//! lineage started from); upgrade, suspend and delete savepoints are always kept.

use weir_crds::control::SavepointState;
use weir_crds::{PendingSavepoint, SavepointStatus, SavepointTrigger};

use super::{Action, Decider};
use crate::events::Reason;

impl Decider<'_> {
    /// Follow the pending savepoint, or start one when due. The job is running.
    pub(crate) fn savepoints(&mut self) {
        if let Some(p) = self.st.pending_savepoint.clone() {
            return self.follow(p);
        }
        let nonce = self.job.spec.savepoint_trigger_nonce;
        if nonce != self.st.observed_savepoint_trigger_nonce {
            return self.trigger(SavepointTrigger::Manual, nonce);
        }
        let Some(every) = self.job.spec.savepoint.periodic else {
            return;
        };
        let last = self
            .st
            .savepoints
            .iter()
            .map(|s| s.completed_at.0)
            .max()
            .into_iter()
            .chain(self.st.running_since.as_ref().map(|t| t.0))
            .max();
        let due = last.is_none_or(|l| self.secs_since(l) >= every.get().as_secs_f64());
        if due {
            self.trigger(SavepointTrigger::Periodic, nonce);
        } else if let Some(l) = last {
            let left = every.get().as_secs_f64() - self.secs_since(l);
            self.requeue = self
                .requeue
                .min(std::time::Duration::from_secs_f64(left.max(1.0)));
        }
    }

    fn trigger(&mut self, trigger: SavepointTrigger, nonce: i64) {
        let Some(pod) = self.current_pod().map(|p| p.name.clone()) else {
            return;
        };
        self.st.pending_savepoint = Some(PendingSavepoint {
            request_id: String::new(),
            incarnation: self.st.incarnation,
            trigger,
            requested_at: self.now_time(),
            nonce,
        });
        self.event(
            Reason::SavepointTriggered,
            format!("{trigger:?} savepoint requested from {pod}").to_lowercase(),
        );
        self.actions.push(Action::TriggerSavepoint { pod });
    }

    fn follow(&mut self, p: PendingSavepoint) {
        let done = |st: &mut weir_crds::StreamJobStatus| {
            st.pending_savepoint = None;
            if p.trigger == SavepointTrigger::Manual {
                st.observed_savepoint_trigger_nonce = p.nonce;
            }
        };
        if p.incarnation != self.st.incarnation || p.request_id.is_empty() {
            // The process that had the request is gone (or the request never reached it):
            // ask the current one.
            self.st.pending_savepoint = None;
            return self.trigger(p.trigger, p.nonce);
        }
        let report = self
            .obs
            .runtime
            .as_ref()
            .and_then(|r| r.savepoints.iter().find(|s| s.id == p.request_id).cloned());
        let timeout = self.job.spec.savepoint.timeout.get().as_secs_f64();
        let waited = self.secs_since(p.requested_at.0);
        match report {
            Some(s) if s.status == SavepointState::Completed => {
                done(&mut self.st);
                self.add_savepoint(s.path.unwrap_or_default(), p.trigger);
            }
            Some(s) if s.status == SavepointState::Failed => {
                done(&mut self.st);
                self.event(
                    Reason::SavepointFailed,
                    format!(
                        "{:?} savepoint failed: {}",
                        p.trigger,
                        s.error.unwrap_or_default()
                    )
                    .to_lowercase(),
                );
            }
            _ if waited > timeout => {
                done(&mut self.st);
                self.event(
                    Reason::SavepointFailed,
                    format!(
                        "{:?} savepoint not completed within {}",
                        p.trigger, self.job.spec.savepoint.timeout
                    )
                    .to_lowercase(),
                );
            }
            _ => self.requeue = super::SHORT,
        }
    }
}

/// Whether `historyMaxCount` governs a savepoint: periodic and manual ones are routine and
/// replace each other; an upgrade, suspend or delete savepoint is the way back to a state the
/// user may need (the spec before an upgrade, the job before a suspend), as the field's
/// documentation promises, so it is never disposed automatically.
fn counts_toward_history(s: &SavepointStatus) -> bool {
    matches!(
        s.trigger,
        SavepointTrigger::Periodic | SavepointTrigger::Manual
    )
}

/// Keep at most `historyMaxCount` periodic and manual savepoints; dispose the oldest beyond
/// it, never the one the current lineage started from.
pub(crate) fn trim_history(d: &mut Decider<'_>) {
    let max = d.job.spec.savepoint.history_max_count as usize;
    let keep = d.st.start.as_ref().and_then(|s| s.from.clone());
    while d
        .st
        .savepoints
        .iter()
        .filter(|s| counts_toward_history(s))
        .count()
        > max
    {
        let Some(i) =
            d.st.savepoints
                .iter()
                .position(|s| counts_toward_history(s) && Some(&s.path) != keep.as_ref())
        else {
            break;
        };
        let gone = d.st.savepoints.remove(i);
        d.actions.push(Action::DisposeSavepoint {
            path: gone.path.clone(),
        });
        d.event(
            Reason::SavepointDisposed,
            format!(
                "{} dropped from the history (historyMaxCount {max})",
                gone.path
            ),
        );
    }
}
