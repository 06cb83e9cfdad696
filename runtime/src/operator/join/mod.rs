//! Joins of two streams on equal keys: each side's rows are kept per key, and a row arriving
//! on one side is joined at once with the other side's rows of its key.
//!
//! How long a row is kept is what makes a streaming join affordable:
//! - **Time-bounded** (an interval join, or a window join, which is an interval join whose
//!   bounds are both 0 on the window end): the condition bounds `left.t - right.t` to
//!   `[lo, hi]` on the two sides' event-time columns, so a row can no longer match once the
//!   watermark has passed the last time a partner could have. It is dropped then, and, for
//!   an outer side, emitted padded with nulls if it never matched. The output is
//!   append-only; its event time is the left row's (the right's for a right join), and the
//!   operator holds its output watermark back by as far as a match can lie behind the
//!   watermark, so that nothing after it sees the results as late. Rows arriving behind the
//!   watermark (they could only join rows already dropped) are dropped and counted as late,
//!   as Flink's interval join does.
//! - **Bounded by a row's own column**: a condition that bounds `left.t - right.t` one way
//!   only, with the other way bounded by a timestamp column of the rows themselves against
//!   the other side's event time (`b.t BETWEEN a.t AND a.expires`: an auction pairs with
//!   bids up to its own expiry, a bid with auctions that began before it). Each row then
//!   expires when the watermark passes the last time a partner could have, its own column's
//!   value for the bounded side, as in an interval join; rows behind the watermark are
//!   dropped as late too. The output carries no event time (a pair may come any time before
//!   the row's own bound) and is append-only. Only for an inner join over inserts; otherwise
//!   it is a regular join, as before.
//! - **Regular** (no time bound): every row is kept until `stateTtl` of event time has
//!   passed since it arrived, for ever without one. An outer regular join never learns that
//!   a row will stay unmatched, so its output is a changelog ([`crate::changelog`]): an outer
//!   side's row without a partner is emitted padded with nulls at once (`+I`), and retracted
//!   (`-D`) just before its first pair (`+I`) when a partner arrives.
//!
//! A regular join also reads changelogs (an updating `GROUP BY`'s result, another outer
//! join's): a row added (`+I`, `+U`) joins as above; a row taken back (`-U`, `-D`) leaves its
//! side's state and each pair it made is retracted (`-D`), as Flink's streaming join does. So
//! that an outer side's row is padded again when its last partner leaves, every kept row
//! counts its partners. The output is then a changelog of inserts and deletions (an update
//! upstream becomes the old pairs' deletions and the new pairs' inserts, which is always
//! right, whereas pairing `-U` with `+U` would need both to make the same number of pairs).
//! Interval and window joins read inserts only (refused when planning otherwise): a
//! retraction could arrive after its row has expired.
//!
//! State is per key, so each side is shuffled by its join keys and a key's rows of both
//! sides meet in one subtask; a checkpoint stores every kept row under its key's group. The
//! rows live in memory ([`memory`]) or, with the `disk` backend, in a store ([`disk`]);
//! [`sides`] is what the logic here sees of either.
//!
//! Once an input has ended (a bounded source read to its end: a side table in a file),
//! nothing can join the other input's rows any more, so they are no longer kept: the join
//! of a stream with a bounded table keeps only the table.

mod disk;
mod memory;
mod sides;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::{Schema, SchemaRef, TimestampMillisecondType};
use foldhash::{HashMap, HashMapExt};
use serde::{Deserialize, Serialize};

use super::{
    Capture, Input, KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed,
};
use crate::changelog::{self, Kind};
use crate::error::{Error, Result};
use crate::expr::CompiledExpr;
use crate::ids::Millis;
use crate::keys::KeyCodec;
use crate::state::disk::{DiskState, Fetched, Place};
use disk::DiskSides;
use sides::Sides;

/// Which rows without a partner still appear in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Only matched pairs.
    Inner,
    /// And every left row that matched nothing, with nulls for the right.
    Left,
    /// And every right row that matched nothing, with nulls for the left.
    Right,
    /// Both.
    Full,
}

