//! A source subtask's watermark over its splits, with `eventTime.idleTimeout`.
//!
//! The watermark is the lowest over the splits that still count. Without an idle timeout
//! every unfinished split counts, so one partition without records holds back every window
//! of the job (what Flink does without `withIdleness`). With one, a split whose position has
//! not moved for that long stops counting until its position moves again; when every
//! unfinished split is idle the subtask itself is idle and says so downstream, where its
//! channel then stops holding back the operators after it; its event time is then as far as
//! the furthest split's (as Flink's watermark valve does when every input is idle), so what
//! the splits delivered before going quiet is not held back either. A split that rejoins cannot move
//! the watermark back: records of it that are late by then follow the late-record policy.
//!
//! Activity is the split's position (records consumed), not event time, so a partition that
//! keeps delivering old records is not idle; and it is judged by the wall clock, because
//! idleness is about input that does not arrive.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::SplitState;
use crate::ids::Millis;
use crate::watermark::EventTime;

/// Per-split activity of one source subtask.
#[derive(Debug)]
pub struct Idleness {
    timeout: Option<Duration>,
    max_out_of_orderness: Millis,
    /// Split -> (position last seen, when it last moved).
    seen: HashMap<u32, (u64, Instant)>,
}

/// One split's part in the watermark, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitWatermark {
    /// Split id (the partition, for Kafka).
    pub split: u32,
    /// The split's own watermark.
    pub watermark: Millis,
    /// Idle: not counted.
    pub idle: bool,
}

impl Idleness {
    /// `timeout`: `eventTime.idleTimeout`; none means splits never go idle.
    #[must_use]
    pub fn new(timeout: Option<Duration>, max_out_of_orderness: Millis) -> Self {
        Self {
            timeout,
            max_out_of_orderness,
            seen: HashMap::new(),
        }
    }

    /// The subtask's watermark over `splits` at `now`, and each split's part in it.
    pub fn watermark(
        &mut self,
        splits: &[SplitState],
        now: Instant,
    ) -> (EventTime, Vec<SplitWatermark>) {
        let mut parts = Vec::with_capacity(splits.len());
        let mut low: Option<Millis> = None;
        let mut high = Millis::MIN;
        for s in splits {
            let moved = match self.seen.get(&s.split) {
                Some((offset, _)) => *offset != s.offset,
                None => true,
            };
            if moved {
                self.seen.insert(s.split, (s.offset, now));
            }
            if s.finished {
                continue;
            }
            let since = self.seen.get(&s.split).map_or(now, |(_, t)| *t);
            let idle = self
                .timeout
                .is_some_and(|t| now.saturating_duration_since(since) >= t);
            let watermark = s
                .max_event_time
                .saturating_sub(self.max_out_of_orderness)
                .saturating_sub(1);
            parts.push(SplitWatermark {
                split: s.split,
                watermark,
                idle,
            });
            high = high.max(watermark);
            if !idle {
                low = Some(low.map_or(watermark, |l| l.min(watermark)));
            }
        }
        let wm = match low {
            Some(l) => EventTime::At(l),
            // No split left to read (none owned, or every one read to its end): idle, not
            // the end of event time, because a split found later (a new Kafka partition) may
            // still be given to this subtask. The end is the reader's to say
            // (`Poll::Finished`), and the task then ends event time.
            None => EventTime::Idle(high),
        };
        (wm, parts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    fn split(split: u32, offset: u64, max_event_time: Millis, finished: bool) -> SplitState {
        SplitState {
            split,
            offset,
            records: offset,
            max_event_time,
            finished,
        }
    }

    /// Rows: what each split looks like at `secs` after the start, and the watermark then.
    /// Splits 0 and 1 of one subtask, `maxOutOfOrderness` 0 (watermark = event time - 1).
    #[test]
    fn idle_splits_stop_counting_and_rejoin_when_they_move() {
        type Row = (&'static str, u64, [(u64, Millis, bool); 2], EventTime);
        let with_timeout: &[Row] = &[
            (
                "start: both count, split 1 has no record yet",
                0,
                [(10, 1_000, false), (0, Millis::MIN, false)],
                EventTime::At(Millis::MIN),
            ),
            (
                "split 1 silent for less than the timeout still holds it back",
                4,
                [(20, 2_000, false), (0, Millis::MIN, false)],
                EventTime::At(Millis::MIN),
            ),
            (
                "split 1 silent for the timeout is idle: split 0 alone",
                5,
                [(30, 3_000, false), (0, Millis::MIN, false)],
                EventTime::At(2_999),
            ),
            (
                "split 0 stops too (5 s later): the subtask is idle, as far as split 0 got",
                10,
                [(30, 3_000, false), (0, Millis::MIN, false)],
                EventTime::Idle(2_999),
            ),
            (
                "split 1 gets an old record: it counts again, with its own event time",
                11,
                [(30, 3_000, false), (1, 500, false)],
                EventTime::At(499),
            ),
            (
                "split 1 is finished (and split 0 moves): finished splits never hold it back",
                12,
                [(40, 4_000, false), (1, 500, true)],
                EventTime::At(3_999),
            ),
            (
                "both finished: idle until the reader says it has finished",
                13,
                [(40, 4_000, true), (1, 500, true)],
                EventTime::Idle(Millis::MIN),
            ),
        ];
        let t0 = Instant::now();
        let mut idle = Idleness::new(Some(Duration::from_secs(5)), 0);
        for (what, secs, s, expected) in with_timeout {
            let splits = [
                split(0, s[0].0, s[0].1, s[0].2),
                split(1, s[1].0, s[1].1, s[1].2),
            ];
            let (wm, _) = idle.watermark(&splits, t0 + Duration::from_secs(*secs));
            assert_eq!(wm, *expected, "{what}");
        }
        // Owning no split is not the end of event time (a partition may come): idle.
        let (wm, _) = idle.watermark(&[], t0 + Duration::from_secs(14));
        assert_eq!(wm, EventTime::Idle(Millis::MIN), "no split owned");
    }

    #[test]
    fn without_a_timeout_a_silent_split_holds_the_watermark_for_ever() {
        let t0 = Instant::now();
        let mut idle = Idleness::new(None, 1_000);
        let silent = split(1, 0, Millis::MIN, false);
        for (secs, offset) in [(0, 10), (3_600, 20)] {
            let (wm, parts) = idle.watermark(
                &[split(0, offset, 10_000, false), silent],
                t0 + Duration::from_secs(secs),
            );
            assert_eq!(wm, EventTime::At(Millis::MIN), "after {secs}s");
            assert!(parts.iter().all(|p| !p.idle));
        }
    }

    #[test]
    fn split_parts_report_each_watermark_and_idle_state() {
        let t0 = Instant::now();
        let mut idle = Idleness::new(Some(Duration::from_secs(1)), 100);
        let _ = idle.watermark(&[split(3, 1, 5_000, false), split(4, 1, 7_000, false)], t0);
        let (wm, parts) = idle.watermark(
            &[split(3, 2, 6_000, false), split(4, 1, 7_000, false)],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(wm, EventTime::At(5_899));
        assert_eq!(
            parts,
            vec![
                SplitWatermark {
                    split: 3,
                    watermark: 5_899,
                    idle: false
                },
                SplitWatermark {
                    split: 4,
                    watermark: 6_899,
                    idle: true
                },
            ]
        );
    }
}
