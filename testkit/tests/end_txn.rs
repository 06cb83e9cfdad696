//! Commit-phase recovery with `wire::end_txn`: ending, from a fresh connection, a
//! transaction that an rdkafka producer began and flushed but never ended.
//!
//! The producer id/epoch come from the raw log (the verifier's open transactions),
//! since rdkafka does not expose them. Needs a broker like `verifier.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rdkafka::producer::{FutureProducer, Producer};
use tokio::task::block_in_place;
use weir_runtime::kafka::wire::{self, EndTxnOutcome};
use weir_testkit::rd::{self, TIMEOUT};
use weir_testkit::{
    OpenTransaction, TopicReport, broker_or_skip, is_real_kafka, read_topic_settled, unique_name,
};

fn values(report: &TopicReport) -> Vec<String> {
    report
        .committed
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Reads the topic once at most `max_open` records are undecided: Kafka writes the
/// markers after answering EndTxn, so a read right after a commit can be early.
async fn verify(bootstrap: &str, topic: &str, max_open: usize) -> TopicReport {
    let report = read_topic_settled(bootstrap, topic, max_open)
        .await
        .expect("read_topic");
    println!(
        "{topic}: committed {:?} aborted {} open {} open_txns {:?} partitions {:?}",
        values(&report),
        report.aborted,
        report.open,
        report.open_transactions,
        report.partitions
    );
    report
}

/// A transaction begun and flushed by a fresh producer and left open, with the
/// producer id/epoch read from the log.
struct Open {
    bootstrap: String,
    topic: String,
    txn_id: String,
    /// `None` once dropped.
    producer: Option<FutureProducer>,
    txn: OpenTransaction,
}

async fn open_transaction(bootstrap: &str, prefix: &str, values: &[&str]) -> Open {
    let topic = unique_name(prefix);
    rd::create_topic(bootstrap, &topic, 1)
        .await
        .expect("create topic");
    let txn_id = unique_name(&format!("{prefix}-txn"));
    let producer = rd::transactional_producer(bootstrap, &txn_id).expect("producer");
    block_in_place(|| producer.init_transactions(TIMEOUT)).expect("init_transactions");
    producer.begin_transaction().expect("begin_transaction");
    for v in values {
        rd::send(&producer, &topic, 0, v, v).await.expect("send");
    }
    block_in_place(|| producer.flush(TIMEOUT)).expect("flush");
    let report = verify(bootstrap, &topic, values.len()).await;
    assert_eq!(report.open, values.len());
    assert_eq!(report.open_transactions.len(), 1);
    let txn = report.open_transactions[0].clone();
    Open {
        bootstrap: bootstrap.to_owned(),
        topic,
        txn_id,
        producer: Some(producer),
        txn,
    }
}

impl Open {
    fn producer(&self) -> &FutureProducer {
        self.producer.as_ref().expect("producer still alive")
    }

    async fn end(&self, commit: bool) -> Result<EndTxnOutcome, wire::WireError> {
        let outcome = wire::end_txn(
            &wire::Cluster::plaintext(&self.bootstrap),
            &self.txn_id,
            self.txn.producer_id,
            self.txn.producer_epoch,
            commit,
        )
        .await;
        println!(
            "end_txn({}, pid {}, epoch {}, commit={commit}) -> {outcome:?}",
            self.txn_id, self.txn.producer_id, self.txn.producer_epoch
        );
        outcome
    }
}

/// Kafka answers PRODUCER_FENCED / INVALID_PRODUCER_EPOCH / INVALID_PRODUCER_ID_MAPPING.
/// nisshi's default (memory) engine closes the connection instead of answering, which
/// `end_txn` reports as `EndTxnRejected`. nisshi's sqlite engine answers NONE without
/// writing any marker; that broker defect is tolerated (and printed) on nisshi only if
/// `after`, the topic read after the EndTxn, proves nothing was committed.
fn assert_fenced(outcome: &Result<EndTxnOutcome, wire::WireError>, after: Option<&TopicReport>) {
    let fenced = matches!(outcome, Ok(EndTxnOutcome::Fenced));
    if is_real_kafka() {
        assert!(fenced, "expected Fenced, got {outcome:?}");
        return;
    }
    let rejected = matches!(outcome, Err(wire::WireError::EndTxnRejected { .. }));
    let nothing_committed = after.is_none_or(|r| {
        r.committed.is_empty() && r.partitions.iter().all(|p| p.commit_markers == 0)
    });
    let lied = matches!(outcome, Ok(EndTxnOutcome::Done)) && nothing_committed;
    if lied {
        println!(
            "BROKER DEFECT: EndTxn for a fenced/unknown producer answered NONE and did nothing"
        );
    }
    assert!(
        fenced || rejected || lied,
        "expected Fenced or EndTxnRejected, got {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_commits_transaction_of_dropped_producer() {
    let Some(bootstrap) = broker_or_skip("end_txn_commits_transaction_of_dropped_producer") else {
        return;
    };
    let mut open = open_transaction(&bootstrap, "endtxn-dropped", &["x", "y", "z"]).await;
    // Simulate the crashed pre-committer: gone without committing or aborting.
    drop(open.producer.take());
    let still_open = verify(&bootstrap, &open.topic, 3).await;
    assert_eq!(
        still_open.open, 3,
        "dropping the producer ended its transaction"
    );

    let first = open.end(true).await.expect("end_txn");
    assert_eq!(first, EndTxnOutcome::Done);
    let report = verify(&bootstrap, &open.topic, 0).await;
    assert_eq!(values(&report), vec!["x", "y", "z"]);
    assert_eq!((report.aborted, report.open), (0, 0));
    assert_eq!(report.partitions[0].commit_markers, 1);

    // Repeating the commit (recovery restarted) must not duplicate or lose anything.
    let second = open.end(true).await.expect("repeated end_txn");
    assert!(
        matches!(
            second,
            EndTxnOutcome::Done | EndTxnOutcome::AlreadyCompleted
        ),
        "repeated commit answered {second:?}"
    );
    let again = verify(&bootstrap, &open.topic, 0).await;
    assert_eq!(values(&again), vec!["x", "y", "z"]);
    assert_eq!((again.aborted, again.open), (0, 0));
    println!(
        "commit markers after repeated EndTxn: {}",
        again.partitions[0].commit_markers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_commits_transaction_of_live_producer() {
    let Some(bootstrap) = broker_or_skip("end_txn_commits_transaction_of_live_producer") else {
        return;
    };
    let open = open_transaction(&bootstrap, "endtxn-live", &["p", "q"]).await;
    let outcome = open.end(true).await.expect("end_txn");
    assert_eq!(outcome, EndTxnOutcome::Done);
    let report = verify(&bootstrap, &open.topic, 0).await;
    assert_eq!(values(&report), vec!["p", "q"]);
    assert_eq!(report.open, 0);

    // The still-alive producer does not know; what happens when it commits too?
    let late = block_in_place(|| open.producer().commit_transaction(TIMEOUT));
    println!("late commit by the original producer: {late:?}");
    let after = verify(&bootstrap, &open.topic, 0).await;
    assert_eq!(
        values(&after),
        vec!["p", "q"],
        "late commit changed visibility"
    );
    assert_eq!(after.open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_after_fence_is_fenced() {
    let Some(bootstrap) = broker_or_skip("end_txn_after_fence_is_fenced") else {
        return;
    };
    let open = open_transaction(&bootstrap, "endtxn-fenced", &["f1", "f2"]).await;
    let successor =
        rd::transactional_producer(&bootstrap, &open.txn_id).expect("successor producer");
    block_in_place(|| successor.init_transactions(TIMEOUT)).expect("successor init");

    let fenced_state = verify(&bootstrap, &open.topic, 0).await;
    assert_eq!((fenced_state.aborted, fenced_state.open), (2, 0));
    let outcome = open.end(true).await;
    let report = verify(&bootstrap, &open.topic, 0).await;
    assert_fenced(&outcome, Some(&report));
    assert!(
        report.committed.is_empty(),
        "fenced transaction became visible"
    );
    assert_eq!((report.aborted, report.open), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_commit_after_abort_does_not_resurrect() {
    let Some(bootstrap) = broker_or_skip("end_txn_commit_after_abort_does_not_resurrect") else {
        return;
    };
    let open = open_transaction(&bootstrap, "endtxn-aborted", &["r1"]).await;
    block_in_place(|| open.producer().abort_transaction(TIMEOUT)).expect("abort");
    let outcome = open.end(true).await.expect("end_txn");
    // Kafka answers INVALID_TXN_STATE. nisshi answers NONE without writing a marker, so
    // on nisshi `Done` does not prove a commit; either way nothing may become visible.
    if is_real_kafka() {
        assert_eq!(outcome, EndTxnOutcome::AlreadyCompleted);
    } else {
        assert!(
            matches!(
                outcome,
                EndTxnOutcome::AlreadyCompleted | EndTxnOutcome::Done
            ),
            "commit after abort answered {outcome:?}"
        );
    }
    let report = verify(&bootstrap, &open.topic, 0).await;
    assert!(
        report.committed.is_empty(),
        "aborted transaction became visible"
    );
    assert_eq!((report.aborted, report.open), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_can_abort() {
    let Some(bootstrap) = broker_or_skip("end_txn_can_abort") else {
        return;
    };
    let open = open_transaction(&bootstrap, "endtxn-abort", &["s1", "s2"]).await;
    let outcome = open.end(false).await.expect("end_txn");
    assert_eq!(outcome, EndTxnOutcome::Done);
    let report = verify(&bootstrap, &open.topic, 0).await;
    assert!(report.committed.is_empty());
    assert_eq!((report.aborted, report.open), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_wrong_producer_id_is_not_done() {
    let Some(bootstrap) = broker_or_skip("end_txn_wrong_producer_id_is_not_done") else {
        return;
    };
    let mut open = open_transaction(&bootstrap, "endtxn-wrongpid", &["w1"]).await;
    open.txn.producer_id += 1_000_000;
    let outcome = open.end(true).await;
    let report = verify(&bootstrap, &open.topic, 1).await;
    assert_fenced(&outcome, Some(&report));
    assert!(report.committed.is_empty());
    assert_eq!(report.open, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_unknown_transactional_id_is_an_error() {
    let Some(bootstrap) = broker_or_skip("end_txn_unknown_transactional_id_is_an_error") else {
        return;
    };
    let outcome = wire::end_txn(
        &wire::Cluster::plaintext(&bootstrap),
        &unique_name("endtxn-nobody"),
        12345,
        0,
        true,
    )
    .await;
    println!("end_txn for an unknown transactional id: {outcome:?}");
    // Kafka answers INVALID_PRODUCER_ID_MAPPING for an id it does not know.
    assert_fenced(&outcome, None);
}

/// Set in the child process of `end_txn_commits_transaction_of_killed_process`:
/// `bootstrap,topic,transactional id`.
const CHILD_ENV: &str = "WEIR_TESTKIT_ENDTXN_CHILD";

/// Not a test of its own: the child half of
/// `end_txn_commits_transaction_of_killed_process`, doing nothing unless `CHILD_ENV` is
/// set. It begins a transaction, sends, flushes, says READY and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ',');
    let (Some(bootstrap), Some(topic), Some(txn_id)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let producer = rd::transactional_producer(bootstrap, txn_id).expect("producer");
    block_in_place(|| producer.init_transactions(TIMEOUT)).expect("init_transactions");
    producer.begin_transaction().expect("begin_transaction");
    for v in ["k1", "k2"] {
        rd::send(&producer, topic, 0, v, v).await.expect("send");
    }
    block_in_place(|| producer.flush(TIMEOUT)).expect("flush");
    println!("READY");
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_commits_transaction_of_killed_process() {
    let Some(bootstrap) = broker_or_skip("end_txn_commits_transaction_of_killed_process") else {
        return;
    };
    let topic = unique_name("endtxn-killed");
    rd::create_topic(&bootstrap, &topic, 1)
        .await
        .expect("create topic");
    let txn_id = unique_name("endtxn-killed-txn");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", "end_txn_child_process", "--nocapture"])
        .env(CHILD_ENV, format!("{bootstrap},{topic},{txn_id}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let ready = block_in_place(|| {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim() == "READY")
    });
    // SIGKILL: no destructor, no abort, no EndTxn from the producer.
    child.kill().expect("kill child");
    let status = child.wait().expect("reap child");
    assert!(ready, "child exited before READY: {status}");

    let report = verify(&bootstrap, &topic, 2).await;
    assert_eq!(report.open, 2);
    let txn = report.open_transactions[0].clone();
    let outcome = wire::end_txn(
        &wire::Cluster::plaintext(&bootstrap),
        &txn_id,
        txn.producer_id,
        txn.producer_epoch,
        true,
    )
    .await;
    println!(
        "end_txn after SIGKILL (pid {}, epoch {}) -> {outcome:?}",
        txn.producer_id, txn.producer_epoch
    );
    assert_eq!(outcome.expect("end_txn"), EndTxnOutcome::Done);
    let after = verify(&bootstrap, &topic, 0).await;
    assert_eq!(values(&after), vec!["k1", "k2"]);
    assert_eq!((after.aborted, after.open), (0, 0));
}
