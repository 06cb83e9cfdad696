//! What every reconcile shares: the API client, the runtime client, the event recorder,
//! metrics and settings.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::decide::Settings;
use crate::dispose::SavepointStore;
use crate::metrics::Metrics;
use crate::runtime_client::RuntimeApi;

/// Field manager of every server-side apply, and the name events are reported by.
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
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings for decisions.
    pub settings: Settings,
    /// The clock; tests fix it.
    pub now: fn() -> jiff::Timestamp,
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
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            runtime,
            savepoints,
            metrics,
            settings,
            now: jiff::Timestamp::now,
        }
    }
}
