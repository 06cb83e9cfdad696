//! Top-N per partition (`ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) <= N`). Each
//! partition keeps only its best N rows (in Arrow's row format, whose byte order is the sort
//! order), so state is N rows per partition however many arrive. Two ways to emit them:
//!
//! - **At event time** (a window top-N: the partition includes the input's event time, e.g.
//!   `window_start, window_end` of a window's results): a partition's rows all carry one event
//!   time, so once the watermark has passed it the partition is complete and its best N rows
//!   are final: append-only.
//! - **Updating** (any other partition, over all time): the top changes as rows arrive, so
//!   after each input batch every rank of a touched partition whose row changed is emitted as
//!   a changelog ([`crate::changelog`]): `-U` the row that held the rank, `+U` the row that
//!   holds it now, `+I` for a rank filled for the first time. Over inserts, rows only ever
//!   enter the top N, so no rank empties and nothing is deleted.
//! - **Over a changelog** (an updating `GROUP BY`'s result, say: the ten auctions with the
//!   most bids so far), a row taken back (`-U`, `-D`) may leave the top N, and the next row
//!   must take its place, so every row of a partition is kept, not only the best N (as
//!   Flink's retracting top-N does; `stateTtl` bounds it), and a rank left empty is deleted
//!   (`-D`).
//!
//! Rows that compare equal on the `ORDER BY` columns are ranked by their whole encoded row,
//! so a replay after a restore picks the same rows (SQL leaves the choice open).
//!
//! Partitions live in memory or, with the `disk` backend, in a store
//! ([`super::keyed_store`]) from which each batch reads the partitions it touches; a window
//! top-N's partitions are due at their event time there.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::{Deserialize, Serialize};

use super::keyed_store::{self, KeyedStore};
use super::ttl::Ttl;
use super::{
    Capture, Input, KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed,
};
use crate::changelog::{self, Kind};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::KeyCodec;
use crate::state::disk::{DiskState, Fetched, Place};

const NAME: &str = "top-n";

/// Everything a top-N needs, as the planner checked it.
pub struct TopNConfig {
    /// The input's schema (a changelog's ends in its change kind).
    pub input: SchemaRef,
    /// `PARTITION BY` columns.
    pub partition: Vec<usize>,
    /// `ORDER BY` columns: (column, descending, nulls first).
    pub order: Vec<(usize, bool, bool)>,
    /// How many rows per partition.
    pub n: usize,
    /// The input's event-time column when `partition` includes it (a window top-N);
    /// `None` for an updating top-N.
    pub time_col: Option<usize>,
    /// The input's columns (but its change kind) and the row number (int64), in that
    /// order, then the change kind for an updating top-N.
    pub output: SchemaRef,
    /// `stateTtl` of an updating top-N: the input's event-time column, and how long a
    /// partition is kept after its newest row.
    pub ttl: Option<(usize, Millis)>,
    /// Key groups.
    pub max_parallelism: u32,
}

/// A kept row: its sort key (then the whole row, to break ties) and its event time. Encoded
/// as the tuple it once was (postcard writes a tuple struct's fields alone), its byte strings
/// as bytes ([`super::byte_strings`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ranked(
    #[serde(with = "serde_bytes")] Vec<u8>,
    #[serde(with = "serde_bytes")] Vec<u8>,
    Millis,
);

/// The top-N operator of one subtask.
pub struct TopN {
    cfg: TopNConfig,
    keys: KeyCodec,
    rows: KeyCodec,
    sort: RowConverter,
    /// partition -> its best rows so far, best first (on disk: the current batch's).
    parts: HashMap<Vec<u8>, Vec<Ranked>>,
    /// (event time, partition), to emit partitions in watermark order.
    due: BTreeSet<(Millis, Vec<u8>)>,
    watermark: Millis,
    counters: OperatorCounters,
    /// `stateTtl` of an updating top-N: each partition's newest row.
    ttl: Option<Ttl>,
    /// The input is a changelog: every row of a partition is kept, in order.
    log: bool,
    /// The partitions' store, with the `disk` backend.
    disk: Option<KeyedStore>,
}

