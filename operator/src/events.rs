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
    /// The finalizer runs.
    Deleting,
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
            Self::Deleting => "Deleting",
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
                | Self::NoProgress
                | Self::UpgradeFailed
                | Self::RollingBack
                | Self::SavepointFailed
        )
    }
}

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
}
