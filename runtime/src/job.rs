//! Starting a job: sinks prepared, the checkpoint start-up protocol
//! ([`crate::checkpoint::startup`]: restore point, generation claim, lineage re-read), each
//! sink's commit-phase recovery, then the task graph, the coordinator and the control API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_crds::control::ControlToken;
use weir_crds::{SinkSpec, SourceSpec};

use crate::checkpoint::coordinator::{Coordinator, CoordinatorConfig, Outcome, Request};
use crate::checkpoint::layout::Layout;
use crate::checkpoint::messages::{Control, TaskEvent};
use crate::checkpoint::snapshot::Uploader;
use crate::checkpoint::startup::{self, Startup, StartupInput};
use crate::cluster::exchange::Exchange;
use crate::cluster::wire::StartInfo;
use crate::cluster::{Pods, link};
use crate::connectors;
use crate::control::metrics::Metrics;
use crate::control::status::{JobReport, JobState, SinkReport, StatusBoard};
use crate::control::{self, ApiState};
use crate::error::{Error, Result};
use crate::ids::{Millis, TaskId};
use crate::keys::{KeyCodec, key_group_range};
use crate::plan::Plan;
use crate::sink::{self, SinkConnector, SinkContext};
use crate::source::datagen::Generator;
use crate::source::file::DECODE_ERROR_SCHEMA;
use crate::source::idleness::Idleness;
use crate::source::owned_splits;
use crate::storage::Storage;
use crate::task::{Outlet, Shuffle, SinkSlot, SourceTask, StageTask, TaskCore};

/// Bounded channel capacity between tasks, in batches: small, so backpressure is quick and
/// barriers do not queue behind much data.
const CHANNEL_BATCHES: usize = 8;

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

pub use crate::checkpoint::startup::StartRequest;

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

