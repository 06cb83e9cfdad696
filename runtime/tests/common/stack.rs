//! The connector test stack: Kafka broker, ClickHouse, a deterministic order stream on Kafka,
//! its oracle, and readers for what the sinks committed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_runtime::clickhouse::client::Client;

use super::{START_MS, parse_ts};

/// The broker to test against: `KAFKA_BOOTSTRAP` (any real cluster) or the local one from
/// `tests/kafka.sh`; `None` after one SKIPPED line unless `WEIR_REQUIRE_KAFKA=1`.
pub fn kafka(test: &str) -> Option<String> {
    weir_testkit::broker_or_skip(test)
}

/// The local ClickHouse HTTP URL from `tests/clickhouse.sh`, like [`kafka`].
pub fn clickhouse(test: &str) -> Option<String> {
    weir_testkit::needs_env(
        test,
        "WEIR_CLICKHOUSE_URL",
        "WEIR_REQUIRE_CLICKHOUSE",
        "WEIR_CLICKHOUSE_URL is not set (run tests/clickhouse.sh start)",
    )
}

/// The local PostgreSQL (`tests/postgres.sh start`): its URL, without the password, which is
/// in `WEIR_POSTGRES_PASSWORD`.
pub fn postgres(test: &str) -> Option<String> {
    weir_testkit::needs_env(
        test,
        "WEIR_POSTGRES_URL",
        "WEIR_REQUIRE_POSTGRES",
        "WEIR_POSTGRES_URL is not set (run tests/postgres.sh start; eval \"$(tests/postgres.sh env)\")",
    )
}

/// A client of the test database, over TLS with the test CA (tests/tls.sh).
pub async fn pg(url: &str) -> tokio_postgres::Client {
    let spec: weir_crds::PostgresSinkSpec = serde_json::from_value(serde_json::json!({
        "url": url, "table": "unused", "passwordEnv": "WEIR_POSTGRES_PASSWORD",
        "tls": {"caPemEnv": "WEIR_TEST_CA"}
    }))
    .unwrap();
    let ca = pg_ca();
    let endpoint = weir_runtime::postgres::client::Endpoint::new(&spec, |v| {
        if v == "WEIR_TEST_CA" {
            Some(ca.clone())
        } else {
            std::env::var(v).ok()
        }
    })
    .unwrap();
    endpoint.connect().await.unwrap()
}

/// The test CA's PEM text, which the PostgreSQL server's certificate is signed by.
pub fn pg_ca() -> String {
    std::fs::read_to_string(std::path::Path::new(&tls_dir()).join("ca.pem")).unwrap()
}

/// The shared stack's certificates (`tests/tls.sh dir`), which every test server presents.
fn tls_dir() -> String {
    std::env::var("WEIR_TLS_DIR").unwrap_or_else(|_| stack_script("tls.sh", "dir", &[]))
}

/// Create the two reference tables in PostgreSQL: one without a key for transactional mode
/// (a row written twice shows up twice) and one keyed on the result for upsert mode.
pub async fn create_pg_sales_tables(url: &str, tx: &str, up: &str) {
    let c = pg(url).await;
    c.batch_execute(&format!(
        "CREATE TABLE {tx} (store_id text NOT NULL, window_start timestamp NOT NULL, \
         window_end timestamp NOT NULL, orders bigint NOT NULL, sales bigint NOT NULL); \
         CREATE TABLE {up} (store_id text NOT NULL, window_start timestamp NOT NULL, \
         window_end timestamp NOT NULL, orders bigint NOT NULL, sales bigint NOT NULL, \
         PRIMARY KEY (store_id, window_start))"
    ))
    .await
    .unwrap();
}

