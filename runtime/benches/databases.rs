//! The database sinks on the local servers (`tests/postgres.sh start`, `tests/mysql.sh start`,
//! then `eval "$(tests/postgres.sh env)"; eval "$(tests/mysql.sh env)"`): rows/s per mode with
//! a checkpoint every second, against each server's own bulk-load ceiling (PostgreSQL's
//! `COPY ... FROM STDIN`, MySQL's `LOAD DATA LOCAL INFILE`, of the same rows on one
//! connection), and the sink's latency from a row's write to its commit (what a reader waits
//! beyond the pipeline). A server whose URL is not set is skipped.
//!
//! `cargo bench -p weir-runtime --bench databases -- [rows] [parallelism]` (in the test
//! profile: `cargo test -p weir-runtime --bench databases -- --bench [rows] [parallelism]`)
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

/// A server under test.
#[derive(Clone, Copy, PartialEq)]
enum Db {
    Postgres,
    Mysql,
}

impl Db {
    fn kind(self) -> &'static str {
        match self {
            Db::Postgres => "postgres",
            Db::Mysql => "mysql",
        }
    }

    fn spec(self, url: &str, table: &str, mode: &str) -> SinkSpec {
        let password = match self {
            Db::Postgres => "WEIR_POSTGRES_PASSWORD",
            Db::Mysql => "WEIR_MYSQL_PASSWORD",
        };
        serde_json::from_value(serde_json::json!({self.kind(): {
            "url": format!("{url}?sslmode=disable"), "table": table,
            "passwordEnv": password, "mode": mode, "batchRows": BATCH
        }}))
        .unwrap()
    }

    /// Create (again) the benchmark table `name`.
    async fn table(self, url: &str, name: &str) {
        match self {
            Db::Postgres => table(&client(url).await, name).await,
            Db::Mysql => {
                my_exec(
                    url,
                    &format!(
                        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id bigint PRIMARY KEY, \
                         store_id varchar(32) NOT NULL, ts datetime(3) NOT NULL, amount bigint NOT NULL) ENGINE = InnoDB"
                    ),
                )
                .await;
            }
        }
    }

    async fn count(self, url: &str, name: &str) -> u64 {
        let sql = format!("SELECT count(*) FROM {name}");
        match self {
            Db::Postgres => {
                let n: i64 = client(url).await.query_one(&sql, &[]).await.unwrap().get(0);
                n as u64
            }
            Db::Mysql => {
                use mysql_async::prelude::Queryable;
                let mut c = my_client(url).await;
                let n: Option<u64> = c.query_first(sql).await.unwrap();
                n.unwrap()
            }
        }
    }

    /// The bulk-load ceiling and what it is called.
    async fn ceiling(self, url: &str, rows: u64) -> (f64, &'static str) {
        match self {
            Db::Postgres => (copy(url, rows).await, "COPY FROM STDIN"),
            Db::Mysql => (load_data(url, rows).await, "LOAD DATA LOCAL INFILE"),
        }
    }
}

async fn my_client(url: &str) -> mysql_async::Conn {
    let SinkSpec::Mysql(spec) = Db::Mysql.spec(url, "unused", "upsert") else {
        unreachable!()
    };
    weir_runtime::mysql::client::Endpoint::new(&spec, |v| std::env::var(v).ok())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn my_exec(url: &str, sql: &str) {
    use mysql_async::prelude::Queryable;
    my_client(url).await.query_drop(sql).await.unwrap();
}

/// `LOAD DATA LOCAL INFILE` of every row on one connection, streamed from memory: the
/// server's ceiling for this table.
async fn load_data(url: &str, rows: u64) -> f64 {
    use mysql_async::prelude::Queryable;
    Db::Mysql.table(url, "bench_my_load").await;
    let mut chunks = Vec::new();
    let mut text = String::new();
    for i in 0..rows {
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "{i}\tstore-{}\t{}\t{}",
            i % 1000,
            chrono_text(1_767_225_600_000 + i as i64).replace('T', " "),
            i % 997
        );
        if text.len() > 1 << 20 {
            chunks.push(Ok(bytes::Bytes::from(std::mem::take(&mut text))));
        }
    }
    chunks.push(Ok(bytes::Bytes::from(text)));
    let mut c = my_client(url).await;
    let t = Instant::now();
    c.set_infile_handler(async move {
        let s: mysql_async::InfileData = Box::pin(futures::stream::iter(chunks));
        Ok(s)
    });
    c.query_drop(
        "LOAD DATA LOCAL INFILE 'rows' INTO TABLE bench_my_load (id, store_id, ts, amount)",
    )
    .await
    .unwrap();
    rows as f64 / t.elapsed().as_secs_f64()
}

async fn client(url: &str) -> tokio_postgres::Client {
    let spec = Db::Postgres.spec(url, "unused", "transactional");
    let SinkSpec::Postgres(spec) = spec else {
        unreachable!()
    };
    weir_runtime::postgres::client::Endpoint::new(&spec, |v| std::env::var(v).ok())
        .unwrap()
        .connect()
        .await
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
async fn sink(db: Db, url: &str, mode: &str, rows: u64, parallelism: u32) -> (f64, Vec<f64>) {
    let name = format!("bench_{}_{mode}", db.kind());
    db.table(url, &name).await;
    let env = SinkEnv {
        sink: "sink-0".into(),
        job_name: format!("bench-{mode}"),
        parallelism,
        exactly_once: true,
    };
    let connector = weir_runtime::connectors::sink(&db.spec(url, &name, mode), &env);
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
    assert_eq!(
        db.count(url, &name).await,
        rows,
        "{mode}: rows in the table"
    );
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
    // `cargo test --all-targets` runs this binary too: only `cargo bench` (which passes
    // `--bench`) or an explicit `--bench` runs the benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("databases: a benchmark; `cargo bench -p weir-runtime --bench databases` runs it");
        return;
    }
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
    for (db, var, script) in [
        (Db::Postgres, "WEIR_POSTGRES_URL", "postgres"),
        (Db::Mysql, "WEIR_MYSQL_URL", "mysql"),
    ] {
        let Ok(url) = std::env::var(var) else {
            println!(
                "SKIPPED {}: {var} is not set (tests/{script}.sh start; eval \"$(tests/{script}.sh env)\")",
                db.kind()
            );
            continue;
        };
        rt.block_on(async {
            let (ceiling, how) = db.ceiling(&url, rows).await;
            println!("{} {how} (one connection, the ceiling): {ceiling:.0} rows/s", db.kind());
            for mode in ["transactional", "upsert"] {
                let (rate, lat) = sink(db, &url, mode, rows, parallelism).await;
                println!(
                    "{} {mode:<13} p={parallelism}: {rate:.0} rows/s ({:.2} of the ceiling); write-to-commit latency p50 {:.0} ms, p99 {:.0} ms",
                    db.kind(),
                    rate / ceiling,
                    pct(&lat, 0.5),
                    pct(&lat, 0.99)
                );
            }
        });
    }
}
