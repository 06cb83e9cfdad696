//! Tumbling and sliding windows: every key's windows have the same boundaries, so each open
//! window is one table of groups ([`GroupKeys`]) with one vector per aggregate ([`Column`]).
//!
//! A batch is split by window first (for tumbling windows nearly always one), then each
//! window's rows get their group indices in one pass and each aggregate is updated by its own
//! tight loop. Per record that is one hash probe and one store per aggregate: no allocation,
//! no per-key object, no ordered-map walk.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMillisecondType;

use super::accumulators::Column;
use super::groups::{BatchKeys, GroupKeys, KeyMode};
use super::{Assigner, KeyWindows, Shared, Window};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::operator::{KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed};

/// One open window: its groups and their accumulators.
#[derive(Debug)]
struct Groups {
    end: Millis,
    keys: GroupKeys,
    accs: Vec<Column>,
}

/// The tumbling or sliding windows of one subtask.
pub struct AlignedWindows {
    pub(super) shared: Shared,
    mode: KeyMode,
    /// Open windows by start. All have the same length, so start order is fire order.
    windows: BTreeMap<Millis, Groups>,
    watermark: Millis,
    counters: OperatorCounters,
    /// Scratch: group index of each row of the window being updated.
    groups: Vec<u32>,
}

impl AlignedWindows {
    pub(super) fn new(shared: Shared) -> Self {
        let mode = KeyMode::for_types(shared.keys.types());
        Self {
            shared,
            mode,
            windows: BTreeMap::new(),
            watermark: Millis::MIN,
            counters: OperatorCounters::default(),
            groups: Vec::new(),
        }
    }

    fn open(&mut self, start: Millis, end: Millis) -> &mut Groups {
        let (mode, aggregates) = (&self.mode, &self.shared.aggregates);
        self.windows.entry(start).or_insert_with(|| Groups {
            end,
            keys: GroupKeys::new(mode),
            accs: aggregates.iter().map(Column::new).collect(),
        })
    }

    /// Group indices of `g`'s groups in key order: the row format's byte order, which is the
    /// order the per-key layout fires in.
    fn key_order(&self, g: &GroupKeys) -> Vec<u32> {
        let mut order: Vec<u32> = (0..g.len() as u32).collect();
        match g {
            // Row format orders integers numerically, with the null key first: as `Option`.
            GroupKeys::Int { keys, .. } => order.sort_unstable_by_key(|&i| keys[i as usize]),
            GroupKeys::Rows { data, offsets, .. } => order.sort_unstable_by(|&a, &b| {
                let key = |i: u32| &data[offsets[i as usize]..offsets[i as usize + 1]];
                key(a).cmp(key(b))
            }),
        }
        order
    }

    fn fire(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        while let Some(entry) = self.windows.first_entry() {
            if entry.get().end - 1 > watermark {
                break;
            }
            let start = *entry.key();
            let w = entry.remove();
            if w.keys.is_empty() {
                continue;
            }
            let order = self.key_order(&w.keys);
            let s = &self.shared;
            let mut columns = w.keys.columns(&self.mode, &s.keys, &order)?;
            columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
                std::iter::repeat_n(start, order.len()),
            )));
            columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
                std::iter::repeat_n(w.end, order.len()),
            )));
            for (a, col) in s.aggregates.iter().zip(&w.accs) {
                columns.push(col.finish(a, &order));
            }
            out.batches
                .push(RecordBatch::try_new(Arc::clone(&s.output), columns)?);
        }
        Ok(())
    }

    /// The per-key checkpoint format (see the module of [`super`]): each key with its windows.
    pub(super) fn snapshot(&self) -> Result<KeyedState> {
        let mut per_key: HashMap<Vec<u8>, KeyWindows> = HashMap::new();
        for (&start, w) in &self.windows {
            let rows = w.keys.rows(&self.mode, &self.shared.keys)?;
            for (g, key) in rows.into_iter().enumerate() {
                let accs = w.accs.iter().map(|c| c.get(g)).collect();
                per_key
                    .entry(key)
                    .or_default()
                    .insert(start, Window { end: w.end, accs });
            }
        }
        encode_keyed(
            "window",
            self.shared.max_parallelism,
            per_key.iter().map(|(k, w)| (k.as_slice(), w)),
        )
    }

    pub(super) fn counters(&self) -> OperatorCounters {
        self.counters
    }
}