impl JoinKind {
    /// Whether unmatched rows of side `side` (0 left, 1 right) are emitted.
    #[must_use]
    pub fn keeps_unmatched(self, side: usize) -> bool {
        matches!(
            (self, side),
            (Self::Full, _) | (Self::Left, 0) | (Self::Right, 1)
        )
    }
}

/// The time bound of an interval join: `lo <= left.t - right.t <= hi`, on each side's
/// event-time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    /// Least `left.t - right.t`.
    pub lo: Millis,
    /// Greatest `left.t - right.t`.
    pub hi: Millis,
}

/// A bound a row sets by a timestamp column of its own: a row of this side pairs only with
/// the other side's rows at event time `<= row[col] + offset`, so it expires once the
/// watermark passes that (null: it pairs with nothing and is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBound {
    /// The column, in this side's input.
    pub col: usize,
    /// Added to the column's value.
    pub offset: Millis,
}

/// Everything a join needs, as the planner checked it.
pub struct JoinConfig {
    /// Inner or outer.
    pub kind: JoinKind,
    /// Input schemas, left then right.
    pub inputs: [SchemaRef; 2],
    /// Key columns of each input, pairwise of equal types.
    pub keys: [Vec<usize>; 2],
    /// Event-time column of each input, if it has one (both, for a time bound).
    pub time_cols: [Option<usize>; 2],
    /// The time bound, for an interval (or window) join; one way may be open (`lo` at
    /// `MIN`, `hi` at `MAX`) where a row bound of the side it would expire closes it.
    pub time: Option<TimeBound>,
    /// Each side's row bound ([`RowBound`]), with a time bound.
    pub row_bounds: [Option<RowBound>; 2],
    /// The rest of the join condition, over the output's columns; a pair joins only when it
    /// is true.
    pub filter: Option<CompiledExpr>,
    /// Left's columns, then right's.
    pub output: SchemaRef,
    /// Which input's event time the output carries (none for a regular join).
    pub time_from: Option<usize>,
    /// For a regular join: how long after its event time a row is kept (a side without
    /// event time keeps its rows for ever).
    pub ttl: Option<Millis>,
    /// Key groups.
    pub max_parallelism: u32,
}

/// One kept row: all its columns (but a changelog's change kind) in Arrow's row format, its
/// event time, and how many rows of the other side it has joined (an outer side's unmatched
/// rows are padded).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    #[serde(with = "serde_bytes")]
    row: Vec<u8>,
    time: Millis,
    /// A varint in the checkpoint: one written when this was a `matched: bool` (a byte 0 or
    /// 1) reads as 0 or 1 partners, which is all an append-only input ever needed.
    matches: u32,
    /// When it expires in memory (`None`: never), as it was kept (set by the memory side;
    /// the disk side keeps it in its timers instead). Not in the checkpoint: a
    /// restore works it out again from the row and this job's bounds, so a checkpoint
    /// taken before a bound changed, or by a regular join, restores under the new one.
    #[serde(skip)]
    until: Option<Millis>,
}

/// The join operator of one subtask.
pub struct Join {
    cfg: JoinConfig,
    keys: [KeyCodec; 2],
    /// Whole rows of each side, to keep them and build output from them.
    rows: [KeyCodec; 2],
    sides: Sides,
    watermark: Millis,
    counters: OperatorCounters,
    /// A regular outer join, or one over a changelog: the output is a changelog (see the
    /// module docs).
    changelog: bool,
    /// Which inputs are changelogs (their last column is the change kind).
    logs: [bool; 2],
    /// Each input's columns but the change kind: what is kept and output.
    data: [SchemaRef; 2],
    /// Which inputs have ended ([`Operator::on_input_end`]); not checkpointed: a restored
    /// job hears of an ended input again.
    ended: [bool; 2],
}

