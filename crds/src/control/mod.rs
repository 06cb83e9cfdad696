//! The contract between the operator and the runtime, defined once so neither side can drift:
//! the control API's JSON ([`report`], [`requests`]), the termination message ([`outcome`])
//! and the runtime's command line ([`cli`]).
//!
//! The operator never links the runtime; it builds a pod's arguments with [`RuntimeCli`], reads
//! `GET /v1/job` as a [`JobReport`] and the termination message as an [`Outcome`]. The runtime
//! parses its command line with the same [`RuntimeCli`], serves these types and writes the
//! [`Outcome`]. `runtime/tests/control_api.rs` round-trips every response of a real runtime
//! through them, so a field added on one side only fails a test.
//!
//! # Compatibility
//! The runtime image is the user's choice (`spec.image`), so an operator may talk to an older
//! or newer runtime. A field added to a response must therefore be optional (`Option`, or
//! `#[serde(default)]`) for the reader, and unknown fields are ignored rather than refused; a
//! new state or kind, a renamed field or a changed flag is a breaking change of the contract.
//!
//! | route | request | answer |
//! |---|---|---|
//! | `GET /v1/job` | | [`JobReport`] |
//! | `POST /v1/savepoints` | (no body) | `202` [`SavepointAccepted`] |
//! | `GET /v1/savepoints/{id}` | | [`SavepointReport`], `404` when unknown |
//! | `POST /v1/stop` | [`StopRequest`], optional | `202` [`StopAccepted`] |
//!
//! Every `/v1` route needs the job's control token when the runtime has one ([`auth`]); a
//! request without it is refused with `401`.
//!
//! A refused request (`409` when the job no longer runs, `404`) answers with plain text.

pub mod auth;
pub mod cli;
pub mod outcome;
pub mod report;
pub mod requests;

/// The script both web consoles load first (`$`, `el`, `num`, `bytes`): the runtime serves it
/// with its job page, the operator with its own pages, each from its own binary.
pub const CONSOLE_SCRIPT: &str = include_str!("console.js");
#[cfg(test)]
mod tests;

pub use auth::ControlToken;
pub use cli::{
    CONTROL_PORT, EXCHANGE_PORT, EXCHANGE_TOKEN_ENV, JobArgs, LogFormat, PodArgs, RuntimeArgs,
    RuntimeCli, RuntimeCommand, Start,
};
pub use outcome::{Outcome, TERMINATION_LOG_ENV};
pub use report::{
    AttemptStatus, CheckpointKind, CheckpointReport, Guarantee, JobReport, JobState,
    SavepointReport, SavepointState, SinkReport, SourceLag, TaskRef, TaskWatermark,
};
pub use requests::{SavepointAccepted, StopAccepted, StopRequest};

/// The control API's paths, so the runtime's router and the operator's client name the same
/// routes.
pub mod routes {
    /// `GET`: the [`JobReport`](super::JobReport).
    pub const JOB: &str = "/v1/job";
    /// `POST`: trigger a savepoint; `GET {SAVEPOINTS}/{id}`: follow it.
    pub const SAVEPOINTS: &str = "/v1/savepoints";
    /// `POST`: stop, optionally with a savepoint.
    pub const STOP: &str = "/v1/stop";
}
