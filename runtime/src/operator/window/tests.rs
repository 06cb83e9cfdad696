//! The aligned layout against the per-key one, which is the behaviour it replaced: the same
//! batches and watermarks must give the same results in the same order, the same checkpoint
//! bytes, and each must restore the other's checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use datafusion::arrow::array::{
    Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir_crds::AggregateFn;

use super::{
    Aggregate, Assigner, Layout, Shared, ValueKind, WindowConfig, WindowOperator, session,
};
use crate::expr::CompiledExpr;
use crate::keys::KeyCodec;
use crate::operator::{Input, Operator, Output};
use crate::schema::timestamp_type;

fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("s", DataType::Utf8, false),
        Field::new("v", DataType::Int64, true),
        Field::new("f", DataType::Float64, false),
        Field::new("ts", timestamp_type(), false),
    ]))
}

fn config(key_by: &[usize], size: i64) -> WindowConfig {
    let schema = input();
    let agg = |func, arg: Option<&str>, kind| Aggregate {
        func,
        arg: arg.map(|a| CompiledExpr::compile(a, &schema).unwrap()),
        kind,
    };
    let int = ValueKind::Int { timestamp: false };
    let aggregates = vec![
        agg(AggregateFn::Count, None, ValueKind::Any),
        agg(AggregateFn::Count, Some("v"), ValueKind::Any),
        agg(AggregateFn::Sum, Some("v"), int),
        agg(AggregateFn::Min, Some("v"), int),
        agg(AggregateFn::Max, Some("v"), int),
        agg(AggregateFn::Avg, Some("f"), ValueKind::Float),
        agg(AggregateFn::Sum, Some("f"), ValueKind::Float),
        agg(
            AggregateFn::Min,
            Some("ts"),
            ValueKind::Int { timestamp: true },
        ),
        agg(AggregateFn::CountDistinct, Some("v"), ValueKind::Any),
    ];
    let mut fields: Vec<Field> = key_by.iter().map(|&i| schema.field(i).clone()).collect();
    fields.push(Field::new("window_start", timestamp_type(), false));
    fields.push(Field::new("window_end", timestamp_type(), false));
    for (i, a) in aggregates.iter().enumerate() {
        fields.push(Field::new(format!("a{i}"), a.output_type(), true));
    }
    WindowConfig {
        assigner: Assigner::Tumbling { size },
        keys: KeyCodec::new(&schema, key_by.to_vec()).unwrap(),
        time_col: 4,
        aggregates,
        output: Arc::new(Schema::new(fields)),
        side_output: true,
        max_parallelism: 16,
    }
}

fn aligned_op(key_by: &[usize], size: i64) -> WindowOperator {
    let op = WindowOperator::new(config(key_by, size)).unwrap();
    assert!(matches!(op.inner, Layout::Aligned(_)));
    op
}

/// The per-key layout with a tumbling assigner: what tumbling windows ran on before.
fn per_key_op(key_by: &[usize], size: i64) -> WindowOperator {
    let shared = Shared::new(config(key_by, size)).unwrap();
    WindowOperator {
        inner: Layout::Session(session::SessionWindows::new(shared)),
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Batch `b`: 200 rows over 30 keys (some null), event time rising with disorder, and now and
/// then a row far behind (late).
fn batch(b: u64) -> RecordBatch {
    let n = 200u64;
    let r = |i: u64, f: u64| mix(b * 1_000_003 + i * 31 + f);
    let k: Int64Array = (0..n)
        .map(|i| (r(i, 1) % 10 != 0).then(|| (r(i, 2) % 30) as i64 - 5))
        .collect();
    let s = StringArray::from_iter_values((0..n).map(|i| format!("s{}", r(i, 3) % 3)));
    let v: Int64Array = (0..n)
        .map(|i| (r(i, 4) % 7 != 0).then(|| (r(i, 5) % 100) as i64 - 20))
        .collect();
    let f = Float64Array::from_iter_values((0..n).map(|i| (r(i, 6) % 1000) as f64 / 7.0));
    let ts = TimestampMillisecondArray::from_iter_values((0..n).map(|i| {
        let t = (b * n + i) as i64;
        if r(i, 7) % 50 == 0 {
            t - 400
        } else {
            t - (r(i, 8) % 20) as i64
        }
    }));
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(k),
            Arc::new(s),
            Arc::new(v),
            Arc::new(f),
            Arc::new(ts),
        ],
    )
    .unwrap()
}

