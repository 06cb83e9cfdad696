//! Serde forms for the byte strings operators keep (keys, rows, distinct values; a
//! `count(DISTINCT)`'s set has its own, `window::distinct`): written as
//! bytes, a length and one copy, instead of as a sequence of `u8`, one serializer call per
//! byte, which took a fifth of the CPU time of queries with large state checkpointed every
//! second. In postcard, the checkpoint format, both forms are the same bytes, so checkpoints
//! written before still restore, and these ones restore in a build from before.

use std::collections::HashMap;
use std::hash::BuildHasher;

use serde::{Deserializer, Serializer};
use serde_bytes::{ByteBuf, Bytes};

/// A map from byte strings to counts (a retractable `count(DISTINCT)`'s values).
pub mod counted {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{MapAccess, Visitor};

    use super::{BuildHasher, ByteBuf, Bytes, Deserializer, HashMap, Serializer};

    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer, H>(
        map: &HashMap<Vec<u8>, i64, H>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, n)| (Bytes::new(k), n)))
    }

    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D, H>(d: D) -> Result<HashMap<Vec<u8>, i64, H>, D::Error>
    where
        D: Deserializer<'de>,
        H: BuildHasher + Default,
    {
        d.deserialize_map(Counts(PhantomData))
    }

    struct Counts<H>(PhantomData<H>);

    impl<'de, H: BuildHasher + Default> Visitor<'de> for Counts<H> {
        type Value = HashMap<Vec<u8>, i64, H>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of byte strings to counts")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            // The hint comes from the input: bounded, so a corrupt length cannot allocate.
            let hint = a.size_hint().unwrap_or(0).min(1 << 16);
            let mut map = HashMap::with_capacity_and_hasher(hint, H::default());
            while let Some((k, n)) = a.next_entry::<ByteBuf, i64>()? {
                map.insert(k.into_vec(), n);
            }
            Ok(map)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use serde::{Deserialize, Serialize};

    use super::counted;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Counted(#[serde(with = "counted")] foldhash::HashMap<Vec<u8>, i64>);

    fn values() -> Vec<Vec<u8>> {
        vec![Vec::new(), b"a".to_vec(), vec![0; 200], (0..=255).collect()]
    }

    #[test]
    fn counts_read_what_the_plain_form_wrote_and_the_other_way() {
        let plain: std::collections::HashMap<Vec<u8>, i64> =
            values().into_iter().zip([3, -1, 0, i64::MAX]).collect();
        let ours = Counted(plain.iter().map(|(k, n)| (k.clone(), *n)).collect());
        let read: Counted = postcard::from_bytes(&postcard::to_stdvec(&plain).unwrap()).unwrap();
        assert_eq!(read, ours);
        let back: std::collections::HashMap<Vec<u8>, i64> =
            postcard::from_bytes(&postcard::to_stdvec(&ours).unwrap()).unwrap();
        assert_eq!(back, plain);
    }
}
