//! Barrier alignment for a subtask with several inputs. Pure: the task loop asks it what to
//! do with each barrier and which inputs to stop reading; it performs no I/O.

use super::Barrier;
use crate::ids::CheckpointId;

/// What the task does with a barrier that arrived on one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignAction {
    /// Stop reading this input until the other inputs deliver the barrier.
    Block,
    /// Every input has delivered it: snapshot, forward the barrier, unblock all inputs.
    Snapshot(Barrier),
    /// A barrier of an older checkpoint than the one being aligned (it was abandoned).
    Ignore,
}

/// Alignment state over `n` inputs.
#[derive(Debug, Clone)]
pub struct Aligner {
    received: Vec<bool>,
    current: Option<CheckpointId>,
    last_done: Option<CheckpointId>,
}

impl Aligner {
    /// Aligner over `inputs` inputs.
    #[must_use]
    pub fn new(inputs: usize) -> Self {
        Self {
            received: vec![false; inputs],
            current: None,
            last_done: None,
        }
    }

    /// Whether `input` must not be read now.
    #[must_use]
    pub fn is_blocked(&self, input: usize) -> bool {
        self.current.is_some() && self.received[input]
    }

    /// Whether an alignment is in progress (for alignment-time metrics).
    #[must_use]
    pub fn aligning(&self) -> bool {
        self.current.is_some()
    }

    /// Barrier `b` arrived on `input`.
    pub fn on_barrier(&mut self, input: usize, b: Barrier) -> AlignAction {
        if self.last_done.is_some_and(|d| b.id <= d) || self.current.is_some_and(|c| b.id < c) {
            return AlignAction::Ignore;
        }
        if self.current != Some(b.id) {
            // A newer checkpoint supersedes an unfinished alignment.
            self.current = Some(b.id);
            self.received.iter_mut().for_each(|r| *r = false);
        }
        self.received[input] = true;
        if self.received.iter().all(|r| *r) {
            self.current = None;
            self.last_done = Some(b.id);
            self.received.iter_mut().for_each(|r| *r = false);
            AlignAction::Snapshot(b)
        } else {
            AlignAction::Block
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::BarrierKind;

    fn b(id: u64) -> Barrier {
        Barrier {
            id: CheckpointId(id),
            kind: BarrierKind::Checkpoint,
        }
    }

    #[test]
    fn aligner_follows_the_table() {
        // (inputs, [(input, barrier id, expected action, blocked inputs after)])
        type Step = (usize, u64, &'static str, &'static [usize]);
        let cases: &[(usize, &[Step])] = &[
            (1, &[(0, 1, "snapshot", &[]), (0, 2, "snapshot", &[])]),
            (2, &[(0, 1, "block", &[0]), (1, 1, "snapshot", &[])]),
            (
                3,
                &[
                    (2, 1, "block", &[2]),
                    (0, 1, "block", &[0, 2]),
                    (1, 1, "snapshot", &[]),
                ],
            ),
            // A newer barrier supersedes an unfinished alignment.
            (
                2,
                &[
                    (0, 1, "block", &[0]),
                    (1, 2, "block", &[1]),
                    (0, 2, "snapshot", &[]),
                ],
            ),
            // A late barrier of the superseded checkpoint is ignored.
            (
                2,
                &[
                    (0, 1, "block", &[0]),
                    (1, 2, "block", &[1]),
                    (1, 1, "ignore", &[1]),
                ],
            ),
            // A barrier of a completed checkpoint is ignored.
            (
                1,
                &[
                    (0, 3, "snapshot", &[]),
                    (0, 3, "ignore", &[]),
                    (0, 2, "ignore", &[]),
                ],
            ),
        ];
        for (inputs, steps) in cases {
            let mut a = Aligner::new(*inputs);
            for (i, (input, id, expect, blocked)) in steps.iter().enumerate() {
                let got = match a.on_barrier(*input, b(*id)) {
                    AlignAction::Block => "block",
                    AlignAction::Snapshot(x) => {
                        assert_eq!(x.id, CheckpointId(*id));
                        "snapshot"
                    }
                    AlignAction::Ignore => "ignore",
                };
                assert_eq!(got, *expect, "inputs {inputs}, step {i}");
                let now: Vec<usize> = (0..*inputs).filter(|&k| a.is_blocked(k)).collect();
                assert_eq!(now, *blocked, "inputs {inputs}, step {i}");
            }
        }
    }
}