impl TopN {
    /// A top-N with nothing kept, in memory or, given a place, on disk.
    ///
    /// # Errors
    /// A column type Arrow cannot row-encode; the disk store does not open.
    pub fn new(cfg: TopNConfig, place: Option<Place>) -> Result<Self> {
        let keys = KeyCodec::new(&cfg.input, cfg.partition.clone())?;
        let log = changelog::is_changelog(&cfg.input);
        if log && cfg.time_col.is_some() {
            return Err(Error::internal(
                "a top-N over a changelog cannot complete at event time",
            ));
        }
        let rows = KeyCodec::new(&cfg.input, (0..changelog::data_width(&cfg.input)).collect())?;
        let sort = RowConverter::new(
            cfg.order
                .iter()
                .map(|&(c, descending, nulls_first)| {
                    SortField::new_with_options(
                        cfg.input.field(c).data_type().clone(),
                        SortOptions {
                            descending,
                            nulls_first,
                        },
                    )
                })
                .collect(),
        )?;
        let ttl = cfg.ttl.map(|(_, t)| Ttl::new(t));
        let disk = place
            .map(|place| {
                let state = DiskState::create(place, keyed_store::FAMILIES)?;
                let ttl = cfg.ttl.map(|t| t.1);
                let mut store = KeyedStore::new(NAME, state, cfg.max_parallelism, ttl);
                // An updating top-N's partitions are never due: they may stay in memory until
                // the barrier. A window top-N's are fired from the store.
                if cfg.time_col.is_none() {
                    store.defer_writes();
                }
                Ok::<_, Error>(store)
            })
            .transpose()?;
        Ok(Self {
            disk,
            cfg,
            keys,
            rows,
            sort,
            parts: HashMap::new(),
            due: BTreeSet::new(),
            watermark: Millis::MIN,
            counters: OperatorCounters::default(),
            ttl,
            log,
        })
    }

    /// Keep the row (`sort`, `row`) of event time `time` in partition `key` if it ranks in the
    /// top N (over a changelog: always). With `saved` (an updating top-N), first save there
    /// the partition's top N as the batch found it, to emit the difference: a partition the
    /// batch leaves alone is not copied, and a row that does not rank is not even allocated
    /// (a bid below an auction's ten best, in q19). A restored row comes owned and is moved
    /// in; a row of an input batch is borrowed and copied only if it is kept.
    fn keep<'k>(
        &mut self,
        key: &'k [u8],
        (sort, row, time): (Cow<'_, [u8]>, Cow<'_, [u8]>, Millis),
        saved: Option<&mut Saved<'k>>,
    ) {
        let (n, log) = (self.cfg.n, self.log);
        // On disk a new partition is due when it is stored (`due`).
        let due = self.cfg.time_col.is_some() && self.disk.is_none();
        if let Some(list) = self.parts.get_mut(key) {
            let at = list.partition_point(|r| (r.0.as_slice(), r.1.as_slice()) <= (&*sort, &*row));
            if !log && at >= n {
                return;
            }
            if let Some(saved) = saved {
                save(saved, key, list, n);
            }
            if list.is_empty() && due {
                self.due.insert((time, key.to_vec()));
            }
            list.insert(at, Ranked(sort.into_owned(), row.into_owned(), time));
            if !log {
                list.truncate(n);
            }
            return;
        }
        if !log && n == 0 {
            return;
        }
        if let Some(saved) = saved {
            // It held nothing.
            save(saved, key, &[], n);
        }
        if due {
            self.due.insert((time, key.to_vec()));
        }
        self.parts.insert(
            key.to_vec(),
            vec![Ranked(sort.into_owned(), row.into_owned(), time)],
        );
    }

    /// Take one row of sort key `sort` and whole row `row` out of partition `key`, if it
    /// holds one (a row expired by `stateTtl` does not), saving the partition's top N first as
    /// [`Self::keep`] does.
    fn take_back<'k>(
        &mut self,
        key: &'k [u8],
        (sort, row): (&[u8], &[u8]),
        saved: Option<&mut Saved<'k>>,
    ) {
        let n = self.cfg.n;
        let Some(list) = self.parts.get_mut(key) else {
            return;
        };
        if let Ok(i) = list.binary_search_by(|r| (r.0.as_slice(), r.1.as_slice()).cmp(&(sort, row)))
        {
            if let Some(saved) = saved {
                save(saved, key, list, n);
            }
            list.remove(i);
        }
        if list.is_empty() {
            self.parts.remove(key);
        }
    }

    /// The whole rows in a partition's top N now, best first.
    fn held(&self, key: &[u8]) -> Vec<Vec<u8>> {
        self.parts
            .get(key)
            .map(|l| best(l, self.cfg.n))
            .unwrap_or_default()
    }

    /// An output batch of `rows` (whole rows with their rank) and, for an updating top-N,
    /// their change kinds.
    fn emit(&self, rows: &[(Vec<u8>, i64, Kind)], out: &mut Output) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut columns = self.rows.decode(rows.iter().map(|r| r.0.as_slice()))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.1),
        )));
        if self.cfg.time_col.is_none() {
            let kinds: Vec<Kind> = rows.iter().map(|r| r.2).collect();
            columns.push(changelog::column(&kinds));
        }
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&self.cfg.output), columns)?);
        Ok(())
    }
}

