//! `dedup`: keep the first record of each key; drop later records of that key until `ttl`
//! of event time has passed since the first. A key is forgotten once the watermark reaches
//! `first + ttl`, which bounds state by the key rate times the TTL.
//!
//! The keys seen live in memory ([`Memory`]) or, with the `disk` state backend, in a store on
//! local disk ([`Disk`]); both forget keys at the same watermarks and checkpoint a savepoint
//! in the same format, so a job can move between them through a savepoint.

use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMillisecondType;
use foldhash::{HashMap, HashMapExt};

use super::{
    Capture, Input, KeyedPieces, KeyedState, Operator, OperatorCounters, Output, PieceSink,
    decode_keyed, encode_keyed,
};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::{KeyCodec, key_group};
use crate::state::disk::{DiskState, Family, Fetched, Place, from_ordered, ordered};

/// The dedup operator of one subtask.
#[derive(Debug)]
pub struct Dedup {
    keys: KeyCodec,
    time_col: usize,
    ttl: Millis,
    max_parallelism: u32,
    /// Keys kept at or before this time are forgotten ([`horizon`]), whether or not their
    /// entries are gone yet.
    horizon: Option<Millis>,
    seen: Seen,
    counters: OperatorCounters,
}

#[derive(Debug)]
enum Seen {
    Memory(Memory),
    Disk(Disk),
}

/// Keys seen, in memory.
#[derive(Debug, Default)]
struct Memory {
    /// key -> event time of the record that was kept.
    seen: HashMap<Vec<u8>, Millis>,
    /// (expiry, key), to forget keys in watermark order.
    expiries: BTreeSet<(Millis, Vec<u8>)>,
}

/// Keys seen, on disk: family [`SEEN`] maps each key (under its key group) to the event time
/// kept. Nothing scans for expired keys: a read treats a key past its expiry as absent, and
/// compactions drop it (an expiring family), so each record costs one read and at most one
/// write. Family [`HORIZONS`] holds, per key group, the horizon its last checkpoint was taken
/// at, so that a restore treats as forgotten exactly the keys the memory backend's checkpoint
/// leaves out, whatever the `ttl` and watermark after it.
#[derive(Debug)]
struct Disk {
    state: DiskState,
    /// Per key group of the subtask (index: key group minus the first), the horizon its
    /// restored state was checkpointed at.
    restored: Vec<Option<Millis>>,
}

const FAMILIES: &[Family] = &[Family::expiring("seen"), Family::kept("horizons")];
const SEEN: usize = 0;
const HORIZONS: usize = 1;

fn corrupt(message: impl Into<String>) -> Error {
    Error::State {
        operator: "dedup".into(),
        message: message.into(),
    }
}

/// The latest time a key can have been kept at and be forgotten at `watermark`: a key kept at
/// `first` is forgotten once `first + ttl <= watermark` (saturating), which is once `first` is
/// at or below this. `None` while no key is; every key at the end of time.
fn horizon(watermark: Millis, ttl: Millis) -> Option<Millis> {
    if watermark == Millis::MAX {
        Some(Millis::MAX)
    } else {
        watermark.checked_sub(ttl)
    }
}

/// The horizon of key group `kg` in a subtask whose first key group is `first`: the later of
/// the operator's (`now`) and the one the group's state was restored at (`restored`).
fn group_horizon(
    restored: &[Option<Millis>],
    first: u32,
    kg: u32,
    now: Option<Millis>,
) -> Option<Millis> {
    let at = kg
        .checked_sub(first)
        .and_then(|i| restored.get(i as usize))
        .copied()
        .flatten();
    now.max(at)
}

fn forgotten(first: Millis, horizon: Option<Millis>) -> bool {
    horizon.is_some_and(|h| first <= h)
}

impl Memory {
    fn remember(&mut self, key: Vec<u8>, ts: Millis, ttl: Millis) {
        if let Some(old) = self.seen.insert(key.clone(), ts) {
            self.expiries
                .remove(&(old.saturating_add(ttl), key.clone()));
        }
        self.expiries.insert((ts.saturating_add(ttl), key));
    }
}

impl Disk {
    fn new(state: DiskState) -> Self {
        let groups = state.groups();
        Self {
            state,
            restored: vec![None; (groups.last - groups.first + 1) as usize],
        }
    }

    fn horizon(&self, kg: u32, now: Option<Millis>) -> Option<Millis> {
        group_horizon(&self.restored, self.state.groups().first, kg, now)
    }