fn one(out: &Output, schema: &SchemaRef) -> RecordBatch {
    concat_batches(schema, &out.batches).unwrap()
}

fn run_both(key_by: &[usize]) {
    let size = 100;
    let (mut a, mut p) = (aligned_op(key_by, size), per_key_op(key_by, size));
    let schema = config(key_by, size).output;
    let mut fired = 0;
    for b in 0..40 {
        let (mut oa, mut op) = (Output::default(), Output::default());
        a.process(Input::ONLY, batch(b), &mut oa).unwrap();
        p.process(Input::ONLY, batch(b), &mut op).unwrap();
        let wm = (b * 200) as i64 - 50;
        a.on_watermark(wm, &mut oa).unwrap();
        p.on_watermark(wm, &mut op).unwrap();
        assert_eq!(one(&oa, &schema), one(&op, &schema), "batch {b}: results");
        assert_eq!(oa.side, op.side, "batch {b}: late records");
        fired += one(&oa, &schema).num_rows();
        let (sa, sp) = (a.snapshot().unwrap(), p.snapshot().unwrap());
        // Equal as decoded (keys and count_distinct's sets encode in hash order, so not as
        // bytes).
        let with_groups = |s: &crate::operator::KeyedState| {
            let groups: Vec<u32> = s.iter().map(|(kg, _)| *kg).collect();
            (groups, decoded(s.clone()))
        };
        let same = with_groups(&sa) == with_groups(&sp);
        assert!(same, "batch {b}: the checkpoints differ");
        if b % 7 == 3 {
            // Swap layouts through the checkpoint: each must continue from the other's.
            let (mut a2, mut p2) = (aligned_op(key_by, size), per_key_op(key_by, size));
            a2.restore(sp).unwrap();
            p2.restore(sa).unwrap();
            let (mut oa, mut op) = (Output::default(), Output::default());
            a2.on_watermark(wm, &mut oa).unwrap();
            p2.on_watermark(wm, &mut op).unwrap();
            (a, p) = (a2, p2);
        }
    }
    assert!(fired > 500, "the test fired only {fired} results");
    let (mut oa, mut op) = (Output::default(), Output::default());
    a.on_watermark(i64::MAX, &mut oa).unwrap();
    p.on_watermark(i64::MAX, &mut op).unwrap();
    assert_eq!(one(&oa, &schema), one(&op, &schema), "final results");
}

#[test]
fn aligned_windows_over_an_integer_key_match_the_per_key_layout() {
    run_both(&[0]);
}

#[test]
fn aligned_windows_over_a_composite_key_match_the_per_key_layout() {
    run_both(&[1, 0]);
}

