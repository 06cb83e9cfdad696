//! When the coordinator triggers, abandons or waits: a pure function over the settings, what
//! it knows and the time, so every timing rule is one row of a table test. The coordinator
//! only carries out the answer.
//!
//! Rules, in order:
//! 1. A checkpoint in flight past its timeout is abandoned; one in flight otherwise is waited
//!    for (until its deadline).
//! 2. Once the job is finishing (a final or stop checkpoint completed), nothing is triggered;
//!    the coordinator waits for its tasks to end (waking once per timeout, never spinning).
//! 3. A queued request (savepoint, stop) goes first, then the final checkpoint when every
//!    source has finished, then a periodic one when it is due.
//! 4. Due means both `interval` after the last trigger and `minPause` after the last
//!    completion (or failure).

use std::time::{Duration, Instant};

/// The timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between triggers.
    pub interval: Duration,
    /// Abandon a checkpoint after this.
    pub timeout: Duration,
    /// Least time from a completion to the next trigger.
    pub min_pause: Duration,
}

/// What the coordinator knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// When the checkpoint in flight was triggered, if one is.
    pub in_flight_since: Option<Instant>,
    /// A savepoint or stop request is queued.
    pub queued: bool,
    /// Every source subtask has reached the end of its input.
    pub sources_finished: bool,
    /// A final or stop checkpoint completed; the job is ending.
    pub finishing: bool,
    /// Last trigger (or the start).
    pub last_trigger: Instant,
    /// Last completion or failure (or the start).
    pub last_complete: Instant,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Abandon the checkpoint in flight: it timed out.
    Abandon,
    /// Trigger the queued request.
    TriggerQueued,
    /// Trigger the final checkpoint.
    TriggerFinal,
    /// Trigger a periodic checkpoint.
    TriggerPeriodic,
    /// Nothing to do before this instant (unless a task or a request says otherwise).
    WaitUntil(Instant),
}

/// The next step at `now`.
#[must_use]
pub fn next(t: &Timing, f: &Facts, now: Instant) -> Next {
    if let Some(since) = f.in_flight_since {
        let deadline = since + t.timeout;
        return if now >= deadline {
            Next::Abandon
        } else {
            Next::WaitUntil(deadline)
        };
    }
    if f.finishing {
        return Next::WaitUntil(now + t.timeout);
    }
    let due = (f.last_trigger + t.interval).max(f.last_complete + t.min_pause);
    if f.queued {
        Next::TriggerQueued
    } else if f.sources_finished {
        Next::TriggerFinal
    } else if now >= due {
        Next::TriggerPeriodic
    } else {
        Next::WaitUntil(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timing_rules_row_by_row() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let timing = Timing {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            min_pause: Duration::from_secs(4),
        };
        let idle = Facts {
            in_flight_since: None,
            queued: false,
            sources_finished: false,
            finishing: false,
            last_trigger: t0,
            last_complete: t0,
        };
        let rows: Vec<(&str, Facts, u64, Next)> = vec![
            ("not yet due", idle, 5, Next::WaitUntil(s(10))),
            ("due after the interval", idle, 10, Next::TriggerPeriodic),
            (
                "min pause after a slow completion pushes the next trigger",
                Facts {
                    last_complete: s(9),
                    ..idle
                },
                10,
                Next::WaitUntil(s(13)),
            ),
            (
                "min pause passed",
                Facts {
                    last_complete: s(9),
                    ..idle
                },
                13,
                Next::TriggerPeriodic,
            ),
            (
                "in flight: wait for it until its deadline",
                Facts {
                    in_flight_since: Some(s(10)),
                    queued: true,
                    ..idle
                },
                20,
                Next::WaitUntil(s(40)),
            ),
            (
                "in flight past the timeout: abandon",
                Facts {
                    in_flight_since: Some(s(10)),
                    ..idle
                },
                40,
                Next::Abandon,
            ),
            (
                "a queued savepoint goes before the periodic schedule",
                Facts {
                    queued: true,
                    ..idle
                },
                1,
                Next::TriggerQueued,
            ),
            (
                "a queued request goes before the final checkpoint",
                Facts {
                    queued: true,
                    sources_finished: true,
                    ..idle
                },
                1,
                Next::TriggerQueued,
            ),
            (
                "sources finished: the final checkpoint, without waiting",
                Facts {
                    sources_finished: true,
                    ..idle
                },
                1,
                Next::TriggerFinal,
            ),
            (
                "finishing: nothing more is triggered",
                Facts {
                    finishing: true,
                    queued: true,
                    sources_finished: true,
                    ..idle
                },
                50,
                Next::WaitUntil(s(80)),
            ),
        ];
        for (what, facts, at, want) in rows {
            assert_eq!(next(&timing, &facts, s(at)), want, "{what}");
        }
    }
}
