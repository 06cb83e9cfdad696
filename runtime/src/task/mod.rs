//! Subtask event loops. A task runs its operators ([`chain`]), feeds its outlets (key-group
//! shuffles to later stages, or sinks), and reacts to barriers; the protocol decisions
//! themselves live in [`crate::checkpoint`].
//!
//! Channels between tasks are bounded: a slow consumer makes its producers wait
//! (backpressure), and the time they wait is measured.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::Poll as TaskPoll;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use tokio::sync::mpsc;

pub mod chain;

use crate::checkpoint::Barrier;
use crate::checkpoint::align::{AlignAction, Aligner};
use crate::checkpoint::messages::{Control, TaskEvent};
use crate::checkpoint::metadata::{SinkCommittable, TaskState};
use crate::checkpoint::snapshot::{Snapshot, Uploader};
use crate::control::metrics::Metrics;
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, Millis, TaskId};
use crate::keys::{KeyCodec, partition};
use crate::operator::Input;
use crate::sink::{Committable, SinkInstance};
use crate::source::idleness::Idleness;
use crate::source::{Poll, SourceReader};
use crate::watermark::{EventTime, InputWatermarks};

/// What flows between tasks.
#[derive(Debug)]
pub enum Message {
    /// Records.
    Data(RecordBatch),
    /// Event time has advanced to this watermark on this channel; an idle channel is
    /// active again.
    Watermark(Millis),
    /// Every source behind this channel is idle (`eventTime.idleTimeout`): it holds nothing
    /// back until its next watermark.
    Idle,
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The upstream task finished; nothing more comes.
    End,
}

/// A sink subtask with its not-yet-committed transactions.
pub struct SinkSlot {
    /// Sink id in the plan.
    pub id: String,
    /// The instance.
    pub inst: SinkInstance,
    /// Pre-committed, awaiting the checkpoint's completion.
    pub pending: BTreeMap<CheckpointId, Committable>,
}

impl SinkSlot {
    async fn write(&mut self, b: &RecordBatch) -> Result<()> {
        match &mut self.inst {
            SinkInstance::TwoPhase(s) => s.write(b).await,
            SinkInstance::Plain(s) => s.write(b).await,
        }
    }
}

/// Key-group routing to a later stage's subtasks.
pub struct Shuffle {
    /// One sender per downstream subtask.
    pub targets: Vec<mpsc::Sender<Message>>,
    /// Key columns of this stage's output.
    pub keys: KeyCodec,
    /// Key groups.
    pub max_parallelism: u32,
}

/// Where some of a task's output goes.
pub enum Outlet {
    /// To a later stage.
    Shuffle(Shuffle),
    /// To the same subtask of a later stage.
    Forward(mpsc::Sender<Message>),
    /// To sinks, each receiving every record.
    Sinks(Vec<SinkSlot>),
}

/// State and wiring shared by source and stage tasks.
pub struct TaskCore {
    /// Who.
    pub id: TaskId,
    /// The operators.
    pub chain: chain::Chain,
    /// Side-output sink per operator (late records).
    pub side: Vec<Option<SinkSlot>>,
    /// Side output for undecodable source records.
    pub decode_side: Option<SinkSlot>,
    /// Outputs, as the chain numbers them.
    pub outlets: Vec<Outlet>,
    /// To the coordinator.
    pub events: mpsc::UnboundedSender<TaskEvent>,
    /// Snapshot upload target.
    pub uploader: Uploader,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Index of this task in the metrics' watermark table.
    pub slot: usize,
    /// Current output watermark.
    pub watermark: Millis,
    /// Said downstream that everything behind this task is idle, and not active since.
    pub idle: bool,
}

impl TaskCore {
    fn slots_mut(&mut self) -> impl Iterator<Item = &mut SinkSlot> {
        self.outlets
            .iter_mut()
            .flat_map(|o| match o {
                Outlet::Sinks(s) => s.as_mut_slice(),
                Outlet::Shuffle(_) | Outlet::Forward(_) => &mut [],
            })
            .chain(self.side.iter_mut().flatten())
            .chain(self.decode_side.iter_mut())
    }

    /// Open every sink's first transaction.
    ///
    /// # Errors
    /// Sink errors.
    pub async fn begin(&mut self, txn: CheckpointId) -> Result<()> {
        for slot in self.slots_mut() {
            if let SinkInstance::TwoPhase(s) = &mut slot.inst {
                s.begin(txn).await?;
            }
        }
        Ok(())
    }

