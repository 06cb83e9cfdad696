//! End-to-end connector benchmarks on the local stack (`tests/kafka.sh start`,
//! `tests/clickhouse.sh start`, `tests/s3.sh start`; the variables `tests/run-all.sh` exports):
//!
//! - the broker's own ceiling: producing the input, and reading it back with a plain consumer;
//! - Kafka -> filter -> 1 min tumbling window -> Kafka, exactly-once vs at-least-once;
//! - the same into ClickHouse, write-ahead (Replicated table) vs replacing (ReplacingMergeTree);
//! - latency from produce to visibility in ClickHouse (write-ahead, checkpoint every 1 s), and,
//!   when their URLs are set (`tests/postgres.sh`, `tests/mysql.sh`), in PostgreSQL and MySQL
//!   tables in both modes, written by the same job: each table polled every 50 ms.
//!
//! `cargo bench -p weir-runtime --bench connectors -- [--records N] [--latency-only]`
//!
//! Each job reads the same pre-produced, bounded input and runs in this process; CPU is this
//! process's (the job's; the bench's own clients are idle meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

mod common;

use std::time::{Duration, Instant};

use common::cpu_seconds;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_runtime::clickhouse::client::Client;
use weir_runtime::job::{RunOptions, start};

const PARTITIONS: i32 = 3;
const STORES: u64 = 1000;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn order_json(i: u64, ts: i64) -> String {
    format!(
        "{{\"order_id\":{i},\"store_id\":\"store-{}\",\"amount\":{},\"ts\":{ts}}}",
        mix(i ^ 0x51) % STORES,
        (mix(i ^ 0xa3) % 1000) as i64 - 100
    )
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// Produce orders `range` with event times 1 ms apart from `t0`; returns records/s.
async fn produce(p: &FutureProducer, topic: &str, range: std::ops::Range<u64>, t0: i64) -> f64 {
    let n = range.end - range.start;
    let t = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in range {
        let payload = order_json(i, t0 + i as i64);
        let f = p
            .send_result(
                FutureRecord::<(), _>::to(topic)
                    .partition((i % PARTITIONS as u64) as i32)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        pending.push(f);
        if pending.len() >= 10_000 {
            for f in pending.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Read `n` records of `topic` from the start with a plain consumer; returns records/s.
fn consume_all(bootstrap: &str, topic: &str, n: u64) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let t = Instant::now();
    let mut got = 0;
    while got < n {
        if let Some(m) = c.poll(Duration::from_secs(5)) {
            let m = m.unwrap();
            std::hint::black_box(m.payload());
            got += 1;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "read only {got} of {n}"
        );
    }
    n as f64 / t.elapsed().as_secs_f64()
}

const SCHEMA: &str = "  schema:
    - {name: order_id, type: int64}
    - {name: store_id, type: string}
    - {name: amount, type: int64}
    - {name: ts, type: timestamp}
";

fn job(
    name: &str,
    bootstrap: &str,
    topic: &str,
    dir: &str,
    transforms: &str,
    sinks: &str,
) -> String {
    format!(
        "name: {name}
parallelism: 2
checkpoint: {{interval: 1s, storage: \"file://{dir}\"}}
source:
  kafka: {{bootstrapServers: \"{bootstrap}\", topic: {topic}, format: json, bounded: true}}
{SCHEMA}  eventTime: {{field: ts, maxOutOfOrderness: 1s}}
transforms:
{transforms}
sinks:
{sinks}"
    )
}

const WINDOW: &str = "  - filter: amount > 0
  - window: {tumbling: 1m, keyBy: [store_id], aggregates: {orders: count(*), sales: sum(amount)}}
";

/// Run `yaml` to its end; (seconds, CPU seconds).
fn run(rt: &tokio::runtime::Runtime, yaml: &str) -> (f64, f64) {
    let plan = weir_runtime::plan_source("bench.yaml", yaml).unwrap();
    let cpu = cpu_seconds();
    let t = Instant::now();
    rt.block_on(async {
        let job = start(plan, RunOptions::default()).await.unwrap();
        job.wait().await.unwrap();
    });
    (t.elapsed().as_secs_f64(), cpu_seconds() - cpu)
}

fn line(name: &str, n: u64, (secs, cpu): (f64, f64)) {
    println!(
        "{name:<52} {:>8.3} M rec/s  {:>6.2} s CPU  {:>8.3} M rec per CPU-s",
        n as f64 / secs / 1e6,
        cpu,
        n as f64 / cpu.max(0.01) / 1e6
    );
}

async fn ch(url: &str, sql: &str) -> String {
    Client::new(url, "default", None, &Default::default())
        .unwrap()
        .execute(sql, &[], None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", e.message))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "connectors: a benchmark; `cargo bench -p weir-runtime --bench connectors` runs it"
        );
        return;
    }
    let (Ok(bootstrap), Ok(ch_url)) = (
        std::env::var("WEIR_KAFKA_BOOTSTRAP"),
        std::env::var("WEIR_CLICKHOUSE_URL"),
    ) else {
        println!(
            "connectors: SKIPPED: WEIR_KAFKA_BOOTSTRAP and WEIR_CLICKHOUSE_URL are not set (tests/kafka.sh start, tests/clickhouse.sh start)"
        );
        return;
    };
    let n: u64 = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = format!("{:x}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| format!("{}/{name}", tmp.path().display());
    let input = format!("bench-orders-{u}");
    let t0 = 1_700_000_000_000i64;
    if args.iter().any(|a| a == "--latency-only") {
        latency(&rt, &bootstrap, &ch_url, &u, &dir("latency"));
        return;
    }

    println!(
        "connectors: {n} orders on {PARTITIONS} partitions, parallelism 2, checkpoint every 1 s"
    );
    rt.block_on(weir_testkit::rd::create_topic(
        &bootstrap, &input, PARTITIONS,
    ))
    .unwrap();
    let p = producer(&bootstrap);
    let rate = rt.block_on(produce(&p, &input, 0..n, t0));
    println!(
        "{:<52} {:>8.3} M rec/s",
        "broker alone: produce the input (rdkafka)",
        rate / 1e6
    );
    let rate = consume_all(&bootstrap, &input, n);
    println!(
        "{:<52} {:>8.3} M rec/s",
        "broker alone: read it back (rdkafka consumer)",
        rate / 1e6
    );

    let blackhole = "  - blackhole: {}\n";
    line(
        "kafka -> blackhole (Weir's source)",
        n,
        run(
            &rt,
            &job(
                &format!("src-{u}"),
                &bootstrap,
                &input,
                &dir("src"),
                "  []\n",
                blackhole,
            ),
        ),
    );
    for (delivery, name) in [("exactly-once", "eo"), ("at-least-once", "alo")] {
        let out = format!("bench-sales-{name}-{u}");
        rt.block_on(weir_testkit::rd::create_topic(&bootstrap, &out, PARTITIONS))
            .unwrap();
        let sink = format!(
            "  - kafka: {{bootstrapServers: \"{bootstrap}\", topic: {out}, delivery: {delivery}, transactionalIdPrefix: {out}}}\n"
        );
        line(
            &format!("kafka -> window -> kafka, {delivery}"),
            n,
            run(
                &rt,
                &job(
                    &format!("{name}-{u}"),
                    &bootstrap,
                    &input,
                    &dir(name),
                    WINDOW,
                    &sink,
                ),
            ),
        );
    }

    let (wa, rmt) = (format!("bench_wa_{u}"), format!("bench_rmt_{u}"));
    rt.block_on(async {
        ch(&ch_url, &format!(
            "CREATE TABLE {wa} (store_id String, window_start DateTime, window_end DateTime, orders Int64, sales Int64) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{wa}', '{{replica}}') ORDER BY (window_start, store_id)"
        )).await;
        ch(&ch_url, &format!(
            "CREATE TABLE {rmt} (store_id String, window_start DateTime, window_end DateTime, orders Int64, sales Int64, v UInt64) \
             ENGINE = ReplacingMergeTree(v) ORDER BY (window_start, store_id)"
        )).await;
    });
    for (table, mode, extra) in [
        (&wa, "writeAhead", ""),
        (&rmt, "replacing", ", versionColumn: v"),
    ] {
        let sink =
            format!("  - clickhouse: {{url: \"{ch_url}\", table: {table}, mode: {mode}{extra}}}\n");
        line(
            &format!("kafka -> window -> clickhouse, {mode}"),
            n,
            run(
                &rt,
                &job(table, &bootstrap, &input, &dir(table), WINDOW, &sink),
            ),
        );
    }

    latency(&rt, &bootstrap, &ch_url, &u, &dir("latency"));
}

/// A table the latency run polls, and the ids seen there with their latencies.
struct Watched {
    what: String,
    table: Table,
    seen: std::collections::HashSet<i64>,
    latencies: Vec<i64>,
}

enum Table {
    ClickHouse(String),
    Postgres(tokio_postgres::Client, String),
    Mysql(mysql_async::Conn, String),
}

impl Table {
    /// Ids visible now among those produced since `since_ms` (ClickHouse: all).
    async fn ids(&mut self, ch_url: &str, since_ms: i64) -> Vec<i64> {
        let from = since_ms << 20;
        match self {
            Table::ClickHouse(t) => ch(ch_url, &format!("SELECT order_id FROM {t} FORMAT TSV"))
                .await
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect(),
            Table::Postgres(c, t) => c
                .query(
                    &format!("SELECT order_id FROM {t} WHERE order_id > $1"),
                    &[&from],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Table::Mysql(c, t) => {
                use mysql_async::prelude::Queryable;
                c.exec(
                    format!("SELECT order_id FROM {t} WHERE order_id > ?"),
                    (from,),
                )
                .await
                .unwrap()
            }
        }
    }
}

/// The database sinks whose servers are set up: `(sink lines, tables to poll)`.
async fn database_sinks(u: &str) -> (String, Vec<Watched>) {
    let (mut sinks, mut watched) = (String::new(), Vec::new());
    let watch = |what: String, table: Table| Watched {
        what,
        table,
        seen: Default::default(),
        latencies: Vec::new(),
    };
    if let Ok(url) = std::env::var("WEIR_POSTGRES_URL") {
        for mode in ["transactional", "upsert"] {
            let t = format!("bench_latency_pg_{mode}_{u}");
            let spec: weir_crds::PostgresSinkSpec = serde_json::from_value(serde_json::json!({
                "url": format!("{url}?sslmode=disable"), "table": t,
                "passwordEnv": "WEIR_POSTGRES_PASSWORD", "mode": mode}))
            .unwrap();
            let c = weir_runtime::postgres::client::Endpoint::new(&spec, |v| std::env::var(v).ok())
                .unwrap()
                .connect()
                .await
                .unwrap();
            c.batch_execute(&format!(
                "CREATE TABLE {t} (order_id bigint PRIMARY KEY, ts timestamp(3) NOT NULL)"
            ))
            .await
            .unwrap();
            sinks.push_str(&format!(
                "  - postgres: {{url: \"{url}?sslmode=disable\", table: {t}, passwordEnv: WEIR_POSTGRES_PASSWORD, mode: {mode}}}\n"
            ));
            watched.push(watch(format!("postgres {mode}"), Table::Postgres(c, t)));
        }
    }
    if let Ok(url) = std::env::var("WEIR_MYSQL_URL") {
        for mode in ["transactional", "upsert"] {
            use mysql_async::prelude::Queryable;
            let t = format!("bench_latency_my_{mode}_{u}");
            let spec: weir_crds::MysqlSinkSpec = serde_json::from_value(serde_json::json!({
                "url": format!("{url}?sslmode=disable"), "table": t,
                "passwordEnv": "WEIR_MYSQL_PASSWORD", "mode": mode}))
            .unwrap();
            let mut c =
                weir_runtime::mysql::client::Endpoint::new(&spec, |v| std::env::var(v).ok())
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            c.query_drop(format!(
                "CREATE TABLE {t} (order_id bigint PRIMARY KEY, ts datetime(3) NOT NULL) ENGINE = InnoDB"
            ))
            .await
            .unwrap();
            sinks.push_str(&format!(
                "  - mysql: {{url: \"{url}?sslmode=disable\", table: {t}, passwordEnv: WEIR_MYSQL_PASSWORD, mode: {mode}}}\n"
            ));
            watched.push(watch(format!("mysql {mode}"), Table::Mysql(c, t)));
        }
    }
    (sinks, watched)
}

/// Produce at a steady rate with the wall clock as event time, run a pass-through job into a
/// write-ahead ClickHouse table (and the database sinks set up), and time when each order
/// becomes visible in each.
fn latency(rt: &tokio::runtime::Runtime, bootstrap: &str, ch_url: &str, u: &str, dir: &str) {
    const RATE: u64 = 10_000;
    const SECS: u64 = 20;
    let n = RATE * SECS;
    let topic = format!("bench-latency-{u}");
    let table = format!("bench_latency_{u}");
    let (db_sinks, mut watched) = rt.block_on(async {
        weir_testkit::rd::create_topic(bootstrap, &topic, PARTITIONS)
            .await
            .unwrap();
        ch(ch_url, &format!(
            "CREATE TABLE {table} (order_id Int64, ts DateTime) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{table}', '{{replica}}') ORDER BY order_id"
        )).await;
        database_sinks(u).await
    });
    watched.insert(
        0,
        Watched {
            what: "clickhouse".into(),
            table: Table::ClickHouse(table.clone()),
            seen: Default::default(),
            latencies: Vec::new(),
        },
    );
    // Event time (ts) is ms since the epoch at produce; ClickHouse keeps seconds, so the
    // produce time is carried in order_id's high bits instead: id = produce_ms * 2^20 + i.
    let yaml = format!(
        "name: latency-{u}
parallelism: 2
checkpoint: {{interval: 1s, storage: \"file://{dir}\"}}
source:
  kafka: {{bootstrapServers: \"{bootstrap}\", topic: {topic}, format: json}}
{SCHEMA}transforms:
  - filter: amount > -1000
  - select: {{order_id: order_id, ts: ts}}
sinks:
  - clickhouse: {{url: \"{ch_url}\", table: {table}, mode: writeAhead}}
{db_sinks}"
    );
    let plan = weir_runtime::plan_source("latency.yaml", &yaml).unwrap();
    let job = rt.block_on(start(plan, RunOptions::default())).unwrap();
    let requests = job.requests.clone();
    let p = producer(bootstrap);
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    let now_ms = move || {
        std::time::SystemTime::now()
            .duration_since(epoch)
            .unwrap()
            .as_millis() as i64
    };
    let producing = rt.spawn(async move {
        let start = Instant::now();
        for i in 0..n {
            let due = start + Duration::from_secs_f64(i as f64 / RATE as f64);
            tokio::time::sleep_until(due.into()).await;
            let at = now_ms();
            let id = (at << 20) | i as i64;
            let payload =
                format!("{{\"order_id\":{id},\"store_id\":\"s\",\"amount\":1,\"ts\":{at}}}");
            let f = p
                .send_result(
                    FutureRecord::<(), _>::to(&topic)
                        .partition((i % PARTITIONS as u64) as i32)
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            drop(f);
        }
        p
    });
    let t = Instant::now();
    while watched.iter().any(|w| (w.seen.len() as u64) < n)
        && t.elapsed() < Duration::from_secs(SECS + 60)
    {
        for w in &mut watched {
            // Rows become visible within seconds of their produce: look back 10 s.
            let ids = rt.block_on(w.table.ids(ch_url, now_ms() - 10_000));
            let visible = now_ms();
            for id in ids {
                if w.seen.insert(id) {
                    w.latencies.push(visible - (id >> 20));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rt.block_on(producing);
    rt.block_on(async {
        let _ = requests
            .send(weir_runtime::checkpoint::coordinator::Request::Stop { savepoint: false })
            .await;
        let _ = job.wait().await;
    });
    for w in &mut watched {
        w.latencies.sort_unstable();
        let l = &w.latencies;
        let pct = |p: f64| {
            l.get(((l.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(-1)
        };
        println!(
            "{:<52} p50 {} ms, p99 {} ms, max {} ms ({} of {n} seen)",
            format!("latency produce -> visible in {} ({RATE}/s)", w.what),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            l.len()
        );
    }
}
