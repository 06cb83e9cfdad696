//! The values a group holds for a `count(DISTINCT)`, or for a `min`/`max` over a changelog,
//! with the `disk` backend: each value its own key in family [`HELD`], `(group, aggregate,
//! value) -> rows holding it` (Flink's `MapState` shape). A group of millions of distinct
//! values is then read and written a value at a time; kept inside the group's stored value,
//! as memory keeps it, it was read and rewritten whole by every batch that touched the group
//! (q15 and q16 at 10 M events on disk did not finish).
//!
//! The group's stored value keeps only what its result needs ([`Holds`]): a distinct count as
//! the `Count` of its held values, an extreme as its current value, looked up again as the
//! first or last held key of its prefix when the last row holding it leaves. Only a large
//! accumulator moves its values out ([`SPILL`] or more, when a batch reads its group): most
//! groups hold a few values, which are cheaper inside the group's value (read and written with
//! it, and kept in memory between batches by write-back) than as keys of their own (q16 has
//! thousands of groups of a few values beside a few of hundreds of thousands).
//!
//! A batch first reads every held value its rows name that is not known yet, in one batched
//! read ([`Held::read`]); rows then count their values up or down ([`Held::add`]); the batch's
//! changes are written at its end ([`Held::write`]), so a barrier finds them all in the store.
//! What was read or written stays known in memory, up to a share of the state budget, then is
//! forgotten at once. Checkpoints of the memory backend and savepoints keep the values inside
//! the accumulators, as memory does ([`Held::gather`], [`Held::take`]), so each backend
//! restores from the other's.

use std::collections::{HashMap, HashSet};

use datafusion::arrow::array::Array;
use foldhash::fast::RandomState;
use weir_crds::AggregateFn;
use weir_state::{Batch, Store};

use super::retract::{Retractable, float_key};
use crate::error::Result;
use crate::keys::key_group;
use crate::operator::window::Aggregate;
use crate::operator::window::accumulators::{Acc, Value};
use crate::state::disk::{from_ordered, length_prefixed, ordered};

/// The family of held values, among the `GROUP BY`'s.
pub const HELD: usize = crate::operator::keyed_store::OWNED;

/// Held values known are forgotten past this share of the state memory budget (by an estimate
/// of their size in memory).
const KNOWN_SHARE: usize = 32;

/// An accumulator holding this many values or more moves them out of its group's value.
/// Measured on q16 on disk (one run each): at 3 M events 0.12 M events/s with 8 or 16, 0.08
/// with 64; at 1 M events 0.14, 0.17 and 0.23; with every value apart, 0.12 at 1 M.
#[cfg(not(test))]
pub const SPILL: usize = 16;
/// Small in unit tests, so that their groups take both forms and move between them.
#[cfg(test)]
pub const SPILL: usize = 4;

/// What a known value costs in memory beyond its bytes: the vector, the count and the map's
/// slot.
const ENTRY_OVERHEAD: usize = 56;

/// An accumulator that may keep its values in [`HELD`]: its disk form stands in the group's
/// stored value, its memory form holds the values.
pub trait Holds {
    /// Take the values out of the memory form if it holds `at_least` values, leaving the
    /// disk form: each value's key and how many rows hold it. `None` when `self` is in its
    /// disk form already, or holds fewer values.
    fn take(&mut self, at_least: usize) -> Option<Vec<(Vec<u8>, i64)>>;
    /// In its disk form: its values are in [`HELD`].
    fn on_disk(&self) -> bool;
    /// Rebuild the memory form from the disk form and the values it holds.
    fn give(&mut self, values: Vec<(Vec<u8>, i64)>);
    /// Value `value` came to be held (`appeared`) or is held no more. Whether the accumulator
    /// needs its first or last held value looked up ([`Holds::found`]).
    fn changed(&mut self, value: &[u8], appeared: bool) -> bool;
    /// The first or last held value, as looked up.
    fn found(&mut self, value: Option<&[u8]>);
}

