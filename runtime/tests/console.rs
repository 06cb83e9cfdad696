//! The web console in a real browser (headless Chromium through chromedriver) against a
//! running `weir-runtime run`: the page shows the job running and its dataflow with non-zero
//! rates, a savepoint without the control token is refused and leaves nothing, and one with
//! the token appears in the savepoint history and the action log. What the page shows is
//! checked against the control API and the checkpoint storage, not against the page alone.
//!
//! Without Chromium and chromedriver (Debian's `chromium`, `chromium-driver`) the test prints
//! SKIPPED, unless `WEIR_REQUIRE_BROWSER=1` (CI) makes that a failure. With
//! `WEIR_UPDATE_SCREENSHOTS=1` it writes the screenshots the README shows into `docs/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::Duration;

use common::page::{rate, screenshot, until};
use common::{log_tail, spawn_runtime, stop_cleanly};
use weir_testkit::browser::{self, Browser, BrowserError};

const TOKEN: &str = "console-test-token";

fn job(dir: &Path) -> String {
    format!(
        "name: console-demo
parallelism: 2
checkpoint: {{interval: 1s, storage: \"file://{dir}/chk\", retained: 2}}
source:
  datagen:
    seed: 7
    rate: 20000
    splits: 2
    fields:
      seq: {{sequence: {{}}}}
      store: {{key: {{cardinality: 50, prefix: store-}}}}
      amount: {{uniform: {{min: 1, max: 100}}}}
      ts: {{eventTime: {{start: \"2026-01-01T00:00:00Z\", step: 1ms}}}}
  schema:
    - {{name: seq, type: int64}}
    - {{name: store, type: string}}
    - {{name: amount, type: int64}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts, maxOutOfOrderness: 100ms}}
transforms:
  - filter: \"amount > 10\"
  - window:
      tumbling: 1s
      keyBy: [store]
      aggregates: {{sales: \"count(*)\", revenue: \"sum(amount)\"}}
sinks:
  - blackhole: {{}}
",
        dir = dir.display()
    )
}

/// The job's process, killed when the test ends early (a failed assertion), so that no
/// runtime outlives its test.
struct Job(std::process::Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_running_job_and_takes_a_savepoint_only_with_the_token() {
    let Some((chromium, driver)) = browser::installed() else {
        assert!(
            std::env::var(browser::ENV_REQUIRE_BROWSER).as_deref() != Ok("1"),
            "WEIR_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed"
        );
        println!("SKIPPED: the console's browser test needs Debian's chromium and chromium-driver");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("job.yaml");
    std::fs::write(&file, job(tmp.path())).unwrap();
    let log = tmp.path().join("log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Job(spawn_runtime(
        &file,
        &["--control-addr", &addr],
        &[("WEIR_CONTROL_TOKEN", TOKEN)],
        &log,
    ));
    let base = format!("http://{addr}");
    let t = std::time::Instant::now();
    let ready = || async {
        let r = reqwest::get(format!("{base}/readyz")).await;
        r.is_ok_and(|r| r.status() == 200)
    };
    while !ready().await {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", log_tail(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let b = Browser::start(&chromium, &driver).await.unwrap();
    b.goto(&format!("{base}/console/")).await.unwrap();
    let limit = Duration::from_secs(30);
    // The badge's text as drawn: the state, upper case.
    until(&b, "#state", "RUNNING", true).await;
    assert_eq!(b.text("#job-name").await.unwrap(), "console-demo");
    // The dataflow: records leave the source, pass the filter and reach the window, each at
    // a rate above zero.
    let source = b
        .wait_for("a source rate", limit, || rate(&b, "[data-op=source] .out"))
        .await
        .unwrap();
    let window = b
        .wait_for("the window's input rate", limit, || {
            rate(&b, "[data-op=window-0] .in")
        })
        .await
        .unwrap();
    assert!(
        source > 1_000.0,
        "source at {source}/s, datagen makes 20 000/s"
    );
    assert!(window > 0.0);
    assert!(
        b.text("#graph")
            .await
            .unwrap()
            .contains("key groups of [store]"),
        "the shuffle by the window's key is not drawn"
    );
    // Busy time per subtask: the window's subtasks work on 20 000 records/s, so each is busy
    // a measurable share of its time, and never more than all of it.
    let busy = b
        .wait_for("the window subtasks' busy time", limit, || async {
            let v = b.attribute("[data-task=s1-t0]", "data-busy").await?;
            Ok(v.and_then(|v| v.parse::<f64>().ok()).filter(|v| *v > 0.0))
        })
        .await
        .unwrap();
    assert!(busy <= 1.0, "busy {busy}");
    // Event time per stage: the window's stage has a watermark behind now.
    until(&b, ".stage-wm[data-stage=\"1\"]", "behind", true).await;
    until(&b, "#checkpoints tbody", "restore point", true).await;
    // The charts draw the history, sampled every 5 s: two samples make a line.
    until(&b, "#range-rate", "collecting", false).await;
    screenshot(&b, "console-job.png", tmp.path()).await;

    // Without the token: refused by the API, said on the page, kept in the action log, and
    // no savepoint is taken.
    b.click("#savepoint").await.unwrap();
    let refused = until(&b, "#action-result", "refused", true).await;
    assert!(refused.contains("401"), "{refused}");
    until(&b, "#actions tbody", "refused", true).await;
    let (code, report) = get(&format!("{base}/v1/job"), Some(TOKEN)).await;
    assert_eq!(code, 200);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["savepoints"], serde_json::json!([]), "{report}");

    // With it: the savepoint completes, shows in the history with its path, and that path
    // holds a savepoint.
    b.type_into("#token", TOKEN).await.unwrap();
    b.click("#savepoint").await.unwrap();
    let path = b
        .wait_for("the savepoint in the history", limit, || async {
            match b
                .text("#savepoints tbody tr[data-status=completed] td.path")
                .await
            {
                Ok(p) if !p.is_empty() => Ok(Some(p)),
                Ok(_) | Err(BrowserError::Command { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
        .unwrap();
    let log_text = b.text("#actions tbody").await.unwrap();
    assert!(
        log_text.contains("accepted (sp-req-1)"),
        "the action log lacks the savepoint: {log_text}"
    );
    let (_, report) = get(&format!("{base}/v1/job"), Some(TOKEN)).await;
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["savepoints"][0]["status"], "completed", "{report}");
    assert_eq!(report["savepoints"][0]["path"], path.as_str(), "{report}");
    let dir = path.strip_prefix("file://").unwrap();
    assert!(
        Path::new(dir).join("_metadata").is_file(),
        "the page's savepoint {path} holds no _metadata"
    );
    screenshot(&b, "console-savepoint.png", tmp.path()).await;
    drop(b);
    stop_cleanly(&mut child.0, "TERM", &log, "the console's job");
}
