//! The runtime's error type. Variants are named after the step that failed and carry the
//! object they failed on (file, record, checkpoint), so a log line is enough to act on.

use crate::ids::CheckpointId;
use crate::storage::StorageError;

/// Result alias for the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job file is invalid; nothing was started.
    #[error(transparent)]
    Job(#[from] weir_crds::JobErrors),
    /// Checkpoint storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An Arrow kernel failed.
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Expression evaluation failed.
    #[error("expression: {0}")]
    Expr(#[from] datafusion::error::DataFusionError),
    /// A source record could not be decoded and the policy is `fail`.
    #[error("cannot decode record {location}: {message}")]
    Decode {
        /// `file:line` or split and offset.
        location: String,
        /// What was wrong with it.
        message: String,
    },
    /// A source failed to read.
    #[error("source {source_name}: {message}")]
    Source {
        /// Which source.
        source_name: String,
        /// What happened.
        message: String,
    },
    /// A sink failed to write or commit.
    #[error("sink {sink}: {message}")]
    Sink {
        /// Which sink.
        sink: String,
        /// What happened.
        message: String,
    },
    /// Checkpoint or restore protocol failure.
    #[error("checkpoint {id}: {message}")]
    Checkpoint {
        /// Which checkpoint.
        id: CheckpointId,
        /// What happened.
        message: String,
    },
    /// A newer incarnation of this job has claimed the storage; this one must stop writing.
    #[error(
        "fenced: generation {mine} was superseded by generation {newer}; this incarnation stops"
    )]
    Fenced {
        /// This incarnation's generation.
        mine: u64,
        /// The generation that superseded it.
        newer: u64,
    },
    /// No usable checkpoint or savepoint where one was required, or one that does not fit
    /// the job (maxParallelism, operators it no longer has, storage without conditional
    /// writes). At start-up only the user can change that, so the runtime reports it as
    /// refused, not failed.
    #[error("restore: {0}")]
    Restore(String),
    /// The newest checkpoint cannot be read and restoring an older one needs the user's say;
    /// starting again cannot help, so the runtime reports it as refused, not failed.
    #[error("restore: {0}")]
    Unreadable(String),
    /// A transaction the restored checkpoint promised was aborted, or whether it was
    /// committed cannot be told: restoring would lose its output, and starting again would
    /// find the same, so the runtime reports it as refused, not failed.
    #[error("commit-phase recovery of {sink}: {message}")]
    Unconfirmed {
        /// Which sink.
        sink: String,
        /// What happened and what the user can do.
        message: String,
    },
    /// The restored checkpoint holds state for an operator (or positions for a source) of this
    /// job that does not fit it (its definition or topic was edited since). Restoring would corrupt results
    /// and starting again would find the same, so the runtime reports it as refused.
    #[error(
        "restore of {operator} from {checkpoint}: {message}. Revert the edit to resume from this checkpoint, or name it in dropState (--drop-state) to start it with empty state"
    )]
    Incompatible {
        /// Operator id.
        operator: String,
        /// The checkpoint.
        checkpoint: String,
        /// What does not fit.
        message: String,
    },
    /// State bytes could not be encoded or decoded.
    #[error("state of {operator}: {message}")]
    State {
        /// Operator id.
        operator: String,
        /// What happened.
        message: String,
    },
    /// A task or channel ended unexpectedly (a bug or a panic elsewhere).
    #[error("internal: {0}")]
    Internal(String),
    /// State on local disk (the `disk` backend) could not be read or written.
    #[error(transparent)]
    DiskState(#[from] weir_state::Error),
}

impl Error {
    /// Shorthand for [`Error::Internal`].
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }
}

/// The full chain of an error, so "invalid peer certificate: UnknownIssuer" is not hidden
/// behind "error sending request".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(err) = source {
        parts.push(err.to_string());
        source = err.source();
    }
    parts.dedup();
    parts.join(": ")
}
