//! The README's "reference job on your machine", command by command, against the local
//! stack: the commands of its `sh` block run from the repository root with `bash`, except
//! that `cargo run --release -p weir-runtime --` is this build's `weir-runtime` (a release
//! build would take CI 20 minutes) and the job line runs in the background until its windows
//! are in, then gets Ctrl-C's signal. The table must then hold, exactly once, every window
//! the watermark closed, computed from the orders read back from the topic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::parse_ts;
use common::stack::{ch_exec, clickhouse, kafka, local_broker};

const SECTION: &str = "## The reference job on your machine";
const CARGO_RUN: &str = "cargo run --release -p weir-runtime --";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The commands of the section's first `sh` block, one per line.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find(SECTION).expect("the README section")..];
    let block = &section[section.find("```sh\n").expect("an sh block") + 6..];
    let block = &block[..block.find("```").expect("the block's end")];
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.replace(CARGO_RUN, env!("CARGO_BIN_EXE_weir-runtime")))
        .collect()
}

fn bash(line: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-c", line]).current_dir(repo());
    c
}

/// (store, window start ms) -> (orders, sales) of every window the job's watermark closed,
/// from the orders in the topic.
fn expected(bootstrap: &str, rt: &tokio::runtime::Runtime) -> BTreeMap<(String, i64), (i64, i64)> {
    let report = rt
        .block_on(weir_testkit::read_topic(bootstrap, "orders"))
        .unwrap();
    let mut max_per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for r in &report.committed {
        let v: serde_json::Value =
            serde_json::from_slice(r.value.as_deref().unwrap_or_default()).unwrap();
        let ts = parse_ts(v["ts"].as_str().unwrap());
        let m = max_per_partition.entry(r.partition).or_insert(i64::MIN);
        *m = (*m).max(ts);
        let amount = v["amount"].as_i64().unwrap();
        if amount > 0 {
            let w = windows
                .entry((
                    v["store_id"].as_str().unwrap().to_string(),
                    ts - ts.rem_euclid(60_000),
                ))
                .or_default();
            w.0 += 1;
            w.1 += amount;
        }
    }
    assert!(report.committed.len() >= 60_000, "orders in the topic");
    // maxOutOfOrderness 5s; a window [s, s+1m) fires once the watermark reaches its end - 1.
    let watermark = max_per_partition.values().min().unwrap() - 5_000 - 1;
    windows.retain(|(_, start), _| start + 60_000 - 1 <= watermark);
    windows
}

fn table(url: &str, rt: &tokio::runtime::Runtime) -> BTreeMap<(String, i64), (i64, i64)> {
    let text = rt.block_on(ch_exec(
        url,
        "SELECT store_id, toUnixTimestamp(window_start) * 1000, orders, sales \
         FROM store_sales FINAL FORMAT TabSeparated",
    ));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                (f[0].to_string(), f[1].parse().unwrap()),
                (f[2].parse().unwrap(), f[3].parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn the_readme_runs_the_reference_job_locally() {
    let (Some(bootstrap), Some(ch)) = (kafka("readme_local"), clickhouse("readme_local")) else {
        return;
    };
    if !local_broker() || !bootstrap.ends_with(":9392") || !ch.ends_with(":9393") {
        eprintln!(
            "SKIPPED readme_local: the README's commands name the local stack's default ports"
        );
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A clean slate, as on a first run: no table, no topics, no checkpoints of these jobs.
    rt.block_on(ch_exec(&ch, "DROP TABLE IF EXISTS store_sales"));
    rt.block_on(async {
        use rdkafka::admin::{AdminClient, AdminOptions};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
        let _ = admin
            .delete_topics(&["orders", "store-sales"], &AdminOptions::new())
            .await;
    });
    for job in ["store-sales", "orders-datagen"] {
        let _ = std::fs::remove_dir_all(repo().join(".weir/local").join(job));
    }

    let commands = readme_commands();
    assert!(commands.len() >= 5, "{commands:?}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut ran_job = false;
    for line in &commands {
        if line.contains("store-sales.local.yaml") {
            // `exec`: the signal below reaches the runtime, as Ctrl-C would, not a shell.
            let mut job = bash(&format!("exec {line}"))
                .stdout(Stdio::null())
                .stderr(Stdio::from(log.reopen().unwrap()))
                .spawn()
                .unwrap();
            let want = expected(&bootstrap, &rt);
            assert!(want.len() > 100, "only {} windows to check", want.len());
            let t = Instant::now();
            while table(&ch, &rt).len() < want.len() && t.elapsed() < Duration::from_secs(120) {
                std::thread::sleep(Duration::from_millis(500));
            }
            // Ctrl-C.
            common::stop_cleanly(&mut job, "INT", log.path(), line);
            let got = table(&ch, &rt);
            common::assert_same_rows("store_sales FINAL", &want, &got, &[]);
            ran_job = true;
            continue;
        }
        let out = bash(line).output().unwrap();
        assert!(
            out.status.success(),
            "{line}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if line.contains("SELECT") {
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(text.lines().count(), 5, "the README's query: {text}");
        }
    }
    assert!(ran_job, "the README runs the job: {commands:?}");
}
