//! The key-group prefix every stored key begins with.

use std::ops::RangeInclusive;

/// Bytes of the key-group prefix.
pub(crate) const PREFIX: usize = 4;

/// A subtask's contiguous range of key groups, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroups {
    /// First key group.
    pub first: u32,
    /// Last key group.
    pub last: u32,
}

impl KeyGroups {
    /// Key groups `first..=last`.
    #[must_use]
    pub fn new(range: RangeInclusive<u32>) -> Self {
        Self {
            first: *range.start(),
            last: *range.end(),
        }
    }

    /// The key groups both ranges hold, if any.
    #[must_use]
    pub fn overlap(&self, other: &Self) -> Option<Self> {
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last).then_some(Self { first, last })
    }

    /// Number of key groups.
    #[must_use]
    pub fn len(&self) -> u64 {
        u64::from(self.last) - u64::from(self.first) + 1
    }

    /// Never empty; for clippy's `len_without_is_empty`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The smallest stored key of the range.
    pub(crate) fn lower(&self) -> [u8; PREFIX] {
        self.first.to_be_bytes()
    }

    /// The first stored key after the range (`None`: the range ends at the last key group).
    pub(crate) fn upper(&self) -> Option<[u8; PREFIX]> {
        self.last.checked_add(1).map(u32::to_be_bytes)
    }
}

/// `key` stored under key group `kg`.
pub(crate) fn stored(kg: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX + key.len());
    out.extend_from_slice(&kg.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The key group and key of a stored key.
pub(crate) fn split(stored: &[u8]) -> Option<(u32, &[u8])> {
    let (prefix, key) = stored.split_first_chunk::<PREFIX>()?;
    Some((u32::from_be_bytes(*prefix), key))
}

/// The smallest key after every key that starts with `prefix` (`None`: there is none, the
/// prefix being all `0xff`).
pub(crate) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
