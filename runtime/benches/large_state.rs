//! Large disk state end to end through the code a job runs: incremental checkpoints of many
//! gigabytes while 1% of it changes per interval, against the full upload of the same state;
//! then a restore and a rescale (2 -> 3 -> 1), each checked against an oracle.
//!
//! `cargo bench -p weir-runtime --bench large_state -- <GiB> [intervals] [memory budget MiB]
//! [interval seconds] [--at-barrier]` (defaults 10, 10, 256, 10). Values are 1 000 random
//! (incompressible) bytes per key, so the bytes on disk are the bytes of state. Two subtasks
//! write, checkpoint and restore at once, as two pods would; each interval's writes are spread
//! over it, while the stores upload their new tables ahead of the barrier as a job's do
//! (`--at-barrier`: only at the barrier, as before that existed); storage is a local directory
//! (`WEIR_BENCH_DIR`, default `.`), so the times are the engine's and the disk's, not a
//! network's.
//!
//! The oracle is computed apart from the store: a digest per key group of every key with the
//! value the generator gave it last, compared with a scan of each restored store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

mod common;

use common::mix;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_runtime::ids::CheckpointId;
use weir_runtime::keys::key_group_range;
use weir_runtime::state::ahead::UploadAhead;
use weir_runtime::state::disk::{DiskState, Place, Registry};
use weir_runtime::state::files::DiskSnapshot;
use weir_runtime::storage::Storage;
use weir_state::{Budget, KeyGroups};

const MAX_PARALLELISM: u32 = 128;
const VALUE: usize = 1000;
const FAMILIES: &[weir_state::Family] = &[weir_state::Family::kept("v")];

/// Key `i`: its key group and 8 bytes, spread by a hash.
fn key(i: u64) -> (u32, [u8; 8]) {
    let h = mix(i);
    ((h % u64::from(MAX_PARALLELISM)) as u32, h.to_be_bytes())
}

