//! The control link between the coordinator (pod 0) and every other pod: where the
//! incarnation starts, the coordinator's commands to remote tasks, and their events back.
//! Both sides only translate: the coordinator and the tasks talk through the same channels
//! as in one process.

use std::collections::HashMap;
use std::time::Duration;

use arrow_flight::FlightData;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::exchange::{Exchange, Joined};
use super::wire::{self, Event, Hello, StartInfo, ToCoordinator, ToPod};
use crate::checkpoint::coordinator::{Outcome, Request};
use crate::checkpoint::messages::{Control, TaskEvent};
use crate::error::{Error, Result};
use crate::ids::TaskId;

type Outgoing = mpsc::Sender<std::result::Result<FlightData, Status>>;

/// Wait until every other pod joined the control link.
///
/// # Errors
/// A pod did not join within the start-up wait (`WEIR_WAIT_TIMEOUT`).
pub async fn accept(joins: &mut mpsc::Receiver<Joined>, pods: u32) -> Result<Vec<Joined>> {
    let mut joined: HashMap<u32, Joined> = HashMap::new();
    let limit = crate::wait::limit();
    let deadline = tokio::time::Instant::now() + limit;
    while (joined.len() as u32) < pods - 1 {
        match tokio::time::timeout_at(deadline, joins.recv()).await {
            Ok(Some(j)) if j.pod == 0 || j.pod >= pods => {
                tracing::warn!(
                    pod = j.pod,
                    "ignored a join from a pod this job does not have"
                );
            }
            // Two pods of this incarnation claiming one index (a misconfigured pod, or
            // anyone holding the token): replacing the first would drop a pod that is
            // running, taking either would be a guess.
            Ok(Some(j)) if joined.contains_key(&j.pod) => {
                return Err(Error::internal(format!(
                    "pod {} joined twice: two pods of this incarnation claim index {}",
                    j.pod, j.pod
                )));
            }
            Ok(Some(j)) => {
                tracing::info!(pod = j.pod, "pod joined");
                joined.insert(j.pod, j);
            }
            Ok(None) => return Err(Error::internal("the exchange stopped")),
            Err(_) => {
                let missing: Vec<u32> = (1..pods).filter(|p| !joined.contains_key(p)).collect();
                return Err(Error::internal(format!(
                    "pods {missing:?} did not join within {limit:?}"
                )));
            }
        }
    }
    let mut all: Vec<Joined> = joined.into_values().collect();
    all.sort_by_key(|j| j.pod);
    Ok(all)
}

/// The coordinator's side: one link per other pod.
pub struct Pods {
    links: Vec<(u32, Outgoing)>,
    /// Each pod's `Ready`, or why it failed before.
    ready: mpsc::UnboundedReceiver<Result<u32>>,
}

impl Pods {
    /// Tell every joined pod where to start; from then on, their events go to `events` and
    /// their stop and savepoint requests to `requests`.
    ///
    /// # Errors
    /// A pod's link is already gone.
    pub async fn start(
        joined: Vec<Joined>,
        info: &StartInfo,
        events: &mpsc::UnboundedSender<TaskEvent>,
        requests: &mpsc::Sender<Request>,
    ) -> Result<Self> {
        let (ready_tx, ready) = mpsc::unbounded_channel();
        let mut links = Vec::new();
        for j in joined {
            let start = wire::meta(&ToPod::Start(info.clone()))?;
            j.outgoing
                .send(Ok(start))
                .await
                .map_err(|_| Error::internal(format!("pod {} left before it started", j.pod)))?;
            links.push((j.pod, j.outgoing));
            tokio::spawn(read_pod(
                j.pod,
                j.incoming,
                events.clone(),
                requests.clone(),
                ready_tx.clone(),
            ));
        }
        Ok(Self { links, ready })
    }

    /// Wait until every pod has built its tasks.
    ///
    /// # Errors
    /// A pod failed or left before it was ready.
    pub async fn ready(&mut self) -> Result<()> {
        for _ in 0..self.links.len() {
            match self.ready.recv().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(Error::internal("lost the other pods while starting")),
            }
        }
        Ok(())
    }

    /// A control channel to task `task` of pod `pod`, as the coordinator uses for its own.
    #[must_use]
    pub fn control(&self, pod: u32, task: TaskId) -> mpsc::UnboundedSender<Control> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Control>();
        if let Some((_, out)) = self.links.iter().find(|(p, _)| *p == pod) {
            let out = out.clone();
            tokio::spawn(async move {
                while let Some(c) = rx.recv().await {
                    let Ok(m) = wire::meta(&ToPod::Control(task, c)) else {
                        return;
                    };
                    if out.send(Ok(m)).await.is_err() {
                        return; // the link's loss is reported by its reader
                    }
                }
            });
        }
        tx
    }

    /// Tell every pod how the job ended, so that each exits the same way.
    pub async fn finish(&self, outcome: &Outcome) {
        let Ok(m) = wire::meta(&ToPod::Outcome(outcome.clone())) else {
            return;
        };
        for (_, out) in &self.links {
            let _ = out.send(Ok(m.clone())).await;
        }
        // Let the messages leave before the process exits and closes the connections.
        for (_, out) in &self.links {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while out.capacity() < out.max_capacity() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        }
    }
}