impl Join {
    /// A join with nothing kept, in memory or, given a place, on disk.
    ///
    /// # Errors
    /// A column type Arrow cannot row-encode; the disk store does not open.
    pub fn new(cfg: JoinConfig, place: Option<Place>) -> Result<Self> {
        let codec = |side: usize, cols: Vec<usize>| KeyCodec::new(&cfg.inputs[side], cols);
        let logs = [0, 1].map(|s| changelog::is_changelog(&cfg.inputs[s]));
        let data = [0, 1].map(|s| {
            let width = changelog::data_width(&cfg.inputs[s]);
            let fields: Vec<_> = cfg.inputs[s].fields().iter().take(width).cloned().collect();
            SchemaRef::new(Schema::new(fields))
        });
        let all = |side: usize| (0..data[side].fields().len()).collect::<Vec<_>>();
        let keys = [
            codec(0, cfg.keys[0].clone())?,
            codec(1, cfg.keys[1].clone())?,
        ];
        let rows = [codec(0, all(0))?, codec(1, all(1))?];
        let changelog = changelog::is_changelog(&cfg.output);
        if logs.iter().any(|l| *l) && (!changelog || cfg.time.is_some()) {
            return Err(Error::internal(
                "a join over a changelog must be a regular join with a changelog output",
            ));
        }
        let sides = match place {
            None => Sides::Memory(Box::default()),
            Some(place) => Sides::Disk(Box::new(DiskSides::new(
                DiskState::create(place, disk::FAMILIES)?,
                Expiry::of(&cfg),
                cfg.max_parallelism,
            ))),
        };
        Ok(Self {
            changelog,
            logs,
            data,
            ended: [false; 2],
            cfg,
            keys,
            rows,
            sides,
            watermark: Millis::MIN,
            counters: OperatorCounters::default(),
        })
    }

