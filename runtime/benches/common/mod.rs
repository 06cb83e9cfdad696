//! What the benchmark binaries read about their own process.
#![allow(dead_code)] // each benchmark uses its share

/// Peak resident set of this process, MiB (`VmHWM`).
pub fn peak_rss_mib() -> f64 {
    peak_rss_mib_of("self").unwrap_or(0.0)
}

/// Peak resident set of process `pid` (`self` for this one), MiB; `None` once it is gone.
pub fn peak_rss_mib_of(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(l.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// User + system CPU time of this process, seconds (clock ticks of 1/100 s, as on Linux).
pub fn cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of stat(5).
    stat_seconds(14)
}

/// User + system CPU time of this process's descendants that ended and were waited for
/// (`cutime + cstime`, fields 16 and 17 of stat(5)), seconds.
pub fn children_cpu_seconds() -> f64 {
    stat_seconds(16)
}

/// Fields `field` and `field + 1` of `/proc/self/stat` (numbered as in stat(5)), as seconds.
fn stat_seconds(field: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(field) + ticks(field + 1)) / 100.0
}

/// The value after `name` on the command line, parsed.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// The reference workload (see `reference.rs`): `store_id` over `keys` keys, `amount` in
/// [-100, 900], event time +1 ms per record; `WHERE amount > 0` and a tumbling window per
/// `store_id` with `count(*)` and `sum(amount)`; into a blackhole.
pub struct ReferenceJob<'a> {
    pub parallelism: u32,
    pub records: u64,
    /// Checkpoint interval (a day for "none but the final one").
    pub checkpoint: &'a str,
    pub storage: &'a str,
    /// Endpoint of an S3 `storage`.
    pub s3_endpoint: Option<&'a str>,
    pub keys: u64,
    /// Window size; `None`: the generator alone, no filter or window.
    pub window: Option<&'a str>,
}

/// The job file of `j`.
pub fn reference_job(j: &ReferenceJob<'_>) -> String {
    let transforms = match j.window {
        None => "[]".to_string(),
        Some(w) => format!(
            "\n  - filter: amount > 0\n  - window: {{tumbling: {w}, keyBy: [store_id], aggregates: {{orders: count(*), sales: sum(amount)}}}}"
        ),
    };
    let s3 = j.s3_endpoint.map_or_else(String::new, |e| {
        format!(", s3: {{endpoint: \"{e}\", pathStyle: true, region: us-east-1}}")
    });
    format!(
        "name: reference
parallelism: {p}
checkpoint: {{interval: {interval}, timeout: 2d, storage: \"{storage}\"{s3}}}
source:
  datagen:
    seed: 1
    count: {records}
    splits: 8
    batchSize: 8192
    fields:
      store_id: {{uniform: {{min: 0, max: {max_key}}}}}
      amount: {{uniform: {{min: -100, max: 900}}}}
      ts: {{eventTime: {{step: 1ms}}}}
  schema:
    - {{name: store_id, type: int64}}
    - {{name: amount, type: float64}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts, maxOutOfOrderness: 1s}}
transforms: {transforms}
sinks:
  - blackhole: {{}}
",
        p = j.parallelism,
        interval = j.checkpoint,
        storage = j.storage,
        records = j.records,
        max_key = j.keys - 1,
    )
}

/// Every completed checkpoint of a running job, by id: (duration ms, size bytes). The job's
/// status keeps only its last attempts, so it is sampled often until [`Checkpoints::finish`].
pub struct Checkpoints {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: tokio::task::JoinHandle<std::collections::BTreeMap<u64, (u64, u64)>>,
}

impl Checkpoints {
    /// Start sampling `status` (a running job's).
    pub fn sample(
        status: std::sync::Arc<std::sync::RwLock<weir_runtime::control::status::JobReport>>,
    ) -> Self {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = std::sync::Arc::clone(&done);
        let sampler = tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::new();
            loop {
                if let Ok(s) = status.read() {
                    for a in &s.checkpoints {
                        if let (Some(d), Some(b)) = (a.duration_ms, a.size_bytes) {
                            seen.insert(a.id, (d, b));
                        }
                    }
                }
                if finished.load(std::sync::atomic::Ordering::Acquire) {
                    return seen;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        Self { done, sampler }
    }

    /// Stop sampling (after the job ended) and return what was seen.
    pub async fn finish(self) -> std::collections::BTreeMap<u64, (u64, u64)> {
        self.done.store(true, std::sync::atomic::Ordering::Release);
        self.sampler.await.expect("the checkpoint sampler")
    }
}

/// SplitMix64's finaliser: keys spread evenly over key groups and files from a counter.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A scratch directory under `WEIR_BENCH_DIR` (default `.`: put it on the disk to measure), and
/// checkpoint storage in it.
pub fn scratch(
    rt: &tokio::runtime::Runtime,
) -> (tempfile::TempDir, weir_runtime::storage::Storage) {
    let dir = std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| ".".into());
    let tmp = tempfile::tempdir_in(dir).expect("a scratch directory");
    let storage = rt
        .block_on(weir_runtime::storage::Storage::open(
            &format!("file://{}", tmp.path().join("storage").display()),
            &weir_crds::S3Spec::default(),
        ))
        .expect("local storage");
    (tmp, storage)
}
