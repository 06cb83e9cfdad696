//! A join's kept rows on disk (the `disk` state backend), for joins whose sides outgrow
//! memory: a regular join of two tables, or an interval join over a long bound.
//!
//! Families [`LEFT`] and [`RIGHT`] hold each side's rows under (key, sequence number): a
//! key's rows are one prefix scan, in arrival order as in memory. Family [`TIMERS`] orders
//! (expiry, side, key, sequence number) within each key group, so that a watermark finds the
//! rows it expires by scanning each group's front, as windows find what they fire. Family
//! [`META`] holds the next sequence number at the last checkpoint, under every key group of
//! the subtask, so that after a restore (at any parallelism) no new row of a key takes a
//! number one of its restored rows has.
//!
//! A batch reads the keys it needs once ([`DiskSides::load`]), changes them in memory
//! ([`Loaded`]) and writes what changed in one write ([`DiskSides::flush`]).

use foldhash::{HashMap, HashMapExt};

use super::{Expiry, Kept};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::key_group;
use crate::operator::{KeyedPieces, PieceSink};
use crate::state::disk::{
    DiskState, Family, from_ordered, length_prefixed, ordered, split_length_prefixed,
};

pub(super) const FAMILIES: &[Family] = &[
    Family::kept("left"),
    Family::kept("right"),
    Family::kept("timers"),
    Family::kept("meta"),
];
/// Each side's family is its index: [`LEFT`] is 0, [`RIGHT`] 1.
const LEFT: usize = 0;
const RIGHT: usize = 1;
const TIMERS: usize = 2;
const META: usize = 3;

fn corrupt(message: impl Into<String>) -> Error {
    Error::State {
        operator: "join".into(),
        message: message.into(),
    }
}

/// Deletes per write when a scan drops many rows: bounded memory, few writes.
const CHUNK: usize = 4096;