    /// When each row of `batch` (from `side`, at `times`) can no longer be joined: the
    /// watermark at which no partner can arrive any more (`None`: kept for ever).
    fn expiries(
        &self,
        side: usize,
        batch: &RecordBatch,
        times: &[Millis],
    ) -> Result<Vec<Option<Millis>>> {
        let by_time = self.by_time(side, times.iter().copied());
        let Some(rb) = self.cfg.row_bounds[side] else {
            return Ok(by_time.collect());
        };
        let own = batch
            .column(rb.col)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("a join's row bound is not a millisecond timestamp"))?;
        Ok(by_time
            .enumerate()
            .map(|(r, at)| {
                // Null: the comparison is never true, so nothing pairs with it.
                let mine = if own.is_null(r) {
                    Millis::MIN
                } else {
                    own.value(r).saturating_add(rb.offset)
                };
                Some(at.map_or(mine, |at| at.min(mine)))
            })
            .collect())
    }

    /// Expiries of rows of `side` at `times` by the time bound or `stateTtl` alone.
    fn by_time(
        &self,
        side: usize,
        times: impl Iterator<Item = Millis>,
    ) -> impl Iterator<Item = Option<Millis>> {
        let expiry = Expiry::of(&self.cfg);
        times.map(move |t| expiry.at(side, t))
    }

    /// [`Self::expiries`] of restored rows of `side`, decoded a chunk at a time.
    fn restored_expiries(&self, side: usize, kept: &[&Kept]) -> Result<Vec<Option<Millis>>> {
        if self.cfg.row_bounds[side].is_none() {
            return Ok(self.by_time(side, kept.iter().map(|k| k.time)).collect());
        }
        let mut out = Vec::with_capacity(kept.len());
        for chunk in kept.chunks(8192) {
            let cols = self.rows[side].decode(chunk.iter().map(|k| k.row.as_slice()))?;
            let batch = RecordBatch::try_new(Arc::clone(&self.data[side]), cols)?;
            let times: Vec<Millis> = chunk.iter().map(|k| k.time).collect();
            out.extend(self.expiries(side, &batch, &times)?);
        }
        Ok(out)
    }

    /// Whether rows at `a` (side `side`) and `b` (the other side) satisfy the time bound.
    fn in_bound(&self, side: usize, a: Millis, b: Millis) -> bool {
        let Some(bound) = self.cfg.time else {
            return true;
        };
        let d = if side == 0 {
            a.saturating_sub(b)
        } else {
            b.saturating_sub(a)
        };
        (bound.lo..=bound.hi).contains(&d)
    }

    /// Event time of each row of `batch` from `side` (`MIN` without an event-time column,
    /// or where it is null).
    fn times(&self, side: usize, batch: &RecordBatch) -> Result<Vec<Millis>> {
        let Some(col) = self.cfg.time_cols[side] else {
            return Ok(vec![Millis::MIN; batch.num_rows()]);
        };
        let ts = batch
            .column(col)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("join time column is not a millisecond timestamp"))?;
        Ok((0..batch.num_rows())
            .map(|r| {
                if ts.is_null(r) {
                    Millis::MIN
                } else {
                    ts.value(r)
                }
            })
            .collect())
    }

    /// Read the keys of `batch`'s rows (`keys`, from `side`; but null ones) into `sides`.
    fn load(
        &mut self,
        sides: &[usize],
        keys: &datafusion::arrow::row::Rows,
        null_key: &[bool],
    ) -> Result<()> {
        // Memory has every key at hand: nothing to gather on its hot path.
        if matches!(self.sides, Sides::Memory(_)) {
            return Ok(());
        }
        let present = (0..null_key.len()).filter(|r| !null_key[*r]);
        let rows: Vec<_> = present.map(|r| keys.row(r)).collect();
        for &s in sides {
            self.sides.load(s, rows.iter().map(AsRef::as_ref))?;
        }
        Ok(())
    }

    /// Output rows of `pairs` (row of `batch` on `side`, kept row of the other side), left
    /// columns first, each of change kind `kind` in a changelog; `None` for a side pads it
    /// with nulls.
    fn assemble(
        &self,
        side: usize,
        batch: &RecordBatch,
        pairs: &[(u32, Option<&[u8]>)],
        kind: Kind,
    ) -> Result<RecordBatch> {
        let idx: UInt32Array = pairs.iter().map(|p| p.0).collect();
        let this_cols: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .take(self.data[side].fields().len())
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<_, _>>()?;
        let other_cols = self.decode(1 - side, pairs.iter().map(|p| p.1), pairs.len())?;
        self.output(side, this_cols, other_cols, kind)
    }

    /// Which rows of `batch` (from `side`) have a null key: they join nothing.
    fn null_keys(&self, side: usize, batch: &RecordBatch) -> Vec<bool> {
        (0..batch.num_rows())
            .map(|r| {
                self.cfg.keys[side]
                    .iter()
                    .any(|&c| batch.column(c).is_null(r))
            })
            .collect()
    }

    /// Rows of `batch` (from `side`, of a changelog) taken back: each leaves the side's
    /// state, its pairs are retracted, and a row of either side left without a partner is
    /// padded again (an outer side's) or retracted padded.
    fn take_back(&mut self, side: usize, batch: &RecordBatch, out: &mut Output) -> Result<()> {
        let other = 1 - side;
        let keys = self.keys[side].rows(batch)?;
        let whole = self.rows[side].rows(batch)?;
        let null_key = self.null_keys(side, batch);
        self.load(&[side, other], &keys, &null_key)?;
        // Each row out of its side's state. What it made is known when it was kept, when
        // it never could be (a null key), or when the other input has ended (its rows are
        // all still kept, so the pairs are found again). A row that is not there otherwise
        // expired by `stateTtl`, and with it what it joined: it is ignored, as a retraction
        // of rows never written would be wrong too (TTL trades such exactness for bounded
        // state, as in Flink).
        let removed: Vec<Option<Kept>> = (0..batch.num_rows())
            .map(|r| {
                (!null_key[r])
                    .then(|| {
                        self.sides
                            .remove(side, keys.row(r).as_ref(), whole.row(r).as_ref())
                    })
                    .flatten()
            })
            .collect();
        let known: Vec<bool> = (0..batch.num_rows())
            .map(|r| removed[r].is_some() || null_key[r] || self.ended[other])
            .collect();
        let mut cand: Vec<(u32, usize)> = Vec::new();
        let mut cand_rows: Vec<(u32, Option<&[u8]>)> = Vec::new();
        for r in 0..batch.num_rows() {
            if null_key[r] || !known[r] {
                continue;
            }
            let Some(list) = self.sides.get(other, keys.row(r).as_ref()) else {
                continue;
            };
            // Every kept row of the key: a join over a changelog has no time bound
            // (`Join::new` refuses one).
            let r32 = u32::try_from(r).map_err(|_| Error::internal("batch too large"))?;
            for (k, kept) in list.iter().enumerate() {
                cand.push((r32, k));
                cand_rows.push((r32, Some(kept.row.as_slice())));
            }
        }
        let mut pairs = vec![0u32; batch.num_rows()];
        // The other side's rows that lose their last partner here.
        let mut alone: Vec<Vec<u8>> = Vec::new();
        if !cand.is_empty() {
            let joined = self.assemble(side, batch, &cand_rows, Kind::Delete)?;
            let ok = self.accept(&joined)?;
            let pad = self.cfg.kind.keeps_unmatched(other);
            for (&(r, k), &yes) in cand.iter().zip(&ok) {
                if !yes {
                    continue;
                }
                pairs[r as usize] += 1;
                if let Some(kept) = self.sides.get_mut(other, keys.row(r as usize).as_ref(), k) {
                    kept.matches = kept.matches.saturating_sub(1);
                    if pad && kept.matches == 0 {
                        alone.push(kept.row.clone());
                    }
                }
            }
            let gone = filter_record_batch(&joined, &BooleanArray::from(ok))?;
            if gone.num_rows() > 0 {
                out.batches.push(gone);
            }
        }
        let mut lone: Vec<(u32, Option<&[u8]>)> = Vec::new();
        for r in 0..batch.num_rows() {
            let had = removed[r].as_ref().map_or(pairs[r], |k| k.matches);
            if known[r] && had == 0 && self.cfg.kind.keeps_unmatched(side) {
                // It was output padded (no partner), so that row goes.
                lone.push((
                    u32::try_from(r).map_err(|_| Error::internal("batch too large"))?,
                    None,
                ));
            }
        }
        if !lone.is_empty() {
            out.batches
                .push(self.assemble(side, batch, &lone, Kind::Delete)?);
        }
        self.padded(other, &alone, Kind::Insert, out)?;
        self.sides.flush()
    }

    /// Kept rows of `side`, each padded with nulls for the other side, as changes of kind
    /// `kind`.
    fn padded(&self, side: usize, rows: &[Vec<u8>], kind: Kind, out: &mut Output) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let this = self.decode(side, rows.iter().map(|r| Some(r.as_slice())), n)?;
        let pad = nulls(&self.data[1 - side], n);
        out.batches.push(self.output(side, this, pad, kind)?);
        Ok(())
    }

    /// An output batch of `side`'s columns and the other side's, left's first (and, for a
    /// changelog, every row's change kind `kind`).
    fn output(
        &self,
        side: usize,
        this: Vec<ArrayRef>,
        other: Vec<ArrayRef>,
        kind: Kind,
    ) -> Result<RecordBatch> {
        let n = this.first().map_or(0, |c| c.len());
        let (l, r) = if side == 0 {
            (this, other)
        } else {
            (other, this)
        };
        let mut columns: Vec<ArrayRef> = l.into_iter().chain(r).collect();
        if self.changelog {
            columns.push(changelog::column(&vec![kind; n]));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.cfg.output), columns)?)
    }

    /// Kept rows of `side` as columns, nulls where a row is `None`.
    fn decode<'a>(
        &self,
        side: usize,
        rows: impl Iterator<Item = Option<&'a [u8]>> + Clone,
        n: usize,
    ) -> Result<Vec<ArrayRef>> {
        if rows.clone().all(|r| r.is_none()) {
            return Ok(nulls(&self.data[side], n));
        }
        if rows.clone().all(|r| r.is_some()) {
            return self.rows[side].decode(rows.flatten());
        }
        // Some padded: decode the present ones and take them into place.
        let present: Vec<&[u8]> = rows.clone().flatten().collect();
        let cols = self.rows[side].decode(present)?;
        let mut next = 0u32;
        let idx: UInt32Array = rows
            .map(|r| {
                r.map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        cols.iter()
            .map(|c| Ok(take(c.as_ref(), &idx, None)?))
            .collect()
    }

    /// The rows of `out` the residual condition keeps (all of them without one).
    fn accept(&self, out: &RecordBatch) -> Result<Vec<bool>> {
        let Some(f) = &self.cfg.filter else {
            return Ok(vec![true; out.num_rows()]);
        };
        let mask = f.eval(out)?;
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| Error::internal(format!("join condition `{}` is not boolean", f.sql)))?;
        Ok((0..mask.len())
            .map(|i| mask.is_valid(i) && mask.value(i))
            .collect())
    }
}

