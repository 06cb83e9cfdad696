//! `stateTtl` for keyed state that nothing else ends (an updating `GROUP BY`'s groups, an
//! updating top-N's partitions): a key not touched for `ttl` of event time — the newest
//! event time among its rows, against the watermark — is forgotten. Event time rather than
//! Flink's processing time, as for the regular join: a replay after a restore expires the
//! same keys. What expires is dropped without a word downstream (Flink does the same): a
//! later row of that key starts it again from nothing.

use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt};

use crate::ids::Millis;

/// The last event time of each key, ordered for expiry.
#[derive(Debug)]
pub struct Ttl {
    ttl: Millis,
    last: HashMap<Vec<u8>, Millis>,
    by_time: BTreeSet<(Millis, Vec<u8>)>,
}

impl Ttl {
    /// Keys expire `ttl` milliseconds of event time after their last row.
    #[must_use]
    pub fn new(ttl: Millis) -> Self {
        Self {
            ttl,
            last: HashMap::new(),
            by_time: BTreeSet::new(),
        }
    }

    /// `key` had a row at event time `t`.
    pub fn touch(&mut self, key: &[u8], t: Millis) {
        match self.last.get_mut(key) {
            Some(last) if *last >= t => {}
            Some(last) => {
                self.by_time.remove(&(*last, key.to_vec()));
                *last = t;
                self.by_time.insert((t, key.to_vec()));
            }
            None => {
                self.last.insert(key.to_vec(), t);
                self.by_time.insert((t, key.to_vec()));
            }
        }
    }

    /// The last event time of `key`, if it is tracked.
    #[must_use]
    pub fn last(&self, key: &[u8]) -> Option<Millis> {
        self.last.get(key).copied()
    }

    /// Stop tracking `key` (its state went another way).
    pub fn forget(&mut self, key: &[u8]) {
        if let Some(t) = self.last.remove(key) {
            self.by_time.remove(&(t, key.to_vec()));
        }
    }

    /// The keys whose last row is `ttl` or more behind `watermark`, no longer tracked.
    pub fn expire(&mut self, watermark: Millis) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((t, _)) = self.by_time.first() {
            if t.saturating_add(self.ttl) > watermark {
                break;
            }
            if let Some((_, key)) = self.by_time.pop_first() {
                self.last.remove(&key);
                out.push(key);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Ttl;

    #[test]
    fn a_key_expires_ttl_after_its_newest_row_and_not_before() {
        let mut t = Ttl::new(10);
        t.touch(b"a", 5);
        t.touch(b"b", 8);
        t.touch(b"a", 12);
        t.touch(b"a", 3);
        assert_eq!(t.last(b"a"), Some(12));
        assert!(t.expire(17).is_empty());
        assert_eq!(t.expire(18), [b"b".to_vec()]);
        assert!(t.expire(21).is_empty());
        assert_eq!(t.expire(22), [b"a".to_vec()]);
        t.touch(b"c", 1);
        t.forget(b"c");
        assert!(t.expire(i64::MAX).is_empty());
    }
}
