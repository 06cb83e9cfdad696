//! Kafka and ClickHouse connectors against the real stack (`tests/kafka.sh`,
//! `tests/clickhouse.sh`, `tests/s3.sh`): the reference scenario end to end, commit-phase
//! recovery, a zombie incarnation, and bad input. Output topics are checked with the
//! read_committed verifier (`weir-testkit`), because the local broker's own read_committed
//! consumers see aborted records (its defect; see DEVELOPERS.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::stack::{
    assert_sales, ch_exec, ch_sales, clickhouse, create_sales_tables, create_topic, input_producer,
    kafka, kafka_sales, oracle, produce_end_marker, produce_end_markers, produce_orders, sales_job,
};
use common::{
    fresh_bucket, log_tail, run_until_crash, s3_endpoint, spawn_runtime, stop_cleanly, unique,
    wait_exit_within,
};

const PARTITIONS: i32 = 3;
const STORES: u64 = 5;

struct Stack {
    kafka: String,
    ch: String,
    s3: String,
}

fn stack(test: &str) -> Option<Stack> {
    Some(Stack {
        s3: s3_endpoint(test)?,
        kafka: kafka(test)?,
        ch: clickhouse(test)?,
    })
}

/// Everything a scenario needs: input topic with orders, output topic, both tables, bucket.
struct Scenario {
    name: String,
    input: String,
    output: String,
    wa: String,
    rmt: String,
    storage: String,
    count: u64,
}

impl Scenario {
    async fn new(st: &Stack, test: &str, count: u64) -> Self {
        let u = unique();
        let s = Self {
            name: format!("{test}-{u}").replace('_', "-"),
            input: format!("orders-{u}"),
            output: format!("sales-{u}"),
            wa: format!("sales_wa_{u}"),
            rmt: format!("sales_rmt_{u}"),
            storage: format!("s3://{}/chk", fresh_bucket(&st.s3, test).await),
            count,
        };
        create_topic(&st.kafka, &s.input, PARTITIONS).await;
        create_topic(&st.kafka, &s.output, PARTITIONS).await;
        create_sales_tables(&st.ch, &s.wa, &s.rmt).await;
        s
    }