/// Partitions an updating top-N's batch changed, with their top N as the batch found them.
type Saved<'k> = HashMap<&'k [u8], Vec<Vec<u8>>>;

/// Saves partition `key`'s top `n` as the batch found it, before the batch's first change to
/// it (`list`), so that only partitions a batch changes are copied.
fn save<'k>(saved: &mut Saved<'k>, key: &'k [u8], list: &[Ranked], n: usize) {
    saved.entry(key).or_insert_with(|| best(list, n));
}

/// The whole rows of `list`'s top `n`, best first.
fn best(list: &[Ranked], n: usize) -> Vec<Vec<u8>> {
    list.iter().take(n).map(|r| r.1.clone()).collect()
}

/// When a window top-N's partition (`list`) is complete: at its rows' event time.
fn due(time_col: Option<usize>, list: &[Ranked]) -> Option<Millis> {
    time_col.and(list.first().map(|r| r.2))
}

fn rank(i: usize) -> i64 {
    i64::try_from(i + 1).unwrap_or(i64::MAX)
}

impl Operator for TopN {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let keys = self.keys.rows(&batch)?;
        let whole = self.rows.rows(&batch)?;
        let order: Vec<ArrayRef> = self
            .cfg
            .order
            .iter()
            .map(|&(c, _, _)| Arc::clone(batch.column(c)))
            .collect();
        let sort = self.sort.convert_columns(&order)?;
        let ts = super::event_times(&batch, self.cfg.time_col, "top-n")?;
        let kinds = if self.log {
            Some(changelog::kinds(&batch)?)
        } else {
            None
        };
        // Partitions touched, in the order first touched.
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let touched: Vec<&[u8]> = (0..batch.num_rows())
            .map(|r| keys.row(r).data())
            .filter(|k| seen.insert(k))
            .collect();
        if let Some(d) = &mut self.disk {
            d.load(&touched, &mut self.parts)?;
        }
        // An updating top-N: the partitions this batch changes, as it found them (no row of
        // one is late: lateness needs event time in the partition).
        let mut saved: Option<Saved<'_>> = ts.is_none().then(HashMap::new);
        let ttl_times = super::event_times(&batch, self.cfg.ttl.map(|t| t.0), "top-n")?;
        let mut newest: HashMap<&[u8], Millis> = HashMap::new();
        for r in 0..batch.num_rows() {
            let t = match ts {
                Some(ts) if ts.is_null(r) => Millis::MIN,
                Some(ts) => ts.value(r),
                None => Millis::MIN,
            };
            if ts.is_some() && t <= self.watermark {
                self.counters.late_records += 1;
                continue;
            }
            let key = keys.row(r).data();
            let (s, w) = (sort.row(r), whole.row(r));
            if kinds.as_ref().is_some_and(|k| k[r].retracts()) {
                self.take_back(key, (s.as_ref(), w.as_ref()), saved.as_mut());
                continue;
            }
            if let Some(tt) = ttl_times.filter(|tt| tt.is_valid(r)) {
                let t = newest.entry(key).or_insert(Millis::MIN);
                *t = (*t).max(tt.value(r));
            }
            self.keep(
                key,
                (s.as_ref().into(), w.as_ref().into(), t),
                saved.as_mut(),
            );
        }
        if let (Some(ttl), None) = (&mut self.ttl, &self.disk) {
            for (key, t) in &newest {
                ttl.touch(key, *t);
            }
        }
        let mut rows: Vec<(Vec<u8>, i64, Kind)> = Vec::new();
        // In the order the batch first touched them.
        let changed = touched
            .iter()
            .filter_map(|k| Some((*k, saved.as_mut()?.remove(k)?)));
        for (key, old) in changed.collect::<Vec<_>>() {
            let held = self.held(key);
            let now = held.len();
            for (i, new) in held.into_iter().enumerate() {
                match old.get(i) {
                    Some(o) if *o == new => {}
                    Some(o) => {
                        rows.push((o.clone(), rank(i), Kind::UpdateBefore));
                        rows.push((new, rank(i), Kind::UpdateAfter));
                    }
                    None => rows.push((new, rank(i), Kind::Insert)),
                }
            }
            // Ranks left empty (over a changelog only).
            for (i, o) in old.into_iter().enumerate().skip(now) {
                rows.push((o, rank(i), Kind::Delete));
            }
        }
        if let Some(d) = &mut self.disk {
            let time_col = self.cfg.time_col;
            d.store(&mut self.parts, &newest, |l: &Vec<Ranked>| due(time_col, l))?;
        }
        self.emit(&rows, out)
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        if let Some(d) = &mut self.disk {
            d.expire(self.watermark)?;
            let mut rows: Vec<(Vec<u8>, i64, Kind)> = Vec::new();
            for (_, _, list) in d.fire::<Vec<Ranked>>(self.watermark)? {
                for (i, Ranked(_, row, _)) in list.into_iter().enumerate() {
                    rows.push((row, rank(i), Kind::Insert));
                }
            }
            return self.emit(&rows, out);
        }
        if let Some(ttl) = &mut self.ttl {
            for key in ttl.expire(watermark) {
                self.parts.remove(&key);
            }
        }
        let mut rows: Vec<(Vec<u8>, i64, Kind)> = Vec::new();
        while let Some((t, _)) = self.due.first() {
            if *t > self.watermark {
                break;
            }
            let Some((_, key)) = self.due.pop_first() else {
                break;
            };
            for (i, Ranked(_, row, _)) in self
                .parts
                .remove(&key)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                rows.push((row, rank(i), Kind::Insert));
            }
        }
        self.emit(&rows, out)
    }

    fn snapshot(&self) -> Result<KeyedState> {
        if let Some(d) = &self.disk {
            self.flush(d)?;
            let with_times = self.ttl.is_some();
            return super::gather(|sink| {
                encode_store(d.state.store(), d.state.groups(), with_times, sink)
            });
        }
        match &self.ttl {
            // With each partition's newest row, so a restore expires it when this would have.
            Some(ttl) => encode_keyed(
                NAME,
                self.cfg.max_parallelism,
                self.parts
                    .iter()
                    .map(|(k, v)| (k.as_slice(), (v, ttl.last(k)))),
            ),
            None => encode_keyed(
                NAME,
                self.cfg.max_parallelism,
                self.parts.iter().map(|(k, v)| (k.as_slice(), v)),
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
                let with_times = self.ttl.is_some();
                super::capture_store(
                    &d.state,
                    portable,
                    keyed_store::FAMILIES,
                    move |store, groups, sink| encode_store(store, groups, with_times, sink),
                )
            }
        }
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        let restored: Vec<(Vec<u8>, Vec<Ranked>, Option<Millis>)> = if self.ttl.is_some() {
            decode_keyed::<(Vec<Ranked>, Option<Millis>)>(NAME, state)?
                .into_iter()
                .map(|(key, (list, last))| (key, list, last))
                .collect()
        } else {
            decode_keyed::<Vec<Ranked>>(NAME, state)?
                .into_iter()
                .map(|(key, list)| (key, list, None))
                .collect()
        };
        self.check_restored(
            restored.iter().map(|(k, _, _)| k.as_slice()),
            restored
                .iter()
                .flat_map(|(_, v, _)| v.iter().map(|r| r.1.as_slice())),
        )?;
        if let Some(d) = &mut self.disk {
            let time_col = self.cfg.time_col;
            return d.put_all(restored.into_iter(), |l: &Vec<Ranked>| due(time_col, l));
        }
        for (key, list, last) in restored {
            if let (Some(ttl), Some(t)) = (&mut self.ttl, last) {
                ttl.touch(&key, t);
            }
            for Ranked(sort, row, t) in list {
                self.keep(&key, (Cow::Owned(sort), Cow::Owned(row), t), None);
            }
        }
        Ok(())
    }

    fn restore_disk(&mut self, fetched: Vec<Fetched>) -> Result<()> {
        // The empty store made at start closes before the restored one opens in its place.
        let Some(d) = self.disk.take() else {
            return Err(super::disk_state_refused(NAME));
        };
        let d = d.restore(fetched)?;
        // The stored keys and rows still fit the job (a sample: the first partition).
        if let Some((key, v)) = d.sample()? {
            let (list, _) = d.decode::<Vec<Ranked>>(&v)?;
            self.check_restored(
                std::iter::once(key.as_slice()),
                list.iter().map(|r| r.1.as_slice()),
            )?;
        }
        self.disk = Some(d);
        Ok(())
    }

    fn counters(&self) -> OperatorCounters {
        self.counters
    }
}

