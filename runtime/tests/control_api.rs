//! The control API over real HTTP: status, savepoints, metrics, readiness and stop. Every
//! `/v1` answer and the termination message are also read as the operator reads them, through
//! the contract's types (`weir_crds::control`), and must come back out byte-equivalent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::OrdersJob;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_crds::control::{
    AttemptStatus, ControlToken, JobArgs, JobReport, JobState, LogFormat, RuntimeArgs, RuntimeCli,
    RuntimeCommand, SavepointAccepted, SavepointReport, SavepointState, Start, StopAccepted,
    TERMINATION_LOG_ENV,
};
use weir_runtime::checkpoint::coordinator::Outcome;
use weir_runtime::job::{RunOptions, RunningJob, start};

/// Minimal HTTP/1.1 client: enough for a handful of requests, no extra dependency.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, body, "").await
}

/// [`http`] with extra header lines (each ending in `\r\n`).
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// `body` read as the contract's `T`, which must carry all of it: written back out it is the
/// same JSON, so a field the runtime serves and the type lacks (or the reverse) fails here,
/// not in a cluster.
fn contract<T: DeserializeOwned + Serialize>(body: &str) -> T {
    let raw: serde_json::Value = serde_json::from_str(body).unwrap();
    let typed: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("not a {}: {e}\n{body}", std::any::type_name::<T>()));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        raw,
        "{} does not carry the whole answer",
        std::any::type_name::<T>()
    );
    typed
}

/// The orders job named `name`, endless at 5 000 records/s, checkpointing every 100 ms under
/// `tmp`.
fn endless(tmp: &tempfile::TempDir, name: &str) -> OrdersJob {
    let mut job = OrdersJob::new(
        name,
        format!("file://{}", tmp.path().join("chk").display()),
        tmp.path().join("out"),
    );
    job.count = 10_000_000;
    job.rate = Some(5_000);
    job.interval_ms = 100;
    job
}

