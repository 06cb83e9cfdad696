//! What every reconcile shares: the API client, the runtime client, metrics and settings.

use std::sync::Arc;

use kube::Client;

use crate::claims::Directory;
use crate::decide::Settings;
use crate::dispose::SavepointStore;
use crate::metrics::Metrics;
use crate::network_policy::{Applied, PolicySettings};
use crate::runtime_client::RuntimeApi;
use crate::written::Written;

/// Field manager of every server-side apply.
pub const MANAGER: &str = "weir-operator";
/// Finalizer that keeps a StreamJob until its pods (and final savepoint) are handled.
pub const FINALIZER: &str = "weir.dev/finalizer";

/// Shared by all reconciles.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Runtime control API client.
    pub runtime: Arc<dyn RuntimeApi>,
    /// Savepoint disposal.
    pub savepoints: Arc<dyn SavepointStore>,
    /// `reportingInstance` of events: this replica (its pod name).
    pub instance: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings for decisions.
    pub settings: Settings,
    /// The clock; tests fix it.
    pub now: fn() -> jiff::Timestamp,
    /// The status each job was last given by this process (the cache may lag it).
    pub written: Arc<Written>,
    /// Every watched job, for checks across jobs (a transactional-id prefix held by another).
    pub directory: Directory,
    /// The NetworkPolicy every job gets, when the install asked for one.
    pub network_policy: Option<PolicySettings>,
    /// Jobs whose NetworkPolicy this process applied.
    pub policies: Arc<Applied>,
}

impl Context {
    /// A context with the real clock.
    #[must_use]
    pub fn new(
        client: Client,
        runtime: Arc<dyn RuntimeApi>,
        savepoints: Arc<dyn SavepointStore>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.into()),
            client,
            runtime,
            savepoints,
            metrics,
            settings,
            now: jiff::Timestamp::now,
            written: Arc::default(),
            directory: Directory::default(),
            network_policy: None,
            policies: Arc::default(),
        }
    }

    /// Gives every job the NetworkPolicy `settings` describe ([`crate::network_policy`]).
    #[must_use]
    pub fn with_network_policy(mut self, settings: PolicySettings) -> Self {
        self.network_policy = Some(settings);
        self
    }
}
