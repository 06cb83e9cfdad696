//! Starting a job, one named step after another (see [`start`]): the control API, the sinks,
//! storage, where to start (the checkpoint start-up protocol of
//! [`crate::checkpoint::startup`] and each sink's commit-phase recovery, or pod 0's word),
//! the other pods, the tasks, the coordinator.
//!
//! Homes: [`options`] (what a start is told), [`sinks`] (connectors and their slots),
//! [`begin`] (where the incarnation starts), [`tasks`] (building and spawning tasks);
//! the channels between tasks are [`crate::cluster::grid`]'s.

mod begin;
mod options;
mod sinks;
mod tasks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::checkpoint::coordinator::{Coordinator, CoordinatorConfig, Outcome, Request};
use crate::checkpoint::layout::Layout;
use crate::checkpoint::messages::Control;
use crate::checkpoint::snapshot::{StateSizes, Uploader};
use crate::cluster::Pods;
use crate::cluster::exchange::Exchange;
use crate::cluster::grid::{Grid, Placement};
use crate::connectors;
use crate::console;
use crate::control::metrics::Metrics;
use crate::control::status::{JobReport, JobState, SinkReport, StatusBoard};
use crate::control::{self, ApiState};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::plan::Plan;
use crate::storage::Storage;

pub use options::RunOptions;
pub use weir_crds::control::{JobArgs, Start};

/// A started job.
pub struct RunningJob {
    /// Where the control API listens.
    pub control_addr: Option<SocketAddr>,
    /// Send stop and savepoint requests.
    pub requests: mpsc::Sender<Request>,
    /// Status, as `GET /v1/job` shows it.
    pub status: Arc<RwLock<JobReport>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    handle: JoinHandle<Result<Outcome>>,
    tasks: Vec<JoinHandle<()>>,
    /// Pod 0 of a job with disk state: where to sweep shared tables once the job has ended.
    sweep: Option<(Storage, Layout, String)>,
}

impl RunningJob {
    /// Wait for the job to end. Tasks still running are aborted.
    ///
    /// # Errors
    /// The job's failure.
    pub async fn wait(self) -> Result<Outcome> {
        let r = match self.handle.await {
            Ok(r) => r,
            Err(e) => Err(Error::internal(format!("coordinator panicked: {e}"))),
        };
        for t in &self.tasks {
            t.abort();
        }
        // Stores upload tables ahead of barriers: those sent after the last checkpoint (the
        // end of input's last compaction) are in no checkpoint. Once every store is gone, the
        // start-up sweep's rule applies: delete what no completed checkpoint refers to.
        if let (Ok(_), Some((storage, layout, job_id))) = (&r, &self.sweep) {
            for t in self.tasks {
                let _ = t.await;
            }
            if let Err(e) = crate::checkpoint::shared_tables::sweep(storage, layout, job_id).await {
                tracing::warn!(error = %e, "could not sweep shared state tables at the end; the next start does");
            }
        }
        let (sent, received) = (
            self.metrics.exchange_sent.get(),
            self.metrics.exchange_received.get(),
        );
        if sent + received > 0 {
            tracing::info!(
                sent_bytes = sent,
                received_bytes = received,
                "exchange totals of this pod"
            );
        }
        if let Ok(mut s) = self.status.write() {
            match &r {
                Ok(Outcome::Finished) => s.state = JobState::Finished,
                Ok(Outcome::Stopped { .. }) => s.state = JobState::Stopped,
                Err(e) => {
                    s.state = JobState::Failed;
                    s.failure = Some(e.to_string());
                }
            }
        }
        r
    }
}

/// How many subtasks the job has, and which of them this process runs.
pub(crate) struct Shape {
    parallelism: u32,
    max_parallelism: u32,
    pods: Option<Arc<Pods>>,
    /// Every task of the job, by stage then subtask.
    all_tasks: Vec<TaskId>,
    /// The tasks this process runs.
    here: Vec<TaskId>,
}

