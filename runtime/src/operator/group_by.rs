//! An updating `GROUP BY`: no window ends a group, so its aggregates are emitted as they
//! change, as a changelog ([`crate::changelog`]). Each input batch updates the groups it
//! touches; then, per touched group in the order first touched, a new group is emitted as
//! `+I` and a changed one as `-U` (its row as last emitted) followed by `+U` (its row now).
//! A group whose result did not change (a `max` not beaten) emits nothing. Emitting per batch
//! rather than per row is Flink's mini-batch: fewer intermediate versions, the same final
//! table.
//!
//! Without aggregates (`SELECT DISTINCT`) a group's row never changes: it is emitted once,
//! when first seen, and the output is plain inserts, which any sink takes.
//!
//! Over a changelog (the result of another updating operator) rows also leave: `-U`/`-D`
//! rows are taken back from their group ([`retract`]), and a group whose rows are all taken
//! back is deleted (`-D` its last row).
//!
//! State is each group's accumulators, per key group (so it moves on rescale), kept for as
//! long as the job runs, or, with `stateTtl` over input that carries event time, until no
//! row of the group has come for that long ([`super::ttl`]). It lives in memory or, with the
//! `disk` backend, in a store ([`super::keyed_store`]) from which each batch reads the groups it
//! touches; there the values a `count(DISTINCT)` or an extreme over a changelog holds are each
//! their own stored key ([`held`]), so a group's stored value stays small however many values
//! it holds.
//!
//! Replay after a restore is exact: the checkpoint holds every group as of its barrier, which
//! is what the output committed by that checkpoint last said of it, so the replay's first
//! `-U` of a group retracts exactly the row the committed output holds.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::ttl::Ttl;
use super::window::Aggregate;
use super::window::accumulators::{
    Acc, Arguments, Outcome, Value, check_restored, finish_outcomes,
};
use super::{Capture, Input, KeyedState, Operator, Output, decode_keyed, encode_keyed};
use crate::changelog::{self, Kind};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::KeyCodec;
use crate::state::disk::{DiskState, Fetched, Place};

const NAME: &str = "group by";

/// Everything the planner decided about an updating `GROUP BY`.
#[derive(Debug)]
pub struct GroupByConfig {
    /// Key codec over the input schema.
    pub keys: KeyCodec,
    /// Aggregates, in output order.
    pub aggregates: Vec<Aggregate>,
    /// Output schema: keys, aggregates, and the change kind when there are aggregates.
    pub output: SchemaRef,
    /// Key groups in the job.
    pub max_parallelism: u32,
    /// The input is a changelog: its last column is the change kind.
    pub retracting: bool,
    /// `stateTtl`: the input's event-time column, and how long a group is kept after its
    /// newest row.
    pub ttl: Option<(usize, Millis)>,
}

/// The updating `GROUP BY` of one subtask.
pub struct GroupBy {
    keys: KeyCodec,
    aggregates: Vec<Aggregate>,
    args: Arguments,
    output: SchemaRef,
    changelog: bool,
    max_parallelism: u32,
    /// Over inserts only: each group's accumulators (on disk: the current batch's groups).
    groups: HashMap<Vec<u8>, Vec<Acc>>,
    /// Over a changelog: each group's rows and accumulators (on disk: the batch's).
    retracting: Option<HashMap<Vec<u8>, Group>>,
    /// `stateTtl`: the event-time column, and each group's newest row (in memory; on disk
    /// the store keeps it).
    ttl: Option<(usize, Ttl)>,
    /// The groups' store, with the `disk` backend.
    disk: Option<KeyedStore>,
    /// On disk, the values distinct counts and extremes over a changelog hold.
    held: Option<Held>,
}

