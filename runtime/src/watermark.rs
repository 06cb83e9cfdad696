//! A stage's event time over its input channels.
//!
//! Each upstream subtask is one channel. The stage's watermark is the lowest over channels
//! that have neither ended nor gone idle (see `source/idleness.rs`): an idle channel holds
//! nothing back until its next watermark. When every open channel is idle, event time is as
//! far as the furthest of them and the stage is idle in turn (Flink's watermark valve does
//! the same), so what arrived before the input went quiet is not held back either. When all
//! channels have ended, event time is over.

use crate::ids::Millis;

/// Where event time stands behind a task: what a source subtask's splits say (see
/// `source/idleness.rs`) and what a stage's inputs say, acted on the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// Advance to this watermark (a no-op when not later than the current one, except that
    /// an idle task is active again); `Millis::MAX` when every input has ended.
    At(Millis),
    /// Everything behind is idle: advance to this (the furthest of them), then tell
    /// downstream this task is idle.
    Idle(Millis),
}

/// Per-channel watermarks and idle flags of one stage.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    wms: Vec<Millis>,
    idle: Vec<bool>,
    ended: Vec<bool>,
}

impl InputWatermarks {
    /// `n` channels, none heard from yet.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self {
            wms: vec![Millis::MIN; n],
            idle: vec![false; n],
            ended: vec![false; n],
        }
    }

    /// Channel `i` reached `wm` (and is active, if it was idle).
    pub fn watermark(&mut self, i: usize, wm: Millis) -> EventTime {
        self.wms[i] = self.wms[i].max(wm);
        self.idle[i] = false;
        self.combined()
    }

    /// Everything behind channel `i` is idle.
    pub fn idle(&mut self, i: usize) -> EventTime {
        self.idle[i] = true;
        self.combined()
    }

    /// Channel `i` ended.
    pub fn end(&mut self, i: usize) {
        self.ended[i] = true;
    }

    /// Whether channel `i` will bring no more records: its event time ended (a source
    /// sends the end of event time only once its reader has read everything). A channel
    /// that closed without it did not finish: a stop with savepoint, a failed upstream task
    /// or a lost pod close channels whose input goes on after a restore.
    #[must_use]
    pub fn finished(&self, i: usize) -> bool {
        self.wms[i] == Millis::MAX
    }

    /// Whether channel `i` ended.
    #[must_use]
    pub fn is_ended(&self, i: usize) -> bool {
        self.ended[i]
    }

    /// Every channel ended.
    #[must_use]
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    fn combined(&self) -> EventTime {
        // Channels still to bring records: neither ended nor at the end of event time. The
        // end of event time only once none is left: with a finished channel beside idle
        // ones, the stage is idle (an idle channel may bring records yet), not at the end.
        let live =
            || (0..self.wms.len()).filter(|k| !self.ended[*k] && self.wms[*k] != Millis::MAX);
        if live().next().is_none() {
            return EventTime::At(Millis::MAX);
        }
        match live().filter(|k| !self.idle[*k]).map(|k| self.wms[k]).min() {
            Some(low) => EventTime::At(low),
            None => EventTime::Idle(live().map(|k| self.wms[k]).max().unwrap_or(Millis::MIN)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Ev {
        Wm(usize, Millis),
        Idle(usize),
        End(usize),
    }

    /// Three channels; each row is one event and what the stage does after it.
    #[test]
    fn idle_channels_stop_holding_the_stage_back() {
        let rows: &[(&str, Ev, Option<EventTime>)] = &[
            (
                "one channel heard from: the others hold it",
                Ev::Wm(0, 100),
                Some(EventTime::At(Millis::MIN)),
            ),
            (
                "two heard from: the silent one holds it",
                Ev::Wm(1, 200),
                Some(EventTime::At(Millis::MIN)),
            ),
            (
                "all heard from: the lowest",
                Ev::Wm(2, 50),
                Some(EventTime::At(50)),
            ),
            (
                "the lowest goes idle: the lowest of the rest",
                Ev::Idle(2),
                Some(EventTime::At(100)),
            ),
            (
                "another goes idle: the one left",
                Ev::Idle(0),
                Some(EventTime::At(200)),
            ),
            (
                "the last goes idle: as far as the furthest, and idle",
                Ev::Idle(1),
                Some(EventTime::Idle(200)),
            ),
            (
                "an idle channel comes back, behind: it counts again",
                Ev::Wm(2, 60),
                Some(EventTime::At(60)),
            ),
            ("an ended channel never counts", Ev::End(2), None),
            (
                "an idle channel comes back ahead: the other is still idle",
                Ev::Wm(0, 300),
                Some(EventTime::At(300)),
            ),
            ("", Ev::End(0), None),
            ("all ended: the end of time", Ev::End(1), None),
        ];
        let mut w = InputWatermarks::new(3);
        for (what, ev, expected) in rows {
            let got = match ev {
                Ev::Wm(i, wm) => Some(w.watermark(*i, *wm)),
                Ev::Idle(i) => Some(w.idle(*i)),
                Ev::End(i) => {
                    w.end(*i);
                    None
                }
            };
            assert_eq!(got, *expected, "{what}");
        }
        assert!(w.all_ended());
        assert_eq!(w.combined(), EventTime::At(Millis::MAX));
    }

    /// A channel at the end of event time beside idle ones does not end the stage's: the
    /// idle ones may still bring records. Only a channel at the end is finished (one that
    /// closed without it, as a stop with savepoint closes them, is not).
    #[test]
    fn the_end_of_event_time_needs_every_channel_at_it() {
        let mut w = InputWatermarks::new(3);
        w.watermark(0, 100);
        w.watermark(1, 200);
        assert_eq!(w.watermark(2, Millis::MAX), EventTime::At(100));
        assert_eq!(w.idle(0), EventTime::At(200));
        assert_eq!(
            w.idle(1),
            EventTime::Idle(200),
            "not the end: 0 and 1 are idle"
        );
        assert!(w.finished(2) && !w.finished(0) && !w.finished(1));
        w.end(1);
        assert!(!w.finished(1), "closed, not finished");
        assert_eq!(w.watermark(0, Millis::MAX), EventTime::At(Millis::MAX));
    }
}