/// What decides when a kept row expires: the time bound, or else `stateTtl`.
#[derive(Debug, Clone, Copy)]
struct Expiry {
    time: Option<TimeBound>,
    ttl: Option<Millis>,
}

impl Expiry {
    fn of(cfg: &JoinConfig) -> Self {
        Self {
            time: cfg.time,
            ttl: cfg.ttl,
        }
    }

    /// See [`Join::expiry`].
    fn at(self, side: usize, t: Millis) -> Option<Millis> {
        expiry(self.time, self.ttl, side, t)
    }
}

fn expiry(time: Option<TimeBound>, ttl: Option<Millis>, side: usize, t: Millis) -> Option<Millis> {
    match (time, ttl) {
        // A left row at t pairs with right rows at [t - hi, t - lo].
        (Some(b), _) if side == 0 => Some(t.saturating_sub(b.lo)),
        // A right row at t pairs with left rows at [t + lo, t + hi].
        (Some(b), _) => Some(t.saturating_add(b.hi)),
        // Without event time (`MIN`), a row is never too old.
        (None, Some(_)) if t == Millis::MIN => None,
        (None, Some(ttl)) => Some(t.saturating_add(ttl)),
        (None, None) => None,
    }
}

fn nulls(schema: &SchemaRef, n: usize) -> Vec<ArrayRef> {
    schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), n))
        .collect()
}

