//! Carrying out a [`Decision`](crate::decide::Decision)'s actions against the API and the
//! runtime.
//!
//! # Guarantees
//! Every action is idempotent: creating a pod that exists, deleting one that is gone or
//! applying an unchanged ConfigMap succeeds, so a reconcile that failed halfway can simply
//! run again.
//!
//! Acting reads nothing from the API (Secrets included: [`crate::observe`] read them), and
//! records nothing itself: it reports what happened as an [`Acted`], which the pure
//! [`fold`](crate::decide::acted::fold) brings into the status.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use weir_crds::control::ControlToken;
use weir_crds::{StreamJob, StreamJobSpec, StreamJobStatus};

use crate::context::{Context, FINALIZER, MANAGER};
use crate::decide::Action;
use crate::decide::acted::Acted;
use crate::error::{Error, Result};
use crate::observe::{Observation, S3Credentials};
use crate::pods::{self, Owner};
use crate::runtime_client::Endpoint;

/// Carries out `action` and says what happened, for
/// [`decide::acted::fold`](crate::decide::acted::fold) to record. `status` is the decided
/// status (folded with the outcomes of the actions before this one): pods are built from it.
///
/// # Errors
/// API failures. A runtime that does not answer is an outcome ([`Acted`]), retried by a later
/// decision, not an error.
pub async fn act(
    ctx: &Context,
    job: &StreamJob,
    owner: &Owner,
    obs: &Observation,
    status: &StreamJobStatus,
    action: &Action,
) -> Result<Acted> {
    let ns = owner.namespace.as_str();
    let acted = match action {
        Action::EnsureConfig => {
            if let Some(policy) = &ctx.network_policy {
                crate::network_policy::ensure(&ctx.client, policy, &ctx.policies, owner, true)
                    .await?;
            }
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
            let services = Api::<Service>::namespaced(ctx.client.clone(), ns);
            services
                .patch(
                    &owner.name,
                    &ssa,
                    &Patch::Apply(&pods::service(owner, spec.pods)),
                )
                .await
                .map_err(|e| Error::kube(format!("apply Service {}", owner.name), e))?;
            if obs.control_token.is_none() {
                create_control_secret(ctx, owner).await?;
            }
            if spec.pods > 1 {
                let peers = pods::peers_service_name(&owner.name);
                services
                    .patch(&peers, &ssa, &Patch::Apply(&pods::peers_service(owner)))
                    .await
                    .map_err(|e| Error::kube(format!("apply Service {peers}"), e))?;
                create_exchange_secret(ctx, owner).await?;
            }
            Acted::Done
        }
        Action::CreatePod { incarnation, index } => {
            let spec = reconciled(job, status);
            // The image decide chose (`status.deployedImage`): a heal keeps the image that
            // ran, even when the operator's default changed meanwhile.
            let image = status
                .deployed_image
                .clone()
                .unwrap_or_else(|| ctx.settings.image(&spec));
            let start = status.start.as_ref();
            let pod = pods::pod(owner, &spec, start, *incarnation, *index, &image);
            let name = pods::pod_name(&owner.name, *incarnation, *index, spec.pods);
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
            Acted::Done
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
            Acted::Done
        }
        Action::StopWithSavepoint { pod } => {
            let sent = match endpoint(obs, pod) {
                Some(at) => ctx
                    .runtime
                    .stop_with_savepoint(at)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("pod {pod} has no IP")),
            };
            match sent {
                Ok(()) => Acted::Done,
                Err(error) => {
                    tracing::warn!(pod = %pod, error = %error, "stop with savepoint not sent; will retry");
                    Acted::StopNotSent {
                        pod: pod.clone(),
                        error,
                    }
                }
            }
        }
        Action::TriggerSavepoint { pod } => {
            let sent = match endpoint(obs, pod) {
                Some(at) => ctx
                    .runtime
                    .trigger_savepoint(at)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("pod {pod} has no IP")),
            };
            match sent {
                Ok(id) => Acted::SavepointRequested { id },
                Err(error) => {
                    tracing::warn!(pod = %pod, error = %error, "savepoint request not sent; will retry");
                    Acted::SavepointNotSent {
                        pod: pod.clone(),
                        error,
                    }
                }
            }
        }
        Action::DisposeSavepoint { path } => {
            let pair = obs.s3_credentials.clone().map(S3Credentials::into_pair);
            let root = format!(
                "{}/{ns}/{}/savepoints/",
                job.spec.checkpoint.storage.trim_end_matches('/'),
                owner.name
            );
            let access = crate::dispose::Access {
                root: &root,
                cloud_secret_named: job
                    .spec
                    .checkpoint
                    .cloud
                    .as_ref()
                    .is_some_and(|c| c.credentials_secret.is_some()),
                s3: &job.spec.checkpoint.s3,
                s3_credentials: pair.as_ref().map(|(id, key)| (id.as_str(), key.as_str())),
                cloud: &obs.cloud_credentials.0,
            };
            match ctx.savepoints.dispose(path, access).await {
                Ok(n) => {
                    tracing::info!(path = %path, objects = n, "savepoint disposed");
                    Acted::Disposed { path: path.clone() }
                }
                Err(error) => Acted::DisposeFailed {
                    path: path.clone(),
                    error,
                },
            }
        }
        Action::RemoveFinalizer => {
            remove_finalizer(ctx, ns, &job.metadata).await?;
            Acted::Done
        }
    };
    Ok(acted)
}