/// The value key `i` holds at `version`: random bytes from a seed of both.
fn value(i: u64, version: u64, out: &mut Vec<u8>) {
    out.clear();
    let mut s = mix(i ^ (version << 48) ^ 0x5eed);
    while out.len() < VALUE {
        s = mix(s);
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(VALUE);
}

/// The keys interval `n` (from 1) rewrites: the `n`-th hundredth of them.
fn changed(n: u64, keys: u64) -> std::ops::Range<u64> {
    let step = keys / 100;
    (n - 1) * step..n * step
}

/// The version key `i` holds after `intervals` intervals.
fn version(i: u64, keys: u64, intervals: u64) -> u64 {
    u64::from(i < changed(intervals, keys).end)
}

fn digest(kg: u32, key: &[u8], value: &[u8]) -> u64 {
    let mut b = Vec::with_capacity(4 + key.len() + value.len());
    b.extend_from_slice(&kg.to_be_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    xxhash_rust::xxh3::xxh3_64(&b)
}

/// Per key group: the number of keys and the xor of their digests.
type Digests = Vec<(u64, u64)>;

fn oracle(keys: u64, intervals: u64) -> Digests {
    let mut d = vec![(0, 0); MAX_PARALLELISM as usize];
    let mut v = Vec::new();
    for i in 0..keys {
        let (kg, k) = key(i);
        value(i, version(i, keys, intervals), &mut v);
        let e = &mut d[kg as usize];
        e.0 += 1;
        e.1 ^= digest(kg, &k, &v);
    }
    d
}

fn scan(state: &DiskState) -> Digests {
    let mut d = vec![(0, 0); MAX_PARALLELISM as usize];
    for entry in state.store().scan(0, state.groups()).unwrap() {
        let (kg, k, v) = entry.unwrap();
        let e = &mut d[kg as usize];
        e.0 += 1;
        e.1 ^= digest(kg, &k, &v);
    }
    d
}

fn check(states: &[DiskState], expected: &Digests, what: &str) {
    let mut got = vec![(0, 0); MAX_PARALLELISM as usize];
    for s in states {
        for (kg, e) in scan(s).into_iter().enumerate() {
            if e.0 > 0 {
                assert_eq!(got[kg], (0, 0), "{what}: key group {kg} in two subtasks");
                got[kg] = e;
            }
        }
    }
    for kg in 0..MAX_PARALLELISM as usize {
        assert_eq!(
            got[kg], expected[kg],
            "{what}: key group {kg} differs from the oracle (keys, digest)"
        );
    }
    println!(
        "  {what}: all {} keys equal to the oracle",
        expected.iter().map(|e| e.0).sum::<u64>()
    );
}

fn groups(subtask: u32, parallelism: u32) -> KeyGroups {
    let r = key_group_range(subtask, parallelism, MAX_PARALLELISM);
    KeyGroups::new(r.start..=r.end - 1)
}

fn place(
    root: &Path,
    name: &str,
    groups: KeyGroups,
    budget: &Budget,
    ahead: Option<&Arc<UploadAhead>>,
) -> Place {
    Place {
        dir: root.join(name),
        budget: budget.clone(),
        groups,
        operator: "large-0".into(),
        ahead: ahead.cloned(),
    }
}

/// Write version `version` of keys `range` that fall in `state`'s key groups.
fn write(state: &DiskState, range: std::ops::Range<u64>, version: u64) {
    let g = state.groups();
    let mut batch = weir_state::Batch::default();
    let mut n = 0;
    let mut v = Vec::new();
    for i in range {
        let (kg, k) = key(i);
        if kg < g.first || kg > g.last {
            continue;
        }
        value(i, version, &mut v);
        batch.put(0, kg, &k, &v);
        n += 1;
        if n % 1000 == 0 {
            state.store().write(std::mem::take(&mut batch)).unwrap();
        }
    }
    state.store().write(batch).unwrap();
}

/// Checkpoint every state at once, as their subtasks would: (snapshots, bytes uploaded at the
/// barrier, bytes described, seconds from the barrier to the last upload's end, bytes uploaded
/// ahead since the checkpoint before).
async fn checkpoint(
    storage: &Storage,
    states: &[DiskState],
    n: u64,
) -> (Vec<DiskSnapshot>, u64, u64, f64, u64) {
    let t = Instant::now();
    let uploads = states.iter().map(|s| {
        let capture = s.capture().unwrap();
        weir_runtime::state::upload::upload(storage, "shared/", capture, CheckpointId(n))
    });
    let done = futures::future::join_all(uploads).await;
    let secs = t.elapsed().as_secs_f64();
    let (mut snaps, mut new, mut total, mut ahead) = (Vec::new(), 0, 0, 0);
    for r in done {
        let (snap, sent) = r.unwrap();
        new += sent.new_bytes;
        total += sent.total_bytes;
        ahead += sent.ahead_bytes;
        snaps.push(snap);
    }
    (snaps, new, total, secs, ahead)
}

/// Delete the tables `before` refers to and `now` does not: retention keeping one checkpoint
/// (so the run needs about twice the state in disk space, not once per checkpoint). Tables no
/// checkpoint refers to yet (uploaded ahead of the next) are not retention's to delete.
async fn prune(storage: &Storage, before: &[DiskSnapshot], now: &[DiskSnapshot]) {
    let objects = |snaps: &[DiskSnapshot]| -> std::collections::HashSet<String> {
        snaps
            .iter()
            .flat_map(|s| s.tables.iter().map(|t| t.object.clone()))
            .collect()
    };
    let kept = objects(now);
    for object in objects(before).difference(&kept) {
        storage.delete_prefix(object).await.unwrap();
    }
}

/// Bytes the stores uploaded ahead and deleted because no checkpoint came to hold them.
fn discarded(states: &[DiskState]) -> u64 {
    states
        .iter()
        .map(|s| Registry::lock(s.registry()).unwrap().discarded_bytes)
        .sum()
}

/// Restore `parallelism` subtasks from `snaps` at once: each downloads the checkpoints whose
/// key groups overlap its own and rebuilds its store.
async fn restore(
    storage: &Storage,
    snaps: &[DiskSnapshot],
    parallelism: u32,
    root: &Path,
    budget: &Budget,
    reuse: Option<&Path>,
    ahead: Option<&Arc<UploadAhead>>,
) -> Vec<DiskState> {
    let subtasks = (0..parallelism).map(|s| {
        let g = groups(s, parallelism);
        let place = place(root, &format!("p{parallelism}-{s}"), g, budget, ahead);
        let mine: Vec<&DiskSnapshot> = snaps
            .iter()
            .filter(|x| x.groups().overlap(&g).is_some())
            .collect();
        async move {
            std::fs::create_dir_all(&place.dir).unwrap();
            let previous = reuse.map(|r| r.join(format!("build-{s}")));
            let fetched = weir_runtime::state::fetch::fetch(
                storage,
                &mine,
                &place.dir,
                "shared/",
                previous.as_deref(),
            )
            .await
            .unwrap();
            tokio::task::spawn_blocking(move || DiskState::restore(place, FAMILIES, fetched))
                .await
                .unwrap()
                .unwrap()
        }
    });
    futures::future::join_all(subtasks).await
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo test --all-targets` runs this binary too: only `cargo bench` (which passes
    // `--bench`) or an explicit `--bench` runs the benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "large_state: a benchmark; `cargo bench -p weir-runtime --bench large_state -- 10` runs it"
        );
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (size_gib, intervals, budget_mib) = (arg(0, 10), arg(1, 10).clamp(1, 100), arg(2, 256));
    let interval = Duration::from_secs(arg(3, 10));
    let at_barrier = std::env::args().any(|a| a == "--at-barrier");
    let keys = (size_gib << 30) / (VALUE as u64 + 12);
    let budget = Budget::new((budget_mib as usize) << 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Stores start their uploader on the runtime they are created in.
    let _entered = rt.enter();
    let (tmp, storage) = common::scratch(&rt);
    let ahead = (!at_barrier).then(|| {
        Arc::new(UploadAhead {
            storage: storage.clone(),
            shared_dir: "shared/".into(),
            every: weir_runtime::state::ahead::EVERY,
        })
    });
    let ahead = ahead.as_ref();
    println!(
        "large_state: {keys} keys of {VALUE} bytes ({size_gib} GiB), 2 subtasks, budget {budget_mib} MiB, tables uploaded {}",
        if at_barrier {
            "at the barrier only"
        } else {
            "ahead of the barrier too"
        }
    );

    // Build the state: two subtasks write their halves at once.
    let t = Instant::now();
    let states: Vec<DiskState> = (0..2)
        .map(|s| {
            let p = place(
                tmp.path(),
                &format!("build-{s}"),
                groups(s, 2),
                &budget,
                ahead,
            );
            DiskState::create(p, FAMILIES).unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for s in &states {
            scope.spawn(|| write(s, 0..keys, 0));
        }
    });
    println!(
        "  built in {:.0} s; peak RSS {} MiB",
        t.elapsed().as_secs_f64(),
        common::peak_rss_mib() as u64
    );

    // The first checkpoint: what the build wrote, whatever went ahead during it included.
    let (mut snaps, full, total, full_s, full_ahead) =
        rt.block_on(checkpoint(&storage, &states, 1));
    println!(
        "  checkpoint 1 (everything new, as a full snapshot writes every time): {:.2} GiB uploaded at the barrier in {full_s:.1} s ({:.2} GiB ahead during the build) of {:.2} GiB",
        gib(full),
        gib(full_ahead),
        gib(total)
    );

    let mut secs = Vec::new();
    let mut sent = Vec::new();
    let mut sent_ahead = Vec::new();
    let discarded_before = discarded(&states);
    for n in 1..=intervals {
        // The interval's writes, spread over it in twenty slices.
        let range = changed(n, keys);
        let slice = (range.end - range.start).div_ceil(20);
        let started = Instant::now();
        for i in 0..20u32 {
            let from = range.start + u64::from(i) * slice;
            let part = from..(from + slice).min(range.end);
            std::thread::scope(|scope| {
                for s in &states {
                    let part = part.clone();
                    scope.spawn(move || write(s, part, 1));
                }
            });
            if let Some(wait) = (interval * (i + 1) / 20).checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let (s, new, total, d, ahead) = rt.block_on(checkpoint(&storage, &states, n + 1));
        println!(
            "  checkpoint {} after {} keys ({:.0} MiB) changed in {:.1} s: {:.0} MiB uploaded at the barrier in {d:.2} s, {:.0} MiB ahead, of {:.2} GiB",
            n + 1,
            keys / 100,
            mib(keys / 100 * VALUE as u64),
            started.elapsed().as_secs_f64(),
            mib(new),
            mib(ahead),
            gib(total)
        );
        secs.push(d);
        sent.push(new as f64);
        sent_ahead.push(ahead as f64);
        rt.block_on(prune(&storage, &snaps, &s));
        snaps = s;
    }
    secs.sort_by(f64::total_cmp);
    sent.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64 / f64::from(1 << 20);
    println!(
        "  incremental checkpoints: duration p50 {:.2} s, p99 {:.2} s (of {intervals}); uploaded at the barrier p50 {:.0} MiB, max {:.0} MiB; ahead mean {:.0} MiB per interval, {:.0} MiB of it deleted unused; the full upload: {:.2} GiB in {full_s:.1} s; peak RSS {} MiB",
        percentile(&secs, 0.5),
        percentile(&secs, 0.99),
        percentile(&sent, 0.5) / f64::from(1 << 20),
        sent.last().copied().unwrap_or_default() / f64::from(1 << 20),
        mean(&sent_ahead),
        mib(discarded(&states) - discarded_before),
        gib(full),
        common::peak_rss_mib() as u64
    );
    drop(states);

    let t = Instant::now();
    let expected = oracle(keys, intervals);
    println!(
        "  oracle computed in {:.0} s (every key's last value, regenerated)",
        t.elapsed().as_secs_f64()
    );

    // A restart on the same volume: the stores' tables are still on local disk.
    let t = Instant::now();
    let states = rt.block_on(restore(
        &storage,
        &snaps,
        2,
        tmp.path(),
        &budget,
        Some(tmp.path()),
        None,
    ));
    println!(
        "  restore at parallelism 2 on the same volume (tables reused from local disk): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    check(&states, &expected, "restart on the same volume");
    drop(states);
    for s in 0..2 {
        let _ = std::fs::remove_dir_all(tmp.path().join(format!("build-{s}")));
        let _ = std::fs::remove_dir_all(tmp.path().join(format!("p2-{s}")));
    }

    let mut from = snaps;
    for (n, parallelism) in (intervals + 2..).zip([2, 3, 1]) {
        let t = Instant::now();
        let states = rt.block_on(restore(
            &storage,
            &from,
            parallelism,
            tmp.path(),
            &budget,
            None,
            ahead,
        ));
        println!(
            "  restore at parallelism {parallelism} from {} subtasks, every table downloaded: {:.1} s; peak RSS {} MiB",
            from.len(),
            t.elapsed().as_secs_f64(),
            common::peak_rss_mib() as u64
        );
        check(&states, &expected, &format!("parallelism {parallelism}"));
        let (s, new, total, d, ahead) = rt.block_on(checkpoint(&storage, &states, n));
        println!(
            "  its first checkpoint: {:.0} MiB uploaded at the barrier in {d:.2} s ({:.0} MiB ahead since the restore) of {:.2} GiB",
            mib(new),
            mib(ahead),
            gib(total)
        );
        drop(states);
        rt.block_on(prune(&storage, &from, &s));
        from = s;
        for s in 0..parallelism {
            let _ = std::fs::remove_dir_all(tmp.path().join(format!("p{parallelism}-{s}")));
        }
    }
}
