//! The tasks this process runs: each subtask's operators (restored from the checkpoint when
//! there is one), its outlets (later stages' channels, or sinks), spawned.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Shape;
use super::begin::Begun;
use super::sinks::SlotOpener;
use crate::checkpoint::messages::{Control, TaskEvent};
use crate::checkpoint::snapshot::Uploader;
use crate::cluster::grid::Grid;
use crate::connectors;
use crate::control::metrics::Metrics;
use crate::error::{Error, Result};
use crate::ids::{Millis, TaskId};
use crate::keys::{KeyCodec, key_group_range};
use crate::operator::Input;
use crate::plan::{Plan, StagePlan, Target};
use crate::source::idleness::Idleness;
use crate::task::chain::{Chain, Linked};
use crate::task::{Outlet, Shuffle, SourceTask, StageTask, TaskCore};

/// The spawned tasks and the coordinator's handles on them.
pub(super) struct Spawned {
    pub handles: Vec<JoinHandle<()>>,
    /// Every local task's control channel.
    pub ctrls: Vec<(TaskId, mpsc::UnboundedSender<Control>)>,
    /// The source tasks' (where barriers are injected).
    pub source_ctrls: Vec<(TaskId, mpsc::UnboundedSender<Control>)>,
}

/// What every task of the incarnation shares.
pub(super) struct Shared<'a> {
    pub plan: &'a Plan,
    pub shape: &'a Shape,
    pub begun: &'a Begun,
    pub slots: SlotOpener<'a>,
    pub uploader: &'a Uploader,
    pub backend: &'a crate::state::Backend,
    pub events: &'a mpsc::UnboundedSender<TaskEvent>,
    pub metrics: &'a Arc<Metrics>,
}

/// Build and spawn every task this process runs, each after its `begin` at the first
/// checkpoint id.
///
/// # Errors
/// State that does not fit an operator (named), a sink or source that cannot be opened.
pub(super) async fn spawn(cx: &Shared<'_>, mut grid: Grid) -> Result<Spawned> {
    let (plan, shape) = (cx.plan, cx.shape);
    // Each source's connector, built once; stage `i` reads source `i`.
    let sources = plan
        .sources
        .iter()
        .map(|s| connectors::Source::new(&s.spec, &plan.name, Arc::clone(&s.schema), s.time_col))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Spawned {
        handles: Vec::new(),
        ctrls: Vec::new(),
        source_ctrls: Vec::new(),
    };
    // Later stages first, so that an edge's sender knows what its receiver reads.
    let mut order: Vec<(usize, &TaskId)> = shape.here.iter().enumerate().collect();
    order.sort_by_key(|(_, tid)| std::cmp::Reverse(tid.stage));
    let mut edge_reads = BTreeMap::new();
    let mut cores = BTreeMap::new();
    for (slot, tid) in order {
        let stage = &plan.stages[tid.stage as usize];
        let core = task_core(cx, *tid, slot, stage, &mut grid, &edge_reads).await?;
        if let ([e], Some(cols)) = (&stage.inputs[..], core.chain.input_columns())
            && let Some(edge) = plan.edges.get(*e)
        {
            let mut cols = cols.to_vec();
            cols.extend(&edge.keys);
            cols.sort_unstable();
            cols.dedup();
            edge_reads.insert(*e, cols);
        }
        cores.insert(slot, core);
    }
    for (slot, tid) in shape.here.iter().enumerate() {
        let stage = &plan.stages[tid.stage as usize];
        let mut core = cores
            .remove(&slot)
            .ok_or_else(|| Error::internal(format!("no task {tid:?}")))?;
        core.begin(cx.begun.next_id).await?;
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel::<Control>();
        out.ctrls.push((*tid, ctrl_tx.clone()));
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> =
            if let (Some(source), Some(sp)) = (
                sources.get(tid.stage as usize),
                plan.sources.get(tid.stage as usize),
            ) {
                let ooo = sp
                    .spec
                    .event_time
                    .as_ref()
                    .map_or(0, |e| e.max_out_of_orderness.as_millis_i64());
                let idle_timeout = sp
                    .spec
                    .event_time
                    .as_ref()
                    .and_then(|e| e.idle_timeout)
                    .map(|d| d.get());
                out.source_ctrls.push((*tid, ctrl_tx));
                let mut reader = source.reader(
                    tid.stage,
                    tid.subtask,
                    shape.parallelism,
                    cx.begun.restored.as_ref(),
                    cx.metrics,
                )?;
                if let Some(columns) = core.chain.input_columns() {
                    reader.read_only(columns);
                }
                Box::pin(
                    SourceTask {
                        core,
                        reader,
                        ctrl: ctrl_rx,
                        idleness: Idleness::new(idle_timeout, ooo),
                        rate: source.rate(tid.subtask, shape.parallelism),
                        taken: BTreeMap::new(),
                    }
                    .run(),
                )
            } else {
                let mut inputs = Vec::new();
                for (port, &edge) in stage.inputs.iter().enumerate() {
                    let port = Input(u8::try_from(port).map_err(|_| {
                        Error::internal(format!("stage {} has over 255 inputs", tid.stage))
                    })?);
                    inputs.extend(
                        grid.take_receivers(edge, tid.subtask)
                            .into_iter()
                            .map(|rx| (port, rx)),
                    );
                }
                Box::pin(
                    StageTask {
                        core,
                        inputs,
                        ctrl: ctrl_rx,
                    }
                    .run(),
                )
            };
        let events = cx.events.clone();
        let id = *tid;
        out.handles.push(tokio::spawn(async move {
            let ev = match fut.await {
                Ok(()) => TaskEvent::Done(id),
                Err(e) => TaskEvent::Failed(id, e),
            };
            let _ = events.send(ev);
        }));
    }
    // Every store is restored: what the previous run left is linked in or not needed.
    cx.backend.forget_previous();
    Ok(out)
}

