//! The state backends side by side on a dedup (or a session window) over many distinct keys:
//! throughput, peak memory, and what a checkpoint costs once 1% of the keys changed (bytes
//! written to storage and time), the `memory` backend's full snapshot against the `disk`
//! backend's incremental one.
//!
//! `cargo bench -p weir-runtime --bench state -- <memory|disk> <keys> [memory budget MiB]
//! [dedup|session|raw] [uniform|arrivals]` Run each backend in its own process: peak RSS is the
//! process's. The session window counts records per id with a gap no record closes, so its
//! state only grows; `raw` measures the disk store alone (point writes and reads, no
//! operator).
//!
//! Ids come `uniform`ly from `0..keys` (1.25 records per key: about 71% of keys seen, every
//! read and write at a random place in the store), or as `arrivals`, the way order ids reach a
//! dedup: each of `keys` ids new in increasing order, and one record in five a duplicate (most
//! of a recent id, one in ten of any earlier one).
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

mod common;

use common::mix;

use std::time::Instant;

use weir_runtime::operator::{Capture, Input, Operator, Output};
use weir_runtime::source::datagen::Generator;
use weir_runtime::state::disk::Place;
use weir_runtime::storage::Storage;

/// The runtime binary's allocator, so that the RSS measured here is the one a job would have.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn plan(keys: u64, seed: u64, operator: &str) -> weir_runtime::plan::Plan {
    let transform = match operator {
        "session" => "window: {session: {gap: 1000d}, keyBy: [id], aggregates: {n: count(*)}}",
        _ => "dedup: {keyBy: [id], ttl: 1000d}",
    };
    let yaml = format!(
        "name: state
source:
  datagen:
    seed: {seed}
    fields:
      id: {{uniform: {{min: 0, max: {max}}}}}
      ts: {{eventTime: {{step: 1ms}}}}
  schema:
    - {{name: id, type: int64}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts}}
transforms:
  - {transform}
sinks:
  - blackhole: {{}}
",
        max = keys - 1
    );
    weir_runtime::plan_source("state.yaml", &yaml).unwrap()
}

/// The dedup's answer, computed apart from it: a bit per id, so that a record is kept exactly
/// when its id was not seen before it. Costs `keys / 8` bytes of memory (62.5 MiB at 500 M),
/// counted in the peak RSS the bench reports.
struct Oracle {
    seen: Vec<u64>,
    kept: u64,
}

impl Oracle {
    fn new(keys: u64) -> Self {
        Self {
            seen: vec![0; keys.div_ceil(64) as usize],
            kept: 0,
        }
    }

    /// Check that `out` holds exactly the ids of `input` not seen before, in order.
    fn check(&mut self, input: &[i64], out: &[i64]) {
        let mut expected = Vec::new();
        for &id in input {
            let (word, bit) = ((id as u64 / 64) as usize, id as u64 % 64);
            if self.seen[word] & (1 << bit) == 0 {
                self.seen[word] |= 1 << bit;
                expected.push(id);
            }
        }
        assert_eq!(
            expected.len(),
            out.len(),
            "the dedup kept {} of a batch, the oracle {} (after {} kept)",
            out.len(),
            expected.len(),
            self.kept
        );
        assert!(expected == out, "the dedup kept other ids than the oracle");
        self.kept += out.len() as u64;
    }
}

