//! The updating `GROUP BY` against an oracle computed directly: random rows (keys with nulls,
//! values with nulls) in random batches; its changelog, applied as a multiset (every `-U`
//! must remove a row emitted before), must equal the groups' results over all the rows,
//! also when the operator is checkpointed half way and the rest runs on a fresh one, with its
//! groups in memory and on disk (each of `operator::tests::BACKENDS`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use weir_crds::AggregateFn;

use super::{GroupBy, GroupByConfig};
use crate::changelog::{self, Kind};
use crate::expr::CompiledExpr;
use crate::ids::Millis;
use crate::keys::KeyCodec;
use crate::operator::tests::{BACKENDS, Places, Rng};
use crate::operator::window::{Aggregate, ValueKind};
use crate::operator::{Input, Operator, Output};

fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn config(with_aggregates: bool) -> GroupByConfig {
    config_over(&input(), with_aggregates)
}

/// The input of a GROUP BY over a changelog: `k`, `v`, then the change kind.
fn changelog_input() -> SchemaRef {
    let mut fields: Vec<Field> = input()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(changelog::field());
    Arc::new(Schema::new(fields))
}

fn config_over(schema: &SchemaRef, with_aggregates: bool) -> GroupByConfig {
    let schema = Arc::clone(schema);
    let agg = |func, arg: Option<&str>, kind| Aggregate {
        func,
        arg: arg.map(|a| CompiledExpr::compile(a, &schema).unwrap()),
        kind,
    };
    let int = ValueKind::Int { timestamp: false };
    let aggregates = if with_aggregates {
        vec![
            agg(AggregateFn::Count, None, ValueKind::Any),
            agg(AggregateFn::Sum, Some("v"), int),
            agg(AggregateFn::Max, Some("v"), int),
            agg(AggregateFn::CountDistinct, Some("v"), ValueKind::Any),
            agg(AggregateFn::Avg, Some("v"), int),
        ]
    } else {
        Vec::new()
    };
    let mut fields = vec![schema.field(0).clone()];
    for (i, a) in aggregates.iter().enumerate() {
        fields.push(Field::new(format!("a{i}"), a.output_type(), true));
    }
    let retracting = changelog::is_changelog(&schema);
    if retracting {
        fields.push(changelog::field_with_deletes());
    } else if with_aggregates {
        fields.push(changelog::field());
    }
    GroupByConfig {
        keys: KeyCodec::new(&schema, vec![0]).unwrap(),
        aggregates,
        output: Arc::new(Schema::new(fields)),
        max_parallelism: 16,
        retracting,
        ttl: None,
    }
}

/// One output row: key, count, sum, max, distinct values, avg (bits, so rows compare).
type Row = (Option<i64>, Vec<Option<i64>>, Option<u64>);

/// A `GROUP BY` of `cfg` on `places`' backend.
fn make(places: &Places, cfg: GroupByConfig) -> GroupBy {
    GroupBy::new(cfg, places.place()).unwrap()
}

/// `op` checkpointed and restored into a fresh one of `cfg`.
fn restart(places: &Places, op: &GroupBy, cfg: GroupByConfig) -> GroupBy {
    let mut fresh = make(places, cfg);
    places.restore(op, &mut fresh);
    fresh
}

/// On disk, write-back keeps few groups in the operator's maps between batches (a barrier's
/// capture writes them to the store: the restarts through the store's files show it).
fn held_on_disk(op: &GroupBy) {
    if op.disk.is_some() {
        let cached = op.groups.len() + op.retracting.as_ref().map_or(0, |g| g.len());
        assert!(cached <= 16_384, "{cached} groups in memory");
    }
}

fn rows_of(batch: &RecordBatch) -> Vec<(Row, Kind)> {
    let key = batch.column(0).as_primitive::<Int64Type>();
    let n = batch.num_rows();
    (0..n)
        .map(|r| {
            let ints: Vec<Option<i64>> = (1..=4)
                .map(|c| {
                    let a = batch.column(c).as_primitive::<Int64Type>();
                    a.is_valid(r).then(|| a.value(r))
                })
                .collect();
            let avg = batch.column(5).as_primitive::<Float64Type>();
            let kinds = batch
                .column(6)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (
                (
                    key.is_valid(r).then(|| key.value(r)),
                    ints,
                    avg.is_valid(r).then(|| avg.value(r).to_bits()),
                ),
                Kind::parse(kinds.value(r)).unwrap(),
            )
        })
        .collect()
}

