//! The bodies of the control API's `POST` routes.

use serde::{Deserialize, Serialize};

/// `POST /v1/savepoints` answers with the request id to follow in
/// [`JobReport::savepoints`](super::JobReport::savepoints) or `GET /v1/savepoints/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointAccepted {
    /// Request id.
    pub id: String,
}

/// `POST /v1/stop` takes this body, or none (a stop without savepoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// Take a savepoint as the final checkpoint; absent means no.
    #[serde(default)]
    pub savepoint: bool,
}

/// `POST /v1/stop` answers with what it is doing. Only the acceptance matters: how the stop
/// ended is in the termination message ([`Outcome`](super::Outcome)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopAccepted {
    /// The job is stopping (always `true` in an accepted answer).
    pub stopping: bool,
    /// With a savepoint.
    pub savepoint: bool,
}