    /// Write `rows` (key group, key, event time kept), in key order: sorted writes land in
    /// the write buffer's skip list near each other, a sequence of cache hits.
    fn remember(&mut self, rows: &mut [(u32, &[u8], Millis)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut batch = weir_state::Batch::default();
        for (kg, key, ts) in rows.iter() {
            batch.put(SEEN, *kg, key, &ordered(*ts));
        }
        Ok(self.state.store().write(batch)?)
    }

    /// Record, per key group, the horizon this checkpoint is taken at.
    fn mark_horizons(&self, now: Option<Millis>) -> Result<()> {
        let groups = self.state.groups();
        let mut batch = weir_state::Batch::default();
        for kg in groups.first..=groups.last {
            match self.horizon(kg, now) {
                Some(h) => batch.put(HORIZONS, kg, &[], &ordered(h)),
                None => batch.delete(HORIZONS, kg, &[]),
            }
        }
        Ok(self.state.store().write(batch)?)
    }

    /// Every key kept and not forgotten, streamed per key group as the memory backend encodes
    /// it.
    fn encode(
        store: &weir_state::Store,
        groups: weir_state::KeyGroups,
        horizons: impl Fn(u32) -> Option<Millis>,
        sink: PieceSink<'_>,
    ) -> Result<()> {
        let mut pieces = KeyedPieces::new("dedup", sink);
        for entry in store.scan(SEEN, groups)? {
            let (kg, key, v) = entry?;
            let first = from_ordered(&v).ok_or_else(|| corrupt("a stored time is not 8 bytes"))?;
            if !forgotten(first, horizons(kg)) {
                pieces.push(kg, &key, &first)?;
            }
        }
        pieces.finish()
    }
}

impl Dedup {
    /// A dedup operator with no state, in memory or, given a place, on disk.
    ///
    /// # Errors
    /// The disk store does not open.
    pub fn new(
        keys: KeyCodec,
        time_col: usize,
        ttl: Millis,
        max_parallelism: u32,
        place: Option<Place>,
    ) -> Result<Self> {
        let seen = match place {
            None => Seen::Memory(Memory::default()),
            Some(place) => Seen::Disk(Disk::new(DiskState::create(place, FAMILIES)?)),
        };
        Ok(Self {
            keys,
            time_col,
            ttl,
            max_parallelism,
            horizon: None,
            seen,
            counters: OperatorCounters::default(),
        })
    }