fn oracle(all: &[(Option<i64>, Option<i64>)]) -> BTreeMap<Row, usize> {
    let mut groups: BTreeMap<Option<i64>, Vec<Option<i64>>> = BTreeMap::new();
    for (k, v) in all {
        groups.entry(*k).or_default().push(*v);
    }
    let mut out = BTreeMap::new();
    for (k, vs) in groups {
        let valid: Vec<i64> = vs.iter().flatten().copied().collect();
        let distinct: BTreeSet<i64> = valid.iter().copied().collect();
        let avg = (!valid.is_empty())
            .then(|| (valid.iter().map(|&x| x as f64).sum::<f64>() / valid.len() as f64).to_bits());
        let row = (
            k,
            vec![
                Some(vs.len() as i64),
                Some(valid.iter().sum()),
                valid.iter().max().copied(),
                Some(distinct.len() as i64),
            ],
            avg,
        );
        *out.entry(row).or_default() += 1;
    }
    out
}

fn batch(rows: &[(Option<i64>, Option<i64>)]) -> RecordBatch {
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
        ],
    )
    .unwrap()
}

/// Apply the changes of `out` to `table`, checking that each `-U` is followed by the `+U` of
/// its group and that every retraction removes a row emitted before.
fn apply(out: &Output, table: &mut BTreeMap<Row, usize>, seed: u64) {
    for b in &out.batches {
        let rows = rows_of(b);
        for (i, (row, kind)) in rows.iter().enumerate() {
            if *kind == Kind::UpdateBefore {
                assert_eq!(rows[i + 1].1, Kind::UpdateAfter, "seed {seed}: -U then +U");
                assert_eq!(rows[i + 1].0.0, row.0, "seed {seed}: the same group");
            }
            if kind.retracts() {
                let c = table
                    .get_mut(row)
                    .unwrap_or_else(|| panic!("seed {seed}: {row:?} retracted, never emitted"));
                *c -= 1;
                if *c == 0 {
                    table.remove(row);
                }
            } else {
                *table.entry(row.clone()).or_default() += 1;
            }
        }
    }
}

/// An input row: key and value.
type Input2 = (Option<i64>, Option<i64>);

/// Over a changelog: random inserts, updates (`-U` of a live row, `+U` of a new one) and
/// deletes of live rows, in random batches, across a restore; the output changelog applied
/// equals the groups of the rows still live, and groups whose rows all left are gone.
#[test]
fn over_a_changelog_rows_taken_back_leave_their_groups_and_empty_groups_are_deleted() {
    for (seed, backend) in (0..20u64).flat_map(|s| BACKENDS.map(|b| (s, b))) {
        let places = Places::new(backend, 0..=15);
        let mut rng = Rng(seed + 100);
        let mut live: Vec<Input2> = Vec::new();
        let mut changes: Vec<(Input2, Kind)> = Vec::new();
        let draw = |rng: &mut Rng| {
            let k = rng.next(5).cast_signed();
            let v = rng.next(10).cast_signed();
            ((k != 4).then_some(k), (v != 9).then_some(v))
        };
        for _ in 0..1 + rng.next(300) {
            match rng.next(10) {
                0..=4 => {
                    let r = draw(&mut rng);
                    live.push(r);
                    changes.push((r, Kind::Insert));
                }
                5..=7 if !live.is_empty() => {
                    let old =
                        live.swap_remove(usize::try_from(rng.next(live.len() as u64)).unwrap());
                    let new = draw(&mut rng);
                    live.push(new);
                    changes.push((old, Kind::UpdateBefore));
                    changes.push((new, Kind::UpdateAfter));
                }
                _ if !live.is_empty() => {
                    let old =
                        live.swap_remove(usize::try_from(rng.next(live.len() as u64)).unwrap());
                    changes.push((old, Kind::Delete));
                }
                _ => {}
            }
        }
        let schema = changelog_input();
        let mut op = make(&places, config_over(&schema, true));
        let mut table: BTreeMap<Row, usize> = BTreeMap::new();
        let restore_at = usize::try_from(rng.next(changes.len() as u64)).unwrap();
        let (mut at, mut restored) = (0, false);
        while at < changes.len() {
            if at >= restore_at && !restored {
                op = restart(&places, &op, config_over(&schema, true));
                restored = true;
            }
            let n = (1 + usize::try_from(rng.next(25)).unwrap()).min(changes.len() - at);
            let part = &changes[at..at + n];
            at += n;
            let b = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(part.iter().map(|r| r.0.0).collect::<Int64Array>()),
                    Arc::new(part.iter().map(|r| r.0.1).collect::<Int64Array>()),
                    changelog::column(&part.iter().map(|r| r.1).collect::<Vec<_>>()),
                ],
            )
            .unwrap();
            let mut out = Output::default();
            op.process(Input::ONLY, b, &mut out).unwrap();
            held_on_disk(&op);
            apply(&out, &mut table, seed);
        }
        assert_eq!(table, oracle(&live), "seed {seed}, {backend:?}");
    }
}