    /// What the chain produced: side outputs written, results sent or written.
    async fn deliver(&mut self, em: chain::Emitted) -> Result<()> {
        for (i, b) in em.side {
            if let Some(slot) = &mut self.side[i] {
                slot.write(&b).await?;
            }
        }
        for (o, b) in em.out {
            self.emit(o, b).await?;
        }
        Ok(())
    }

    /// Records entering the task on input `input`.
    ///
    /// # Errors
    /// Operator or sink errors.
    pub async fn push(&mut self, input: Input, batch: RecordBatch) -> Result<()> {
        let em = self.chain.push(input, batch, &self.metrics)?;
        self.deliver(em).await
    }

    /// Input `input` ended (every channel of it): the operators reading it hear so.
    ///
    /// # Errors
    /// Operator or sink errors.
    pub async fn input_end(&mut self, input: Input) -> Result<()> {
        let em = self.chain.input_end(input, &self.metrics)?;
        self.deliver(em).await
    }

    /// Undecodable source records, to the side output.
    ///
    /// # Errors
    /// Sink errors.
    pub async fn push_decode_errors(&mut self, batch: RecordBatch) -> Result<()> {
        self.metrics.decode_errors.inc_by(batch.num_rows() as u64);
        if let Some(slot) = &mut self.decode_side {
            slot.write(&batch).await?;
        }
        Ok(())
    }

    /// Advance event time: each operator fires what the watermark completes (its output
    /// flowing through the operators after it), then the watermark goes downstream.
    ///
    /// # Errors
    /// Operator or sink errors.
    pub async fn advance_watermark(&mut self, wm: Millis) -> Result<()> {
        if wm <= self.watermark {
            // Not later, but a channel that was idle is active again.
            return self.activate().await;
        }
        self.watermark = wm;
        self.idle = false;
        self.metrics.set_watermark(self.slot, wm);
        let em = self.chain.watermark(wm, &self.metrics)?;
        self.deliver(em).await?;
        let out = self.chain.output_watermark(wm);
        self.broadcast(Message::Watermark(out)).await
    }

    /// Everything behind this task is idle, with event time as far as `wm`: fire what that
    /// completes, then downstream stops waiting for this task (said once, until active again).
    ///
    /// # Errors
    /// Operator or sink errors; downstream gone.
    async fn go_idle_at(&mut self, wm: Millis) -> Result<()> {
        if wm > self.watermark {
            self.advance_watermark(wm).await?;
        }
        if self.idle {
            return Ok(());
        }
        self.idle = true;
        self.broadcast(Message::Idle).await
    }

    /// Act on what a task's inputs (a source's splits, a stage's channels) say about event
    /// time.
    async fn follow(&mut self, t: EventTime) -> Result<()> {
        match t {
            EventTime::At(wm) => self.advance_watermark(wm).await,
            EventTime::Idle(wm) => self.go_idle_at(wm).await,
        }
    }

    /// Active again after [`TaskCore::go_idle_at`]: the current watermark tells downstream.
    async fn activate(&mut self) -> Result<()> {
        if !self.idle {
            return Ok(());
        }
        self.idle = false;
        let out = self.chain.output_watermark(self.watermark);
        self.broadcast(Message::Watermark(out)).await
    }

    async fn emit(&mut self, outlet: usize, batch: RecordBatch) -> Result<()> {
        match &mut self.outlets[outlet] {
            Outlet::Sinks(slots) => {
                for s in slots.iter_mut() {
                    s.write(&batch).await?;
                }
                self.metrics.records("sinks", batch.num_rows() as u64, 0);
                Ok(())
            }
            Outlet::Shuffle(sh) => {
                let n = sh.targets.len() as u32;
                for (t, part) in partition(&batch, &sh.keys, n, sh.max_parallelism)? {
                    send(
                        &sh.targets[t],
                        Message::Data(part),
                        &self.metrics,
                        self.slot,
                    )
                    .await?;
                }
                Ok(())
            }
            Outlet::Forward(tx) => send(tx, Message::Data(batch), &self.metrics, self.slot).await,
        }
    }