/// A value as a held key's last part: a distinct value's row encoding, or an extreme's value
/// as bytes that sort as the values do.
fn value_key(v: &Value<'_>, row: usize, out: &mut Vec<u8>) -> bool {
    match v {
        Value::Rows(rows, valid) if valid.is_valid(row) => {
            out.extend_from_slice(rows.row(row).as_ref());
        }
        Value::Int(a) if a.is_valid(row) => out.extend_from_slice(&ordered(a.value(row))),
        Value::Float(a) if a.is_valid(row) => {
            out.extend_from_slice(&ordered(float_key(a.value(row))));
        }
        _ => return false,
    }
    true
}

/// Whether the `at`-th aggregate keeps its values in [`HELD`], and for an extreme, whether it
/// is a `max`.
#[derive(Debug, Clone, Copy)]
struct Holder {
    at: u16,
    max: bool,
}

/// The maps here hash byte strings a few times per row: with foldhash, as the other
/// operators' do (XXH3's streaming hasher, used before, is slow on short keys).
type Map<K, V> = HashMap<K, V, RandomState>;

/// What is known of one group's held values: each value's count as stored (0: not stored).
#[derive(Debug, Default)]
struct Known {
    values: Map<Vec<u8>, i64>,
    /// The store holds no value of the group's but those in `values` (its values were all
    /// deleted in this batch).
    complete: bool,
}

/// The held values of one `GROUP BY` of one subtask.
#[derive(Debug)]
pub struct Held {
    holders: Vec<Holder>,
    /// Over a changelog values are counted (a row taken back may leave its value held by
    /// others); over inserts a value once held stays held, and is written once.
    counts: bool,
    max_parallelism: u32,
    known: Map<Vec<u8>, Known>,
    known_bytes: usize,
    limit: usize,
    /// Values this batch changed: (group, aggregate and value).
    changed: HashSet<(Vec<u8>, Vec<u8>), RandomState>,
    /// Groups whose held values this batch deleted, before its changes.
    dropped: Vec<Vec<u8>>,
    /// Extremes to look up at the end of the batch: (group, holder).
    lookups: HashSet<(Vec<u8>, usize), RandomState>,
    /// A value's key being built.
    buf: Vec<u8>,
}

