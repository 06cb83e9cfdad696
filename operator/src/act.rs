//! Carrying out a [`Decision`](crate::decide::Decision)'s actions against the API and the
//! runtime.
//!
//! # Guarantees
//! Every action is idempotent: creating a pod that exists, deleting one that is gone or
//! applying an unchanged ConfigMap succeeds, so a reconcile that failed halfway can simply
//! run again.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use weir_crds::{StreamJob, StreamJobSpec, StreamJobStatus};

use crate::context::{Context, FINALIZER, MANAGER};
use crate::decide::Action;
use crate::error::{Error, Result};
use crate::events::{Event, Reason};
use crate::observe::Observation;
use crate::pods::{self, Owner};

/// Carries out `action`. `status` is the decided status; a savepoint request's id (or a
/// failed request) is recorded in it.
///
/// # Errors
/// API failures. A runtime that does not answer is recorded in `status` (and retried by a
/// later decision), not an error.
pub async fn act(
    ctx: &Context,
    job: &StreamJob,
    owner: &Owner,
    obs: &Observation,
    status: &mut StreamJobStatus,
    action: &Action,
    events: &mut Vec<Event>,
) -> Result<()> {
    let ns = owner.namespace.as_str();
    match action {
        Action::EnsureConfig => {
            let spec = reconciled(job, status);
            let cm = pods::config_map(owner, &spec).map_err(|e| Error::Render {
                job: owner.name.clone(),
                message: e.to_string(),
            })?;
            let ssa = PatchParams::apply(MANAGER).force();
            Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
                .patch(&pods::config_name(&owner.name), &ssa, &Patch::Apply(&cm))
                .await
                .map_err(|e| {
                    Error::kube(
                        format!("apply ConfigMap {}", pods::config_name(&owner.name)),
                        e,
                    )
                })?;
            Api::<Service>::namespaced(ctx.client.clone(), ns)
                .patch(&owner.name, &ssa, &Patch::Apply(&pods::service(owner)))
                .await
                .map_err(|e| Error::kube(format!("apply Service {}", owner.name), e))?;
        }
        Action::CreatePod { incarnation } => {
            let spec = reconciled(job, status);
            // The image decide chose (`status.deployedImage`): a heal keeps the image that
            // ran, even when the operator's default changed meanwhile.
            let image = status
                .deployed_image
                .clone()
                .unwrap_or_else(|| ctx.settings.image(&spec));
            let pod = pods::pod(owner, &spec, status.start.as_ref(), *incarnation, &image);
            let name = pods::pod_name(&owner.name, *incarnation);
            match Api::<Pod>::namespaced(ctx.client.clone(), ns)
                .create(&PostParams::default(), &pod)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::info!(pod = %name, "pod already exists");
                }
                Err(e) => return Err(Error::kube(format!("create pod {name}"), e)),
            }
        }
        Action::DeletePod { name } => {
            match Api::<Pod>::namespaced(ctx.client.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube(format!("delete pod {name}"), e)),
            }
        }
        Action::StopWithSavepoint { pod } => {
            let sent = match obs.addresses.get(pod) {
                Some(addr) => ctx
                    .runtime
                    .stop_with_savepoint(addr)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("pod {pod} has no IP")),
            };
            if let Err(e) = sent {
                tracing::warn!(pod = %pod, error = %e, "stop with savepoint not sent; will retry");
                if let Some(op) = status.operation.as_mut() {
                    op.stop_requested_at = None;
                    op.waiting = Some(format!("stop with savepoint could not be sent: {e}"));
                }
            }
        }
        Action::TriggerSavepoint { pod } => {
            let sent = match obs.addresses.get(pod) {
                Some(addr) => ctx
                    .runtime
                    .trigger_savepoint(addr)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("pod {pod} has no IP")),
            };
            match sent {
                Ok(id) => {
                    if let Some(p) = status.pending_savepoint.as_mut() {
                        p.request_id = id;
                    }
                }
                Err(e) => {
                    tracing::warn!(pod = %pod, error = %e, "savepoint request not sent; will retry");
                    status.pending_savepoint = None;
                }
            }
        }
        Action::DisposeSavepoint { path } => {
            let spec = &job.spec;
            let creds = match &spec.checkpoint.s3.credentials_secret {
                Some(secret) => read_credentials(ctx, ns, secret).await?,
                None => None,
            };
            match ctx
                .savepoints
                .dispose(path, &spec.checkpoint.s3, creds)
                .await
            {
                Ok(n) => tracing::info!(path = %path, objects = n, "savepoint disposed"),
                Err(e) => events.push(Event::new(
                    Reason::SavepointFailed,
                    format!("could not dispose {path}: {e}; delete it by hand"),
                )),
            }
        }
        Action::RemoveFinalizer => {
            let remaining: Vec<String> = job
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect();
            let patch = serde_json::json!({"metadata": {
                "finalizers": remaining,
                "resourceVersion": job.metadata.resource_version,
            }});
            match Api::<StreamJob>::namespaced(ctx.client.clone(), ns)
                .patch(&owner.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube("remove finalizer", e)),
            }
        }
    }
    Ok(())
}

/// The spec the pods run (the decided `lastReconciledSpec`), or the current spec.
fn reconciled(job: &StreamJob, status: &StreamJobStatus) -> StreamJobSpec {
    crate::decide::reconciled_spec(status).unwrap_or_else(|| job.spec.clone())
}

async fn read_credentials(
    ctx: &Context,
    ns: &str,
    secret: &str,
) -> Result<Option<(String, String)>> {
    let s = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get_opt(secret)
        .await
        .map_err(|e| Error::kube(format!("read Secret {ns}/{secret}"), e))?;
    let data = s.and_then(|s| s.data).unwrap_or_default();
    let get = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
    };
    Ok(get("AWS_ACCESS_KEY_ID").zip(get("AWS_SECRET_ACCESS_KEY")))
}