impl std::fmt::Debug for GroupBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupBy")
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl GroupBy {
    /// A `GROUP BY` with no groups yet, in memory or, given a place, on disk.
    ///
    /// # Errors
    /// Arrow's error when a `count_distinct` argument type cannot be row-encoded; the disk
    /// store does not open.
    pub fn new(c: GroupByConfig, place: Option<Place>) -> Result<Self> {
        let budget = place.as_ref().map(|p| p.budget.bytes());
        let held =
            budget.and_then(|b| Held::new(&c.aggregates, c.retracting, c.max_parallelism, b));
        let disk = place
            .map(|place| {
                let state = DiskState::create(place, keyed_store::FAMILIES)?;
                let mut store = KeyedStore::new(NAME, state, c.max_parallelism, c.ttl.map(|t| t.1));
                // No group is ever due: they may stay in memory until the barrier.
                store.defer_writes();
                // Without held values, an expiring group has nothing more to delete (a range
                // delete each would only slow reads).
                if held.is_some() {
                    store.owns();
                }
                Ok::<_, Error>(store)
            })
            .transpose()?;
        Ok(Self {
            disk,
            held,
            args: Arguments::new(&c.aggregates)?,
            changelog: changelog::is_changelog(&c.output),
            keys: c.keys,
            aggregates: c.aggregates,
            output: c.output,
            max_parallelism: c.max_parallelism,
            groups: HashMap::new(),
            retracting: c.retracting.then(HashMap::new),
            ttl: c.ttl.map(|(col, ttl)| (col, Ttl::new(ttl))),
        })
    }

    /// A group's result now; `None` when there is no such group.
    fn outcomes(&self, key: &[u8]) -> Option<Vec<Outcome>> {
        match &self.retracting {
            Some(groups) => groups
                .get(key)
                .map(|g| g.accs.iter().map(Retractable::outcome).collect()),
            None => self
                .groups
                .get(key)
                .map(|accs| accs.iter().map(Acc::outcome).collect()),
        }
    }

    /// Add row `row` (its arguments in `values`) to its group, or take it back (`sign` -1).
    ///
    /// # Errors
    /// On disk, a held value was not read first (an internal error).
    fn apply(&mut self, key: &[u8], values: &[Value<'_>], row: usize, sign: i64) -> Result<()> {
        if let Some(groups) = &mut self.retracting {
            if !groups.contains_key(key) {
                if sign < 0 {
                    // Nothing to take back from: the changelog retracts a row this group
                    // never had (state expired upstream); as Flink does, ignore it.
                    tracing::debug!(
                        "a GROUP BY was asked to take back a row of a group it does not hold"
                    );
                    return Ok(());
                }
                let accs = self.aggregates.iter().map(Retractable::new).collect();
                groups.insert(key.to_vec(), Group { rows: 0, accs });
            }
            let Some(g) = groups.get_mut(key) else {
                return Ok(());
            };
            g.rows += sign;
            for (acc, v) in g.accs.iter_mut().zip(values) {
                acc.update(v, row, sign);
            }
            if let Some(h) = &mut self.held {
                h.add(key, values, row, sign, &mut g.accs)?;
            }
            if g.rows <= 0 {
                groups.remove(key);
                if let Some(h) = &mut self.held {
                    h.drop_group(key);
                }
            }
            return Ok(());
        }
        // The key is copied only for a new group, not for every row.
        if !self.groups.contains_key(key) {
            let fresh = self.aggregates.iter().map(Acc::new).collect();
            self.groups.insert(key.to_vec(), fresh);
        }
        let Some(accs) = self.groups.get_mut(key) else {
            return Ok(());
        };
        for (acc, v) in accs.iter_mut().zip(values) {
            acc.update(v, row);
        }
        if let Some(h) = &mut self.held {
            h.add(key, values, row, 1, accs)?;
        }
        Ok(())
    }

    /// On disk, before a batch's rows apply: the accumulators of the groups it touches that
    /// have grown to [`held::SPILL`] values move them out of their group; the held values the
    /// rows name are read.
    fn read_held(&mut self, keys: &[&[u8]], rows: &[&[u8]], values: &[Value<'_>]) -> Result<()> {
        let (Some(h), Some(d)) = (&mut self.held, &self.disk) else {
            return Ok(());
        };
        let mut moved = weir_state::Batch::default();
        for key in keys {
            match &mut self.retracting {
                Some(groups) => {
                    if let Some(g) = groups.get_mut(*key) {
                        h.take(key, &mut g.accs, &mut moved);
                    }
                }
                None => {
                    if let Some(accs) = self.groups.get_mut(*key) {
                        h.take(key, accs, &mut moved);
                    }
                }
            }
        }
        let store = d.state.store();
        if !moved.is_empty() {
            store.write(moved)?;
        }
        let (groups, retracting) = (&self.groups, &self.retracting);
        h.read(store, rows, values, |key, at| match retracting {
            Some(groups) => groups
                .get(key)
                .and_then(|g| g.accs.get(at))
                .is_some_and(Holds::on_disk),
            None => groups
                .get(key)
                .and_then(|accs| accs.get(at))
                .is_some_and(Holds::on_disk),
        })
    }

    /// On disk, after a batch's rows applied: write the held values they changed, and set
    /// each extreme whose value went to the one now first or last.
    fn write_held(&mut self) -> Result<()> {
        let (Some(h), Some(d)) = (&mut self.held, &self.disk) else {
            return Ok(());
        };
        let (groups, retracting) = (&mut self.groups, &mut self.retracting);
        h.write(d.state.store(), |key, at, value| match retracting {
            Some(groups) => {
                if let Some(acc) = groups.get_mut(key).and_then(|g| g.accs.get_mut(at)) {
                    acc.found(value);
                }
            }
            None => {
                if let Some(acc) = groups.get_mut(key).and_then(|accs| accs.get_mut(at)) {
                    acc.found(value);
                }
            }
        })
    }
}

impl Operator for GroupBy {
    /// Its keys, its aggregates' arguments and the `stateTtl` time column; over a changelog
    /// its input whole (the change kind is the last column of a schema it does not keep).
    fn reads(&self, _needed: Option<&[usize]>) -> Option<Vec<usize>> {
        if self.retracting.is_some() {
            return None;
        }
        Some(super::window::aggregation_reads(
            &self.keys,
            &self.aggregates,
            self.ttl.as_ref().map(|t| t.0),
        ))
    }

    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let key_rows = self.keys.rows(&batch)?;
        let arrays = self.args.eval(&self.aggregates, &batch)?;
        let values = self.args.values(&self.aggregates, &arrays)?;
        let kinds = if self.retracting.is_some() {
            Some(changelog::kinds(&batch)?)
        } else {
            None
        };
        // Groups touched, in the order first touched.
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let keys: Vec<&[u8]> = (0..batch.num_rows())
            .map(|r| key_rows.row(r).data())
            .filter(|k| seen.insert(k))
            .collect();
        if let Some(d) = &mut self.disk {
            match &mut self.retracting {
                Some(groups) => d.load(&keys, groups)?,
                None => d.load(&keys, &mut self.groups)?,
            }
        }
        if self.held.is_some() {
            let rows: Vec<&[u8]> = (0..batch.num_rows())
                .map(|r| key_rows.row(r).data())
                .collect();
            self.read_held(&keys, &rows, &values)?;
        }
        // Each with its result before this batch (`None`: no such group).
        let touched: Vec<(&[u8], Option<Vec<Outcome>>)> =
            keys.iter().map(|k| (*k, self.outcomes(k))).collect();
        let times = super::event_times(&batch, self.ttl.as_ref().map(|t| t.0), NAME)?;
        let mut newest: HashMap<&[u8], Millis> = HashMap::new();
        for row in 0..batch.num_rows() {
            let key = key_rows.row(row).data();
            if let Some(ts) = times.filter(|ts| ts.is_valid(row)) {
                let t = newest.entry(key).or_insert(Millis::MIN);
                *t = (*t).max(ts.value(row));
            }
            let sign = match kinds.as_ref().map(|k| k[row]) {
                Some(k) if k.retracts() => -1,
                _ => 1,
            };
            self.apply(key, &values, row, sign)?;
        }
        self.write_held()?;
        let mut rows: Vec<(&[u8], Vec<Outcome>, Kind)> = Vec::new();
        for (key, before) in touched {
            match (before, self.outcomes(key)) {
                (None, Some(now)) => rows.push((key, now, Kind::Insert)),
                (Some(before), Some(now)) if before != now => {
                    rows.push((key, before, Kind::UpdateBefore));
                    rows.push((key, now, Kind::UpdateAfter));
                }
                (Some(before), None) => rows.push((key, before, Kind::Delete)),
                _ => {}
            }
        }
        match (&mut self.disk, &mut self.ttl) {
            (Some(d), _) => match &mut self.retracting {
                Some(groups) => d.store(groups, &newest, |_| None)?,
                None => d.store(&mut self.groups, &newest, |_| None)?,
            },
            (None, Some((_, ttl))) => {
                for (key, t) in newest {
                    ttl.touch(key, t);
                }
            }
            (None, None) => {}
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = self.keys.decode(rows.iter().map(|r| r.0))?;
        for (i, a) in self.aggregates.iter().enumerate() {
            columns.push(finish_outcomes(a, rows.iter().map(|r| r.1[i])));
        }
        if self.changelog {
            let kinds: Vec<Kind> = rows.iter().map(|r| r.2).collect();
            columns.push(changelog::column(&kinds));
        }
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, _out: &mut Output) -> Result<()> {
        if let Some(d) = &mut self.disk {
            let expired = d.expire(watermark)?;
            if let Some(h) = &mut self.held
                && expired > 0
            {
                // Their held values went with them, in the store only.
                h.forget();
            }
            return Ok(());
        }
        if let Some((_, ttl)) = &mut self.ttl {
            for key in ttl.expire(watermark) {
                self.groups.remove(&key);
                if let Some(groups) = &mut self.retracting {
                    groups.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        if let Some(d) = &self.disk {
            self.flush(d)?;
            let retracting = self.retracting.is_some();
            let holders = self.holders();
            return super::gather(|sink| {
                encode_store(
                    d.state.store(),
                    d.state.groups(),
                    retracting,
                    &holders,
                    sink,
                )
            });
        }
        match &self.retracting {
            Some(groups) => encode_keyed(
                NAME,
                self.max_parallelism,
                groups.iter().map(|(k, g)| (k.as_slice(), g)),
            ),
            // Each group with its newest row's event time when `stateTtl` tracks it.
            None => encode_keyed(
                NAME,
                self.max_parallelism,
                self.groups.iter().map(|(k, accs)| {
                    let last = self.ttl.as_ref().and_then(|(_, t)| t.last(k));
                    (k.as_slice(), (accs, last))
                }),
            ),
        }
    }

    fn capture(&self, portable: bool) -> Result<Capture> {
        match &self.disk {
            None => {
                let state = self.snapshot()?;
                Ok(Capture::Keyed(Box::new(move || Ok(state))))
            }
            Some(d) => {
                self.flush(d)?;
                let retracting = self.retracting.is_some();
                let holders = self.holders();
                super::capture_store(
                    &d.state,
                    portable,
                    keyed_store::FAMILIES,
                    move |store, groups, sink| {
                        encode_store(store, groups, retracting, &holders, sink)
                    },
                )
            }
        }
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        if self.retracting.is_some() {
            let restored = decode_keyed::<Group>(NAME, state)?;
            self.check_keys(restored.iter().map(|(k, _)| k.as_slice()))?;
            for (_, g) in &restored {
                retract::check_restored(&self.aggregates, g).map_err(wrong)?;
            }
            if let Some(d) = &mut self.disk {
                let mut restored = restored;
                if let Some(h) = &mut self.held {
                    move_held(
                        h,
                        d,
                        restored.iter_mut().map(|(k, g)| (&k[..], &mut g.accs[..])),
                    )?;
                }
                return d.put_all(restored.into_iter().map(|(k, g)| (k, g, None)), |_| None);
            }
            if let Some(groups) = &mut self.retracting {
                groups.extend(restored);
            }
            return Ok(());
        }
        let restored = decode_keyed::<(Vec<Acc>, Option<Millis>)>(NAME, state)?;
        self.check_keys(restored.iter().map(|(k, _)| k.as_slice()))?;
        for (_, (accs, _)) in &restored {
            check_restored(&self.aggregates, accs).map_err(wrong)?;
        }
        if let Some(d) = &mut self.disk {
            let mut restored = restored;
            if let Some(h) = &mut self.held {
                move_held(
                    h,
                    d,
                    restored.iter_mut().map(|(k, (a, _))| (&k[..], &mut a[..])),
                )?;
            }
            return d.put_all(
                restored
                    .into_iter()
                    .map(|(k, (accs, last))| (k, accs, last)),
                |_| None,
            );
        }
        for (key, (accs, last)) in restored {
            if let (Some((_, ttl)), Some(t)) = (&mut self.ttl, last) {
                ttl.touch(&key, t);
            }
            self.groups.insert(key, accs);
        }
        Ok(())
    }

    fn restore_disk(&mut self, fetched: Vec<Fetched>) -> Result<()> {
        // The empty store made at start closes before the restored one opens in its place.
        let Some(d) = self.disk.take() else {
            return Err(super::disk_state_refused(NAME));
        };
        let d = d.restore(fetched)?;
        // The stored keys and accumulators still fit the job (a sample: the first group).
        if let Some((key, v)) = d.sample()? {
            self.check_keys(std::iter::once(key.as_slice()))?;
            // Held values' disk forms are checked as the memory forms they stand for.
            let holders = self.holders();
            if self.retracting.is_some() {
                let (mut g, _) = d.decode::<Group>(&v)?;
                for &at in &holders {
                    if let Some(acc) = g.accs.get_mut(at) {
                        acc.give(Vec::new());
                    }
                }
                retract::check_restored(&self.aggregates, &g).map_err(wrong)?;
            } else {
                let (mut accs, _) = d.decode::<Vec<Acc>>(&v)?;
                for &at in &holders {
                    if let Some(acc) = accs.get_mut(at) {
                        acc.give(Vec::new());
                    }
                }
                check_restored(&self.aggregates, &accs).map_err(wrong)?;
            }
        }
        self.disk = Some(d);
        Ok(())
    }
}

impl GroupBy {
    /// The positions of the aggregates whose values are held apart on disk.
    fn holders(&self) -> Vec<usize> {
        self.held
            .as_ref()
            .map(|h| h.positions().collect())
            .unwrap_or_default()
    }

    /// Write the groups write-back holds in memory to `d`, so that the store holds them all.
    fn flush(&self, d: &KeyedStore) -> Result<()> {
        match &self.retracting {
            Some(groups) => d.flush(groups, |_| None),
            None => d.flush(&self.groups, |_| None),
        }
    }

    /// Restored keys must decode as the job's key columns: a changed key would otherwise
    /// miss every stored group.
    fn check_keys<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Result<()> {
        let keys: Vec<&[u8]> = keys.collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.keys.decode_stored(&keys).map(|_| ()).map_err(wrong)
    }
}

fn wrong(message: String) -> Error {
    Error::State {
        operator: NAME.into(),
        message,
    }
}

/// Every group of a store, streamed as the memory backend's checkpoint holds it: over inserts
/// each group's accumulators with its newest row's time, over a changelog (`retracting`) its
/// `Group`; the accumulators at positions `holders` with the values held apart.
fn encode_store(
    store: &weir_state::Store,
    groups: weir_state::KeyGroups,
    retracting: bool,
    holders: &[usize],
    sink: super::PieceSink<'_>,
) -> Result<()> {
    if retracting {
        let as_memory = |kg, key: &[u8], mut g: Group, _| {
            Held::gather(holders, store, kg, key, &mut g.accs)?;
            Ok(g)
        };
        KeyedStore::encode_store(NAME, store, groups, as_memory, sink)
    } else {
        let as_memory = |kg, key: &[u8], mut accs: Vec<Acc>, t| {
            Held::gather(holders, store, kg, key, &mut accs)?;
            Ok((accs, t))
        };
        KeyedStore::encode_store(NAME, store, groups, as_memory, sink)
    }
}

/// Move the values restored groups (in memory form) hold into the store, leaving their
/// accumulators in disk form: before the groups themselves are put.
fn move_held<'g, A: Holds + 'g>(
    held: &mut Held,
    d: &KeyedStore,
    groups: impl Iterator<Item = (&'g [u8], &'g mut [A])>,
) -> Result<()> {
    const CHUNK: usize = 65_536;
    let mut batch = weir_state::Batch::default();
    for (key, accs) in groups {
        held.take(key, accs, &mut batch);
        if batch.len() >= CHUNK {
            d.state.store().write(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        d.state.store().write(batch)?;
    }
    Ok(())
}

mod held;
mod retract;
#[cfg(test)]
mod tests;

use super::keyed_store::{self, KeyedStore};
use held::{Held, Holds};
use retract::{Group, Retractable};
