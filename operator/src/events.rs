//! The closed set of Kubernetes Event reasons the operator emits, one per transition.
//! `kubectl describe streamjob` shows them in order, so each message says what happened and
//! why in one line.

/// Why an event was recorded. PascalCase, as Kubernetes reasons are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The spec cannot be deployed; the message names the field.
    InvalidSpec,
    /// A new incarnation's pods are being created.
    Deploying,
    /// The runtime reports running.
    Running,
    /// A failed or vanished pod is replaced.
    Restarting,
    /// Restart budget used up; the job is `Failed`.
    RestartBudgetExhausted,
    /// The runtime refused to start because only the user can decide how (an unreadable
    /// newest checkpoint); the job is `Failed` without retrying.
    NeedsDecision,
    /// No checkpoint completed within the progress timeout.
    NoProgress,
    /// A spec change is being rolled out.
    UpgradeStarted,
    /// The new spec runs.
    UpgradeCompleted,
    /// The new spec never became ready.
    UpgradeFailed,
    /// Going back to the last stable spec.
    RollingBack,
    /// A savepoint was requested.
    SavepointTriggered,
    /// A savepoint completed.
    SavepointCompleted,
    /// A savepoint could not be taken.
    SavepointFailed,
    /// A savepoint dropped from the history was deleted.
    SavepointDisposed,
    /// Stopped with a savepoint; no pods.
    Suspended,
    /// Started again after a suspend.
    Resumed,
    /// A bounded source was read to its end and the final checkpoint committed.
    Finished,
    /// The finalizer runs.
    Deleting,
    /// A person acted on the job from the web console (who, what); the transition it asks
    /// for gets its own event when the operator carries it out.
    ConsoleAction,
}

impl Reason {
    /// The reason string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::Deploying => "Deploying",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::RestartBudgetExhausted => "RestartBudgetExhausted",
            Self::NeedsDecision => "NeedsDecision",
            Self::NoProgress => "NoProgress",
            Self::UpgradeStarted => "UpgradeStarted",
            Self::UpgradeCompleted => "UpgradeCompleted",
            Self::UpgradeFailed => "UpgradeFailed",
            Self::RollingBack => "RollingBack",
            Self::SavepointTriggered => "SavepointTriggered",
            Self::SavepointCompleted => "SavepointCompleted",
            Self::SavepointFailed => "SavepointFailed",
            Self::SavepointDisposed => "SavepointDisposed",
            Self::Suspended => "Suspended",
            Self::Resumed => "Resumed",
            Self::Finished => "Finished",
            Self::Deleting => "Deleting",
            Self::ConsoleAction => "ConsoleAction",
        }
    }

    /// Warnings are the reasons a person should look at.
    #[must_use]
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Self::InvalidSpec
                | Self::Restarting
                | Self::RestartBudgetExhausted
                | Self::NeedsDecision
                | Self::NoProgress
                | Self::UpgradeFailed
                | Self::RollingBack
                | Self::SavepointFailed
        )
    }
}

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

/// One event to record on the StreamJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Reason.
    pub reason: Reason,
    /// What happened (Kubernetes truncates notes at 1 KiB).
    pub message: String,
}

impl Event {
    /// An event.
    #[must_use]
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.len() > 1000 {
            let mut cut = 1000;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Self { reason, message }
    }

    /// The `events.k8s.io/v1` object for this event about `regarding`. Every transition is
    /// its own Event (a generated name, no series): kube-runtime's recorder folds events of
    /// the same reason into one series and keeps only the first note, so `kubectl describe`
    /// would show one restart's cause for three different restarts.
    #[must_use]
    pub fn to_kube(
        &self,
        regarding: ObjectReference,
        instance: &str,
        now: jiff::Timestamp,
    ) -> k8s_openapi::api::events::v1::Event {
        let reason = self.reason.as_str().to_string();
        k8s_openapi::api::events::v1::Event {
            metadata: ObjectMeta {
                // The apiserver checks a generated-name prefix as a DNS subdomain whose
                // trailing dash stands for the random suffix; a trailing dot is refused
                // ("store-sales." is invalid), and the event is then never recorded.
                generate_name: Some(format!("{}-", regarding.name.clone().unwrap_or_default())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(reason.clone()),
            reason: Some(reason),
            note: Some(self.message.clone()),
            type_: Some(
                if self.reason.is_warning() {
                    "Warning"
                } else {
                    "Normal"
                }
                .into(),
            ),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            reporting_instance: Some(instance.chars().take(128).collect()),
            ..k8s_openapi::api::events::v1::Event::default()
        }
    }
}

/// `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "weir.dev/operator";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn every_event_is_its_own_valid_kubernetes_event() {
        let job = ObjectReference {
            api_version: Some("weir.dev/v1alpha1".into()),
            kind: Some("StreamJob".into()),
            name: Some("sales".into()),
            namespace: Some("shop".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let a = Event::new(Reason::Restarting, "pod sales-1 OOMKilled (exit 137)").to_kube(
            job.clone(),
            "weir-7d9f",
            now,
        );
        let b = Event::new(Reason::Restarting, "pod sales-2 Error (exit 1)").to_kube(
            job.clone(),
            "weir-7d9f",
            now,
        );
        // What events.k8s.io/v1 validation requires.
        for e in [&a, &b] {
            let prefix = e.metadata.generate_name.as_deref().unwrap();
            assert_eq!(prefix, "sales-");
            assert!(is_dns_subdomain_prefix(prefix), "{prefix}");
            assert_eq!(e.metadata.namespace.as_deref(), Some("shop"));
            assert!(e.metadata.name.is_none() && e.series.is_none());
            assert!(e.event_time.is_some());
            assert_eq!(
                e.reporting_controller.as_deref(),
                Some(REPORTING_CONTROLLER)
            );
            assert_eq!(e.reporting_instance.as_deref(), Some("weir-7d9f"));
            assert_eq!(e.action.as_deref(), Some("Restarting"));
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert_eq!(e.regarding.as_ref(), Some(&job));
        }
        assert_ne!(a.note, b.note, "each restart keeps its own cause");
        let ok = Event::new(Reason::Running, "running").to_kube(job, "i", now);
        assert_eq!(ok.type_.as_deref(), Some("Normal"));
    }

    /// The apiserver's check of a `generateName` prefix: a DNS-1123 subdomain once a trailing
    /// dash (where the random suffix goes) is masked.
    fn is_dns_subdomain_prefix(prefix: &str) -> bool {
        let name = prefix
            .strip_suffix('-')
            .map_or(prefix.to_string(), |p| format!("{p}a"));
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn the_old_dotted_prefix_is_what_the_apiserver_refused() {
        assert!(!is_dns_subdomain_prefix("store-sales."));
        assert!(is_dns_subdomain_prefix("store-sales-"));
    }
}