#[test]
fn the_changelog_applied_equals_the_groups_computed_directly_across_a_restore() {
    for (seed, backend) in (0..20u64).flat_map(|s| BACKENDS.map(|b| (s, b))) {
        let places = Places::new(backend, 0..=15);
        let mut rng = Rng(seed);
        let all: Vec<(Option<i64>, Option<i64>)> = (0..1 + rng.next(300))
            .map(|_| {
                let k = rng.next(7).cast_signed();
                let v = rng.next(12).cast_signed();
                ((k != 6).then_some(k), (v != 11).then_some(v))
            })
            .collect();
        let mut op = make(&places, config(true));
        let mut table: BTreeMap<Row, usize> = BTreeMap::new();
        let restore_at = usize::try_from(rng.next(all.len() as u64)).unwrap();
        let mut at = 0;
        while at < all.len() {
            if at >= restore_at && restore_at > 0 {
                op = restart(&places, &op, config(true));
            }
            let n = (1 + usize::try_from(rng.next(40)).unwrap()).min(all.len() - at);
            let mut out = Output::default();
            op.process(Input::ONLY, batch(&all[at..at + n]), &mut out)
                .unwrap();
            held_on_disk(&op);
            at += n;
            apply(&out, &mut table, seed);
        }
        assert_eq!(table, oracle(&all), "seed {seed}, {backend:?}");
    }
}

#[test]
fn an_unchanged_result_emits_nothing_and_distinct_emits_each_group_once_as_inserts() {
    for backend in BACKENDS {
        unchanged_results_emit_nothing(&Places::new(backend, 0..=15));
    }
}

fn unchanged_results_emit_nothing(places: &Places) {
    let mut op = make(places, config(true));
    let mut out = Output::default();
    op.process(Input::ONLY, batch(&[(Some(1), None)]), &mut out)
        .unwrap();
    assert_eq!(out.batches.len(), 1);
    // A null value changes only count(*).
    let mut out = Output::default();
    op.process(Input::ONLY, batch(&[(Some(1), None)]), &mut out)
        .unwrap();
    let rows = rows_of(&out.batches[0]);
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        [Kind::UpdateBefore, Kind::UpdateAfter]
    );

    let mut distinct = make(places, config(false));
    let mut keys = Vec::new();
    for b in [
        vec![(Some(1), Some(1)), (Some(2), None), (Some(1), Some(3))],
        vec![(Some(2), Some(1)), (None, Some(1)), (None, None)],
    ] {
        let mut out = Output::default();
        distinct.process(Input::ONLY, batch(&b), &mut out).unwrap();
        for b in &out.batches {
            assert_eq!(b.num_columns(), 1, "no change kind: inserts only");
            let k = b.column(0).as_primitive::<Int64Type>();
            keys.extend((0..b.num_rows()).map(|r| k.is_valid(r).then(|| k.value(r))));
        }
    }
    assert_eq!(keys, [Some(1), Some(2), None], "{:?}", places.backend);
}

/// `stateTtl`: a group without a row for the TTL of event time (against the watermark) is
/// forgotten, so its next row starts it again (`+I`); the time of each group's newest row
/// survives a restore.
#[test]
fn a_group_without_rows_for_the_ttl_is_forgotten_also_after_a_restore() {
    for backend in BACKENDS {
        groups_expire_by_ttl(&Places::new(backend, 0..=15));
    }
}

