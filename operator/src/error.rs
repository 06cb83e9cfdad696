//! The operator's errors, named after the step that failed.

use crate::runtime_client::RuntimeError;

/// A reconcile step failed; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{step} failed: {source}")]
    Kube {
        /// What was being done, e.g. `create pod sales-3`.
        step: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The runtime's control API failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A StreamJob without a namespace (the CRD is namespaced; this is a bug elsewhere).
    #[error("StreamJob {0} has no namespace")]
    NoNamespace(String),
    /// The job file could not be rendered.
    #[error("rendering the job file of {job}: {message}")]
    Render {
        /// StreamJob name.
        job: String,
        /// Why.
        message: String,
    },
    /// A savepoint could not be disposed.
    #[error("disposing savepoint {path}: {message}")]
    Dispose {
        /// Savepoint URI.
        path: String,
        /// Why.
        message: String,
    },
}

impl Error {
    /// Label for the failure counter.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube",
            Self::Runtime(_) => "runtime",
            Self::NoNamespace(_) => "no_namespace",
            Self::Render { .. } => "render",
            Self::Dispose { .. } => "dispose",
        }
    }

    /// Wraps a kube error with the step it happened in.
    pub fn kube(step: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            step: step.into(),
            source,
        }
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
