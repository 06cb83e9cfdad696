//! Event time: the end of a bounded file input, and against the real broker
//! (`tests/kafka.sh`) a silent partition with and without `eventTime.idleTimeout`, and what
//! happens to records that arrive on it afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::stack::{
    ORDERS_SCHEMA, Sales, create_topic, file_rows, file_sales, input_producer, kafka, order,
    order_json, produce_end_marker,
};
use common::{START_MS, log_tail, spawn_runtime, stop_cleanly, unique, wait_exit_within};
use rdkafka::producer::FutureRecord;

const PARTITIONS: i32 = 3;
const STORES: u64 = 5;
const SILENT: i32 = 2;

fn job(name: &str, bootstrap: &str, topic: &str, dir: &Path, idle_timeout: Option<&str>) -> String {
    let idle = idle_timeout.map_or(String::new(), |t| format!(", idleTimeout: {t}"));
    format!(
        "name: {name}
parallelism: 3
checkpoint: {{interval: 300ms, storage: \"file://{dir}/chk\"}}
source:
  kafka: {{bootstrapServers: \"{bootstrap}\", topic: {topic}}}
{schema}  eventTime: {{field: ts, maxOutOfOrderness: 5s{idle}}}
transforms:
  - filter: amount > 0
  - window:
      tumbling: 1m
      keyBy: [store_id]
      aggregates: {{orders: count(*), sales: sum(amount)}}
      lateRecords: {{sideOutput: {{file: {{path: \"{dir}/late\"}}}}}}
sinks:
  - file: {{path: \"{dir}/out\"}}
",
        dir = dir.display(),
        schema = ORDERS_SCHEMA,
    )
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// One partition of three never gets a record while the other two stay active. With
/// `idleTimeout` the windows of the other two close as their records pass them; without it nothing closes (the documented default);
/// records that reach the silent partition later, for windows already closed, go to the
/// late-record side output and change no window.
#[test]
fn a_silent_partition_holds_windows_only_without_idle_timeout() {
    let Some(bootstrap) = kafka("silent_partition") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let topic = format!("orders-idle-{u}");
    rt.block_on(create_topic(&bootstrap, &topic, PARTITIONS));
    let count = 3_000;
    let producer = input_producer(&bootstrap);
    let mut expected = Sales::new();
    rt.block_on(async {
        for i in 0..count {
            let o = order(i, PARTITIONS, STORES);
            if o.partition == SILENT {
                continue;
            }
            if o.amount > 0 {
                let w = o.ts - o.ts.rem_euclid(60_000);
                let e = expected.entry((o.store.clone(), w)).or_default();
                e.0 += 1;
                e.1 += o.amount;
            }
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .partition(o.partition)
                        .payload(&order_json(&o)),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
        for part in (0..PARTITIONS).filter(|p| *p != SILENT) {
            produce_end_marker(&producer, &topic, count, part).await;
        }
    });
    assert!(
        expected.len() > 20,
        "the oracle is too small to prove anything"
    );

    let tmp = tempfile::tempdir().unwrap();
    let control = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let run = |name: &str, idle: Option<&str>| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("job.yaml");
        std::fs::write(
            &file,
            job(&format!("{name}-{u}"), &bootstrap, &topic, &dir, idle),
        )
        .unwrap();
        let log = dir.join("runtime.log");
        let args: &[&str] = match idle {
            Some(_) => &["--control-addr", &control],
            None => &[],
        };
        (spawn_runtime(&file, args, &[], &log), dir, log)
    };
    // The other partitions stay active: a record every 200 ms that the filter drops, at the
    // end markers' event time, so only the silent partition can go idle.
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let heartbeat = {
        let (beating, bootstrap, topic) = (beating.clone(), bootstrap.clone(), topic.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let producer = input_producer(&bootstrap);
            let mut k = 0u64;
            while beating.load(std::sync::atomic::Ordering::Relaxed) {
                for part in (0..PARTITIONS).filter(|p| *p != SILENT) {
                    let payload = serde_json::json!({
                        "order_id": 2_000_000 + k, "store_id": "beat", "amount": 0,
                        "ts": START_MS + count as i64 * 100 + 600_000,
                    })
                    .to_string();
                    k += 1;
                    rt.block_on(
                        producer.send(
                            FutureRecord::<(), _>::to(&topic)
                                .partition(part)
                                .payload(&payload),
                            Duration::from_secs(10),
                        ),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let (mut with, with_dir, with_log) = run("idle", Some("2s"));
    let (mut without, without_dir, without_log) = run("held", None);

    let all_closed = wait_for(Duration::from_secs(60), || {
        file_sales(&with_dir.join("out")).0.len() >= expected.len()
    });
    let (got, dups) = file_sales(&with_dir.join("out"));
    assert!(
        all_closed,
        "with idleTimeout: {} of {} windows closed\n{}",
        got.len(),
        expected.len(),
        log_tail(&with_log)
    );
    common::assert_same_rows("with idleTimeout", &expected, &got, &dups);
    // Per-partition watermark and idle state are metrics: the silent one is idle, the
    // others are not.
    let metrics = rt.block_on(async {
        reqwest::get(format!("http://{control}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for (split, idle) in [(0, 0), (1, 0), (SILENT, 1)] {
        let line = format!("weir_source_split_idle{{split=\"{split}\"}} {idle}");
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    assert!(
        metrics.contains("weir_source_split_watermark_timestamp_seconds{split=\"0\"}"),
        "{metrics}"
    );
    // The job without a timeout ran as long and checkpointed all along: nothing closed.
    let (held, _) = file_sales(&without_dir.join("out"));
    assert!(
        held.is_empty(),
        "without idleTimeout the silent partition must hold every window: {} closed",
        held.len()
    );
    stop_cleanly(
        &mut without,
        "TERM",
        &without_log,
        "the job without idleTimeout",
    );

    // The silent partition wakes up with orders for the first minute, long closed.
    let late: Vec<u64> = (0..5).map(|k| 1_000_000 + k).collect();
    rt.block_on(async {
        for id in &late {
            let payload = serde_json::json!({
                "order_id": id, "store_id": "store-0", "amount": 7, "ts": START_MS + 1_000,
            })
            .to_string();
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .partition(SILENT)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    let late_dir = with_dir.join("late");
    let arrived = wait_for(Duration::from_secs(30), || {
        file_rows(&late_dir).len() >= late.len()
    });
    let mut side: Vec<u64> = file_rows(&late_dir)
        .iter()
        .map(|v| v["order_id"].as_u64().unwrap())
        .collect();
    side.sort_unstable();
    assert!(
        arrived && side == late,
        "late orders in the side output: {side:?}\n{}",
        log_tail(&with_log)
    );
    beating.store(false, std::sync::atomic::Ordering::Relaxed);
    heartbeat.join().unwrap();
    stop_cleanly(&mut with, "TERM", &with_log, "the job with idleTimeout");
    let (got, dups) = file_sales(&with_dir.join("out"));
    common::assert_same_rows("after late records", &expected, &got, &dups);
}

/// End of input is a watermark at the end of time: a bounded file job emits every window,
/// the last (partial) one included, commits them, and finishes by itself.
#[test]
fn a_bounded_file_input_emits_every_window_at_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let count = 5_000;
    let input: String = (0..count)
        .map(|i| order_json(&order(i, 1, STORES)) + "\n")
        .collect();
    std::fs::write(dir.join("orders.jsonl"), input).unwrap();
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: file-end
parallelism: 2
checkpoint: {{interval: 200ms, storage: \"file://{d}/chk\"}}
source:
  file: {{path: \"{d}/orders.jsonl\"}}
{schema}  eventTime: {{field: ts, maxOutOfOrderness: 5s}}
transforms:
  - filter: amount > 0
  - window: {{tumbling: 1m, keyBy: [store_id], aggregates: {{orders: count(*), sales: sum(amount)}}}}
sinks:
  - file: {{path: \"{d}/out\"}}
",
            d = dir.display(),
            schema = ORDERS_SCHEMA,
        ),
    )
    .unwrap();
    let log = dir.join("runtime.log");
    let mut child = spawn_runtime(&job, &[], &[], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(60)).expect("did not finish");
    assert!(status.success(), "{status:?}\n{}", log_tail(&log));
    let expected = common::stack::oracle(count, 1, STORES);
    let last = expected.keys().map(|(_, w)| *w).max().unwrap();
    assert!(
        expected.len() > 20 && expected.keys().any(|(_, w)| *w == last),
        "the oracle is too small to prove anything"
    );
    let (got, dups) = file_sales(&dir.join("out"));
    common::assert_same_rows("bounded file input", &expected, &got, &dups);
}
