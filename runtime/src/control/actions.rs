//! What was asked of the job through the control API, and what came of it: the audit trail
//! the console shows (on Kubernetes the operator also records its own actions as events).
//! Refused attempts are kept too, so a probe without the token is seen, not just stopped.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Actions kept.
const KEPT: usize = 50;

/// One request to act on the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// When, ms since epoch.
    pub at_ms: i64,
    /// `savepoint`, `stop`, `stop with savepoint`, or the refused route.
    pub action: String,
    /// `accepted (sp-req-1)`, `refused: wrong control token`, ...
    pub outcome: String,
    /// The request carried the job's control token (always false when the job has none).
    pub authenticated: bool,
}

/// The newest [`KEPT`] actions.
#[derive(Debug, Default)]
pub struct ActionLog {
    kept: Mutex<VecDeque<Action>>,
}

impl ActionLog {
    /// Record an action, and log it.
    pub fn record(&self, action: &str, outcome: &str, authenticated: bool) {
        tracing::info!(action, outcome, authenticated, "control action");
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(Action {
                at_ms: crate::ids::now_millis(),
                action: action.to_string(),
                outcome: outcome.to_string(),
                authenticated,
            });
        }
    }

    /// The actions kept, oldest first.
    #[must_use]
    pub fn recent(&self) -> Vec<Action> {
        self.kept
            .lock()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_actions() {
        let log = ActionLog::default();
        for i in 0..KEPT + 3 {
            log.record("savepoint", &format!("accepted ({i})"), true);
        }
        let r = log.recent();
        assert_eq!(r.len(), KEPT);
        assert_eq!(r[0].outcome, "accepted (3)");
        assert_eq!(r[KEPT - 1].outcome, format!("accepted ({})", KEPT + 2));
    }
}
