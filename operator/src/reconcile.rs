//! The async shell around [`decide`]: observe, decide, act, record events, write status.
//!
//! # Expected flow
//! 1. Add the finalizer to a new StreamJob (and return: the change triggers the next pass).
//! 2. [`observe`]: pods, runtime report, Secrets.
//! 3. [`decide`]: pure; new status, actions, events. The status it starts from is the one
//!    this process last wrote when there is one ([`crate::written`]): the cache may not
//!    have it yet.
//! 4. [`act`] each action in order, folding what happened into the decided status and events
//!    ([`acted::fold`]: a stop or savepoint request the runtime did not get is asked again
//!    next pass), recompute the conditions from the result ([`acted::settle`]), then
//!    publish events, then server-side apply the status when it changed.
//!
//! # Errors
//! A failed API call stops the pass before the status is written; the next pass observes
//! again and decides afresh, and every action is idempotent, so nothing is done twice.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Api, Resource, ResourceExt};
use weir_crds::validate::FieldError;
use weir_crds::{StreamJob, StreamJobStatus};

use crate::act::act;
use crate::context::{Context, FINALIZER, MANAGER};
use crate::decide::{self, Action, JobView, acted, decide};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::observe::observe;
use crate::pods::Owner;
use crate::watched::{Undecodable, Watched};

/// Reconcile one watched StreamJob: a decoded one as usual; one the apiserver admitted but
/// this operator cannot read ([`crate::watched`]) is refused by name and kept away from the
/// others.
///
/// # Errors
/// API failures; [`error_policy`] requeues.
pub async fn reconcile_watched(watched: Arc<Watched>, ctx: Arc<Context>) -> Result<Requeue> {
    match &watched.job {
        Ok(job) => reconcile(job.clone(), ctx).await,
        Err(bad) => reconcile_unreadable(&watched.metadata, bad, ctx).await,
    }
}

/// Reconcile one StreamJob.
///
/// # Errors
/// API failures; [`error_policy`] requeues.
#[tracing::instrument(skip_all, fields(namespace = %job.namespace().unwrap_or_default(), job = %job.name_any()))]
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Requeue> {
    reconcile_with(Arc::unwrap_or_clone(job), None, ctx).await
}

/// A job whose spec cannot be read. When its pods run a spec the operator deployed, that spec
/// stands in for the unreadable one: the job is reconciled as with any invalid update (the
/// pods keep running it and are healed, a deletion takes its final savepoint) and the field
/// is the problem that keeps the new spec from being deployed. Otherwise nothing is deployed
/// and the condition and one event name the field.
#[tracing::instrument(skip_all, fields(namespace = %meta.namespace.clone().unwrap_or_default(), job = %meta.name.clone().unwrap_or_default()))]
async fn reconcile_unreadable(
    meta: &ObjectMeta,
    bad: &Undecodable,
    ctx: Arc<Context>,
) -> Result<Requeue> {
    tracing::warn!(field = %bad.error.path, error = %bad.error.message, "StreamJob cannot be read");
    let uid = meta.uid.clone().unwrap_or_default();
    let status = ctx.written.latest(&uid, bad.status.as_ref());
    if let Some(spec) = decide::reconciled_spec(&status) {
        let job = StreamJob {
            metadata: meta.clone(),
            spec,
            status: Some(status),
        };
        return reconcile_with(job, Some(bad.error.clone()), ctx).await;
    }
    let name = meta.name.clone().unwrap_or_default();
    let ns = meta
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let api: Api<Watched> = Api::namespaced(ctx.client.clone(), &ns);
    let deleting = meta.deletion_timestamp.is_some();
    let decision = decide::unreadable(&status, &bad.error, deleting, (ctx.now)());
    if decision.actions.contains(&Action::RemoveFinalizer) {
        if meta.finalizers.iter().flatten().any(|f| f == FINALIZER) {
            crate::act::remove_finalizer(&ctx, &ns, meta).await?;
        }
        ctx.written.forget(&uid);
        return Ok(Requeue::await_change());
    }
    publish(&ctx, &object_ref(meta), &decision.events).await;
    if decision.status != status {
        if let Err(e) = write_status(&api, &name, &decision.status).await {
            ctx.written.forget(&uid);
            return Err(e);
        }
        ctx.written.record(&uid, &decision.status);
    }
    Ok(Requeue::requeue(decision.requeue))
}

