//! Operator tests over hand-made batches.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimestampMillisecondType,
};
use indexmap::IndexMap;
use weir_crds::{Duration, LatePolicy, SessionSpec, SinkSpec, SlidingSpec, Transform, WindowSpec};

use super::{Input, Operator, Output};
use crate::keys::key_group_range;
use crate::plan::OpPlan;

/// A reproducible pseudo-random sequence (splitmix64), for the operators' randomised tests.
pub(super) struct Rng(pub u64);

impl Rng {
    /// The next number in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// Where a test's operator keeps its state, and how a checkpoint half way is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    /// In memory, through its keyed checkpoint.
    Memory,
    /// On disk, through a checkpoint of the store's files, as a job restores one.
    Disk,
    /// On disk, through a savepoint (the keyed format, encoded from a frozen copy).
    DiskSavepoint,
}

pub(super) const BACKENDS: [Backend; 3] = [Backend::Memory, Backend::Disk, Backend::DiskSavepoint];

/// Places for a test's operators on one backend: each disk store in its own directory,
/// owning key groups `groups`.
pub(super) struct Places {
    pub backend: Backend,
    groups: std::ops::RangeInclusive<u32>,
    dir: tempfile::TempDir,
    made: std::cell::Cell<u32>,
}

impl Places {
    pub fn new(backend: Backend, groups: std::ops::RangeInclusive<u32>) -> Self {
        Self {
            backend,
            groups,
            dir: tempfile::tempdir().unwrap(),
            made: std::cell::Cell::new(0),
        }
    }

    /// Where the next operator keeps its state: nowhere (memory), or a fresh directory.
    pub fn place(&self) -> Option<crate::state::disk::Place> {
        let n = self.made.get();
        self.made.set(n + 1);
        (self.backend != Backend::Memory).then(|| crate::state::disk::Place {
            dir: self.dir.path().join(format!("op-{n}")),
            budget: weir_state::Budget::new(16 << 20),
            groups: weir_state::KeyGroups::new(self.groups.clone()),
            operator: "op-0".into(),
            ahead: None,
        })
    }

    /// Checkpoint `from` and restore it into `into` (fresh, made with [`Self::place`]) the
    /// backend's way.
    pub fn restore(&self, from: &dyn Operator, into: &mut dyn Operator) {
        let savepoint = self.backend == Backend::DiskSavepoint;
        match (self.backend, from.capture(savepoint).unwrap()) {
            (Backend::Disk, super::Capture::Disk(capture)) => {
                let n = self.made.get();
                self.made.set(n + 1);
                let download = self.dir.path().join(format!("download-{n}"));
                std::fs::create_dir_all(&download).unwrap();
                for f in capture.checkpoint.files() {
                    std::fs::copy(&f.path, download.join(&f.name)).unwrap();
                }
                into.restore_disk(vec![crate::state::disk::Fetched {
                    source: weir_state::Source {
                        dir: download,
                        groups: capture.groups,
                    },
                    tables: Vec::new(),
                    reusable: false,
                    reused_bytes: 0,
                }])
                .unwrap();
            }
            (Backend::Memory, super::Capture::Keyed(encode)) => {
                into.restore(encode().unwrap()).unwrap();
            }
            // As a job restores parts: a piece at a time. Unit tests cut key groups into
            // pieces of 64 bytes, so that each operator's test restores some key group from
            // several pieces.
            (Backend::DiskSavepoint, super::Capture::Streamed(encode)) => {
                for piece in super::gather(encode).unwrap() {
                    into.restore(vec![piece]).unwrap();
                }
            }
            (backend, _) => panic!("{backend:?}: the capture has the wrong form"),
        }
    }
}

