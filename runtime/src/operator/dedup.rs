//! `dedup`: keep the first record of each key; drop later records of that key until `ttl`
//! of event time has passed since the first. A key is forgotten once the watermark passes
//! `first + ttl`, which bounds state by the key rate times the TTL.
//!
//! The keys seen live in memory ([`Memory`]) or, with the `disk` state backend, in a store on
//! local disk ([`Disk`]); both forget keys at the same watermarks and checkpoint a savepoint
//! in the same format, so a job can move between them through a savepoint.

use std::collections::{BTreeSet, HashMap};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMillisecondType;

use super::{
    Capture, Input, KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed,
};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::{KeyCodec, key_group};
use crate::state::disk::{DiskState, Fetched, Place, from_ordered, ordered};

/// The dedup operator of one subtask.
#[derive(Debug)]
pub struct Dedup {
    keys: KeyCodec,
    time_col: usize,
    ttl: Millis,
    max_parallelism: u32,
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
/// kept, family [`BY_TIME`] orders them by that time within each key group. Ordered by the
/// time seen, not by expiry, so that a restore with another `ttl` expires keys as the memory
/// backend does (it computes expiries from the time and the current `ttl`).
#[derive(Debug)]
struct Disk {
    state: DiskState,
    /// No key expires before this (a lower bound): watermarks below it need no scan.
    next_expiry: Millis,
}

const FAMILIES: &[&str] = &["seen", "by_time"];
const SEEN: usize = 0;
const BY_TIME: usize = 1;

fn time_key(time: Millis, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&ordered(time));
    k.extend_from_slice(key);
    k
}

