//! Stop signals reach the job whenever they arrive: one sent while the job is still starting
//! (restoring, waiting for a broker) is acted on once it runs, not met by the default action
//! of killing the process; a second one exits at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::process::Command;
use std::time::Duration;

use common::{log_tail, spawn_runtime, stop_cleanly, wait_exit_within};

fn signal(child: &std::process::Child, name: &str) {
    Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
}

#[test]
fn a_stop_signal_during_start_up_still_stops_with_a_final_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("job.yaml");
    std::fs::write(
        &file,
        format!(
            "name: early-stop
checkpoint: {{interval: 1s, storage: \"file://{}/chk\"}}
source:
  datagen: {{seed: 1, fields: {{n: {{sequence: {{}}}}}}}}
  schema: [{{name: n, type: int64}}]
sinks: [{{blackhole: {{}}}}]
",
            tmp.path().display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("log");
    let mut job = spawn_runtime(&file, &[], &[], &log);
    // The first line start-up logs; the job is not running yet. (A signal before the
    // process has read its job file still meets the default action.)
    common::wait_for_line(&log, "claimed storage generation", Duration::from_secs(30));
    stop_cleanly(&mut job, "TERM", &log, "the job stopped during start-up");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("stopped after a final checkpoint"),
        "no final checkpoint\n{}",
        log_tail(&log)
    );
}

#[test]
fn a_second_signal_while_waiting_for_a_broker_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("job.yaml");
    std::fs::write(
        &file,
        "name: waits
source:
  kafka: {bootstrapServers: \"127.0.0.1:1\", topic: t, format: json}
  schema: [{name: a, type: int64}]
sinks: [{blackhole: {}}]
",
    )
    .unwrap();
    let log = tmp.path().join("log");
    let mut job = spawn_runtime(&file, &[], &[], &log);
    // Start-up is waiting for the broker once it says so (its signal handler is installed
    // before): a fixed delay instead could signal a process slowed by a busy machine before
    // that.
    common::wait_for_line(
        &log,
        "waiting for Kafka at 127.0.0.1:1",
        Duration::from_secs(60),
    );
    signal(&job, "TERM");
    assert!(
        wait_exit_within(&mut job, Duration::from_secs(2)).is_none(),
        "the first signal during start-up ended the process\n{}",
        log_tail(&log)
    );
    assert!(
        log_tail(&log).contains("stopping once the job has started"),
        "the first signal was not acknowledged\n{}",
        log_tail(&log)
    );
    signal(&job, "TERM");
    let status = wait_exit_within(&mut job, Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(130), "{}", log_tail(&log));
}
