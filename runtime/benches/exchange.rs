//! One process or two: the reference pipeline (generator, `WHERE amount > 0`, a tumbling
//! window per `store_id` over 100,000 keys, blackhole) at parallelism 2, run as one
//! `weir-runtime` process and as two pods wired by the Arrow Flight exchange, with
//! checkpoints every second; then the two pods again with the consuming pod slowed tenfold
//! (stopped 90% of the time with SIGSTOP/SIGCONT), to show what the exchange holds when its
//! consumer cannot keep up.
//!
//! `cargo bench -p weir-runtime --bench exchange -- [--records N] [--runs R]`
//!
//! Per configuration (median run by throughput): records/s, CPU seconds of all processes
//! (their `cutime + cstime`), bytes/s over the exchange (from each pod's "exchange totals"
//! log line), checkpoint duration p50/p99 and alignment p99 (sampled from pod 0's
//! `GET /v1/job`), and the peak RSS of each process. Under `cargo test` it runs each
//! configuration once on a few thousand records, so CI knows it still runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, children_cpu_seconds, peak_rss_mib_of};

#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    pods: u32,
    /// The consuming pod runs this fraction of the time (SIGSTOP/SIGCONT); 1.0: always.
    consumer_duty: f64,
    /// Records, as a divisor of `--records` (the slowed run needs fewer to say its piece).
    records_divisor: u64,
}

const CONFIGS: &[Config] = &[
    Config {
        name: "p2, one process",
        pods: 1,
        consumer_duty: 1.0,
        records_divisor: 1,
    },
    Config {
        name: "p2, two processes",
        pods: 2,
        consumer_duty: 1.0,
        records_divisor: 1,
    },
    Config {
        name: "p2, two processes, consumer 10x slower",
        pods: 2,
        consumer_duty: 0.1,
        records_divisor: 10,
    },
];

