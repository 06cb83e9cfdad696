//! The per-key layout: windows kept per key, because each key's sessions start and end on
//! their own. A record opens `[ts, ts + gap)` and merges every window of its key it overlaps.
//! Tumbling and sliding windows run here too when their state is on disk (the `disk`
//! backend), where a per-key layout is what a key-value store holds well.
//!
//! The windows live in memory or, with the `disk` backend, in a store ([`super::disk`]);
//! both merge, fire and checkpoint a savepoint alike, so a job moves between them through a
//! savepoint.

use std::collections::BTreeSet;

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use foldhash::HashMap;

use super::accumulators::{Acc, check_restored, finish};
use super::disk::DiskWindows;
use super::{KeyWindows, Shared, Window};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::operator::{
    Capture, Input, KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed,
};
use crate::state::disk::{Fetched, Place};

/// The per-key windows of one subtask.
pub struct SessionWindows {
    pub(super) shared: Shared,
    keep: Keep,
}

enum Keep {
    Memory(Memory),
    Disk(DiskWindows),
}

/// The windows in memory.
#[derive(Default)]
struct Memory {
    state: HashMap<Vec<u8>, KeyWindows>,
    /// Fire order: (end, start, key).
    timers: BTreeSet<(Millis, Millis, Vec<u8>)>,
}

/// Insert `[start, end)` with `accs` into one key's `windows` if it is not there yet; for
/// sessions (`merging`), merging every window it overlaps (a session's growth: sliding
/// windows overlap too, and stay apart). Returns the window's start, the `(start, end)` of
/// the windows merged away (a window grown in place counts as one, at its old end), and
/// whether the window was not there before: when neither, its timer stands.
pub(super) fn merge(
    windows: &mut KeyWindows,
    (start, end): (Millis, Millis),
    accs: Vec<Acc>,
    merging: bool,
) -> (Millis, Vec<(Millis, Millis)>, bool) {
    if !merging {
        let added = match windows.entry(start) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Window { end, accs });
                true
            }
            std::collections::btree_map::Entry::Occupied(_) => false,
        };
        return (start, Vec::new(), added);
    }
    // The common case: the record falls in, or extends, the one session of its key that
    // started before it (a key's sessions never overlap, so only the last of those can reach
    // past `start`) and none starts within it. That window grows in place, as merging would
    // make it, without being taken out and put back.
    if windows.range(start + 1..end).next().is_none()
        && let Some((&s, w)) = windows.range_mut(..=start).next_back()
        && w.end > start
    {
        let old = std::mem::replace(&mut w.accs, accs);
        for (a, b) in w.accs.iter_mut().zip(old) {
            a.merge(b);
        }
        if end <= w.end {
            return (s, Vec::new(), false);
        }
        let removed = vec![(s, w.end)];
        w.end = end;
        return (s, removed, false);
    }
    let overlapping: Vec<Millis> = windows
        .range(..end)
        .filter(|(_, w)| w.end > start)
        .map(|(s, _)| *s)
        .collect();
    let (mut new_start, mut new_end, mut accs) = (start, end, accs);
    let mut removed = Vec::with_capacity(overlapping.len());
    for s in overlapping {
        if let Some(w) = windows.remove(&s) {
            removed.push((s, w.end));
            new_start = new_start.min(s);
            new_end = new_end.max(w.end);
            for (a, b) in accs.iter_mut().zip(w.accs) {
                a.merge(b);
            }
        }
    }
    windows.insert(new_start, Window { end: new_end, accs });
    (new_start, removed, true)
}

/// Emit `fired` windows, in the order given: (key, start, window).
pub(super) fn emit(
    shared: &Shared,
    fired: &[(Vec<u8>, Millis, Window)],
    out: &mut Output,
) -> Result<()> {
    if fired.is_empty() {
        return Ok(());
    }
    let mut columns = shared
        .keys
        .decode(fired.iter().map(|(k, _, _)| k.as_slice()))?;
    columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
        fired.iter().map(|(_, start, _)| *start),
    )));
    columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
        fired.iter().map(|(_, _, w)| w.end),
    )));
    for (i, a) in shared.aggregates.iter().enumerate() {
        columns.push(finish(a, fired.iter().map(|(_, _, w)| &w.accs[i])));
    }
    out.batches
        .push(RecordBatch::try_new(Arc::clone(&shared.output), columns)?);
    Ok(())
}

/// Whether restored windows fit this job: their keys decode as its key columns and their
/// accumulators fit its aggregates.
pub(super) fn check_windows<'a>(
    shared: &Shared,
    keys: &[&[u8]],
    windows: impl Iterator<Item = &'a Window>,
) -> Result<()> {
    let wrong = |message| Error::State {
        operator: "window".into(),
        message,
    };
    if !keys.is_empty() {
        shared.keys.decode_stored(keys).map_err(wrong)?;
    }
    for w in windows {
        check_restored(&shared.aggregates, &w.accs).map_err(wrong)?;
    }
    Ok(())
}

impl Memory {
    /// Insert or merge a window `[start, end)` for `key`; returns its final start.
    fn add(
        &mut self,
        key: &[u8],
        window: (Millis, Millis),
        fresh: Vec<Acc>,
        merging: bool,
    ) -> Millis {
        let windows = match self.state.get_mut(key) {
            Some(w) => w,
            None => self.state.entry(key.to_vec()).or_default(),
        };
        let (new_start, removed, added) = merge(windows, window, fresh, merging);
        if removed.is_empty() && !added {
            return new_start;
        }
        let mut timer = (0, 0, key.to_vec());
        for (s, e) in removed {
            (timer.0, timer.1) = (e, s);
            self.timers.remove(&timer);
        }
        if let Some(w) = windows.get(&new_start) {
            (timer.0, timer.1) = (w.end, new_start);
            self.timers.insert(timer);
        }
        new_start
    }

