//! Where an incarnation starts: decided here by the start-up protocol (the only pod, or
//! pod 0), or told by pod 0 over the control link; then pod 0 tells the other pods.

use tokio::sync::mpsc;

use super::Shape;
use super::options::RunOptions;
use super::sinks::Connectors;
use crate::checkpoint::compat::Wanted;
use crate::checkpoint::coordinator::Request;
use crate::checkpoint::layout::Layout;
use crate::checkpoint::messages::TaskEvent;
use crate::checkpoint::restore::Restored;
use crate::checkpoint::startup::{self, Startup, StartupInput};
use crate::cluster::exchange::{Exchange, Joined};
use crate::cluster::link;
use crate::cluster::wire::StartInfo;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::plan::Plan;
use crate::storage::Storage;

/// Where this incarnation starts, as pod 0 (or a single pod) decided it, or as pod 0 told
/// this pod.
pub(super) struct Begun {
    pub restored: Option<Restored>,
    pub restored_uri: Option<String>,
    pub job_id: String,
    pub generation: u64,
    pub next_id: CheckpointId,
    /// A pod other than 0: its control link to the coordinator.
    pub link: Option<link::Coordinator>,
}

/// Storage and where the job's checkpoints are in it.
pub(super) struct Store<'a> {
    pub storage: &'a Storage,
    pub uri: &'a str,
    pub layout: &'a Layout,
}

/// Decide (or be told) where to start.
///
/// # Errors
/// No usable restore point, state that does not fit, a generation that cannot be claimed,
/// sink recovery failures, or pod 0 unreachable.
pub(super) async fn begin(
    plan: &Plan,
    opts: &RunOptions,
    shape: &Shape,
    exchange: Option<&Exchange>,
    store: &Store<'_>,
    connectors: &Connectors,
) -> Result<Begun> {
    match (&shape.pods, exchange) {
        (Some(p), Some(ex)) if !p.is_coordinator() => {
            let (link, info) = link::Coordinator::join(ex, &p.incarnation, p.index).await?;
            let restored = startup::join(
                info.restored.as_deref(),
                &plan.job.checkpoint.s3,
                &wanted(plan, opts),
            )
            .await?;
            Ok(Begun {
                restored,
                restored_uri: info.restored,
                job_id: info.job_id,
                generation: info.generation,
                next_id: info.first_checkpoint,
                link: Some(link),
            })
        }
        _ => begin_here(plan, opts, shape.max_parallelism, store, connectors).await,
    }
}

/// The start-up protocol, run by the only pod or pod 0: restore point, generation claim,
/// every sink's commit-phase recovery (for all subtasks, whichever pod runs them).
async fn begin_here(
    plan: &Plan,
    opts: &RunOptions,
    max_parallelism: u32,
    store: &Store<'_>,
    connectors: &Connectors,
) -> Result<Begun> {
    let job = &plan.job;
    let wanted = wanted(plan, opts);
    let startup = startup::begin(
        store.storage,
        store.layout,
        &StartupInput {
            storage_uri: store.uri,
            s3: &job.checkpoint.s3,
            exactly_once: job.checkpoint.exactly_once,
            max_parallelism,
            wanted: &wanted,
            skip_unreadable_checkpoints: opts.job.skip_unreadable_checkpoints,
            restore_from: opts.job.restore_from.as_deref(),
            start: opts.job.start.as_ref(),
        },
    )
    .await?;
    // Sinks: commit-phase recovery before anything writes.
    for (id, c) in connectors {
        c.recover_and_commit(startup.committables_for(id)).await?;
    }
    startup.sinks_recovered(store.storage).await?;
    let restored_uri = startup.restored_uri();
    let Startup {
        restored,
        job_id,
        generation,
        first_checkpoint: next_id,
        ..
    } = startup;
    Ok(Begun {
        restored,
        restored_uri,
        job_id,
        generation,
        next_id,
        link: None,
    })
}

/// Pod 0 of several: accept the other pods, tell them where to start, and keep their
/// control links. `None` for a single pod and for the other pods.
///
/// # Errors
/// A pod that does not join in time or breaks its link.
pub(super) async fn start_other_pods(
    shape: &Shape,
    exchange: Option<&mut (Exchange, mpsc::Receiver<Joined>)>,
    begun: &Begun,
    events: &mpsc::UnboundedSender<TaskEvent>,
    requests: &mpsc::Sender<Request>,
) -> Result<Option<link::Pods>> {
    let (Some(p), Some((ex, joins))) = (&shape.pods, exchange) else {
        return Ok(None);
    };
    ex.set_generation(begun.generation);
    if !p.is_coordinator() {
        return Ok(None);
    }
    let joined = link::accept(joins, p.count).await?;
    let info = StartInfo {
        job_id: begun.job_id.clone(),
        generation: begun.generation,
        restored: begun.restored_uri.clone(),
        first_checkpoint: begun.next_id,
    };
    Ok(Some(
        link::Pods::start(joined, &info, events, requests).await?,
    ))
}

/// What the job's state means and what the user allows to drop, for [`crate::checkpoint::compat::fit`].
fn wanted(plan: &Plan, opts: &RunOptions) -> Wanted {
    Wanted {
        operators: plan.operator_records(),
        sources: plan.source_records(),
        allow_non_restored_state: opts.job.allow_non_restored_state,
        drop_state: opts.job.drop_state.clone(),
    }
}
