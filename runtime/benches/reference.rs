//! The reference workload, the one Weir is compared with Apache Flink on:
//! `orders(store_id BIGINT over 100,000 keys, amount DOUBLE in [-100, 900], ts)` from the
//! generator, `WHERE amount > 0`, a 2 h tumbling event-time window per `store_id` with
//! `COUNT(*)` and `SUM(amount)` (7.2 M rows per window, every key live in every window), into a
//! blackhole.
//!
//! `cargo bench -p weir-runtime --bench reference -- [--records N] [--runs R] [--only NAME|NAME…]`
//!
//! Each configuration runs in its own child process (this binary again, with `--child`), so
//! that its peak RSS and CPU time are its own. One line per configuration, the median run by
//! throughput. "Per core" divides by the process's CPU time (user + system), not by wall time:
//! it says how much machine a record costs, whatever the parallelism.
//!
//! Under `cargo test` (no `--bench` argument) it runs every configuration once on a few
//! thousand records and checks the counts, so CI knows the benchmark still runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use common::{arg, cpu_seconds, peak_rss_mib};
use weir_runtime::job::{RunOptions, start};

/// One configuration of the reference run.
#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    parallelism: u32,
    /// Checkpoint interval; `None` is "off" (an interval longer than any run).
    checkpoint: Option<&'static str>,
    /// Generator alone: no filter, no window.
    generator_only: bool,
    /// Keys, and window size: the state-size configuration uses many keys.
    keys: u64,
    window: &'static str,
    /// Checkpoint storage on the local S3 server (`WEIR_S3_ENDPOINT`) instead of a temp dir.
    s3: bool,
    /// Pin the process to this many cores (`taskset`); `None` lets it use the machine.
    cores: Option<usize>,
    /// Serve the control API and the web console (unvisited: what a job pays for having it).
    console: bool,
}

/// The reference job at parallelism 1 without checkpoints; each configuration changes some of it.
const BASE: Config = Config {
    name: "",
    parallelism: 1,
    checkpoint: None,
    generator_only: false,
    keys: 100_000,
    window: "2h",
    s3: false,
    cores: None,
    console: false,
};

const CONFIGS: &[Config] = &[
    Config {
        name: "datagen -> blackhole",
        generator_only: true,
        ..BASE
    },
    Config {
        name: "p1 on 1 core, no checkpoints",
        cores: Some(1),
        ..BASE
    },
    Config {
        name: "p1 on 1 core, checkpoint every 1s",
        checkpoint: Some("1s"),
        cores: Some(1),
        ..BASE
    },
    Config {
        name: "p1, no checkpoints",
        ..BASE
    },
    Config {
        name: "p1, checkpoint every 1s",
        checkpoint: Some("1s"),
        ..BASE
    },
    Config {
        name: "p2, no checkpoints",
        parallelism: 2,
        ..BASE
    },
    Config {
        name: "p2, checkpoint every 1s",
        parallelism: 2,
        checkpoint: Some("1s"),
        ..BASE
    },
    Config {
        name: "p2, checkpoint every 1s, console served",
        parallelism: 2,
        checkpoint: Some("1s"),
        console: true,
        ..BASE
    },
    Config {
        name: "p1, 3 M keys, no checkpoints",
        keys: 3_000_000,
        window: "12h",
        ..BASE
    },
    Config {
        name: "p1, 3 M keys, checkpoint every 1s to S3",
        checkpoint: Some("1s"),
        keys: 3_000_000,
        window: "12h",
        s3: true,
        ..BASE
    },
];

