//! Test support for Weir: finding the test Kafka broker, and a read_committed verifier
//! that does not trust the broker's own read_committed implementation.
//!
//! The local test broker (nisshi) never lists aborted transactions in Fetch responses,
//! so its read_committed consumers also see aborted records; its log does hold correct
//! COMMIT/ABORT control batches, though. [`read_topic`] therefore reads the raw log and
//! applies Kafka's visibility rule itself, which gives the same answer on any broker.

pub mod browser;
pub mod front;
pub mod rd;
pub mod s3_proxy;
mod task_stack;
pub mod varint;
mod verify;

pub use task_stack::{TASK_STACK, on_a_task_stack};
pub use verify::{
    CommittedRecord, OpenTransaction, PartitionReport, SETTLE_TIMEOUT, TopicReport, VerifyError,
    committed_records, read_cluster_topic, read_cluster_topic_settled, read_topic,
    read_topic_settled,
};

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable naming a real Kafka cluster; preferred over the local broker so
/// CI can run the same tests against Apache Kafka.
pub const ENV_KAFKA_BOOTSTRAP: &str = "KAFKA_BOOTSTRAP";
/// Environment variable set by `tests/kafka.sh` for the local nisshi broker.
pub const ENV_WEIR_KAFKA_BOOTSTRAP: &str = "WEIR_KAFKA_BOOTSTRAP";
/// When `1`, tests must fail instead of skipping if no broker is configured, so a CI
/// job that is supposed to exercise Kafka cannot silently pass by skipping.
pub const ENV_REQUIRE_KAFKA: &str = "WEIR_REQUIRE_KAFKA";

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// What a test needs from its environment: `value`, else one `SKIPPED` line saying how to
/// provide it (`how`) — unless `require` (a `WEIR_REQUIRE_*` variable) is set, which makes a
/// missing server a failure, so a CI job meant to exercise it cannot pass by skipping.
///
/// # Panics
///
/// When `value` is `None` and `require` is set.
pub fn needs(test: &str, value: Option<String>, require: &str, how: &str) -> Option<String> {
    if value.is_some() {
        return value;
    }
    assert!(
        non_empty_env(require).is_none(),
        "{test}: {require} is set but {how}"
    );
    println!("SKIPPED {test}: {how}");
    None
}

/// [`needs`] for a server named by one environment variable (`var`, non-empty).
///
/// # Panics
///
/// When `var` is unset or empty and `require` is set.
pub fn needs_env(test: &str, var: &str, require: &str, how: &str) -> Option<String> {
    needs(test, non_empty_env(var), require, how)
}

/// The Kafka bootstrap list for tests: `KAFKA_BOOTSTRAP` (a real Kafka cluster) if set,
/// else `WEIR_KAFKA_BOOTSTRAP` (the local broker from `tests/kafka.sh`), else `None`.
pub fn bootstrap() -> Option<String> {
    non_empty_env(ENV_KAFKA_BOOTSTRAP).or_else(|| non_empty_env(ENV_WEIR_KAFKA_BOOTSTRAP))
}

/// Whether tests run against a real Kafka cluster (`KAFKA_BOOTSTRAP`), where broker-side
/// read_committed can be trusted and compared with the verifier.
pub fn is_real_kafka() -> bool {
    non_empty_env(ENV_KAFKA_BOOTSTRAP).is_some()
}

/// Whether `WEIR_REQUIRE_KAFKA=1`: a missing broker is then a test failure.
pub fn require_kafka() -> bool {
    non_empty_env(ENV_REQUIRE_KAFKA).as_deref() == Some("1")
}

/// The bootstrap list, or `None` after printing one `SKIPPED:` line when no broker is
/// configured.
///
/// # Panics
///
/// When no broker is configured but `WEIR_REQUIRE_KAFKA=1`, so the test fails.
pub fn broker_or_skip(test: &str) -> Option<String> {
    needs(
        test,
        bootstrap(),
        ENV_REQUIRE_KAFKA,
        "no Kafka broker (set KAFKA_BOOTSTRAP or run tests/kafka.sh start)",
    )
}

/// A topic (or transactional id) name no earlier test run has used, so tests on a
/// long-lived broker never see each other's records or transactions.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}