/// Job file `yaml` (`name`.yaml) running in this process, its control API on a free port.
async fn serve(name: &str, yaml: &str) -> (RunningJob, SocketAddr) {
    let plan = weir_runtime::plan_source(&format!("{name}.yaml"), yaml).unwrap();
    let running = start(
        plan,
        RunOptions {
            control_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    let addr = running.control_addr.expect("bound");
    (running, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_savepoint_metrics_and_stop_work_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (running, addr) = serve("api", &endless(&tmp, "api").yaml()).await;
    assert_eq!(http(addr, "GET", "/healthz", "").await.0, 200);
    assert_eq!(http(addr, "GET", "/readyz", "").await.0, 200);

    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, body) = http(addr, "GET", "/v1/job", "").await;
    assert_eq!(code, 200);
    let report: JobReport = contract(&body);
    assert_eq!(report.state, JobState::Running);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["parallelism"], 2);
    assert!(v["recordsIn"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["lastCheckpoint"]["sizeBytes"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(v["lastCheckpoint"]["durationMs"].is_u64(), "{v}");
    // State in memory: nothing on local disk to report.
    assert!(v["lastCheckpoint"]["diskBytes"].is_null(), "{v}");
    assert!(v["lastCheckpoint"]["memoryBytes"].is_null(), "{v}");
    assert!(
        v["watermarks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["watermark"].is_i64()),
        "{v}"
    );
    assert_eq!(v["sinks"][0]["guarantee"], "exactly-once", "{v}");

    let (code, body) = http(addr, "POST", "/v1/savepoints", "").await;
    assert_eq!(code, 202);
    let SavepointAccepted { id } = contract(&body);
    let mut sp = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, b) = http(addr, "GET", &format!("/v1/savepoints/{id}"), "").await;
        let typed: SavepointReport = contract(&b);
        sp = serde_json::from_str(&b).unwrap();
        if typed.status != SavepointState::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sp["status"], "completed", "{sp}");
    // The report now lists the savepoint request and checkpoints of several kinds and states.
    let (_, body) = http(addr, "GET", "/v1/job", "").await;
    let report: JobReport = contract(&body);
    assert!(
        report
            .savepoints
            .iter()
            .any(|s| s.id == id && s.status == SavepointState::Completed),
        "{body}"
    );
    assert!(
        report
            .checkpoints
            .iter()
            .any(|c| c.status == AttemptStatus::Completed),
        "{body}"
    );
    let path = sp["path"].as_str().unwrap();
    assert!(
        std::path::Path::new(path.trim_start_matches("file://"))
            .join("_metadata")
            .exists(),
        "{path}"
    );
    assert_eq!(http(addr, "GET", "/v1/savepoints/nope", "").await.0, 404);

    let (code, metrics) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(code, 200);
    for name in [
        "weir_records_out_total{operator=\"source\"}",
        "weir_checkpoint_duration_seconds_bucket",
        "weir_checkpoint_size_bytes",
        "weir_checkpoint_written_bytes",
        "weir_alignment_seconds_total",
        "weir_backpressure_seconds_total",
        "weir_watermark_timestamp_seconds{task=\"s0-t0\"}",
        // The window's state, per subtask, as its last checkpoint encoded it.
        "weir_operator_state_bytes{operator=\"window-0\",task=\"s1-t0\"}",
        "weir_operator_state_uploaded_bytes{operator=\"window-0\",task=\"s1-t0\"}",
        "# EOF",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
    // Durations and times in seconds, as Prometheus expects: the newest checkpoint completed
    // moments ago and the job has been up for a while.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
            .parse()
            .unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value("weir_last_checkpoint_completed_timestamp_seconds");
    assert!(
        now - last < 120.0 && last <= now + 1.0,
        "last checkpoint at {last}, now {now}"
    );
    assert!(value("weir_uptime_seconds") > 0.0);
    // Stateless operators report no state.
    assert!(!metrics.contains("weir_operator_state_bytes{operator=\"t0-filter\""));
    let raw = {
        let mut st = tokio::net::TcpStream::connect(addr).await.unwrap();
        st.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        st.read_to_end(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).to_lowercase()
    };
    assert!(
        raw.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{}",
        &raw[..raw.len().min(400)]
    );

    let (code, body) = http(addr, "POST", "/v1/stop", "{\"savepoint\": true}").await;
    assert_eq!(code, 202);
    assert_eq!(
        contract::<StopAccepted>(&body),
        StopAccepted {
            stopping: true,
            savepoint: true
        }
    );
    let outcome = tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .unwrap()
        .unwrap();
    let Outcome::Stopped { savepoint: Some(p) } = outcome else {
        panic!("expected a stop with savepoint, got {outcome:?}")
    };
    assert!(p.contains("savepoints/sp-"), "{p}");
}

/// With state on disk, each checkpoint reports what the stores held outside it: table files
/// on local disk and write buffers, summed over subtasks (what `kubectl get sj` shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_job_reports_its_state_on_disk_and_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = endless(&tmp, "disk-api");
    job.rate = Some(20_000);
    job.stores = 5_000;
    let yaml = format!(
        "{}stateBackend: {{type: disk, dir: \"{}\", memory: 64Mi}}\n",
        job.yaml(),
        tmp.path().join("state").display()
    );
    let (running, addr) = serve("disk-api", &yaml).await;
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (code, body) = http(addr, "GET", "/v1/job", "").await;
        assert_eq!(code, 200);
        contract::<JobReport>(&body);
        last = serde_json::from_str(&body).unwrap();
        if last["lastCheckpoint"]["diskBytes"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    let c = &last["lastCheckpoint"];
    let disk = c["diskBytes"].as_u64().unwrap_or(0);
    assert!(disk > 0, "no state on disk reported: {last}");
    assert!(c["memoryBytes"].is_u64(), "{last}");
    assert!(c["sizeBytes"].as_u64().unwrap() > 0, "{last}");
    let (code, _) = http(addr, "POST", "/v1/stop", "{}").await;
    assert_eq!(code, 202);
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .unwrap()
        .unwrap();
}

/// With a control token, every `/v1` route refuses a caller without it or with another one
/// (`401`, and nothing happens: the job keeps running), serves the one holding it, and the
/// probes and `/metrics` stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_token_locks_the_v1_routes_and_leaves_probes_and_metrics_open() {
    let tmp = tempfile::tempdir().unwrap();
    let job = endless(&tmp, "locked");
    let plan = weir_runtime::plan_source("locked.yaml", &job.yaml()).unwrap();
    let token = ControlToken::new("9f2c-the-operators-token").unwrap();
    let running = start(
        plan,
        RunOptions {
            control_addr: Some("127.0.0.1:0".parse().unwrap()),
            control_token: Some(token.clone()),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    let addr = running.control_addr.expect("bound");
    let granted = format!("Authorization: {}\r\n", token.bearer());
    let wrong = "Authorization: Bearer 9f2c-the-operators-toke\r\n";
    for path in ["/healthz", "/metrics"] {
        assert_eq!(http(addr, "GET", path, "").await.0, 200, "{path}");
    }
    for (method, path, body) in [
        ("GET", "/v1/job", ""),
        ("POST", "/v1/savepoints", ""),
        ("GET", "/v1/savepoints/sp-req-1", ""),
        ("POST", "/v1/stop", "{\"savepoint\": false}"),
    ] {
        let (code, text) = http(addr, method, path, body).await;
        assert_eq!(code, 401, "{method} {path} without a token: {text}");
        assert!(text.contains("control token"), "{text}");
        let (code, text) = http_with(addr, method, path, body, wrong).await;
        assert_eq!(code, 401, "{method} {path} with a wrong token: {text}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, body) = http_with(addr, "GET", "/v1/job", "", &granted).await;
    assert_eq!(code, 200, "{body}");
    let report: JobReport = contract(&body);
    assert_eq!(
        report.state,
        JobState::Running,
        "refused stop was not obeyed"
    );
    assert!(report.savepoints.is_empty(), "refused savepoint was taken");

    let (code, body) =
        http_with(addr, "POST", "/v1/stop", "{\"savepoint\": false}", &granted).await;
    assert_eq!(code, 202, "{body}");
    let outcome = tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, Outcome::Stopped { .. }), "{outcome:?}");
}

/// The binary takes the command line the operator writes (`RuntimeCli::to_args`, here with a
/// start from empty state) and leaves its end in the termination message as an `Outcome`:
/// `finished` for bounded input, `failed` with the error for a job file that does not exist.
#[test]
fn the_binary_reads_the_operators_arguments_and_writes_its_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "bounded",
        format!("file://{}", tmp.path().join("chk").display()),
        tmp.path().join("out"),
    );
    job.count = 2_000;
    let file = job.write(tmp.path());
    let run = |file: String, name: &str| {
        let cli = RuntimeCli {
            command: RuntimeCommand::Run(RuntimeArgs {
                job: JobArgs {
                    start: Some(Start {
                        id: "s-1".into(),
                        from: None,
                    }),
                    ..JobArgs::default()
                },
                control_addr: None,
                ..RuntimeArgs::new(file)
            }),
            log_format: LogFormat::Json,
        };
        let message = tmp.path().join(format!("{name}.termination"));
        let log = tmp.path().join(format!("{name}.log"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir-runtime"))
            .args(cli.to_args())
            .env(TERMINATION_LOG_ENV, &message)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let status = common::wait_exit_within(&mut child, Duration::from_secs(60));
        let text = std::fs::read_to_string(&message).unwrap_or_default();
        (status, contract::<weir_crds::control::Outcome>(&text), log)
    };

    let (status, outcome, log) = run(file.display().to_string(), "bounded");
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        common::log_tail(&log)
    );
    assert_eq!(outcome, weir_crds::control::Outcome::Finished);

    let missing = tmp.path().join("missing.yaml").display().to_string();
    let (status, outcome, _) = run(missing, "missing");
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    let weir_crds::control::Outcome::Failed { error } = outcome else {
        panic!("expected a failure, got {outcome:?}")
    };
    assert!(error.contains("missing.yaml"), "{error}");
}

/// A control token that is set but blank (an empty Secret key) is not "no token": the binary
/// refuses to start, naming the variable, instead of serving `/v1` to anyone. Mutation: read
/// a blank variable as unset (as before) and the runtime starts with an open control API.
#[test]
fn a_blank_control_token_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let job = OrdersJob::new(
        "blank-token",
        format!("file://{}", tmp.path().join("chk").display()),
        tmp.path().join("out"),
    );
    let file = tmp.path().join("job.yaml");
    std::fs::write(&file, job.yaml()).unwrap();
    let log = tmp.path().join("runtime.log");
    for blank in ["", "   \n"] {
        let mut child = common::spawn_runtime(
            &file,
            &["--control-addr", "127.0.0.1:0"],
            &[("WEIR_CONTROL_TOKEN", blank)],
            &log,
        );
        common::refused_fast(
            "a runtime with a blank control token",
            &log,
            &["WEIR_CONTROL_TOKEN is set but blank"],
            || child.wait().unwrap(),
        );
    }
}