fn corrupt(message: impl Into<String>) -> Error {
    Error::State {
        operator: "dedup".into(),
        message: message.into(),
    }
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
    fn first_seen(&self, kg: u32, key: &[u8]) -> Result<Option<Millis>> {
        match self.state.store().get(SEEN, kg, key)? {
            None => Ok(None),
            Some(v) => from_ordered(&v)
                .map(Some)
                .ok_or_else(|| corrupt("a stored time is not 8 bytes")),
        }
    }

    /// Write `rows` (key group, key, event time kept, the time it replaces).
    fn remember(
        &mut self,
        rows: &[(u32, Vec<u8>, Millis, Option<Millis>)],
        ttl: Millis,
    ) -> Result<()> {
        let mut batch = weir_state::Batch::default();
        for (kg, key, ts, old) in rows {
            if let Some(old) = old {
                batch.delete(BY_TIME, *kg, &time_key(*old, key));
            }
            batch.put(SEEN, *kg, key, &ordered(*ts));
            batch.put(BY_TIME, *kg, &time_key(*ts, key), &[]);
            self.next_expiry = self.next_expiry.min(ts.saturating_add(ttl));
        }
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.state.store().write(batch)?)
    }

    /// Forget every key whose expiry (time kept + `ttl`) is at or below `watermark`.
    fn expire(&mut self, watermark: Millis, ttl: Millis) -> Result<()> {
        if watermark < self.next_expiry {
            return Ok(());
        }
        let groups = self.state.groups();
        let mut next = Millis::MAX;
        for kg in groups.first..=groups.last {
            let mut batch = weir_state::Batch::default();
            for entry in self.state.store().scan_from(BY_TIME, kg, &[])? {
                let (k, _) = entry?;
                let time = from_ordered(&k).ok_or_else(|| corrupt("a short time key"))?;
                let expiry = time.saturating_add(ttl);
                if expiry > watermark {
                    next = next.min(expiry);
                    break;
                }
                batch.delete(BY_TIME, kg, &k);
                batch.delete(SEEN, kg, &k[8..]);
            }
            if !batch.is_empty() {
                self.state.store().write(batch)?;
            }
        }
        self.next_expiry = next;
        Ok(())
    }

    /// Every key kept, encoded per key group as the memory backend encodes it.
    fn encode(
        store: &weir_state::Store,
        groups: weir_state::KeyGroups,
        max_parallelism: u32,
    ) -> Result<KeyedState> {
        let mut entries: Vec<(Vec<u8>, Millis)> = Vec::new();
        for entry in store.scan(SEEN, groups)? {
            let (_, key, v) = entry?;
            entries.push((
                key,
                from_ordered(&v).ok_or_else(|| corrupt("a stored time is not 8 bytes"))?,
            ));
        }
        encode_keyed(
            "dedup",
            max_parallelism,
            entries.iter().map(|(k, t)| (k.as_slice(), *t)),
        )
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
            Some(place) => Seen::Disk(Disk {
                state: DiskState::create(place, FAMILIES)?,
                next_expiry: Millis::MAX,
            }),
        };
        Ok(Self {
            keys,
            time_col,
            ttl,
            max_parallelism,
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
        let ttl = self.ttl;
        let mut keep = Vec::with_capacity(batch.num_rows());
        match &mut self.seen {
            Seen::Memory(m) => {
                for row in 0..batch.num_rows() {
                    let key = rows.row(row);
                    let t = time(row);
                    let first = m.seen.get(key.as_ref()).copied();
                    let dup = first.is_some_and(|first| t < first.saturating_add(ttl));
                    if !dup {
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
                let stored = d
                    .state
                    .store()
                    .get_many(SEEN, &slots)?
                    .into_iter()
                    .map(|v| {
                        v.map(|v| {
                            from_ordered(&v).ok_or_else(|| corrupt("a stored time is not 8 bytes"))
                        })
                        .transpose()
                    })
                    .collect::<Result<Vec<Option<Millis>>>>()?;
                // Per slot: the time kept now, and whether the batch changed it.
                let mut now: Vec<(Option<Millis>, bool)> =
                    stored.iter().map(|t| (*t, false)).collect();
                for (row, &slot) in row_slots.iter().enumerate() {
                    let t = time(row);
                    let (first, changed) = &mut now[slot];
                    let dup = first.is_some_and(|first| t < first.saturating_add(ttl));
                    if !dup {
                        *first = Some(t);
                        *changed = true;
                    }
                    keep.push(!dup);
                }
                // The index entry to delete is the one of the time stored before the batch.
                let writes: Vec<(u32, Vec<u8>, Millis, Option<Millis>)> = slots
                    .iter()
                    .zip(&now)
                    .zip(&stored)
                    .filter_map(|(((kg, k), (t, changed)), old)| {
                        changed
                            .then(|| t.map(|t| (*kg, k.to_vec(), t, *old)))
                            .flatten()
                    })
                    .collect();
                d.remember(&writes, ttl)?;
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
                Ok(())
            }
            Seen::Disk(d) => d.expire(watermark, self.ttl),
        }
    }

    fn snapshot(&self) -> Result<KeyedState> {
        match &self.seen {
            Seen::Memory(m) => encode_keyed(
                "dedup",
                self.max_parallelism,
                m.seen.iter().map(|(k, t)| (k.as_slice(), *t)),
            ),
            Seen::Disk(d) => Disk::encode(d.state.store(), d.state.groups(), self.max_parallelism),
        }
    }

    fn capture(&self, portable: bool) -> Result<Capture> {
        match &self.seen {
            Seen::Memory(_) => {
                let state = self.snapshot()?;
                Ok(Capture::Keyed(Box::new(move || Ok(state))))
            }
            Seen::Disk(d) if portable => {
                let (checkpoint, store) = d.state.frozen(FAMILIES)?;
                let (groups, max_parallelism) = (d.state.groups(), self.max_parallelism);
                Ok(Capture::Keyed(Box::new(move || {
                    let encoded = Disk::encode(&store, groups, max_parallelism);
                    drop(store);
                    drop(checkpoint);
                    encoded
                })))
            }
            Seen::Disk(d) => Ok(Capture::Disk(d.state.capture()?)),
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
                let mut writes = Vec::new();
                for (k, t) in restored {
                    let kg = key_group(&k, self.max_parallelism);
                    let old = d.first_seen(kg, &k)?;
                    writes.push((kg, k, t, old));
                }
                d.remember(&writes, ttl)?;
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
        self.seen = Seen::Disk(Disk {
            state,
            // Unknown until a scan: the first watermark looks.
            next_expiry: Millis::MIN,
        });
        Ok(())
    }

    fn counters(&self) -> OperatorCounters {
        self.counters
    }
}
