//! Session windows: per key, because each key's sessions start and end on their own. A
//! record opens `[ts, ts + gap)` and merges every window of its key it overlaps.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::TimestampMillisecondType;

use super::accumulators::{check_restored, finish};
use super::{KeyWindows, Shared, Window};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::operator::{
    Input, KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed,
};

/// The session windows of one subtask.
pub struct SessionWindows {
    pub(super) shared: Shared,
    state: HashMap<Vec<u8>, KeyWindows>,
    /// Fire order: (end, start, key).
    timers: BTreeSet<(Millis, Millis, Vec<u8>)>,
}

impl SessionWindows {
    pub(super) fn new(shared: Shared) -> Self {
        Self {
            shared,
            state: HashMap::new(),
            timers: BTreeSet::new(),
        }
    }

    /// Insert or merge a session window `[start, end)` for `key`; returns its final start.
    fn add_session(&mut self, key: &[u8], start: Millis, end: Millis) -> Millis {
        let fresh = self.shared.new_accs();
        let windows = match self.state.get_mut(key) {
            Some(w) => w,
            None => self.state.entry(key.to_vec()).or_default(),
        };
        let overlapping: Vec<Millis> = windows
            .range(..end)
            .filter(|(_, w)| w.end > start)
            .map(|(s, _)| *s)
            .collect();
        let (mut new_start, mut new_end, mut accs) = (start, end, fresh);
        for s in overlapping {
            if let Some(w) = windows.remove(&s) {
                self.timers.remove(&(w.end, s, key.to_vec()));
                new_start = new_start.min(s);
                new_end = new_end.max(w.end);
                for (a, b) in accs.iter_mut().zip(w.accs) {
                    a.merge(b);
                }
            }
        }
        windows.insert(new_start, Window { end: new_end, accs });
        self.timers.insert((new_end, new_start, key.to_vec()));
        new_start
    }

    fn fire(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        let mut fired: Vec<(Vec<u8>, Millis, Window)> = Vec::new();
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
        if fired.is_empty() {
            return Ok(());
        }
        let s = &self.shared;
        let mut columns = s.keys.decode(fired.iter().map(|(k, _, _)| k.as_slice()))?;
        columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            fired.iter().map(|(_, start, _)| *start),
        )));
        columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            fired.iter().map(|(_, _, w)| w.end),
        )));
        for (i, a) in s.aggregates.iter().enumerate() {
            columns.push(finish(a, fired.iter().map(|(_, _, w)| &w.accs[i])));
        }
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&s.output), columns)?);
        Ok(())
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
            for &(start, end) in &wins {
                let start = self.add_session(key, start, end);
                if let Some(w) = self.state.get_mut(key).and_then(|ws| ws.get_mut(&start)) {
                    for (acc, v) in w.accs.iter_mut().zip(&values) {
                        acc.update(v, row);
                    }
                }
            }
        }
        self.shared.late_rows(&batch, late, out)
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        if self.shared.advance(watermark) {
            self.fire(watermark, out)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        encode_keyed(
            "window",
            self.shared.max_parallelism,
            self.state.iter().map(|(k, w)| (k.as_slice(), w)),
        )
    }

    fn counters(&self) -> OperatorCounters {
        self.shared.counters
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        let restored = decode_keyed::<KeyWindows>("window", state)?;
        let wrong = |message| Error::State {
            operator: "window".into(),
            message,
        };
        let keys: Vec<&[u8]> = restored.iter().map(|(k, _)| k.as_slice()).collect();
        if !keys.is_empty() {
            self.shared.keys.decode_stored(&keys).map_err(wrong)?;
        }
        for (_, windows) in &restored {
            for w in windows.values() {
                check_restored(&self.shared.aggregates, &w.accs).map_err(wrong)?;
            }
        }
        for (key, windows) in restored {
            for (start, w) in &windows {
                self.timers.insert((w.end, *start, key.clone()));
            }
            self.state.insert(key, windows);
        }
        Ok(())
    }
}
