//! An updating `GROUP BY`'s groups on disk (the `disk` state backend), for more groups than
//! memory holds: a regular aggregation per auction, per user, per session id.
//!
//! Family [`GROUPS`] maps each group's key to what the memory backend's checkpoint holds of
//! it, with the event time of its newest row: `(accumulators, newest)` over inserts,
//! `(Group, newest)` over a changelog. A batch reads the groups it touches in one batched
//! read into the operator's maps, which then hold only that batch's groups; the operator's
//! logic runs on them as in memory, and [`DiskGroups::store`] writes them back and empties the
//! maps. With `stateTtl`, family [`TIMERS`] orders (newest, key) within each key group, one per
//! group, so that a watermark finds the groups it expires by scanning each group's front.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::key_group;
use crate::operator::{KeyedState, encode_keyed};
use crate::state::disk::{DiskState, Family, from_ordered, ordered};

pub(super) const FAMILIES: &[Family] = &[Family::kept("groups"), Family::kept("timers")];
const GROUPS: usize = 0;
const TIMERS: usize = 1;

fn corrupt(message: impl Into<String>) -> Error {
    Error::State {
        operator: super::NAME.into(),
        message: message.into(),
    }
}

fn timer_key(newest: Millis, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&ordered(newest));
    k.extend_from_slice(key);
    k
}

/// A stored group: its state and the event time of its newest row.
pub(super) fn decode<G: DeserializeOwned>(v: &[u8]) -> Result<(G, Option<Millis>)> {
    postcard::from_bytes(v).map_err(|e| corrupt(format!("a stored group does not decode: {e}")))
}

fn encode<G: Serialize>(g: &G, newest: Option<Millis>) -> Result<Vec<u8>> {
    postcard::to_stdvec(&(g, newest)).map_err(|e| corrupt(e.to_string()))
}

/// A stored key and its value.
pub(super) type KeyAndValue = (Vec<u8>, Vec<u8>);

/// What the store held of a group the batch read.
#[derive(Clone, Copy)]
struct Before {
    /// Stored at all.
    present: bool,
    /// Its newest row's event time.
    newest: Option<Millis>,
}

/// The groups of one subtask in a store.
pub(super) struct DiskGroups {
    pub(super) state: DiskState,
    max_parallelism: u32,
    /// `stateTtl`.
    ttl: Option<Millis>,
    /// No group expires before this watermark: lower ones need no scan.
    next_expiry: Millis,
    /// The groups the current batch read, as stored.
    before: HashMap<Vec<u8>, Before>,
}

impl DiskGroups {
    pub(super) fn new(state: DiskState, max_parallelism: u32, ttl: Option<Millis>) -> Self {
        Self {
            state,
            max_parallelism,
            ttl,
            next_expiry: Millis::MAX,
            before: HashMap::new(),
        }
    }

    /// A store restored from checkpoints.
    pub(super) fn restored(state: DiskState, max_parallelism: u32, ttl: Option<Millis>) -> Self {
        Self {
            // Unknown until a scan: the first watermark looks.
            next_expiry: Millis::MIN,
            ..Self::new(state, max_parallelism, ttl)
        }
    }

    /// Read the groups of `keys` (distinct) into `groups`.
    pub(super) fn load<G: DeserializeOwned>(
        &mut self,
        keys: &[&[u8]],
        groups: &mut HashMap<Vec<u8>, G>,
    ) -> Result<()> {
        let at: Vec<(u32, &[u8])> = keys
            .iter()
            .map(|k| (key_group(k, self.max_parallelism), *k))
            .collect();
        let stored = self.state.store().get_many(GROUPS, &at)?;
        for (key, v) in keys.iter().zip(stored) {
            let before = match v {
                Some(v) => {
                    let (g, newest) = decode::<G>(&v)?;
                    groups.insert(key.to_vec(), g);
                    Before {
                        present: true,
                        newest,
                    }
                }
                None => Before {
                    present: false,
                    newest: None,
                },
            };
            self.before.insert(key.to_vec(), before);
        }
        Ok(())
    }