    fn sinks(&self, st: &Stack) -> String {
        format!(
            "  - clickhouse: {{url: \"{ch}\", table: {wa}, mode: writeAhead}}
  - clickhouse: {{url: \"{ch}\", table: {rmt}, mode: replacing, versionColumn: v}}
  - kafka: {{bootstrapServers: \"{k}\", topic: {out}, transactionalIdPrefix: {name}, keyBy: [store_id]}}
",
            ch = st.ch,
            wa = self.wa,
            rmt = self.rmt,
            k = st.kafka,
            out = self.output,
            name = self.name,
        )
    }

    fn write_job(
        &self,
        st: &Stack,
        dir: &Path,
        parallelism: u32,
        interval_ms: u64,
        bounded: bool,
    ) -> std::path::PathBuf {
        let yaml = sales_job(
            &self.name,
            &st.kafka,
            &self.input,
            &self.storage,
            &st.s3,
            parallelism,
            interval_ms,
            bounded,
            &self.sinks(st),
        );
        let p = dir.join(format!("{}.yaml", self.name));
        std::fs::write(&p, yaml).unwrap();
        p
    }

    async fn produce_all(&self, st: &Stack) {
        let p = input_producer(&st.kafka);
        produce_orders(&p, &self.input, 0..self.count, PARTITIONS, STORES).await;
        produce_end_markers(&p, &self.input, self.count, PARTITIONS).await;
    }

    /// ClickHouse (raw for write-ahead, FINAL for replacing) and the committed output topic
    /// equal the oracle; no transaction is left open.
    async fn assert_exact(&self, st: &Stack, context: &str) {
        let expected = oracle(self.count, PARTITIONS, STORES);
        assert!(
            expected.len() > 20,
            "the oracle is too small to prove anything"
        );
        let (wa, wa_dups) = ch_sales(&st.ch, &self.wa, false).await;
        assert_sales(
            &format!("{context}: clickhouse write-ahead (raw rows)"),
            &expected,
            &wa,
            &wa_dups,
        );
        let (rmt, rmt_dups) = ch_sales(&st.ch, &self.rmt, true).await;
        assert_sales(
            &format!("{context}: clickhouse ReplacingMergeTree FINAL"),
            &expected,
            &rmt,
            &rmt_dups,
        );
        let (k, k_dups, open) = kafka_sales(&st.kafka, &self.output).await;
        assert_sales(
            &format!("{context}: committed Kafka records"),
            &expected,
            &k,
            &k_dups,
        );
        assert_eq!(
            open, 0,
            "{context}: transactions left open on the output topic"
        );
    }
}

#[test]
fn reference_scenario_kafka_to_clickhouse_and_kafka() {
    let Some(st) = stack("reference_scenario") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sc = rt.block_on(Scenario::new(&st, "reference", 6_000));
    rt.block_on(sc.produce_all(&st));
    let tmp = tempfile::tempdir().unwrap();
    let job = sc.write_job(&st, tmp.path(), 2, 200, true);
    let log = tmp.path().join("runtime.log");
    let mut child = spawn_runtime(&job, &[], &[], &log);
    let status =
        wait_exit_within(&mut child, Duration::from_secs(120)).expect("bounded job did not finish");
    assert!(
        status.success(),
        "job failed: {status:?}\n{}",
        log_tail(&log)
    );
    rt.block_on(sc.assert_exact(&st, "bounded run"));

    // Lag tools see progress: the group's committed offsets reach the end of each partition.
    let report = rt
        .block_on(weir_testkit::read_topic(&st.kafka, &sc.input))
        .unwrap();
    let committed = common::stack::group_offsets(
        &st.kafka,
        &format!("weir-{}", sc.name),
        &sc.input,
        PARTITIONS,
    );
    for p in &report.partitions {
        assert_eq!(
            committed.get(&p.partition).copied(),
            Some(p.high_watermark),
            "group offset of partition {} after the final checkpoint",
            p.partition
        );
    }
}

/// End of input is a watermark: a bounded job with no record past its last window still
/// emits and commits every window, exactly once, and finishes.
#[test]
fn bounded_kafka_input_emits_every_window_at_its_end() {
    let Some(st) = stack("bounded_end_of_input") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sc = rt.block_on(Scenario::new(&st, "bounded-end", 3_000));
    let p = input_producer(&st.kafka);
    // No end markers: nothing moves the watermark past the last window but the end itself.
    // The last order of each partition goes alone, after the others are delivered: nisshi
    // 0.7.0-pre.2 answers ListOffsets(latest) with the newest batch's first offset + 1, so a
    // partition must end in a one-record batch for a bounded source to see its real end.
    let last = sc.count - PARTITIONS as u64;
    rt.block_on(produce_orders(&p, &sc.input, 0..last, PARTITIONS, STORES));
    for i in last..sc.count {
        rt.block_on(produce_orders(&p, &sc.input, i..i + 1, PARTITIONS, STORES));
    }
    let tmp = tempfile::tempdir().unwrap();
    let job = sc.write_job(&st, tmp.path(), 2, 200, true);
    let log = tmp.path().join("runtime.log");
    let mut child = spawn_runtime(&job, &[], &[], &log);
    let status =
        wait_exit_within(&mut child, Duration::from_secs(120)).expect("bounded job did not finish");
    assert!(
        status.success(),
        "job failed: {status:?}\n{}",
        log_tail(&log)
    );
    rt.block_on(sc.assert_exact(&st, "bounded run without end markers"));
}

/// A bounded scenario run killed right after a checkpoint's `_metadata` is written, before
/// its sinks commit. A long interval: checkpoint 2 is the first to carry output (windows close
/// as the watermark passes them). Returns the scenario, its directory, job file and log.
fn crashed_after_metadata(
    rt: &tokio::runtime::Runtime,
    st: &Stack,
    test: &str,
) -> (
    Scenario,
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let sc = rt.block_on(Scenario::new(st, test, 6_000));
    rt.block_on(sc.produce_all(st));
    let tmp = tempfile::tempdir().unwrap();
    let job = sc.write_job(st, tmp.path(), 2, 300, true);
    let log = tmp.path().join("runtime.log");
    run_until_crash(
        &job,
        &[("WEIR_CRASH_AT", "after-metadata:1")],
        Duration::from_secs(60),
        &log,
    );
    (sc, tmp, job, log)
}

#[test]
fn commit_phase_recovery_commits_the_pending_transaction_exactly_once() {
    let Some(st) = stack("commit_phase_recovery") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sc, _tmp, job, log) = crashed_after_metadata(&rt, &st, "recovery");

    // The checkpoint is complete, its Kafka transactions pre-committed but not committed.
    let before = rt
        .block_on(weir_testkit::read_topic(&st.kafka, &sc.output))
        .unwrap();
    let pending: usize = before.open;
    assert!(
        pending > 0,
        "the crash should leave the checkpoint's Kafka transactions pre-committed and open"
    );
    println!(
        "after the crash: {} committed, {} records in open transactions",
        before.committed.len(),
        pending
    );

    let mut child = spawn_runtime(&job, &[], &[], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(120))
        .expect("restored run did not finish");
    assert!(
        status.success(),
        "restored run failed: {status:?}\n{}",
        log_tail(&log)
    );
    rt.block_on(sc.assert_exact(&st, "after commit-phase recovery"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("committed transaction recorded in the restored checkpoint"),
        "the restore did not commit the pending transaction\n{}",
        log_tail(&log)
    );
    let after = rt
        .block_on(weir_testkit::read_topic(&st.kafka, &sc.output))
        .unwrap();
    assert!(
        after.open_producers.is_empty(),
        "lingering transactions: {:?}",
        after.open_transactions
    );
}

/// The broker aborts a transaction the restored checkpoint promised (its transaction timeout
/// ran out while the job was down, or another producer took the id): recovery reads the ABORT
/// marker and refuses to start, naming the transaction and what to do, instead of taking
/// EndTxn's answer ("fenced", or the local broker's plain success) as a commit and going on
/// without the records.
#[test]
fn an_aborted_transaction_of_the_restored_checkpoint_stops_the_start() {
    use weir_runtime::checkpoint::state::Committable;
    use weir_runtime::checkpoint::{fencing, layout::Layout, restore};
    use weir_runtime::kafka::wire::{Cluster, end_txn};
    let Some(st) = stack("aborted_transaction") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sc, _tmp, job, log) = crashed_after_metadata(&rt, &st, "aborted");

    // What the broker's transaction timeout does: abort the transactions the completed
    // checkpoint recorded, with the producer ids and epochs it recorded.
    let aborted = rt.block_on(async {
        let spec = weir_crds::S3Spec {
            endpoint: Some(st.s3.clone()),
            region: Some("us-east-1".into()),
            path_style: Some(true),
            ca_pem_env: None,
        };
        let storage = weir_runtime::storage::Storage::open(&sc.storage, &spec)
            .await
            .unwrap();
        let layout = Layout::new("local", &sc.name);
        let job_id = fencing::latest(&storage, &layout)
            .await
            .unwrap()
            .expect("a generation")
            .job_id;
        let chk = restore::newest(&storage, &layout, &job_id, false)
            .await
            .unwrap()
            .expect("a completed checkpoint");
        let mut aborted = Vec::new();
        for c in chk.metadata.committables {
            if let Committable::KafkaTransaction(t) = c.committable
                && t.records > 0
            {
                assert!(
                    !t.first_offsets.is_empty(),
                    "the checkpoint does not record where {} wrote",
                    t.transactional_id
                );
                end_txn(
                    &Cluster::plaintext(&st.kafka),
                    &t.transactional_id,
                    t.producer_id,
                    t.producer_epoch,
                    false,
                )
                .await
                .unwrap();
                aborted.push((t.transactional_id, t.checkpoint));
            }
        }
        aborted
    });
    assert!(
        !aborted.is_empty(),
        "the crash should leave transactions with records to abort"
    );
    let report = rt
        .block_on(weir_testkit::read_topic_settled(&st.kafka, &sc.output, 0))
        .unwrap();
    assert!(
        report.aborted > 0 && report.open == 0,
        "the broker did not abort them: {report:?}"
    );

    let (id, checkpoint) = &aborted[0];
    let want = [
        "was aborted, not committed",
        "ABORT marker",
        id.as_str(),
        &format!("of checkpoint {checkpoint} "),
        "spec.initialSavepointPath",
    ];
    common::refused_fast("a restore over an aborted transaction", &log, &want, || {
        let mut child = spawn_runtime(&job, &[], &[], &log);
        wait_exit_within(&mut child, Duration::from_secs(60)).expect("the restore hung")
    });
}

#[test]
fn zombie_incarnation_never_becomes_visible() {
    let Some(st) = stack("zombie") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count = 30_000;
    let sc = rt.block_on(Scenario::new(&st, "zombie", count));
    let tmp = tempfile::tempdir().unwrap();
    let job = sc.write_job(&st, tmp.path(), 2, 200, false);
    let log_a = tmp.path().join("a.log");
    let log_b = tmp.path().join("b.log");
    let producer = input_producer(&st.kafka);
    // Input arrives while both incarnations run.
    rt.block_on(produce_orders(
        &producer,
        &sc.input,
        0..count / 3,
        PARTITIONS,
        STORES,
    ));
    let mut a = spawn_runtime(&job, &[], &[], &log_a);
    // B starts while A still runs, once A has a checkpoint: B claims the next storage
    // generation, commits what A's last checkpoint promised, and fences A's transactional ids.
    common::wait_for_line(&log_a, "checkpoint completed", Duration::from_secs(60));
    let mut b = spawn_runtime(&job, &[], &[], &log_b);
    rt.block_on(produce_orders(
        &producer,
        &sc.input,
        count / 3..count,
        PARTITIONS,
        STORES,
    ));
    rt.block_on(produce_end_markers(&producer, &sc.input, count, PARTITIONS));
    let a_status = wait_exit_within(&mut a, Duration::from_secs(60));
    let a_text = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        matches!(a_status, Some(s) if !s.success()),
        "the old incarnation should stop once fenced: {a_status:?}\n{}",
        &a_text[a_text.len().saturating_sub(3000)..]
    );
    assert!(
        a_text.contains("fenced") || a_text.contains("Fenced") || a_text.contains("fencing"),
        "the old incarnation stopped for another reason\n{}",
        &a_text[a_text.len().saturating_sub(3000)..]
    );
    // Wait until B has produced every window, then stop it with a final checkpoint.
    let expected = oracle(count, PARTITIONS, STORES);
    let t = Instant::now();
    loop {
        let (got, _) = rt.block_on(ch_sales(&st.ch, &sc.wa, false));
        if got.len() >= expected.len() || t.elapsed() > Duration::from_secs(90) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    stop_cleanly(&mut b, "TERM", &log_b, "B");
    rt.block_on(sc.assert_exact(&st, "after a zombie incarnation"));
}

/// A restored source whose splits have no more input still holds the watermark its restored
/// positions imply: the windows that only waited for another partition close once that
/// partition's records arrive, without new input on the restored ones.
#[test]
fn restored_idle_partitions_do_not_hold_windows_back() {
    let Some(st) = stack("restored_idle") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count = 6_000;
    let sc = rt.block_on(Scenario::new(&st, "restored-idle", count));
    let tmp = tempfile::tempdir().unwrap();
    let job = sc.write_job(&st, tmp.path(), 2, 200, false);
    let producer = input_producer(&st.kafka);
    rt.block_on(produce_orders(
        &producer,
        &sc.input,
        0..count,
        PARTITIONS,
        STORES,
    ));
    // Subtask 0 of 2 owns partitions 0 and 2: they end; partition 1 (subtask 1) stays open,
    // so the last window cannot close in the first incarnation.
    for part in [0, 2] {
        rt.block_on(produce_end_marker(&producer, &sc.input, count, part));
    }
    let expected = oracle(count, PARTITIONS, STORES);
    let wait_rows = |n: usize, limit: Duration| {
        let t = Instant::now();
        loop {
            let (got, _) = rt.block_on(ch_sales(&st.ch, &sc.wa, false));
            if got.len() >= n || t.elapsed() > limit {
                return got.len();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let log_a = tmp.path().join("a.log");
    let mut a = spawn_runtime(&job, &[], &[], &log_a);
    let before_last = expected.len() - STORES as usize;
    let seen = wait_rows(before_last, Duration::from_secs(60));
    assert_eq!(seen, before_last, "first incarnation\n{}", log_tail(&log_a));
    // Let subtask 0 read its end markers into a checkpoint, then stop with a final one.
    std::thread::sleep(Duration::from_secs(1));
    stop_cleanly(&mut a, "TERM", &log_a, "the first incarnation");
    let (after_a, _) = rt.block_on(ch_sales(&st.ch, &sc.wa, false));
    assert!(
        after_a.len() < expected.len(),
        "the last window closed before the restart; the test proves nothing"
    );

    let log_b = tmp.path().join("b.log");
    let mut b = spawn_runtime(&job, &[], &[], &log_b);
    rt.block_on(produce_end_marker(&producer, &sc.input, count, 1));
    let seen = wait_rows(expected.len(), Duration::from_secs(45));
    stop_cleanly(&mut b, "TERM", &log_b, "the restored incarnation");
    assert_eq!(
        seen,
        expected.len(),
        "after the restart the last window never closed\n{}",
        log_tail(&log_b)
    );
    rt.block_on(sc.assert_exact(&st, "after restoring idle partitions"));
}

/// With the broker down at start-up the runtime says what it waits for, with the address and
/// the attempt, within two seconds and on; when the broker comes up the job goes on and its
/// output equals the oracle.
#[test]
fn a_broker_down_at_start_up_is_waited_for_out_loud() {
    let Some(st) = stack("broker_down_at_start") else {
        return;
    };
    if !common::stack::local_broker() {
        eprintln!("SKIPPED broker_down_at_start: stops and starts a broker of its own");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let own = common::stack::OwnServer::kafka(9398);
    let u = unique();
    let (input, count) = (format!("orders-down-{u}"), 3_000);
    rt.block_on(async {
        create_topic(&own.address, &input, PARTITIONS).await;
        let p = input_producer(&own.address);
        produce_orders(&p, &input, 0..count, PARTITIONS, STORES).await;
        produce_end_markers(&p, &input, count, PARTITIONS).await;
    });
    own.stop();
    let out = dir.path().join("out");
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        sales_job(
            &format!("down-{u}"),
            &own.address,
            &input,
            &format!("file://{}/chk", dir.path().display()),
            &st.s3,
            1,
            300,
            false,
            &format!("  - file: {{path: \"{}\"}}\n", out.display()),
        ),
    )
    .unwrap();
    let log = dir.path().join("runtime.log");
    let started = Instant::now();
    let control = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut child = spawn_runtime(
        &job,
        &["--control-addr", &control],
        &[("WEIR_WAIT_TIMEOUT", "60s")],
        &log,
    );
    let waiting = format!("waiting for Kafka at {}", own.address);
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&waiting))
            .count()
    };
    while lines() == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = started.elapsed();
    println!(
        "first 'waiting' line {} ms after the start",
        first.as_millis()
    );
    assert!(lines() > 0, "no waiting line\n{}", log_tail(&log));
    // Readiness answers while start-up waits, and says for what.
    let (code, body) = rt.block_on(async {
        let r = reqwest::get(format!("http://{control}/readyz"))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&waiting), "/readyz says: {body}");
    // Logged on: two more attempts, however slowly the machine runs them.
    let t = Instant::now();
    while lines() < 3 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let later = lines();
    assert!(
        later >= 3,
        "the wait is not logged on: {later} lines\n{}",
        log_tail(&log)
    );
    assert!(
        first < Duration::from_millis(2_500),
        "first waiting line after {first:?}"
    );
    own.resume();
    let expected = oracle(count, PARTITIONS, STORES);
    let t = Instant::now();
    while common::stack::file_sales(&out).0.len() < expected.len()
        && t.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_cleanly(&mut child, "TERM", &log, "the job");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("reached after waiting"), "{}", log_tail(&log));
    let (got, dups) = common::stack::file_sales(&out);
    assert_sales("after the broker came up", &expected, &got, &dups);
}

fn run_to_exit(
    job_yaml: &str,
    dir: &Path,
    name: &str,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let job = dir.join(format!("{name}.yaml"));
    std::fs::write(&job, job_yaml).unwrap();
    let log = dir.join(format!("{name}.log"));
    // An unreachable system fails after a short wait (logged), naming it.
    let mut child = spawn_runtime(&job, &[], &[("WEIR_WAIT_TIMEOUT", "3s")], &log);
    let status = wait_exit_within(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{name}: did not exit within {limit:?}\n{}", log_tail(&log))
    });
    (status, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn bad_input_fails_fast_or_follows_the_decode_policy() {
    let Some(st) = stack("bad_input_connectors") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = rt.block_on(fresh_bucket(&st.s3, "badinput"));
    let u = unique();
    let input = format!("mixed-{u}");
    let dlq = format!("dlq-{u}");
    let out = format!("out-{u}");
    rt.block_on(create_topic(&st.kafka, &input, 1));
    rt.block_on(create_topic(&st.kafka, &dlq, 1));
    rt.block_on(create_topic(&st.kafka, &out, 1));
    let producer = input_producer(&st.kafka);
    let records: Vec<String> = (0..20)
        .map(|i| match i {
            5 => "{not json".to_string(),
            11 => r#"{"order_id": "eleven", "store_id": "s", "amount": 1, "ts": 0}"#.to_string(),
            _ => format!(
                r#"{{"order_id": {i}, "store_id": "s", "amount": {i}, "ts": {}}}"#,
                i * 1000
            ),
        })
        .collect();
    rt.block_on(async {
        for r in &records {
            producer
                .send(
                    rdkafka::producer::FutureRecord::<(), _>::to(&input)
                        .partition(0)
                        .payload(r),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    let job = |name: &str, source: &str, policy: &str, sinks: &str| {
        format!(
            "name: {name}-{u}
parallelism: 1
checkpoint: {{interval: 200ms, timeout: 30s, storage: \"s3://{bucket}/{name}\", s3: {{endpoint: \"{s3}\", region: us-east-1, pathStyle: true}}}}
source:
  kafka: {source}
  schema:
    - {{name: order_id, type: int64}}
    - {{name: store_id, type: string}}
    - {{name: amount, type: int64}}
    - {{name: ts, type: timestamp}}
{policy}sinks:
{sinks}",
            s3 = st.s3
        )
    };
    let good_source = format!(
        "{{bootstrapServers: \"{}\", topic: {input}, bounded: true}}",
        st.kafka
    );
    let out_sink = format!(
        "  - kafka: {{bootstrapServers: \"{}\", topic: {out}, transactionalIdPrefix: bad-{u}}}\n",
        st.kafka
    );

    // fail: the job stops and names the record.
    let (s, text) = run_to_exit(
        &job(
            "fail",
            &good_source,
            "  onDecodeError: {fail: {}}\n",
            &out_sink,
        ),
        tmp.path(),
        "fail",
        Duration::from_secs(60),
    );
    assert!(!s.success(), "policy fail must stop the job");
    assert!(
        text.contains(&format!("{input}/0@5")),
        "error should name topic/partition@offset:\n{text}"
    );

    // skip: the job finishes; 18 records through, 2 counted.
    let (s, text) = run_to_exit(
        &job(
            "skip",
            &good_source,
            "  onDecodeError: {skip: {}}\n",
            &out_sink,
        ),
        tmp.path(),
        "skip",
        Duration::from_secs(60),
    );
    assert!(s.success(), "skip run failed:\n{text}");
    assert_eq!(text.matches("undecodable record").count(), 2, "{text}");

    // dead-letter topic: raw bytes as the value, the error and the position as headers.
    let policy = format!(
        "  onDecodeError:\n    sideOutput:\n      kafka: {{bootstrapServers: \"{}\", topic: {dlq}, transactionalIdPrefix: dlq-{u}, valueField: raw, headerFields: [error, source]}}\n",
        st.kafka
    );
    let (s, text) = run_to_exit(
        &job("dlq", &good_source, &policy, &out_sink),
        tmp.path(),
        "dlq",
        Duration::from_secs(60),
    );
    assert!(s.success(), "dead-letter run failed:\n{text}");
    let report = rt
        .block_on(weir_testkit::read_topic(&st.kafka, &dlq))
        .unwrap();
    let dead: Vec<(String, String, String)> = report
        .committed
        .iter()
        .map(|r| {
            let h = |k: &str| {
                r.headers
                    .iter()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.as_ref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            (
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                h("source"),
                h("error"),
            )
        })
        .collect();
    assert_eq!(dead.len(), 2, "dead letters: {dead:?}");
    assert_eq!(dead[0].0, records[5]);
    assert_eq!(dead[0].1, format!("{input}/0@5"));
    assert!(!dead[0].2.is_empty());
    assert_eq!(dead[1].0, records[11]);
    let outs = rt
        .block_on(weir_testkit::read_topic(&st.kafka, &out))
        .unwrap();
    // skip and dlq runs each wrote 18 records (fail wrote nothing committed).
    assert_eq!(outs.committed.len(), 36, "output of skip + dlq runs");

    // Wrong broker, missing topic, missing table: fail fast, naming the thing.
    let wrong = "{bootstrapServers: \"127.0.0.1:1\", topic: x, bounded: true}";
    let (s, text) = run_to_exit(
        &job("wrongbroker", wrong, "", &out_sink),
        tmp.path(),
        "wrongbroker",
        Duration::from_secs(40),
    );
    assert!(!s.success());
    assert!(text.contains("cannot reach Kafka at 127.0.0.1:1"), "{text}");
    assert!(text.contains("waiting for Kafka at 127.0.0.1:1"), "{text}");
    let missing = format!(
        "{{bootstrapServers: \"{}\", topic: nope-{u}, bounded: true}}",
        st.kafka
    );
    let (s, text) = run_to_exit(
        &job("missingtopic", &missing, "", &out_sink),
        tmp.path(),
        "missingtopic",
        Duration::from_secs(40),
    );
    assert!(!s.success());
    assert!(
        text.contains(&format!("topic `nope-{u}` does not exist")),
        "{text}"
    );
    let ch_sink = format!("  - clickhouse: {{url: \"{}\", table: nope_{u}}}\n", st.ch);
    let (s, text) = run_to_exit(
        &job("missingtable", &good_source, "", &ch_sink),
        tmp.path(),
        "missingtable",
        Duration::from_secs(40),
    );
    assert!(!s.success());
    assert!(
        text.contains(&format!("table default.nope_{u} does not exist")),
        "{text}"
    );
    let _ = rt.block_on(ch_exec(&st.ch, "SELECT 1"));
}

/// Source options: `format: raw` columns, `startingOffsets: timestamp` and `latest`, event
/// time from the Kafka timestamp, and per-partition lag in the metrics.
#[test]
fn kafka_source_raw_format_starting_offsets_and_lag() {
    let (Some(s3), Some(bootstrap)) = (
        s3_endpoint("kafka_source_options"),
        kafka("kafka_source_options"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = rt.block_on(fresh_bucket(&s3, "srcopts"));
    let u = unique();
    let topic = format!("raw-{u}");
    rt.block_on(create_topic(&bootstrap, &topic, 2));
    let producer = input_producer(&bootstrap);
    let base = 1_767_225_600_000_i64;
    rt.block_on(async {
        for i in 0..10_i64 {
            let value = format!(r#"{{"n": {i}}}"#);
            let key = format!("k{i}");
            let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "h",
                value: Some("v"),
            });
            producer
                .send(
                    rdkafka::producer::FutureRecord::to(&topic)
                        .partition((i % 2) as i32)
                        .key(&key)
                        .payload(&value)
                        .headers(headers)
                        .timestamp(base + i * 1000),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    let job = |name: &str, source_extra: &str, schema: &str, transforms: &str| {
        format!(
            "name: {name}-{u}
parallelism: 2
checkpoint: {{interval: 200ms, timeout: 30s, storage: \"s3://{bucket}/{name}\", s3: {{endpoint: \"{s3}\", region: us-east-1, pathStyle: true}}}}
source:
  kafka: {{bootstrapServers: \"{bootstrap}\", topic: {topic}, bounded: true{source_extra}}}
  schema:
{schema}transforms:
{transforms}sinks:
  - file: {{path: \"{out}\"}}
",
            out = tmp.path().join(name).display()
        )
    };
    let raw_schema = "    - {name: key, type: string}
    - {name: value, type: string}
    - {name: headers, type: string}
    - {name: timestamp, type: timestamp}
    - {name: partition, type: int64}
    - {name: offset, type: int64}
";
    let read = |name: &str| -> Vec<serde_json::Value> {
        let Ok(dir) = std::fs::read_dir(tmp.path().join(name)) else {
            return Vec::new();
        };
        dir.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };

    // raw: every record with its key, value, headers, partition and offset.
    let (s, text) = run_to_exit(
        &job("raw", ", format: raw", raw_schema, "  - filter: \"true\"\n"),
        tmp.path(),
        "raw",
        Duration::from_secs(60),
    );
    assert!(s.success(), "{text}");
    let mut rows = read("raw");
    rows.sort_by_key(|r| r["key"].as_str().unwrap().to_string());
    assert_eq!(rows.len(), 10, "{rows:?}");
    assert_eq!(rows[3]["key"], "k3");
    assert_eq!(rows[3]["value"], r#"{"n": 3}"#);
    assert_eq!(rows[3]["partition"], 1);
    assert_eq!(rows[3]["offset"], 1);
    assert_eq!(rows[3]["headers"], r#"{"h":"v"}"#);

    // startingOffsets: timestamp -> from the first record at or after it, per partition;
    // event time from the Kafka timestamp (timestampField), windowed.
    let schema = "    - {name: n, type: int64}\n    - {name: ts, type: timestamp}\n  eventTime: {field: ts}\n";
    let (s, text) = run_to_exit(
        &job(
            "fromtime",
            &format!(
                ", startingOffsets: timestamp, startingTimestamp: \"{}\", timestampField: ts",
                base + 6000
            ),
            schema,
            "  - select: {g: \"'all'\", n: n, ts: ts}\n  - window: {tumbling: 1h, keyBy: [g], aggregates: {c: count(*), first: min(n)}}\n",
        ),
        tmp.path(),
        "fromtime",
        Duration::from_secs(60),
    );
    assert!(s.success(), "{text}");
    let rows = read("fromtime");
    assert_eq!(rows.len(), 1, "{rows:?}");
    // Event time came from the Kafka timestamps: one window, the hour they fall in.
    assert_eq!(rows[0]["window_start"], "2026-01-01T00:00:00Z");
    if common::stack::local_broker() {
        // nisshi answers ListOffsets-by-timestamp with offset 0 for any time (its defect;
        // checked with librdkafka's offsets_for_times), so only real Kafka can show the
        // starting position.
        println!("NOTE: startingOffsets: timestamp checked only against KAFKA_BOOTSTRAP");
    } else {
        assert_eq!(rows[0]["c"], 4, "records 6..9: {rows:?}");
        assert_eq!(rows[0]["first"], 6);
    }

    // startingOffsets: latest -> nothing that was there before the job started.
    let (s, text) = run_to_exit(
        &job(
            "latest",
            ", startingOffsets: latest",
            "    - {name: n, type: int64}\n",
            "  - filter: \"true\"\n",
        ),
        tmp.path(),
        "latest",
        Duration::from_secs(60),
    );
    assert!(s.success(), "{text}");
    assert!(read("latest").is_empty());

    // Lag per partition, in process: zero once everything is read.
    let yaml = job(
        "lag",
        "",
        "    - {name: n, type: int64}\n",
        "  - filter: \"true\"\n",
    )
    .replace("bounded: true", "bounded: false");
    let plan = weir_runtime::plan_source("lag.yaml", &yaml).unwrap();
    rt.block_on(async {
        let running = weir_runtime::job::start(
            plan,
            weir_runtime::job::RunOptions {
                control_addr: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let t = Instant::now();
        loop {
            let lags = running.metrics.source_lags();
            if lags.len() == 2 && lags.iter().all(|(_, _, l)| *l == 0) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "lag never reported as caught up: {lags:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let text = running.metrics.encode();
        assert!(text.contains("weir_source_lag_records{topic=\""), "{text}");
    });
}

/// `examples/store-sales.yaml` and `examples/clickhouse/store_sales.sql` as shipped (only
/// addresses, names and a bounded source changed for this machine): killed right after a
/// checkpoint's `_metadata`, restored, and then ClickHouse (`FINAL`) and the committed
/// output topic equal the oracle, with no transaction left open.
#[test]
fn store_sales_example_is_exactly_once_across_a_crash() {
    store_sales_example_across_a_crash("store-sales.yaml", "store_sales_example");
}

/// The same job written in SQL (`examples/store-sales-sql.yaml`): the same oracle, so the
/// same rows in ClickHouse and on the topic as the transforms form.
#[test]
fn store_sales_sql_example_is_exactly_once_across_a_crash() {
    store_sales_example_across_a_crash("store-sales-sql.yaml", "store_sales_sql_example");
}

fn store_sales_example_across_a_crash(example: &str, test: &str) {
    use serde_json::{Value, json};
    let Some(st) = stack(test) else {
        return;
    };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let (input, output, table) = (
        format!("orders-ex-{u}"),
        format!("store-sales-{u}"),
        format!("store_sales_{u}"),
    );
    let storage = format!("s3://{}/chk", rt.block_on(fresh_bucket(&st.s3, test)));
    rt.block_on(create_topic(&st.kafka, &input, PARTITIONS));
    rt.block_on(create_topic(&st.kafka, &output, PARTITIONS));
    let ddl = std::fs::read_to_string(examples.join("clickhouse/store_sales.sql")).unwrap();
    let ddl: String = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("store_sales", &table);
    rt.block_on(ch_exec(&st.ch, ddl.trim().trim_end_matches(';')));
    let count = 6_000;
    let p = input_producer(&st.kafka);
    rt.block_on(produce_orders(&p, &input, 0..count, PARTITIONS, STORES));
    rt.block_on(produce_end_markers(&p, &input, count, PARTITIONS));

    let manifest: Value =
        serde_yaml::from_str(&std::fs::read_to_string(examples.join(example)).unwrap()).unwrap();
    let spec = &manifest["spec"];
    let mut pipeline = spec["pipeline"].clone();
    let kafka_src = &mut pipeline["source"]["kafka"];
    kafka_src["bootstrapServers"] = json!(st.kafka);
    kafka_src["topic"] = json!(input);
    kafka_src["bounded"] = json!(true);
    for sink in pipeline["sinks"].as_array_mut().unwrap() {
        if let Some(c) = sink.get_mut("clickhouse") {
            c["url"] = json!(st.ch);
            c["table"] = json!(table);
        }
        if let Some(k) = sink.get_mut("kafka") {
            k["bootstrapServers"] = json!(st.kafka);
            k["topic"] = json!(output);
            k["transactionalIdPrefix"] = json!(format!("ex-{u}"));
        }
    }
    let mut job = json!({
        "name": format!("store-sales-{u}"),
        "parallelism": spec["parallelism"],
        "checkpoint": {"interval": "300ms", "timeout": "30s", "storage": storage, "retained": 2,
                       "s3": {"endpoint": st.s3, "region": "us-east-1", "pathStyle": true}},
        "source": pipeline["source"],
        "sinks": pipeline["sinks"],
    });
    for form in ["transforms", "sql"] {
        if let Some(v) = pipeline.get(form) {
            job[form] = v.clone();
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let job_file = tmp.path().join("store-sales.yaml");
    std::fs::write(&job_file, serde_yaml::to_string(&job).unwrap()).unwrap();
    let log = tmp.path().join("runtime.log");

    run_until_crash(
        &job_file,
        &[("WEIR_CRASH_AT", "after-metadata:1")],
        Duration::from_secs(60),
        &log,
    );
    let mut child = spawn_runtime(&job_file, &[], &[], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(120))
        .expect("restored run did not finish");
    assert!(status.success(), "{status:?}\n{}", log_tail(&log));

    let expected = oracle(count, PARTITIONS, STORES);
    let (rows, dups) = rt.block_on(ch_sales(&st.ch, &table, true));
    assert_sales("example: ClickHouse FINAL", &expected, &rows, &dups);
    let (rows, dups, open) = rt.block_on(kafka_sales(&st.kafka, &output));
    assert_sales("example: committed Kafka records", &expected, &rows, &dups);
    assert_eq!(open, 0, "transactions left open on the output topic");
}

/// The ClickHouse sinks over HTTPS (the server's `https_port`, a certificate from
/// `tests/tls.sh`'s throwaway CA, trusted through `tls.caPemEnv`): killed after a
/// checkpoint's `_metadata`, restarted, and both tables equal the oracle. With another CA the
/// job fails at once, naming the server and the certificate problem.
#[test]
fn clickhouse_over_https_is_exactly_once_and_refuses_an_unknown_ca() {
    let Some(st) = stack("clickhouse_https") else {
        return;
    };
    let how = "WEIR_CLICKHOUSE_HTTPS_URL and WEIR_TLS_DIR are not set (tests/run-all.sh sets them)";
    let Some(https) = weir_testkit::needs_env(
        "clickhouse_https",
        "WEIR_CLICKHOUSE_HTTPS_URL",
        "WEIR_REQUIRE_CLICKHOUSE",
        how,
    ) else {
        return;
    };
    let Some(tls) = weir_testkit::needs_env(
        "clickhouse_https",
        "WEIR_TLS_DIR",
        "WEIR_REQUIRE_CLICKHOUSE",
        how,
    ) else {
        return;
    };
    let pem = |name: &str| std::fs::read_to_string(Path::new(&tls).join(name)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sc = rt.block_on(Scenario::new(&st, "chtls", 4_000));
    rt.block_on(sc.produce_all(&st));
    let tmp = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  - clickhouse: {{url: \"{https}\", table: {wa}, mode: writeAhead, tls: {{caPemEnv: CH_CA}}}}
  - clickhouse: {{url: \"{https}\", table: {rmt}, mode: replacing, versionColumn: v, tls: {{caPemEnv: CH_CA}}}}
  - kafka: {{bootstrapServers: \"{k}\", topic: {out}, transactionalIdPrefix: {name}, keyBy: [store_id]}}
",
        wa = sc.wa,
        rmt = sc.rmt,
        k = st.kafka,
        out = sc.output,
        name = sc.name,
    );
    let yaml = sales_job(
        &sc.name,
        &st.kafka,
        &sc.input,
        &sc.storage,
        &st.s3,
        2,
        300,
        true,
        &sinks,
    );
    let job = tmp.path().join("job.yaml");
    std::fs::write(&job, yaml).unwrap();
    let ca = pem("ca.pem");
    let log = tmp.path().join("runtime.log");
    run_until_crash(
        &job,
        &[("CH_CA", &ca), ("WEIR_CRASH_AT", "after-metadata:1")],
        Duration::from_secs(60),
        &log,
    );
    let mut child = spawn_runtime(&job, &[], &[("CH_CA", &ca)], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(120))
        .expect("restored run did not finish");
    assert!(status.success(), "{status:?}\n{}", log_tail(&log));
    rt.block_on(sc.assert_exact(&st, "ClickHouse over HTTPS, after a crash"));

    // Another CA: refused at once, not waited for.
    let other = pem("other-ca.pem");
    let log = tmp.path().join("wrong-ca.log");
    let took = common::refused_fast(
        "ClickHouse with an unknown CA",
        &log,
        &[https.as_str(), "certificate"],
        || {
            let mut child = spawn_runtime(&job, &[], &[("CH_CA", &other)], &log);
            wait_exit_within(&mut child, Duration::from_secs(60)).expect("no exit")
        },
    );
    println!("ClickHouse over HTTPS: exact after a crash; an unknown CA refused in {took:?}");
}

/// A write-ahead table remembers only its last `replicated_deduplication_window` blocks: a
/// table whose window cannot hold one block per subtask, or whose time window is short, is
/// refused at start-up, naming the setting; and a checkpoint holding more rows than its
/// subtask's share of the window in `blockRows` blocks is written in bigger blocks, so that a
/// replay after a crash is still dropped. (Mutation: keep `blockRows` blocks whatever the
/// window, and the replay below doubles most rows, because the table, cleaned every second,
/// has forgotten them.)
#[test]
fn clickhouse_commits_stay_inside_the_tables_deduplication_window() {
    let Some(st) = stack("clickhouse_dedup_window") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sc = rt.block_on(Scenario::new(&st, "chwindow", 3_000));
    let expected = oracle(sc.count, PARTITIONS, STORES);
    assert!(
        expected.len() > 20,
        "the output must outnumber the window several times"
    );
    rt.block_on(sc.produce_all(&st));
    let table = |name: &str, settings: &str| {
        let name = format!("{}_{name}", sc.wa);
        rt.block_on(ch_exec(
            &st.ch,
            &format!(
                "CREATE TABLE {name} (store_id String, window_start DateTime, window_end DateTime, orders Int64, sales Int64) \
                 ENGINE = ReplicatedMergeTree('/clickhouse/tables/{name}', 'r1') ORDER BY (window_start, store_id) \
                 SETTINGS {settings}"
            ),
        ));
        name
    };
    let small = table(
        "small",
        "replicated_deduplication_window = 4, cleanup_delay_period = 1, cleanup_delay_period_random_add = 0",
    );
    let brief = table("brief", "replicated_deduplication_window_seconds = 60");
    let tmp = tempfile::tempdir().unwrap();
    let job = |name: &str, table: &str, parallelism: u32| {
        let sinks = format!(
            "  - clickhouse: {{url: \"{}\", table: {table}, mode: writeAhead, blockRows: 1}}\n",
            st.ch
        );
        sales_job(
            &format!("{}-{name}", sc.name),
            &st.kafka,
            &sc.input,
            &format!("{}-{name}", sc.storage),
            &st.s3,
            parallelism,
            25_000,
            true,
            &sinks,
        )
    };

    let (s, text) = run_to_exit(
        &job("toomany", &small, 5),
        tmp.path(),
        "toomany",
        Duration::from_secs(60),
    );
    assert!(
        !s.success(),
        "5 subtasks on a window of 4 blocks must be refused"
    );
    assert!(
        text.contains(&format!("default.{small}"))
            && text.contains("replicated_deduplication_window is 4"),
        "the error should name the table and the setting:\n{text}"
    );
    let (s, text) = run_to_exit(
        &job("brief", &brief, 1),
        tmp.path(),
        "brief",
        Duration::from_secs(60),
    );
    assert!(!s.success(), "a 60 s window must be refused");
    assert!(
        text.contains("replicated_deduplication_window_seconds is 60"),
        "{text}"
    );

    // Two subtasks, two blocks each per checkpoint; the one checkpoint (bounded input, read
    // in a few seconds, well inside the 25 s interval: the final one) holds every row. Crash after its commit, let the table clean, replay.
    let yaml = job("replay", &small, 2);
    let path = tmp.path().join("replay.yaml");
    std::fs::write(&path, yaml).unwrap();
    let log = tmp.path().join("replay.log");
    run_until_crash(
        &path,
        &[("WEIR_CRASH_AT", "after-sink-commit:1")],
        Duration::from_secs(90),
        &log,
    );
    std::thread::sleep(Duration::from_secs(4));
    let mut child = spawn_runtime(&path, &[], &[], &log);
    let status =
        wait_exit_within(&mut child, Duration::from_secs(90)).expect("restored run did not finish");
    assert!(status.success(), "{status:?}\n{}", log_tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("re-inserted rows of the restored checkpoint"),
        "the restored run must have replayed the commit:\n{text}"
    );
    let (got, dups) = rt.block_on(ch_sales(&st.ch, &small, false));
    assert_sales(
        "write-ahead rows after a replay into a window of 4 blocks",
        &expected,
        &got,
        &dups,
    );
    let parts = rt.block_on(ch_exec(
        &st.ch,
        &format!(
            "SELECT count() FROM system.zookeeper WHERE path = '/clickhouse/tables/{small}/blocks'"
        ),
    ));
    println!(
        "dedup window: {} rows, in blocks the table still remembers: {}",
        expected.len(),
        parts.trim()
    );
}

/// An updating `GROUP BY` (a changelog) as upserts: into a
/// `ReplicatedReplacingMergeTree(version)` keyed on the result key, in write-ahead mode (the
/// replicated table drops a replayed block), and into a Kafka topic keyed by it
/// (transactional); killed with SIGKILL twice and finished at another parallelism. Read with
/// `FINAL`, the table, and the newest committed record of each key in the topic, equal the
/// counts and maxima the test computes itself from every bid (written by the same job to a
/// file sink, unaggregated). With PostgreSQL and MySQL: the same result into a table by its
/// primary key in both modes (transactional: upserts inside the prepared transactions; upsert).
#[test]
fn an_updating_group_by_upserts_into_clickhouse_and_kafka_exactly_once_across_kills() {
    let Some(ch) = clickhouse("changelog_upserts") else {
        return;
    };
    let Some(broker) = kafka("changelog_upserts") else {
        return;
    };
    let pg = common::stack::postgres("changelog_upserts");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let table = format!("bids_per_auction_{u}");
    let (pg_tx, pg_up) = (format!("bids_tx_{u}"), format!("bids_up_{u}"));
    let (mut pg_sinks, mut pg_sql) = (String::new(), String::new());
    if let Some(pg) = &pg {
        let c = rt.block_on(common::stack::pg(pg));
        for t in [&pg_tx, &pg_up] {
            rt.block_on(c.batch_execute(&format!(
                "CREATE TABLE {t} (auction bigint PRIMARY KEY, bids bigint NOT NULL, top bigint NOT NULL)"
            )))
            .unwrap();
        }
        for (name, t, mode) in [
            ("pg_tx", &pg_tx, "transactional"),
            ("pg_up", &pg_up, "upsert"),
        ] {
            pg_sinks.push_str(&format!(
                "  - postgres: {{name: {name}, url: \"{pg}?sslmode=disable\", table: {t}, passwordEnv: WEIR_POSTGRES_PASSWORD, mode: {mode}}}\n"
            ));
            pg_sql.push_str(&format!(
                "  INSERT INTO {name} SELECT bid_auction AS auction, count(*) AS bids, max(bid_price) AS top\n    FROM nexmark WHERE event_type = 2 GROUP BY bid_auction;\n"
            ));
        }
    }
    let my = common::stack::mysql("changelog_upserts");
    let (my_tx, my_up) = (format!("bids_mtx_{u}"), format!("bids_mup_{u}"));
    if let Some(my) = &my {
        for t in [&my_tx, &my_up] {
            rt.block_on(common::stack::my_run(
                my,
                &format!(
                    "CREATE TABLE {t} (auction bigint PRIMARY KEY, bids bigint NOT NULL, top bigint NOT NULL)"
                ),
            ));
        }
        for (name, t, mode) in [
            ("my_tx", &my_tx, "transactional"),
            ("my_up", &my_up, "upsert"),
        ] {
            pg_sinks.push_str(&format!(
                "  - mysql: {{name: {name}, url: \"{my}?sslmode=disable\", table: {t}, passwordEnv: WEIR_MYSQL_PASSWORD, mode: {mode}}}\n"
            ));
            pg_sql.push_str(&format!(
                "  INSERT INTO {name} SELECT bid_auction AS auction, count(*) AS bids, max(bid_price) AS top\n    FROM nexmark WHERE event_type = 2 GROUP BY bid_auction;\n"
            ));
        }
    }
    let topic = format!("bids-per-auction-{u}");
    rt.block_on(create_topic(&broker, &topic, 3));
    rt.block_on(ch_exec(
        &ch,
        &format!(
            "CREATE TABLE {table} (auction Int64, bids Int64, top Int64, version UInt64) \
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{table}', 'r1', version) \
             ORDER BY auction"
        ),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = format!(
        "name: changelog-{u}
parallelism: 2
checkpoint: {{interval: 200ms, storage: \"file://{chk}\"}}
source:
  name: nexmark
  nexmark: {{events: 40000, eventsPerSecond: 1000, splits: 4, rate: 10000}}
  schema:
    - {{name: event_type, type: int64}}
    - {{name: person_id, type: int64}}
    - {{name: person_name, type: string}}
    - {{name: person_email_address, type: string}}
    - {{name: person_credit_card, type: string}}
    - {{name: person_city, type: string}}
    - {{name: person_state, type: string}}
    - {{name: auction_id, type: int64}}
    - {{name: auction_item_name, type: string}}
    - {{name: auction_description, type: string}}
    - {{name: auction_initial_bid, type: int64}}
    - {{name: auction_reserve, type: int64}}
    - {{name: auction_expires, type: timestamp}}
    - {{name: auction_seller, type: int64}}
    - {{name: auction_category, type: int64}}
    - {{name: bid_auction, type: int64}}
    - {{name: bid_bidder, type: int64}}
    - {{name: bid_price, type: int64}}
    - {{name: bid_channel, type: string}}
    - {{name: bid_url, type: string}}
    - {{name: date_time, type: timestamp}}
    - {{name: extra, type: string}}
    - {{name: event_id, type: int64}}
  eventTime: {{field: date_time, maxOutOfOrderness: 0s}}
sinks:
  - clickhouse: {{name: counts, url: \"{ch}\", table: {table}, mode: writeAhead, versionColumn: version}}
  - file: {{name: bids, path: \"{bids}\"}}
  - kafka: {{name: latest, bootstrapServers: \"{broker}\", topic: {topic}, transactionalIdPrefix: changelog-{u}, keyBy: [auction]}}
{pg_sinks}sql: |
  INSERT INTO counts SELECT bid_auction AS auction, count(*) AS bids, max(bid_price) AS top
    FROM nexmark WHERE event_type = 2 GROUP BY bid_auction;
  INSERT INTO latest SELECT bid_auction AS auction, count(*) AS bids, max(bid_price) AS top
    FROM nexmark WHERE event_type = 2 GROUP BY bid_auction;
  INSERT INTO bids SELECT bid_auction AS auction, bid_price AS price
    FROM nexmark WHERE event_type = 2;
{pg_sql}",
        chk = dir.join("chk").display(),
        bids = dir.join("bids").display(),
    );
    let file = dir.join("job.yaml");
    std::fs::write(&file, yaml).unwrap();
    let log = dir.join("runtime.log");
    let mut rng = common::fault_seed();
    // Paced at 10 000 events/s, the input lasts 4 s: each kill comes up to 1.5 s after a
    // checkpoint that may itself come late on a loaded machine, and both must land before the
    // input ends (the sinks' tables cannot be emptied for a second attempt, as
    // `common::until_every_kill_lands` would need).
    let kills = common::kill_randomly(&file, &log, &mut rng, 2, 500..1500);
    assert_eq!(
        kills,
        2,
        "the job ended before it could be killed\n{}",
        log_tail(&log)
    );
    let mut child = spawn_runtime(&file, &["--parallelism", "3"], &[], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("the job did not end within 120 s\n{}", log_tail(&log)));
    assert!(status.success(), "{}", log_tail(&log));

    // The oracle: every bid the job passed through, aggregated here.
    let mut want: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    for entry in std::fs::read_dir(dir.join("bids")).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (a, p) = (v["auction"].as_i64().unwrap(), v["price"].as_i64().unwrap());
            let e = want.entry(a).or_insert((0, i64::MIN));
            e.0 += 1;
            e.1 = e.1.max(p);
        }
    }
    let total: i64 = want.values().map(|v| v.0).sum();
    assert!(total > 30_000, "{total} bids");
    let text = rt.block_on(ch_exec(
        &ch,
        &format!(
            "SELECT auction, bids, top FROM {table} FINAL ORDER BY auction FORMAT TabSeparated"
        ),
    ));
    type Counts = std::collections::BTreeMap<i64, (i64, i64)>;
    let got: Counts = text
        .lines()
        .map(|l| {
            let f: Vec<i64> = l.split('\t').map(|x| x.parse().unwrap()).collect();
            (f[0], (f[1], f[2]))
        })
        .collect();
    let same = |what: &str, got: &Counts| {
        let wrong: Vec<_> = want
            .iter()
            .filter(|(a, v)| got.get(a) != Some(v))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty() && got.len() == want.len(),
            "{what}: {} auctions expected, {} there; first wrong (auction, (bids, max)): {wrong:?}, there: {:?}",
            want.len(),
            got.len(),
            wrong.iter().map(|(a, _)| got.get(a)).collect::<Vec<_>>()
        );
    };
    same("table", &got);
    // The topic: the newest committed record per key, in partition order.
    let report = rt
        .block_on(weir_testkit::read_topic(&broker, &topic))
        .unwrap();
    assert_eq!(report.open, 0, "open transactions left in {topic}");
    let mut latest = Counts::new();
    for r in &report.committed {
        let key: i64 = std::str::from_utf8(r.key.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert!(v.get("_change").is_none(), "{v}");
        assert_eq!(v["auction"].as_i64(), Some(key));
        latest.insert(
            key,
            (v["bids"].as_i64().unwrap(), v["top"].as_i64().unwrap()),
        );
    }
    same("topic", &latest);
    if let Some(pg) = &pg {
        let c = rt.block_on(common::stack::pg(pg));
        for t in [&pg_tx, &pg_up] {
            let rows = rt
                .block_on(c.query(&format!("SELECT auction, bids, top FROM {t}"), &[]))
                .unwrap();
            let got: Counts = rows
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect();
            same(&format!("postgres {t}"), &got);
        }
        let left = rt.block_on(common::stack::pg_prepared(
            pg,
            &format!("weir:changelog-{u}:"),
        ));
        assert!(
            left.is_empty(),
            "prepared transactions left behind: {left:?}"
        );
    }
    if let Some(my) = &my {
        use mysql_async::prelude::Queryable;
        for t in [&my_tx, &my_up] {
            let mut c = rt.block_on(common::stack::my(my));
            let rows: Vec<(i64, i64, i64)> = rt
                .block_on(c.query(format!("SELECT auction, bids, top FROM {t}")))
                .unwrap();
            let got: Counts = rows.into_iter().map(|(a, b, t)| (a, (b, t))).collect();
            same(&format!("mysql {t}"), &got);
        }
        // The transactional MySQL sink's gtrid: its position among the sinks.
        let left = rt.block_on(common::stack::my_prepared(
            my,
            &format!(
                "weir:changelog-{u}:sink-{}",
                if pg.is_some() { 5 } else { 3 }
            ),
        ));
        assert!(left.is_empty(), "XA transactions left prepared: {left:?}");
    }
    let stored = rt.block_on(ch_exec(&ch, &format!("SELECT count() FROM {table}")));
    println!(
        "changelog upserts: {} auctions, {total} bids; clickhouse {} rows stored before FINAL; kafka {} records",
        want.len(),
        stored.trim(),
        report.committed.len()
    );
}

/// Two topics joined in SQL: orders (the job's `source`) and a table of stores in a second
/// topic (a further source, without event time), each bounded. The run is killed right after
/// a checkpoint's `_metadata` is written and finished at another parallelism: each source's
/// offsets come back from its own tasks' state. The committed output equals every order
/// with its store's city, as the test computes them from what it produced.
#[test]
fn two_topics_joined_in_sql_are_exactly_once_across_a_crash() {
    let Some(broker) = kafka("two_topics_join") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let (orders, stores) = (format!("orders-{u}"), format!("stores-{u}"));
    rt.block_on(create_topic(&broker, &orders, PARTITIONS));
    rt.block_on(create_topic(&broker, &stores, 2));
    let count = 4_000;
    let p = input_producer(&broker);
    rt.block_on(produce_orders(&p, &orders, 0..count, PARTITIONS, STORES));
    rt.block_on(produce_end_markers(&p, &orders, count, PARTITIONS));
    let city = |k: u64| format!("city-{}", k % 3);
    for k in 0..STORES {
        // One record per send: the local broker's bounded end is a batch's first offset.
        let payload =
            serde_json::json!({"store_id": format!("store-{k}"), "city": city(k)}).to_string();
        rt.block_on(
            p.send(
                rdkafka::producer::FutureRecord::<(), _>::to(&stores)
                    .partition(i32::try_from(k % 2).unwrap())
                    .payload(&payload),
                Duration::from_secs(10),
            ),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let props = "properties: {fetch.max.bytes: \"262144\", message.max.bytes: \"65536\", max.partition.fetch.bytes: \"65536\"}";
    let yaml = format!(
        "name: two-topics-{u}
parallelism: 2
checkpoint: {{interval: 300ms, timeout: 30s, storage: \"file://{chk}\"}}
source:
  name: orders
  kafka: {{bootstrapServers: \"{broker}\", topic: {orders}, bounded: true, partitionDiscovery: 1s, {props}}}
{schema}  eventTime: {{field: ts, maxOutOfOrderness: 5s}}
sources:
  - name: stores
    kafka: {{bootstrapServers: \"{broker}\", topic: {stores}, bounded: true, {props}}}
    schema:
      - {{name: store_id, type: string}}
      - {{name: city, type: string}}
sinks:
  - file: {{name: out, path: \"{out}\"}}
sql: |
  INSERT INTO out SELECT o.order_id, o.amount, s.city
    FROM orders o JOIN stores s ON o.store_id = s.store_id WHERE o.amount > 0;
",
        chk = tmp.path().join("chk").display(),
        out = tmp.path().join("out").display(),
        schema = common::stack::ORDERS_SCHEMA,
    );
    let job = tmp.path().join("job.yaml");
    std::fs::write(&job, yaml).unwrap();
    let log = tmp.path().join("runtime.log");
    run_until_crash(
        &job,
        &[("WEIR_CRASH_AT", "after-metadata:1")],
        Duration::from_secs(90),
        &log,
    );
    let mut child = spawn_runtime(&job, &["--parallelism", "3"], &[], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(120)).expect("job ends");
    assert!(status.success(), "{}", log_tail(&log));
    let mut want: Vec<(u64, i64, String)> = (0..count)
        .map(|i| common::stack::order(i, PARTITIONS, STORES))
        .filter(|o| o.amount > 0)
        .map(|o| {
            let k: u64 = o.store.trim_start_matches("store-").parse().unwrap();
            (o.id, o.amount, city(k))
        })
        .collect();
    let mut got: Vec<(u64, i64, String)> = common::stack::file_rows(&tmp.path().join("out"))
        .iter()
        .map(|v| {
            (
                v["order_id"].as_u64().unwrap(),
                v["amount"].as_i64().unwrap(),
                v["city"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert!(want.len() > 2_000, "{} orders", want.len());
    let missing = want
        .iter()
        .filter(|w| got.binary_search(w).is_err())
        .count();
    assert_eq!(
        (got.len(), missing),
        (want.len(), 0),
        "joined rows (got, missing) against the orders produced"
    );
    assert_eq!(got, want);
}

/// A topic written with any of Kafka's codecs is read: the producer sends batches of many
/// records compressed with `compression.type` (gzip, snappy, lz4, zstd), and the source
/// decodes every record (librdkafka is built with all four; without its `zstd` feature the
/// zstd round fails).
#[test]
fn topics_compressed_with_every_codec_are_read() {
    let (Some(s3), Some(bootstrap)) = (s3_endpoint("kafka_codecs"), kafka("kafka_codecs")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = rt.block_on(fresh_bucket(&s3, "codecs"));
    let u = unique();
    const RECORDS: i64 = 200;
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}-{u}");
        rt.block_on(create_topic(&bootstrap, &topic, 2));
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("compression.type", codec)
            // Batches of many records, so that compression has something to do.
            .set("linger.ms", "50")
            .create()
            .unwrap_or_else(|e| panic!("{codec} producer: {e}"));
        rt.block_on(async {
            let sends: Vec<_> = (0..RECORDS)
                .map(|i| {
                    let value = format!(r#"{{"n": {i}, "pad": "{}"}}"#, "x".repeat(64));
                    let key = format!("k{i}");
                    let producer = producer.clone();
                    let topic = topic.clone();
                    async move {
                        producer
                            .send(
                                rdkafka::producer::FutureRecord::to(&topic)
                                    .partition((i % 2) as i32)
                                    .key(&key)
                                    .payload(&value),
                                Duration::from_secs(10),
                            )
                            .await
                            .map_err(|(e, _)| e)
                    }
                })
                .collect();
            for r in futures::future::join_all(sends).await {
                r.unwrap_or_else(|e| panic!("{codec}: send failed: {e}"));
            }
            // The local broker answers ListOffsets with the last batch's first offset + 1, so
            // a bounded source stops at the real end only after a one-record batch.
            for p in 0..2 {
                let value = format!(r#"{{"n": {}, "pad": ""}}"#, RECORDS + p);
                producer
                    .send(
                        rdkafka::producer::FutureRecord::to(&topic)
                            .partition(p as i32)
                            .key("end")
                            .payload(&value),
                        Duration::from_secs(10),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .unwrap_or_else(|e| panic!("{codec}: send failed: {e}"));
            }
        });
        let out = tmp.path().join(codec);
        let yaml = format!(
            "name: codec-{codec}-{u}
parallelism: 1
checkpoint: {{interval: 200ms, timeout: 30s, storage: \"s3://{bucket}/{codec}\", s3: {{endpoint: \"{s3}\", region: us-east-1, pathStyle: true}}}}
source:
  kafka: {{bootstrapServers: \"{bootstrap}\", topic: {topic}, bounded: true}}
  schema:
    - {{name: n, type: int64}}
    - {{name: pad, type: string}}
sinks:
  - file: {{path: \"{}\"}}
",
            out.display()
        );
        let (status, text) = run_to_exit(&yaml, tmp.path(), codec, Duration::from_secs(60));
        assert!(status.success(), "{codec}: {text}");
        let mut seen: Vec<i64> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                            .as_i64()
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..RECORDS + 2).collect::<Vec<_>>(),
            "{codec}; the job's log:\n{text}"
        );
    }
}