    fn check_restored_keys(&self, keys: &[&[u8]]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        // Dedup only compares key bytes, so a changed key type would not fail: every
        // stored key would silently miss and its duplicates pass once.
        self.keys.decode_stored(keys).map(|_| ()).map_err(corrupt)
    }
}

impl Operator for Dedup {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = self.keys.rows(&batch)?;
        let ts = batch
            .column(self.time_col)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("dedup time column is not a millisecond timestamp"))?;
        let time = |row: usize| {
            if ts.is_null(row) {
                Millis::MIN
            } else {
                ts.value(row)
            }
        };
        let (ttl, horizon) = (self.ttl, self.horizon);
        let mut keep = Vec::with_capacity(batch.num_rows());
        match &mut self.seen {
            Seen::Memory(m) => {
                for row in 0..batch.num_rows() {
                    let key = rows.row(row);
                    let t = time(row);
                    let first = m
                        .seen
                        .get(key.as_ref())
                        .copied()
                        .filter(|first| !forgotten(*first, horizon));
                    let dup = first.is_some_and(|first| t < first.saturating_add(ttl));
                    // A record kept but already past its own expiry (late) is not remembered:
                    // it would be forgotten at once.
                    if !dup && !forgotten(t, horizon) {
                        m.remember(key.as_ref().to_vec(), t, ttl);
                    }
                    keep.push(!dup);
                }
            }
            Seen::Disk(d) => {
                // Each distinct key of the batch once, read from the store in one batched
                // read; its later rows see what the batch itself kept.
                let mut slot_of: HashMap<&[u8], usize> = HashMap::new();
                let mut slots: Vec<(u32, &[u8])> = Vec::new();
                let keys: Vec<_> = (0..batch.num_rows()).map(|r| rows.row(r)).collect();
                let row_slots: Vec<usize> = keys
                    .iter()
                    .map(|k| {
                        let k = k.as_ref();
                        *slot_of.entry(k).or_insert_with(|| {
                            slots.push((key_group(k, self.max_parallelism), k));
                            slots.len() - 1
                        })
                    })
                    .collect();
                let stored = d.state.store().get_many(SEEN, &slots)?;
                // Per slot: the time kept now (none if forgotten), and whether the batch
                // changed it.
                let mut now = Vec::with_capacity(slots.len());
                for ((kg, _), v) in slots.iter().zip(stored) {
                    let first = v
                        .map(|v| {
                            from_ordered(&v).ok_or_else(|| corrupt("a stored time is not 8 bytes"))
                        })
                        .transpose()?
                        .filter(|first| !forgotten(*first, d.horizon(*kg, horizon)));
                    now.push((first, false));
                }
                for (row, &slot) in row_slots.iter().enumerate() {
                    let t = time(row);
                    let (first, changed) = &mut now[slot];
                    let dup = first.is_some_and(|first| t < first.saturating_add(ttl));
                    if !dup {
                        // As in memory, a late record's key is forgotten at once.
                        *first = (!forgotten(t, d.horizon(slots[slot].0, horizon))).then_some(t);
                        *changed = first.is_some();
                    }
                    keep.push(!dup);
                }
                let mut writes: Vec<(u32, &[u8], Millis)> = slots
                    .iter()
                    .zip(&now)
                    .filter_map(|((kg, k), (t, changed))| {
                        changed.then_some(*t).flatten().map(|t| (*kg, *k, t))
                    })
                    .collect();
                d.remember(&mut writes)?;
            }
        }
        self.counters.duplicates += keep.iter().filter(|k| !**k).count() as u64;
        let kept = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        if kept.num_rows() > 0 {
            out.batches.push(kept);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, _out: &mut Output) -> Result<()> {
        self.horizon = self.horizon.max(horizon(watermark, self.ttl));
        match &mut self.seen {
            Seen::Memory(m) => {
                while let Some((expiry, _)) = m.expiries.first() {
                    if *expiry > watermark {
                        break;
                    }
                    if let Some((_, key)) = m.expiries.pop_first() {
                        m.seen.remove(&key);
                    }
                }
            }
            Seen::Disk(d) => {
                // Forgotten entries go at their next compaction.
                if let Some(h) = self.horizon {
                    d.state.store().expire_through(h);
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        match &self.seen {
            Seen::Memory(m) => encode_keyed(
                "dedup",
                self.max_parallelism,
                m.seen.iter().map(|(k, t)| (k.as_slice(), *t)),
            ),
            Seen::Disk(d) => super::gather(|sink| {
                Disk::encode(
                    d.state.store(),
                    d.state.groups(),
                    |kg| d.horizon(kg, self.horizon),
                    sink,
                )
            }),
        }
    }

    fn capture(&self, portable: bool) -> Result<Capture> {
        match &self.seen {
            Seen::Memory(_) => {
                let state = self.snapshot()?;
                Ok(Capture::Keyed(Box::new(move || Ok(state))))
            }
            Seen::Disk(d) => {
                if !portable {
                    d.mark_horizons(self.horizon)?;
                }
                let (restored, now) = (d.restored.clone(), self.horizon);
                super::capture_store(&d.state, portable, FAMILIES, move |store, groups, sink| {
                    let at = |kg| group_horizon(&restored, groups.first, kg, now);
                    Disk::encode(store, groups, at, sink)
                })
            }
        }
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        let restored = decode_keyed::<Millis>("dedup", state)?;
        let keys: Vec<&[u8]> = restored.iter().map(|(k, _)| k.as_slice()).collect();
        self.check_restored_keys(&keys)?;
        let ttl = self.ttl;
        match &mut self.seen {
            Seen::Memory(m) => {
                for (k, t) in restored {
                    m.remember(k, t, ttl);
                }
            }
            Seen::Disk(d) => {
                let mut writes: Vec<(u32, &[u8], Millis)> = restored
                    .iter()
                    .map(|(k, t)| (key_group(k, self.max_parallelism), k.as_slice(), *t))
                    .collect();
                d.remember(&mut writes)?;
            }
        }
        Ok(())
    }

    fn restore_disk(&mut self, fetched: Vec<Fetched>) -> Result<()> {
        // The empty store made at start closes before the restored one opens in its place.
        let place = match std::mem::replace(&mut self.seen, Seen::Memory(Memory::default())) {
            Seen::Disk(d) => d.state.place().clone(),
            memory @ Seen::Memory(_) => {
                self.seen = memory;
                return Err(super::disk_state_refused("dedup"));
            }
        };
        let state = DiskState::restore(place, FAMILIES, fetched)?;
        // Check the stored keys still decode as this job's key columns (a sample: the first
        // key of the range).
        if let Some(first) = state.store().scan(SEEN, state.groups())?.next() {
            let (_, key, _) = first?;
            self.check_restored_keys(&[key.as_slice()])?;
        }
        let mut disk = Disk::new(state);
        let first_group = disk.state.groups().first;
        for entry in disk.state.store().scan(HORIZONS, disk.state.groups())? {
            let (kg, _, v) = entry?;
            let h = from_ordered(&v).ok_or_else(|| corrupt("a stored horizon is not 8 bytes"))?;
            if let Some(slot) = kg
                .checked_sub(first_group)
                .and_then(|i| disk.restored.get_mut(i as usize))
            {
                *slot = Some(h);
            }
        }
        self.seen = Seen::Disk(disk);
        Ok(())
    }

    fn counters(&self) -> OperatorCounters {
        self.counters
    }
}