impl Shape {
    fn of(plan: &Plan, opts: &RunOptions) -> Result<Self> {
        let parallelism = opts.job.parallelism.unwrap_or(plan.job.parallelism);
        let max_parallelism = plan.job.max_parallelism;
        if parallelism == 0 || parallelism > max_parallelism {
            return Err(Error::Restore(format!(
                "parallelism {parallelism} must be between 1 and maxParallelism {max_parallelism}"
            )));
        }
        let pods = opts.pods.clone().map(Arc::new);
        if let Some(p) = &pods {
            p.check(parallelism)?;
        }
        let stages = plan.stages.len();
        let all_tasks: Vec<TaskId> = (0..stages as u32)
            .flat_map(|s| {
                (0..parallelism).map(move |t| TaskId {
                    stage: s,
                    subtask: t,
                })
            })
            .collect();
        let mut shape = Self {
            parallelism,
            max_parallelism,
            pods,
            all_tasks,
            here: Vec::new(),
        };
        shape.here = shape
            .all_tasks
            .iter()
            .copied()
            .filter(|t| shape.runs_here(t.subtask))
            .collect();
        Ok(shape)
    }

    fn runs_here(&self, subtask: u32) -> bool {
        self.pods
            .as_ref()
            .is_none_or(|p| p.runs(subtask, self.parallelism))
    }
}

/// The report of a job that has not started yet.
fn initializing(name: &str, shape: &Shape) -> JobReport {
    crate::control::status::initializing(name, shape.parallelism, shape.max_parallelism)
}