    async fn broadcast(&mut self, m: Message) -> Result<()> {
        // By index: an iterator over the outlets would hold sinks (not `Sync`) across the
        // sends' awaits.
        for o in 0..self.outlets.len() {
            let targets: &[mpsc::Sender<Message>] = match &self.outlets[o] {
                Outlet::Shuffle(sh) => &sh.targets,
                Outlet::Forward(tx) => std::slice::from_ref(tx),
                Outlet::Sinks(_) => &[],
            };
            for t in targets {
                let copy = match &m {
                    Message::Watermark(w) => Message::Watermark(*w),
                    Message::Barrier(b) => Message::Barrier(*b),
                    Message::End => Message::End,
                    Message::Idle => Message::Idle,
                    Message::Data(d) => Message::Data(d.clone()),
                };
                send(t, copy, &self.metrics, self.slot).await?;
            }
        }
        Ok(())
    }

    /// Barrier `b` is aligned: capture operator state, pre-commit sinks, encode and upload in
    /// the background, forward the barrier, open the next transactions.
    ///
    /// # Errors
    /// Operator capture or sink pre-commit errors (these fail the task).
    pub async fn snapshot(
        &mut self,
        b: Barrier,
        splits: Vec<crate::source::SplitState>,
        alignment: Duration,
    ) -> Result<()> {
        let state = TaskState {
            splits,
            ..TaskState::default()
        };
        let captured = self.chain.capture(b.kind.is_savepoint())?;
        let subtask = self.id.subtask;
        let mut committables = Vec::new();
        let metrics = self.metrics.clone();
        for slot in self.slots_mut() {
            match &mut slot.inst {
                SinkInstance::TwoPhase(s) => {
                    let c = s.pre_commit().await?;
                    slot.pending.insert(b.id, c);
                    metrics.in_flight.set(&slot.id, subtask, &slot.pending);
                }
                SinkInstance::Plain(s) => s.flush(b.id).await?,
            }
            for (chk, c) in &slot.pending {
                committables.push(SinkCommittable {
                    sink: slot.id.clone(),
                    checkpoint: *chk,
                    subtask,
                    committable: c.clone(),
                });
            }
        }
        self.uploader.upload(
            self.id,
            b,
            Snapshot {
                state,
                operators: captured,
            },
            committables,
            alignment,
            self.events.clone(),
        );
        self.broadcast(Message::Barrier(b)).await?;
        self.begin(CheckpointId(b.id.0 + 1)).await
    }

    /// Commit every transaction pre-committed at or before `upto`.
    ///
    /// # Errors
    /// Sink commit errors (the job fails; a restore retries the commit).
    pub async fn commit(&mut self, upto: CheckpointId) -> Result<()> {
        let (metrics, subtask) = (self.metrics.clone(), self.id.subtask);
        for slot in self.slots_mut() {
            let later = slot.pending.split_off(&CheckpointId(upto.0 + 1));
            let done = std::mem::replace(&mut slot.pending, later);
            if done.is_empty() {
                continue;
            }
            if let SinkInstance::TwoPhase(s) = &mut slot.inst {
                s.commit(done.into_values().collect()).await?;
                metrics.in_flight.set(&slot.id, subtask, &slot.pending);
                // Committed, and the checkpoint not yet marked so: a restore replays it.
                crate::fault::point("after-sink-commit", upto);
            }
        }
        Ok(())
    }

    /// Send `End` downstream.
    ///
    /// # Errors
    /// A closed downstream channel.
    pub async fn finish(&mut self) -> Result<()> {
        self.broadcast(Message::End).await
    }
}

/// Send `m`; time spent waiting on a full channel counts as task `slot`'s backpressure.
async fn send(
    tx: &mpsc::Sender<Message>,
    m: Message,
    metrics: &Metrics,
    slot: usize,
) -> Result<()> {
    match tx.try_send(m) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(m)) => {
            let t = Instant::now();
            let r = tx
                .send(m)
                .await
                .map_err(|_| Error::internal("downstream task is gone"));
            metrics.blocked(slot, t.elapsed());
            r
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            Err(Error::internal("downstream task is gone"))
        }
    }
}

