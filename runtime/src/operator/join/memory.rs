//! A join's kept rows in memory (the `memory` state backend).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::Kept;
use crate::ids::Millis;

/// One input's kept rows. Keys are interned into slots, so that the expiry index holds a
/// number rather than a copy of the key, and each key is indexed at its earliest expiry (a
/// key's rows are checked together when that comes).
#[derive(Default)]
pub(super) struct Side {
    /// Each key's slot, found by the key's hash and compared with the slot's key, so that a
    /// key is stored once, in its slot (foldhash: XXH3's streaming hasher is slow on short
    /// keys).
    ids: HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Slot>,
    /// Slots no key uses.
    free: Vec<u32>,
    /// (expiry, slot), earliest first: each slot at the earliest expiry among its rows
    /// ([`Slot::indexed`]). An entry that no longer matches its slot's is stale and skipped
    /// when it comes up, so moving a slot's expiry earlier or releasing the slot costs nothing
    /// here. A heap rather than an ordered set: an interval join indexes nearly every row it
    /// keeps (q7 keys bids by price), and the set's inserts and removals were a third of q7.
    expiries: BinaryHeap<Reverse<(Millis, u32)>>,
}

/// A key's rows.
#[derive(Default)]
struct Slot {
    key: Vec<u8>,
    /// In arrival order.
    rows: Vec<Kept>,
    /// Its entry in [`Side::expiries`].
    indexed: Option<Millis>,
}

impl Side {
    /// `key`'s slot and its hash.
    fn find(&self, key: &[u8]) -> (Option<u32>, u64) {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let id = self
            .ids
            .find(hash, |&id| slots[id as usize].key == key)
            .copied();
        (id, hash)
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&[Kept]> {
        let id = self.find(key).0?;
        Some(self.slots[id as usize].rows.as_slice())
    }

    pub(super) fn get_mut(&mut self, key: &[u8], k: usize) -> Option<&mut Kept> {
        let id = self.find(key).0?;
        self.slots[id as usize].rows.get_mut(k)
    }

    /// Keep `kept` under `key`, to expire at `at` (`None`: never).
    pub(super) fn push(&mut self, key: &[u8], mut kept: Kept, at: Option<Millis>) {
        kept.until = at;
        let id = match self.find(key) {
            (Some(id), _) => id,
            (None, hash) => {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(Slot::default());
                    u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
                });
                self.slots[id as usize].key = key.to_vec();
                let (slots, hasher) = (&self.slots, &self.hasher);
                self.ids.insert_unique(hash, id, |&id| {
                    hasher.hash_one(slots[id as usize].key.as_slice())
                });
                id
            }
        };
        let slot = &mut self.slots[id as usize];
        slot.rows.push(kept);
        if let Some(at) = at
            && slot.indexed.is_none_or(|i| at < i)
        {
            self.expiries.push(Reverse((at, id)));
            slot.indexed = Some(at);
        }
    }

    /// Take one row equal to `row` away from `key`'s; `None` if there is none (it was
    /// never kept, or expired).
    pub(super) fn remove(&mut self, key: &[u8], row: &[u8]) -> Option<Kept> {
        let id = self.find(key).0?;
        let slot = &mut self.slots[id as usize];
        let i = slot.rows.iter().position(|k| k.row == row)?;
        let kept = slot.rows.remove(i);
        if slot.rows.is_empty() {
            self.release(id);
        }
        Some(kept)
    }

    /// Slot `id` holds no row any more.
    fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        // Its entry in `expiries`, if any, is now stale.
        slot.indexed = None;
        let key = std::mem::take(&mut slot.key);
        let hash = self.hasher.hash_one(key.as_slice());
        if let Ok(entry) = self.ids.find_entry(hash, |&i| i == id) {
            entry.remove();
        }
        self.free.push(id);
    }

    /// Drop every row of this side that `watermark` expires (by when it was to, as kept),
    /// returning them.
    pub(super) fn expire(&mut self, watermark: Millis) -> Vec<Kept> {
        let mut gone = Vec::new();
        while let Some(&Reverse((at, id))) = self.expiries.peek() {
            if at > watermark {
                break;
            }
            self.expiries.pop();
            let slot = &mut self.slots[id as usize];
            if slot.indexed != Some(at) {
                // Stale: the slot was indexed earlier since, or released (and maybe reused).
                continue;
            }
            slot.indexed = None;
            let mut next: Option<Millis> = None;
            for kept in std::mem::take(&mut slot.rows) {
                match kept.until {
                    Some(e) if e <= watermark => gone.push(kept),
                    e => {
                        next = match (next, e) {
                            (Some(n), Some(e)) => Some(n.min(e)),
                            (n, e) => n.or(e),
                        };
                        slot.rows.push(kept);
                    }
                }
            }
            if slot.rows.is_empty() {
                self.release(id);
            } else if let Some(n) = next {
                slot.indexed = Some(n);
                self.expiries.push(Reverse((n, id)));
            }
        }
        gone
    }

    /// Every row, leaving none.
    pub(super) fn take(&mut self) -> Vec<Kept> {
        std::mem::take(self)
            .slots
            .into_iter()
            .flat_map(|s| s.rows)
            .collect()
    }

    /// Every key with its rows.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[Kept])> {
        self.ids.iter().map(|&id| {
            let slot = &self.slots[id as usize];
            (slot.key.as_slice(), slot.rows.as_slice())
        })
    }
}
