//! Exactly-once under `kill -9`: one job, killed at 20+ random moments and at the named crash
//! points (during state upload, between the last ack and `_metadata`, between `_metadata` and
//! the sink commit), each time restarted with automatic restore from the real S3 server. The
//! file sink's final output must equal the oracle computed from the generator's seed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{OrdersJob, assert_matches_oracle, fresh_bucket, s3_endpoint, spawn_runtime};

/// Wait for the process to exit; past `limit`, kill it and fail with `why`.
fn wait_exit(
    mut child: std::process::Child,
    limit: Duration,
    why: &str,
) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("{why} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_dash_nine_at_random_moments_never_loses_or_doubles_a_window() {
    let Some(ep) = s3_endpoint("fault_injection") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(fresh_bucket(&ep, "faults"));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "faults",
        format!("s3://{bucket}/chk"),
        tmp.path().join("out"),
    );
    job.s3_endpoint = Some(ep);
    job.count = 400_000;
    job.rate = Some(20_000);
    job.interval_ms = 150;
    job.retained = 2;
    let file = job.write(tmp.path());
    let log = tmp.path().join("runtime.log");

    let seed = common::fault_seed();
    let mut rng = seed;
    let points = ["during-upload", "before-metadata", "after-metadata"];
    let mut random_kills = 0;
    let mut point_hits: Vec<&str> = Vec::new();
    let mut runs = 0;
    while (random_kills < 20 || point_hits.len() < 6) && runs < 80 {
        runs += 1;
        let use_point = point_hits.len() < 6 && (random_kills >= 20 || runs % 4 == 0);
        if use_point {
            let p = points[point_hits.len() % points.len()];
            let child = spawn_runtime(&file, &[], &[("WEIR_CRASH_AT", &format!("{p}:0"))], &log);
            let status = wait_exit(
                child,
                Duration::from_secs(60),
                &format!("crash point {p} never reached"),
            );
            if status.signal().is_some() {
                point_hits.push(p);
            } else {
                assert!(
                    status.success(),
                    "run with crash point {p} failed: {status:?}"
                );
            }
        } else {
            let mut child = spawn_runtime(&file, &[], &[], &log);
            let delay = 150 + common::xorshift(&mut rng) % 1200;
            std::thread::sleep(Duration::from_millis(delay));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                let status = child.wait().unwrap();
                assert_eq!(status.signal(), Some(9));
                random_kills += 1;
            }
        }
    }
    println!("killed at {random_kills} random moments; crash points hit: {point_hits:?}");
    assert!(
        random_kills >= 20,
        "only {random_kills} random kills landed while the job ran"
    );
    assert!(point_hits.len() >= 6, "crash points hit: {point_hits:?}");

    // Final run: restore and finish.
    let child = spawn_runtime(&file, &[], &[], &log);
    let status = wait_exit(child, Duration::from_secs(180), "final run did not finish");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "final run failed: {status:?}\n{}",
        &text[text.len().saturating_sub(4000)..]
    );
    // A random kill lands 150-1350 ms after its run starts, which on a loaded machine can be
    // before the run's first checkpoint or its restore: runs that restored are counted, not
    // expected after every kill. Without any, the final run would compute everything afresh
    // and pass the oracle without a checkpoint ever being used.
    let restores = text.matches("restoring").count();
    assert!(
        restores >= 10,
        "expected a restore after many of the {runs} runs, saw {restores}"
    );
    assert_matches_oracle(
        &job,
        &format!("after {random_kills} kills and crash points {point_hits:?}"),
    );
}
