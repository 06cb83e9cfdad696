//! What a start is told besides the job file: how it starts and where its state lives
//! ([`JobArgs`], the same list the command line parses), the control API, the pods.

use std::net::SocketAddr;

use weir_crds::control::{ControlToken, JobArgs};

use crate::cluster::Pods;

/// Settings given on the command line (or by the operator) rather than in the job file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start point, overrides and storage namespace.
    pub job: JobArgs,
    /// Where to serve the control API; none when `None`.
    pub control_addr: Option<SocketAddr>,
    /// Token the control API's `/v1` routes require; open when `None`.
    pub control_token: Option<ControlToken>,
    /// This process's place in a multi-pod job; `None`: the whole job runs here.
    pub pods: Option<Pods>,
}