impl TopN {
    /// Write the partitions write-back holds in memory to `d`, so that the store holds them
    /// all.
    fn flush(&self, d: &KeyedStore) -> Result<()> {
        let time_col = self.cfg.time_col;
        d.flush(&self.parts, |l: &Vec<Ranked>| due(time_col, l))
    }

    /// Restored partition keys and rows must decode as the job's columns: a changed query
    /// would otherwise rank garbage.
    fn check_restored<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
        rows: impl Iterator<Item = &'a [u8]>,
    ) -> Result<()> {
        let wrong = |message: String| Error::State {
            operator: NAME.into(),
            message,
        };
        let keys: Vec<&[u8]> = keys.collect();
        if !keys.is_empty() {
            self.keys.decode_stored(&keys).map_err(wrong)?;
        }
        let rows: Vec<&[u8]> = rows.collect();
        if !rows.is_empty() {
            self.rows.decode_stored(&rows).map_err(wrong)?;
        }
        Ok(())
    }
}

/// Every partition of a store, streamed as the memory backend's checkpoint holds it: its
/// rows, with its newest row's time when `stateTtl` tracks it (`with_times`).
fn encode_store(
    store: &weir_state::Store,
    groups: weir_state::KeyGroups,
    with_times: bool,
    sink: super::PieceSink<'_>,
) -> Result<()> {
    if with_times {
        KeyedStore::encode_store(
            NAME,
            store,
            groups,
            |_, _, l: Vec<Ranked>, t| Ok((l, t)),
            sink,
        )
    } else {
        KeyedStore::encode_store(NAME, store, groups, |_, _, l: Vec<Ranked>, _| Ok(l), sink)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

    use std::sync::Arc;

    use datafusion::arrow::array::{
        Array, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};

    use super::{TopN, TopNConfig};
    use crate::operator::tests::{BACKENDS, Places};
    use crate::operator::{Input, Operator, Output};

    /// A kept row encodes as the `(sort, row, time)` tuple it was before it was a struct.
    #[test]
    fn a_kept_row_is_the_tuple_it_was() {
        let r = super::Ranked(vec![1, 2], b"row".to_vec(), -5);
        let bytes = postcard::to_stdvec(&r).unwrap();
        let tuple = (vec![1u8, 2], b"row".to_vec(), -5i64);
        assert_eq!(bytes, postcard::to_stdvec(&tuple).unwrap());
        assert_eq!(postcard::from_bytes::<super::Ranked>(&bytes).unwrap(), r);
    }

    /// A top-N of `cfg` on `places`' backend.
    fn make(places: &Places, cfg: TopNConfig) -> TopN {
        TopN::new(cfg, places.place()).unwrap()
    }

    /// `op` checkpointed and restored into a fresh one of `cfg`.
    fn restart(places: &Places, op: &TopN, cfg: TopNConfig) -> TopN {
        let mut fresh = make(places, cfg);
        places.restore(op, &mut fresh);
        fresh
    }

    /// On disk, write-back keeps few partitions in the operator's map between batches (an
    /// updating top-N's; a window top-N's are all in the store): a barrier's capture writes
    /// them to the store, as the restarts through the store's files show.
    fn held_on_disk(op: &TopN) {
        if op.disk.is_none() {
            return;
        }
        if op.cfg.time_col.is_some() {
            assert!(op.parts.is_empty(), "window partitions left in memory");
        }
        assert!(
            op.parts.len() <= 16_384,
            "{} partitions in memory",
            op.parts.len()
        );
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new(
                "end",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    fn config(n: usize) -> TopNConfig {
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("rownum", DataType::Int64, false));
        TopNConfig {
            input: schema(),
            partition: vec![0, 1],
            order: vec![(2, true, false)],
            n,
            time_col: Some(1),
            output: Arc::new(Schema::new(fields)),
            ttl: None,
            max_parallelism: 128,
        }
    }

    fn batch(rows: &[(i64, i64, Option<i64>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// (group, end, value, row number), in output order.
    fn rows(out: &Output) -> Vec<(i64, i64, Option<i64>, i64)> {
        out.batches
            .iter()
            .flat_map(|b| {
                let g = b.column(0).as_primitive::<Int64Type>().clone();
                let e = b
                    .column(1)
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                    .clone();
                let v = b.column(2).as_primitive::<Int64Type>().clone();
                let n = b.column(3).as_primitive::<Int64Type>().clone();
                (0..b.num_rows())
                    .map(move |i| {
                        (
                            g.value(i),
                            e.value(i),
                            (!v.is_null(i)).then(|| v.value(i)),
                            n.value(i),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn each_partition_emits_its_best_n_once_the_watermark_passes_its_time() {
        for backend in BACKENDS {
            best_n_once_the_watermark_passes(&Places::new(backend, 0..=127));
        }
    }

    fn best_n_once_the_watermark_passes(places: &Places) {
        let backend = places.backend;
        let mut op = make(places, config(2));
        let mut out = Output::default();
        op.process(
            Input::ONLY,
            batch(&[(1, 10, Some(5)), (1, 10, Some(9)), (2, 10, Some(1))]),
            &mut out,
        )
        .unwrap();
        op.process(
            Input::ONLY,
            batch(&[(1, 10, Some(7)), (1, 20, Some(100)), (1, 10, None)]),
            &mut out,
        )
        .unwrap();
        op.on_watermark(9, &mut out).unwrap();
        held_on_disk(&op);
        assert!(out.batches.is_empty(), "nothing is complete before 10");
        // Checkpoint and restore into a fresh operator half way.
        let mut op = restart(places, &op, config(2));
        op.on_watermark(10, &mut out).unwrap();
        let mut got = rows(&out);
        got.sort_unstable();
        // Descending, nulls last; partition (2, 10) has one row.
        assert_eq!(
            got,
            [
                (1, 10, Some(7), 2),
                (1, 10, Some(9), 1),
                (2, 10, Some(1), 1)
            ],
            "{backend:?}"
        );
        // A row of a partition already emitted is late.
        op.process(Input::ONLY, batch(&[(1, 10, Some(50))]), &mut out)
            .unwrap();
        assert_eq!(op.counters().late_records, 1);
        let mut out = Output::default();
        op.on_watermark(i64::MAX, &mut out).unwrap();
        assert_eq!(rows(&out), [(1, 20, Some(100), 1)], "{backend:?}");
        assert!(op.snapshot().unwrap().is_empty());
        if let Some(d) = &op.disk {
            assert_eq!(d.count(), 0, "partitions left in the store");
        }
    }

    /// An updating top-N (partition without event time) against the top computed directly:
    /// random rows (unique ids, values with ties and nulls) in random batches, with a
    /// snapshot and restore into a fresh operator from a random point on; its changelog
    /// applied as a multiset (a `-U` must remove a row emitted before, right before its `+U`
    /// of the same rank) equals each partition's best N by value descending (nulls last),
    /// then id. Over inserts, and over a changelog that also takes rows back (`-D`, or `-U`
    /// before the next row's `+U`): then the top is of the rows left, and ranks that empty
    /// are deleted.
    #[test]
    fn an_updating_top_n_changelog_applied_equals_the_top_computed_directly() {
        for log in [false, true] {
            for backend in BACKENDS {
                let places = Places::new(backend, 0..=127);
                updating_top_n_equals_the_top_computed_directly(&places, log);
            }
        }
    }

    fn updating_top_n_equals_the_top_computed_directly(places: &Places, log: bool) {
        use std::collections::BTreeMap;

        use crate::changelog::{self, Kind};
        use crate::operator::tests::Rng;

        let data = vec![
            Field::new("g", DataType::Int64, false),
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ];
        let mut with_kind = data.clone();
        if log {
            with_kind.push(changelog::field_with_deletes());
        }
        let input = Arc::new(Schema::new(with_kind));
        let config = |n: usize| {
            let mut fields = data.clone();
            fields.push(Field::new("rownum", DataType::Int64, false));
            fields.push(if log {
                changelog::field_with_deletes()
            } else {
                changelog::field()
            });
            TopNConfig {
                input: Arc::clone(&input),
                partition: vec![0],
                order: vec![(2, true, false), (1, false, false)],
                n,
                time_col: None,
                output: Arc::new(Schema::new(fields)),
                ttl: None,
                max_parallelism: 128,
            }
        };
        type Row = (i64, i64, Option<i64>, i64);
        /// (group, id, value).
        type Value = (i64, i64, Option<i64>);
        for seed in 0..20u64 {
            let mut rng = Rng(seed);
            let n = 1 + usize::try_from(rng.next(4)).unwrap();
            let all: Vec<(i64, i64, Option<i64>)> = (0..1 + rng.next(200))
                .map(|id| {
                    let v = rng.next(9).cast_signed();
                    (
                        rng.next(4).cast_signed(),
                        id.cast_signed(),
                        (v != 8).then_some(v),
                    )
                })
                .collect();
            // Over a changelog, a row that is there is sometimes taken back first.
            let mut present: Vec<Value> = Vec::new();
            let mut changes: Vec<(Value, Kind)> = Vec::new();
            for row in &all {
                let k = rng.next(4);
                if log && k < 2 && !present.is_empty() {
                    let i = rng.next(present.len() as u64);
                    let old = present.swap_remove(usize::try_from(i).unwrap());
                    changes.push((old, [Kind::Delete, Kind::UpdateBefore][usize::from(k == 1)]));
                    changes.push((*row, [Kind::Insert, Kind::UpdateAfter][usize::from(k == 1)]));
                } else {
                    changes.push((*row, Kind::Insert));
                }
                present.push(*row);
            }
            let all = changes;
            let mut op = make(places, config(n));
            let restore_at = usize::try_from(rng.next(all.len() as u64)).unwrap();
            let mut table: BTreeMap<Row, usize> = BTreeMap::new();
            let mut at = 0;
            let mut restored = false;
            while at < all.len() {
                if at >= restore_at && !restored {
                    op = restart(places, &op, config(n));
                    restored = true;
                }
                let k = (1 + usize::try_from(rng.next(30)).unwrap()).min(all.len() - at);
                let part = &all[at..at + k];
                at += k;
                let mut columns: Vec<datafusion::arrow::array::ArrayRef> = vec![
                    Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0.0))),
                    Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0.1))),
                    Arc::new(part.iter().map(|r| r.0.2).collect::<Int64Array>()),
                ];
                if log {
                    let kinds: Vec<Kind> = part.iter().map(|r| r.1).collect();
                    columns.push(changelog::column(&kinds));
                }
                let b = RecordBatch::try_new(Arc::clone(&input), columns).unwrap();
                let mut out = Output::default();
                op.process(Input::ONLY, b, &mut out).unwrap();
                held_on_disk(&op);
                for b in &out.batches {
                    let col = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
                    let (g, id, v, rn) = (col(0), col(1), col(2), col(3));
                    let kinds = b.column(4).as_string::<i32>();
                    let rows: Vec<(Row, Kind)> = (0..b.num_rows())
                        .map(|i| {
                            (
                                (
                                    g.value(i),
                                    id.value(i),
                                    v.is_valid(i).then(|| v.value(i)),
                                    rn.value(i),
                                ),
                                Kind::parse(kinds.value(i)).unwrap(),
                            )
                        })
                        .collect();
                    for (i, (row, kind)) in rows.iter().enumerate() {
                        if *kind == Kind::UpdateBefore {
                            let next = &rows[i + 1];
                            assert_eq!(next.1, Kind::UpdateAfter, "seed {seed}");
                            assert_eq!((next.0.0, next.0.3), (row.0, row.3), "seed {seed}");
                        }
                        if kind.retracts() {
                            let c = table.get_mut(row).unwrap_or_else(|| {
                                panic!("seed {seed}: {row:?} retracted, never emitted")
                            });
                            *c -= 1;
                            if *c == 0 {
                                table.remove(row);
                            }
                        } else {
                            *table.entry(*row).or_default() += 1;
                        }
                    }
                }
            }
            let mut by_group: BTreeMap<i64, Vec<(i64, Option<i64>)>> = BTreeMap::new();
            for (g, id, v) in &present {
                by_group.entry(*g).or_default().push((*id, *v));
            }
            let mut want: BTreeMap<Row, usize> = BTreeMap::new();
            for (g, mut rows) in by_group {
                // Value descending with nulls last, then id ascending.
                rows.sort_by_key(|(id, v)| (v.is_none(), std::cmp::Reverse(*v), *id));
                for (i, (id, v)) in rows.into_iter().take(n).enumerate() {
                    *want
                        .entry((g, id, v, i64::try_from(i + 1).unwrap()))
                        .or_default() += 1;
                }
            }
            let backend = places.backend;
            assert_eq!(table, want, "seed {seed}, n {n}, log {log}, {backend:?}");
        }
    }

    /// `stateTtl` of an updating top-N: a partition without a row for the TTL of event time
    /// is forgotten, so its next row takes rank 1 afresh (`+I`), also after a restore.
    #[test]
    fn an_updating_partition_without_rows_for_the_ttl_is_forgotten() {
        for backend in BACKENDS {
            partitions_expire_by_ttl(&Places::new(backend, 0..=127));
        }
    }

    fn partitions_expire_by_ttl(places: &Places) {
        use crate::changelog;

        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("rownum", DataType::Int64, false));
        fields.push(changelog::field());
        let cfg = || TopNConfig {
            input: schema(),
            partition: vec![0],
            order: vec![(2, true, false)],
            n: 1,
            time_col: None,
            output: Arc::new(Schema::new(fields.clone())),
            max_parallelism: 128,
            ttl: Some((1, 5)),
        };
        let kinds = |out: &Output| -> Vec<(i64, Option<i64>, String)> {
            out.batches
                .iter()
                .flat_map(|b| {
                    let g = b.column(0).as_primitive::<Int64Type>().clone();
                    let v = b.column(2).as_primitive::<Int64Type>().clone();
                    let c = b.column(4).as_string::<i32>().clone();
                    (0..b.num_rows())
                        .map(move |i| {
                            (
                                g.value(i),
                                (!v.is_null(i)).then(|| v.value(i)),
                                c.value(i).to_string(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let mut op = make(places, cfg());
        let mut out = Output::default();
        op.process(
            Input::ONLY,
            batch(&[(1, 0, Some(9)), (2, 8, Some(9))]),
            &mut out,
        )
        .unwrap();
        op.on_watermark(10, &mut out).unwrap();
        let mut op = restart(places, &op, cfg());
        let mut out = Output::default();
        op.process(
            Input::ONLY,
            batch(&[(1, 11, Some(1)), (2, 12, Some(1))]),
            &mut out,
        )
        .unwrap();
        // Partition 1 (newest row at 0) expired at 10: its 1 is the top again; partition 2
        // (newest at 8) still holds 9, which 1 does not beat.
        assert_eq!(
            kinds(&out),
            [(1, Some(1), "+I".to_string())],
            "{:?}",
            places.backend
        );
        // Both expire at the end of time, and leave nothing behind.
        op.on_watermark(i64::MAX, &mut Output::default()).unwrap();
        assert!(op.snapshot().unwrap().is_empty(), "{:?}", places.backend);
    }
}
