//! Tumbling and sliding windows: every key's windows have the same boundaries, so each open
//! window is one table of groups ([`GroupKeys`]) with one vector per aggregate ([`Column`]).
//!
//! A batch is split by window first (for tumbling windows nearly always one), then each
//! window's rows get their group indices in one pass and each aggregate is updated by its own
//! tight loop. Per record that is one hash probe and one store per aggregate: no allocation,
//! no per-key object, no ordered-map walk.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::TimestampMillisecondType;

use super::accumulators::{Column, check_restored};
use super::groups::{BatchKeys, GroupKeys, KeyMode, KeyRows};
use super::{Assigner, KeyWindows, Shared};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::operator::{Input, KeyedState, Operator, OperatorCounters, Output, decode_keyed};

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

    /// Copy what a checkpoint needs of every open window (key bytes, accumulators): a few
    /// memory copies on the task; [`Captured::encode`] does the rest off it.
    fn capture_state(&self) -> Result<Captured> {
        let windows = self
            .windows
            .iter()
            .map(|(&start, w)| {
                Ok(CapturedWindow {
                    start,
                    end: w.end,
                    keys: w.keys.rows(&self.mode, &self.shared.keys)?,
                    accs: w.accs.clone(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Captured {
            windows,
            max_parallelism: self.shared.max_parallelism,
        })
    }
}

/// One open window as a checkpoint captured it.
struct CapturedWindow {
    start: Millis,
    end: Millis,
    keys: KeyRows,
    accs: Vec<Column>,
}

/// The open windows at a barrier, ready to encode anywhere.
struct Captured {
    windows: Vec<CapturedWindow>,
    max_parallelism: u32,
}

impl Captured {
    /// The per-key checkpoint format (see the module of [`super`]): per key group, each key
    /// (sorted) with its windows by start. Written straight from the group tables: no per-key
    /// map is built, which keeps a checkpoint of 100,000 keys to a few milliseconds and
    /// megabytes.
    fn encode(self) -> Result<KeyedState> {
        let windows = &self.windows;
        let mut index: Vec<Entry<'_>> = Vec::new();
        for (wi, w) in windows.iter().enumerate() {
            for g in 0..w.keys.len() {
                let key = w.keys.get(g);
                index.push(Entry {
                    key_group: crate::keys::key_group(key, self.max_parallelism),
                    prefix: prefix(key),
                    key,
                    start: w.start,
                    window: wi as u32,
                    group: g as u32,
                });
            }
        }
        // Key group, then key bytes (their first 16 as a number decide nearly always), then
        // window start: the order the format lists them in.
        index.sort_unstable_by(|a, b| {
            (a.key_group, a.prefix)
                .cmp(&(b.key_group, b.prefix))
                .then_with(|| a.key.cmp(b.key))
                .then(a.start.cmp(&b.start))
        });
        // Accumulators in that order, one column at a time.
        let aggregates = windows.first().map_or(0, |w| w.accs.len());
        let sorted: Vec<Column> = (0..aggregates)
            .map(|c| {
                let mut col = windows[0].accs[c].empty_like();
                for e in &index {
                    col.push_from(&windows[e.window as usize].accs[c], e.group as usize);
                }
                col
            })
            .collect();
        let mut state = Vec::new();
        let mut at = 0;
        for group in index.chunk_by(|a, b| a.key_group == b.key_group) {
            let mut entries: Vec<KeyEntry<'_>> = Vec::new();
            for windows_of_key in group.chunk_by(|a, b| a.prefix == b.prefix && a.key == b.key) {
                entries.push(KeyEntry {
                    windows: windows_of_key,
                    first: at,
                    captured: windows,
                    accs: &sorted,
                });
                at += windows_of_key.len();
            }
            let bytes = postcard::to_stdvec(&entries).map_err(|e| Error::State {
                operator: "window".into(),
                message: e.to_string(),
            })?;
            state.push((group[0].key_group, bytes));
        }
        Ok(state)
    }
}

impl Operator for AlignedWindows {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let ts = batch
            .column(self.shared.time_col)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("window time column is not a millisecond timestamp"))?;
        let keys = BatchKeys::of(&self.mode, &self.shared.keys, &batch)?;
        let arrays = self.shared.arguments(&batch)?;
        let values = self.shared.values(&arrays)?;

        // Rows of each window the batch touches, in row order: (start, end, rows).
        let mut per_window: Vec<(Millis, Millis, Vec<u32>)> = Vec::new();
        // Where each window's rows are in `per_window`, by start: a row of a sliding window
        // enters size/slide windows, and finding each by a scan of the list cost the square
        // of that per row.
        let mut slot: foldhash::HashMap<Millis, usize> = foldhash::HashMap::default();
        let mut late = vec![false; n];
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
                if end - 1 <= self.shared.watermark {
                    continue;
                }
                open = true;
                last = *slot.entry(start).or_insert_with(|| {
                    // One window per row (tumbling) takes most of the batch's rows; of many
                    // (sliding), each takes a share.
                    let rows = if wins.len() == 1 { n } else { 0 };
                    per_window.push((start, end, Vec::with_capacity(rows)));
                    per_window.len() - 1
                });
                per_window[last].2.push(row as u32);
            }
            *is_late = !open;
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

        self.shared.late_rows(&batch, late, out)
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        if self.shared.advance(watermark) {
            self.fire(watermark, out)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        self.capture_state()?.encode()
    }

    fn capture(&self, _portable: bool) -> Result<super::super::Capture> {
        let captured = self.capture_state()?;
        Ok(super::super::Capture::Keyed(Box::new(move || {
            captured.encode()
        })))
    }

    fn counters(&self) -> OperatorCounters {
        self.shared.counters
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        // Regroup key-major state by window: (end, keys, accumulators) per start.
        type Restored = (Millis, Vec<Vec<u8>>, Vec<Vec<super::Acc>>);
        let mut by_start: BTreeMap<Millis, Restored> = BTreeMap::new();
        for (key, windows) in decode_keyed::<KeyWindows>("window", state)? {
            for (start, w) in windows {
                check_restored(&self.shared.aggregates, &w.accs).map_err(|message| {
                    Error::State {
                        operator: "window".into(),
                        message,
                    }
                })?;
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

/// One (key, window) of a snapshot, with what it sorts by.
struct Entry<'a> {
    key_group: u32,
    prefix: u128,
    key: &'a [u8],
    start: Millis,
    window: u32,
    group: u32,
}

/// The first 16 bytes of `key`, big-endian, zero-padded: ordered as the bytes are whenever
/// two prefixes differ, and enough to tell apart any two integer keys (9 bytes in row format).
fn prefix(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(b)
}

/// One key's entry in the checkpoint format, serialised as `(key, KeyWindows)` is: the key's
/// bytes, then its windows as a map from start to `Window { end, accs }`.
struct KeyEntry<'a> {
    /// This key's (key, window) entries, in start order.
    windows: &'a [Entry<'a>],
    /// Position of `windows[0]` in the sorted index, and so in `accs`.
    first: usize,
    captured: &'a [CapturedWindow],
    /// Accumulators in index order.
    accs: &'a [Column],
}

impl serde::Serialize for KeyEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        // As bytes: the same encoding as the `&[u8]` it stands for, in one copy.
        t.serialize_element(serde_bytes::Bytes::new(self.windows[0].key))?;
        t.serialize_element(&WindowsOfKey(self))?;
        t.end()
    }
}

struct WindowsOfKey<'a>(&'a KeyEntry<'a>);

impl serde::Serialize for WindowsOfKey<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let k = self.0;
        s.collect_map(k.windows.iter().enumerate().map(|(i, e)| {
            let w = &k.captured[e.window as usize];
            let window = WindowRef {
                end: w.end,
                accs: k.accs,
                at: k.first + i,
            };
            (e.start, window)
        }))
    }
}

/// Serialises as [`Window`] does (`end`, then `accs` as a sequence of [`super::Acc`]), reading
/// the accumulators in place instead of collecting them into a vector per key.
struct WindowRef<'a> {
    end: Millis,
    accs: &'a [Column],
    at: usize,
}

impl serde::Serialize for WindowRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut w = s.serialize_struct("Window", 2)?;
        w.serialize_field("end", &self.end)?;
        w.serialize_field("accs", &AccsAt(self.accs, self.at))?;
        w.end()
    }
}

struct AccsAt<'a>(&'a [Column], usize);

impl serde::Serialize for AccsAt<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| c.get(self.1)))
    }
}
