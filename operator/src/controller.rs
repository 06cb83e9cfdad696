//! Controller wiring: watch StreamJobs and the Pods, ConfigMaps and Services they own, in
//! every namespace or in the listed ones, and run [`reconcile_watched`] for each change. Jobs
//! are watched as [`Watched`]: each decoded on its own, so one the operator cannot read does
//! not stop the watch for the others.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::runtime::Controller;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::context::Context;
use crate::pods::JOB_LABEL;
use crate::reconcile::{error_policy, reconcile_watched};
use crate::watched::Watched;

/// Fails with the install command when the CRD is not there (or not readable).
///
/// # Errors
/// The API's answer, explained.
pub async fn check_crd(client: &Client, namespaces: &[String]) -> Result<(), String> {
    // Listed as `Watched`, so an object the operator cannot read is not taken for a missing CRD.
    let api: Api<Watched> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "cannot list StreamJobs ({e}); is the CRD installed? `kubectl apply -f charts/weir/crds/streamjobs.weir.dev.yaml` or `helm install weir charts/weir`"
            )
        })
}

/// Runs the controllers until a shutdown signal. Watches all namespaces when `namespaces`
/// is empty.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let runs = scopes.into_iter().map(|ns| {
        let client = ctx.client.clone();
        let api = |c: Client| -> (Api<Watched>, Api<Pod>, Api<ConfigMap>, Api<Service>) {
            match &ns {
                Some(n) => (
                    Api::namespaced(c.clone(), n),
                    Api::namespaced(c.clone(), n),
                    Api::namespaced(c.clone(), n),
                    Api::namespaced(c, n),
                ),
                None => (
                    Api::all(c.clone()),
                    Api::all(c.clone()),
                    Api::all(c.clone()),
                    Api::all(c),
                ),
            }
        };
        let (jobs, pods, configs, services) = api(client);
        let owned = watcher::Config::default().labels(JOB_LABEL);
        let ctx = ctx.clone();
        async move {
            let controller = Controller::new(jobs, watcher::Config::default());
            ctx.directory.add(controller.store());
            controller
                .owns(pods, owned.clone())
                .owns(configs, owned.clone())
                .owns(services, owned)
                .shutdown_on_signal()
                .run(reconcile_watched, error_policy, ctx)
                .for_each(|r| async move {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "controller event");
                    }
                })
                .await;
        }
    });
    futures::future::join_all(runs).await;
}