impl Operator for AlignedWindows {
    fn process(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let ts = batch
            .column(self.shared.time_col)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("window time column is not a millisecond timestamp"))?
            .clone();
        let keys = BatchKeys::of(&self.mode, &self.shared.keys, &batch)?;
        let arrays = self.shared.arguments(&batch)?;
        let values = self.shared.values(&arrays)?;

        // Rows of each window the batch touches, in row order: (start, end, rows).
        let mut per_window: Vec<(Millis, Millis, Vec<u32>)> = Vec::new();
        let mut late = vec![false; n];
        let mut any_late = false;
        let mut wins = Vec::new();
        let mut last = 0usize;
        for (row, is_late) in late.iter_mut().enumerate() {
            if ts.is_null(row) {
                continue;
            }
            let t = ts.value(row);
            match self.shared.assigner {
                // The common case: the row falls in the window of the row before it.
                Assigner::Tumbling { .. }
                    if per_window
                        .get(last)
                        .is_some_and(|(s, e, _)| *s <= t && t < *e) =>
                {
                    per_window[last].2.push(row as u32);
                    continue;
                }
                assigner => assigner.windows(t, &mut wins),
            }
            let mut open = false;
            for &(start, end) in &wins {
                if end - 1 <= self.watermark {
                    continue;
                }
                open = true;
                last = match per_window.iter().position(|(s, _, _)| *s == start) {
                    Some(i) => i,
                    None => {
                        per_window.push((start, end, Vec::with_capacity(n)));
                        per_window.len() - 1
                    }
                };
                per_window[last].2.push(row as u32);
            }
            if !open {
                *is_late = true;
                any_late = true;
                self.counters.late_records += 1;
            }
        }

        let mut groups = std::mem::take(&mut self.groups);
        for (start, end, rows) in &per_window {
            let w = self.open(*start, *end);
            w.keys.assign(&keys, rows, &mut groups);
            let len = w.keys.len();
            for (col, v) in w.accs.iter_mut().zip(&values) {
                col.resize(len);
                col.update(v, rows, &groups);
            }
        }
        self.groups = groups;

        if any_late && self.shared.side_output {
            out.side
                .push(filter_record_batch(&batch, &BooleanArray::from(late))?);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire(watermark, out)?;
        }
        Ok(())
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        // Regroup key-major state by window: (end, keys, accumulators) per start.
        type Restored = (Millis, Vec<Vec<u8>>, Vec<Vec<super::Acc>>);
        let mut by_start: BTreeMap<Millis, Restored> = BTreeMap::new();
        for (key, windows) in decode_keyed::<KeyWindows>("window", state)? {
            for (start, w) in windows {
                let e = by_start
                    .entry(start)
                    .or_insert_with(|| (w.end, Vec::new(), Vec::new()));
                e.1.push(key.clone());
                e.2.push(w.accs);
            }
        }
        let mut groups = Vec::new();
        for (start, (end, keys, accs)) in by_start {
            let batch_keys = BatchKeys::from_stored(
                &self.mode,
                &self.shared.keys,
                keys.iter().map(Vec::as_slice),
            )?;
            let rows: Vec<u32> = (0..keys.len() as u32).collect();
            let w = self.open(start, end);
            w.keys.assign(&batch_keys, &rows, &mut groups);
            let len = w.keys.len();
            for col in &mut w.accs {
                col.resize(len);
            }
            for (&g, key_accs) in groups.iter().zip(accs) {
                for (col, acc) in w.accs.iter_mut().zip(key_accs) {
                    col.set(g as usize, acc);
                }
            }
        }
        Ok(())
    }
}