async fn read_pod(
    pod: u32,
    mut incoming: Streaming<FlightData>,
    events: mpsc::UnboundedSender<TaskEvent>,
    requests: mpsc::Sender<Request>,
    ready: mpsc::UnboundedSender<Result<u32>>,
) {
    let lost = |why: String| {
        let error = Error::internal(format!("pod {pod}: {why}"));
        let _ = ready.send(Err(Error::internal(format!("pod {pod}: {why}"))));
        let _ = events.send(TaskEvent::PodLost { pod, error });
    };
    loop {
        match incoming.message().await {
            Ok(Some(f)) => match wire::parse_meta::<ToCoordinator>(&f.app_metadata) {
                Ok(ToCoordinator::Ready) => {
                    let _ = ready.send(Ok(pod));
                }
                Ok(ToCoordinator::Event(e)) => {
                    let _ = events.send(e.into_task_event(pod));
                }
                Ok(ToCoordinator::Request(r)) => {
                    let _ = requests.send(r).await;
                }
                Err(e) => return lost(e.to_string()),
            },
            Ok(None) => return lost("closed its control link".into()),
            Err(s) => return lost(format!("control link broke: {}", s.message())),
        }
    }
}

/// A pod's side of the control link.
pub struct Coordinator {
    incoming: Streaming<FlightData>,
    outgoing: mpsc::Sender<FlightData>,
}

impl Coordinator {
    /// Join the coordinator (pod 0) and wait for where this incarnation starts.
    ///
    /// # Errors
    /// Pod 0 unreachable, refusing, or gone before it said where to start.
    pub async fn join(ex: &Exchange, incarnation: &str, pod: u32) -> Result<(Self, StartInfo)> {
        let (outgoing, frames) = mpsc::channel(1024);
        let hello = Hello::Control {
            incarnation: incarnation.to_string(),
            pod,
        };
        let mut incoming = ex.open(0, &hello, frames).await?;
        tracing::info!(pod, "joined the coordinator; waiting for where to start");
        let gone = || Error::internal("the coordinator (pod 0) left before the job started");
        let first = incoming
            .message()
            .await
            .map_err(|s| Error::internal(format!("the coordinator (pod 0): {}", s.message())))?
            .ok_or_else(gone)?;
        match wire::parse_meta::<ToPod>(&first.app_metadata)? {
            ToPod::Start(info) => Ok((Self { incoming, outgoing }, info)),
            ToPod::Outcome(o) => Err(Error::internal(format!(
                "the job ended before this pod started: {o:?}"
            ))),
            ToPod::Control(..) => Err(gone()),
        }
    }

    /// Say the tasks are built, then relay until the job ends: commands to `tasks`, their
    /// `events` and the pod's `requests` to the coordinator. Ends with the coordinator's
    /// outcome, or with an error when a local task fails or the link breaks.
    ///
    /// # Errors
    /// A local task failed, a link to another pod broke, or the coordinator is gone.
    pub async fn relay(
        mut self,
        tasks: HashMap<TaskId, mpsc::UnboundedSender<Control>>,
        mut events: mpsc::UnboundedReceiver<TaskEvent>,
        mut requests: mpsc::Receiver<Request>,
    ) -> Result<Outcome> {
        self.send(&ToCoordinator::Ready).await?;
        let (mut events_open, mut requests_open) = (true, true);
        loop {
            tokio::select! {
                f = self.incoming.message() => match f {
                    Ok(Some(f)) => match wire::parse_meta::<ToPod>(&f.app_metadata)? {
                        ToPod::Control(t, c) => {
                            if let Some(tx) = tasks.get(&t) {
                                let _ = tx.send(c);
                            }
                        }
                        ToPod::Outcome(o) => return Ok(o),
                        ToPod::Start(_) => {}
                    },
                    Ok(None) => return Err(Error::internal("lost the coordinator (pod 0): it closed the link")),
                    Err(s) => return Err(Error::internal(format!("lost the coordinator (pod 0): {}", s.message()))),
                },
                ev = events.recv(), if events_open => {
                    let Some(ev) = ev else {
                        events_open = false;
                        continue;
                    };
                    let fatal = match &ev {
                        TaskEvent::Failed(t, e) => Some(format!("task {t} failed: {e}")),
                        TaskEvent::PodLost { pod, error } => Some(format!("lost pod {pod}: {error}")),
                        _ => None,
                    };
                    let _ = self.send(&ToCoordinator::Event(Event::from(ev))).await;
                    if let Some(why) = fatal {
                        return Err(Error::internal(why));
                    }
                }
                r = requests.recv(), if requests_open => match r {
                    Some(r) => self.send(&ToCoordinator::Request(r)).await?,
                    None => requests_open = false,
                },
            }
        }
    }

    async fn send(&self, m: &ToCoordinator) -> Result<()> {
        self.outgoing
            .send(wire::meta(m)?)
            .await
            .map_err(|_| Error::internal("lost the coordinator (pod 0)"))
    }
}
