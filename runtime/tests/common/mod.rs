//! Shared test harness: the local S3 server, an oracle computed independently of the engine,
//! output readers, and a runner for the `weir-runtime` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use weir_runtime::storage::Storage;

pub mod cluster;
pub mod db;
pub mod page;
pub mod stack;

/// The local S3 endpoint, or `None` after printing one SKIPPED line. With `WEIR_REQUIRE_S3=1`
/// (set by `tests/run-all.sh` and CI) a missing endpoint fails instead.
pub fn s3_endpoint(test: &str) -> Option<String> {
    weir_testkit::needs_env(
        test,
        "WEIR_S3_ENDPOINT",
        "WEIR_REQUIRE_S3",
        "WEIR_S3_ENDPOINT is not set (run tests/s3.sh start, or tests/run-all.sh)",
    )
}

/// The container on the local Azure Blob Storage emulator (`tests/azurite.sh`), whose address
/// and account the client reads from `AZURE_STORAGE_USE_EMULATOR`/`AZURITE_BLOB_STORAGE_URL`.
pub fn azure_container(test: &str) -> Option<String> {
    weir_testkit::needs_env(
        test,
        "WEIR_AZURE_CONTAINER",
        "WEIR_REQUIRE_AZURITE",
        "WEIR_AZURE_CONTAINER is not set (run tests/azurite.sh start and container, or tests/run-all.sh)",
    )
}

