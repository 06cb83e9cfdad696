//! What a start is told besides the job file: the command line's (or the operator's)
//! overrides, the start point, the control API, the pods.

use std::net::SocketAddr;

use weir_crds::control::ControlToken;

use super::StartRequest;
use crate::cluster::Pods;

/// Settings given on the command line (or by the operator) rather than in the job file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Storage namespace (`local` for `weir-runtime run`; the Kubernetes namespace in a cluster).
    pub namespace: String,
    /// Override of the job's parallelism.
    pub parallelism: Option<u32>,
    /// Override of `checkpoint.storage`.
    pub checkpoint_dir: Option<String>,
    /// Restore from this checkpoint or savepoint URI.
    pub restore_from: Option<String>,
    /// Start a new lineage once (idempotent across restarts); see [`StartRequest`].
    pub start: Option<StartRequest>,
    /// Start even if the checkpoint holds state for operators the job no longer has.
    pub allow_non_restored_state: bool,
    /// Restore an older checkpoint when the newest cannot be read (the user's explicit
    /// choice; otherwise the start is refused).
    pub skip_unreadable_checkpoints: bool,
    /// Where to serve the control API; none when `None`.
    pub control_addr: Option<SocketAddr>,
    /// Token the control API's `/v1` routes require; open when `None`.
    pub control_token: Option<ControlToken>,
    /// This process's place in a multi-pod job; `None`: the whole job runs here.
    pub pods: Option<Pods>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            namespace: "local".into(),
            parallelism: None,
            checkpoint_dir: None,
            restore_from: None,
            start: None,
            allow_non_restored_state: false,
            skip_unreadable_checkpoints: false,
            control_addr: None,
            control_token: None,
            pods: None,
        }
    }
}