/// Rows of a PostgreSQL sales table; duplicates are listed, not merged.
pub async fn pg_sales(url: &str, table: &str) -> (Sales, Vec<String>) {
    let c = pg(url).await;
    let rows = c
        .query(
            &format!(
                "SELECT store_id, (extract(epoch FROM window_start) * 1000)::bigint, orders, sales FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    let mut out = Sales::new();
    let mut dups = Vec::new();
    for r in rows {
        let key = (r.get::<_, String>(0), r.get::<_, i64>(1));
        if out.insert(key.clone(), (r.get(2), r.get(3))).is_some() {
            dups.push(format!("{key:?}"));
        }
    }
    (out, dups)
}

/// Prepared transactions left on the server whose id starts with `prefix`.
pub async fn pg_prepared(url: &str, prefix: &str) -> Vec<String> {
    let c = pg(url).await;
    c.query(
        "SELECT gid FROM pg_prepared_xacts WHERE left(gid, length($1)) = $1",
        &[&prefix],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The local MariaDB (`tests/mysql.sh start`): its URL, without the password, which is in
/// `WEIR_MYSQL_PASSWORD`.
pub fn mysql(test: &str) -> Option<String> {
    weir_testkit::needs_env(
        test,
        "WEIR_MYSQL_URL",
        "WEIR_REQUIRE_MYSQL",
        "WEIR_MYSQL_URL is not set (run tests/mysql.sh start; eval \"$(tests/mysql.sh env)\")",
    )
}

/// A connection to the test MySQL database, over TLS with the test CA (tests/tls.sh).
pub async fn my(url: &str) -> mysql_async::Conn {
    let spec: weir_crds::MysqlSinkSpec = serde_json::from_value(serde_json::json!({
        "url": format!("{url}?sslmode=require"), "table": "unused", "passwordEnv": "WEIR_MYSQL_PASSWORD",
        "tls": {"caPemEnv": "WEIR_TEST_MYSQL_CA"}
    }))
    .unwrap();
    let ca = pg_ca();
    let endpoint = weir_runtime::mysql::client::Endpoint::new(&spec, |v| {
        if v == "WEIR_TEST_MYSQL_CA" {
            Some(ca.clone())
        } else {
            std::env::var(v).ok()
        }
    })
    .unwrap();
    endpoint.connect().await.unwrap()
}

/// Run `sql` (statements separated by `;`) on the test MySQL database.
pub async fn my_run(url: &str, sql: &str) {
    use mysql_async::prelude::Queryable;
    let mut c = my(url).await;
    c.query_drop(sql).await.unwrap();
    c.disconnect().await.unwrap();
}

/// Create the two reference tables in MySQL, as [`create_pg_sales_tables`] does.
pub async fn create_my_sales_tables(url: &str, tx: &str, up: &str) {
    my_run(
        url,
        &format!(
            "CREATE TABLE {tx} (store_id varchar(64) NOT NULL, window_start datetime(3) NOT NULL, \
             window_end datetime(3) NOT NULL, orders bigint NOT NULL, sales bigint NOT NULL) ENGINE = InnoDB; \
             CREATE TABLE {up} (store_id varchar(64) NOT NULL, window_start datetime(3) NOT NULL, \
             window_end datetime(3) NOT NULL, orders bigint NOT NULL, sales bigint NOT NULL, \
             PRIMARY KEY (store_id, window_start)) ENGINE = InnoDB"
        ),
    )
    .await;
}

/// Rows of a MySQL sales table; duplicates are listed, not merged.
pub async fn my_sales(url: &str, table: &str) -> (Sales, Vec<String>) {
    use mysql_async::prelude::Queryable;
    let mut c = my(url).await;
    // The session is UTC (the sink's too), so the wall time is the instant.
    let rows: Vec<(String, i64, i64, i64)> = c
        .query(format!(
            "SELECT store_id, CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', window_start) DIV 1000 AS SIGNED), orders, sales FROM {table}"
        ))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    let mut out = Sales::new();
    let mut dups = Vec::new();
    for (store, start, orders, sales) in rows {
        let key = (store, start);
        if out.insert(key.clone(), (orders, sales)).is_some() {
            dups.push(format!("{key:?}"));
        }
    }
    (out, dups)
}

/// Prepared XA transactions left on the server whose gtrid is `gtrid` (their bquals).
pub async fn my_prepared(url: &str, gtrid: &str) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let mut c = my(url).await;
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = c.query("XA RECOVER").await.unwrap();
    c.disconnect().await.unwrap();
    rows.into_iter()
        .filter_map(|(_, g, _, data)| {
            let g = usize::try_from(g).ok()?;
            (data.get(..g)? == gtrid.as_bytes())
                .then(|| String::from_utf8_lossy(&data[g..]).into_owned())
        })
        .collect()
}

/// Whether the broker is the local one (its restart script applies, and its read_committed
/// consumers are known to be wrong).
pub fn local_broker() -> bool {
    std::env::var("KAFKA_BOOTSTRAP").map_or(true, |v| v.is_empty())
}

/// Create `topic` with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let r = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for x in r {
        x.unwrap();
    }
}

/// One order of the deterministic stream.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: u64,
    pub partition: i32,
    pub store: String,
    pub amount: i64,
    pub ts: i64,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Order `i` of a stream: a pure function of `i`, so the oracle needs no engine. Event time
/// moves 100 ms per order with up to 2 s of disorder (inside the job's 5 s bound).
pub fn order(i: u64, partitions: i32, stores: u64) -> Order {
    Order {
        id: i,
        partition: (i % partitions as u64) as i32,
        store: format!("store-{}", mix(i ^ 0x51) % stores),
        amount: (mix(i ^ 0xa3) % 1000) as i64 - 100,
        ts: START_MS + i as i64 * 100 - (mix(i ^ 0x7e) % 2000) as i64,
    }
}

pub fn order_json(o: &Order) -> String {
    serde_json::json!({
        "order_id": o.id,
        "store_id": o.store,
        "amount": o.amount,
        "ts": o.ts,
    })
    .to_string()
}

/// A producer for test input (plain, idempotent: input is never transactional).
pub fn input_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Produce orders `range` and wait for every delivery.
pub async fn produce_orders(
    p: &FutureProducer,
    topic: &str,
    range: std::ops::Range<u64>,
    partitions: i32,
    stores: u64,
) {
    let mut pending = Vec::new();
    for i in range {
        let o = order(i, partitions, stores);
        let payload = order_json(&o);
        let key = o.id.to_string();
        let f = p
            .send_result(
                FutureRecord::to(topic)
                    .partition(o.partition)
                    .key(&key)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        pending.push(f);
        if pending.len() >= 5000 {
            for f in pending.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
}

/// One record per partition far past the last order, with `amount = 0` so the filter drops
/// it: it only moves every partition's watermark past the last window.
pub async fn produce_end_markers(p: &FutureProducer, topic: &str, count: u64, partitions: i32) {
    for part in 0..partitions {
        produce_end_marker(p, topic, count, part).await;
    }
}

/// The end marker of [`produce_end_markers`] on one partition only.
pub async fn produce_end_marker(p: &FutureProducer, topic: &str, count: u64, part: i32) {
    let payload = serde_json::json!({
        "order_id": count + part as u64,
        "store_id": "end",
        "amount": 0,
        "ts": START_MS + count as i64 * 100 + 600_000,
    })
    .to_string();
    p.send(
        FutureRecord::<(), _>::to(topic)
            .partition(part)
            .payload(&payload),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
}

/// Expected rows: (store, window_start ms) -> (orders, sales), 1-minute tumbling windows.
pub type Sales = BTreeMap<(String, i64), (i64, i64)>;

pub fn oracle(count: u64, partitions: i32, stores: u64) -> Sales {
    let mut out = Sales::new();
    for i in 0..count {
        let o = order(i, partitions, stores);
        if o.amount <= 0 {
            continue;
        }
        let w = o.ts - o.ts.rem_euclid(60_000);
        let e = out.entry((o.store, w)).or_insert((0, 0));
        e.0 += 1;
        e.1 += o.amount;
    }
    out
}

/// The source schema of every orders job (YAML at the indentation of `source:`'s fields).
pub const ORDERS_SCHEMA: &str = "  schema:
    - {name: order_id, type: int64}
    - {name: store_id, type: string}
    - {name: amount, type: int64}
    - {name: ts, type: timestamp}
";

/// The job: Kafka -> filter -> 1-minute tumbling count/sum per store -> the given sinks.
#[allow(clippy::too_many_arguments)] // a test builder: named at every call site
pub fn sales_job(
    name: &str,
    bootstrap: &str,
    topic: &str,
    storage: &str,
    s3_endpoint: &str,
    parallelism: u32,
    interval_ms: u64,
    bounded: bool,
    sinks: &str,
) -> String {
    format!(
        "name: {name}
parallelism: {parallelism}
checkpoint:
  interval: {interval_ms}ms
  timeout: 30s
  storage: \"{storage}\"
  retained: 2
  s3: {{endpoint: \"{s3_endpoint}\", region: us-east-1, pathStyle: true}}
source:
  kafka:
    bootstrapServers: \"{bootstrap}\"
    topic: {topic}
    bounded: {bounded}
    partitionDiscovery: 1s
    # Small fetches: the local broker (nisshi on sqlite) fills a fetch up to its byte limit
    # with queries record by record, so a default fetch (up to 50 MB) over a backlog of tens
    # of thousands of orders outlasted the client's 60 s request timeout, was sent again,
    # and the job never caught up. (librdkafka raises fetch.max.bytes to message.max.bytes.)
    properties: {{fetch.max.bytes: \"262144\", message.max.bytes: \"65536\", max.partition.fetch.bytes: \"65536\"}}
{ORDERS_SCHEMA}  eventTime: {{field: ts, maxOutOfOrderness: 5s}}
transforms:
  - filter: amount > 0
  - window: {{tumbling: 1m, keyBy: [store_id], aggregates: {{orders: count(*), sales: sum(amount)}}}}
sinks:
{sinks}"
    )
}

/// ClickHouse client for test queries.
pub fn ch(url: &str) -> Client {
    Client::new(url, "default", None, &Default::default()).unwrap()
}

pub async fn ch_exec(url: &str, sql: &str) -> String {
    ch(url)
        .execute(sql, &[], None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", e.message))
}

/// Create the two reference tables: a Replicated one for write-ahead mode (block
/// deduplication) and a ReplacingMergeTree keyed on the result key.
pub async fn create_sales_tables(url: &str, wa: &str, rmt: &str) {
    ch_exec(
        url,
        &format!(
            "CREATE TABLE {wa} (store_id String, window_start DateTime, window_end DateTime, orders Int64, sales Int64) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{wa}', '{{replica}}') ORDER BY (window_start, store_id)"
        ),
    )
    .await;
    ch_exec(
        url,
        &format!(
            "CREATE TABLE {rmt} (store_id String, window_start DateTime, window_end DateTime, orders Int64, sales Int64, v UInt64) \
             ENGINE = ReplacingMergeTree(v) ORDER BY (window_start, store_id)"
        ),
    )
    .await;
}

/// Rows of a sales table; duplicates are listed, not merged.
pub async fn ch_sales(url: &str, table: &str, fin: bool) -> (Sales, Vec<String>) {
    let text = ch_exec(
        url,
        &format!(
            "SELECT store_id, toUInt32(window_start), orders, sales FROM {table} {} FORMAT TabSeparated",
            if fin { "FINAL" } else { "" }
        ),
    )
    .await;
    let mut rows = Sales::new();
    let mut dups = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let key = (f[0].to_string(), f[1].parse::<i64>().unwrap() * 1000);
        if rows
            .insert(key.clone(), (f[2].parse().unwrap(), f[3].parse().unwrap()))
            .is_some()
        {
            dups.push(format!("{key:?}"));
        }
    }
    (rows, dups)
}

/// Committed records of the output topic as sales rows, per the read_committed verifier.
pub async fn kafka_sales(bootstrap: &str, topic: &str) -> (Sales, Vec<String>, usize) {
    let report = weir_testkit::read_topic(bootstrap, topic).await.unwrap();
    let mut rows = Sales::new();
    let mut dups = Vec::new();
    for r in &report.committed {
        let v: serde_json::Value =
            serde_json::from_slice(r.value.as_deref().unwrap_or_default()).unwrap();
        let key = (
            v["store_id"].as_str().unwrap().to_string(),
            parse_ts(v["window_start"].as_str().unwrap()),
        );
        let val = (v["orders"].as_i64().unwrap(), v["sales"].as_i64().unwrap());
        if rows.insert(key.clone(), val).is_some() {
            dups.push(format!("{key:?}"));
        }
    }
    (rows, dups, report.open)
}

/// Committed rows of a file sink directory: windows, or (for the late side output) orders.
pub fn file_rows(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn file_sales(dir: &std::path::Path) -> (Sales, Vec<String>) {
    let mut rows = Sales::new();
    let mut dups = Vec::new();
    for v in file_rows(dir) {
        let key = (
            v["store_id"].as_str().unwrap().to_string(),
            super::parse_ts(v["window_start"].as_str().unwrap()),
        );
        let val = (v["orders"].as_i64().unwrap(), v["sales"].as_i64().unwrap());
        if rows.insert(key.clone(), val).is_some() {
            dups.push(format!("{key:?}"));
        }
    }
    (rows, dups)
}

/// Panic with the first differences between `got` and `expected`.
pub fn assert_sales(what: &str, expected: &Sales, got: &Sales, dups: &[String]) {
    super::assert_same_rows(what, expected, got, dups);
}

/// Run a stack script (`tests/kafka.sh restart`, ...), from the repository root; its stdout.
pub fn stack_script(script: &str, arg: &str, env: &[(&str, String)]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .arg(root.join("tests").join(script))
        .arg(arg)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "tests/{script} {arg} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server of one test's own, started by its stack script (`tests/<script>`) on ports of its
/// own with its state apart from the shared server's, and stopped when dropped. A test that
/// stops, crashes or restarts a server needs one: the shared servers serve every other suite,
/// and `tests/run-all.sh` runs two lanes of suites at once. It presents the shared test CA's
/// certificate.
///
/// Its state lives in one directory per script and port under the cache ([`own_dir`]; as
/// root, PostgreSQL's and MariaDB's data go to the scripts' per-port directories under
/// `/var/tmp`), the same in every run: a test binary killed outright never drops its servers,
/// and the next run finds their pid files there, stops them and starts afresh, where a
/// temporary directory would have lost them and left the port taken.
pub struct OwnServer {
    script: &'static str,
    env: Vec<(&'static str, String)>,
    /// What the script's `start` printed: the address or URL clients use.
    pub address: String,
}

impl OwnServer {
    fn start(script: &'static str, port: u16, given: Vec<(&'static str, String)>) -> Self {
        let dir = own_dir(script, port);
        // The scripts' other settings, emptied (each then takes its default) so that none
        // set in this process's environment points the server at the shared one's data.
        let mut env: Vec<(&'static str, String)> = [
            "WEIR_POSTGRES_DIR",
            "WEIR_POSTGRES_MAX_PREPARED",
            "WEIR_MYSQL_DIR",
            "WEIR_KAFKA_NAME",
            "WEIR_KAFKA_ADVERTISED",
            "WEIR_KAFKA_AUTH",
        ]
        .into_iter()
        .map(|name| (name, String::new()))
        .collect();
        env.extend(given);
        env.push(("WEIR_STACK_DIR", dir.display().to_string()));
        env.push(("WEIR_TLS_DIR", tls_dir()));
        // What an earlier run left running here (it was killed before it could stop it),
        // then its state here (as root, PostgreSQL's and MariaDB's data directories under
        // `/var/tmp` stay, as they always have: tests use tables of names of their own).
        let _ = std::panic::catch_unwind(|| stack_script(script, "stop", &env));
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                panic!("removing {}: {e}", dir.display())
            }
            _ => {}
        }
        std::fs::create_dir_all(&dir).unwrap();
        let address = stack_script(script, "start", &env);
        Self {
            script,
            env,
            address,
        }
    }

    /// A Kafka broker on persistent (sqlite) storage, so that a restart keeps its log.
    pub fn kafka(port: u16) -> Self {
        let env = vec![
            ("WEIR_KAFKA_PORT", port.to_string()),
            ("WEIR_KAFKA_STORAGE", "sqlite".to_string()),
        ];
        Self::start("kafka.sh", port, env)
    }

    /// PostgreSQL on `port`; the address is its URL, and the password is the same as the
    /// shared server's (`WEIR_POSTGRES_PASSWORD`).
    pub fn postgres(port: u16) -> Self {
        Self::start(
            "postgres.sh",
            port,
            vec![("WEIR_POSTGRES_PORT", port.to_string())],
        )
    }

    /// PostgreSQL on `port` with `max_prepared_transactions` at `max_prepared` (0 makes a
    /// server the transactional sink must refuse).
    pub fn postgres_with_max_prepared(port: u16, max_prepared: u32) -> Self {
        let env = vec![
            ("WEIR_POSTGRES_PORT", port.to_string()),
            ("WEIR_POSTGRES_MAX_PREPARED", max_prepared.to_string()),
        ];
        Self::start("postgres.sh", port, env)
    }

    /// MariaDB on `port`; the address is its URL, and the password is the same as the
    /// shared server's (`WEIR_MYSQL_PASSWORD`).
    pub fn mysql(port: u16) -> Self {
        Self::start(
            "mysql.sh",
            port,
            vec![("WEIR_MYSQL_PORT", port.to_string())],
        )
    }

    /// ClickHouse with a ZooKeeper of its own, on five ports from `first` (HTTP first).
    pub fn clickhouse(first: u16) -> Self {
        let env = [
            "WEIR_CLICKHOUSE_HTTP_PORT",
            "WEIR_CLICKHOUSE_TCP_PORT",
            "WEIR_CLICKHOUSE_INTERSERVER_PORT",
            "WEIR_CLICKHOUSE_HTTPS_PORT",
            "WEIR_ZOOKEEPER_PORT",
        ]
        .into_iter()
        .zip(first..)
        .map(|(name, port)| (name, port.to_string()))
        .collect();
        Self::start("clickhouse.sh", first, env)
    }

    /// Crash or stop the server and start it again, on the same state.
    pub fn restart(&self) {
        stack_script(self.script, "restart", &self.env);
    }

    pub fn stop(&self) {
        stack_script(self.script, "stop", &self.env);
    }

    /// Start again after [`OwnServer::stop`], on the same state.
    pub fn resume(&self) {
        stack_script(self.script, "start", &self.env);
    }
}

/// Where an own server of `script` on `port` keeps its state: under the cache the scripts
/// use (`WEIR_CACHE`, else `~/.cache/weir`), so that a later run finds it.
fn own_dir(script: &str, port: u16) -> std::path::PathBuf {
    let cache = std::env::var_os("WEIR_CACHE")
        .filter(|c| !c.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/weir")
        });
    cache
        .join("own-servers")
        .join(format!("{}-{port}", script.trim_end_matches(".sh")))
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| stack_script(self.script, "stop", &self.env));
    }
}

/// Offsets the consumer group `group` has committed for `topic`.
pub fn group_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}