fn ids(b: &datafusion::arrow::array::RecordBatch) -> Vec<i64> {
    b.column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

/// Batches of the `uniform` ids: `records` of them from the datagen source of `plan`.
fn uniform(
    plan: &weir_runtime::plan::Plan,
    records: u64,
) -> impl FnMut() -> Option<datafusion::arrow::array::RecordBatch> {
    let spec = plan.job.pipeline.source.datagen.as_ref().unwrap();
    let g = Generator::new(spec, plan.source_schema.clone()).unwrap();
    let mut done = 0;
    move || {
        let n = 8192.min(records - done);
        let idx: Vec<u64> = (done..done + n).collect();
        done += n;
        (n > 0).then(|| g.batch(&idx).unwrap())
    }
}

/// Batches of `arrivals`: ids `0..keys`, each new one the next in order, and one record in five
/// (chosen by a hash of its position) a duplicate: nine in ten of one of the last 10 000 ids
/// (a retry), one in ten of any earlier id (a replay, a random read into the whole store).
/// Event time +1 ms per record.
fn arrivals(
    plan: &weir_runtime::plan::Plan,
    keys: u64,
) -> impl FnMut() -> Option<datafusion::arrow::array::RecordBatch> {
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    let schema = plan.source_schema.clone();
    let (mut next, mut record) = (0u64, 0u64);
    move || {
        if next == keys {
            return None;
        }
        let (mut ids, mut times) = (Vec::with_capacity(8192), Vec::with_capacity(8192));
        while ids.len() < 8192 && next < keys {
            let h = mix(record);
            let id = if next > 0 && h.is_multiple_of(5) {
                let back = if h.is_multiple_of(50) {
                    next
                } else {
                    next.min(10_000)
                };
                next - 1 - (h >> 8) % back
            } else {
                next += 1;
                next - 1
            };
            ids.push(id as i64);
            times.push(record as i64);
            record += 1;
        }
        let ts = TimestampMillisecondArray::from(times)
            .with_data_type(schema.field(1).data_type().clone());
        let cols = vec![
            std::sync::Arc::new(Int64Array::from(ids)) as _,
            std::sync::Arc::new(ts) as _,
        ];
        Some(datafusion::arrow::array::RecordBatch::try_new(schema.clone(), cols).unwrap())
    }
}

fn feed(
    op: &mut dyn Operator,
    mut next: impl FnMut() -> Option<datafusion::arrow::array::RecordBatch>,
    mut oracle: Option<&mut Oracle>,
) -> (f64, u64, u64) {
    let mut out = Output::default();
    let mut kept = 0;
    let t = Instant::now();
    let mut done = 0;
    let mut report = Instant::now();
    while let Some(b) = next() {
        let input = oracle.is_some().then(|| ids(&b));
        done += b.num_rows() as u64;
        op.process(Input::ONLY, b, &mut out).unwrap();
        let outs: Vec<_> = out.batches.drain(..).collect();
        kept += outs.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        if let (Some(o), Some(input)) = (oracle.as_deref_mut(), input) {
            let got: Vec<i64> = outs.iter().flat_map(ids).collect();
            o.check(&input, &got);
        }
        if report.elapsed().as_secs() >= 60 {
            report = Instant::now();
            eprintln!(
                "{done} records in {:.0} s ({:.2} M/s, {:.0} CPU s), peak RSS {} MiB",
                t.elapsed().as_secs_f64(),
                done as f64 / t.elapsed().as_secs_f64() / 1e6,
                common::cpu_seconds(),
                common::peak_rss_mib() as u64
            );
        }
    }
    (t.elapsed().as_secs_f64(), kept, done)
}

/// Bytes and seconds of one checkpoint of `op` to `storage`.
async fn checkpoint(op: &dyn Operator, storage: &Storage, n: u64) -> (u64, f64) {
    let t = Instant::now();
    match op.capture(false).unwrap() {
        Capture::Keyed(encode) => {
            let state = encode().unwrap();
            let bytes: u64 = state.iter().map(|(_, b)| b.len() as u64).sum();
            let blob: Vec<u8> = state.into_iter().flat_map(|(_, b)| b).collect();
            storage
                .put(&format!("full/chk-{n}"), bytes::Bytes::from(blob))
                .await
                .unwrap();
            (bytes, t.elapsed().as_secs_f64())
        }
        Capture::Streamed(_) => unreachable!("a checkpoint, not a savepoint"),
        Capture::Disk(c) => {
            let (_, sent) = weir_runtime::state::upload::upload(
                storage,
                "shared/",
                c,
                weir_runtime::ids::CheckpointId(n),
            )
            .await
            .unwrap();
            (sent.new_bytes, t.elapsed().as_secs_f64())
        }
    }
}

/// Key `i` of the raw run: a key group and 8 bytes, spread by a hash.
fn raw_key(i: u64) -> (u32, [u8; 8]) {
    let h = mix(i);
    ((h % 128) as u32, h.to_be_bytes())
}

/// The store alone, without an operator (`raw`): `keys` point writes in batches of 1 000,
/// then a tenth as many reads of keys present, of keys absent, and of keys present in
/// batched reads of 1 000: the engine's own figures, to set beside another engine's.
fn raw(keys: u64, budget_mib: usize, dir: &std::path::Path) {
    let budget = weir_state::Budget::new(budget_mib << 20);
    let store = weir_state::Store::create(dir, &[weir_state::Family::kept("v")], &budget).unwrap();
    let t = Instant::now();
    for first in (0..keys).step_by(1000) {
        let mut w = weir_state::Batch::default();
        for i in first..(first + 1000).min(keys) {
            let (kg, k) = raw_key(i);
            w.put(0, kg, &k, &i.to_le_bytes());
        }
        store.write(w).unwrap();
    }
    let writes = keys as f64 / t.elapsed().as_secs_f64() / 1e6;
    let reads = keys / 10;
    let rate = |t: Instant| reads as f64 / t.elapsed().as_secs_f64() / 1e6;
    let t = Instant::now();
    let hits = (0..reads)
        .filter(|r| {
            let (kg, k) = raw_key(mix(r ^ 77) % keys);
            store.get(0, kg, &k).unwrap().is_some()
        })
        .count();
    let present = rate(t);
    let t = Instant::now();
    let misses = (0..reads)
        .filter(|r| {
            let (kg, k) = raw_key(keys + r);
            store.get(0, kg, &k).unwrap().is_none()
        })
        .count();
    let absent = rate(t);
    let t = Instant::now();
    let mut batched_hits = 0;
    for first in (0..reads).step_by(1000) {
        let asked: Vec<(u32, [u8; 8])> = (first..(first + 1000).min(reads))
            .map(|r| raw_key(mix(r ^ 77) % keys))
            .collect();
        let asked: Vec<(u32, &[u8])> = asked.iter().map(|(kg, k)| (*kg, &k[..])).collect();
        batched_hits += store
            .get_many(0, &asked)
            .unwrap()
            .iter()
            .filter(|v| v.is_some())
            .count();
    }
    let batched = rate(t);
    assert_eq!(
        (hits, misses, batched_hits),
        (reads as usize, reads as usize, reads as usize)
    );
    let t = Instant::now();
    let checkpoint = store.checkpoint("checkpoint").unwrap();
    println!(
        "raw {keys} keys: writes {writes:.2} M/s; reads of present keys {present:.2} M/s, absent {absent:.2} M/s, present in batches of 1000 {batched:.2} M/s; checkpoint {:.2} s ({} MiB); peak RSS {} MiB",
        t.elapsed().as_secs_f64(),
        checkpoint.bytes() >> 20,
        common::peak_rss_mib() as u64
    );
}

fn main() {
    // `cargo test --all-targets` runs this binary too, without `--bench`: a smaller run there
    // still checks the dedup against its oracle.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let backend = args.first().map_or("disk", String::as_str).to_string();
    let keys: u64 = args
        .get(1)
        .and_then(|k| k.parse().ok())
        .unwrap_or(if smoke { 200_000 } else { 1_000_000 });
    let budget_mib: usize = args.get(2).and_then(|k| k.parse().ok()).unwrap_or(256);
    let operator = args.get(3).map_or("dedup", String::as_str).to_string();
    let ids = args.get(4).map_or("uniform", String::as_str).to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tmp, storage) = common::scratch(&rt);
    if operator == "raw" {
        raw(keys, budget_mib, &tmp.path().join("raw"));
        return;
    }
    let p = plan(keys, 1, &operator);
    let op_plan = &p.stages[1].ops[0].op;
    let budget = weir_state::Budget::new(budget_mib << 20);
    let place = (backend == "disk").then(|| Place {
        dir: tmp.path().join("state"),
        budget: budget.clone(),
        groups: weir_state::KeyGroups::new(0..=127),
        operator: format!("{operator}-0"),
        ahead: None,
    });
    let mut op = op_plan.instantiate_in(128, place).unwrap();
    // The session window's output waits for its gap; only the dedup's is checked.
    let mut oracle = (operator == "dedup").then(|| Oracle::new(keys));
    let (secs, kept, records) = if ids == "arrivals" {
        feed(op.as_mut(), arrivals(&p, keys), oracle.as_mut())
    } else {
        // 1.25 records per key: about 71% of keys seen, a quarter of records duplicates.
        feed(op.as_mut(), uniform(&p, keys + keys / 4), oracle.as_mut())
    };
    let checked = oracle.map_or(String::new(), |o| {
        format!(", every batch equal to the oracle's {} kept", o.kept)
    });
    println!(
        "{backend} {operator} {keys} keys ({ids}): {records} records in {secs:.1} s = {:.2} M records/s, {:.2} M per CPU second ({kept} kept{checked}), peak RSS {} MiB",
        records as f64 / secs / 1e6,
        records as f64 / common::cpu_seconds() / 1e6,
        common::peak_rss_mib() as u64
    );
    let (full, full_s) = rt.block_on(checkpoint(op.as_ref(), &storage, 1));
    println!(
        "{backend}: first checkpoint {:.1} MiB in {full_s:.2} s",
        full as f64 / 1048576.0
    );
    // 1% of the keys change (new ids from another range).
    let p2 = plan(keys / 100, 2, &operator);
    let spec = p2.job.pipeline.source.datagen.as_ref().unwrap();
    let g = Generator::new(spec, p2.source_schema.clone()).unwrap();
    let mut out = Output::default();
    let mut done = 0;
    while done < keys / 100 {
        let n = 8192.min(keys / 100 - done);
        let idx: Vec<u64> = (done..done + n).collect();
        let mut b = g.batch(&idx).unwrap();
        // Shift the ids past the first range so that each is new.
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .iter()
            .map(|v| v.map(|v| v + keys as i64))
            .collect::<datafusion::arrow::array::Int64Array>();
        let cols = vec![std::sync::Arc::new(ids) as _, b.column(1).clone()];
        b = datafusion::arrow::array::RecordBatch::try_new(b.schema(), cols).unwrap();
        done += n;
        op.process(Input::ONLY, b, &mut out).unwrap();
        out.batches.clear();
    }
    let (inc, inc_s) = rt.block_on(checkpoint(op.as_ref(), &storage, 2));
    println!(
        "{backend}: checkpoint after 1% changed: {:.1} MiB written in {inc_s:.2} s; peak RSS {} MiB",
        inc as f64 / 1048576.0,
        common::peak_rss_mib() as u64
    );
    if backend == "disk" {
        // What of the RSS the store's budget accounts for (block cache and write buffers).
        println!(
            "disk: budget in use {} MiB of {budget_mib} MiB",
            budget.used() >> 20
        );
        if operator == "dedup" {
            let replay = Replay {
                plan: &p,
                keys,
                ids: &ids,
            };
            savepoint_and_restore(op, &rt, &storage, tmp.path(), &budget, &replay);
        }
    }
}