fn input_schema() -> SchemaRef {
    crate::schema::source_schema(&[
        weir_crds::FieldSpec {
            name: "k".into(),
            data_type: weir_crds::FieldType::String,
            nullable: false,
        },
        weir_crds::FieldSpec {
            name: "v".into(),
            data_type: weir_crds::FieldType::Int64,
            nullable: true,
        },
        weir_crds::FieldSpec {
            name: "ts".into(),
            data_type: weir_crds::FieldType::Timestamp,
            nullable: false,
        },
    ])
}

fn batch(rows: &[(&str, Option<i64>, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .unwrap()
}

fn window_spec(kind: &str, late: LatePolicy) -> WindowSpec {
    let mut aggregates = IndexMap::new();
    for (n, a) in [
        ("n", "count(*)"),
        ("nv", "count(v)"),
        ("s", "sum(v)"),
        ("lo", "min(v)"),
        ("hi", "max(v)"),
        ("mean", "avg(v)"),
        ("d", "count_distinct(v)"),
    ] {
        aggregates.insert(n.to_string(), a.to_string());
    }
    WindowSpec {
        id: None,
        tumbling: (kind == "tumbling").then(|| Duration::from_millis(10)),
        sliding: (kind == "sliding").then(|| SlidingSpec {
            size: Duration::from_millis(10),
            slide: Duration::from_millis(5),
        }),
        session: (kind == "session").then(|| SessionSpec {
            gap: Duration::from_millis(5),
        }),
        key_by: vec!["k".into()],
        aggregates,
        late_records: late,
    }
}

fn window_op(kind: &str, late: LatePolicy) -> Box<dyn Operator> {
    let spec = window_spec(kind, late.clone());
    let src = "source: {}\n";
    let job: weir_crds::JobFile = serde_yaml::from_str(
        "source:\n  datagen: {fields: {}}\n  schema: [{name: k, type: string}, {name: v, type: int64, nullable: true}, {name: ts, type: timestamp}]\n  eventTime: {field: ts}\ntransforms: []\nsinks: [{blackhole: {}}]\n",
    )
    .unwrap();
    let mut job = job;
    job.pipeline.transforms = vec![Transform::Window(spec)];
    let plan = crate::plan::plan(&job, "t", "t.yaml", src).unwrap();
    let op: &OpPlan = &plan.stages[1].ops[0].op;
    op.instantiate(128).unwrap()
}

/// Rows as (key, start, end, n, nv, s, lo, hi, mean, d).
type Row = (
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    i64,
);

fn rows(out: &Output) -> Vec<Row> {
    let mut v = Vec::new();
    for b in &out.batches {
        let c = |i: usize| b.column(i).clone();
        let k = c(0);
        let k = k.as_string::<i32>();
        for r in 0..b.num_rows() {
            let i64c = |i: usize| c(i).as_primitive::<Int64Type>().value(r);
            let opt = |i: usize| {
                let a = c(i);
                let a = a.as_primitive::<Int64Type>();
                a.is_valid(r).then(|| a.value(r))
            };
            let mean = c(8);
            let mean = mean.as_primitive::<Float64Type>();
            v.push((
                k.value(r).to_string(),
                c(1).as_primitive::<TimestampMillisecondType>().value(r),
                c(2).as_primitive::<TimestampMillisecondType>().value(r),
                i64c(3),
                i64c(4),
                i64c(5),
                opt(6),
                opt(7),
                mean.is_valid(r).then(|| mean.value(r)),
                i64c(9),
            ));
        }
    }
    v.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    v
}

#[test]
fn tumbling_windows_fire_when_the_watermark_passes_their_end() {
    let mut op = window_op("tumbling", LatePolicy::Drop {});
    let mut out = Output::default();
    op.process(
        Input::ONLY,
        batch(&[
            ("a", Some(1), 0),
            ("a", Some(3), 9),
            ("b", None, 5),
            ("a", Some(3), 12),
        ]),
        &mut out,
    )
    .unwrap();
    op.on_watermark(8, &mut out).unwrap();
    assert!(
        out.batches.is_empty(),
        "window [0,10) must not fire at watermark 8"
    );
    op.on_watermark(9, &mut out).unwrap();
    assert_eq!(
        rows(&out),
        vec![
            ("a".into(), 0, 10, 2, 2, 4, Some(1), Some(3), Some(2.0), 2),
            ("b".into(), 0, 10, 1, 0, 0, None, None, None, 0),
        ]
    );
}

#[test]
fn a_record_for_a_closed_window_is_late_and_goes_to_the_side_output() {
    let side = LatePolicy::SideOutput(Box::new(SinkSpec::Blackhole { name: None }));
    let mut op = window_op("tumbling", side);
    let mut out = Output::default();
    op.process(Input::ONLY, batch(&[("a", Some(1), 0)]), &mut out)
        .unwrap();
    op.on_watermark(15, &mut out).unwrap();
    op.process(
        Input::ONLY,
        batch(&[("a", Some(7), 3), ("a", Some(8), 16)]),
        &mut out,
    )
    .unwrap();
    assert_eq!(op.counters().late_records, 1);
    assert_eq!(out.side.len(), 1);
    assert_eq!(out.side[0].num_rows(), 1);
    assert_eq!(
        out.side[0].column(1).as_primitive::<Int64Type>().value(0),
        7
    );
    let mut dropping = window_op("tumbling", LatePolicy::Drop {});
    let mut out2 = Output::default();
    dropping.on_watermark(15, &mut out2).unwrap();
    dropping
        .process(Input::ONLY, batch(&[("a", Some(7), 3)]), &mut out2)
        .unwrap();
    assert!(out2.side.is_empty());
    assert_eq!(dropping.counters().late_records, 1);
}

#[test]
fn sliding_windows_count_a_record_in_every_window_containing_it() {
    let mut op = window_op("sliding", LatePolicy::Drop {});
    let mut out = Output::default();
    op.process(Input::ONLY, batch(&[("a", Some(1), 7)]), &mut out)
        .unwrap();
    op.on_watermark(100, &mut out).unwrap();
    let got: Vec<(i64, i64)> = rows(&out).iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(got, vec![(0, 10), (5, 15)]);
}

#[test]
fn session_windows_merge_records_closer_than_the_gap() {
    let mut op = window_op("session", LatePolicy::Drop {});
    let mut out = Output::default();
    // 0 and 4 merge (gap 5), 20 is its own session; 2 arrives later and falls into the first.
    op.process(
        Input::ONLY,
        batch(&[("a", Some(1), 0), ("a", Some(2), 20), ("a", Some(4), 4)]),
        &mut out,
    )
    .unwrap();
    op.process(Input::ONLY, batch(&[("a", Some(8), 2)]), &mut out)
        .unwrap();
    op.on_watermark(100, &mut out).unwrap();
    let got: Vec<(i64, i64, i64, i64)> = rows(&out).iter().map(|r| (r.1, r.2, r.3, r.5)).collect();
    assert_eq!(got, vec![(0, 9, 3, 13), (20, 25, 1, 2)]);
}

#[test]
fn window_state_survives_a_snapshot_split_across_new_subtasks() {
    let mut op = window_op("tumbling", LatePolicy::Drop {});
    let mut out = Output::default();
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    let input: Vec<(&str, Option<i64>, i64)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), Some(i as i64), 3))
        .collect();
    op.process(Input::ONLY, batch(&input), &mut out).unwrap();
    let state = op.snapshot().unwrap();
    // Restore into three subtasks, each taking its key-group range, then fire.
    let mut restored = Vec::new();
    for t in 0..3 {
        let range = key_group_range(t, 3, 128);
        let mut o = window_op("tumbling", LatePolicy::Drop {});
        o.restore(
            state
                .iter()
                .filter(|(kg, _)| range.contains(kg))
                .cloned()
                .collect(),
        )
        .unwrap();
        let mut out = Output::default();
        o.on_watermark(100, &mut out).unwrap();
        restored.extend(rows(&out));
    }
    op.on_watermark(100, &mut out).unwrap();
    let mut expected = rows(&out);
    restored.sort_by(|a, b| a.0.cmp(&b.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(restored.len(), 40);
    assert_eq!(restored, expected);
}

/// A job of one dedup with `ttl` ms over (k, v, ts), planned.
fn dedup_plan(ttl: u64) -> crate::plan::Plan {
    let mut job: weir_crds::JobFile = serde_yaml::from_str(
        "source:\n  datagen: {fields: {}}\n  schema: [{name: k, type: string}, {name: v, type: int64, nullable: true}, {name: ts, type: timestamp}]\n  eventTime: {field: ts}\nsinks: [{blackhole: {}}]\n",
    )
    .unwrap();
    job.pipeline.transforms = vec![Transform::Dedup(weir_crds::DedupSpec {
        id: None,
        key_by: vec!["k".into()],
        ttl: Duration::from_millis(ttl),
    })];
    crate::plan::plan(&job, "t", "t.yaml", "").unwrap()
}

#[test]
fn dedup_keeps_the_first_record_per_key_within_the_ttl() {
    let plan = dedup_plan(10);
    let mut op = plan.stages[1].ops[0].op.instantiate(128).unwrap();
    let mut out = Output::default();
    op.process(
        Input::ONLY,
        batch(&[("a", Some(1), 0), ("a", Some(2), 5), ("b", Some(3), 6)]),
        &mut out,
    )
    .unwrap();
    op.on_watermark(20, &mut out).unwrap();
    op.process(Input::ONLY, batch(&[("a", Some(4), 21)]), &mut out)
        .unwrap();
    let vs: Vec<i64> = out
        .batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(vs, vec![1, 3, 4]);
    assert_eq!(op.counters().duplicates, 1);
    assert_eq!(
        plan.stages[1].ops[0].op.output.field(1).data_type(),
        &DataType::Int64
    );
}

/// A dedup operator with `ttl` ms, in memory or on disk at `place`.
fn dedup_op(ttl: u64, place: Option<crate::state::disk::Place>) -> Box<dyn Operator> {
    dedup_plan(ttl).stages[1].ops[0]
        .op
        .instantiate_in(128, place)
        .unwrap()
}

fn place(
    dir: &std::path::Path,
    groups: std::ops::RangeInclusive<u32>,
) -> crate::state::disk::Place {
    crate::state::disk::Place {
        dir: dir.to_path_buf(),
        budget: weir_state::Budget::new(16 << 20),
        groups: weir_state::KeyGroups::new(groups),
        operator: "dedup-0".into(),
        ahead: None,
    }
}

fn kept(out: &Output) -> Vec<i64> {
    out.batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

/// Rows `from..to` of a reproducible stream: 80 keys, times rising with disorder.
fn dedup_rows(from: i64, to: i64) -> Vec<(String, Option<i64>, i64)> {
    let mut rng = Rng(from as u64 ^ 0x5eed);
    (from..to)
        .map(|i| {
            let k = format!("k{}", rng.next(80));
            (k, Some(i), i - rng.next(5) as i64)
        })
        .collect()
}

fn feed(op: &mut dyn Operator, rows: &[(String, Option<i64>, i64)], out: &mut Output) {
    for chunk in rows.chunks(37) {
        let b: Vec<(&str, Option<i64>, i64)> =
            chunk.iter().map(|(k, v, t)| (k.as_str(), *v, *t)).collect();
        op.process(Input::ONLY, batch(&b), out).unwrap();
        let wm = chunk.last().unwrap().2 - 10;
        op.on_watermark(wm, out).unwrap();
    }
}

/// A disk store's capture, downloaded as a restore would fetch it.
fn fetched_copy(op: &dyn Operator, to: &std::path::Path) -> crate::state::disk::Fetched {
    let super::Capture::Disk(c) = op.capture(false).unwrap() else {
        panic!("a disk operator captured keyed state");
    };
    std::fs::create_dir_all(to).unwrap();
    for f in c.checkpoint.files() {
        std::fs::copy(&f.path, to.join(&f.name)).unwrap();
    }
    crate::state::disk::Fetched {
        source: weir_state::Source {
            dir: to.to_path_buf(),
            groups: c.groups,
        },
        tables: Vec::new(),
        reusable: false,
        reused_bytes: 0,
    }
}

#[test]
fn dedup_on_disk_keeps_and_forgets_the_same_records_as_in_memory_across_a_rescale() {
    let tmp = tempfile::tempdir().unwrap();
    let ttl = 300;
    let mut memory = dedup_op(ttl, None);
    let mut disk = dedup_op(ttl, Some(place(&tmp.path().join("one"), 0..=127)));
    let first = dedup_rows(0, 3_000);
    let (mut mo, mut dout) = (Output::default(), Output::default());
    feed(memory.as_mut(), &first, &mut mo);
    feed(disk.as_mut(), &first, &mut dout);
    assert_eq!(kept(&dout), kept(&mo), "before the checkpoint");
    let before = kept(&mo).len();
    assert!(
        before > 80 && before < 2_900,
        "the stream should both keep and drop records: kept {before} of 3000"
    );

    // Checkpoint, then restore into two subtasks of key groups 0..=63 and 64..=127, with
    // a shorter ttl (not part of the state: both backends must forget by the new one).
    let mem_state = memory.snapshot().unwrap();
    let copy = fetched_copy(disk.as_ref(), &tmp.path().join("download"));
    let halves = [0..=63u32, 64..=127];
    let mut mems: Vec<Box<dyn Operator>> = Vec::new();
    let mut disks: Vec<Box<dyn Operator>> = Vec::new();
    for (i, h) in halves.iter().enumerate() {
        let mut m = dedup_op(ttl / 3, None);
        m.restore(
            mem_state
                .iter()
                .filter(|(kg, _)| h.contains(kg))
                .cloned()
                .collect(),
        )
        .unwrap();
        mems.push(m);
        let mut d = dedup_op(
            ttl / 3,
            Some(place(&tmp.path().join(format!("half{i}")), h.clone())),
        );
        let src = tmp.path().join(format!("download{i}"));
        copy_dir(&copy.source.dir, &src);
        d.restore_disk(vec![crate::state::disk::Fetched {
            source: weir_state::Source {
                dir: src,
                groups: copy.source.groups,
            },
            tables: Vec::new(),
            reusable: false,
            reused_bytes: 0,
        }])
        .unwrap();
        disks.push(d);
    }
    let codec = crate::keys::KeyCodec::new(&input_schema(), vec![0]).unwrap();
    let rest = dedup_rows(3_000, 6_000);
    for (i, h) in halves.iter().enumerate() {
        let mine: Vec<_> = rest
            .iter()
            .filter(|(k, _, _)| {
                let b = batch(&[(k.as_str(), None, 0)]);
                let rows = codec.rows(&b).unwrap();
                h.contains(&crate::keys::key_group(rows.row(0).as_ref(), 128))
            })
            .cloned()
            .collect();
        let (mut mo, mut dout) = (Output::default(), Output::default());
        feed(mems[i].as_mut(), &mine, &mut mo);
        feed(disks[i].as_mut(), &mine, &mut dout);
        assert_eq!(kept(&dout), kept(&mo), "subtask {i} after the rescale");
        assert!(!kept(&mo).is_empty());
        // A savepoint of the disk state is the memory backend's format.
        let super::Capture::Streamed(encode) = disks[i].capture(true).unwrap() else {
            panic!("a savepoint's capture must be portable");
        };
        let from_disk = entries(super::gather(encode).unwrap());
        let from_memory = entries(mems[i].snapshot().unwrap());
        assert_eq!(from_disk, from_memory, "subtask {i}: savepoint state");
    }
}

/// A key forgotten before a checkpoint stays forgotten after a restore on disk, though its
/// entry is still in the store (no compaction dropped it), as the memory backend's checkpoint
/// leaves it out: a late record of it is kept, and a savepoint holds nothing of it.
#[test]
fn dedup_on_disk_restores_what_was_forgotten_as_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    let ttl = 10;
    let mut memory = dedup_op(ttl, None);
    let mut disk = dedup_op(ttl, Some(place(&tmp.path().join("one"), 0..=127)));
    for op in [&mut memory, &mut disk] {
        let mut out = Output::default();
        op.process(
            Input::ONLY,
            batch(&[("a", Some(1), 0), ("b", Some(2), 15)]),
            &mut out,
        )
        .unwrap();
        op.on_watermark(20, &mut out).unwrap();
    }
    let mem_state = memory.snapshot().unwrap();
    let copy = fetched_copy(disk.as_ref(), &tmp.path().join("download"));
    let mut memory = dedup_op(ttl, None);
    memory.restore(mem_state).unwrap();
    let mut disk = dedup_op(ttl, Some(place(&tmp.path().join("two"), 0..=127)));
    disk.restore_disk(vec![copy]).unwrap();
    let super::Capture::Streamed(encode) = disk.capture(true).unwrap() else {
        panic!("a savepoint's capture must be portable");
    };
    let from_disk = entries(super::gather(encode).unwrap());
    let from_memory = entries(memory.snapshot().unwrap());
    assert_eq!(from_disk, from_memory, "savepoint state after the restore");
    // Before any watermark: `a` (kept at 0) is forgotten, `b` (kept at 15) is not.
    let late = batch(&[("a", Some(3), 5), ("b", Some(4), 16)]);
    let (mut mo, mut dout) = (Output::default(), Output::default());
    memory.process(Input::ONLY, late.clone(), &mut mo).unwrap();
    disk.process(Input::ONLY, late, &mut dout).unwrap();
    assert_eq!(
        kept(&mo),
        vec![3],
        "memory keeps the forgotten key's late record"
    );
    assert_eq!(kept(&dout), kept(&mo), "disk keeps what memory keeps");
    // (From here the two differ in one corner: memory restores no horizon, so it remembers
    // `a` at 5, which the disk store, like the run before the restore, forgets at once.)
}

/// A dedup's keyed state as its entries (key, time kept), sorted: the same state cut into
/// other pieces compares equal.
fn entries(state: super::KeyedState) -> Vec<(Vec<u8>, crate::ids::Millis)> {
    let mut all = super::decode_keyed::<crate::ids::Millis>("dedup", state).unwrap();
    all.sort();
    all
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Pieces decode to the entries `encode_keyed` encodes, and a key group that fits one piece is
/// byte for byte what `encode_keyed` makes of it (the same format, so either reads the other).
#[test]
fn keyed_pieces_are_the_keyed_format_cut_into_pieces() {
    let keys: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut entries: Vec<(u32, &[u8], (i64, String))> = keys
        .iter()
        .map(|k| {
            let kg = crate::keys::key_group(k, 128);
            (
                kg,
                k.as_slice(),
                (i64::from(k[3]) - 7, "x".repeat(k[3] as usize % 9)),
            )
        })
        .collect();
    entries.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let pieces = super::gather(|sink| {
        let mut p = super::KeyedPieces::new("t", sink);
        for (kg, k, v) in &entries {
            p.push(*kg, k, v)?;
        }
        p.finish()
    })
    .unwrap();
    let whole = super::encode_keyed("t", 128, entries.iter().map(|(_, k, v)| (*k, v))).unwrap();
    assert!(pieces.len() > whole.len(), "key groups should be cut");
    let decode = |s| super::decode_keyed::<(i64, String)>("t", s).unwrap();
    assert_eq!(decode(pieces.clone()), decode(whole.clone()));
    // Key groups whose entries fit one piece (in unit tests, 64 bytes) are identical.
    let single: Vec<_> = whole
        .iter()
        .filter(|(kg, _)| pieces.iter().filter(|(g, _)| g == kg).count() == 1)
        .collect();
    assert!(!single.is_empty());
    for (kg, bytes) in single {
        let piece = pieces.iter().find(|(g, _)| g == kg).unwrap();
        assert_eq!(&piece.1, bytes, "key group {kg}");
    }
}

/// Keys are written as bytes (`byte_strings`): the same bytes as the plain `&[u8]` form
/// checkpoints had before, so each build reads the other's.
#[test]
fn keyed_state_is_the_plain_form_byte_for_byte() {
    let keys: Vec<Vec<u8>> = vec![Vec::new(), b"k".to_vec(), vec![7; 300]];
    let whole =
        super::encode_keyed("t", 1, keys.iter().map(|k| (k.as_slice(), k.len() as i64))).unwrap();
    // In the order given (encoding does not sort).
    let plain: Vec<(&[u8], i64)> = keys
        .iter()
        .map(|k| (k.as_slice(), k.len() as i64))
        .collect();
    assert_eq!(whole, vec![(0, postcard::to_stdvec(&plain).unwrap())]);
    let read = super::decode_keyed::<i64>("t", whole).unwrap();
    let want: Vec<(Vec<u8>, i64)> = plain.iter().map(|(k, n)| (k.to_vec(), *n)).collect();
    assert_eq!(read, want);
}

/// A column nothing reads is left out where something can stand in for it: null, or the
/// type's default where null is not allowed; a type with no default is still produced.
#[test]
fn stand_ins_are_null_or_a_default_and_a_type_without_one_is_kept() {
    use datafusion::arrow::datatypes::{Field, Schema};
    // A union of nothing has no value at all.
    let none = DataType::Union(
        datafusion::arrow::datatypes::UnionFields::empty(),
        datafusion::arrow::datatypes::UnionMode::Sparse,
    );
    let schema = Schema::new(vec![
        Field::new("n", DataType::Utf8, true),
        Field::new("s", DataType::Utf8, false),
        Field::new("i", DataType::Int64, false),
        Field::new("r", none, false),
        Field::new("read", DataType::Int64, false),
    ]);
    assert_eq!(
        super::produced(&schema, &[4]),
        Some(vec![false, false, false, true, true])
    );
    assert_eq!(super::produced(&schema, &[0, 1, 2, 4]), None);
    let n = super::stand_in(schema.field(0), 3).unwrap();
    assert_eq!(n.null_count(), 3);
    let s = super::stand_in(schema.field(1), 3).unwrap();
    assert_eq!(s.null_count(), 0);
    assert!(s.as_string::<i32>().iter().flatten().all(str::is_empty));
    assert_eq!(s.len(), 3);
    let i = super::stand_in(schema.field(2), 3).unwrap();
    assert_eq!(i.as_primitive::<Int64Type>().values(), &[0, 0, 0]);
    assert!(super::stand_in(schema.field(3), 3).is_err());
    // Kept stand-ins: sliced to each batch's rows, grown when a batch is larger.
    let mut kept = super::StandIns::default();
    for rows in [5, 2, 9, 0, 9] {
        let n = kept.get(0, schema.field(0), rows).unwrap();
        assert_eq!((n.len(), n.null_count()), (rows, rows));
        let s = kept.get(1, schema.field(1), rows).unwrap();
        assert_eq!((s.len(), s.null_count()), (rows, 0));
        assert!(s.as_string::<i32>().iter().flatten().all(str::is_empty));
        let i = kept.get(2, schema.field(2), rows).unwrap();
        assert_eq!(
            i.as_primitive::<Int64Type>().values().to_vec(),
            vec![0; rows]
        );
    }
    assert!(kept.get(3, schema.field(3), 3).is_err());
}