/// A row's key in its side's family.
fn row_key(key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = length_prefixed(key, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn split_row_key(k: &[u8]) -> Result<(&[u8], u64)> {
    let short = || corrupt("a stored row key is cut short");
    let (key, rest) = split_length_prefixed(k).ok_or_else(short)?;
    let seq: [u8; 8] = rest.try_into().map_err(|_| short())?;
    Ok((key, u64::from_be_bytes(seq)))
}

fn timer_key(at: Millis, side: usize, key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 1 + 4 + key.len() + 8);
    k.extend_from_slice(&ordered(at));
    k.push(u8::from(side == RIGHT));
    k.extend_from_slice(&row_key(key, seq));
    k
}

/// (expiry, side, key, sequence number) of a timer.
fn split_timer_key(k: &[u8]) -> Result<(Millis, usize, &[u8], u64)> {
    let short = || corrupt("a stored timer is cut short");
    let at = from_ordered(k).ok_or_else(short)?;
    let side = match k.get(8) {
        Some(0) => LEFT,
        Some(1) => RIGHT,
        _ => return Err(short()),
    };
    let (key, seq) = split_row_key(k.get(9..).ok_or_else(short)?)?;
    Ok((at, side, key, seq))
}

fn decode(v: &[u8]) -> Result<Kept> {
    postcard::from_bytes(v).map_err(|e| corrupt(format!("a stored row does not decode: {e}")))
}

fn encode(kept: &Kept) -> Result<Vec<u8>> {
    postcard::to_stdvec(kept).map_err(|e| corrupt(e.to_string()))
}

/// A stored key and one of its rows.
pub(super) type KeyAndRow = (Vec<u8>, Vec<u8>);

/// One key's rows of one side as a batch read them, and what it did to them.
struct Loaded {
    kg: u32,
    /// In arrival order, with each one's sequence number.
    rows: Vec<Kept>,
    seqs: Vec<u64>,
    /// Rows whose partner count changed.
    dirty: Vec<bool>,
    /// Rows taken away: (sequence number, event time).
    gone: Vec<(u64, Millis)>,
}

/// Both sides' rows of one subtask in a store.
pub(super) struct DiskSides {
    pub(super) state: DiskState,
    expiry: Expiry,
    max_parallelism: u32,
    /// The next row's sequence number.
    next_seq: u64,
    /// No row expires before this: watermarks below it need no scan.
    next_expiry: Millis,
    /// Keys read since the last flush, per side.
    loaded: [HashMap<Vec<u8>, Loaded>; 2],
    /// Rows kept since the last flush: (side, key, row, expiry).
    added: Vec<(usize, Vec<u8>, Kept, Option<Millis>)>,
}

impl DiskSides {
    pub(super) fn new(state: DiskState, expiry: Expiry, max_parallelism: u32) -> Self {
        Self {
            state,
            expiry,
            max_parallelism,
            next_seq: 0,
            next_expiry: Millis::MAX,
            loaded: [HashMap::new(), HashMap::new()],
            added: Vec::new(),
        }
    }

    /// A store restored from checkpoints: the sequence numbers go on after the highest any
    /// former subtask had handed out.
    pub(super) fn restored(state: DiskState, expiry: Expiry, max_parallelism: u32) -> Result<Self> {
        let mut next_seq = 0;
        for entry in state.store().scan(META, state.groups())? {
            let (_, _, v) = entry?;
            let v: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("a stored sequence number is not 8 bytes"))?;
            next_seq = next_seq.max(u64::from_be_bytes(v));
        }
        Ok(Self {
            next_seq,
            // Unknown until a scan: the first watermark looks.
            next_expiry: Millis::MIN,
            ..Self::new(state, expiry, max_parallelism)
        })
    }

    /// Read the rows of `keys` of `side` (those not read since the last flush), for
    /// [`Self::get`], [`Self::get_mut`] and [`Self::remove`].
    pub(super) fn load<'k>(
        &mut self,
        side: usize,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> Result<()> {
        let store = self.state.store();
        for key in keys {
            if self.loaded[side].contains_key(key) {
                continue;
            }
            let kg = key_group(key, self.max_parallelism);
            let (mut rows, mut seqs) = (Vec::new(), Vec::new());
            for entry in store.scan_prefix(side, kg, &length_prefixed(key, 0))? {
                let (k, v) = entry?;
                seqs.push(split_row_key(&k)?.1);
                rows.push(decode(&v)?);
            }
            let dirty = vec![false; rows.len()];
            self.loaded[side].insert(
                key.to_vec(),
                Loaded {
                    kg,
                    rows,
                    seqs,
                    dirty,
                    gone: Vec::new(),
                },
            );
        }
        Ok(())
    }

    /// `key`'s rows of `side`, if [`Self::load`] read it and it has any.
    pub(super) fn get(&self, side: usize, key: &[u8]) -> Option<&[Kept]> {
        self.loaded[side]
            .get(key)
            .map(|l| l.rows.as_slice())
            .filter(|r| !r.is_empty())
    }

    /// Row `k` of `key`'s rows of `side`, to change its partner count.
    pub(super) fn get_mut(&mut self, side: usize, key: &[u8], k: usize) -> Option<&mut Kept> {
        let l = self.loaded[side].get_mut(key)?;
        *l.dirty.get_mut(k)? = true;
        l.rows.get_mut(k)
    }

    /// Take one row equal to `row` away from `key`'s of `side`.
    pub(super) fn remove(&mut self, side: usize, key: &[u8], row: &[u8]) -> Option<Kept> {
        let l = self.loaded[side].get_mut(key)?;
        let i = l.rows.iter().position(|k| k.row == row)?;
        let kept = l.rows.remove(i);
        l.dirty.remove(i);
        l.gone.push((l.seqs.remove(i), kept.time));
        Some(kept)
    }

    /// Keep `kept` under `key` of `side`, to expire at `at`. Not visible to [`Self::get`]
    /// before the flush: a batch joins its rows with the other side's only.
    pub(super) fn push(&mut self, side: usize, key: &[u8], kept: Kept, at: Option<Millis>) {
        self.added.push((side, key.to_vec(), kept, at));
    }

    /// Write what the batch changed, and forget what it read.
    pub(super) fn flush(&mut self) -> Result<()> {
        let mut batch = weir_state::Batch::default();
        for (side, loaded) in self.loaded.iter_mut().enumerate() {
            for (key, l) in loaded.drain() {
                for (seq, time) in l.gone {
                    batch.delete(side, l.kg, &row_key(&key, seq));
                    if let Some(at) = self.expiry.at(side, time) {
                        batch.delete(TIMERS, l.kg, &timer_key(at, side, &key, seq));
                    }
                }
                for ((kept, seq), dirty) in l.rows.iter().zip(&l.seqs).zip(&l.dirty) {
                    if *dirty {
                        batch.put(side, l.kg, &row_key(&key, *seq), &encode(kept)?);
                    }
                }
            }
        }
        for (side, key, kept, at) in self.added.drain(..) {
            let (kg, seq) = (key_group(&key, self.max_parallelism), self.next_seq);
            self.next_seq += 1;
            batch.put(side, kg, &row_key(&key, seq), &encode(&kept)?);
            if let Some(at) = at {
                batch.put(TIMERS, kg, &timer_key(at, side, &key, seq), &[]);
                self.next_expiry = self.next_expiry.min(at);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.state.store().write(batch)?)
    }

    /// Drop every row that `watermark` expires, returning each side's that `wanted` picks
    /// (an outer side's unmatched rows, to pad). Streams, as [`Self::take`] does: at the end
    /// of event time every row expires at once.
    pub(super) fn expire(
        &mut self,
        watermark: Millis,
        wanted: impl Fn(usize, &Kept) -> bool,
    ) -> Result<[Vec<Kept>; 2]> {
        let mut gone = [Vec::new(), Vec::new()];
        if watermark < self.next_expiry {
            return Ok(gone);
        }
        let groups = self.state.groups();
        let store = self.state.store();
        let mut next = Millis::MAX;
        let mut batch = weir_state::Batch::default();
        for kg in groups.first..=groups.last {
            for entry in store.scan_from(TIMERS, kg, &[])? {
                let (k, _) = entry?;
                let (at, side, key, seq) = split_timer_key(&k)?;
                if at > watermark {
                    next = next.min(at);
                    break;
                }
                let rk = row_key(key, seq);
                let row = store
                    .get(side, kg, &rk)?
                    .ok_or_else(|| corrupt("a timer without its row"))?;
                batch.delete(TIMERS, kg, &k);
                batch.delete(side, kg, &rk);
                if batch.len() >= CHUNK {
                    store.write(std::mem::take(&mut batch))?;
                }
                let kept = decode(&row)?;
                if wanted(side, &kept) {
                    gone[side].push(kept);
                }
            }
        }
        if !batch.is_empty() {
            store.write(batch)?;
        }
        self.next_expiry = next;
        Ok(gone)
    }

    /// Drop every row of `side`, returning those `wanted` picks (an outer side's unmatched
    /// rows, to pad). Streams: a side can be far larger than memory, so the deletes go out
    /// in bounded writes, and only the rows picked are held.
    pub(super) fn take(
        &mut self,
        side: usize,
        wanted: impl Fn(&Kept) -> bool,
    ) -> Result<Vec<Kept>> {
        let store = self.state.store();
        let mut taken = Vec::new();
        let mut batch = weir_state::Batch::default();
        for entry in store.scan(side, self.state.groups())? {
            let (kg, k, v) = entry?;
            let kept = decode(&v)?;
            batch.delete(side, kg, &k);
            if batch.len() >= CHUNK {
                store.write(std::mem::take(&mut batch))?;
            }
            if wanted(&kept) {
                taken.push(kept);
            }
        }
        // The side's timers, found by scanning rather than worked out from each row: a row
        // bound ([`super::RowBound`]) set them by a column the stored row does not expose.
        for entry in store.scan(TIMERS, self.state.groups())? {
            let (kg, k, _) = entry?;
            if split_timer_key(&k)?.1 == side {
                batch.delete(TIMERS, kg, &k);
                if batch.len() >= CHUNK {
                    store.write(std::mem::take(&mut batch))?;
                }
            }
        }
        if !batch.is_empty() {
            store.write(batch)?;
        }
        Ok(taken)
    }

    /// Record the next sequence number under every key group, for the checkpoint about to be
    /// taken.
    pub(super) fn mark(&self) -> Result<()> {
        let groups = self.state.groups();
        let mut batch = weir_state::Batch::default();
        for kg in groups.first..=groups.last {
            batch.put(META, kg, &[], &self.next_seq.to_be_bytes());
        }
        Ok(self.state.store().write(batch)?)
    }

    /// Every kept row, streamed per key group as the memory backend encodes it: each key with
    /// its left rows and its right rows. Both sides' scans are in (key group, key) order, so
    /// they merge one key at a time: memory is one key's rows.
    pub(super) fn encode_store(
        store: &weir_state::Store,
        groups: weir_state::KeyGroups,
        sink: PieceSink<'_>,
    ) -> Result<()> {
        let mut pieces = KeyedPieces::new("join", sink);
        let mut sides = [
            KeyRows::new(store.scan(LEFT, groups)?),
            KeyRows::new(store.scan(RIGHT, groups)?),
        ];
        let mut heads = [sides[0].next()?, sides[1].next()?];
        loop {
            let take = match (order(&heads[0]), order(&heads[1])) {
                (None, None) => break,
                (Some(_), None) => [true, false],
                (None, Some(_)) => [false, true],
                (Some(a), Some(b)) => [a <= b, b <= a],
            };
            let mut key = None;
            let mut both: [Vec<Kept>; 2] = [Vec::new(), Vec::new()];
            for side in [LEFT, RIGHT] {
                if take[side] {
                    if let Some((kg, k, rows)) = heads[side].take() {
                        key = Some((kg, k));
                        both[side] = rows;
                    }
                    heads[side] = sides[side].next()?;
                }
            }
            if let Some((kg, k)) = key {
                let [left, right] = both;
                pieces.push(kg, &k, &(left, right))?;
            }
        }
        pieces.finish()
    }

    /// The first stored (key, row) of each side: a sample to check a restored store against
    /// the job.
    pub(super) fn sample(&self) -> Result<[Option<KeyAndRow>; 2]> {
        let mut first = [None, None];
        for side in [LEFT, RIGHT] {
            if let Some(entry) = self.state.store().scan(side, self.state.groups())?.next() {
                let (_, k, v) = entry?;
                first[side] = Some((split_row_key(&k)?.0.to_vec(), decode(&v)?.row));
            }
        }
        Ok(first)
    }

    /// How many rows of `side` are kept (tests).
    #[cfg(test)]
    pub(super) fn count(&self, side: usize) -> usize {
        self.state
            .store()
            .scan(side, self.state.groups())
            .map_or(0, Iterator::count)
    }
}

/// A key (its key group and bytes) with rows of one side.
type RowsOfKey = (u32, Vec<u8>, Vec<Kept>);

/// Where `head` sorts in the store: by key group, then by the length-prefixed key.
fn order(head: &Option<RowsOfKey>) -> Option<(u32, usize, &[u8])> {
    head.as_ref().map(|(kg, k, _)| (*kg, k.len(), k.as_slice()))
}

/// The rows of one side's scan gathered per key, in the scan's order.
struct KeyRows<I> {
    scan: I,
    /// The first row of the next key, read while finding the end of the previous one.
    pending: Option<(u32, Vec<u8>, Kept)>,
}

impl<I: Iterator<Item = weir_state::Result<weir_state::Entry>>> KeyRows<I> {
    fn new(scan: I) -> Self {
        Self {
            scan,
            pending: None,
        }
    }

    fn row(&mut self) -> Result<Option<(u32, Vec<u8>, Kept)>> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        let Some(entry) = self.scan.next() else {
            return Ok(None);
        };
        let (kg, k, v) = entry?;
        let (key, _) = split_row_key(&k)?;
        Ok(Some((kg, key.to_vec(), decode(&v)?)))
    }

    /// The next key (key group, key) with all its rows.
    fn next(&mut self) -> Result<Option<RowsOfKey>> {
        let Some((kg, key, first)) = self.row()? else {
            return Ok(None);
        };
        let mut rows = vec![first];
        while let Some((g, k, kept)) = self.row()? {
            if g != kg || k != key {
                self.pending = Some((g, k, kept));
                break;
            }
            rows.push(kept);
        }
        Ok(Some((kg, key, rows)))
    }
}