fn groups_expire_by_ttl(places: &Places) {
    use datafusion::arrow::array::TimestampMillisecondArray;
    let backend = places.backend;

    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("ts", crate::schema::timestamp_type(), false),
    ]));
    let cfg = || GroupByConfig {
        keys: KeyCodec::new(&schema, vec![0]).unwrap(),
        aggregates: vec![Aggregate {
            func: AggregateFn::Count,
            arg: None,
            kind: ValueKind::Any,
        }],
        output: Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("n", DataType::Int64, true),
            changelog::field(),
        ])),
        max_parallelism: 16,
        retracting: false,
        ttl: Some((1, 5)),
    };
    let run = |op: &mut GroupBy, rows: &[(i64, i64)]| -> Vec<(i64, i64, String)> {
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
            ],
        )
        .unwrap();
        let mut out = Output::default();
        op.process(Input::ONLY, b, &mut out).unwrap();
        out.batches
            .iter()
            .flat_map(|b| {
                let k = b.column(0).as_primitive::<Int64Type>().clone();
                let n = b.column(1).as_primitive::<Int64Type>().clone();
                let c = b.column(2).as_string::<i32>().clone();
                (0..b.num_rows())
                    .map(move |i| (k.value(i), n.value(i), c.value(i).to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let s = |k: i64, n: i64, c: &str| (k, n, c.to_string());
    let mut op = make(places, cfg());
    assert_eq!(
        run(&mut op, &[(1, 0), (2, 8)]),
        [s(1, 1, "+I"), s(2, 1, "+I")]
    );
    op.on_watermark(10, &mut Output::default()).unwrap();
    assert_eq!(
        run(&mut op, &[(1, 11), (2, 12)]),
        [s(1, 1, "+I"), s(2, 1, "-U"), s(2, 2, "+U")],
        "{backend:?}: key 1 expired at 0 + 5 <= 10, key 2 (newest row at 8) did not"
    );
    let mut op = restart(places, &op, cfg());
    op.on_watermark(16, &mut Output::default()).unwrap();
    assert_eq!(
        run(&mut op, &[(1, 18), (2, 18)]),
        [s(1, 1, "+I"), s(2, 2, "-U"), s(2, 3, "+U")],
        "{backend:?}: after the restore key 1 (newest at 11) expired at 16, key 2 (newest at 12) not yet"
    );
    // Every group expires at the end of time, and leaves nothing behind.
    op.on_watermark(Millis::MAX, &mut Output::default())
        .unwrap();
    assert!(op.snapshot().unwrap().is_empty(), "{backend:?}");
    if let Some(d) = &op.disk {
        assert_eq!(d.count(), 0, "{backend:?}: groups left in the store");
    }
}

/// One group of many rows over a changelog: `live` holds each live row's value.
fn one_group_rows(live: &[i64]) -> Vec<Input2> {
    live.iter().map(|v| (Some(1), Some(*v))).collect()
}

/// On disk the values a `count(DISTINCT)` and a `max` over a changelog hold are stored apart
/// from their group (`held`): one group holding thousands of values keeps a small stored
/// value, and its results stay the oracle's while values come and go (its current maximum
/// taken back again and again), across restores, with more values than the memory share of
/// known held values takes (so they are forgotten and read again).
#[test]
fn a_group_holding_thousands_of_values_stays_exact_and_small_on_disk() {
    for backend in BACKENDS {
        let places = Places::new(backend, 0..=15);
        let schema = changelog_input();
        let mut rng = Rng(7);
        // Each value twice, in random order; then the largest half taken back, largest first,
        // a copy at a time.
        let mut adds: Vec<i64> = (0..6_000).chain(0..6_000).collect();
        for i in (1..adds.len()).rev() {
            let j = usize::try_from(rng.next(i as u64 + 1)).unwrap();
            adds.swap(i, j);
        }
        let mut changes: Vec<(i64, Kind)> = adds.into_iter().map(|v| (v, Kind::Insert)).collect();
        changes.extend(
            (3_000..6_000)
                .rev()
                .flat_map(|v| [(v, Kind::Delete), (v, Kind::Delete)]),
        );
        let mut op = make(&places, config_over(&schema, true));
        let mut live: Vec<i64> = Vec::new();
        let mut table: BTreeMap<Row, usize> = BTreeMap::new();
        for (i, part) in changes.chunks(700).enumerate() {
            if i % 7 == 6 {
                op = restart(&places, &op, config_over(&schema, true));
            }
            for (v, kind) in part {
                if kind.retracts() {
                    let at = live.iter().position(|x| x == v).unwrap();
                    live.swap_remove(at);
                } else {
                    live.push(*v);
                }
            }
            let b = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(part.iter().map(|_| 1))),
                    Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0))),
                    changelog::column(&part.iter().map(|r| r.1).collect::<Vec<_>>()),
                ],
            )
            .unwrap();
            let mut out = Output::default();
            op.process(Input::ONLY, b, &mut out).unwrap();
            apply(&out, &mut table, 7);
            assert_eq!(
                table,
                oracle(&one_group_rows(&live)),
                "{backend:?}, batch {i}"
            );
        }
        if let Some(d) = &op.disk {
            op.flush(d).unwrap();
            let (_, stored) = d.sample().unwrap().unwrap();
            assert!(
                stored.len() < 100,
                "{backend:?}: the group's stored value is {} bytes",
                stored.len()
            );
        }
    }
}