impl Join {
    /// Rows of `batch` (from `side`) added: joined with the other side's kept rows, and
    /// kept.
    fn add(&mut self, side: usize, batch: &RecordBatch, out: &mut Output) -> Result<()> {
        let other = 1 - side;
        let keys = self.keys[side].rows(batch)?;
        let times = self.times(side, batch)?;
        let null_key = self.null_keys(side, batch);
        self.load(&[other], &keys, &null_key)?;
        let bounded = self.cfg.time.is_some();
        // Candidate pairs: (row, the other side's key, index of its kept row).
        let mut cand: Vec<(u32, usize)> = Vec::new();
        let mut cand_rows: Vec<(u32, Option<&[u8]>)> = Vec::new();
        let mut late = vec![false; batch.num_rows()];
        for r in 0..batch.num_rows() {
            if bounded && times[r] <= self.watermark {
                late[r] = true;
                continue;
            }
            if null_key[r] {
                continue;
            }
            let Some(list) = self.sides.get(other, keys.row(r).as_ref()) else {
                continue;
            };
            for (k, kept) in list.iter().enumerate() {
                if self.in_bound(side, times[r], kept.time) {
                    let r32 = u32::try_from(r).map_err(|_| Error::internal("batch too large"))?;
                    cand.push((r32, k));
                    cand_rows.push((r32, Some(kept.row.as_slice())));
                }
            }
        }
        let mut matches = vec![0u32; batch.num_rows()];
        if !cand.is_empty() {
            let joined = self.assemble(side, batch, &cand_rows, Kind::Insert)?;
            let ok = self.accept(&joined)?;
            // The other side's rows matched for the first time: a changelog emitted them
            // padded, and retracts that now.
            let mut first_match: Vec<Vec<u8>> = Vec::new();
            let retract = self.changelog && self.cfg.kind.keeps_unmatched(other);
            for (&(r, k), &yes) in cand.iter().zip(&ok) {
                if yes {
                    matches[r as usize] += 1;
                    let key = keys.row(r as usize);
                    if let Some(kept) = self.sides.get_mut(other, key.as_ref(), k) {
                        if retract && kept.matches == 0 {
                            first_match.push(kept.row.clone());
                        }
                        kept.matches = kept.matches.saturating_add(1);
                    }
                }
            }
            self.padded(other, &first_match, Kind::Delete, out)?;
            let kept = filter_record_batch(&joined, &BooleanArray::from(ok))?;
            if kept.num_rows() > 0 {
                out.batches.push(kept);
            }
        }
        let n_late = late.iter().filter(|l| **l).count();
        self.counters.late_records += n_late as u64;
        let whole = self.rows[side].rows(batch)?;
        let expiries = self.expiries(side, batch, &times)?;
        let mut padded: Vec<(u32, Option<&[u8]>)> = Vec::new();
        for r in 0..batch.num_rows() {
            if late[r] {
                continue;
            }
            let r32 = u32::try_from(r).map_err(|_| Error::internal("batch too large"))?;
            // Nothing can join a row once the other input has ended.
            let expired = self.ended[other] || expiries[r].is_some_and(|at| at <= self.watermark);
            if null_key[r] || expired {
                // Nothing can join it later: it is complete now.
                if matches[r] == 0 && self.cfg.kind.keeps_unmatched(side) {
                    padded.push((r32, None));
                }
                continue;
            }
            if self.changelog && matches[r] == 0 && self.cfg.kind.keeps_unmatched(side) {
                // Padded now; retracted if a partner comes.
                padded.push((r32, None));
            }
            let kept = Kept {
                row: whole.row(r).as_ref().to_vec(),
                time: times[r],
                matches: matches[r],
                until: None,
            };
            self.sides
                .push(side, keys.row(r).as_ref(), kept, expiries[r]);
        }
        if !padded.is_empty() {
            out.batches
                .push(self.assemble(side, batch, &padded, Kind::Insert)?);
        }
        self.sides.flush()
    }
}