/// Source task settings.
pub struct SourceTask {
    /// Shared task state.
    pub core: TaskCore,
    /// The reader over owned splits.
    pub reader: Box<dyn SourceReader>,
    /// From the coordinator.
    pub ctrl: mpsc::UnboundedReceiver<Control>,
    /// The watermark over the owned splits, with their idleness.
    pub idleness: Idleness,
    /// Records per second for this subtask, if limited.
    pub rate: Option<f64>,
    /// Positions snapshotted per checkpoint, until that checkpoint completes.
    pub taken: BTreeMap<CheckpointId, Vec<crate::source::SplitState>>,
}

/// How long a source with nothing to read waits before polling again (control messages
/// wake it earlier).
const IDLE_POLL: Duration = Duration::from_millis(10);

impl SourceTask {
    /// Run until told to finish.
    ///
    /// # Errors
    /// Read, decode (policy `fail`), operator and sink errors.
    pub async fn run(mut self) -> Result<()> {
        let mut idle = false;
        let started = Instant::now();
        let mut emitted = 0u64;
        loop {
            loop {
                match self.ctrl.try_recv() {
                    Ok(c) => {
                        if self.control(c, &mut idle).await? {
                            return Ok(());
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            if idle {
                let waiting = Instant::now();
                let c = self.ctrl.recv().await;
                self.core.metrics.idle(self.core.slot, waiting.elapsed());
                match c {
                    Some(c) => {
                        if self.control(c, &mut idle).await? {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                }
                continue;
            }
            if let Some(rate) = self.rate {
                let due = started + Duration::from_secs_f64(emitted as f64 / rate);
                if Instant::now() < due {
                    if self.pause(due, &mut idle).await? {
                        return Ok(());
                    }
                    continue;
                }
            }
            match self.reader.poll()? {
                Poll::Batch { data, side } => {
                    emitted += data.num_rows() as u64;
                    self.core
                        .metrics
                        .records("source", 0, data.num_rows() as u64);
                    if let Some(side) = side {
                        self.core.push_decode_errors(side).await?;
                    }
                    if data.num_rows() > 0 {
                        self.core.push(Input::ONLY, data).await?;
                    }
                    self.source_watermark().await?;
                }
                Poll::Idle => {
                    // Also when nothing arrives: a split restored past its last record (or
                    // a subtask owning no split) polls idle for ever, its watermark comes from
                    // the restored positions, and splits go idle by the clock.
                    self.source_watermark().await?;
                    if self.pause(Instant::now() + IDLE_POLL, &mut idle).await? {
                        return Ok(());
                    }
                }
                Poll::Finished => {
                    self.core.advance_watermark(Millis::MAX).await?;
                    idle = true;
                    let _ = self
                        .core
                        .events
                        .send(TaskEvent::SourceFinished(self.core.id));
                }
            }
        }
    }

    /// Tell downstream where event time is over the owned splits, or that they are idle.
    async fn source_watermark(&mut self) -> Result<()> {
        let (wm, parts) = self
            .idleness
            .watermark(&self.reader.snapshot(), Instant::now());
        for p in parts {
            self.core
                .metrics
                .set_split_watermark(p.split, p.watermark, p.idle);
        }
        self.core.follow(wm).await
    }

    /// Returns true when the task should end.
    /// Wait until `until` or the next control message, counting the wait as idle time;
    /// whether the task must stop.
    async fn pause(&mut self, until: Instant, idle: &mut bool) -> Result<bool> {
        let waiting = Instant::now();
        let c = tokio::select! {
            c = self.ctrl.recv() => Some(c),
            () = tokio::time::sleep_until(until.into()) => None,
        };
        self.core.metrics.idle(self.core.slot, waiting.elapsed());
        match c {
            Some(Some(c)) => self.control(c, idle).await,
            Some(None) => Ok(true),
            None => Ok(false),
        }
    }

    async fn control(&mut self, c: Control, idle: &mut bool) -> Result<bool> {
        match c {
            Control::Trigger(b) => {
                let splits = self.reader.snapshot();
                self.taken.insert(b.id, splits.clone());
                self.core.snapshot(b, splits, Duration::ZERO).await?;
                if b.kind.stops() {
                    *idle = true;
                }
            }
            Control::Commit(n) => {
                self.core.commit(n).await?;
                let later = self.taken.split_off(&CheckpointId(n.0 + 1));
                let done = std::mem::replace(&mut self.taken, later);
                if let Some((_, splits)) = done.into_iter().next_back() {
                    self.reader.checkpoint_completed(&splits);
                }
            }
            Control::Finish => {
                self.core.finish().await?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A task fed by channels from earlier stages.
pub struct StageTask {
    /// Shared task state.
    pub core: TaskCore,
    /// One receiver per upstream subtask of each input edge, with the input port it feeds.
    /// Barriers align and watermarks combine over all of them.
    pub inputs: Vec<(Input, mpsc::Receiver<Message>)>,
    /// From the coordinator.
    pub ctrl: mpsc::UnboundedReceiver<Control>,
}

enum Next {
    Ctrl(Option<Control>),
    Input(usize, Message),
}

impl StageTask {
    /// Channel `i` finished (ended, or sent the end of event time): when that finishes its
    /// input (every channel of the port), the operators reading it hear so, once.
    async fn input_finished(
        &mut self,
        i: usize,
        event_time: &InputWatermarks,
        told: &mut Vec<Input>,
    ) -> Result<()> {
        let port = self.inputs[i].0;
        let all = (0..self.inputs.len())
            .filter(|&k| self.inputs[k].0 == port)
            .all(|k| event_time.finished(k));
        if all && !told.contains(&port) {
            told.push(port);
            self.core.input_end(port).await?;
        }
        Ok(())
    }

    /// Run until every input has ended.
    ///
    /// # Errors
    /// Operator, sink and state errors.
    pub async fn run(mut self) -> Result<()> {
        let n = self.inputs.len();
        let mut aligner = Aligner::new(n);
        let mut event_time = InputWatermarks::new(n);
        let mut align_start: Option<Instant> = None;
        let mut rr = 0usize;
        // Inputs (ports) whose every channel has finished, told to the operators once.
        let mut finished: Vec<Input> = Vec::new();
        loop {
            if event_time.all_ended() {
                while let Ok(c) = self.ctrl.try_recv() {
                    if let Control::Commit(id) = c {
                        self.core.commit(id).await?;
                    }
                }
                self.core.finish().await?;
                return Ok(());
            }
            let readable: Vec<bool> = (0..n)
                .map(|i| !event_time.is_ended(i) && !aligner.is_blocked(i))
                .collect();
            let inputs = &mut self.inputs;
            // Time until something arrives is idle time (the console's busy time is the rest
            // after backpressure); read only when a message is taken, so one clock read each.
            let waiting = Instant::now();
            let next = tokio::select! {
                biased;
                c = self.ctrl.recv() => Next::Ctrl(c),
                (i, m) = std::future::poll_fn(|cx| {
                    for k in 0..n {
                        let i = (rr + k) % n;
                        if !readable[i] {
                            continue;
                        }
                        match inputs[i].1.poll_recv(cx) {
                            TaskPoll::Ready(Some(m)) => return TaskPoll::Ready((i, m)),
                            TaskPoll::Ready(None) => return TaskPoll::Ready((i, Message::End)),
                            TaskPoll::Pending => {}
                        }
                    }
                    TaskPoll::Pending
                }) => Next::Input(i, m),
            };
            self.core.metrics.idle(self.core.slot, waiting.elapsed());
            match next {
                Next::Ctrl(None) => return Ok(()),
                Next::Ctrl(Some(Control::Commit(id))) => self.core.commit(id).await?,
                Next::Ctrl(Some(_)) => {}
                Next::Input(i, m) => {
                    rr = i + 1;
                    match m {
                        Message::Data(b) => {
                            let port = self.inputs[i].0;
                            self.core.push(port, b).await?;
                        }
                        Message::Watermark(w) => {
                            let c = event_time.watermark(i, w);
                            self.core.follow(c).await?;
                            if w == Millis::MAX {
                                self.input_finished(i, &event_time, &mut finished).await?;
                            }
                        }
                        Message::Idle => {
                            let c = event_time.idle(i);
                            self.core.follow(c).await?;
                        }
                        Message::Barrier(b) => match aligner.on_barrier(i, b) {
                            AlignAction::Block => {
                                align_start.get_or_insert_with(Instant::now);
                            }
                            AlignAction::Snapshot(b) => {
                                let took =
                                    align_start.take().map_or(Duration::ZERO, |t| t.elapsed());
                                self.core.metrics.alignment.inc_by(took.as_secs_f64());
                                self.core.snapshot(b, Vec::new(), took).await?;
                            }
                            AlignAction::Ignore => {}
                        },
                        Message::End => event_time.end(i),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