/// `unreadable`: the field that keeps the current spec from being read, reported as a
/// problem of the spec the pods run in its place.
async fn reconcile_with(
    mut job: StreamJob,
    unreadable: Option<FieldError>,
    ctx: Arc<Context>,
) -> Result<Requeue> {
    let timer = ctx.metrics.reconcile_started();
    job.spec = ctx.settings.effective(job.spec);
    let name = job.name_any();
    let ns = job
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let deleting = job.metadata.deletion_timestamp.is_some();
    let has_finalizer = job.finalizers().iter().any(|f| f == FINALIZER);
    let api: Api<Watched> = Api::namespaced(ctx.client.clone(), &ns);
    if !has_finalizer {
        if !deleting {
            add_finalizer(&api, &job).await?;
        }
        timer.done();
        return Ok(Requeue::await_change());
    }
    let uid = job.uid().unwrap_or_default();
    job.status = Some(ctx.written.latest(&uid, job.status.as_ref()));
    let mut obs = observe(&ctx, &job, &ns, &name).await?;
    if let Some(e) = unreadable {
        obs.observed.problems.insert(0, (e.path, e.message));
    }
    let others = ctx.directory.jobs().await;
    obs.observed
        .problems
        .extend(crate::claims::conflicts(&job.metadata, &job.spec, &others));
    let old_status = job.status.clone().unwrap_or_default();
    let view = JobView {
        name: name.clone(),
        generation: job.metadata.generation.unwrap_or(0),
        deleting,
        spec: job.spec.clone(),
        status: old_status.clone(),
    };
    let decision = decide(&view, &obs.observed, (ctx.now)(), &ctx.settings);
    let owner = Owner {
        name: name.clone(),
        namespace: ns.clone(),
        uid: uid.clone(),
    };
    // Once per job in this process (a job that ran before the operator wrote policies gets
    // one); a deploy applies it itself, before its pods.
    let deploys = decision.actions.contains(&Action::EnsureConfig);
    if let Some(policy) = ctx
        .network_policy
        .as_ref()
        .filter(|_| !deleting && !deploys)
    {
        crate::network_policy::ensure(&ctx.client, policy, &ctx.policies, &owner, false).await?;
    }
    let mut status = decision.status;
    let mut events = decision.events;
    let mut finished = false;
    for a in &decision.actions {
        tracing::info!(action = ?a, "acting");
        let acted = act(&ctx, &job, &owner, &obs, &status, a).await?;
        acted::fold(&mut status, &mut events, &acted);
        finished |= *a == Action::RemoveFinalizer;
    }
    acted::settle(&mut status, (ctx.now)());
    publish(&ctx, &job.object_ref(&()), &events).await;
    if finished {
        ctx.metrics.forget(&ns, &name);
        ctx.written.forget(&uid);
        ctx.policies.forget(&uid);
    } else {
        ctx.metrics
            .observe_transition(&name, &ns, &old_status, &status, (ctx.now)());
    }
    if !finished && status != old_status {
        if let Err(e) = write_status(&api, &name, &status).await {
            ctx.written.forget(&uid);
            return Err(e);
        }
        ctx.written.record(&uid, &status);
    }
    timer.done();
    Ok(Requeue::requeue(decision.requeue))
}

/// Logs, counts and requeues. The status holds what matters; the next pass decides afresh.
pub fn error_policy(job: Arc<Watched>, err: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(namespace = %job.namespace().unwrap_or_default(), job = %job.name_any(), error = %err, "reconcile failed");
    ctx.metrics.reconcile_failed(err.metric_label());
    Requeue::requeue(Duration::from_secs(5))
}

async fn add_finalizer(api: &Api<Watched>, job: &StreamJob) -> Result<()> {
    let mut finalizers = job.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": job.metadata.resource_version,
    }});
    api.patch(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| Error::kube("add finalizer", e))?;
    Ok(())
}

pub(crate) fn object_ref(meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(StreamJob::api_version(&()).into_owned()),
        kind: Some(StreamJob::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}

async fn write_status(api: &Api<Watched>, name: &str, status: &StreamJobStatus) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| Error::kube("write status", e))?;
    Ok(())
}

pub(crate) async fn publish(ctx: &Context, job: &ObjectReference, events: &[Event]) {
    let ns = job.namespace.clone().unwrap_or_default();
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ctx.client.clone(), &ns);
    for e in events {
        tracing::info!(reason = e.reason.as_str(), message = %e.message, "event");
        let ev = e.to_kube(job.clone(), &ctx.instance, (ctx.now)());
        if let Err(err) = api.create(&PostParams::default(), &ev).await {
            tracing::warn!(error = %err, "event not recorded");
        }
    }
}