    /// Write back the groups the batch read (those no longer in `groups` are deleted), each
    /// with its newest row's time (`newest`: the batch's, per key), and empty `groups`.
    pub(super) fn store<G: Serialize>(
        &mut self,
        groups: &mut HashMap<Vec<u8>, G>,
        newest: &HashMap<&[u8], Millis>,
    ) -> Result<()> {
        let mut batch = weir_state::Batch::default();
        for (key, before) in self.before.drain() {
            let kg = key_group(&key, self.max_parallelism);
            let now = newest.get(key.as_slice()).copied().max(before.newest);
            let timer = |t: Option<Millis>| t.filter(|_| self.ttl.is_some());
            match groups.remove(&key) {
                Some(g) => {
                    batch.put(GROUPS, kg, &key, &encode(&g, now)?);
                    if timer(now) != timer(before.newest) {
                        if let Some(t) = timer(before.newest) {
                            batch.delete(TIMERS, kg, &timer_key(t, &key));
                        }
                        if let (Some(t), Some(ttl)) = (timer(now), self.ttl) {
                            batch.put(TIMERS, kg, &timer_key(t, &key), &[]);
                            self.next_expiry = self.next_expiry.min(t.saturating_add(ttl));
                        }
                    }
                }
                None if before.present => {
                    batch.delete(GROUPS, kg, &key);
                    if let Some(t) = timer(before.newest) {
                        batch.delete(TIMERS, kg, &timer_key(t, &key));
                    }
                }
                None => {}
            }
        }
        groups.clear();
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.state.store().write(batch)?)
    }

    /// Put restored groups (from a savepoint, or a checkpoint of the memory backend) into the
    /// store, each with its newest row's time.
    pub(super) fn put_all<G: Serialize>(
        &mut self,
        restored: impl Iterator<Item = (Vec<u8>, G, Option<Millis>)>,
    ) -> Result<()> {
        let mut groups = HashMap::new();
        let mut newest = HashMap::new();
        for (key, g, t) in restored {
            self.before.insert(
                key.clone(),
                Before {
                    present: false,
                    newest: None,
                },
            );
            if let Some(t) = t {
                newest.insert(key.clone(), t);
            }
            groups.insert(key, g);
        }
        let newest = newest.iter().map(|(k, t)| (k.as_slice(), *t)).collect();
        self.store(&mut groups, &newest)
    }

    /// Delete the groups whose newest row is `ttl` or more behind `watermark`.
    pub(super) fn expire(&mut self, watermark: Millis) -> Result<()> {
        let Some(ttl) = self.ttl else {
            return Ok(());
        };
        if watermark < self.next_expiry {
            return Ok(());
        }
        let groups = self.state.groups();
        let store = self.state.store();
        let mut next = Millis::MAX;
        for kg in groups.first..=groups.last {
            let mut batch = weir_state::Batch::default();
            for entry in store.scan_from(TIMERS, kg, &[])? {
                let (k, _) = entry?;
                let t = from_ordered(&k).ok_or_else(|| corrupt("a stored timer is cut short"))?;
                let at = t.saturating_add(ttl);
                if at > watermark {
                    next = next.min(at);
                    break;
                }
                let key = k
                    .get(8..)
                    .ok_or_else(|| corrupt("a stored timer is cut short"))?;
                batch.delete(GROUPS, kg, key);
                batch.delete(TIMERS, kg, &k);
            }
            if !batch.is_empty() {
                store.write(batch)?;
            }
        }
        self.next_expiry = next;
        Ok(())
    }

    /// Every group in `store`, encoded per key group as the memory backend encodes it: each
    /// stored `(state, newest)` as `as_memory` makes it.
    pub(super) fn encode_store<G, T>(
        store: &weir_state::Store,
        groups: weir_state::KeyGroups,
        max_parallelism: u32,
        as_memory: impl Fn(G, Option<Millis>) -> T,
    ) -> Result<KeyedState>
    where
        G: DeserializeOwned,
        T: Serialize,
    {
        let mut all: Vec<(Vec<u8>, T)> = Vec::new();
        for entry in store.scan(GROUPS, groups)? {
            let (_, key, v) = entry?;
            let (g, newest) = decode::<G>(&v)?;
            all.push((key, as_memory(g, newest)));
        }
        encode_keyed(
            super::NAME,
            max_parallelism,
            all.iter().map(|(k, t)| (k.as_slice(), t)),
        )
    }

    /// The first stored group (key and value), if any: a sample to check a restored store
    /// against the job.
    pub(super) fn sample(&self) -> Result<Option<KeyAndValue>> {
        let store = self.state.store();
        let first = store.scan(GROUPS, self.state.groups())?.next();
        Ok(first.transpose()?.map(|(_, k, v)| (k, v)))
    }

    /// How many groups are stored (tests).
    #[cfg(test)]
    pub(super) fn count(&self) -> usize {
        self.state
            .store()
            .scan(GROUPS, self.state.groups())
            .map_or(0, Iterator::count)
    }
}
