//! The Nexmark queries of `examples/nexmark/`, each from the generator into a blackhole:
//! events per second (wall and per core of CPU time), peak memory and the largest
//! checkpoint (the state) per query.
//!
//! `cargo bench -p weir-runtime --bench nexmark -- [--events N] [--parallelism P]
//! [--checkpoint 1s] [--only q3|q8] [--state disk]`
//!
//! Each query runs in its own child process (this binary again, with `--child`), so that
//! its peak RSS and CPU time are its own. "Per core" divides by the process's CPU time
//! (user + system): what an event costs, whatever the parallelism. Checkpoints go to a
//! temporary directory every `--checkpoint` (default 1 s), as a running job's would.
//! `--state disk` runs each query on the `disk` state backend (its default memory budget, a
//! temporary directory), where operators that can keep state on disk do.
//!
//! Under `cargo test` (no `--bench` argument) every query runs once on a few thousand events
//! on each backend and the run is checked to have read them all, so CI knows the benchmark
//! still runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{arg, cpu_seconds, peak_rss_mib};
use weir_runtime::job::{RunOptions, start};

/// The runtime binary's allocator, so that the RSS measured here is the one a job would have.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The queries, by example file name. q20 is left out: without `stateTtl` its regular join
/// keeps every bid for ever, which measures memory, not the join.
const QUERIES: &[&str] = &[
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q13", "q14", "q15", "q16", "q17",
    "q18", "q19", "q21", "q22", "early", "hot", "people", "traders",
];

/// The example's job file.
fn example(query: &str) -> String {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/nexmark/{query}.yaml"));
    std::fs::read_to_string(&file).unwrap()
}

/// The example's job with `events` events at `parallelism`, checkpointing every
/// `checkpoint` into `storage`, its sink a blackhole; with `disk`, its state on the disk
/// backend there.
fn job_yaml(
    query: &str,
    events: u64,
    parallelism: u32,
    (checkpoint, storage): (&str, &str),
    disk: Option<&Path>,
) -> String {
    let mut text = example(query);
    if let Some(dir) = disk {
        let backend = format!(
            "\nstateBackend:\n  type: disk\n  dir: \"{}\"\n",
            dir.display()
        );
        text = text.replacen("\nsource:", &format!("{backend}source:"), 1);
    }
    let sink = format!("  - file: {{name: out, path: out/nexmark/{query}}}");
    assert!(text.contains(&sink), "{query}: no `{sink}` to replace");
    text.replace("events: 1000000", &format!("events: {events}"))
        .replace("parallelism: 2", &format!("parallelism: {parallelism}"))
        .replace("interval: 2s", &format!("interval: {checkpoint}"))
        .replace("file://./.weir", storage)
        .replace(&sink, "  - blackhole: {name: out}")
        // A side table the example reads from the repository (q13).
        .replace(
            "path: examples/",
            &format!("path: {}/../examples/", env!("CARGO_MANIFEST_DIR")),
        )
}

/// Run one query in this process and print its `RESULT` line.
fn child(query: &str, events: u64, parallelism: u32, checkpoint: &str, disk: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", tmp.path().join("checkpoints").display());
    let state = tmp.path().join("state");
    let yaml = job_yaml(
        query,
        events,
        parallelism,
        (checkpoint, &storage),
        disk.then_some(state.as_path()),
    );
    let plan = weir_runtime::plan_source(&format!("{query}.yaml"), &yaml).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let (read, state) = rt.block_on(async {
        let job = start(plan, RunOptions::default()).await.unwrap();
        let metrics = std::sync::Arc::clone(&job.metrics);
        let sampled = common::Checkpoints::sample(std::sync::Arc::clone(&job.status));
        let outcome = job.wait().await.unwrap();
        eprintln!("outcome: {outcome:?}");
        let largest = sampled.finish().await.values().map(|v| v.1).max();
        (metrics.records_out("source"), largest.unwrap_or(0))
    });
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "RESULT events={read} secs={secs:.4} cpu={cpu:.3} rss={:.1} state={:.1}",
        peak_rss_mib(),
        state as f64 / (1024.0 * 1024.0)
    );
}

fn value(out: &str, key: &str) -> f64 {
    out.lines()
        .find(|l| l.starts_with("RESULT "))
        .and_then(|l| {
            l.split_whitespace()
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let checkpoint: String = arg(&args, "--checkpoint").unwrap_or_else(|| "1s".into());
    let parallelism: u32 = arg(&args, "--parallelism").unwrap_or(2);
    let state: Option<String> = arg(&args, "--state");
    let disk = match state.as_deref() {
        None | Some("memory") => false,
        Some("disk") => true,
        Some(other) => panic!("--state {other}: memory or disk"),
    };
    if let Some(q) = arg::<String>(&args, "--child") {
        child(
            &q,
            arg(&args, "--events").unwrap(),
            parallelism,
            &checkpoint,
            disk,
        );
        return;
    }
    let benching = args.iter().any(|a| a == "--bench");
    let events: u64 = arg(&args, "--events").unwrap_or(if benching { 10_000_000 } else { 20_000 });
    let only: Option<String> = arg(&args, "--only");
    let states = match state {
        Some(s) => vec![s],
        None if benching => vec!["memory".to_string()],
        None => vec!["memory".to_string(), "disk".to_string()],
    };
    for state in &states {
        run_all((events, parallelism), &checkpoint, state, only.as_deref());
    }
}

/// Every query (or those `only` names) on backend `state`, one table.
fn run_all((events, parallelism): (u64, u32), checkpoint: &str, state: &str, only: Option<&str>) {
    let exe = std::env::current_exe().unwrap();
    println!(
        "nexmark: {events} events per query, parallelism {parallelism}, checkpoint every {checkpoint}, {state} state, into a blackhole, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<8} {:>10} {:>14} {:>9} {:>16}",
        "query", "M ev/s", "M ev/s/core", "RSS MiB", "max ckpt MiB"
    );
    for q in QUERIES {
        if only.is_some_and(|o| !o.split('|').any(|o| o == *q)) {
            continue;
        }
        let out = Command::new(&exe)
            .args(["--child", q, "--events", &events.to_string()])
            .args(["--parallelism", &parallelism.to_string()])
            .args(["--checkpoint", checkpoint])
            .args(["--state", state])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{q} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every source's records: a further source (q13's side table) adds its own.
        let read = value(&stdout, "events");
        let further = example(q).contains("\nsources:");
        assert!(
            (read - events as f64).abs() < 0.5 || (further && read > events as f64),
            "{q} read {read} of {events} events"
        );
        let read = events as f64;
        let (secs, cpu) = (value(&stdout, "secs"), value(&stdout, "cpu"));
        println!(
            "{q:<8} {:>10.2} {:>14.2} {:>9.0} {:>16.1}",
            read / secs / 1e6,
            read / cpu.max(0.01) / 1e6,
            value(&stdout, "rss"),
            value(&stdout, "state"),
        );
    }
}
