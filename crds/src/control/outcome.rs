//! How a runtime process ended, as it tells the operator through the termination message: the
//! process is gone by the time the operator looks, so the pod object is the only place left.

use serde::{Deserialize, Serialize};

/// Environment variable naming the file the runtime writes its [`Outcome`] to; in a pod, the
/// container's termination message file, which Kubernetes copies into the pod's status.
pub const TERMINATION_LOG_ENV: &str = "WEIR_TERMINATION_LOG";

/// The termination message: `{"outcome":"stopped","savepoint":…}`, `{"outcome":"finished"}`,
/// `{"outcome":"failed","error":…}` or `{"outcome":"refused","error":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// Stopped on request (SIGTERM or `POST /v1/stop`) after a final checkpoint.
    Stopped {
        /// Savepoint URI, when the stop took one.
        savepoint: Option<String>,
    },
    /// All input consumed (bounded sources), final checkpoint committed.
    Finished,
    /// The job failed.
    Failed {
        /// The runtime's error.
        error: String,
    },
    /// The runtime refused to start because starting again cannot help: a decision of the
    /// user's is needed (the newest checkpoint cannot be read, and restoring an older one
    /// would repeat output sinks may have committed). Not retried.
    Refused {
        /// What the user must decide, and how.
        error: String,
    },
}
