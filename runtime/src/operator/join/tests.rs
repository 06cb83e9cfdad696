//! The join against a nested-loop oracle over the same rows, and its state across a
//! checkpoint, with its rows in memory and on disk ([`Backend`]).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};

use super::{Join, JoinConfig, JoinKind, Kept, RowBound, TimeBound};
use crate::changelog::{self, Kind};
use crate::expr::CompiledExpr;
use crate::ids::Millis;
use crate::operator::tests::{BACKENDS, Backend, Places, Rng};
use crate::operator::{Input, Operator, Output};

fn side_schema(prefix: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(format!("{prefix}k"), DataType::Int64, true),
        Field::new(
            format!("{prefix}t"),
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new(format!("{prefix}v"), DataType::Int64, true),
    ]))
}

fn output() -> SchemaRef {
    let fields: Vec<Field> = [side_schema("l"), side_schema("r")]
        .iter()
        .flat_map(|s| s.fields().iter().map(|f| f.as_ref().clone()))
        .collect();
    Arc::new(Schema::new(fields))
}

/// A row: (key, time, value).
type Row = (Option<i64>, Millis, i64);

/// Every join kind.
const KINDS: [JoinKind; 4] = [
    JoinKind::Inner,
    JoinKind::Left,
    JoinKind::Right,
    JoinKind::Full,
];

/// An output row: (left value, right value), `None` where padded.
type Pair = (Option<i64>, Option<i64>);

