//! The channels of every shuffle (an edge of the plan, from one stage into an input of a
//! later one), for the subtasks this pod runs.
//!
//! Every upstream subtask of a shuffle sends to every downstream subtask; on a forward edge,
//! subtask `i` sends to subtask `i` only (the same pod runs both). Both ends in this
//! pod: an in-memory channel. One end in another pod: a channel whose other end the
//! [`Exchange`] drains into, or fills from, a data link. Neither end here: nothing.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Pods;
use super::exchange::Exchange;
use crate::task::Message;

/// Bounded channel capacity between tasks, in batches: small, so backpressure is quick and
/// barriers do not queue behind much data.
const CHANNEL_BATCHES: usize = 8;

/// The channels of every edge, indexed by edge and subtask.
pub struct Grid {
    /// `senders[edge][upstream]`: one per downstream subtask.
    senders: Vec<Vec<Vec<mpsc::Sender<Message>>>>,
    /// `receivers[edge][downstream]`: one per upstream subtask.
    receivers: Vec<Vec<Vec<mpsc::Receiver<Message>>>>,
}

/// Where the job's subtasks run: all here, or spread over pods linked by an exchange.
pub enum Placement<'a> {
    /// One process runs every subtask.
    Local,
    /// This pod's share; the exchange carries what crosses pods.
    Pods {
        /// This pod's place.
        pods: &'a Arc<Pods>,
        /// Its data links.
        exchange: &'a Exchange,
        /// The incarnation the links belong to.
        generation: u64,
    },
}

impl Placement<'_> {
    fn runs_here(&self, subtask: u32, parallelism: u32) -> bool {
        match self {
            Self::Local => true,
            Self::Pods { pods, .. } => pods.runs(subtask, parallelism),
        }
    }
}

impl Grid {
    /// Channels for the plan's edges between stages of `parallelism` subtasks each, given
    /// whether each edge is a forward one.
    #[must_use]
    pub fn build(forward: &[bool], parallelism: u32, placement: &Placement<'_>) -> Self {
        let here = |s: u32| placement.runs_here(s, parallelism);
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for (edge, forward) in (0u32..).zip(forward) {
            let mut s = vec![Vec::new(); parallelism as usize];
            let mut r: Vec<Vec<_>> = (0..parallelism).map(|_| Vec::new()).collect();
            for (up, from_upstream) in (0..parallelism).zip(&mut s) {
                for (down, to_downstream) in (0..parallelism).zip(&mut r) {
                    if *forward && up != down {
                        continue;
                    }
                    let (here_up, here_down) = (here(up), here(down));
                    if !here_up && !here_down {
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
                    match placement {
                        Placement::Pods {
                            pods,
                            exchange,
                            generation,
                        } if !here_down => {
                            exchange.send(
                                *generation,
                                edge,
                                up,
                                down,
                                pods.owner(down, parallelism),
                                rx,
                            );
                            from_upstream.push(tx);
                        }
                        Placement::Pods { exchange, .. } if !here_up => {
                            exchange.expect(edge, up, down, tx);
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
        Self { senders, receivers }
    }

    /// What upstream `subtask` sends into `edge` through, one channel per downstream
    /// subtask; taken once.
    pub fn take_senders(&mut self, edge: usize, subtask: u32) -> Vec<mpsc::Sender<Message>> {
        self.senders
            .get_mut(edge)
            .and_then(|s| s.get_mut(subtask as usize))
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// What downstream `subtask` receives from `edge`, one channel per upstream subtask;
    /// taken once.
    pub fn take_receivers(&mut self, edge: usize, subtask: u32) -> Vec<mpsc::Receiver<Message>> {
        self.receivers
            .get_mut(edge)
            .and_then(|r| r.get_mut(subtask as usize))
            .map(std::mem::take)
            .unwrap_or_default()
    }
}
