//! The values a `count(DISTINCT)` has seen, in Arrow's row format (so every type compares by
//! its bytes). A value of up to 15 bytes (a number is 9: a null flag and 8 bytes; a date, a
//! short string) is packed with its length into one `u128`, an entry of 16 bytes that hashes
//! as two words and compares as one integer; a longer value is boxed. Inserting into these
//! sets bounds q15 and q16: before, each value was an inline `SmallVec` of 24 bytes, hashed a
//! byte string at a time through `Hash` and compared with `memcmp`.
//!
//! The checkpoint form is a sequence of byte strings, the bytes postcard writes for a set of
//! `Vec<u8>`: checkpoints of earlier versions restore, and the other way round.

use foldhash::{HashSet, HashSetExt};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

/// The longest value packed into a `u128`: its 16th byte holds the length.
const PACKED: usize = 15;

/// A `count(DISTINCT)`'s values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinctSet {
    /// Values of up to [`PACKED`] bytes, packed.
    short: HashSet<u128>,
    /// Longer values.
    long: HashSet<Box<[u8]>>,
}

fn pack(v: &[u8]) -> Option<u128> {
    let len = u8::try_from(v.len())
        .ok()
        .filter(|&n| usize::from(n) <= PACKED)?;
    let mut b = [0u8; 16];
    b[..v.len()].copy_from_slice(v);
    b[PACKED] = len;
    Some(u128::from_le_bytes(b))
}

/// A packed value's bytes and length.
fn unpack(p: u128) -> ([u8; 16], usize) {
    let b = p.to_le_bytes();
    let len = usize::from(b[PACKED]).min(PACKED);
    (b, len)
}

impl DistinctSet {
    /// Add `value`; whether it is new.
    pub fn insert(&mut self, value: &[u8]) -> bool {
        match pack(value) {
            Some(p) => self.short.insert(p),
            None => {
                if self.long.contains(value) {
                    false
                } else {
                    self.long.insert(value.into())
                }
            }
        }
    }

    /// How many distinct values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    /// Add every value of `other`.
    pub fn extend(&mut self, other: Self) {
        self.short.extend(other.short);
        self.long.extend(other.long);
    }

    /// Every value, leaving none.
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        let short = self.short.drain().map(|p| {
            let (b, len) = unpack(p);
            b[..len].to_vec()
        });
        let long = self.long.drain().map(Vec::from);
        short.chain(long).collect()
    }

    /// Call `f` with each value.
    fn each(&self, mut f: impl FnMut(&[u8])) {
        for &p in &self.short {
            let (b, len) = unpack(p);
            f(&b[..len]);
        }
        for v in &self.long {
            f(v);
        }
    }
}

impl FromIterator<Vec<u8>> for DistinctSet {
    fn from_iter<I: IntoIterator<Item = Vec<u8>>>(values: I) -> Self {
        let mut set = Self::default();
        for v in values {
            set.insert(&v);
        }
        set
    }
}

impl Serialize for DistinctSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.len()))?;
        let mut failed = None;
        self.each(|v| {
            if failed.is_none()
                && let Err(e) = seq.serialize_element(serde_bytes::Bytes::new(v))
            {
                failed = Some(e);
            }
        });
        match failed {
            Some(e) => Err(e),
            None => seq.end(),
        }
    }
}

impl<'de> Deserialize<'de> for DistinctSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let values = Vec::<ByteBuf>::deserialize(d)?;
        let mut set = Self {
            short: HashSet::with_capacity(values.len()),
            long: HashSet::new(),
        };
        for v in values {
            set.insert(&v);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::collections::HashSet;

    use super::DistinctSet;

    /// Empty, one byte, 14 to 16 bytes (both sides of packing), a zero-filled short value and
    /// its shorter prefix (the length tells them apart), long ones.
    fn values() -> Vec<Vec<u8>> {
        vec![
            Vec::new(),
            b"a".to_vec(),
            vec![0; 3],
            vec![0; 2],
            (0..14).collect(),
            (0..15).collect(),
            (0..16).collect(),
            vec![0; 200],
            (0..=255).collect(),
        ]
    }

    #[test]
    fn values_short_and_long_are_told_apart_counted_once_and_given_back() {
        let mut set = DistinctSet::default();
        for v in values() {
            assert!(set.insert(&v), "{v:?} is new");
        }
        for v in values() {
            assert!(!set.insert(&v), "{v:?} again");
        }
        assert_eq!(set.len(), values().len());
        let mut other: DistinctSet = [b"b".to_vec(), b"a".to_vec()].into_iter().collect();
        other.extend(set.clone());
        assert_eq!(other.len(), values().len() + 1);
        let back: HashSet<Vec<u8>> = set.drain().into_iter().collect();
        assert_eq!(back, values().into_iter().collect());
        assert_eq!(set.len(), 0);
    }

    /// The checkpoint form is a set of byte strings as postcard writes one: what the plain
    /// form (and earlier versions) wrote reads, and the other way round.
    #[test]
    fn sets_read_what_the_plain_form_wrote_and_the_other_way() {
        let plain: HashSet<Vec<u8>> = values().into_iter().collect();
        let ours: DistinctSet = values().into_iter().collect();
        let read: DistinctSet =
            postcard::from_bytes(&postcard::to_stdvec(&plain).unwrap()).unwrap();
        assert_eq!(read, ours);
        let back: HashSet<Vec<u8>> =
            postcard::from_bytes(&postcard::to_stdvec(&ours).unwrap()).unwrap();
        assert_eq!(back, plain);
        // One value, so one order: the very same bytes, short and long.
        for one in [b"xyz".to_vec(), vec![7; 40]] {
            let plain: HashSet<Vec<u8>> = [one.clone()].into_iter().collect();
            let ours: DistinctSet = [one].into_iter().collect();
            assert_eq!(
                postcard::to_stdvec(&plain).unwrap(),
                postcard::to_stdvec(&ours).unwrap()
            );
        }
    }
}