fn batch(side: usize, rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        side_schema(["l", "r"][side]),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

fn config(kind: JoinKind, time: Option<TimeBound>, filter: Option<&str>) -> JoinConfig {
    JoinConfig {
        kind,
        inputs: [side_schema("l"), side_schema("r")],
        keys: [vec![0], vec![0]],
        time_cols: [Some(1), Some(1)],
        row_bounds: [None, None],
        time,
        filter: filter.map(|f| CompiledExpr::compile(f, &output()).unwrap()),
        output: output(),
        time_from: Some(if kind == JoinKind::Right { 1 } else { 0 }),
        ttl: None,
        max_parallelism: 128,
    }
}

/// Makes a test's joins on one backend.
struct Joins(Places);

impl Joins {
    fn new(backend: Backend) -> Self {
        Self(Places::new(backend, 0..=127))
    }

    fn join(&self, cfg: JoinConfig) -> Join {
        Join::new(cfg, self.0.place()).unwrap()
    }

    /// `join` checkpointed and restored into a fresh one made of `cfg`.
    fn restart(&self, join: &Join, cfg: JoinConfig) -> Join {
        let mut fresh = self.join(cfg);
        self.0.restore(join, &mut fresh);
        fresh
    }
}

/// Output rows as (left value, right value), `None` where padded; sorted.
fn pairs(out: &[RecordBatch]) -> Vec<(Option<i64>, Option<i64>)> {
    let mut v: Vec<_> = out
        .iter()
        .flat_map(|b| {
            let l = b.column(2).as_primitive::<Int64Type>().clone();
            let r = b.column(5).as_primitive::<Int64Type>().clone();
            (0..b.num_rows())
                .map(move |i| {
                    (
                        l.is_valid(i).then(|| l.value(i)),
                        r.is_valid(i).then(|| r.value(i)),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort_unstable();
    v
}

/// What the join must give over all of `rows` (per side), computed pair by pair.
fn oracle(
    kind: JoinKind,
    bound: Option<TimeBound>,
    filter: impl Fn(i64, i64) -> bool,
    rows: &[Vec<Row>; 2],
) -> Vec<(Option<i64>, Option<i64>)> {
    let mut out = Vec::new();
    let mut right_matched = vec![false; rows[1].len()];
    for l in &rows[0] {
        let mut any = false;
        for (j, r) in rows[1].iter().enumerate() {
            let keys = l.0.is_some() && l.0 == r.0;
            let time = bound.is_none_or(|b| (b.lo..=b.hi).contains(&(l.1 - r.1)));
            if keys && time && filter(l.2, r.2) {
                out.push((Some(l.2), Some(r.2)));
                any = true;
                right_matched[j] = true;
            }
        }
        if !any && kind.keeps_unmatched(0) {
            out.push((Some(l.2), None));
        }
    }
    if kind.keeps_unmatched(1) {
        for (r, m) in rows[1].iter().zip(right_matched) {
            if !m {
                out.push((None, Some(r.2)));
            }
        }
    }
    out.sort_unstable();
    out
}

/// Rows of both sides in event-time order per side, keys from a few values (some null).
fn rows(rng: &mut Rng, n: usize) -> [Vec<Row>; 2] {
    let mut make = |base: i64| {
        let mut t = 0;
        (0..n)
            .map(|i| {
                t += i64::try_from(rng.next(4)).unwrap();
                let k = rng.next(6);
                let key = (k < 5).then(|| i64::try_from(k).unwrap());
                (key, t, base + i64::try_from(i).unwrap())
            })
            .collect::<Vec<_>>()
    };
    [make(0), make(1_000_000)]
}

/// Which side feeds the join next (either, at random, while both have rows left) and how
/// many of its rows (1 to 4), given how far each side is of how many.
fn next_part(rng: &mut Rng, at: [usize; 2], len: [usize; 2]) -> (usize, usize) {
    let side = if at[0] == len[0] {
        1
    } else if at[1] == len[1] {
        0
    } else {
        usize::try_from(rng.next(2)).unwrap()
    };
    let n = (1 + usize::try_from(rng.next(4)).unwrap()).min(len[side] - at[side]);
    (side, n)
}

/// Feed both sides interleaved at random, in batches of up to 4 rows, with the watermark
/// at what both sides have passed; optionally checkpoint and restore into a fresh join
/// half way. Returns everything emitted and the join at the end.
fn drive(
    joins: &Joins,
    rng: &mut Rng,
    cfg: impl Fn() -> JoinConfig,
    rows: &[Vec<Row>; 2],
    restore_at: Option<usize>,
) -> (Vec<RecordBatch>, Join) {
    let mut join = joins.join(cfg());
    let mut out = Output::default();
    let mut at = [0usize, 0usize];
    let mut steps = 0;
    while at[0] < rows[0].len() || at[1] < rows[1].len() {
        let (side, take) = next_part(rng, at, [rows[0].len(), rows[1].len()]);
        let b = batch(side, &rows[side][at[side]..at[side] + take]);
        at[side] += take;
        join.process(Input(u8::try_from(side).unwrap()), b, &mut out)
            .unwrap();
        // Each side is in time order: what neither will send again is behind the watermark.
        let seen = |s: usize| {
            if at[s] == rows[s].len() {
                Millis::MAX - 1
            } else {
                rows[s][at[s]].1 - 1
            }
        };
        join.on_watermark(seen(0).min(seen(1)), &mut out).unwrap();
        steps += 1;
        if restore_at == Some(steps) {
            join = joins.restart(&join, cfg());
            join.on_watermark(seen(0).min(seen(1)), &mut out).unwrap();
        }
    }
    join.on_watermark(Millis::MAX, &mut out).unwrap();
    (out.batches, join)
}

#[test]
fn interval_joins_of_every_kind_equal_the_nested_loop_oracle() {
    for backend in BACKENDS {
        interval_joins_equal_the_oracle(&Joins::new(backend));
    }
}

fn interval_joins_equal_the_oracle(joins: &Joins) {
    let backend = joins.0.backend;
    let bounds = [
        TimeBound { lo: -5, hi: 0 },
        TimeBound { lo: 0, hi: 0 },
        TimeBound { lo: -3, hi: 7 },
    ];
    for (seed, kind) in KINDS.into_iter().enumerate() {
        for (b, bound) in bounds.iter().enumerate() {
            let mut rng = Rng(u64::try_from(seed * 10 + b).unwrap());
            let rows = rows(&mut rng, 200);
            let cfg = || config(kind, Some(*bound), Some("(lv + rv) % 3 <> 0"));
            let want = oracle(kind, Some(*bound), |l, r| (l + r) % 3 != 0, &rows);
            let (out, join) = drive(joins, &mut rng, cfg, &rows, None);
            assert_eq!(pairs(&out), want, "{backend:?} {kind:?} {bound:?}");
            assert!(!want.is_empty());
            assert_eq!(join.counters().late_records, 0);
            // Everything expired at the end of time: no state left behind.
            assert!(
                join.snapshot().unwrap().is_empty(),
                "{backend:?} {kind:?} {bound:?}"
            );
            assert_eq!(join.sides.count(0) + join.sides.count(1), 0);
            // Through a checkpoint half way, the same.
            let (out, _) = drive(joins, &mut rng, cfg, &rows, Some(40));
            assert_eq!(pairs(&out), want, "{backend:?} {kind:?} {bound:?} restored");
        }
    }
}

#[test]
fn a_regular_join_keeps_rows_until_their_ttl_and_inner_pairs_equal_the_oracle() {
    for backend in BACKENDS {
        regular_join_keeps_rows_until_their_ttl(&Joins::new(backend));
    }
}

fn regular_join_keeps_rows_until_their_ttl(joins: &Joins) {
    let mut rng = Rng(7);
    let rows = rows(&mut rng, 150);
    let cfg = || config(JoinKind::Inner, None, None);
    let want = oracle(JoinKind::Inner, None, |_, _| true, &rows);
    let (out, join) = drive(joins, &mut rng, cfg, &rows, Some(30));
    assert_eq!(pairs(&out), want, "{:?}", joins.0.backend);
    // Without a TTL every row with a key stays.
    let kept = join.sides.count(0) + join.sides.count(1);
    let with_key = rows.iter().flatten().filter(|r| r.0.is_some()).count();
    assert_eq!(kept, with_key);

    // A TTL of 10: a pair further apart than that in time may be missed, never one within.
    let ttl = || JoinConfig {
        ttl: Some(10),
        ..config(JoinKind::Inner, None, None)
    };
    let (out, join) = drive(joins, &mut rng, ttl, &rows, Some(60));
    let got = pairs(&out);
    let near = oracle(
        JoinKind::Inner,
        Some(TimeBound { lo: -10, hi: 10 }),
        |_, _| true,
        &rows,
    );
    for p in &near {
        assert!(got.contains(p), "{p:?} within the TTL is missing");
    }
    assert!(got.len() < want.len(), "the TTL dropped nothing");
    assert!(join.snapshot().unwrap().is_empty());
    assert_eq!(join.sides.count(0) + join.sides.count(1), 0);
}

#[test]
fn a_row_behind_the_watermark_is_dropped_and_counted_and_results_hold_the_watermark_back() {
    let mut join = Join::new(
        config(JoinKind::Inner, Some(TimeBound { lo: -5, hi: 0 }), None),
        None,
    )
    .unwrap();
    assert_eq!(join.watermark_delay(), 5);
    let mut out = Output::default();
    join.process(Input(0), batch(0, &[(Some(1), 10, 1)]), &mut out)
        .unwrap();
    join.on_watermark(12, &mut out).unwrap();
    // A right row at 13 joins the left row at 10, behind the watermark by 2 (within 5).
    join.process(
        Input(1),
        batch(1, &[(Some(1), 13, 2), (Some(1), 12, 3)]),
        &mut out,
    )
    .unwrap();
    assert_eq!(pairs(&out.batches), [(Some(1), Some(2))]);
    assert_eq!(join.counters().late_records, 1);
    let Some(last) = out.batches.last() else {
        panic!("no output")
    };
    let t = last
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
        .value(0);
    assert!(t > 12 - join.watermark_delay());
}

/// `schema` with a change-kind column (that may delete) after its columns.
fn with_change(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(changelog::field_with_deletes());
    Arc::new(Schema::new(fields))
}

/// A join's changelog applied as a multiset, as (left value, right value) rows sorted, and
/// how many rows it retracted; a retraction of a row not there fails. With `padded_only`,
/// a retraction of a pair fails too.
fn apply(out: &[RecordBatch], padded_only: bool) -> (Vec<Pair>, usize) {
    let mut table: BTreeMap<Pair, usize> = BTreeMap::new();
    let mut deletes = 0;
    for b in out {
        let l = b.column(2).as_primitive::<Int64Type>().clone();
        let r = b.column(5).as_primitive::<Int64Type>().clone();
        let kinds = changelog::kinds(b).unwrap();
        for (i, kind_i) in kinds.iter().enumerate() {
            let row = (
                l.is_valid(i).then(|| l.value(i)),
                r.is_valid(i).then(|| r.value(i)),
            );
            if kind_i.retracts() {
                assert_eq!(*kind_i, Kind::Delete);
                assert!(
                    !padded_only || row.0.is_none() || row.1.is_none(),
                    "only padded rows are retracted: {row:?}"
                );
                let c = table
                    .get_mut(&row)
                    .unwrap_or_else(|| panic!("{row:?} retracted, never emitted"));
                *c -= 1;
                if *c == 0 {
                    table.remove(&row);
                }
                deletes += 1;
            } else {
                *table.entry(row).or_default() += 1;
            }
        }
    }
    let rows = table
        .into_iter()
        .flat_map(|(row, n)| std::iter::repeat_n(row, n))
        .collect();
    (rows, deletes)
}

/// A regular (unbounded) outer join's changelog, applied as a multiset (a `-D` must remove
/// a padded row emitted before), equals the nested-loop oracle over all rows, for LEFT,
/// RIGHT and FULL, with a residual condition, also through a checkpoint.
#[test]
fn regular_outer_joins_retract_padded_rows_and_equal_the_oracle() {
    for (seed, kind) in [JoinKind::Left, JoinKind::Right, JoinKind::Full]
        .into_iter()
        .enumerate()
    {
        for (restore, backend) in [
            (None, Backend::Memory),
            (Some(25), Backend::Memory),
            (None, Backend::Disk),
            (Some(25), Backend::Disk),
            (Some(25), Backend::DiskSavepoint),
        ] {
            let joins = Joins::new(backend);
            let mut rng = Rng(u64::try_from(seed + 50).unwrap());
            let rows = rows(&mut rng, 120);
            let cfg = || JoinConfig {
                output: with_change(&output()),
                time_from: None,
                filter: Some(
                    CompiledExpr::compile("(lv + rv) % 3 <> 0", &with_change(&output())).unwrap(),
                ),
                ..config(kind, None, None)
            };
            let (out, _) = drive(&joins, &mut rng, cfg, &rows, restore);
            let (got, deletes) = apply(&out, true);
            let want = oracle(kind, None, |l, r| (l + r) % 3 != 0, &rows);
            assert_eq!(got, want, "{backend:?} {kind:?}, restore {restore:?}");
            assert!(deletes > 0, "{kind:?}: no padded row was ever retracted");
        }
    }
}

/// Changes to one input: rows added, and rows taken back (`-D`, or `-U` then the new row's
/// `+U`), each taken back row one that is there. Returns the changes and the rows left.
fn changes(rng: &mut Rng, rows: &[Row]) -> (Vec<(Row, Kind)>, Vec<Row>) {
    let mut present: Vec<Row> = Vec::new();
    let mut log = Vec::new();
    for row in rows {
        let n = u64::try_from(present.len()).unwrap();
        match rng.next(4) {
            0 if n > 0 => {
                let old = present.swap_remove(usize::try_from(rng.next(n)).unwrap());
                log.push((old, Kind::UpdateBefore));
                log.push((*row, Kind::UpdateAfter));
            }
            1 if n > 0 => {
                let old = present.swap_remove(usize::try_from(rng.next(n)).unwrap());
                log.push((old, Kind::Delete));
                log.push((*row, Kind::Insert));
            }
            _ => log.push((*row, Kind::Insert)),
        }
        present.push(*row);
    }
    (log, present)
}

/// A batch of changes to side `side`.
fn change_batch(side: usize, rows: &[(Row, Kind)]) -> RecordBatch {
    let plain = batch(side, &rows.iter().map(|r| r.0).collect::<Vec<_>>());
    let kinds: Vec<Kind> = rows.iter().map(|r| r.1).collect();
    let mut columns = plain.columns().to_vec();
    columns.push(changelog::column(&kinds));
    RecordBatch::try_new(with_change(&side_schema(["l", "r"][side])), columns).unwrap()
}

/// A regular join whose inputs update (both, or only the left) takes each row taken back
/// out of its state and retracts its pairs: the output, applied as a multiset, equals the
/// nested-loop oracle over what is left of each input, for every join kind, with a residual
/// condition, also through a checkpoint half way.
#[test]
fn regular_joins_over_changelogs_equal_the_oracle_over_what_each_input_holds_at_the_end() {
    for (seed, kind) in KINDS.into_iter().enumerate() {
        for ((both, restore), backend) in [(true, None), (true, Some(40)), (false, Some(25))]
            .into_iter()
            .flat_map(|case| BACKENDS.map(|b| (case, b)))
        {
            let joins = Joins::new(backend);
            let mut rng = Rng(u64::try_from(seed + 90).unwrap());
            let base = rows(&mut rng, 150);
            let (left, left_end) = changes(&mut rng, &base[0]);
            let (right, right_end) = if both {
                changes(&mut rng, &base[1])
            } else {
                (
                    base[1].iter().map(|r| (*r, Kind::Insert)).collect(),
                    base[1].clone(),
                )
            };
            let logs = [left, right];
            let inputs = [
                with_change(&side_schema("l")),
                if both {
                    with_change(&side_schema("r"))
                } else {
                    side_schema("r")
                },
            ];
            let cfg = || JoinConfig {
                inputs: inputs.clone(),
                time_cols: [None, None],
                row_bounds: [None, None],
                output: with_change(&output()),
                time_from: None,
                filter: Some(
                    CompiledExpr::compile("(lv + rv) % 3 <> 0", &with_change(&output())).unwrap(),
                ),
                ..config(kind, None, None)
            };
            let mut join = joins.join(cfg());
            let mut out = Output::default();
            let mut at = [0usize, 0usize];
            let mut steps = 0;
            while at[0] < logs[0].len() || at[1] < logs[1].len() {
                let (side, n) = next_part(&mut rng, at, [logs[0].len(), logs[1].len()]);
                let part = &logs[side][at[side]..at[side] + n];
                let b = if side == 0 || both {
                    change_batch(side, part)
                } else {
                    batch(side, &part.iter().map(|r| r.0).collect::<Vec<_>>())
                };
                at[side] += n;
                join.process(Input(u8::try_from(side).unwrap()), b, &mut out)
                    .unwrap();
                steps += 1;
                if restore == Some(steps) {
                    join = joins.restart(&join, cfg());
                }
            }
            join.on_watermark(Millis::MAX, &mut out).unwrap();
            let (got, deletes) = apply(&out.batches, false);
            let want = oracle(kind, None, |l, r| (l + r) % 3 != 0, &[left_end, right_end]);
            let case = format!("{backend:?} {kind:?}, both {both}, restore {restore:?}");
            assert_eq!(got, want, "{case}");
            assert!(deletes > 0, "{case}: nothing was retracted");
            // What is kept is what is left of each input (with a key).
            let kept = join.sides.count(0) + join.sides.count(1);
            let with_key = want_kept(&logs);
            assert_eq!(kept, with_key, "{case}: rows taken back are still kept");
        }
    }
}

/// How many rows with a key the changes leave on both sides.
fn want_kept(logs: &[Vec<(Row, Kind)>; 2]) -> usize {
    logs.iter()
        .flatten()
        .filter(|(r, _)| r.0.is_some())
        .map(|(_, k)| if k.retracts() { -1i64 } else { 1 })
        .sum::<i64>()
        .try_into()
        .unwrap()
}

/// Checkpoints written when a kept row said only whether it had matched (`bool`) restore
/// with 0 or 1 partners: postcard writes both as the same byte.
#[test]
fn a_kept_row_of_an_older_checkpoint_reads_its_match_as_a_count() {
    #[derive(serde::Serialize)]
    struct Before {
        row: Vec<u8>,
        time: Millis,
        matched: bool,
    }
    for (matched, matches) in [(false, 0), (true, 1)] {
        let bytes = postcard::to_stdvec(&Before {
            row: vec![1, 2, 3],
            time: -7,
            matched,
        })
        .unwrap();
        let kept: Kept = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            (kept.row, kept.time, kept.matches),
            (vec![1, 2, 3], -7, matches)
        );
    }
}

/// Once an input has ended, nothing can join the other's rows: they are no longer kept (an
/// outer side's unmatched ones are emitted padded then), and the results still equal the
/// oracle, for every join kind.
#[test]
fn once_an_input_ends_the_other_inputs_rows_are_no_longer_kept() {
    for (seed, kind, backend) in KINDS
        .into_iter()
        .enumerate()
        .flat_map(|(s, k)| BACKENDS.map(|b| (s, k, b)))
    {
        let joins = Joins::new(backend);
        let mut rng = Rng(u64::try_from(seed).unwrap() + 200);
        let rows = rows(&mut rng, 150);
        let bound = TimeBound { lo: -5, hi: 3 };
        let want = oracle(kind, Some(bound), |_, _| true, &rows);
        let mut join = joins.join(config(kind, Some(bound), None));
        let mut out = Output::default();
        // Half the left rows, then every right row, and the right input ends.
        let half = rows[0].len() / 2;
        join.process(Input(0), batch(0, &rows[0][..half]), &mut out)
            .unwrap();
        join.process(Input(1), batch(1, &rows[1]), &mut out)
            .unwrap();
        join.on_input_end(Input(1), &mut out).unwrap();
        assert_eq!(join.sides.count(0), 0, "{backend:?} {kind:?}: left kept");
        join.process(Input(0), batch(0, &rows[0][half..]), &mut out)
            .unwrap();
        assert_eq!(join.sides.count(0), 0, "{backend:?} {kind:?}: left kept");
        join.on_watermark(Millis::MAX, &mut out).unwrap();
        assert_eq!(pairs(&out.batches), want, "{backend:?} {kind:?}");
    }
}

/// After the right input ended, the left's changes are not kept, yet a row taken back still
/// retracts exactly the pairs it made (the right's rows are all still kept): the changelog
/// applied equals the oracle over what the left holds at the end, for every join kind.
#[test]
fn a_changelog_taken_back_after_the_other_input_ended_retracts_what_it_made() {
    for (seed, kind, backend) in KINDS
        .into_iter()
        .enumerate()
        .flat_map(|(s, k)| BACKENDS.map(|b| (s, k, b)))
    {
        let joins = Joins::new(backend);
        let mut rng = Rng(u64::try_from(seed).unwrap() + 300);
        let base = rows(&mut rng, 150);
        let (left, left_end) = changes(&mut rng, &base[0]);
        let cfg = JoinConfig {
            inputs: [with_change(&side_schema("l")), side_schema("r")],
            time_cols: [None, None],
            row_bounds: [None, None],
            output: with_change(&output()),
            time_from: None,
            ..config(kind, None, None)
        };
        let mut join = joins.join(cfg);
        let mut out = Output::default();
        join.process(Input(1), batch(1, &base[1]), &mut out)
            .unwrap();
        join.on_input_end(Input(1), &mut out).unwrap();
        for part in left.chunks(3) {
            join.process(Input(0), change_batch(0, part), &mut out)
                .unwrap();
        }
        assert_eq!(join.sides.count(0), 0, "{backend:?} {kind:?}: left kept");
        let (got, deletes) = apply(&out.batches, false);
        let want = oracle(kind, None, |_, _| true, &[left_end, base[1].clone()]);
        assert_eq!(got, want, "{backend:?} {kind:?}");
        assert!(deletes > 0, "{backend:?} {kind:?}: nothing retracted");
    }
}

/// A key released before its expiry comes (a retraction took its last row), or indexed again
/// at an earlier expiry, leaves a stale entry in the memory side's expiry heap. When it comes
/// up it is skipped: a released slot is not freed twice (two later keys would then share it),
/// and a key's rows still go at their own times.
#[test]
fn a_memory_side_skips_expiries_of_keys_released_or_indexed_earlier() {
    use super::Expiry;
    use super::memory::Side;
    let expiry = Expiry {
        time: None,
        ttl: Some(4),
    };
    let kept = |t: Millis| Kept {
        row: t.to_le_bytes().to_vec(),
        time: t,
        matches: 0,
        until: None,
    };
    let times = |gone: Vec<Kept>| gone.iter().map(|k| k.time).collect::<Vec<_>>();
    let mut side = Side::default();
    side.push(b"a", kept(1), expiry.at(0, 1));
    assert!(side.remove(b"a", &1i64.to_le_bytes()).is_some());
    assert!(side.expire(5).is_empty());
    side.push(b"b", kept(6), expiry.at(0, 6));
    side.push(b"c", kept(7), expiry.at(0, 7));
    assert_eq!(side.get(b"b").map(<[Kept]>::len), Some(1));
    assert_eq!(side.get(b"c").map(<[Kept]>::len), Some(1));
    // An older row of "b" expires first: the key is indexed again, earlier.
    side.push(b"b", kept(2), expiry.at(0, 2));
    assert_eq!(times(side.expire(6)), vec![2]);
    assert_eq!(times(side.expire(10)), vec![6]);
    assert_eq!(times(side.expire(11)), vec![7]);
    assert!(side.get(b"b").is_none() && side.get(b"c").is_none());
}

/// A left row bounded by a column of its own, `r.t BETWEEN l.t AND l.until` (as Nexmark's q4
/// and q9 bound an auction by its expiry): the pairs equal the nested-loop oracle, through a
/// checkpoint too, and after every watermark exactly the rows that can still pair are kept:
/// a left row until the watermark passes its `until` (none with a null one), a right row
/// until it passes its time.
#[test]
fn a_join_bounded_by_a_column_of_its_rows_equals_the_oracle_and_keeps_only_what_can_pair() {
    for backend in BACKENDS {
        for (seed, restore_at) in [(3, None), (4, Some(25)), (5, Some(60))] {
            row_bounded_join(&Joins::new(backend), seed, restore_at);
        }
    }
}

fn row_bounded_join(joins: &Joins, seed: u64, restore_at: Option<usize>) {
    let backend = joins.0.backend;
    let stamp = |n: &str| Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, None), true);
    let left = Arc::new(Schema::new(vec![
        Field::new("lk", DataType::Int64, true),
        stamp("lt"),
        Field::new("lv", DataType::Int64, true),
        stamp("lu"),
    ]));
    let output = Arc::new(Schema::new(
        left.fields()
            .iter()
            .chain(side_schema("r").fields().iter())
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ));
    let cfg = || JoinConfig {
        kind: JoinKind::Inner,
        inputs: [Arc::clone(&left), side_schema("r")],
        keys: [vec![0], vec![0]],
        time_cols: [Some(1), Some(1)],
        // r.t >= l.t: left - right <= 0, open below, where the row bound closes it.
        time: Some(TimeBound {
            lo: Millis::MIN,
            hi: 0,
        }),
        row_bounds: [Some(RowBound { col: 3, offset: 0 }), None],
        filter: Some(CompiledExpr::compile("rt <= lu", &output).unwrap()),
        output: Arc::clone(&output),
        time_from: None,
        ttl: None,
        max_parallelism: 128,
    };
    let mut rng = Rng(seed);
    let [lefts, rights] = rows(&mut rng, 150);
    // Each left row's own bound: 0 to 11 ms after it, null now and then.
    let until: Vec<Option<Millis>> = lefts
        .iter()
        .map(|r| {
            let d = i64::try_from(rng.next(13)).unwrap();
            (d < 12).then_some(r.1 + d)
        })
        .collect();
    let left_batch = |from: usize, to: usize| {
        let part = &lefts[from..to];
        let b = batch(0, part);
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(TimestampMillisecondArray::from(until[from..to].to_vec())) as _);
        RecordBatch::try_new(Arc::clone(&left), cols).unwrap()
    };
    let mut want = Vec::new();
    for (l, u) in lefts.iter().zip(&until) {
        for r in &rights {
            if l.0.is_some() && l.0 == r.0 && l.1 <= r.1 && u.is_some_and(|u| r.1 <= u) {
                want.push((Some(l.2), Some(r.2)));
            }
        }
    }
    want.sort_unstable();
    assert!(want.len() > 20, "{want:?}");

    let mut join = joins.join(cfg());
    let mut out = Output::default();
    let mut at = [0usize, 0usize];
    let mut steps = 0;
    let all = [lefts.len(), rights.len()];
    while at != all {
        let (side, take) = next_part(&mut rng, at, all);
        let b = if side == 0 {
            left_batch(at[0], at[0] + take)
        } else {
            batch(1, &rights[at[1]..at[1] + take])
        };
        at[side] += take;
        join.process(Input(u8::try_from(side).unwrap()), b, &mut out)
            .unwrap();
        let time = |s: usize, i: usize| if s == 0 { lefts[i].1 } else { rights[i].1 };
        let seen = |s: usize| {
            if at[s] == all[s] {
                Millis::MAX - 1
            } else {
                time(s, at[s]) - 1
            }
        };
        let watermark = seen(0).min(seen(1));
        join.on_watermark(watermark, &mut out).unwrap();
        steps += 1;
        if restore_at == Some(steps) {
            join = joins.restart(&join, cfg());
            join.on_watermark(watermark, &mut out).unwrap();
        }
        let can_pair = lefts[..at[0]]
            .iter()
            .zip(&until)
            .filter(|(l, u)| l.0.is_some() && u.is_some_and(|u| u > watermark))
            .count()
            + rights[..at[1]]
                .iter()
                .filter(|r| r.0.is_some() && r.1 > watermark)
                .count();
        assert_eq!(
            join.sides.count(0) + join.sides.count(1),
            can_pair,
            "{backend:?} seed {seed}, step {steps}, watermark {watermark}"
        );
    }
    join.on_watermark(Millis::MAX, &mut out).unwrap();
    let mut got: Vec<Pair> = out
        .batches
        .iter()
        .flat_map(|b| {
            let v = |c: usize| b.column(c).as_primitive::<Int64Type>().clone();
            let (l, r) = (v(2), v(6));
            (0..b.num_rows()).map(move |i| (Some(l.value(i)), Some(r.value(i))))
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, want, "{backend:?} seed {seed}");
    assert_eq!(join.counters().late_records, 0);
    assert!(
        join.snapshot().unwrap().is_empty(),
        "{backend:?} seed {seed}"
    );
}
