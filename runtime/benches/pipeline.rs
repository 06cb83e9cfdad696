//! Macro benchmark: datagen -> filter -> select -> keyed 1 s tumbling window -> blackhole, with
//! checkpoints every second to a temp dir. Prints records/s and peak memory for one run.
//!
//! `cargo bench -p weir-runtime --bench pipeline -- [records] [parallelism]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

mod common;

use std::time::Instant;

use common::peak_rss_mib;
use weir_runtime::job::{RunOptions, start};

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test` a short run checks that it works.
    let benching = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let count: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 5_000_000 } else { 200_000 });
    let parallelism: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: bench
parallelism: {parallelism}
checkpoint: {{interval: 1s, storage: \"file://{}\"}}
source:
  datagen:
    seed: 1
    count: {count}
    splits: 8
    batchSize: 8192
    fields:
      store_id: {{key: {{cardinality: 1000, prefix: s-}}}}
      amount: {{uniform: {{min: -10, max: 500}}}}
      quantity: {{uniform: {{min: 1, max: 5}}}}
      ts: {{eventTime: {{step: 1ms, disorder: 100ms}}}}
  schema:
    - {{name: store_id, type: string}}
    - {{name: amount, type: int64}}
    - {{name: quantity, type: int64}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts, maxOutOfOrderness: 1s}}
transforms:
  - filter: amount > 0
  - select: {{store_id: store_id, amount: amount * quantity, ts: ts}}
  - window: {{tumbling: 1s, keyBy: [store_id], aggregates: {{orders: count(*), sales: sum(amount)}}}}
sinks:
  - blackhole: {{}}
",
        tmp.path().display()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plan = weir_runtime::plan_source("bench.yaml", &yaml).unwrap();
    let t = Instant::now();
    let (outcome, checkpoints) = rt.block_on(async {
        let job = start(plan, RunOptions::default()).await.unwrap();
        let status = job.status.clone();
        let o = job.wait().await.unwrap();
        let n = status
            .read()
            .unwrap()
            .last_checkpoint
            .as_ref()
            .map_or(0, |c| c.id);
        (o, n)
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "pipeline: {count} records, parallelism {parallelism}: {secs:.2} s, {:.2} M records/s, peak RSS {:.0} MiB, {checkpoints} checkpoints ({outcome:?})",
        count as f64 / secs / 1e6,
        peak_rss_mib()
    );
}