/// Over inserts, a `count(DISTINCT)` of thousands of values in a few groups on disk equals
/// the oracle's across restores, and each group's stored value stays small.
#[test]
fn distinct_counts_of_thousands_of_values_stay_exact_and_small_on_disk() {
    for backend in BACKENDS {
        let places = Places::new(backend, 0..=15);
        let mut rng = Rng(11);
        let all: Vec<(Option<i64>, Option<i64>)> = (0..30_000)
            .map(|_| {
                let v = rng.next(12_000).cast_signed();
                (Some(rng.next(3).cast_signed()), (v != 0).then_some(v))
            })
            .collect();
        let mut op = make(&places, config(true));
        let mut table: BTreeMap<Row, usize> = BTreeMap::new();
        for (i, part) in all.chunks(1_000).enumerate() {
            if i % 9 == 8 {
                op = restart(&places, &op, config(true));
            }
            let mut out = Output::default();
            op.process(Input::ONLY, batch(part), &mut out).unwrap();
            apply(&out, &mut table, 11);
        }
        assert_eq!(table, oracle(&all), "{backend:?}");
        if let Some(d) = &op.disk {
            op.flush(d).unwrap();
            let (_, stored) = d.sample().unwrap().unwrap();
            assert!(stored.len() < 100, "{backend:?}: {} bytes", stored.len());
        }
    }
}