/// Start `plan`.
///
/// # Errors
/// Storage refused or unreachable, no usable restore point, state that does not fit the job,
/// sink recovery failures, or a control API that cannot bind.
pub async fn start(plan: Plan, opts: RunOptions) -> Result<RunningJob> {
    let shape = Shape::of(&plan, &opts)?;
    let metrics = Arc::new(Metrics::new(
        shape.here.iter().map(ToString::to_string).collect(),
    ));
    let status = Arc::new(RwLock::new(initializing(&plan.name, &shape)));
    let (req_tx, req_rx) = mpsc::channel(16);
    // The control API first, so that liveness and readiness answer (and say what start-up
    // waits for) while sinks, sources and storage are reached and state is restored.
    // The console rides on the same listener and samples its charts' history from here on.
    let mut sampler = None;
    let control_addr = match opts.control_addr {
        Some(addr) => {
            let api = ApiState::new(
                Arc::clone(&status),
                Arc::clone(&metrics),
                req_tx.clone(),
                shape.here.clone(),
                opts.control_token.clone(),
            );
            let history = Arc::new(console::history::History::default());
            sampler = Some(Arc::clone(&history).record(Arc::clone(&metrics), Arc::clone(&status)));
            let graph = console::graph::Graph::of(&plan, shape.parallelism);
            let console = console::router(console::Console::new(api.clone(), graph, history));
            Some(
                control::serve(addr, api, console)
                    .await
                    .map_err(|e| Error::internal(e.to_string()))?,
            )
        }
        None => None,
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut exchange = match &shape.pods {
        Some(p) => {
            Some(Exchange::serve(Arc::clone(p), events_tx.clone(), Arc::clone(&metrics)).await?)
        }
        None => None,
    };
    // Sinks first: a wrong table or topic fails before any state is touched.
    let connectors = sinks::prepare(&plan, shape.parallelism).await?;
    for s in &plan.sources {
        connectors::wait_for_source(&s.spec, &plan.name).await?;
    }
    let storage_uri = opts
        .job
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| plan.job.checkpoint.storage.clone());
    let storage = Storage::open(&storage_uri, &plan.job.checkpoint.s3).await?;
    storage.wait_until_reachable(crate::wait::limit()).await?;
    let layout = Layout::new(&opts.job.namespace, &plan.name);
    let store = begin::Store {
        storage: &storage,
        uri: &storage_uri,
        layout: &layout,
    };
    let mut begun = begin::begin(
        &plan,
        &opts,
        &shape,
        exchange.as_ref().map(|(ex, _)| ex),
        &store,
        &connectors,
    )
    .await?;
    // Tables that attempts never completed left behind; on pod 0 only, and before any pod's
    // subtask exists: a disk store uploads tables as soon as it is built (ahead of barriers),
    // and every store is built after this (the other pods' once pod 0 starts them, below).
    let sweeps = shape.pods.as_ref().is_none_or(|p| p.index == 0);
    if sweeps {
        crate::checkpoint::shared_tables::sweep(&storage, &layout, &begun.job_id).await?;
    }
    // The other pods: where to start, then wait until each has built its tasks.
    let other_pods =
        begin::start_other_pods(&shape, exchange.as_mut(), &begun, &events_tx, &req_tx).await?;

    let uploader = Uploader {
        storage: storage.clone(),
        layout: layout.clone(),
        job_id: begun.job_id.clone(),
        generation: begun.generation,
        sizes: {
            let metrics = Arc::clone(&metrics);
            // Stateless operators have no state to report; a stateful one whose state
            // emptied reports 0 rather than its last size.
            StateSizes(Arc::new(move |op, task, size| {
                metrics.set_state_size_if_kept(op, &task.to_string(), size);
            }))
        },
    };
    let placement = match (&shape.pods, &exchange) {
        (Some(pods), Some((exchange, _))) => Placement::Pods {
            pods,
            exchange,
            generation: begun.generation,
        },
        _ => Placement::Local,
    };
    let forward: Vec<bool> = plan.edges.iter().map(|e| e.forward).collect();
    let grid = Grid::build(&forward, shape.parallelism, &placement);
    let backend = crate::state::Backend::new(
        &plan.job.state_backend,
        &format!("{}/{}", opts.job.namespace, plan.name),
        shape.pods.as_ref().map(|p| p.index),
    )?;
    if let Some(budget) = backend.budget() {
        metrics.watch_state_budget(budget.clone());
    }
    let tasks::Spawned {
        mut handles,
        mut ctrls,
        mut source_ctrls,
    } = tasks::spawn(
        &tasks::Shared {
            plan: &plan,
            shape: &shape,
            begun: &begun,
            slots: sinks::SlotOpener {
                connectors: &connectors,
                parallelism: shape.parallelism,
                generation: begun.generation,
                job_id: &begun.job_id,
            },
            uploader: &uploader,
            backend: &backend,
            events: &events_tx,
            metrics: &metrics,
        },
        grid,
    )
    .await?;
    // The coordinator's handles on the other pods' tasks.
    let coordinator_link = begun.link.take();
    let mut local_ctrls: HashMap<TaskId, mpsc::UnboundedSender<Control>> = HashMap::new();
    if let (Some(p), Some(others)) = (&shape.pods, &other_pods) {
        for t in shape
            .all_tasks
            .iter()
            .filter(|t| !shape.runs_here(t.subtask))
        {
            let c = others.control(p.owner(t.subtask, shape.parallelism), *t);
            if plan.is_source_stage(t.stage as usize) {
                source_ctrls.push((*t, c.clone()));
            }
            ctrls.push((*t, c));
        }
    } else if coordinator_link.is_some() {
        local_ctrls = ctrls.iter().cloned().collect();
    }
    drop(events_tx);

    if let Ok(mut st) = status.write() {
        st.job_id = begun.job_id.clone();
        st.generation = begun.generation;
        st.restored_from = begun.restored_uri.clone();
        st.sinks = connectors
            .iter()
            .map(|(id, c)| SinkReport {
                id: id.clone(),
                name: c.name(),
                guarantee: c.guarantee(),
            })
            .collect();
        st.state = JobState::Running;
    }
    let job = &plan.job;
    let coordinator = Coordinator {
        cfg: CoordinatorConfig {
            name: plan.name.clone(),
            interval: job.checkpoint.interval.get(),
            timeout: job.checkpoint.timeout.get(),
            min_pause: job.checkpoint.min_pause.get(),
            retained: job.checkpoint.retained as usize,
            parallelism: shape.parallelism,
            max_parallelism: shape.max_parallelism,
            operators: plan.operator_records(),
            sources: plan.source_records(),
        },
        up: uploader,
        sources: source_ctrls,
        tasks: ctrls,
        events: events_rx,
        requests: req_rx,
        next_id: begun.next_id,
        progress: Arc::new(StatusBoard {
            status: Arc::clone(&status),
            metrics: Arc::clone(&metrics),
        }),
    };
    let handle = match (coordinator_link, other_pods) {
        (Some(link), _) => {
            let requests = coordinator.requests;
            tokio::spawn(link.relay(local_ctrls, coordinator.events, requests))
        }
        (None, Some(mut others)) => {
            others.ready().await?;
            tokio::spawn(async move {
                let r = coordinator.run().await;
                if let Ok(o) = &r {
                    others.finish(o).await;
                }
                r
            })
        }
        (None, None) => tokio::spawn(coordinator.run()),
    };
    tracing::info!(job = %plan.name, job_id = %begun.job_id, generation = begun.generation, parallelism = shape.parallelism, pod = ?shape.pods.as_ref().map(|p| p.index), first_checkpoint = %begun.next_id, "job started");
    handles.extend(sampler);
    Ok(RunningJob {
        control_addr,
        requests: req_tx,
        status,
        metrics,
        handle,
        tasks: handles,
        sweep: (sweeps && backend.budget().is_some())
            .then(|| (storage.clone(), layout.clone(), begun.job_id.clone())),
    })
}
