//! One value per key on disk (the `disk` state backend), read and written a batch at a time:
//! the groups of an updating `GROUP BY` and the partitions of a top-N, when there are more of
//! them than memory holds (an aggregation per auction, a top-N per user).
//!
//! Family [`VALUES`] maps each key to what the memory backend's checkpoint holds of it, with
//! the event time of its newest row. A batch reads the keys it touches in one batched read
//! ([`KeyedStore::load`]) into the operator's own map; the operator's logic runs on it as in
//! memory, and [`KeyedStore::store`] writes them back (a key no longer in the map is deleted)
//! and empties the map, or, with write-back ([`KeyedStore::defer_writes`]), leaves them there
//! for the next batches until the map outgrows its share or a barrier comes
//! ([`KeyedStore::flush`]). With `stateTtl`, family
//! [`TIMERS`] orders (newest, key) within each key group, one per key, so that a watermark
//! finds the keys it expires by scanning each group's front. Family [`DUE`] orders (time, key)
//! for values complete at an event time (a window top-N's partitions), which a watermark
//! takes out whole ([`KeyedStore::fire`]).

use std::cell::{Cell, RefCell};

use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::key_group;
use crate::operator::{KeyedPieces, PieceSink};
use crate::state::disk::{DiskState, Family, Fetched, from_ordered, length_prefixed, ordered};

/// The store's families.
pub const FAMILIES: &[Family] = &[
    Family::kept("values"),
    Family::kept("timers"),
    Family::kept("due"),
    Family::kept("owned"),
];
const VALUES: usize = 0;
const TIMERS: usize = 1;
const DUE: usize = 2;
/// Entries a value owns, under its key [`length_prefixed`]: the values a `GROUP BY`'s group
/// holds (`group_by::held`), which the operator writes and which go with the value when it
/// expires ([`KeyedStore::owns`]).
pub const OWNED: usize = 3;

/// A time, then a key: a timer's or a due value's key.
fn timer_key(newest: Millis, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&ordered(newest));
    k.extend_from_slice(key);
    k
}

/// A stored key and its value.
pub type KeyAndValue = (Vec<u8>, Vec<u8>);

/// What the store holds of a key in the operator's map, and what is to write of it.
#[derive(Clone, Copy)]
struct Before {
    /// Stored at all.
    present: bool,
    /// Its newest row's event time, as stored.
    newest: Option<Millis>,
    /// The newest row's time since it was last written, if newer rows came.
    latest: Option<Millis>,
    /// Touched since it was last written.
    dirty: bool,
    /// Its stored size, as read or last written.
    size: usize,
}

/// Write-back: at most this many keys stay in the operator's map between batches.
const WRITE_BACK_KEYS: usize = 16_384;

/// Write-back: the share of the state memory budget the operator's map may hold between
/// batches, by the values' stored sizes. Decoded, a value takes several times its stored size
/// (a top-N row is two vectors, each its own allocation): at a sixty-fourth, q19's top-10 per
/// auction on disk peaked 41 MiB above its RSS without write-back, where a sixteenth added
/// 330 MiB.
const WRITE_BACK_SHARE: usize = 64;

/// One operator's values of one subtask in a store.
pub struct KeyedStore {
    /// The store.
    pub state: DiskState,
    /// The operator, for errors.
    operator: &'static str,
    max_parallelism: u32,
    /// `stateTtl`.
    ttl: Option<Millis>,
    /// No group expires before this watermark: lower ones need no scan.
    next_expiry: Cell<Millis>,
    /// No value is due before this watermark.
    next_due: Cell<Millis>,
    /// The keys in the operator's map, with what the store holds of them. A cell: a barrier
    /// writes them back through `&self` ([`Self::flush`]).
    before: RefCell<HashMap<Vec<u8>, Before>>,
    /// With write-back ([`Self::defer_writes`]), the bytes the operator's map may hold between
    /// batches, by the values' stored sizes.
    write_back: Option<usize>,
    /// The stored sizes of the values in the operator's map, as read or last written.
    cached_bytes: Cell<usize>,
    /// Values own entries in [`OWNED`]: expiry deletes them too.
    owns: bool,
}

impl KeyedStore {
    /// The values of `operator` in `state`, with `stateTtl` `ttl`.
    #[must_use]
    pub fn new(
        operator: &'static str,
        state: DiskState,
        max_parallelism: u32,
        ttl: Option<Millis>,
    ) -> Self {
        Self {
            state,
            operator,
            max_parallelism,
            next_due: Cell::new(Millis::MAX),
            ttl,
            next_expiry: Cell::new(Millis::MAX),
            before: RefCell::new(HashMap::new()),
            write_back: None,
            cached_bytes: Cell::new(0),
            owns: false,
        }
    }

