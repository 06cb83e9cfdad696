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

use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Api, Resource, ResourceExt};
use weir_crds::{StreamJob, StreamJobStatus};

use crate::act::act;
use crate::context::{Context, FINALIZER, MANAGER};
use crate::decide::{Action, JobView, acted, decide};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::observe::observe;
use crate::pods::Owner;

/// Reconcile one StreamJob.
///
/// # Errors
/// API failures; [`error_policy`] requeues.
#[tracing::instrument(skip_all, fields(namespace = %job.namespace().unwrap_or_default(), job = %job.name_any()))]
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Requeue> {
    let timer = ctx.metrics.reconcile_started();
    let mut job = Arc::unwrap_or_clone(job);
    job.spec = ctx.settings.effective(job.spec);
    let name = job.name_any();
    let ns = job
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let deleting = job.metadata.deletion_timestamp.is_some();
    let has_finalizer = job.finalizers().iter().any(|f| f == FINALIZER);
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    if !has_finalizer {
        if !deleting {
            add_finalizer(&api, &job).await?;
        }
        timer.done();
        return Ok(Requeue::await_change());
    }
    let uid = job.uid().unwrap_or_default();
    job.status = Some(ctx.written.latest(&uid, job.status.as_ref()));
    let obs = observe(&ctx, &job, &ns, &name).await?;
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
    publish(&ctx, &job, &events).await;
    if finished {
        ctx.metrics.forget(&ns, &name);
        ctx.written.forget(&uid);
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
pub fn error_policy(job: Arc<StreamJob>, err: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(namespace = %job.namespace().unwrap_or_default(), job = %job.name_any(), error = %err, "reconcile failed");
    ctx.metrics.reconcile_failed(err.metric_label());
    Requeue::requeue(Duration::from_secs(5))
}

async fn add_finalizer(api: &Api<StreamJob>, job: &StreamJob) -> Result<()> {
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

async fn write_status(api: &Api<StreamJob>, name: &str, status: &StreamJobStatus) -> Result<()> {
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

async fn publish(ctx: &Context, job: &StreamJob, events: &[Event]) {
    let ns = job.namespace().unwrap_or_default();
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ctx.client.clone(), &ns);
    for e in events {
        tracing::info!(reason = e.reason.as_str(), message = %e.message, "event");
        let ev = e.to_kube(job.object_ref(&()), &ctx.instance, (ctx.now)());
        if let Err(err) = api.create(&PostParams::default(), &ev).await {
            tracing::warn!(error = %err, "event not recorded");
        }
    }
}