    fn fire(&mut self, watermark: Millis) -> Vec<(Vec<u8>, Millis, Window)> {
        let mut fired = Vec::new();
        while let Some(first) = self.timers.first() {
            if first.0 - 1 > watermark {
                break;
            }
            let Some((end, start, key)) = self.timers.pop_first() else {
                break;
            };
            let Some(windows) = self.state.get_mut(&key) else {
                continue;
            };
            if let Some(w) = windows.remove(&start) {
                debug_assert_eq!(w.end, end);
                fired.push((key.clone(), start, w));
            }
            if windows.is_empty() {
                self.state.remove(&key);
            }
        }
        fired
    }
}

impl SessionWindows {
    /// Per-key windows in memory.
    pub(super) fn new(shared: Shared) -> Self {
        Self {
            shared,
            keep: Keep::Memory(Memory::default()),
        }
    }

    /// Per-key windows in a store at `place`.
    ///
    /// # Errors
    /// The store does not open.
    pub(super) fn on_disk(shared: Shared, place: Place) -> Result<Self> {
        Ok(Self {
            shared,
            keep: Keep::Disk(DiskWindows::create(place)?),
        })
    }
}

impl Operator for SessionWindows {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let key_rows = self.shared.keys.rows(&batch)?;
        let ts_arr = batch.column(self.shared.time_col);
        let ts = ts_arr
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("window time column is not a millisecond timestamp"))?;
        let arrays = self.shared.arguments(&batch)?;
        let values = self.shared.values(&arrays)?;
        let mut late = vec![false; n];
        let mut wins = Vec::new();
        let max_parallelism = self.shared.max_parallelism;
        let merging = matches!(self.shared.assigner, super::Assigner::Session { .. });
        let mut work = match &mut self.keep {
            Keep::Disk(d) => Some(d.batch()),
            Keep::Memory(_) => None,
        };
        for (row, is_late) in late.iter_mut().enumerate() {
            if ts.is_null(row) {
                continue;
            }
            self.shared.assigner.windows(ts.value(row), &mut wins);
            wins.retain(|(_, end)| end - 1 > self.shared.watermark);
            if wins.is_empty() {
                *is_late = true;
                continue;
            }
            let key = key_rows.row(row);
            let key = key.as_ref();
            for &win in &wins {
                let fresh = self.shared.new_accs();
                let window = match (&mut self.keep, &mut work) {
                    (Keep::Disk(d), Some(work)) => {
                        let windows = work.windows(d, key, max_parallelism)?;
                        let (start, _, _) = merge(windows, win, fresh, merging);
                        windows.get_mut(&start)
                    }
                    (Keep::Memory(m), _) => {
                        let start = m.add(key, win, fresh, merging);
                        m.state.get_mut(key).and_then(|ws| ws.get_mut(&start))
                    }
                    (Keep::Disk(_), None) => None,
                };
                if let Some(w) = window {
                    for (acc, v) in w.accs.iter_mut().zip(&values) {
                        acc.update(v, row);
                    }
                }
            }
        }
        if let (Keep::Disk(d), Some(work)) = (&mut self.keep, work) {
            d.write(work)?;
        }
        self.shared.late_rows(&batch, late, out)
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        if self.shared.advance(watermark) {
            let fired = match &mut self.keep {
                Keep::Memory(m) => m.fire(watermark),
                Keep::Disk(d) => d.fire(watermark)?,
            };
            emit(&self.shared, &fired, out)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        match &self.keep {
            Keep::Memory(m) => encode_keyed(
                "window",
                self.shared.max_parallelism,
                m.state.iter().map(|(k, w)| (k.as_slice(), w)),
            ),
            Keep::Disk(d) => d.encode(),
        }
    }

    fn capture(&self, portable: bool) -> Result<Capture> {
        match &self.keep {
            Keep::Disk(d) => d.capture(portable),
            Keep::Memory(_) => {
                let state = self.snapshot()?;
                Ok(Capture::Keyed(Box::new(move || Ok(state))))
            }
        }
    }

    fn counters(&self) -> OperatorCounters {
        self.shared.counters
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        let restored = decode_keyed::<KeyWindows>("window", state)?;
        let keys: Vec<&[u8]> = restored.iter().map(|(k, _)| k.as_slice()).collect();
        check_windows(
            &self.shared,
            &keys,
            restored.iter().flat_map(|(_, ws)| ws.values()),
        )?;
        match &mut self.keep {
            Keep::Memory(m) => {
                for (key, windows) in restored {
                    for (start, w) in &windows {
                        m.timers.insert((w.end, *start, key.clone()));
                    }
                    m.state.insert(key, windows);
                }
                Ok(())
            }
            Keep::Disk(d) => d.put_all(restored, self.shared.max_parallelism),
        }
    }

    fn restore_disk(&mut self, fetched: Vec<Fetched>) -> Result<()> {
        let place = match std::mem::replace(&mut self.keep, Keep::Memory(Memory::default())) {
            Keep::Disk(d) => d.into_place(),
            memory @ Keep::Memory(_) => {
                self.keep = memory;
                return Err(crate::operator::disk_state_refused("window"));
            }
        };
        let d = DiskWindows::restored(place, fetched)?;
        let (keys, windows) = d.sample()?;
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        check_windows(&self.shared, &keys, windows.iter())?;
        self.keep = Keep::Disk(d);
        Ok(())
    }
}