impl Held {
    /// The held values of `aggregates` (over a changelog: `retracting`), if any keeps them,
    /// known up to a share of `budget` bytes.
    #[must_use]
    pub fn new(
        aggregates: &[Aggregate],
        retracting: bool,
        max_parallelism: u32,
        budget: usize,
    ) -> Option<Self> {
        let holders: Vec<Holder> = aggregates
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let holds = a.func == AggregateFn::CountDistinct
                    || (retracting && matches!(a.func, AggregateFn::Min | AggregateFn::Max));
                let at = u16::try_from(i).ok()?;
                holds.then_some(Holder {
                    at,
                    max: a.func == AggregateFn::Max,
                })
            })
            .collect();
        (!holders.is_empty()).then(|| Self {
            holders,
            counts: retracting,
            max_parallelism,
            known: Map::default(),
            known_bytes: 0,
            limit: budget / KNOWN_SHARE,
            changed: HashSet::default(),
            dropped: Vec::new(),
            lookups: HashSet::default(),
            buf: Vec::new(),
        })
    }

    /// The aggregates that keep their values here, by position.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.holders.iter().map(|h| usize::from(h.at))
    }

    /// Build the key of holder `h`'s value in row `row` of `values` in `self.buf`: the
    /// aggregate's position, then the value. `false` when the row has no value (null).
    fn suffix(&mut self, h: usize, values: &[Value<'_>], row: usize) -> bool {
        let at = self.holders[h].at;
        self.buf.clear();
        self.buf.extend_from_slice(&at.to_be_bytes());
        value_key(&values[usize::from(at)], row, &mut self.buf)
    }

    fn stored_key(group: &[u8], suffix: &[u8]) -> Vec<u8> {
        let mut k = length_prefixed(group, suffix.len());
        k.extend_from_slice(suffix);
        k
    }

    /// Read the held values the rows of a batch name (row `r` in group `groups[r]`, its
    /// arguments in `values`) that are not known yet, of the accumulators `on_disk(group,
    /// position)` says are in their disk form.
    ///
    /// # Errors
    /// The store's read fails, or a stored count is cut short.
    pub fn read(
        &mut self,
        store: &Store,
        groups: &[&[u8]],
        values: &[Value<'_>],
        on_disk: impl Fn(&[u8], usize) -> bool,
    ) -> Result<()> {
        let mut wanted: HashSet<(&[u8], Vec<u8>), RandomState> = HashSet::default();
        for (row, group) in groups.iter().enumerate() {
            for h in 0..self.holders.len() {
                if !on_disk(group, usize::from(self.holders[h].at)) || !self.suffix(h, values, row)
                {
                    continue;
                }
                let known = self
                    .known
                    .get(*group)
                    .is_some_and(|k| k.complete || k.values.contains_key(self.buf.as_slice()));
                if !known {
                    wanted.insert((*group, self.buf.clone()));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let wanted: Vec<(&[u8], Vec<u8>)> = wanted.into_iter().collect();
        let keys: Vec<(u32, Vec<u8>)> = wanted
            .iter()
            .map(|(g, s)| (key_group(g, self.max_parallelism), Self::stored_key(g, s)))
            .collect();
        let at: Vec<(u32, &[u8])> = keys.iter().map(|(kg, k)| (*kg, k.as_slice())).collect();
        let stored = store.get_many(HELD, &at)?;
        for ((group, suffix), count) in wanted.into_iter().zip(stored) {
            let count = count.map_or(Ok(0), |c| decode_count(&c))?;
            self.remember(group, suffix, count);
        }
        Ok(())
    }

    fn remember(&mut self, group: &[u8], suffix: Vec<u8>, count: i64) {
        let k = match self.known.get_mut(group) {
            Some(k) => k,
            None => {
                self.known_bytes += group.len() + ENTRY_OVERHEAD;
                self.known.entry(group.to_vec()).or_default()
            }
        };
        self.known_bytes += suffix.len() + ENTRY_OVERHEAD;
        k.values.insert(suffix, count);
    }

    /// Count row `row` (its arguments in `values`) up (`sign` 1) or down (-1) in the held
    /// values of its group `group`, telling `accs` (the group's accumulators) of each value
    /// that appears or goes; accumulators in their memory form count their own.
    ///
    /// # Errors
    /// A value was not read first ([`Self::read`]): an internal error.
    pub fn add<A: Holds>(
        &mut self,
        group: &[u8],
        values: &[Value<'_>],
        row: usize,
        sign: i64,
        accs: &mut [A],
    ) -> Result<()> {
        for h in 0..self.holders.len() {
            let at = usize::from(self.holders[h].at);
            if !accs.get(at).is_some_and(Holds::on_disk) || !self.suffix(h, values, row) {
                continue;
            }
            let unread = || crate::error::Error::internal("a held value was not read first");
            let known = self.known.get_mut(group).ok_or_else(unread)?;
            if !known.values.contains_key(self.buf.as_slice()) {
                if !known.complete {
                    return Err(unread());
                }
                self.known_bytes += self.buf.len() + ENTRY_OVERHEAD;
                known.values.insert(self.buf.clone(), 0);
            }
            let count = known
                .values
                .get_mut(self.buf.as_slice())
                .ok_or_else(unread)?;
            let was = *count;
            if was != 0 && !self.counts {
                continue;
            }
            *count += sign;
            let now = *count;
            if (was == 0) != (now == 0) {
                let value = self.buf.get(2..).unwrap_or_default();
                if let Some(acc) = accs.get_mut(at)
                    && acc.changed(value, was == 0)
                {
                    self.lookups.insert((group.to_vec(), h));
                }
            }
            self.changed.insert((group.to_vec(), self.buf.clone()));
        }
        Ok(())
    }

    /// Group `group` is gone (its rows were all taken back): its held values go with it,
    /// also those this batch did not read.
    pub fn drop_group(&mut self, group: &[u8]) {
        self.changed.retain(|(g, _)| g != group);
        self.lookups.retain(|(g, _)| g != group);
        let k = self.known.entry(group.to_vec()).or_default();
        k.values.clear();
        k.complete = true;
        self.dropped.push(group.to_vec());
    }

    /// Write the batch's changes; then look up the extremes whose value went, and hand each
    /// to `found(group, position, value)`.
    ///
    /// # Errors
    /// The store's write or read fails.
    pub fn write(
        &mut self,
        store: &Store,
        mut found: impl FnMut(&[u8], usize, Option<&[u8]>),
    ) -> Result<()> {
        let mut batch = Batch::default();
        for group in self.dropped.drain(..) {
            let kg = key_group(&group, self.max_parallelism);
            batch.delete_prefix(HELD, kg, &length_prefixed(&group, 0));
        }
        for (group, suffix) in self.changed.drain() {
            let kg = key_group(&group, self.max_parallelism);
            let key = Self::stored_key(&group, &suffix);
            match self.known.get(&group).and_then(|k| k.values.get(&suffix)) {
                Some(0) | None => batch.delete(HELD, kg, &key),
                Some(c) => batch.put(HELD, kg, &key, &c.to_le_bytes()),
            }
        }
        if !batch.is_empty() {
            store.write(batch)?;
        }
        for (group, h) in self.lookups.drain() {
            let holder = self.holders[h];
            let kg = key_group(&group, self.max_parallelism);
            let mut prefix = length_prefixed(&group, 2);
            prefix.extend_from_slice(&holder.at.to_be_bytes());
            let entry = if holder.max {
                store.last_in_prefix(HELD, kg, &prefix)?
            } else {
                store.scan_prefix(HELD, kg, &prefix)?.next().transpose()?
            };
            let value = entry.as_ref().and_then(|(k, _)| k.get(prefix.len()..));
            found(&group, usize::from(holder.at), value);
        }
        if self.known_bytes > self.limit {
            self.forget();
        }
        Ok(())
    }

    /// Forget what is known (groups expired in the store).
    pub fn forget(&mut self) {
        self.known.clear();
        self.known_bytes = 0;
    }

    /// Move the values of the accumulators `accs` of group `group` that hold [`SPILL`] values
    /// or more in their memory form into `batch`, leaving their disk forms.
    pub fn take<A: Holds>(&mut self, group: &[u8], accs: &mut [A], batch: &mut Batch) {
        let kg = key_group(group, self.max_parallelism);
        let mut took = false;
        for h in &self.holders {
            let Some(values) = accs.get_mut(usize::from(h.at)).and_then(|a| a.take(SPILL)) else {
                continue;
            };
            took = true;
            for (value, count) in values {
                let mut suffix = h.at.to_be_bytes().to_vec();
                suffix.extend_from_slice(&value);
                batch.put(
                    HELD,
                    kg,
                    &Self::stored_key(group, &suffix),
                    &count.to_le_bytes(),
                );
            }
        }
        if took {
            self.known.remove(group);
        }
    }

    /// The memory form of group `group`'s accumulators `accs` (key group `kg`), with the
    /// values `store` holds for them: for a savepoint, which keeps state as memory does.
    ///
    /// # Errors
    /// The store's read fails, or a stored count is cut short.
    pub fn gather<A: Holds>(
        holders: &[usize],
        store: &Store,
        kg: u32,
        group: &[u8],
        accs: &mut [A],
    ) -> Result<()> {
        for &at in holders {
            let Some(acc) = accs.get_mut(at) else {
                continue;
            };
            let mut prefix = length_prefixed(group, 2);
            prefix.extend_from_slice(&u16::try_from(at).unwrap_or(u16::MAX).to_be_bytes());
            let mut values = Vec::new();
            for entry in store.scan_prefix(HELD, kg, &prefix)? {
                let (k, c) = entry?;
                let value = k.get(prefix.len()..).unwrap_or_default().to_vec();
                values.push((value, decode_count(&c)?));
            }
            acc.give(values);
        }
        Ok(())
    }
}

fn decode_count(c: &[u8]) -> Result<i64> {
    let b: [u8; 8] = c.try_into().map_err(|_| crate::error::Error::State {
        operator: "group by".into(),
        message: format!("a held value's count is {} bytes, not 8", c.len()),
    })?;
    Ok(i64::from_le_bytes(b))
}

/// Over inserts, a `count(DISTINCT)`'s disk form is the `Count` of its held values.
impl Holds for Acc {
    fn take(&mut self, at_least: usize) -> Option<Vec<(Vec<u8>, i64)>> {
        let Self::Distinct(set) = self else {
            return None;
        };
        if set.len() < at_least {
            return None;
        }
        let values: Vec<(Vec<u8>, i64)> = set.drain().into_iter().map(|v| (v, 1)).collect();
        *self = Self::Count(values.len() as i64);
        Some(values)
    }

    fn on_disk(&self) -> bool {
        matches!(self, Self::Count(_))
    }

    fn give(&mut self, values: Vec<(Vec<u8>, i64)>) {
        if matches!(self, Self::Count(_)) {
            *self = Self::Distinct(values.into_iter().map(|(v, _)| v).collect());
        }
    }

    fn changed(&mut self, _value: &[u8], appeared: bool) -> bool {
        if let Self::Count(c) = self {
            *c += if appeared { 1 } else { -1 };
        }
        false
    }

    fn found(&mut self, _value: Option<&[u8]>) {}
}

/// Over a changelog, a `count(DISTINCT)`'s disk form is the `Count` of its held values, an
/// extreme's is [`Retractable::ExtremeOnDisk`].
impl Holds for Retractable {
    fn take(&mut self, at_least: usize) -> Option<Vec<(Vec<u8>, i64)>> {
        let float = matches!(self, Self::ExtremeF { .. });
        let (values, disk) = match self {
            Self::Distinct(held) if held.len() >= at_least => {
                let values: Vec<(Vec<u8>, i64)> = held.drain().collect();
                let n = values.len() as i64;
                (values, Self::Count(n))
            }
            Self::ExtremeI { max, held } | Self::ExtremeF { max, held }
                if held.len() >= at_least =>
            {
                let current = if *max {
                    held.keys().next_back()
                } else {
                    held.keys().next()
                };
                let disk = Self::ExtremeOnDisk {
                    max: *max,
                    float,
                    current: current.copied(),
                };
                let values = held.iter().map(|(k, c)| (ordered(*k).to_vec(), *c));
                (values.collect(), disk)
            }
            _ => return None,
        };
        *self = disk;
        Some(values)
    }

    fn on_disk(&self) -> bool {
        matches!(self, Self::Count(_) | Self::ExtremeOnDisk { .. })
    }

    fn give(&mut self, values: Vec<(Vec<u8>, i64)>) {
        *self = match self {
            Self::Count(_) => Self::Distinct(values.into_iter().collect()),
            Self::ExtremeOnDisk { max, float, .. } => {
                let held = values
                    .into_iter()
                    .filter_map(|(v, c)| Some((from_ordered(&v)?, c)))
                    .collect();
                if *float {
                    Self::ExtremeF { max: *max, held }
                } else {
                    Self::ExtremeI { max: *max, held }
                }
            }
            _ => return,
        };
    }

    fn changed(&mut self, value: &[u8], appeared: bool) -> bool {
        match self {
            Self::Count(c) => {
                *c += if appeared { 1 } else { -1 };
                false
            }
            Self::ExtremeOnDisk { max, current, .. } => {
                let Some(x) = from_ordered(value) else {
                    return true;
                };
                if !appeared {
                    return *current == Some(x);
                }
                let better = current.is_none_or(|c| if *max { x > c } else { x < c });
                if better {
                    *current = Some(x);
                }
                false
            }
            _ => false,
        }
    }

    fn found(&mut self, value: Option<&[u8]>) {
        if let Self::ExtremeOnDisk { current, .. } = self {
            *current = value.and_then(from_ordered);
        }
    }
}