/// Credentials for the local S3 server; the same values `tests/run-all.sh` exports, passed
/// explicitly to child processes.
pub fn s3_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "weir-test"),
        ("AWS_SECRET_ACCESS_KEY", "weir-test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

/// A fresh bucket per test run, so runs never collide.
pub async fn fresh_bucket(endpoint: &str, test: &str) -> String {
    assert!(
        std::env::var("AWS_ACCESS_KEY_ID").is_ok(),
        "S3 tests need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the local server; tests/run-all.sh exports them"
    );
    let bucket = format!("weir-{}-{}", test.replace('_', "-"), unique());
    let spec = weir_crds::S3Spec {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        ca_pem_env: None,
    };
    match Storage::open(&format!("s3://{bucket}"), &spec)
        .await
        .unwrap()
    {
        Storage::S3(s) => s.create_bucket_if_missing().await.unwrap(),
        Storage::File(_) | Storage::Cloud(_) => unreachable!("an s3:// URI"),
    }
    bucket
}

/// A short unique suffix.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:x}{}{}",
        (t % 0xffff_ffff) as u64,
        std::process::id() % 1000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Parameters of the standard orders job used by the end-to-end tests.
#[derive(Clone, Debug)]
pub struct OrdersJob {
    pub name: String,
    pub count: u64,
    pub rate: Option<u64>,
    pub parallelism: u32,
    pub interval_ms: u64,
    pub storage: String,
    pub s3_endpoint: Option<String>,
    pub out_dir: PathBuf,
    pub stores: u64,
    pub window_ms: i64,
    pub retained: u32,
    /// Write the pipeline as `sql` instead of `transforms` (the same computation).
    pub sql: bool,
}

/// Window results keyed by (store, window start ms): (orders, sales, min, max).
pub type WindowRows = BTreeMap<(String, i64), (i64, i64, i64, i64)>;

pub const SEED: u64 = 20_261_121;
pub const START: &str = "2026-01-01T00:00:00Z";
pub const START_MS: i64 = 1_767_225_600_000;

impl OrdersJob {
    pub fn new(name: &str, storage: String, out_dir: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            count: 40_000,
            rate: None,
            parallelism: 2,
            interval_ms: 100,
            storage,
            s3_endpoint: None,
            out_dir,
            stores: 7,
            window_ms: 1000,
            retained: 3,
            sql: false,
        }
    }

    pub fn yaml(&self) -> String {
        let rate = self
            .rate
            .map(|r| format!("    rate: {r}\n"))
            .unwrap_or_default();
        let s3 = self
            .s3_endpoint
            .as_ref()
            .map(|e| format!("  s3: {{endpoint: \"{e}\", region: us-east-1, pathStyle: true}}\n"))
            .unwrap_or_default();
        format!(
            "name: {name}
parallelism: {p}
checkpoint:
  interval: {interval}ms
  timeout: 30s
  storage: \"{storage}\"
  retained: {retained}
{s3}source:
  datagen:
    seed: {SEED}
    count: {count}
{rate}    splits: 6
    batchSize: 500
    fields:
      order_id: {{sequence: {{}}}}
      store_id: {{key: {{cardinality: {stores}, prefix: s-}}}}
      amount: {{uniform: {{min: -50, max: 500}}}}
      ts: {{eventTime: {{start: \"{START}\", step: 1ms, disorder: 200ms}}}}
  schema:
    - {{name: order_id, type: int64}}
    - {{name: store_id, type: string}}
    - {{name: amount, type: int64}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts, maxOutOfOrderness: 500ms}}
{pipeline}",
            name = self.name,
            p = self.parallelism,
            interval = self.interval_ms,
            storage = self.storage,
            retained = self.retained,
            count = self.count,
            stores = self.stores,
            pipeline = self.pipeline(),
        )
    }

    /// Filter, 1-second tumbling window per store, file sink: as transforms or as SQL.
    fn pipeline(&self) -> String {
        let (window, out) = (self.window_ms, self.out_dir.display());
        if self.sql {
            format!(
                "  name: orders
sinks:
  - file: {{name: windows, path: \"{out}\"}}
sql: |
  INSERT INTO windows
  SELECT store_id, window_start, window_end,
         count(*) AS orders, sum(amount) AS sales, min(amount) AS smallest, max(amount) AS biggest
  FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '{window}' MILLISECOND))
  WHERE amount > 0
  GROUP BY store_id, window_start, window_end
"
            )
        } else {
            format!(
                "transforms:
  - filter: amount > 0
  - window:
      tumbling: {window}ms
      keyBy: [store_id]
      aggregates: {{orders: count(*), sales: sum(amount), smallest: min(amount), biggest: max(amount)}}
sinks:
  - file: {{path: \"{out}\"}}
"
            )
        }
    }

    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join(format!("{}.yaml", self.name));
        std::fs::write(&p, self.yaml()).unwrap();
        p
    }

    /// The expected output, computed without the engine: the generator's definition of
    /// record `i` (SplitMix64 of seed and index, re-implemented here), filtered and summed in
    /// plain Rust. Rows are `(store, window_start_ms, orders, sales, min, max)`.
    pub fn oracle(&self) -> WindowRows {
        let mut out = WindowRows::new();
        for i in 0..self.count {
            let store = format!("s-{}", rnd(1, i) % self.stores);
            let amount = -50 + (rnd(2, i) % 551) as i64;
            let ts = START_MS + i as i64 - (rnd(3, i) % 200) as i64;
            if amount <= 0 {
                continue;
            }
            let w = ts - ts.rem_euclid(self.window_ms);
            let e = out.entry((store, w)).or_insert((0, 0, i64::MAX, i64::MIN));
            e.0 += 1;
            e.1 += amount;
            e.2 = e.2.min(amount);
            e.3 = e.3.max(amount);
        }
        out
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator's random value of field `field` of record `i` (seed [`SEED`]).
pub fn rnd(field: u64, i: u64) -> u64 {
    mix(SEED ^ mix(field << 48 ^ i))
}

/// Every committed output row of a file sink directory, as a multiset keyed like the oracle.
/// Duplicates are reported, not merged.
pub fn read_output(dir: &Path) -> (WindowRows, Vec<String>) {
    let mut rows = BTreeMap::new();
    let mut dups = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (rows, dups);
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let store = v["store_id"].as_str().unwrap().to_string();
            let ws = v["window_start"].as_str().unwrap();
            let ws = parse_ts(ws);
            let row = (
                v["orders"].as_i64().unwrap(),
                v["sales"].as_i64().unwrap(),
                v["smallest"].as_i64().unwrap(),
                v["biggest"].as_i64().unwrap(),
            );
            if rows.insert((store.clone(), ws), row).is_some() {
                dups.push(format!("{store}@{ws} in {}", f.display()));
            }
        }
    }
    (rows, dups)
}

/// `2026-01-01T00:00:01` (as arrow-json writes millisecond timestamps) -> epoch ms.
pub fn parse_ts(s: &str) -> i64 {
    weir_runtime::schema::parse_timestamp_millis(&format!("{}Z", s.trim_end_matches('Z'))).unwrap()
}

/// Compare output with the oracle; panic with the first differences.
pub fn assert_matches_oracle(job: &OrdersJob, context: &str) {
    let (got, dups) = read_output(&job.out_dir);
    assert_same_rows(context, &job.oracle(), &got, &dups);
}

/// `got` equals `expected` and nothing was written twice; panic with the first differences.
pub fn assert_same_rows<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    context: &str,
    expected: &BTreeMap<K, V>,
    got: &BTreeMap<K, V>,
    dups: &[String],
) {
    assert!(
        dups.is_empty(),
        "{context}: duplicate rows: {:?}",
        &dups[..dups.len().min(5)]
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: differs from the oracle ({} expected rows, {} got); missing or wrong: {missing:?}; unexpected: {extra:?}",
        expected.len(),
        got.len()
    );
}

/// Wait up to `limit` for the process to exit.
pub fn wait_exit_within(
    child: &mut Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// Run `job_file` with `env` (which arms a `WEIR_CRASH_AT` point) and require it to die by
/// that point's SIGKILL within `limit`; the log tail is the failure report otherwise.
pub fn run_until_crash(
    job_file: &Path,
    env: &[(&str, &str)],
    limit: std::time::Duration,
    log: &Path,
) {
    let mut child = spawn_runtime(job_file, &[], env, log);
    let status = wait_exit_within(&mut child, limit)
        .unwrap_or_else(|| panic!("crash point not reached\n{}", log_tail(log)));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "expected the crash point to kill the run\n{}",
        log_tail(log)
    );
}

/// A job its peer refuses (an unknown CA, a wrong password) must fail well before the 60 s
/// start-up wait, naming each of `want` in its log. `run` starts it and returns its exit
/// status; `what` names it in failures. Returns how long it took.
pub fn refused_fast(
    what: &str,
    log: &Path,
    want: &[&str],
    run: impl FnOnce() -> std::process::ExitStatus,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    let status = run();
    let took = started.elapsed();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(!status.success(), "{what} started anyway\n{text}");
    assert!(
        took < std::time::Duration::from_secs(30),
        "{what} took {took:?} to fail (the wait limit is 60 s)\n{text}"
    );
    for w in want {
        assert!(text.contains(w), "{what}: no `{w}` in\n{text}");
    }
    took
}

/// Stop `child` as a user does (`signal`: `TERM`, or `INT` for Ctrl-C) and require a clean
/// exit within a minute: final checkpoint, commit, exit 0. `what` names it in failures.
pub fn stop_cleanly(child: &mut Child, signal: &str, log: &Path, what: &str) {
    Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit_within(child, std::time::Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{what} did not stop on SIG{signal}\n{}", log_tail(log)));
    assert!(
        status.success(),
        "{what} failed: {status:?}\n{}",
        log_tail(log)
    );
}

/// The last few KiB of a log, for failure messages.
pub fn log_tail(log: &Path) -> String {
    let t = std::fs::read_to_string(log).unwrap_or_default();
    // Without the frames of backtraces (RUST_BACKTRACE in CI): two pods' traces once filled
    // the whole tail and cut off the error they followed.
    let t: String = t
        .lines()
        .filter(|l| !backtrace_frame(l))
        .flat_map(|l| [l, "\n"])
        .collect();
    t[t.floor_char_boundary(t.len().saturating_sub(4000))..].to_string()
}

/// A line of a printed backtrace (`  12: some::function`, `at ./file.rs:3:5`, its header).
fn backtrace_frame(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("at ")
        || l.eq_ignore_ascii_case("stack backtrace:")
        || l.starts_with("note: Some details are omitted")
        || l.split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// xorshift64: the kill schedule's random numbers.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Run `job_file` and kill it with SIGKILL after a random delay in `delay_ms` (the rest of
/// the range after its start), restarting it, until it has been killed `times` times or has
/// had five tries per kill; returns how many kills landed while the job ran.
pub fn kill_randomly(
    job_file: &Path,
    log: &Path,
    rng: &mut u64,
    times: u32,
    delay_ms: std::ops::Range<u64>,
) -> u32 {
    let mut kills = 0;
    for _ in 0..times * 5 {
        if kills == times {
            break;
        }
        let mut child = spawn_runtime(job_file, &[], &[], log);
        kills += u32::from(kill_after(&mut child, rng, &delay_ms));
    }
    kills
}

/// After a random delay in `delay_ms`, SIGKILL `child` if it still runs; whether it did.
fn kill_after(child: &mut Child, rng: &mut u64, delay_ms: &std::ops::Range<u64>) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let delay = delay_ms.start + xorshift(rng) % (delay_ms.end - delay_ms.start).max(1);
    std::thread::sleep(std::time::Duration::from_millis(delay));
    if child.try_wait().unwrap().is_some() {
        return false;
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    // The run may have ended on its own between the check and the kill.
    if status.signal() == Some(9) {
        return true;
    }
    assert!(status.success(), "the run failed: {status}");
    false
}

/// Run the job in `job_file` and kill it with SIGKILL at a random moment in `delay_ms` after
/// the run's first completed checkpoint (or after 30 s without one), `times` times: each run
/// then restores what the one before committed, however slow the machine (a kill at a fixed
/// delay after start may land before any checkpoint). Returns the kills that landed (a run
/// may end first).
pub fn kill_after_a_checkpoint(
    job_file: &Path,
    log: &Path,
    rng: &mut u64,
    times: u32,
    delay_ms: std::ops::Range<u64>,
) -> u32 {
    let completed = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("checkpoint completed")
            .count()
    };
    let mut kills = 0;
    for _ in 0..times {
        let before = completed();
        let mut child = spawn_runtime(job_file, &[], &[], log);
        let waiting = std::time::Instant::now();
        while completed() == before
            && waiting.elapsed() < std::time::Duration::from_secs(30)
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        kills += u32::from(kill_after(&mut child, rng, &delay_ms));
    }
    kills
}

/// Run a kill schedule (`schedule` returns the kills that landed) until all `times` kills
/// land, from nothing each time, at most three times; returns the last attempt's kills.
///
/// A run that reads its whole input before its kill comes ended correctly, but the test
/// asked for kills it did not get; on a loaded machine (a busy CI host, the other test lane)
/// a slow start or first checkpoint makes that happen now and then. Such an attempt is not
/// a failure of what the test checks, so it starts again: `leftovers` (the job's checkpoints,
/// output and state) removed, and `log` moved aside under `<log>.attempt-N`, where a
/// failure's report can still be read.
pub fn until_every_kill_lands(
    log: &Path,
    leftovers: &[PathBuf],
    times: u32,
    mut schedule: impl FnMut() -> u32,
) -> u32 {
    let mut attempt = 1;
    loop {
        let kills = schedule();
        if kills >= times || attempt == 3 {
            return kills;
        }
        let line = format!(
            "{}: {kills} of {times} kills landed before the input ended (attempt {attempt}); \
             starting again from nothing",
            log.display()
        );
        println!("{line}");
        // A pass hides its retries; `tests/run-all.sh` lists them at the end of the run.
        if let Some(file) = std::env::var_os("WEIR_TEST_RETRIES") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .unwrap();
            writeln!(f, "{line}").unwrap();
        }
        for path in leftovers {
            if path.exists() {
                std::fs::remove_dir_all(path).unwrap();
            }
        }
        let mut aside = log.as_os_str().to_owned();
        aside.push(format!(".attempt-{attempt}"));
        std::fs::rename(log, aside).unwrap();
        attempt += 1;
    }
}

/// Wait until `log` holds `text`, at most `limit` (a failure shows the log's end). Polls
/// every 5 ms: a test that signals a process at a point of its start-up acts soon after the
/// line.
pub fn wait_for_line(log: &Path, text: &str, limit: std::time::Duration) {
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            t.elapsed() < limit,
            "no `{text}` within {limit:?}\n{}",
            log_tail(log)
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Seed of a fault schedule: `WEIR_FAULT_SEED` to replay one, else fresh (and printed).
pub fn fault_seed() -> u64 {
    let seed = std::env::var("WEIR_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("fault schedule seed: {seed} (replay with WEIR_FAULT_SEED={seed})");
    seed
}

/// How a runtime said it ended, from the termination message it wrote to `path`
/// (`$WEIR_TERMINATION_LOG`).
pub fn read_outcome(path: &Path) -> weir_crds::control::Outcome {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Start the runtime binary on a job file.
pub fn spawn_runtime(job_file: &Path, extra: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-runtime"));
    cmd.arg("run").arg(job_file);
    if !extra.contains(&"--control-addr") {
        cmd.args(["--control-addr", "none"]);
    }
    cmd.args(extra);
    for (k, v) in s3_env() {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(append_to(log));
    cmd.spawn().unwrap()
}

/// Standard error of a child process, appended to `log` (several runs share one log).
pub fn append_to(log: &Path) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap(),
    )
}

/// Pods of one incarnation, started as the operator starts them.
pub struct Incarnation {
    pub pods: Vec<Child>,
}

/// A free port on 127.0.0.(i+1).
pub fn free_address(i: u32) -> String {
    let l =
        std::net::TcpListener::bind(("127.0.0.".to_string() + &(i + 1).to_string(), 0)).unwrap();
    l.local_addr().unwrap().to_string()
}

impl Incarnation {
    /// `count` pods of `job` (one process each, as the operator starts them), each with
    /// `env(pod)` added; all log to `log`.
    pub fn start(
        job: &Path,
        count: u32,
        extra: &[&str],
        env: &dyn Fn(u32) -> Vec<(String, String)>,
        log: &Path,
    ) -> Self {
        let peers: Vec<String> = (0..count).map(free_address).collect();
        let incarnation = format!("test-{}", unique());
        let pods = (0..count)
            .map(|i| {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-runtime"));
                cmd.arg("run").arg(job).args(["--control-addr", "none"]);
                // One pod is the plain single-process runtime, exactly as before pods existed.
                if count > 1 {
                    cmd.args(["--pods", &count.to_string()])
                        .args(["--pod-index", &i.to_string()])
                        .args(["--peers", &peers.join(",")])
                        .args(["--incarnation", &incarnation])
                        // A pod killed before it joined is only noticed when the start-up
                        // wait runs out (no pod can tell "dead" from "not started yet"):
                        // keep that wait short enough for a test's patience.
                        .env("WEIR_WAIT_TIMEOUT", "20s");
                }
                cmd.args(extra)
                    .env("WEIR_EXCHANGE_TOKEN", "test-token-0123456789");
                for (k, v) in s3_env() {
                    cmd.env(k, v);
                }
                for (k, v) in env(i) {
                    cmd.env(k, v);
                }
                cmd.stdout(Stdio::null()).stderr(append_to(log));
                cmd.spawn().unwrap()
            })
            .collect();
        Self { pods }
    }

    /// Wait until every pod exited, at most `limit`; the statuses in pod order.
    pub fn wait(&mut self, limit: std::time::Duration) -> Option<Vec<std::process::ExitStatus>> {
        let t = std::time::Instant::now();
        let mut out = vec![None; self.pods.len()];
        while t.elapsed() < limit {
            for (i, p) in self.pods.iter_mut().enumerate() {
                if out[i].is_none() {
                    out[i] = p.try_wait().unwrap();
                }
            }
            if out.iter().all(Option::is_some) {
                return Some(out.into_iter().map(Option::unwrap).collect());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// The first pod to exit within `limit`, with its status; among pods seen exiting at
    /// the same poll, one killed by a signal (the cause; the others followed it).
    pub fn first_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<(usize, std::process::ExitStatus)> {
        use std::os::unix::process::ExitStatusExt;
        let t = std::time::Instant::now();
        while t.elapsed() < limit {
            let exited: Vec<(usize, std::process::ExitStatus)> = self
                .pods
                .iter_mut()
                .enumerate()
                .filter_map(|(i, p)| p.try_wait().unwrap().map(|s| (i, s)))
                .collect();
            if let Some(first) = exited
                .iter()
                .find(|(_, s)| s.signal().is_some())
                .or(exited.first())
            {
                return Some(*first);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Wait until every pod exited, at most `limit`, and require each to have succeeded;
    /// `what` and the tail of `log` name a failure.
    pub fn all_succeed(&mut self, limit: std::time::Duration, log: &Path, what: &str) {
        let statuses = self.wait(limit).unwrap_or_else(|| {
            self.kill_all();
            panic!(
                "{what}: pods still running after {limit:?}\n{}",
                log_tail(log)
            )
        });
        assert!(
            statuses.iter().all(std::process::ExitStatus::success),
            "{what}: {statuses:?}\n{}",
            log_tail(log)
        );
    }

    pub fn kill_all(&mut self) {
        for p in &mut self.pods {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// The operators with a store under the disk backend's local state directory `dir` (each
/// store is a `store` directory under its operator's).
pub fn stores(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name() == "store" {
            out.insert(dir.file_name().unwrap().to_string_lossy().into_owned());
        } else if e.path().is_dir() {
            out.extend(stores(&e.path()));
        }
    }
    out
}

/// A second branch of a job's output: a copy of the files in `out` so far, in `to`.
pub fn branch_output(out: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(out).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Run options that restore `savepoint` at `parallelism`, checkpointing to `checkpoint_dir`.
pub fn from_savepoint(
    savepoint: &str,
    parallelism: u32,
    checkpoint_dir: String,
) -> weir_runtime::job::RunOptions {
    weir_runtime::job::RunOptions {
        job: weir_runtime::job::JobArgs {
            parallelism: Some(parallelism),
            restore_from: Some(savepoint.to_string()),
            checkpoint_dir: Some(checkpoint_dir),
            ..weir_runtime::job::JobArgs::default()
        },
        ..weir_runtime::job::RunOptions::default()
    }
}
