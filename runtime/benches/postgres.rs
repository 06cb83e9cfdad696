//! The PostgreSQL sink on the local server (`tests/postgres.sh start`, then
//! `eval "$(tests/postgres.sh env)"`): rows/s per mode with a checkpoint every second, against
//! the server's own bulk-load ceiling (`COPY ... FROM STDIN` of the same rows on one
//! connection), and the sink's latency from a row's write to its commit (what a reader waits
//! beyond the pipeline).
//!
//! `cargo bench -p weir-runtime --bench postgres -- [rows] [parallelism]`
//!
//! The sink's subtasks run in this process, one task each, as in a job; rows are
//! pre-built Arrow batches (the pipeline's cost is not measured here).
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use futures::SinkExt;
use weir_crds::SinkSpec;
use weir_runtime::ids::CheckpointId;
use weir_runtime::sink::{SinkContext, SinkEnv, SinkInstance};

const BATCH: usize = 4096;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("store_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("amount", DataType::Int64, false),
    ]))
}

/// Rows `from..to` of subtask `part` of `parts`, as batches.
fn batches(from: u64, to: u64, part: u64, parts: u64) -> Vec<RecordBatch> {
    let ids: Vec<i64> = (from..to)
        .filter(|i| i % parts == part)
        .map(|i| i as i64)
        .collect();
    ids.chunks(BATCH)
        .map(|c| {
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(c.to_vec())),
                    Arc::new(StringArray::from(
                        c.iter()
                            .map(|i| format!("store-{}", i % 1000))
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(TimestampMillisecondArray::from(
                        c.iter().map(|i| 1_767_225_600_000 + i).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(
                        c.iter().map(|i| i % 997).collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap()
        })
        .collect()
}

async fn client(url: &str) -> tokio_postgres::Client {
    let spec = pg_spec(url, "unused", "transactional");
    let SinkSpec::Postgres(spec) = spec else {
        unreachable!()
    };
    weir_runtime::postgres::client::Endpoint::new(&spec, |v| std::env::var(v).ok())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn pg_spec(url: &str, table: &str, mode: &str) -> SinkSpec {
    serde_json::from_value(serde_json::json!({"postgres": {
        "url": format!("{url}?sslmode=disable"), "table": table,
        "passwordEnv": "WEIR_POSTGRES_PASSWORD", "mode": mode, "batchRows": BATCH
    }}))
    .unwrap()
}

async fn table(c: &tokio_postgres::Client, name: &str) {
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id bigint PRIMARY KEY, \
         store_id text NOT NULL, ts timestamp NOT NULL, amount bigint NOT NULL)"
    ))
    .await
    .unwrap();
}

/// `COPY` of every row on one connection: the server's ceiling for this table.
async fn copy(url: &str, rows: u64) -> f64 {
    let c = client(url).await;
    table(&c, "bench_pg_copy").await;
    let mut text = String::new();
    let t = Instant::now();
    let sink = c
        .copy_in("COPY bench_pg_copy (id, store_id, ts, amount) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    for i in 0..rows {
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "{i}\tstore-{}\t{}\t{}",
            i % 1000,
            chrono_text(1_767_225_600_000 + i as i64),
            i % 997
        );
        if text.len() > 1 << 20 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut text)))
                .await
                .unwrap();
        }
    }
    sink.send(bytes::Bytes::from(text)).await.unwrap();
    sink.finish().await.unwrap();
    rows as f64 / t.elapsed().as_secs_f64()
}

fn chrono_text(ms: i64) -> String {
    let a = TimestampMillisecondArray::from(vec![ms]);
    let s = datafusion::arrow::compute::cast(&a, &DataType::Utf8).unwrap();
    s.as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .value(0)
        .to_string()
}

/// The sink in `mode` with `parallelism` subtasks, a checkpoint every second; rows/s and the
/// write-to-commit latencies of its batches (ms, sorted).
async fn sink(url: &str, mode: &str, rows: u64, parallelism: u32) -> (f64, Vec<f64>) {
    let name = format!("bench_pg_{mode}");
    table(&client(url).await, &name).await;
    let env = SinkEnv {
        sink: "sink-0".into(),
        job_name: format!("bench-{mode}"),
        parallelism,
        exactly_once: true,
    };
    let connector = weir_runtime::connectors::sink(&pg_spec(url, &name, mode), &env);
    connector.prepare(&schema()).await.unwrap();
    connector.recover_and_commit(Vec::new()).await.unwrap();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for subtask in 0..parallelism {
        let inst = connector
            .open(&SinkContext {
                subtask,
                parallelism,
                generation: 1,
                job_id: "bench".into(),
            })
            .unwrap();
        let input = batches(0, rows, u64::from(subtask), u64::from(parallelism));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut waiting: Vec<Instant> = Vec::new();
            let mut checkpoint = 1;
            let mut last = Instant::now();
            let every = Duration::from_secs(1);
            match inst {
                SinkInstance::TwoPhase(mut s) => {
                    s.begin(CheckpointId(checkpoint)).await.unwrap();
                    for (i, b) in input.iter().enumerate() {
                        s.write(b).await.unwrap();
                        waiting.push(Instant::now());
                        if last.elapsed() >= every || i + 1 == input.len() {
                            let c = s.pre_commit().await.unwrap();
                            s.commit(vec![c]).await.unwrap();
                            latencies
                                .extend(waiting.drain(..).map(|w| w.elapsed().as_secs_f64() * 1e3));
                            checkpoint += 1;
                            s.begin(CheckpointId(checkpoint)).await.unwrap();
                            last = Instant::now();
                        }
                    }
                }
                SinkInstance::Plain(mut s) => {
                    for (i, b) in input.iter().enumerate() {
                        s.write(b).await.unwrap();
                        waiting.push(Instant::now());
                        if last.elapsed() >= every || i + 1 == input.len() {
                            s.flush(CheckpointId(checkpoint)).await.unwrap();
                            latencies
                                .extend(waiting.drain(..).map(|w| w.elapsed().as_secs_f64() * 1e3));
                            checkpoint += 1;
                            last = Instant::now();
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let rate = rows as f64 / t.elapsed().as_secs_f64();
    let n: i64 = client(url)
        .await
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as u64, rows, "{mode}: rows in the table");
    latencies.sort_by(f64::total_cmp);
    (rate, latencies)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let Ok(url) = std::env::var("WEIR_POSTGRES_URL") else {
        println!(
            "SKIPPED: WEIR_POSTGRES_URL is not set (tests/postgres.sh start; eval \"$(tests/postgres.sh env)\")"
        );
        return;
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rows: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let parallelism: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ceiling = copy(&url, rows).await;
        println!("COPY FROM STDIN (one connection, the ceiling): {:.0} rows/s", ceiling);
        for mode in ["transactional", "upsert"] {
            let (rate, lat) = sink(&url, mode, rows, parallelism).await;
            println!(
                "postgres {mode:<13} p={parallelism}: {rate:.0} rows/s ({:.2} of COPY); write-to-commit latency p50 {:.0} ms, p99 {:.0} ms",
                rate / ceiling,
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
    });
}