fn free(ip: &str) -> String {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

struct RunResult {
    records: u64,
    secs: f64,
    cpu: f64,
    exchange_bytes: u64,
    checkpoint_ms: Vec<u64>,
    alignment_ms: Vec<u64>,
    rss_mib: Vec<f64>,
}

fn percentile(v: &[u64], p: f64) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(((s.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0)
}

/// Completed checkpoints in pod 0's report: id -> (duration, alignment).
fn sample(control: &str, seen: &mut BTreeMap<u64, (u64, u64)>) {
    let Ok(mut s) = std::net::TcpStream::connect(control) else {
        return;
    };
    use std::io::{Read, Write};
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req = format!("GET /v1/job HTTP/1.1\r\nHost: {control}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let Some((_, json)) = body.split_once("\r\n\r\n") else {
        return;
    };
    let Ok(r) = serde_json::from_str::<weir_crds::control::JobReport>(json) else {
        return;
    };
    for c in r.checkpoints {
        if let (Some(d), Some(a)) = (c.duration_ms, c.alignment_ms) {
            seen.insert(c.id, (d, a));
        }
    }
}

fn run(c: &Config, records: u64) -> RunResult {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.yaml");
    let storage = format!("file://{}", tmp.path().join("chk").display());
    let yaml = common::reference_job(&common::ReferenceJob {
        parallelism: 2,
        records,
        checkpoint: "1s",
        storage: &storage,
        s3_endpoint: None,
        keys: 100_000,
        window: Some("2h"),
    });
    std::fs::write(&job, yaml).unwrap();
    let control = free("127.0.0.1");
    let peers: Vec<String> = (0..c.pods)
        .map(|i| free(&format!("127.0.0.{}", i + 1)))
        .collect();
    let cpu0 = children_cpu_seconds();
    let t = Instant::now();
    let mut pods: Vec<(Child, std::path::PathBuf)> = (0..c.pods)
        .map(|i| {
            let log = tmp.path().join(format!("pod{i}.log"));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-runtime"));
            cmd.arg("run")
                .arg(&job)
                .args(["--log-format", "text"])
                .env("WEIR_LOG", "info")
                .env("WEIR_EXCHANGE_TOKEN", "bench-token-0123456789")
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
            if i == 0 {
                cmd.args(["--control-addr", &control]);
            } else {
                cmd.args(["--control-addr", "none"]);
            }
            if c.pods > 1 {
                cmd.args(["--pods", &c.pods.to_string()])
                    .args(["--pod-index", &i.to_string()])
                    .args(["--peers", &peers.join(",")])
                    .args(["--incarnation", "bench"]);
            }
            (cmd.spawn().unwrap(), log)
        })
        .collect();
    let mut seen = BTreeMap::new();
    let mut rss = vec![0.0f64; pods.len()];
    let mut last_sample = Instant::now();
    let consumer = pods.last().map(|(p, _)| p.id());
    let period = Duration::from_millis(100);
    loop {
        for (i, (p, _)) in pods.iter().enumerate() {
            if let Some(r) = peak_rss_mib_of(&p.id().to_string()) {
                rss[i] = rss[i].max(r);
            }
        }
        if last_sample.elapsed() > Duration::from_millis(200) {
            sample(&control, &mut seen);
            last_sample = Instant::now();
        }
        if pods
            .iter_mut()
            .all(|(p, _)| p.try_wait().unwrap().is_some())
        {
            break;
        }
        match (c.consumer_duty < 1.0, consumer) {
            (true, Some(pid)) => {
                // Run for duty * period, stop for the rest.
                std::thread::sleep(period.mul_f64(c.consumer_duty));
                signal(pid, "STOP");
                std::thread::sleep(period.mul_f64(1.0 - c.consumer_duty));
                signal(pid, "CONT");
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let mut exchange_bytes = 0u64;
    for (p, log) in &mut pods {
        let status = p.wait().unwrap();
        let text = std::fs::read_to_string(&*log).unwrap();
        assert!(status.success(), "{status:?}\n{text}");
        if let Some(v) = text
            .split("sent_bytes=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
        {
            exchange_bytes += v;
        }
    }
    RunResult {
        records,
        secs,
        cpu: children_cpu_seconds() - cpu0,
        exchange_bytes,
        checkpoint_ms: seen.values().map(|v| v.0).collect(),
        alignment_ms: seen.values().map(|v| v.1).collect(),
        rss_mib: rss,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let records: u64 =
        arg(&args, "--records").unwrap_or(if benching { 100_000_000 } else { 20_000 });
    let runs: usize = arg(&args, "--runs").unwrap_or(if benching { 3 } else { 1 });
    println!(
        "{:<42} {:>12} {:>8} {:>12} {:>14} {:>16} {:>10} {:>14}",
        "configuration",
        "records/s",
        "CPU s",
        "rec/CPU-s",
        "exchange MB/s",
        "chk p50/p99 ms",
        "align p99",
        "peak RSS MiB"
    );
    for c in CONFIGS {
        let n = (records / c.records_divisor).max(1);
        let mut results: Vec<RunResult> = (0..runs).map(|_| run(c, n)).collect();
        results.sort_by(|a, b| (a.records as f64 / a.secs).total_cmp(&(b.records as f64 / b.secs)));
        let r = &results[results.len() / 2];
        println!(
            "{:<42} {:>12.0} {:>8.2} {:>12.0} {:>14.1} {:>16} {:>10} {:>14}",
            c.name,
            r.records as f64 / r.secs,
            r.cpu,
            r.records as f64 / r.cpu.max(0.01),
            r.exchange_bytes as f64 / r.secs / 1e6,
            format!(
                "{}/{}",
                percentile(&r.checkpoint_ms, 0.5),
                percentile(&r.checkpoint_ms, 0.99)
            ),
            percentile(&r.alignment_ms, 0.99),
            r.rss_mib
                .iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join(" + "),
        );
        if c.pods > 1 {
            assert!(
                r.exchange_bytes > 0,
                "{}: no bytes crossed the exchange",
                c.name
            );
        }
    }
}
