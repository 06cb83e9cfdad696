//! Kafka over SASL and TLS, end to end against the real broker of `tests/kafka-sasl.sh`
//! (nisshi requiring SCRAM authentication; it cannot serve TLS itself, so a TLS terminator
//! from `weir_testkit::front` with a throwaway CA from `tests/tls.sh` stands in front of it).
//!
//! One job (Kafka source -> filter -> transactional Kafka sink) per case, run by the
//! `weir-runtime` binary, its output read from the raw log with Kafka's visibility rule (the
//! verifier of `weir_testkit`) and compared with the input exactly:
//! - SASL_PLAINTEXT with SCRAM-SHA-256;
//! - SASL_SSL with SCRAM-SHA-512 and a client certificate (mutual TLS), killed right after a
//!   checkpoint's `_metadata` is written: the restart finishes that checkpoint's transactions
//!   with the wire client, over TLS and SASL;
//! - a wrong password and a wrong CA each fail at once, naming the broker and what failed.
//!
//! Needs `WEIR_KAFKA_SASL_BROKER` and `WEIR_TLS_DIR` (set by `tests/run-all.sh`); prints
//! SKIPPED without them unless `WEIR_REQUIRE_KAFKA=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_crds::KafkaSecurity;
use weir_runtime::kafka::security::ClientSecurity;
use weir_runtime::kafka::wire::Cluster;
use weir_testkit::front::{self, Transport};

/// Where clients meet the broker: the address it advertises.
const FRONT: &str = "127.0.0.1:9401";
const RECORDS: i64 = 3_000;

struct Case {
    name: &'static str,
    /// The manifest's `security` block (YAML flow), as a user writes it.
    security: String,
    /// Environment of the runtime: password and PEM text, as `secretEnv` would give them.
    env: Vec<(&'static str, String)>,
    crash_after_metadata: bool,
}

impl Case {
    fn spec(&self) -> KafkaSecurity {
        serde_yaml::from_str(&self.security).unwrap()
    }

    /// The same settings for the test's own clients (topic creation, input, verification).
    fn cluster(&self) -> Cluster {
        let lookup = |name: &str| {
            self.env
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        Cluster {
            bootstrap: FRONT.to_string(),
            security: ClientSecurity::from_spec_with("test", &self.spec(), lookup).unwrap(),
        }
    }
}

fn config(cluster: &Cluster) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cluster.bootstrap);
    cluster.security.apply(&mut c);
    c
}