/// `stateTtl` on disk: a group that expires takes its held distinct values with it, so the
/// same value counts again when the group starts over, and nothing is left at the end.
#[test]
fn an_expired_group_forgets_its_distinct_values() {
    use datafusion::arrow::array::TimestampMillisecondArray;
    for backend in BACKENDS {
        let places = Places::new(backend, 0..=15);
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
            Field::new("ts", crate::schema::timestamp_type(), false),
        ]));
        let cfg = || GroupByConfig {
            keys: KeyCodec::new(&schema, vec![0]).unwrap(),
            aggregates: vec![Aggregate {
                func: AggregateFn::CountDistinct,
                arg: Some(CompiledExpr::compile("v", &schema).unwrap()),
                kind: ValueKind::Any,
            }],
            output: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("n", DataType::Int64, true),
                changelog::field(),
            ])),
            max_parallelism: 16,
            retracting: false,
            ttl: Some((2, 5)),
        };
        let run = |op: &mut GroupBy, rows: &[(i64, i64, i64)]| -> Vec<(i64, String)> {
            let b = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        rows.iter().map(|r| r.2),
                    )),
                ],
            )
            .unwrap();
            let mut out = Output::default();
            op.process(Input::ONLY, b, &mut out).unwrap();
            out.batches
                .iter()
                .flat_map(|b| {
                    let n = b.column(1).as_primitive::<Int64Type>().clone();
                    let c = b.column(2).as_string::<i32>().clone();
                    (0..b.num_rows())
                        .map(move |i| (n.value(i), c.value(i).to_string()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let s = |n: i64, c: &str| (n, c.to_string());
        let mut op = make(&places, cfg());
        let four: Vec<(i64, i64, i64)> = (7..=10).map(|v| (1, v, 0)).collect();
        assert_eq!(run(&mut op, &four), [s(4, "+I")]);
        // Read again with four values: they move out of the group.
        assert_eq!(run(&mut op, &[(1, 11, 1)]), [s(4, "-U"), s(5, "+U")]);
        if let Some(d) = &op.disk {
            assert_eq!(d.owned_count(), 5, "{backend:?}");
        }
        op.on_watermark(10, &mut Output::default()).unwrap();
        assert_eq!(
            run(&mut op, &[(1, 7, 11)]),
            [s(1, "+I")],
            "{backend:?}: the group expired with its values"
        );
        let mut op = restart(&places, &op, cfg());
        assert_eq!(
            run(&mut op, &[(1, 7, 12), (1, 9, 12)]),
            [s(1, "-U"), s(2, "+U")],
            "{backend:?}"
        );
        op.on_watermark(Millis::MAX, &mut Output::default())
            .unwrap();
        if let Some(d) = &op.disk {
            assert_eq!(d.count(), 0, "{backend:?}: groups left");
            assert_eq!(d.owned_count(), 0, "{backend:?}: held values left");
        }
    }
}

/// A group's distinct values start inside its stored value (as stores written before values
/// were held apart keep them all): a group that has grown to `held::SPILL` values moves them
/// out when a batch reads it, a smaller one keeps them, and both go on exactly as memory does.
/// A group over inserts as a checkpoint holds it.
type Stored = (
    Vec<crate::operator::window::accumulators::Acc>,
    Option<Millis>,
);

#[test]
fn a_group_stored_with_its_values_inside_is_converted_when_read() {
    use crate::operator::window::accumulators::Acc;
    let first: Vec<_> = (1..=5)
        .map(|v| (Some(1), Some(v)))
        .chain([(Some(2), Some(5))])
        .collect();
    let second = [(Some(1), Some(2)), (Some(1), Some(6)), (Some(2), Some(5))];
    let memory = Places::new(crate::operator::tests::Backend::Memory, 0..=15);
    let mut m = make(&memory, config(true));
    m.process(Input::ONLY, batch(&first), &mut Output::default())
        .unwrap();
    let old: Vec<(Vec<u8>, Stored)> =
        crate::operator::decode_keyed("group by", m.snapshot().unwrap()).unwrap();
    assert!(
        old.iter()
            .all(|(_, (accs, _))| matches!(accs[3], Acc::Distinct(_)))
    );

    let disk = Places::new(crate::operator::tests::Backend::Disk, 0..=15);
    let mut d = make(&disk, config(true));
    // As the store of an earlier version holds them: no value held apart.
    let store = d.disk.as_mut().unwrap();
    store
        .put_all(old.into_iter().map(|(k, (a, t))| (k, a, t)), |_| None)
        .unwrap();
    assert_eq!(store.owned_count(), 0);

    let (mut from_memory, mut from_disk) = (Output::default(), Output::default());
    m.process(Input::ONLY, batch(&second), &mut from_memory)
        .unwrap();
    d.process(Input::ONLY, batch(&second), &mut from_disk)
        .unwrap();
    let rows = |o: &Output| o.batches.iter().flat_map(rows_of).collect::<Vec<_>>();
    assert_eq!(rows(&from_disk), rows(&from_memory));
    assert_eq!(rows(&from_disk).len(), 4, "-U and +U of both groups");
    let store = d.disk.as_ref().unwrap();
    d.flush(store).unwrap();
    assert_eq!(
        store.owned_count(),
        6,
        "values 1 to 6 of group 1; group 2 (one value) keeps its own"
    );
    let groups = |op: &GroupBy| {
        let mut g: Vec<(Vec<u8>, Stored)> =
            crate::operator::decode_keyed("group by", op.snapshot().unwrap()).unwrap();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g
    };
    assert_eq!(
        groups(&d),
        groups(&m),
        "the savepoint holds the values again"
    );
}

/// A `GROUP BY` over inserts reads its keys, its arguments and its `stateTtl` column; over a
/// changelog everything.
#[test]
fn a_group_by_reads_keys_arguments_and_its_ttl_column() {
    let wide = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("x", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("t", crate::schema::timestamp_type(), true),
    ]));
    let mut cfg = config_over(&wide, true);
    assert_eq!(
        GroupBy::new(config_over(&wide, true), None)
            .unwrap()
            .reads(None),
        Some(vec![0, 2])
    );
    assert_eq!(
        GroupBy::new(config_over(&wide, false), None)
            .unwrap()
            .reads(None),
        Some(vec![0])
    );
    cfg.ttl = Some((3, 1_000));
    assert_eq!(
        GroupBy::new(cfg, None).unwrap().reads(None),
        Some(vec![0, 2, 3])
    );
    let plain = GroupBy::new(config(true), None).unwrap();
    assert_eq!(plain.reads(None), Some(vec![0, 1]));
    let log = GroupBy::new(config_over(&changelog_input(), true), None).unwrap();
    assert_eq!(log.reads(None), None);
}