    /// Values own entries in [`OWNED`] under their key: a value that expires takes them with
    /// it (one range delete).
    pub fn owns(&mut self) {
        self.owns = true;
    }

    /// Keep the values a batch touched in the operator's map after it, written back only when
    /// the map outgrows a sixty-fourth of the state memory budget (or 16 384 keys) and at each
    /// barrier ([`Self::flush`]): a hot group (a `count(DISTINCT)` set, a top-N partition) is
    /// then read and rewritten once per checkpoint, not once per batch. Only without
    /// `stateTtl` and for values never due (an updating `GROUP BY` or top-N), whose stored
    /// timers nothing scans between barriers.
    pub fn defer_writes(&mut self) {
        if self.ttl.is_none() {
            self.write_back = Some(self.state.place().budget.bytes() / WRITE_BACK_SHARE);
        }
    }

    /// This (empty) store replaced by one restored from the downloaded checkpoints
    /// `fetched`, at the same place: it closes before the restored one opens there.
    ///
    /// # Errors
    /// A checkpoint does not open or copy.
    pub fn restore(self, fetched: Vec<Fetched>) -> Result<Self> {
        let Self {
            state,
            operator,
            max_parallelism,
            ttl,
            write_back,
            owns,
            ..
        } = self;
        let place = state.place().clone();
        drop(state);
        let state = DiskState::restore(place, FAMILIES, fetched)?;
        let mut restored = Self::new(operator, state, max_parallelism, ttl);
        // Unknown until a scan: the first watermark looks.
        restored.next_expiry.set(Millis::MIN);
        restored.next_due.set(Millis::MIN);
        restored.write_back = write_back;
        restored.owns = owns;
        Ok(restored)
    }

    fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::State {
            operator: self.operator.into(),
            message: message.into(),
        }
    }

    /// A stored value: the operator's and the event time of its key's newest row.
    ///
    /// # Errors
    /// It does not decode.
    pub fn decode<G: DeserializeOwned>(&self, v: &[u8]) -> Result<(G, Option<Millis>)> {
        decode(self.operator, v)
    }

    /// Read the values of `keys` (distinct) into `groups`, those not there already.
    ///
    /// # Errors
    /// The store's read fails, or a value does not decode.
    pub fn load<G: DeserializeOwned>(
        &mut self,
        keys: &[&[u8]],
        groups: &mut HashMap<Vec<u8>, G>,
    ) -> Result<()> {
        let before = self.before.get_mut();
        let mut at: Vec<(u32, &[u8])> = Vec::with_capacity(keys.len());
        for k in keys {
            match before.get_mut(*k) {
                Some(b) => b.dirty = true,
                None => at.push((key_group(k, self.max_parallelism), *k)),
            }
        }
        let stored = self.state.store().get_many(VALUES, &at)?;
        let mut read = 0;
        for ((_, key), v) in at.iter().zip(stored) {
            let mut b = Before {
                present: false,
                newest: None,
                latest: None,
                dirty: true,
                size: 0,
            };
            if let Some(v) = v {
                let (g, newest) = decode::<G>(self.operator, &v)?;
                groups.insert(key.to_vec(), g);
                (b.present, b.newest, b.size) = (true, newest, v.len());
                read += v.len();
            }
            before.insert(key.to_vec(), b);
        }
        self.cached_bytes.set(self.cached_bytes.get() + read);
        Ok(())
    }

    /// The end of a batch: `newest` holds the time of each touched key's newest row. Writes
    /// the touched values back (those no longer in `groups` are deleted) and empties `groups`,
    /// unless write-back keeps them there ([`Self::defer_writes`]) and they fit. A key new to
    /// the store is due at `due(value)`, if that gives a time.
    ///
    /// # Errors
    /// A value does not encode, or the write fails.
    pub fn store<G: Serialize>(
        &mut self,
        groups: &mut HashMap<Vec<u8>, G>,
        newest: &HashMap<&[u8], Millis>,
        due: impl Fn(&G) -> Option<Millis>,
    ) -> Result<()> {
        let before = self.before.get_mut();
        for (key, t) in newest {
            if let Some(b) = before.get_mut(*key) {
                b.latest = b.latest.max(Some(*t));
            }
        }
        let keys = before.len();
        let fits = |limit: usize| keys <= WRITE_BACK_KEYS && self.cached_bytes.get() <= limit;
        if self.write_back.is_some_and(fits) {
            return Ok(());
        }
        self.flush(groups, due)?;
        groups.clear();
        self.before.get_mut().clear();
        self.cached_bytes.set(0);
        Ok(())
    }

    /// Write every value touched since it was last written, from `groups` (the operator's
    /// map; a touched key not in it is deleted), so that the store holds all state: before a
    /// barrier's capture, and whenever [`Self::store`] empties the map.
    ///
    /// # Errors
    /// A value does not encode, or the write fails.
    pub fn flush<G: Serialize>(
        &self,
        groups: &HashMap<Vec<u8>, G>,
        due: impl Fn(&G) -> Option<Millis>,
    ) -> Result<()> {
        let mut before = self.before.borrow_mut();
        let mut batch = weir_state::Batch::default();
        let mut gone = Vec::new();
        let mut cached = self.cached_bytes.get();
        let timer = |t: Option<Millis>| t.filter(|_| self.ttl.is_some());
        for (key, b) in before.iter_mut().filter(|(_, b)| b.dirty) {
            let kg = key_group(key, self.max_parallelism);
            let now = b.latest.max(b.newest);
            match groups.get(key) {
                Some(g) => {
                    let value = self.encode(g, now)?;
                    cached = cached.saturating_sub(b.size) + value.len();
                    b.size = value.len();
                    batch.put(VALUES, kg, key, &value);
                    if let Some(t) = due(g).filter(|_| !b.present) {
                        batch.put(DUE, kg, &timer_key(t, key), &[]);
                        self.next_due.set(self.next_due.get().min(t));
                    }
                    if timer(now) != timer(b.newest) {
                        if let Some(t) = timer(b.newest) {
                            batch.delete(TIMERS, kg, &timer_key(t, key));
                        }
                        if let (Some(t), Some(ttl)) = (timer(now), self.ttl) {
                            batch.put(TIMERS, kg, &timer_key(t, key), &[]);
                            let at = t.saturating_add(ttl);
                            self.next_expiry.set(self.next_expiry.get().min(at));
                        }
                    }
                    b.present = true;
                }
                None => {
                    if b.present {
                        batch.delete(VALUES, kg, key);
                        if let Some(t) = timer(b.newest) {
                            batch.delete(TIMERS, kg, &timer_key(t, key));
                        }
                    }
                    cached = cached.saturating_sub(b.size);
                    gone.push(key.clone());
                }
            }
            (b.newest, b.latest, b.dirty) = (now, None, false);
        }
        for key in gone {
            before.remove(&key);
        }
        self.cached_bytes.set(cached);
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.state.store().write(batch)?)
    }

    fn encode<G: Serialize>(&self, g: &G, newest: Option<Millis>) -> Result<Vec<u8>> {
        postcard::to_stdvec(&(g, newest)).map_err(|e| self.corrupt(e.to_string()))
    }

    /// Put restored values (from a savepoint, or a checkpoint of the memory backend) into the
    /// store, each with its newest row's time, due as [`Self::store`] says. Before any batch:
    /// the operator's map is empty.
    ///
    /// # Errors
    /// As [`Self::store`].
    pub fn put_all<G: Serialize>(
        &mut self,
        restored: impl Iterator<Item = (Vec<u8>, G, Option<Millis>)>,
        due: impl Fn(&G) -> Option<Millis>,
    ) -> Result<()> {
        let mut groups = HashMap::new();
        let before = self.before.get_mut();
        for (key, g, t) in restored {
            before.insert(
                key.clone(),
                Before {
                    present: false,
                    newest: None,
                    latest: t,
                    dirty: true,
                    size: 0,
                },
            );
            groups.insert(key, g);
        }
        self.flush(&groups, due)?;
        self.before.get_mut().clear();
        self.cached_bytes.set(0);
        Ok(())
    }

    /// Delete the values whose newest row is `ttl` or more behind `watermark` (with what they
    /// own); how many.
    ///
    /// # Errors
    /// The store's read or write fails.
    pub fn expire(&mut self, watermark: Millis) -> Result<usize> {
        let Some(ttl) = self.ttl else {
            return Ok(0);
        };
        if watermark < self.next_expiry.get() {
            return Ok(0);
        }
        let mut expired = 0;
        let groups = self.state.groups();
        let store = self.state.store();
        let mut next = Millis::MAX;
        for kg in groups.first..=groups.last {
            let mut batch = weir_state::Batch::default();
            for entry in store.scan_from(TIMERS, kg, &[])? {
                let (k, _) = entry?;
                let short = || self.corrupt("a stored timer is cut short");
                let t = from_ordered(&k).ok_or_else(short)?;
                let at = t.saturating_add(ttl);
                if at > watermark {
                    next = next.min(at);
                    break;
                }
                let key = k.get(8..).ok_or_else(short)?;
                batch.delete(VALUES, kg, key);
                batch.delete(TIMERS, kg, &k);
                if self.owns {
                    batch.delete_prefix(OWNED, kg, &length_prefixed(key, 0));
                }
                expired += 1;
            }
            if !batch.is_empty() {
                store.write(batch)?;
            }
        }
        self.next_expiry.set(next);
        Ok(expired)
    }

    /// Take out every value due at or before `watermark`: (its time, key, value), in order of
    /// time then key.
    ///
    /// # Errors
    /// The store's read or write fails, or a value does not decode.
    pub fn fire<G: DeserializeOwned>(
        &mut self,
        watermark: Millis,
    ) -> Result<Vec<(Millis, Vec<u8>, G)>> {
        if watermark < self.next_due.get() {
            return Ok(Vec::new());
        }
        let groups = self.state.groups();
        let store = self.state.store();
        let mut next = Millis::MAX;
        let mut fired = Vec::new();
        for kg in groups.first..=groups.last {
            let mut batch = weir_state::Batch::default();
            for entry in store.scan_from(DUE, kg, &[])? {
                let (k, _) = entry?;
                let short = || self.corrupt("a stored due time is cut short");
                let t = from_ordered(&k).ok_or_else(short)?;
                if t > watermark {
                    next = next.min(t);
                    break;
                }
                let key = k.get(8..).ok_or_else(short)?;
                batch.delete(DUE, kg, &k);
                if let Some(v) = store.get(VALUES, kg, key)? {
                    let (g, newest) = self.decode::<G>(&v)?;
                    batch.delete(VALUES, kg, key);
                    if let Some(n) = newest.filter(|_| self.ttl.is_some()) {
                        batch.delete(TIMERS, kg, &timer_key(n, key));
                    }
                    fired.push((t, key.to_vec(), g));
                }
            }
            if !batch.is_empty() {
                store.write(batch)?;
            }
        }
        self.next_due.set(next);
        fired.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(fired)
    }

    /// Every value in `store`, streamed per key group as the memory backend encodes it: each
    /// stored `(value, newest)` of key `key` in key group `kg` as `as_memory(kg, key, value,
    /// newest)` makes it.
    ///
    /// # Errors
    /// The store's read fails, or a value does not decode or encode; what `sink` or
    /// `as_memory` returns.
    pub fn encode_store<G, T>(
        operator: &str,
        store: &weir_state::Store,
        groups: weir_state::KeyGroups,
        as_memory: impl Fn(u32, &[u8], G, Option<Millis>) -> Result<T>,
        sink: PieceSink<'_>,
    ) -> Result<()>
    where
        G: DeserializeOwned,
        T: Serialize,
    {
        let mut pieces = KeyedPieces::new(operator, sink);
        for entry in store.scan(VALUES, groups)? {
            let (kg, key, v) = entry?;
            let (g, newest) = decode::<G>(operator, &v)?;
            pieces.push(kg, &key, &as_memory(kg, &key, g, newest)?)?;
        }
        pieces.finish()
    }

    /// The first stored key and value, if any: a sample to check a restored store against
    /// the job.
    ///
    /// # Errors
    /// The store's read fails.
    pub fn sample(&self) -> Result<Option<KeyAndValue>> {
        let store = self.state.store();
        let first = store.scan(VALUES, self.state.groups())?.next();
        Ok(first.transpose()?.map(|(_, k, v)| (k, v)))
    }

    /// How many values are stored (tests).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.count_in(VALUES)
    }

    /// How many entries values own are stored (tests).
    #[cfg(test)]
    pub fn owned_count(&self) -> usize {
        self.count_in(OWNED)
    }

    #[cfg(test)]
    fn count_in(&self, family: usize) -> usize {
        self.state
            .store()
            .scan(family, self.state.groups())
            .map_or(0, Iterator::count)
    }
}

fn decode<G: DeserializeOwned>(operator: &str, v: &[u8]) -> Result<(G, Option<Millis>)> {
    postcard::from_bytes(v).map_err(|e| Error::State {
        operator: operator.into(),
        message: format!("a stored value does not decode: {e}"),
    })
}