#[test]
fn sliding_windows_restore_into_any_number_of_subtasks() {
    // Sliding windows have no per-key twin; their own round trip through a checkpoint must
    // give what an uninterrupted run gives.
    let mut c = config(&[0], 100);
    c.assigner = Assigner::Sliding {
        size: 100,
        slide: 25,
    };
    let schema = c.output.clone();
    let mut whole = WindowOperator::new(c).unwrap();
    let mut out = Output::default();
    for b in 0..5 {
        whole.process(Input::ONLY, batch(b), &mut out).unwrap();
    }
    let state = whole.snapshot().unwrap();
    whole.on_watermark(i64::MAX, &mut out).unwrap();
    let expected = one(&out, &schema);
    let mut restored = Vec::new();
    for t in 0..3 {
        let range = crate::keys::key_group_range(t, 3, 16);
        let mut c = config(&[0], 100);
        c.assigner = Assigner::Sliding {
            size: 100,
            slide: 25,
        };
        let mut o = WindowOperator::new(c).unwrap();
        let mine = state.iter().filter(|(kg, _)| range.contains(kg)).cloned();
        o.restore(mine.collect()).unwrap();
        let mut out = Output::default();
        o.on_watermark(i64::MAX, &mut out).unwrap();
        restored.extend(out.batches);
    }
    let sort = |b: &RecordBatch| {
        let mut rows: Vec<String> = (0..b.num_rows())
            .map(|r| {
                (0..b.num_columns())
                    .map(|c| {
                        datafusion::arrow::util::display::array_value_to_string(b.column(c), r)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        rows.sort();
        rows
    };
    let got = sort(&concat_batches(&schema, &restored).unwrap());
    assert!(got.len() > 100);
    assert_eq!(got, sort(&expected));
}

#[test]
fn a_capture_encodes_the_state_at_the_barrier_even_when_encoded_later() {
    for key_by in [&[0][..], &[1, 0][..]] {
        let mut op = aligned_op(key_by, 100);
        let mut out = Output::default();
        for b in 0..6 {
            op.process(Input::ONLY, batch(b), &mut out).unwrap();
        }
        let crate::operator::Capture::Keyed(captured) = op.capture(false).unwrap() else {
            panic!("window state is captured per key group");
        };
        let at_barrier = op.snapshot().unwrap();
        for b in 6..12 {
            op.process(Input::ONLY, batch(b), &mut out).unwrap();
        }
        let later = captured().unwrap();
        assert_eq!(decoded(later), decoded(at_barrier), "keys {key_by:?}");
        assert_ne!(decoded(op.snapshot().unwrap()).len(), 0);
    }
}

/// A checkpoint restored into a job whose window was edited in a way that changes its state
/// (aggregates removed, reordered or retyped; key columns of another type) is refused with a
/// message saying what changed, by both layouts, instead of restoring accumulators into the
/// wrong aggregates (or dropping them) and keys into other keys. Before, the aligned layout
/// zipped what it found with what the job had, and an integer key read as a string became
/// the empty string: every key one key. Mutation: skip `check_restored` in either layout, or
/// the round trip in `KeyCodec::decode_stored`, and a case below restores "fine".
#[test]
fn a_checkpoint_of_an_edited_window_is_refused_naming_what_changed() {
    let filled = |mut op: WindowOperator| {
        let mut out = Output::default();
        for b in 0..3 {
            op.process(Input::ONLY, batch(b), &mut out).unwrap();
        }
        op.snapshot().unwrap()
    };
    let (int_key, str_key) = (filled(aligned_op(&[0], 100)), filled(aligned_op(&[1], 100)));
    let fewer = |mut c: WindowConfig| {
        c.aggregates.pop();
        c
    };
    let swapped = |mut c: WindowConfig| {
        c.aggregates.swap(2, 5);
        c
    };
    let float_sum = |mut c: WindowConfig| {
        c.aggregates[2].kind = ValueKind::Float;
        c
    };
    type Edit = fn(WindowConfig) -> WindowConfig;
    let cases: [(&str, &[usize], Edit, &crate::operator::KeyedState, &str); 5] = [
        (
            "an aggregate removed",
            &[0],
            fewer,
            &int_key,
            "9 accumulators",
        ),
        (
            "aggregates reordered",
            &[0],
            swapped,
            &int_key,
            "aggregate 3 (Avg) needs avg",
        ),
        (
            "sum over a float",
            &[0],
            float_sum,
            &int_key,
            "needs float sum state",
        ),
        (
            "int key read as string",
            &[1],
            |c| c,
            &int_key,
            "type (Utf8)",
        ),
        (
            "string key read as int",
            &[0],
            |c| c,
            &str_key,
            "type (Int64)",
        ),
    ];
    for (what, key_by, edit, state, want) in cases {
        let aligned = WindowOperator::new(edit(config(key_by, 100))).unwrap();
        let per_key = WindowOperator {
            inner: Layout::Session(session::SessionWindows::new(
                Shared::new(edit(config(key_by, 100))).unwrap(),
            )),
        };
        for (layout, mut op) in [("aligned", aligned), ("per key", per_key)] {
            let Err(e) = op.restore(state.clone()) else {
                panic!("{what}: the {layout} layout restored an edited window's checkpoint");
            };
            let e = e.to_string();
            assert!(e.contains(want), "{what} ({layout}): {e}");
            assert!(e.contains("since the checkpoint was taken"), "{what}: {e}");
        }
    }
    // The unedited job still restores both.
    for (key_by, state) in [(&[0][..], &int_key), (&[1][..], &str_key)] {
        aligned_op(key_by, 100).restore(state.clone()).unwrap();
        per_key_op(key_by, 100).restore(state.clone()).unwrap();
    }
}

fn geometry(assigner: Assigner) -> WindowConfig {
    let mut c = config(&[0], 100);
    c.assigner = assigner;
    c
}

/// A window operator with its state in a store at `dir`, owning key groups `groups`.
fn on_disk(
    assigner: Assigner,
    dir: &std::path::Path,
    groups: std::ops::RangeInclusive<u32>,
) -> WindowOperator {
    let place = crate::state::disk::Place {
        dir: dir.to_path_buf(),
        budget: weir_state::Budget::new(16 << 20),
        groups: weir_state::KeyGroups::new(groups),
        operator: "window-0".into(),
        ahead: None,
    };
    let op = WindowOperator::new_in(geometry(assigner), Some(place)).unwrap();
    assert!(matches!(op.inner, Layout::Session(_)));
    op
}

/// The rows of `batch` whose key falls in key groups `groups` (of 16).
fn rows_in(batch: &RecordBatch, groups: &std::ops::RangeInclusive<u32>) -> RecordBatch {
    let codec = KeyCodec::new(&input(), vec![0]).unwrap();
    let rows = codec.rows(batch).unwrap();
    let keep: datafusion::arrow::array::BooleanArray = (0..batch.num_rows())
        .map(|r| Some(groups.contains(&crate::keys::key_group(rows.row(r).as_ref(), 16))))
        .collect();
    datafusion::arrow::compute::filter_record_batch(batch, &keep).unwrap()
}

fn decoded(s: crate::operator::KeyedState) -> Vec<(Vec<u8>, super::KeyWindows)> {
    let mut entries = crate::operator::decode_keyed::<super::KeyWindows>("window", s).unwrap();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// The disk backend's windows against memory's (the aligned layout for tumbling and sliding,
/// the per-key one for sessions): the same results in the same order and the same late
/// records, batch by batch; then a checkpoint of the store restored into two subtasks (one
/// from the store's files, one from the memory backend's checkpoint) that go on giving what
/// memory's two subtasks give; and a savepoint of each holding what memory's holds.
/// Mutation: fire timers in key-group order without the final sort, or drop the windows a
/// session merge removed from the timers, and a comparison below fails.
fn disk_matches_memory(assigner: Assigner) {
    let tmp = tempfile::tempdir().unwrap();
    let schema = geometry(assigner).output;
    let mut memory = WindowOperator::new(geometry(assigner)).unwrap();
    let mut disk = on_disk(assigner, &tmp.path().join("one"), 0..=15);
    let mut fired = 0;
    for b in 0..20 {
        let (mut om, mut od) = (Output::default(), Output::default());
        memory.process(Input::ONLY, batch(b), &mut om).unwrap();
        disk.process(Input::ONLY, batch(b), &mut od).unwrap();
        let wm = (b * 200) as i64 - 50;
        memory.on_watermark(wm, &mut om).unwrap();
        disk.on_watermark(wm, &mut od).unwrap();
        assert_eq!(one(&od, &schema), one(&om, &schema), "batch {b}: results");
        assert_eq!(od.side, om.side, "batch {b}: late records");
        fired += one(&om, &schema).num_rows();
    }
    assert!(fired > 100, "{assigner:?}: only {fired} results fired");
    assert_eq!(
        decoded(disk.snapshot().unwrap()),
        decoded(memory.snapshot().unwrap()),
        "the state before the checkpoint"
    );

    let crate::operator::Capture::Disk(capture) = disk.capture(false).unwrap() else {
        panic!("a checkpoint of disk state hard-links the store");
    };
    let download = tmp.path().join("download");
    std::fs::create_dir_all(&download).unwrap();
    for f in capture.checkpoint.files() {
        std::fs::copy(&f.path, download.join(&f.name)).unwrap();
    }
    let mem_state = memory.snapshot().unwrap();
    let halves = [0..=7u32, 8..=15];
    for (i, h) in halves.iter().enumerate() {
        let mine = || {
            mem_state
                .iter()
                .filter(|(kg, _)| h.contains(kg))
                .cloned()
                .collect()
        };
        let mut m = WindowOperator::new(geometry(assigner)).unwrap();
        m.restore(mine()).unwrap();
        let mut d = on_disk(assigner, &tmp.path().join(format!("half{i}")), h.clone());
        if i == 0 {
            d.restore_disk(vec![crate::state::disk::Fetched {
                source: weir_state::Source {
                    dir: download.clone(),
                    groups: capture.groups,
                },
                tables: Vec::new(),
                reusable: false,
                reused_bytes: 0,
            }])
            .unwrap();
        } else {
            d.restore(mine()).unwrap();
        }
        let mut fired = 0;
        for b in 20..30 {
            let part = rows_in(&batch(b), h);
            let (mut om, mut od) = (Output::default(), Output::default());
            m.process(Input::ONLY, part.clone(), &mut om).unwrap();
            d.process(Input::ONLY, part, &mut od).unwrap();
            let wm = (b * 200) as i64 - 50;
            m.on_watermark(wm, &mut om).unwrap();
            d.on_watermark(wm, &mut od).unwrap();
            assert_eq!(
                one(&od, &schema),
                one(&om, &schema),
                "subtask {i}, batch {b}"
            );
            assert_eq!(od.side, om.side, "subtask {i}, batch {b}: late records");
            fired += one(&om, &schema).num_rows();
        }
        assert!(fired > 10, "subtask {i} fired {fired}");
        let crate::operator::Capture::Streamed(encode) = d.capture(true).unwrap() else {
            panic!("a savepoint's capture must be portable");
        };
        assert_eq!(
            decoded(crate::operator::gather(encode).unwrap()),
            decoded(m.snapshot().unwrap()),
            "subtask {i}: savepoint state"
        );
        let (mut om, mut od) = (Output::default(), Output::default());
        m.on_watermark(i64::MAX, &mut om).unwrap();
        d.on_watermark(i64::MAX, &mut od).unwrap();
        assert_eq!(
            one(&od, &schema),
            one(&om, &schema),
            "subtask {i}: the rest"
        );
        assert!(
            decoded(d.snapshot().unwrap()).is_empty(),
            "fired windows stay"
        );
    }
}

#[test]
fn session_windows_on_disk_match_memory_across_a_rescale() {
    disk_matches_memory(Assigner::Session { gap: 30 });
}

#[test]
fn tumbling_windows_on_disk_match_memory_across_a_rescale() {
    disk_matches_memory(Assigner::Tumbling { size: 100 });
}

#[test]
fn sliding_windows_on_disk_match_memory_across_a_rescale() {
    disk_matches_memory(Assigner::Sliding {
        size: 100,
        slide: 25,
    });
}

/// A window in memory refuses a checkpoint of disk state, naming the way out.
#[test]
fn a_window_in_memory_refuses_disk_state() {
    let tmp = tempfile::tempdir().unwrap();
    let mut memory = WindowOperator::new(geometry(Assigner::Session { gap: 30 })).unwrap();
    let err = memory
        .restore_disk(vec![crate::state::disk::Fetched {
            source: weir_state::Source {
                dir: tmp.path().to_path_buf(),
                groups: weir_state::KeyGroups::new(0..=15),
            },
            tables: Vec::new(),
            reusable: false,
            reused_bytes: 0,
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("savepoint"), "{err}");
}

/// A window reads its keys, the event time and its aggregates' arguments, so that a stage
/// before it may leave the other columns out: its results are the same when they are only
/// stand-ins. With late records going to a side output, which takes them whole, it reads all.
#[test]
fn a_window_reads_keys_time_and_arguments_only() {
    // Without a side output, and with aggregates that do not read the time column, so that
    // only the window itself does.
    let narrow_config = |key_by: &[usize]| {
        let mut c = config(key_by, 100);
        c.side_output = false;
        c.aggregates.truncate(3);
        let fields: Vec<_> = c
            .output
            .fields()
            .iter()
            .take(key_by.len() + 5)
            .cloned()
            .collect();
        c.output = Arc::new(Schema::new(fields));
        c
    };
    let without_side = |key_by: &[usize]| WindowOperator::new(narrow_config(key_by)).unwrap();
    assert_eq!(aligned_op(&[0], 100).reads(None), None);
    for key_by in [&[0][..], &[1][..]] {
        let reads = without_side(key_by).reads(None).unwrap();
        let (mut whole, mut part) = (without_side(key_by), without_side(key_by));
        let schema = narrow_config(key_by).output;
        let (mut ow, mut op) = (Output::default(), Output::default());
        for b in 0..10 {
            let full = batch(b);
            let columns = (0..full.num_columns())
                .map(|i| match reads.contains(&i) {
                    true => Arc::clone(full.column(i)),
                    false => crate::operator::stand_in(full.schema().field(i), 200).unwrap(),
                })
                .collect();
            let narrowed = RecordBatch::try_new(full.schema(), columns).unwrap();
            whole.process(Input::ONLY, full, &mut ow).unwrap();
            part.process(Input::ONLY, narrowed, &mut op).unwrap();
        }
        whole.on_watermark(i64::MAX, &mut ow).unwrap();
        part.on_watermark(i64::MAX, &mut op).unwrap();
        assert!(one(&ow, &schema).num_rows() > 0);
        assert_eq!(one(&ow, &schema), one(&op, &schema), "keyed by {key_by:?}");
    }
    assert_eq!(without_side(&[1]).reads(None), Some(vec![1, 2, 4]));
}
