//! One job spread over several pods (processes).
//!
//! Every pod runs a contiguous slice of every stage's subtasks ([`Pods::owner`]); subtask
//! numbers, key-group ranges, source splits and sink transactions stay global, so a job's
//! checkpoints look the same whatever the number of pods, and a savepoint restores on any.
//! Pod 0 also runs the checkpoint coordinator.
//!
//! ```text
//!   pod 0 (coordinator)                         pod 1..n
//!   ───────────────────                         ────────
//!   startup: restore point, generation claim,
//!   sinks' commit-phase recovery
//!            ◄──────────── control link (worker connects) ──
//!   Start{job_id, generation, restored} ──────►  restore own key groups, build tasks
//!            ◄────────────────────────────────── Ready
//!   coordinator: Trigger / Commit / Finish ───►  local task control channels
//!            ◄────────────────────────────────── task events (acks), stop requests
//!
//!   subtask ──► in-memory channel ──► subtask          (both ends in one pod)
//!   subtask ──► data link (Arrow Flight, credits) ──► subtask   (ends in two pods)
//! ```
//!
//! Modules: [`wire`] (what travels on the links), [`exchange`] (the Flight server and the
//! data links), [`link`] (the control link between the coordinator and the other pods),
//! [`launcher`] (`weir-runtime run --pods N` on one machine).
//!
//! Any pod that fails, or loses a link, fails the incarnation: the others see their links
//! break (or stall past the keep-alive) and stop; whoever restarts pods (the operator, the
//! launcher) starts all of them again from the newest completed checkpoint.

pub mod exchange;
pub mod grid;
pub mod launcher;
pub mod link;
pub mod wire;

use std::net::SocketAddr;

use crate::error::{Error, Result};
use crate::keys::{key_group_range, subtask_of};

/// This process's place in a multi-pod job. Its `Debug` leaves the token out.
#[derive(Clone)]
pub struct Pods {
    /// This pod.
    pub index: u32,
    /// Pods of the job.
    pub count: u32,
    /// Exchange address of every pod, in pod order.
    pub peers: Vec<String>,
    /// Where this pod's exchange listens.
    pub listen: SocketAddr,
    /// Secret every pod presents to the others.
    pub token: String,
    /// Names this start of the pods; links from another incarnation are refused.
    pub incarnation: String,
}

impl std::fmt::Debug for Pods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pods")
            .field("index", &self.index)
            .field("count", &self.count)
            .field("peers", &self.peers)
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("incarnation", &self.incarnation)
            .finish()
    }
}

impl Pods {
    /// Check that the layout is usable for `parallelism` subtasks per stage.
    ///
    /// # Errors
    /// More pods than subtasks (a pod would run nothing), an index or peer list that does
    /// not match the count, an empty or short token.
    pub fn check(&self, parallelism: u32) -> Result<()> {
        let bad = |m: String| Err(Error::Restore(m));
        if self.count > parallelism {
            return bad(format!(
                "pods {} must not exceed parallelism {parallelism}: every pod runs at least one subtask of each stage",
                self.count
            ));
        }
        if self.index >= self.count {
            return bad(format!(
                "pod index {} is not below pods {}",
                self.index, self.count
            ));
        }
        if self.peers.len() != self.count as usize {
            return bad(format!(
                "--peers names {} pods, --pods says {}",
                self.peers.len(),
                self.count
            ));
        }
        if self.token.trim().len() < 16 {
            return bad(format!(
                "{} must hold at least 16 characters: pods authenticate each other with it",
                weir_crds::control::EXCHANGE_TOKEN_ENV
            ));
        }
        Ok(())
    }

    /// The pod that runs `subtask` (of any stage).
    #[must_use]
    pub fn owner(&self, subtask: u32, parallelism: u32) -> u32 {
        owner(subtask, parallelism, self.count)
    }

    /// Whether this pod runs `subtask`.
    #[must_use]
    pub fn runs(&self, subtask: u32, parallelism: u32) -> bool {
        self.owner(subtask, parallelism) == self.index
    }

    /// Whether this pod coordinates checkpoints.
    #[must_use]
    pub fn is_coordinator(&self) -> bool {
        self.index == 0
    }
}

/// The pod that runs `subtask` when `parallelism` subtasks are spread over `pods` pods:
/// contiguous slices, as key groups are spread over subtasks.
#[must_use]
pub fn owner(subtask: u32, parallelism: u32, pods: u32) -> u32 {
    subtask_of(subtask, pods, parallelism)
}

/// The subtasks pod `index` runs.
#[must_use]
pub fn slice(index: u32, parallelism: u32, pods: u32) -> std::ops::Range<u32> {
    key_group_range(index, pods, parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subtask_runs_on_exactly_one_pod_and_every_pod_runs_one() {
        for parallelism in 1..=9 {
            for pods in 1..=parallelism {
                let mut next = 0;
                for p in 0..pods {
                    let s = slice(p, parallelism, pods);
                    assert!(
                        !s.is_empty(),
                        "pod {p} of {pods} at parallelism {parallelism}"
                    );
                    assert_eq!(s.start, next);
                    for t in s.clone() {
                        assert_eq!(owner(t, parallelism, pods), p);
                    }
                    next = s.end;
                }
                assert_eq!(next, parallelism);
            }
        }
    }

    #[test]
    fn a_layout_that_cannot_run_is_refused_naming_why() {
        let ok = Pods {
            index: 1,
            count: 2,
            peers: vec!["a:1".into(), "b:1".into()],
            listen: "127.0.0.1:1".parse().expect("addr"),
            token: "0123456789abcdef".into(),
            incarnation: "i".into(),
        };
        assert!(ok.check(2).is_ok());
        let msg = |p: Pods, par| p.check(par).expect_err("refused").to_string();
        assert!(msg(ok.clone(), 1).contains("must not exceed parallelism 1"));
        assert!(
            msg(
                Pods {
                    index: 2,
                    ..ok.clone()
                },
                4
            )
            .contains("pod index 2")
        );
        assert!(
            msg(
                Pods {
                    peers: vec!["a:1".into()],
                    ..ok.clone()
                },
                4
            )
            .contains("--peers")
        );
        for token in [
            "short",
            "                    ",
            "\n\t \n\t \n\t \n\t \n\t \n\t ",
        ] {
            assert!(
                msg(
                    Pods {
                        token: token.into(),
                        ..ok.clone()
                    },
                    4
                )
                .contains("WEIR_EXCHANGE_TOKEN"),
                "{token:?} was taken for a token"
            );
        }
        let shown = format!("{ok:?}");
        assert!(!shown.contains(&ok.token), "Debug shows the token: {shown}");
    }
}
