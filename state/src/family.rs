//! The kinds of state a store keeps (its column families), and the one that ages out.

/// One kind of state an operator keeps: a column family of its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The column family's name, as checkpoints record it.
    pub name: &'static str,
    /// Every value starts with a time ([`ordered`]) after which the entry is dead once the
    /// store's horizon ([`crate::Store::expire_through`]) passes it: compactions drop it. The
    /// operator still decides what a read of a dead entry means; dropping only reclaims space,
    /// as Flink's TTL compaction filter does, without a second index to expire by.
    pub expires: bool,
}

impl Family {
    /// A family whose entries stay until deleted.
    #[must_use]
    pub const fn kept(name: &'static str) -> Self {
        Self {
            name,
            expires: false,
        }
    }

    /// A family whose entries compactions drop once their leading time is at or below the
    /// horizon.
    #[must_use]
    pub const fn expiring(name: &'static str) -> Self {
        Self {
            name,
            expires: true,
        }
    }
}

/// A time (milliseconds) as 8 bytes that sort as the times do (the sign bit flipped), for keys
/// that order entries by time and for the leading time of an expiring family's values.
#[must_use]
pub fn ordered(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time [`ordered`] wrote at the start of `b`, if `b` holds 8 bytes.
#[must_use]
pub fn from_ordered(b: &[u8]) -> Option<i64> {
    let b: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}