async fn prepare_topics(cluster: &Cluster, input: &str, output: &str) {
    let admin: AdminClient<DefaultClientContext> = config(cluster).create().unwrap();
    let topics = [
        NewTopic::new(input, 3, TopicReplication::Fixed(1)),
        NewTopic::new(output, 3, TopicReplication::Fixed(1)),
    ];
    let results = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
    let producer: FutureProducer = config(cluster).set("linger.ms", "5").create().unwrap();
    for id in 0..RECORDS {
        let value = format!("{{\"id\": {id}, \"amount\": {}}}", id % 97);
        let key = id.to_string();
        producer
            .send(
                FutureRecord::to(input).key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

fn job_yaml(case: &Case, dir: &Path, input: &str, output: &str) -> String {
    let security = &case.security;
    format!(
        "name: {name}
parallelism: 2
checkpoint:
  interval: 100ms
  timeout: 30s
  storage: \"file://{chk}\"
source:
  kafka:
    bootstrapServers: \"{FRONT}\"
    topic: {input}
    bounded: true
    security: {security}
  schema:
    - {{name: id, type: int64}}
    - {{name: amount, type: int64}}
transforms:
  - filter: amount >= 0
sinks:
  - kafka:
      bootstrapServers: \"{FRONT}\"
      topic: {output}
      transactionalIdPrefix: {output}
      transactionTimeout: 2m
      restartBudget: 30s
      keyBy: [id]
      security: {security}
",
        name = case.name,
        chk = dir.join("chk").display(),
    )
}

/// Runs the job to its end (or its crash) and returns the exit status and the log.
fn run(job: &Path, case: &Case, crash: bool, log: &Path) -> std::process::ExitStatus {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-runtime"));
    cmd.args(["run", &job.display().to_string()])
        .env("WEIR_LOG", "info,weir_runtime::kafka::wire=debug")
        .env("WEIR_WAIT_TIMEOUT", "60s")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    if crash {
        cmd.env("WEIR_CRASH_AT", "after-metadata:1");
    }
    let mut child = cmd.spawn().unwrap();
    common::wait_exit_within(&mut child, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("{} did not end\n{}", case.name, common::log_tail(log)))
}

async fn exactly_once(case: &Case, tmp: &Path) {
    let cluster = case.cluster();
    let input = weir_testkit::unique_name(&format!("{}-in", case.name));
    let output = weir_testkit::unique_name(&format!("{}-out", case.name));
    prepare_topics(&cluster, &input, &output).await;
    let dir = tmp.join(case.name);
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("job.yaml");
    std::fs::write(&job, job_yaml(case, &dir, &input, &output)).unwrap();

    let log = dir.join("run-1.log");
    let status = run(&job, case, case.crash_after_metadata, &log);
    if case.crash_after_metadata {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            status.signal(),
            Some(9),
            "expected the injected crash\n{}",
            common::log_tail(&log)
        );
        let log = dir.join("run-2.log");
        let status = run(&job, case, false, &log);
        assert!(
            status.success(),
            "restart failed: {status:?}\n{}",
            common::log_tail(&log)
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("EndTxn finished"),
            "the restart committed nothing through the wire client\n{}",
            common::log_tail(&log)
        );
    } else {
        assert!(status.success(), "{status:?}\n{}", common::log_tail(&log));
    }

    let report = weir_testkit::read_cluster_topic_settled(&cluster, &output, 0)
        .await
        .unwrap();
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &report.committed {
        let v: serde_json::Value =
            serde_json::from_slice(r.value.as_deref().unwrap_or_default()).unwrap();
        *seen.entry(v["id"].as_i64().unwrap()).or_default() += 1;
    }
    let missing: Vec<i64> = (0..RECORDS).filter(|i| !seen.contains_key(i)).collect();
    let twice: Vec<(&i64, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && seen.len() == RECORDS as usize,
        "{}: {} distinct of {RECORDS}; missing {:?}…; more than once {:?}…; open {}",
        case.name,
        seen.len(),
        &missing[..missing.len().min(10)],
        &twice[..twice.len().min(10)],
        report.open
    );
    println!(
        "{}: {RECORDS} records in, {} committed out, each exactly once",
        case.name,
        report.committed.len()
    );
}

/// A job whose brokers refuse it must fail at once (not after the wait limit), saying why.
fn fails_fast(case: &Case, tmp: &Path, want: &[&str]) {
    let dir = tmp.join(case.name);
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("job.yaml");
    std::fs::write(&job, job_yaml(case, &dir, "refused-in", "refused-out")).unwrap();
    let log = dir.join("run.log");
    let took = common::refused_fast(case.name, &log, want, || run(&job, case, false, &log));
    println!("{}: refused in {took:?}", case.name);
}

fn pem(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_sasl_and_tls_is_exactly_once_and_recovers_commits_over_tls() {
    let how = "run tests/kafka-sasl.sh start and tests/tls.sh dir, and export \
               WEIR_KAFKA_SASL_BROKER and WEIR_TLS_DIR";
    let Some(broker) = weir_testkit::needs_env(
        "kafka_security",
        "WEIR_KAFKA_SASL_BROKER",
        "WEIR_REQUIRE_KAFKA",
        how,
    ) else {
        return;
    };
    let Some(tls) =
        weir_testkit::needs_env("kafka_security", "WEIR_TLS_DIR", "WEIR_REQUIRE_KAFKA", how)
    else {
        return;
    };
    let tls = PathBuf::from(tls);
    let tmp = tempfile::tempdir().unwrap();

    // SASL_PLAINTEXT, SCRAM-SHA-256: the front only forwards.
    let plain = front::start(FRONT, &broker, Transport::Plain).await;
    let scram256 = Case {
        name: "sasl-plaintext-scram-256",
        security: "{protocol: sasl-plaintext, sasl: {mechanism: SCRAM-SHA-256, \
                   username: weir-256, passwordEnv: KAFKA_PASSWORD_256}}"
            .into(),
        env: vec![("KAFKA_PASSWORD_256", "weir-256-secret".into())],
        crash_after_metadata: false,
    };
    exactly_once(&scram256, tmp.path()).await;
    let wrong_password = Case {
        name: "wrong-password",
        security: scram256
            .security
            .replace("KAFKA_PASSWORD_256", "KAFKA_WRONG"),
        env: vec![("KAFKA_WRONG", "not-the-secret".into())],
        crash_after_metadata: false,
    };
    fails_fast(
        &wrong_password,
        tmp.path(),
        &["SASL SCRAM-SHA-256 authentication as 'weir-256'", FRONT],
    );
    plain.stop().await;

    // SASL_SSL, SCRAM-SHA-512, mutual TLS; killed after `_metadata`, recovered over TLS.
    let _tls_front = front::start(
        FRONT,
        &broker,
        Transport::Tls {
            dir: &tls,
            mutual: true,
        },
    )
    .await;
    let security_512 = "{protocol: sasl-ssl, sasl: {mechanism: SCRAM-SHA-512, \
                        username: weir-512, passwordEnv: KAFKA_PASSWORD_512}, \
                        tls: {caPemEnv: KAFKA_CA, certificatePemEnv: KAFKA_CERT, \
                        keyPemEnv: KAFKA_KEY}}";
    let tls_env = |ca: &str| {
        vec![
            ("KAFKA_PASSWORD_512", "weir-512-secret".to_string()),
            ("KAFKA_CA", pem(&tls, ca)),
            ("KAFKA_CERT", pem(&tls, "client.pem")),
            ("KAFKA_KEY", pem(&tls, "client.key")),
        ]
    };
    let scram512 = Case {
        name: "sasl-ssl-scram-512-mtls",
        security: security_512.into(),
        env: tls_env("ca.pem"),
        crash_after_metadata: true,
    };
    exactly_once(&scram512, tmp.path()).await;
    let wrong_ca = Case {
        name: "wrong-ca",
        security: security_512.into(),
        env: tls_env("other-ca.pem"),
        crash_after_metadata: false,
    };
    fails_fast(
        &wrong_ca,
        tmp.path(),
        &["TLS with Kafka broker", FRONT, "UnknownIssuer"],
    );
}