/// Removes this operator's finalizer from the StreamJob `meta` names (also one whose spec
/// cannot be read); a job already gone is fine.
///
/// # Errors
/// API failures.
pub(crate) async fn remove_finalizer(
    ctx: &Context,
    ns: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<()> {
    let remaining: Vec<&String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": remaining,
        "resourceVersion": meta.resource_version,
    }});
    let name = meta.name.clone().unwrap_or_default();
    match Api::<crate::watched::Watched>::namespaced(ctx.client.clone(), ns)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("remove finalizer", e)),
    }
}

/// The spec the pods run (the decided `lastReconciledSpec`), or the current spec.
/// The control API of `pod`, with the job's token; `None` while the pod has no IP.
fn endpoint<'a>(obs: &'a Observation, pod: &str) -> Option<Endpoint<'a>> {
    obs.addresses.get(pod).map(|base| Endpoint {
        base,
        token: obs.control_token.as_ref(),
    })
}

/// Creates the job's control Secret with a fresh random token. A Secret that appeared since
/// observing (another reconcile, a retried pass) is kept: its token is the one pods use.
async fn create_control_secret(ctx: &Context, owner: &Owner) -> Result<()> {
    let name = weir_crds::control::auth::secret_name(&owner.name);
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Render {
        job: owner.name.clone(),
        message: format!("no randomness for the control token: {e}"),
    })?;
    let token = ControlToken::new(&hex::encode(bytes)).ok_or_else(|| Error::Render {
        job: owner.name.clone(),
        message: "empty control token".into(),
    })?;
    match Api::<Secret>::namespaced(ctx.client.clone(), &owner.namespace)
        .create(&PostParams::default(), &pods::control_secret(owner, &token))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("create Secret {name}"), e)),
    }
}

/// Creates the exchange Secret of a job of several pods with a fresh random token, unless it
/// exists: its token is the one the pods of every incarnation share, and it is never read
/// back (only the pods read it, through a `secretKeyRef`), so a `409` means done.
async fn create_exchange_secret(ctx: &Context, owner: &Owner) -> Result<()> {
    let name = pods::exchange_secret_name(&owner.name);
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Render {
        job: owner.name.clone(),
        message: format!("no randomness for the exchange token: {e}"),
    })?;
    let secret = pods::exchange_secret(owner, &hex::encode(bytes));
    match Api::<Secret>::namespaced(ctx.client.clone(), &owner.namespace)
        .create(&PostParams::default(), &secret)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("create Secret {name}"), e)),
    }
}