impl Join {
    /// Restored keys and rows (of each side) must decode as this job's key and row columns:
    /// a changed query would otherwise join nothing, or decode garbage.
    fn check_restored(&self, keys: &[&[u8]], rows: [Vec<&[u8]>; 2]) -> Result<()> {
        let wrong = |message: String| Error::State {
            operator: "join".into(),
            message,
        };
        if !keys.is_empty() {
            self.keys[0].decode_stored(keys).map_err(wrong)?;
        }
        for (side, rows) in rows.iter().enumerate() {
            if !rows.is_empty() {
                self.rows[side]
                    .decode_stored(rows)
                    .map_err(|m| wrong(format!("{} input: {m}", ["left", "right"][side])))?;
            }
        }
        Ok(())
    }
}

impl Operator for Join {
    fn process(&mut self, input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = usize::from(input.0.min(1));
        if !self.logs[side] {
            return self.add(side, &batch, out);
        }
        // Runs of added and of taken-back rows, in order: a row's changes follow each other.
        let kinds = changelog::kinds(&batch)?;
        let mut start = 0;
        while start < kinds.len() {
            let back = kinds[start].retracts();
            let end = kinds[start..]
                .iter()
                .position(|k| k.retracts() != back)
                .map_or(kinds.len(), |p| start + p);
            let run = batch.slice(start, end - start);
            if back {
                self.take_back(side, &run, out)?;
            } else {
                self.add(side, &run, out)?;
            }
            start = end;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        // A changelog emitted its unmatched rows when they came.
        let pad = [0, 1].map(|side| self.cfg.kind.keeps_unmatched(side) && !self.changelog);
        let wanted = |side: usize, k: &Kept| pad[side] && k.matches == 0;
        let gone = self.sides.expire(self.watermark, wanted)?;
        for (side, gone) in gone.into_iter().enumerate() {
            let unmatched: Vec<Vec<u8>> = gone.into_iter().map(|k| k.row).collect();
            self.padded(side, &unmatched, Kind::Insert, out)?;
        }
        Ok(())
    }

    fn on_input_end(&mut self, input: Input, out: &mut Output) -> Result<()> {
        let ended = usize::from(input.0.min(1));
        self.ended[ended] = true;
        // The other input's rows can no longer join anything: an outer side's that never
        // did are complete now (a changelog emitted them padded when they came).
        let side = 1 - ended;
        let pad = self.cfg.kind.keeps_unmatched(side) && !self.changelog;
        let gone = self.sides.take(side, |k| pad && k.matches == 0)?;
        if pad {
            let unmatched: Vec<Vec<u8>> = gone.into_iter().map(|k| k.row).collect();
            self.padded(side, &unmatched, Kind::Insert, out)?;
        }
        Ok(())
    }

    fn watermark_delay(&self) -> Millis {
        match (self.cfg.time, self.cfg.time_from) {
            // Left time: a left row joined by a right row just after the watermark can lie
            // `-lo` behind it.
            (Some(b), Some(0)) => b.lo.saturating_neg().max(0),
            (Some(b), Some(_)) => b.hi.max(0),
            _ => 0,
        }
    }

    fn snapshot(&self) -> Result<KeyedState> {
        let m = match &self.sides {
            Sides::Memory(m) => m,
            Sides::Disk(d) => {
                return super::gather(|sink| {
                    DiskSides::encode_store(d.state.store(), d.state.groups(), sink)
                });
            }
        };
        // Borrowed, not copied: a copy would double the state's memory while it is encoded.
        // A slice encodes as the `Vec` that `restore` decodes.
        let mut all: HashMap<&[u8], (&[Kept], &[Kept])> = HashMap::new();
        for (k, list) in m[0].iter() {
            all.entry(k).or_insert((&[], &[])).0 = list;
        }
        for (k, list) in m[1].iter() {
            all.entry(k).or_insert((&[], &[])).1 = list;
        }
        encode_keyed("join", self.cfg.max_parallelism, all.into_iter())
    }

    fn capture(&self, portable: bool) -> Result<Capture> {
        match &self.sides {
            Sides::Memory(_) => {
                let state = self.snapshot()?;
                Ok(Capture::Keyed(Box::new(move || Ok(state))))
            }
            Sides::Disk(d) => {
                if !portable {
                    d.mark()?;
                }
                super::capture_store(&d.state, portable, disk::FAMILIES, DiskSides::encode_store)
            }
        }
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        let restored = decode_keyed::<(Vec<Kept>, Vec<Kept>)>("join", state)?;
        let keys: Vec<&[u8]> = restored.iter().map(|(k, _)| k.as_slice()).collect();
        let rows = [0, 1].map(|side| {
            restored
                .iter()
                .flat_map(|(_, v)| if side == 0 { &v.0 } else { &v.1 })
                .map(|k| k.row.as_slice())
                .collect::<Vec<_>>()
        });
        self.check_restored(&keys, rows)?;
        // Every side's rows at once, in the order they are kept below: a row bound decodes
        // them, in chunks rather than once per key.
        let mut expiries = Vec::with_capacity(2);
        for side in 0..2 {
            let all: Vec<&Kept> = restored
                .iter()
                .flat_map(|(_, v)| if side == 0 { &v.0 } else { &v.1 })
                .collect();
            expiries.push(self.restored_expiries(side, &all)?.into_iter());
        }
        for (key, sides) in restored {
            for (side, list) in [(0, sides.0), (1, sides.1)] {
                for kept in list {
                    let at = expiries[side]
                        .next()
                        .ok_or_else(|| Error::internal("a restored row without its expiry"))?;
                    self.sides.push(side, &key, kept, at);
                }
            }
        }
        self.sides.flush()
    }

    fn restore_disk(&mut self, fetched: Vec<Fetched>) -> Result<()> {
        // The empty store made at start closes before the restored one opens in its place.
        let place = match std::mem::replace(&mut self.sides, Sides::Memory(Box::default())) {
            Sides::Disk(d) => d.state.place().clone(),
            memory @ Sides::Memory(_) => {
                self.sides = memory;
                return Err(super::disk_state_refused("join"));
            }
        };
        let state = DiskState::restore(place, disk::FAMILIES, fetched)?;
        let restored = DiskSides::restored(state, Expiry::of(&self.cfg), self.cfg.max_parallelism)?;
        // The stored keys and rows still decode as this job's columns (a sample: the first of
        // each side).
        let first = restored.sample()?;
        let keys: Vec<&[u8]> = first.iter().flatten().map(|(k, _)| k.as_slice()).collect();
        let rows = [0, 1].map(|s| first[s].iter().map(|(_, r)| r.as_slice()).collect());
        self.check_restored(&keys, rows)?;
        self.sides = Sides::Disk(Box::new(restored));
        Ok(())
    }

    fn counters(&self) -> OperatorCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests;
