//! Where a join keeps both inputs' rows: in memory, or on disk with the `disk` backend. The
//! join's logic sees one interface: read a batch's keys ([`Sides::load`]), look rows up,
//! change or take them, keep new ones, and write the batch's changes ([`Sides::flush`]).

use super::Kept;
use super::disk::DiskSides;
use super::memory::Side;
use crate::error::Result;
use crate::ids::Millis;

pub(super) enum Sides {
    Memory(Box<[Side; 2]>),
    Disk(Box<DiskSides>),
}

impl Sides {
    /// Read `keys` of `side`, before a batch looks them up (memory has them at hand).
    pub(super) fn load<'k>(
        &mut self,
        side: usize,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> Result<()> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Disk(d) => d.load(side, keys),
        }
    }

    /// `key`'s rows of `side`, in arrival order.
    pub(super) fn get(&self, side: usize, key: &[u8]) -> Option<&[Kept]> {
        match self {
            Self::Memory(m) => m[side].get(key),
            Self::Disk(d) => d.get(side, key),
        }
    }

    /// Row `k` of [`Self::get`]'s, to change its partner count.
    pub(super) fn get_mut(&mut self, side: usize, key: &[u8], k: usize) -> Option<&mut Kept> {
        match self {
            Self::Memory(m) => m[side].get_mut(key, k),
            Self::Disk(d) => d.get_mut(side, key, k),
        }
    }

    /// Take one row equal to `row` away from `key`'s of `side`; `None` if there is none.
    pub(super) fn remove(&mut self, side: usize, key: &[u8], row: &[u8]) -> Option<Kept> {
        match self {
            Self::Memory(m) => m[side].remove(key, row),
            Self::Disk(d) => d.remove(side, key, row),
        }
    }

    /// Keep `kept` under `key` of `side`, to expire at `at` (`None`: never).
    pub(super) fn push(&mut self, side: usize, key: &[u8], kept: Kept, at: Option<Millis>) {
        match self {
            Self::Memory(m) => m[side].push(key, kept, at),
            Self::Disk(d) => d.push(side, key, kept, at),
        }
    }

    /// The end of a batch: write what it changed.
    pub(super) fn flush(&mut self) -> Result<()> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Disk(d) => d.flush(),
        }
    }

    /// Drop the rows `watermark` expires, returning each side's that `wanted` picks.
    pub(super) fn expire(
        &mut self,
        watermark: Millis,
        wanted: impl Fn(usize, &Kept) -> bool,
    ) -> Result<[Vec<Kept>; 2]> {
        match self {
            Self::Memory(m) => Ok([0, 1].map(|s| {
                let gone = m[s].expire(watermark);
                gone.into_iter().filter(|k| wanted(s, k)).collect()
            })),
            Self::Disk(d) => d.expire(watermark, wanted),
        }
    }

    /// Drop every row of `side`, returning those `wanted` picks.
    pub(super) fn take(
        &mut self,
        side: usize,
        wanted: impl Fn(&Kept) -> bool,
    ) -> Result<Vec<Kept>> {
        match self {
            Self::Memory(m) => Ok(m[side].take().into_iter().filter(|k| wanted(k)).collect()),
            Self::Disk(d) => d.take(side, wanted),
        }
    }

    /// How many rows of `side` are kept (tests).
    #[cfg(test)]
    pub(super) fn count(&self, side: usize) -> usize {
        match self {
            Self::Memory(m) => m[side].iter().map(|(_, rows)| rows.len()).sum(),
            Self::Disk(d) => d.count(side),
        }
    }
}