/// Start `plan`.
///
/// # Errors
/// Storage refused or unreachable, no usable restore point, state that does not fit the job,
/// sink recovery failures, or a control API that cannot bind.
pub async fn start(plan: Plan, opts: RunOptions) -> Result<RunningJob> {
    let job = &plan.job;
    let parallelism = opts.parallelism.unwrap_or(job.parallelism);
    let max_parallelism = job.max_parallelism;
    if parallelism == 0 || parallelism > max_parallelism {
        return Err(Error::Restore(format!(
            "parallelism {parallelism} must be between 1 and maxParallelism {max_parallelism}"
        )));
    }
    let pods = opts.pods.clone().map(Arc::new);
    if let Some(p) = &pods {
        p.check(parallelism)?;
    }
    let runs_here = |subtask: u32| pods.as_ref().is_none_or(|p| p.runs(subtask, parallelism));
    // The control API first, so that liveness and readiness answer (and say what start-up
    // waits for) while sinks, sources and storage are reached and state is restored.
    let stages = plan.stages.len();
    let all_tasks: Vec<TaskId> = (0..stages as u32)
        .flat_map(|s| {
            (0..parallelism).map(move |t| TaskId {
                stage: s,
                subtask: t,
            })
        })
        .collect();
    let task_ids: Vec<TaskId> = all_tasks
        .iter()
        .copied()
        .filter(|t| runs_here(t.subtask))
        .collect();
    let metrics = Arc::new(Metrics::new(
        task_ids.iter().map(ToString::to_string).collect(),
    ));
    let status = Arc::new(RwLock::new(JobReport {
        name: plan.name.clone(),
        job_id: String::new(),
        generation: 0,
        state: JobState::Initializing,
        parallelism,
        max_parallelism,
        restored_from: None,
        last_checkpoint: None,
        checkpoints: Vec::new(),
        savepoints: Vec::new(),
        sinks: Vec::new(),
        watermarks: Vec::new(),
        source_lag: Vec::new(),
        records_in: 0,
        failure: None,
    }));
    let (req_tx, req_rx) = mpsc::channel(16);
    let control_addr = match opts.control_addr {
        Some(addr) => Some(
            control::serve(
                addr,
                ApiState::new(
                    Arc::clone(&status),
                    Arc::clone(&metrics),
                    req_tx.clone(),
                    task_ids.clone(),
                    opts.control_token.clone(),
                ),
            )
            .await
            .map_err(|e| Error::internal(e.to_string()))?,
        ),
        None => None,
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut exchange = match &pods {
        Some(p) => {
            Some(Exchange::serve(Arc::clone(p), events_tx.clone(), Arc::clone(&metrics)).await?)
        }
        None => None,
    };
    // Sinks first: a wrong table or topic fails before any state is touched.
    let env = sink::SinkEnv {
        job_name: plan.name.clone(),
        parallelism,
        exactly_once: job.checkpoint.exactly_once,
    };
    let mut connectors: BTreeMap<String, Arc<dyn SinkConnector>> = BTreeMap::new();
    let mut inputs: Vec<(String, &SinkSpec, SchemaRef)> = Vec::new();
    let last_output = plan.stages.last().map_or_else(
        || Arc::clone(&plan.source_schema),
        |s| Arc::clone(&s.output),
    );
    for (id, spec) in &plan.sinks {
        inputs.push((id.clone(), spec, Arc::clone(&last_output)));
    }
    for st in &plan.stages {
        for op in &st.ops {
            if let Some((id, spec)) = &op.side_sink {
                inputs.push((id.clone(), spec, Arc::clone(&op.input)));
            }
        }
    }
    if let Some((id, spec)) = &plan.decode_side {
        inputs.push((id.clone(), spec, DECODE_ERROR_SCHEMA.clone()));
    }
    for (id, spec, input) in inputs {
        let c = connectors::sink(spec, &env);
        c.prepare(&input).await?;
        connectors.insert(id, c);
    }
    connectors::wait_for_source(&job.pipeline.source, &plan.name).await?;
    let storage_uri = opts
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| job.checkpoint.storage.clone());
    let storage = Storage::open(&storage_uri, &job.checkpoint.s3).await?;
    storage.wait_until_reachable(crate::wait::limit()).await?;
    let layout = Layout::new(&opts.namespace, &plan.name);
    let begun = match (&pods, &exchange) {
        (Some(p), Some((ex, _))) if !p.is_coordinator() => {
            let (link, info) = link::Coordinator::join(ex, &p.incarnation, p.index).await?;
            let restored = startup::join(info.restored.as_deref(), &job.checkpoint.s3).await?;
            Begun {
                restored,
                restored_uri: info.restored,
                job_id: info.job_id,
                generation: info.generation,
                next_id: info.first_checkpoint,
                link: Some(link),
            }
        }
        _ => {
            begin_here(
                &plan,
                &opts,
                &storage,
                &storage_uri,
                &layout,
                max_parallelism,
                &connectors,
            )
            .await?
        }
    };
    let Begun {
        restored,
        restored_uri,
        job_id,
        generation,
        next_id,
        link: coordinator_link,
    } = begun;
    // The other pods: where to start, then wait until each has built its tasks.
    let mut other_pods = None;
    if let (Some(p), Some((ex, joins))) = (&pods, exchange.as_mut()) {
        ex.set_generation(generation);
        if p.is_coordinator() {
            let joined = link::accept(joins, p.count).await?;
            let info = StartInfo {
                job_id: job_id.clone(),
                generation,
                restored: restored_uri.clone(),
                first_checkpoint: next_id,
            };
            other_pods = Some(link::Pods::start(joined, &info, &events_tx, &req_tx).await?);
        }
    }

    // Tasks.
    let uploader = Uploader {
        storage: storage.clone(),
        layout: layout.clone(),
        job_id: job_id.clone(),
        generation,
    };
    // senders[stage][upstream][downstream], receivers[stage][downstream][upstream]
    let mut senders: Vec<Vec<Vec<mpsc::Sender<crate::task::Message>>>> = Vec::new();
    let mut receivers: Vec<Vec<Vec<mpsc::Receiver<crate::task::Message>>>> = Vec::new();
    // Both ends here: a channel. One end in another pod: a channel whose other end is a
    // data link. Neither: nothing.
    for stage in 0..stages as u32 {
        let mut s = vec![Vec::new(); parallelism as usize];
        let mut r: Vec<Vec<_>> = (0..parallelism).map(|_| Vec::new()).collect();
        // Stage 0 (the sources) has no inputs.
        let upstream = if stage == 0 { 0..0 } else { 0..parallelism };
        for (up, from_upstream) in upstream.zip(&mut s) {
            for (down, to_downstream) in (0..parallelism).zip(&mut r) {
                let (here_up, here_down) = (runs_here(up), runs_here(down));
                if !here_up && !here_down {
                    continue;
                }
                let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
                match (&pods, &exchange) {
                    (Some(p), Some((ex, _))) if !here_down => {
                        ex.send(generation, stage, up, down, p.owner(down, parallelism), rx);
                        from_upstream.push(tx);
                    }
                    (Some(_), Some((ex, _))) if !here_up => {
                        ex.expect(stage, up, down, tx);
                        to_downstream.push(rx);
                    }
                    _ => {
                        from_upstream.push(tx);
                        to_downstream.push(rx);
                    }
                }
            }
        }
        senders.push(s);
        receivers.push(r);
    }
    let open_slot = |id: &str, subtask: u32| -> Result<SinkSlot> {
        let c = connectors
            .get(id)
            .ok_or_else(|| Error::internal(format!("no connector {id}")))?;
        Ok(SinkSlot {
            id: id.to_string(),
            inst: c.open(&SinkContext {
                subtask,
                parallelism,
                generation,
                job_id: job_id.clone(),
            })?,
            pending: BTreeMap::new(),
        })
    };
    let mut ctrls = Vec::new();
    let mut source_ctrls = Vec::new();
    let mut handles = Vec::new();
    let source = &job.pipeline.source;
    let ooo = source
        .event_time
        .as_ref()
        .map_or(0, |e| e.max_out_of_orderness.as_millis_i64());
    let idle_timeout = source
        .event_time
        .as_ref()
        .and_then(|e| e.idle_timeout)
        .map(|d| d.get());
    let generator = match &source.datagen {
        Some(d) => Some(Generator::new(d, Arc::clone(&plan.source_schema))?),
        None => None,
    };
    for (slot, tid) in task_ids.iter().enumerate() {
        let stage = &plan.stages[tid.stage as usize];
        let range = key_group_range(tid.subtask, parallelism, max_parallelism);
        let mut ops = Vec::new();
        let mut side = Vec::new();
        for op in &stage.ops {
            let mut inst = op.instantiate(max_parallelism)?;
            if let Some(r) = &restored {
                // The checkpoint's CRC held, so state that does not decode or fit was written
                // for another definition of this operator.
                inst.restore(r.keyed_for(&op.id, &range))
                    .map_err(|e| match e {
                        Error::State { message, .. } => Error::Incompatible {
                            operator: op.id.clone(),
                            checkpoint: r.uri.trim_end_matches('/').to_string(),
                            message,
                        },
                        other => other,
                    })?;
            }
            ops.push((op.id.clone(), inst));
            side.push(match &op.side_sink {
                Some((id, _)) => Some(open_slot(id, tid.subtask)?),
                None => None,
            });
        }
        let last = tid.stage as usize + 1 == stages;
        let outlet = if last {
            Outlet::Sinks(
                plan.sinks
                    .iter()
                    .map(|(id, _)| open_slot(id, tid.subtask))
                    .collect::<Result<_>>()?,
            )
        } else {
            let next = &plan.stages[tid.stage as usize + 1];
            Outlet::Shuffle(Shuffle {
                targets: std::mem::take(&mut senders[tid.stage as usize + 1][tid.subtask as usize]),
                keys: KeyCodec::new(&stage.output, next.shuffle_keys.clone().unwrap_or_default())?,
                max_parallelism,
            })
        };
        let decode_side = match (&plan.decode_side, tid.stage) {
            (Some((id, _)), 0) => Some(open_slot(id, tid.subtask)?),
            _ => None,
        };
        let mut core = TaskCore {
            id: *tid,
            ops,
            side,
            decode_side,
            outlet,
            events: events_tx.clone(),
            uploader: uploader.clone(),
            metrics: Arc::clone(&metrics),
            slot,
            watermark: Millis::MIN,
            idle: false,
        };
        core.begin(next_id).await?;
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel::<Control>();
        ctrls.push((*tid, ctrl_tx.clone()));
        let events = events_tx.clone();
        let id = *tid;
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> =
            if tid.stage == 0 {
                source_ctrls.push((*tid, ctrl_tx));
                let reader = connectors::source_reader(
                    source,
                    generator.as_ref(),
                    &plan,
                    tid.subtask,
                    parallelism,
                    restored.as_ref(),
                    &metrics,
                )?;
                let rate = source.datagen.as_ref().and_then(|d| d.rate).map(|r| {
                    let owned =
                        owned_splits(d_splits(source), tid.subtask, parallelism).len() as f64;
                    r as f64 * owned / f64::from(d_splits(source).max(1))
                });
                Box::pin(
                    SourceTask {
                        core,
                        reader,
                        ctrl: ctrl_rx,
                        idleness: Idleness::new(idle_timeout, ooo),
                        rate,
                        taken: BTreeMap::new(),
                    }
                    .run(),
                )
            } else {
                Box::pin(
                    StageTask {
                        core,
                        inputs: std::mem::take(
                            &mut receivers[tid.stage as usize][tid.subtask as usize],
                        ),
                        ctrl: ctrl_rx,
                    }
                    .run(),
                )
            };
        handles.push(tokio::spawn(async move {
            let ev = match fut.await {
                Ok(()) => TaskEvent::Done(id),
                Err(e) => TaskEvent::Failed(id, e),
            };
            let _ = events.send(ev);
        }));
    }
    // The coordinator's handles on the other pods' tasks.
    let mut local_ctrls = std::collections::HashMap::new();
    if let (Some(p), Some(others)) = (&pods, &other_pods) {
        for t in all_tasks.iter().filter(|t| !runs_here(t.subtask)) {
            let c = others.control(p.owner(t.subtask, parallelism), *t);
            if t.stage == 0 {
                source_ctrls.push((*t, c.clone()));
            }
            ctrls.push((*t, c));
        }
    } else if coordinator_link.is_some() {
        local_ctrls = ctrls.iter().cloned().collect();
    }
    drop(events_tx);

    if let Ok(mut st) = status.write() {
        st.job_id = job_id.clone();
        st.generation = generation;
        st.restored_from = restored_uri;
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
    let coordinator = Coordinator {
        cfg: CoordinatorConfig {
            name: plan.name.clone(),
            interval: job.checkpoint.interval.get(),
            timeout: job.checkpoint.timeout.get(),
            min_pause: job.checkpoint.min_pause.get(),
            retained: job.checkpoint.retained as usize,
            parallelism,
            max_parallelism,
        },
        up: uploader,
        sources: source_ctrls,
        tasks: ctrls,
        events: events_rx,
        requests: req_rx,
        next_id,
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
    tracing::info!(job = %plan.name, job_id = %job_id, generation, parallelism, pod = ?pods.as_ref().map(|p| p.index), first_checkpoint = %next_id, "job started");
    Ok(RunningJob {
        control_addr,
        requests: req_tx,
        status,
        metrics,
        handle,
        tasks: handles,
    })
}

/// Where this incarnation starts, as pod 0 (or a single pod) decided it, or as pod 0 told
/// this pod.
struct Begun {
    restored: Option<crate::checkpoint::restore::Restored>,
    restored_uri: Option<String>,
    job_id: String,
    generation: u64,
    next_id: crate::ids::CheckpointId,
    link: Option<link::Coordinator>,
}

/// The start-up protocol, run by the only pod or pod 0: restore point, generation claim,
/// every sink's commit-phase recovery (for all subtasks, whichever pod runs them).
async fn begin_here(
    plan: &Plan,
    opts: &RunOptions,
    storage: &Storage,
    storage_uri: &str,
    layout: &Layout,
    max_parallelism: u32,
    connectors: &BTreeMap<String, Arc<dyn SinkConnector>>,
) -> Result<Begun> {
    let job = &plan.job;
    let stateful_operators = plan
        .stages
        .iter()
        .flat_map(|s| {
            s.ops
                .iter()
                .filter(|o| o.is_stateful())
                .map(|o| o.id.clone())
        })
        .collect();
    let startup = startup::begin(
        storage,
        layout,
        &StartupInput {
            storage_uri,
            s3: &job.checkpoint.s3,
            exactly_once: job.checkpoint.exactly_once,
            max_parallelism,
            stateful_operators,
            allow_non_restored_state: opts.allow_non_restored_state,
            skip_unreadable_checkpoints: opts.skip_unreadable_checkpoints,
            restore_from: opts.restore_from.as_deref(),
            start: opts.start.as_ref(),
        },
    )
    .await?;
    // Sinks: commit-phase recovery before anything writes.
    for (id, c) in connectors {
        c.recover_and_commit(startup.committables_for(id)).await?;
    }
    startup.sinks_recovered(storage).await?;
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

fn d_splits(source: &SourceSpec) -> u32 {
    source.datagen.as_ref().map_or(1, |d| d.splits)
}