fn job_yaml(c: &Config, records: u64, storage: &str) -> String {
    let s3 =
        c.s3.then(|| std::env::var("WEIR_S3_ENDPOINT").unwrap_or_default());
    common::reference_job(&common::ReferenceJob {
        parallelism: c.parallelism,
        records,
        checkpoint: c.checkpoint.unwrap_or("24h"),
        storage,
        s3_endpoint: s3.as_deref(),
        keys: c.keys,
        window: (!c.generator_only).then_some(c.window),
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What one child reports: a single line, `key=value` pairs.
struct RunResult {
    records: u64,
    secs: f64,
    cpu: f64,
    rss_mib: f64,
    checkpoints: usize,
    p50_ms: u64,
    p99_ms: u64,
    max_state_mib: f64,
}

impl RunResult {
    fn line(&self) -> String {
        format!(
            "RESULT records={} secs={:.4} cpu={:.3} rss={:.1} checkpoints={} p50={} p99={} state={:.1}",
            self.records,
            self.secs,
            self.cpu,
            self.rss_mib,
            self.checkpoints,
            self.p50_ms,
            self.p99_ms,
            self.max_state_mib
        )
    }

    fn parse(out: &str) -> Option<Self> {
        let line = out.lines().find(|l| l.starts_with("RESULT "))?;
        let kv: BTreeMap<&str, &str> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .collect();
        Some(Self {
            records: kv.get("records")?.parse().ok()?,
            secs: kv.get("secs")?.parse().ok()?,
            cpu: kv.get("cpu")?.parse().ok()?,
            rss_mib: kv.get("rss")?.parse().ok()?,
            checkpoints: kv.get("checkpoints")?.parse().ok()?,
            p50_ms: kv.get("p50")?.parse().ok()?,
            p99_ms: kv.get("p99")?.parse().ok()?,
            max_state_mib: kv.get("state")?.parse().ok()?,
        })
    }

    fn rate(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

/// Run one configuration in this process and print its `RESULT` line.
fn child(c: &Config, records: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = if c.s3 {
        let bucket = s3_bucket(&rt);
        format!("s3://{bucket}/reference")
    } else {
        format!("file://{}", tmp.path().display())
    };
    let yaml = job_yaml(c, records, &storage);
    let plan = weir_runtime::plan_source("reference.yaml", &yaml).unwrap();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let (durations, sizes) = rt.block_on(async {
        let opts = RunOptions {
            control_addr: c.console.then(|| "127.0.0.1:0".parse().unwrap()),
            ..RunOptions::default()
        };
        let job = start(plan, opts).await.unwrap();
        let sampled = common::Checkpoints::sample(Arc::clone(&job.status));
        let outcome = job.wait().await.unwrap();
        eprintln!("outcome: {outcome:?}");
        let seen = sampled.finish().await;
        let mut d: Vec<u64> = seen.values().map(|v| v.0).collect();
        d.sort_unstable();
        let s = seen.values().map(|v| v.1).max().unwrap_or(0);
        (d, s)
    });
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let r = RunResult {
        records,
        secs,
        cpu,
        rss_mib: peak_rss_mib(),
        checkpoints: durations.len(),
        p50_ms: percentile(&durations, 0.5),
        p99_ms: percentile(&durations, 0.99),
        max_state_mib: sizes as f64 / (1024.0 * 1024.0),
    };
    println!("{}", r.line());
}

/// A fresh bucket on the local S3 server.
fn s3_bucket(rt: &tokio::runtime::Runtime) -> String {
    let bucket = format!("weir-bench-{}", std::process::id());
    rt.block_on(async {
        match open_s3(&bucket).await {
            weir_runtime::storage::Storage::S3(s) => s.create_bucket_if_missing().await.unwrap(),
            other => panic!("s3://{bucket} opened as {other:?}"),
        }
    });
    bucket
}

async fn open_s3(bucket: &str) -> weir_runtime::storage::Storage {
    let spec = weir_crds::S3Spec {
        endpoint: std::env::var("WEIR_S3_ENDPOINT").ok(),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        ca_pem_env: None,
    };
    weir_runtime::storage::Storage::open(&format!("s3://{bucket}"), &spec)
        .await
        .unwrap()
}

/// The S3 server's own ceiling: one 100 MB PUT through the same client, no job around it.
fn s3_ceiling() -> f64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = s3_bucket(&rt);
    let data = bytes::Bytes::from(vec![7u8; 100 * 1024 * 1024]);
    rt.block_on(async {
        let s = open_s3(&bucket).await;
        let t = Instant::now();
        s.put("ceiling", data).await.unwrap();
        t.elapsed().as_secs_f64()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(name) = arg::<String>(&args, "--child") {
        let c = CONFIGS.iter().find(|c| c.name == name).unwrap();
        child(c, arg(&args, "--records").unwrap());
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test` does not: then a quick check that it runs.
    let benching = args.iter().any(|a| a == "--bench");
    let records: u64 =
        arg(&args, "--records").unwrap_or(if benching { 300_000_000 } else { 20_000 });
    let runs: usize = arg(&args, "--runs").unwrap_or(if benching { 3 } else { 1 });
    let only: Option<String> = arg(&args, "--only");
    let s3 = std::env::var("WEIR_S3_ENDPOINT").is_ok();
    let exe = std::env::current_exe().unwrap();
    println!(
        "reference workload: {records} records per run, median of {runs} run(s) by throughput, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<42} {:>10} {:>12} {:>9} {:>6} {:>12} {:>9}",
        "configuration", "M rec/s", "M rec/s/core", "RSS MiB", "ckpts", "ckpt p50/p99", "state MiB"
    );
    let mut baseline: BTreeMap<(u32, usize, u64), f64> = BTreeMap::new();
    for c in CONFIGS {
        if only
            .as_deref()
            .is_some_and(|o| !o.split('|').any(|o| c.name.contains(o)))
        {
            continue;
        }
        if c.s3 && !s3 {
            println!(
                "{:<42} SKIPPED: WEIR_S3_ENDPOINT is not set (tests/s3.sh start)",
                c.name
            );
            continue;
        }
        // The state-size runs: 30 M records put nearly every one of the 3 M keys in the one
        // 12 h window, about 100 MB of state.
        let n = if c.s3 && benching {
            records.max(30_000_000)
        } else {
            records
        };
        let mut results: Vec<RunResult> = (0..runs)
            .map(|_| {
                let child = ["--child", c.name, "--records", &n.to_string()].map(String::from);
                let out = match c.cores {
                    // Cores 0..k: the source and the window then share them, as on a small pod.
                    Some(k) => Command::new("taskset")
                        .arg("-c")
                        .arg(format!("0-{}", k - 1))
                        .arg(&exe)
                        .args(child)
                        .output(),
                    None => Command::new(&exe).args(child).output(),
                }
                .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{} failed: {}\n{}",
                    c.name,
                    stdout,
                    String::from_utf8_lossy(&out.stderr)
                );
                RunResult::parse(&stdout).expect("a RESULT line")
            })
            .collect();
        results.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let r = &results[results.len() / 2];
        assert_eq!(r.records, n);
        if c.checkpoint.is_some() {
            assert!(
                r.checkpoints > 0 || !benching,
                "{}: no checkpoint completed",
                c.name
            );
        }
        // Baselines by (parallelism, cores) for the checkpoint overhead and the scaling ratio.
        let at = (c.parallelism, c.cores.unwrap_or(0), c.keys);
        let overhead = match (c.checkpoint, c.generator_only) {
            (None, false) => {
                baseline.insert(at, r.rate());
                String::new()
            }
            (Some(_), false) => baseline
                .get(&at)
                .map(|b| {
                    format!(
                        "  ({:+.1}% vs no checkpoints)",
                        (r.rate() / b - 1.0) * 100.0
                    )
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        println!(
            "{:<42} {:>10.2} {:>12.2} {:>9.0} {:>6} {:>12} {:>9.1}{overhead}",
            c.name,
            r.rate() / 1e6,
            r.records as f64 / r.cpu.max(0.01) / 1e6,
            r.rss_mib,
            r.checkpoints,
            format!("{}/{} ms", r.p50_ms, r.p99_ms),
            r.max_state_mib,
        );
    }
    if s3 && benching && only.is_none() {
        println!(
            "S3 server alone: one 100 MiB PUT took {:.2} s (the floor under any 100 MB checkpoint)",
            s3_ceiling()
        );
    }
    if let (Some(p1), Some(p2)) = (
        baseline.get(&(1, 0, 100_000)),
        baseline.get(&(2, 0, 100_000)),
    ) {
        println!(
            "parallelism 2 / parallelism 1, both on all cores: {:.2}x",
            p2 / p1
        );
    }
    if let (Some(p1), Some(p2)) = (
        baseline.get(&(1, 1, 100_000)),
        baseline.get(&(2, 0, 100_000)),
    ) {
        println!(
            "parallelism 2 on all cores / parallelism 1 on one core: {:.2}x",
            p2 / p1
        );
    }
}