fn reconciled(job: &StreamJob, status: &StreamJobStatus) -> StreamJobSpec {
    crate::decide::reconciled_spec(status).unwrap_or_else(|| job.spec.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use std::sync::{Arc, Mutex};

    use futures::future::BoxFuture;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    use super::*;
    use crate::decide::RuntimeView;
    use crate::dispose::{Access, SavepointStore};
    use crate::observe::S3Credentials;
    use crate::runtime_client::{RuntimeApi, RuntimeError};

    /// A runtime that answers at `http://up` and is down everywhere else.
    struct Runtime;

    impl Runtime {
        fn answer<T>(base: &str, ok: T) -> Result<T, RuntimeError> {
            if base == "http://up" {
                Ok(ok)
            } else {
                Err(RuntimeError::Unreachable {
                    url: base.into(),
                    message: "down".into(),
                })
            }
        }
    }

    impl RuntimeApi for Runtime {
        fn job<'a>(&'a self, at: Endpoint<'a>) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>> {
            Box::pin(async move { Self::answer(at.base, RuntimeView::default()) })
        }
        fn trigger_savepoint<'a>(
            &'a self,
            at: Endpoint<'a>,
        ) -> BoxFuture<'a, Result<String, RuntimeError>> {
            Box::pin(async move { Self::answer(at.base, "sp-req-7".to_string()) })
        }
        fn stop_with_savepoint<'a>(
            &'a self,
            at: Endpoint<'a>,
        ) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move { Self::answer(at.base, ()) })
        }
    }

    /// Records the credentials each disposal got; refuses paths containing `denied`.
    #[derive(Default)]
    struct Store {
        got: Mutex<Vec<Option<(String, String)>>>,
    }

    impl SavepointStore for Store {
        fn dispose<'a>(
            &'a self,
            path: &'a str,
            access: Access<'a>,
        ) -> BoxFuture<'a, Result<usize, String>> {
            self.got.lock().unwrap().push(
                access
                    .s3_credentials
                    .map(|(id, key)| (id.to_string(), key.to_string())),
            );
            Box::pin(async move {
                if path.contains("denied") {
                    Err("AccessDenied".to_string())
                } else {
                    Ok(3)
                }
            })
        }
    }

    fn job() -> StreamJob {
        StreamJob::new(
            "sales",
            serde_json::from_value(json!({
                "checkpoint": {"interval": "30s", "timeout": "2m", "storage": "s3://b/weir",
                               "s3": {"credentialsSecret": "s3"}},
                "pipeline": {
                    "source": {"kafka": {"bootstrapServers": "kafka:9092", "topic": "orders"},
                               "schema": [{"name": "amount", "type": "int64"}]},
                    "sinks": [{"kafka": {"bootstrapServers": "kafka:9092", "topic": "out",
                                         "transactionalIdPrefix": "out"}}]
                }
            }))
            .unwrap(),
        )
    }

    /// The runtime and storage outcomes of `act`, with no Kubernetes API to talk to: the
    /// mocked API is gone before acting, so any read (a Secret, say) would be an `Err`.
    #[tokio::test]
    async fn runtime_and_storage_outcomes_are_reported_not_recorded() {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        drop(handle);
        let store = Arc::new(Store::default());
        let ctx = Context::new(
            kube::Client::new(svc, "default"),
            Arc::new(Runtime),
            store.clone(),
            Arc::new(crate::metrics::Metrics::new()),
            crate::decide::Settings::default(),
        );
        let owner = Owner {
            name: "sales".into(),
            namespace: "shop".into(),
            uid: "uid-1".into(),
        };
        let mut obs = Observation {
            s3_credentials: Some(S3Credentials::new("AKIDEXAMPLE", "secret")),
            ..Observation::default()
        };
        obs.addresses.insert("sales-3".into(), "http://up".into());
        obs.addresses.insert("sales-2".into(), "http://down".into());
        let pod = |p: &str| p.to_string();
        let rows = [
            (
                Action::StopWithSavepoint {
                    pod: pod("sales-3"),
                },
                Acted::Done,
            ),
            (
                Action::StopWithSavepoint {
                    pod: pod("sales-2"),
                },
                Acted::StopNotSent {
                    pod: pod("sales-2"),
                    error: "runtime at http://down did not answer: down".into(),
                },
            ),
            (
                Action::StopWithSavepoint {
                    pod: pod("sales-4"),
                },
                Acted::StopNotSent {
                    pod: pod("sales-4"),
                    error: "pod sales-4 has no IP".into(),
                },
            ),
            (
                Action::TriggerSavepoint {
                    pod: pod("sales-3"),
                },
                Acted::SavepointRequested {
                    id: "sp-req-7".into(),
                },
            ),
            (
                Action::TriggerSavepoint {
                    pod: pod("sales-4"),
                },
                Acted::SavepointNotSent {
                    pod: pod("sales-4"),
                    error: "pod sales-4 has no IP".into(),
                },
            ),
            (
                Action::DisposeSavepoint {
                    path: "s3://b/weir/shop/sales/savepoints/sp-1/".into(),
                },
                Acted::Disposed {
                    path: "s3://b/weir/shop/sales/savepoints/sp-1/".into(),
                },
            ),
            (
                Action::DisposeSavepoint {
                    path: "s3://denied/weir/shop/sales/savepoints/sp-2/".into(),
                },
                Acted::DisposeFailed {
                    path: "s3://denied/weir/shop/sales/savepoints/sp-2/".into(),
                    error: "AccessDenied".into(),
                },
            ),
        ];
        let status = StreamJobStatus::default();
        for (action, want) in rows {
            let got = act(&ctx, &job(), &owner, &obs, &status, &action)
                .await
                .unwrap_or_else(|e| panic!("{action:?}: {e}"));
            assert_eq!(got, want, "{action:?}");
        }
        let creds = Some(("AKIDEXAMPLE".to_string(), "secret".to_string()));
        assert_eq!(
            *store.got.lock().unwrap(),
            [creds.clone(), creds],
            "both disposals use the observed credentials"
        );
    }
}