/// What the dedup was fed, to feed again.
struct Replay<'a> {
    plan: &'a weir_runtime::plan::Plan,
    keys: u64,
    ids: &'a str,
}

/// Forget this process's peak RSS so far (`VmHWM`), so that the next reading is one phase's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A savepoint of the dedup's disk state (streamed into parts, as a job stores it), restored
/// into two subtasks (a rescale from one), each reading only the parts of its key groups; then
/// checked against the oracle by feeding every id again (each must be a duplicate in the
/// subtask that owns it) and ids never seen (each must be kept). Peak RSS is measured per
/// phase: neither the savepoint nor the restore holds the state in memory.
fn savepoint_and_restore(
    op: Box<dyn Operator>,
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    dir: &std::path::Path,
    budget: &weir_state::Budget,
    replay: &Replay<'_>,
) {
    use weir_runtime::checkpoint::parts::{PartWriter, read};
    reset_peak_rss();
    let t = Instant::now();
    let Capture::Streamed(encode) = op.capture(true).unwrap() else {
        panic!("a disk dedup's savepoint is not streamed");
    };
    let s = storage.clone();
    let parts = rt
        .block_on(rt.spawn_blocking(move || {
            let handle = tokio::runtime::Handle::current();
            let mut w = PartWriter::new(&s, handle, "sp/", "s1-t0-g1.state", "dedup-1");
            encode(&mut |kg, piece| w.piece(kg, piece)).unwrap();
            w.finish().unwrap()
        }))
        .unwrap();
    drop(op);
    let bytes: u64 = parts.iter().map(|p| p.size).sum();
    println!(
        "disk: savepoint {:.1} MiB in {} parts in {:.2} s, peak RSS {} MiB while writing it",
        bytes as f64 / 1048576.0,
        parts.len(),
        t.elapsed().as_secs_f64(),
        common::peak_rss_mib() as u64
    );

    reset_peak_rss();
    let t = Instant::now();
    let op_plan = &replay.plan.stages[1].ops[0].op;
    let mut restored: Vec<(std::ops::Range<u32>, Box<dyn Operator>)> = Vec::new();
    for i in 0..2 {
        let range = weir_runtime::keys::key_group_range(i, 2, 128);
        let place = Place {
            dir: dir.join(format!("restored-{i}")),
            budget: budget.clone(),
            groups: weir_state::KeyGroups::new(range.start..=range.end - 1),
            operator: format!("dedup-1-{i}"),
            ahead: None,
        };
        let mut op = op_plan.instantiate_in(128, Some(place)).unwrap();
        for part in parts
            .iter()
            .filter(|p| p.first_group < range.end && p.last_group >= range.start)
        {
            op.restore(rt.block_on(read(storage, "sp/", part, &range)).unwrap())
                .unwrap();
        }
        restored.push((range, op));
    }
    println!(
        "disk: restored into 2 subtasks in {:.2} s, peak RSS {} MiB while restoring",
        t.elapsed().as_secs_f64(),
        common::peak_rss_mib() as u64
    );

    // Every id fed before is a duplicate where it now lives; ids never fed are kept.
    let codec = weir_runtime::keys::KeyCodec::new(&replay.plan.source_schema, vec![0]).unwrap();
    let (keys, plan) = (replay.keys, replay.plan);
    let t = Instant::now();
    let mut out = Output::default();
    let mut send = |b: datafusion::arrow::array::RecordBatch, fresh: bool| {
        let n = b.num_rows();
        let mut kept = 0;
        for (i, part) in weir_runtime::keys::partition(&b, &codec, 2, 128).unwrap() {
            restored[i].1.process(Input::ONLY, part, &mut out).unwrap();
            kept += out.batches.drain(..).map(|b| b.num_rows()).sum::<usize>();
        }
        // Fresh ids are distinct within a batch, so each is kept once.
        let expected = if fresh { n } else { 0 };
        assert_eq!(
            kept, expected,
            "after the savepoint's restore, a batch of {n} ids gave {kept} (the oracle: {expected})"
        );
    };
    let mut next: Box<dyn FnMut() -> Option<datafusion::arrow::array::RecordBatch>> =
        if replay.ids == "arrivals" {
            Box::new(arrivals(plan, keys))
        } else {
            Box::new(uniform(plan, keys + keys / 4))
        };
    let mut replayed = 0;
    while let Some(b) = next() {
        replayed += b.num_rows();
        send(b, false);
    }
    let fresh: Vec<i64> = (0..10_000).map(|i| (3 * keys + i) as i64).collect();
    let ts = datafusion::arrow::array::TimestampMillisecondArray::from(vec![0; fresh.len()])
        .with_data_type(plan.source_schema.field(1).data_type().clone());
    let cols = vec![
        std::sync::Arc::new(datafusion::arrow::array::Int64Array::from(fresh)) as _,
        std::sync::Arc::new(ts) as _,
    ];
    send(
        datafusion::arrow::array::RecordBatch::try_new(plan.source_schema.clone(), cols).unwrap(),
        true,
    );
    println!(
        "disk: the restored subtasks called all {replayed} records fed before duplicates and kept 10000 new ids, as the oracle says ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
}