/// One task's operators, side outputs and outlet.
async fn task_core(
    cx: &Shared<'_>,
    tid: TaskId,
    slot: usize,
    stage: &StagePlan,
    grid: &mut Grid,
    edge_reads: &BTreeMap<usize, Vec<usize>>,
) -> Result<TaskCore> {
    let (plan, shape) = (cx.plan, cx.shape);
    let range = key_group_range(tid.subtask, shape.parallelism, shape.max_parallelism);
    let mut ops: Vec<Linked> = Vec::new();
    let mut side = Vec::new();
    let ahead = Arc::new(crate::state::ahead::UploadAhead {
        storage: cx.uploader.storage.clone(),
        shared_dir: cx.uploader.layout.shared_dir(&cx.uploader.job_id),
        every: crate::state::ahead::EVERY,
    });
    for c in &stage.ops {
        let op = &c.op;
        let groups = weir_state::KeyGroups::new(range.start..=range.end.saturating_sub(1));
        let place = op
            .keeps_disk_state()
            .then(|| cx.backend.place(tid, &op.id, groups))
            .flatten()
            .map(|p| crate::state::disk::Place {
                ahead: Some(Arc::clone(&ahead)),
                ..p
            });
        let dir = place.as_ref().map(|p| p.dir.clone());
        let mut inst = op.instantiate_in(shape.max_parallelism, place)?;
        if let Some(r) = &cx.begun.restored {
            let on_disk = r.disk_for(&op.id, &range);
            let restored = match dir {
                _ if on_disk.is_empty() => Ok(()),
                Some(into) => {
                    let shared = cx.uploader.layout.shared_dir(&cx.uploader.job_id);
                    let previous = cx.backend.previous(tid, &op.id);
                    let fetched = crate::state::fetch::fetch(
                        &cx.uploader.storage,
                        &on_disk,
                        &into,
                        &shared,
                        previous.as_deref(),
                    )
                    .await?;
                    inst.restore_disk(fetched)
                }
                // Refused by the operator, by name, before anything is downloaded.
                None => inst.restore_disk(Vec::new()),
            };
            // The checkpoint's CRC held, so state that does not decode or fit was written
            // for another definition of this operator.
            let restored = match restored.and_then(|()| inst.restore(r.keyed_for(&op.id, &range))) {
                // Streamed state (a savepoint of a disk store): a part at a time.
                Ok(()) => restore_parts(r, &op.id, &range, inst.as_mut()).await,
                Err(e) => Err(e),
            };
            restored.map_err(|e| match e {
                Error::State { message, .. } => Error::Incompatible {
                    operator: op.id.clone(),
                    checkpoint: r.uri.trim_end_matches('/').to_string(),
                    message,
                },
                other => other,
            })?;
        }
        ops.push((op.id.clone(), inst, c.parents.clone()));
        side.push(match &op.side_sink {
            Some((id, _)) => Some(cx.slots.open(id, tid.subtask)?),
            None => None,
        });
    }
    let mut outlets = Vec::new();
    for o in &stage.outlets {
        outlets.push(match &o.to {
            Target::Sinks(list) => Outlet::Sinks(
                list.iter()
                    .map(|&i| {
                        let (id, _) = plan.sinks.get(i).ok_or_else(|| {
                            Error::internal(format!("stage {} writes no sink {i}", tid.stage))
                        })?;
                        cx.slots.open(id, tid.subtask)
                    })
                    .collect::<Result<_>>()?,
            ),
            Target::Edge(e) => {
                let edge = plan
                    .edges
                    .get(*e)
                    .ok_or_else(|| Error::internal(format!("no edge {e}")))?;
                let mut targets = grid.take_senders(*e, tid.subtask);
                if edge.forward {
                    Outlet::Forward(targets.pop().ok_or_else(|| {
                        Error::internal(format!(
                            "no channel for subtask {} on edge {e}",
                            tid.subtask
                        ))
                    })?)
                } else {
                    Outlet::Shuffle(Shuffle {
                        targets,
                        keys: KeyCodec::new(&edge.schema, edge.keys.clone())?,
                        max_parallelism: shape.max_parallelism,
                    })
                }
            }
        });
    }
    let after: Vec<Option<usize>> = stage.outlets.iter().map(|o| o.after).collect();
    // What each outlet's receiver reads, when its stage is built here and says.
    let reads: Vec<Option<Vec<usize>>> = stage
        .outlets
        .iter()
        .map(|o| match o.to {
            Target::Edge(e) => edge_reads.get(&e).cloned(),
            Target::Sinks(_) => None,
        })
        .collect();
    let chain = Chain::reading(ops, &after, &reads)?;
    let decode_side = match (&plan.decode_side, tid.stage) {
        (Some((id, _)), 0) => Some(cx.slots.open(id, tid.subtask)?),
        _ => None,
    };
    Ok(TaskCore {
        id: tid,
        chain,
        side,
        decode_side,
        outlets,
        events: cx.events.clone(),
        uploader: cx.uploader.clone(),
        metrics: Arc::clone(cx.metrics),
        slot,
        watermark: Millis::MIN,
        idle: false,
    })
}

/// Hand `operator`'s streamed state in `r` (parts, holding a savepoint of a disk store) to
/// `inst` one part at a time, each cut to the key groups of `range`: state larger than memory
/// restores in the memory of one part.
async fn restore_parts(
    r: &crate::checkpoint::restore::Restored,
    operator: &str,
    range: &std::ops::Range<u32>,
    inst: &mut dyn crate::operator::Operator,
) -> Result<()> {
    for part in r.parts_for(operator, range) {
        let keyed = crate::checkpoint::parts::read(&r.storage, &r.dir, part, range).await?;
        inst.restore(keyed)?;
    }
    Ok(())
}
