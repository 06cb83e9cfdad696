//! What each console action changes. An action is a change to the StreamJob's spec, the same
//! one a person would `kubectl patch` (a nonce bumped, `state` flipped), so the operator's
//! reconcile carries it out exactly as it would a manifest change, and the spec stays the one
//! record of what was asked. The patch carries the `resourceVersion` the decision was made
//! on: two people bumping a nonce at once get one savepoint each or a conflict, never one
//! lost increment.

use serde_json::{Value, json};
use weir_crds::{DesiredState, StreamJob};

/// The actions the console offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `savepointTriggerNonce` + 1.
    Savepoint,
    /// `state: suspended` (stop with a savepoint, no pods).
    Suspend,
    /// `state: running` after a suspend.
    Resume,
    /// `restartNonce` + 1 (restart from the newest checkpoint).
    Restart,
}

impl Action {
    /// From the route's last segment.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "savepoint" => Some(Self::Savepoint),
            "suspend" => Some(Self::Suspend),
            "resume" => Some(Self::Resume),
            "restart" => Some(Self::Restart),
            _ => None,
        }
    }

    /// In an event's words.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Savepoint => "savepoint requested",
            Self::Suspend => "suspend requested",
            Self::Resume => "resume requested",
            Self::Restart => "restart from the newest checkpoint requested",
        }
    }

    /// The merge patch that asks for this action, or why it makes no sense now.
    ///
    /// # Errors
    /// The job is not in a state where the action means anything (resume of a running job).
    pub fn patch(self, job: &StreamJob) -> Result<Value, String> {
        let suspended = job.spec.state == DesiredState::Suspended;
        let spec = match self {
            Self::Savepoint if suspended => {
                return Err("the job is suspended: its suspend savepoint is its state".into());
            }
            Self::Savepoint => {
                json!({"savepointTriggerNonce": job.spec.savepoint_trigger_nonce.wrapping_add(1)})
            }
            Self::Suspend if suspended => return Err("the job is already suspended".into()),
            Self::Suspend => json!({"state": "suspended"}),
            Self::Resume if !suspended => return Err("the job is not suspended".into()),
            Self::Resume => json!({"state": "running"}),
            Self::Restart if suspended => {
                return Err("the job is suspended: resume it instead".into());
            }
            Self::Restart => json!({"restartNonce": job.spec.restart_nonce.wrapping_add(1)}),
        };
        Ok(json!({
            "metadata": {"resourceVersion": job.metadata.resource_version},
            "spec": spec,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    fn job(state: &str, nonce: i64) -> StreamJob {
        serde_json::from_value(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
            "metadata": {"name": "sales", "namespace": "shop", "resourceVersion": "42"},
            "spec": {
                "state": state, "savepointTriggerNonce": nonce, "restartNonce": nonce,
                "checkpoint": {"storage": "s3://b/c"},
                "pipeline": {
                    "source": {"kafka": {"bootstrapServers": "kafka:9092", "topic": "clicks"},
                               "schema": [{"name": "user", "type": "string"}]},
                    "sinks": [{"blackhole": {}}]
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn each_action_is_the_spec_change_a_person_would_make() {
        let running = job("running", 7);
        assert_eq!(
            Action::Savepoint.patch(&running).unwrap(),
            json!({"metadata": {"resourceVersion": "42"}, "spec": {"savepointTriggerNonce": 8}})
        );
        assert_eq!(
            Action::Restart.patch(&running).unwrap()["spec"],
            json!({"restartNonce": 8})
        );
        assert_eq!(
            Action::Suspend.patch(&running).unwrap()["spec"],
            json!({"state": "suspended"})
        );
        assert!(Action::Resume.patch(&running).is_err());
        let suspended = job("suspended", 7);
        assert_eq!(
            Action::Resume.patch(&suspended).unwrap()["spec"],
            json!({"state": "running"})
        );
        for a in [Action::Savepoint, Action::Suspend, Action::Restart] {
            assert!(a.patch(&suspended).is_err(), "{a:?}");
        }
        assert_eq!(Action::parse("savepoint"), Some(Action::Savepoint));
        assert_eq!(Action::parse("delete"), None);
    }
}
