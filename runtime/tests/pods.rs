//! One job as several processes (pods): the same output as one process, exactly-once under
//! `kill -9` of any pod, a stopped (partitioned) coordinator that completes nothing once its
//! successor started, and rescaling 1 -> 3 -> 2 pods through savepoints.
//!
//! The tests start pods the way the operator does (one process per pod, `--pod-index`,
//! `--peers`, a shared token), or through `run --pods N`, the local launcher.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Incarnation, OrdersJob, assert_matches_oracle, free_address, fresh_bucket, log_tail,
    s3_endpoint, spawn_runtime,
};

fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
}

fn file_job(tmp: &Path, name: &str) -> OrdersJob {
    let mut job = OrdersJob::new(
        name,
        format!("file://{}", tmp.join("chk").display()),
        tmp.join("out"),
    );
    job.parallelism = 3;
    job.count = 60_000;
    job
}

/// Three processes, one job: every window exactly once, as the oracle computes it; and
/// records really crossed between the pods.
#[test]
fn three_pods_write_exactly_what_the_oracle_computes() {
    let tmp = tempfile::tempdir().unwrap();
    let job = file_job(tmp.path(), "three-pods");
    let file = job.write(tmp.path());
    let log = tmp.path().join("run.log");
    let mut child = spawn_runtime(&file, &["--pods", "3", "--log-format", "text"], &[], &log);
    let status = common::wait_exit_within(&mut child, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("three pods did not finish\n{}", log_tail(&log)));
    assert!(status.success(), "{status:?}\n{}", log_tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    for pod in 0..3 {
        assert!(
            text.contains(&format!("[pod {pod}]")) && text.contains(&format!("pod=Some({pod})")),
            "pod {pod} never ran\n{}",
            log_tail(&log)
        );
    }
    assert_matches_oracle(&job, "three pods");
}

/// Pods refuse a caller without the job's token, and one from another incarnation.
#[test]
fn a_pod_refuses_links_without_the_token_or_from_another_incarnation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = file_job(tmp.path(), "refuse");
    job.count = 100_000_000;
    job.rate = Some(1_000);
    let file = job.write(tmp.path());
    let log = tmp.path().join("run.log");
    // Pod 1 of a two-pod job whose pod 0 is an impostor with the wrong token: pod 1 is
    // refused and fails, naming why.
    let peers = [free_address(0), free_address(1)];
    let spawn = |i: u32, token: &str, incarnation: &str| {
        Command::new(env!("CARGO_BIN_EXE_weir-runtime"))
            .arg("run")
            .arg(&file)
            .args(["--control-addr", "none", "--pods", "2"])
            .args(["--pod-index", &i.to_string(), "--peers", &peers.join(",")])
            .args(["--incarnation", incarnation])
            .env("WEIR_EXCHANGE_TOKEN", token)
            .env("WEIR_WAIT_TIMEOUT", "20s")
            .stdout(Stdio::null())
            .stderr(common::append_to(&log))
            .spawn()
            .unwrap()
    };
    for (token, incarnation, want) in [
        (
            "another-token-0123456789",
            "b",
            "wrong or missing exchange token",
        ),
        (
            "the-right-token-0123456",
            "a",
            "incarnation a is not this pod's",
        ),
    ] {
        let mut p0 = spawn(0, "the-right-token-0123456", "b");
        let mut p1 = spawn(1, token, incarnation);
        let s1 = common::wait_exit_within(&mut p1, Duration::from_secs(30));
        let _ = p0.kill();
        let _ = p0.wait();
        assert!(
            matches!(s1, Some(s) if !s.success()),
            "pod 1 should fail: {s1:?}\n{}",
            log_tail(&log)
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(want), "no `{want}` in\n{}", log_tail(&log));
    }
    // More pods than subtasks: refused before anything starts.
    let out = Command::new(env!("CARGO_BIN_EXE_weir-runtime"))
        .arg("run")
        .arg(&file)
        .args(["--control-addr", "none", "--pods", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pods 4 exceeds the parallelism 3"), "{err}");
    // Without a token at all, a pod does not start.
    let out = Command::new(env!("CARGO_BIN_EXE_weir-runtime"))
        .arg("run")
        .arg(&file)
        .args(["--control-addr", "none", "--pods", "2"])
        .args(["--pod-index", "1", "--peers", &peers.join(",")])
        .env_remove("WEIR_EXCHANGE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WEIR_EXCHANGE_TOKEN"), "{err}");
}

/// Exactly-once across processes: three pods, one of them killed with SIGKILL at 20+ random
/// moments and at the crash points (a state upload in any pod, between the last ack and
/// `_metadata`, between `_metadata` and the commit); the other pods must stop by themselves
/// each time, and the restarted incarnation restores. The file sink's output equals the
/// oracle.
#[test]
fn kill_dash_nine_of_any_pod_never_loses_or_doubles_a_window() {
    let Some(ep) = s3_endpoint("pods_fault_injection") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(fresh_bucket(&ep, "pods-faults"));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "pods-faults",
        format!("s3://{bucket}/chk"),
        tmp.path().join("out"),
    );
    job.s3_endpoint = Some(ep);
    job.parallelism = 3;
    // 50 s of input at the rate: more than the kills leave time for, so the job is still
    // running at every kill; the final run reads the rest.
    job.count = 1_000_000;
    job.rate = Some(20_000);
    job.interval_ms = 150;
    job.retained = 2;
    let file = job.write(tmp.path());
    let log = tmp.path().join("pods.log");

    let seed = common::fault_seed();
    let mut rng = seed;
    let points = ["during-upload", "before-metadata", "after-metadata"];
    let mut random_kills = 0;
    let mut point_hits: Vec<String> = Vec::new();
    let mut runs = 0;
    let no_env = |_: u32| Vec::new();
    while (random_kills < 20 || point_hits.len() < 6) && runs < 80 {
        runs += 1;
        let use_point = point_hits.len() < 6 && (random_kills >= 20 || runs % 4 == 0);
        if use_point {
            let p = points[point_hits.len() % points.len()];
            // The coordinator's points happen in pod 0; uploads in every pod: the other two.
            let target = if p == "during-upload" {
                1 + (point_hits.len() / points.len()) as u32 % 2
            } else {
                0
            };
            let env = move |i: u32| {
                if i == target {
                    vec![("WEIR_CRASH_AT".to_string(), format!("{p}:0"))]
                } else {
                    Vec::new()
                }
            };
            let mut inc = Incarnation::start(&file, 3, &[], &env, &log);
            let statuses = inc.wait(Duration::from_secs(90)).unwrap_or_else(|| {
                inc.kill_all();
                panic!(
                    "crash point {p} in pod {target}: pods did not all stop\n{}",
                    log_tail(&log)
                )
            });
            if statuses[target as usize].signal() == Some(9) {
                point_hits.push(format!("{p}@pod{target}"));
            } else {
                assert!(
                    statuses.iter().all(std::process::ExitStatus::success),
                    "run with crash point {p} failed: {statuses:?}\n{}",
                    log_tail(&log)
                );
            }
        } else {
            let mut inc = Incarnation::start(&file, 3, &[], &no_env, &log);
            let delay = 300 + common::xorshift(&mut rng) % 1500;
            std::thread::sleep(Duration::from_millis(delay));
            let victim = (common::xorshift(&mut rng) % 3) as usize;
            let running = inc.pods.iter_mut().all(|p| p.try_wait().unwrap().is_none());
            if running {
                inc.pods[victim].kill().unwrap(); // SIGKILL
                random_kills += 1;
                // The survivors notice the lost pod and stop by themselves.
                let statuses = inc.wait(Duration::from_secs(45)).unwrap_or_else(|| {
                    inc.kill_all();
                    panic!(
                        "after pod {victim} was killed, the others did not stop\n{}",
                        log_tail(&log)
                    )
                });
                for (i, s) in statuses.iter().enumerate() {
                    assert!(
                        i == victim || !s.success(),
                        "pod {i} went on without pod {victim}: {s:?}\n{}",
                        log_tail(&log)
                    );
                }
            } else {
                inc.kill_all();
            }
        }
    }
    println!("killed a pod at {random_kills} random moments; crash points hit: {point_hits:?}");
    assert!(
        random_kills >= 20,
        "only {random_kills} random kills landed"
    );
    assert!(point_hits.len() >= 6, "crash points hit: {point_hits:?}");

    let mut last = Incarnation::start(&file, 3, &[], &no_env, &log);
    last.all_succeed(Duration::from_secs(240), &log, "final run");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.matches("restoring this pod's subtasks").count() >= 20,
        "expected the other pods to restore after most kills"
    );
    assert_matches_oracle(
        &job,
        &format!("after {random_kills} kills and crash points {point_hits:?}"),
    );
}

fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A partitioned coordinator: pod 0 stops (SIGSTOP) with every acknowledgement of a
/// checkpoint in hand, before `_metadata`. Its successor incarnation starts and runs; then
/// the old pod 0 goes on, finds itself fenced, and completes nothing. The output is exact.
#[test]
fn a_stopped_coordinator_completes_nothing_once_its_successor_started() {
    let Some(ep) = s3_endpoint("pods_zombie") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(fresh_bucket(&ep, "pods-zombie"));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "pods-zombie",
        format!("s3://{bucket}/chk"),
        tmp.path().join("out"),
    );
    job.s3_endpoint = Some(ep);
    job.parallelism = 3;
    job.count = 120_000;
    job.rate = Some(20_000);
    job.interval_ms = 200;
    job.retained = 100;
    let file = job.write(tmp.path());
    let log_a = tmp.path().join("a.log");
    let log_b = tmp.path().join("b.log");
    let pause = |i: u32| {
        if i == 0 {
            vec![("WEIR_PAUSE_AT".to_string(), "before-metadata:3".to_string())]
        } else {
            Vec::new()
        }
    };
    let mut a = Incarnation::start(&file, 3, &[], &pause, &log_a);
    let a0 = a.pods[0].id();
    let t = Instant::now();
    while process_state(a0) != Some('T') {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "pod 0 never paused\n{}",
            log_tail(&log_a)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A's other pods lose pod 0 (keep-alive) and stop by themselves.
    let t = Instant::now();
    while a.pods[1..]
        .iter_mut()
        .any(|p| p.try_wait().unwrap().is_none())
    {
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "A's pods 1 and 2 did not notice that pod 0 stopped\n{}",
            log_tail(&log_a)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The successor starts while A's pod 0 is stopped, and completes checkpoints.
    let mut b = Incarnation::start(&file, 3, &[], &|_| Vec::new(), &log_b);
    common::wait_for_line(&log_b, "checkpoint completed", Duration::from_secs(60));
    signal(a0, "CONT");
    let a0_status = common::wait_exit_within(&mut a.pods[0], Duration::from_secs(60));
    let a_text = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        matches!(a0_status, Some(s) if !s.success()),
        "the old pod 0 should fail once fenced: {a0_status:?}\n{}",
        log_tail(&log_a)
    );
    // Fenced by the generation check, or (had it checked before it stopped) by the
    // create-if-absent `_metadata` its successor already wrote.
    assert!(
        a_text.contains("fenced")
            || a_text.contains("Fenced")
            || a_text.contains("another incarnation completed this checkpoint first"),
        "the old pod 0 stopped for another reason\n{}",
        log_tail(&log_a)
    );
    let completed_after_pause = a_text
        .split("WEIR_PAUSE_AT: continued")
        .nth(1)
        .map_or(0, |after| after.matches("checkpoint completed").count());
    assert_eq!(completed_after_pause, 0, "{}", log_tail(&log_a));
    b.all_succeed(Duration::from_secs(120), &log_b, "B");
    assert_matches_oracle(&job, "after a partitioned coordinator");
    // In storage: every checkpoint from B's first one on is B's.
    let field = |text: &str, key: &str| {
        text.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_string()
    };
    let b_text = std::fs::read_to_string(&log_b).unwrap();
    let job_id = field(&a_text, "job_id=");
    let b_first: u64 = field(&b_text, "first_checkpoint=").parse().unwrap();
    let b_generation: u64 = field(&b_text, "generation=").parse().unwrap();
    rt.block_on(async {
        let storage = weir_runtime::storage::Storage::open(
            &job.storage,
            &weir_crds::S3Spec {
                endpoint: job.s3_endpoint.clone(),
                region: Some("us-east-1".into()),
                path_style: Some(true),
                ca_pem_env: None,
            },
        )
        .await
        .unwrap();
        let layout = weir_runtime::checkpoint::layout::Layout::new("local", &job.name);
        let dirs = weir_runtime::checkpoint::restore::list(&storage, &layout, &job_id)
            .await
            .unwrap();
        let mut checked = 0;
        for (id, done) in dirs {
            if !done || id.0 < b_first {
                continue;
            }
            let dir = layout.checkpoint_dir(&job_id, id);
            let bytes = storage
                .get(&weir_runtime::checkpoint::layout::Layout::metadata_in(&dir))
                .await
                .unwrap()
                .unwrap();
            let meta = weir_runtime::checkpoint::metadata::decode_metadata(&bytes).unwrap();
            assert_eq!(
                meta.generation, b_generation,
                "checkpoint {id} was completed by generation {}",
                meta.generation
            );
            checked += 1;
        }
        assert!(checked > 0, "no checkpoint of B to check");
    });
}

/// A zombie that completes a checkpoint after its successor began: A checks its generation
/// for checkpoint 3 and stops (SIGSTOP) before writing `_metadata`. B starts from checkpoint 2,
/// cleans up what A's sinks prepared for 3, and is killed before its own checkpoint 3. A goes
/// on and writes `_metadata` of 3 (B never did), then finds itself fenced and commits nothing.
/// C must pass over A's checkpoint 3 (never committed, its sinks' work undone) and restore 2;
/// the output equals the oracle. Mutation: restore the newest checkpoint whoever wrote it
/// (drop `fencing::zombie` from `restore::newest`) and C restores A's 3.
#[test]
fn a_checkpoint_a_zombie_completes_after_its_successor_began_is_never_restored() {
    let Some(ep) = s3_endpoint("pods_zombie_metadata") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(fresh_bucket(&ep, "zombie-metadata"));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "zombie-metadata",
        format!("s3://{bucket}/chk"),
        tmp.path().join("out"),
    );
    job.s3_endpoint = Some(ep);
    job.parallelism = 2;
    job.count = 120_000;
    job.rate = Some(20_000);
    job.interval_ms = 200;
    job.retained = 100;
    let file = job.write(tmp.path());
    let (log_a, log_b, log_c) = (
        tmp.path().join("a.log"),
        tmp.path().join("b.log"),
        tmp.path().join("c.log"),
    );
    let env =
        |var: &'static str, at: &'static str| move |_: u32| vec![(var.to_string(), at.to_string())];
    let mut a = Incarnation::start(
        &file,
        1,
        &[],
        &env("WEIR_PAUSE_AT", "metadata-write:3"),
        &log_a,
    );
    let a0 = a.pods[0].id();
    let t = Instant::now();
    while process_state(a0) != Some('T') {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "A never paused\n{}",
            log_tail(&log_a)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut b = Incarnation::start(
        &file,
        1,
        &[],
        &env("WEIR_CRASH_AT", "before-metadata:1"),
        &log_b,
    );
    let b_status = common::wait_exit_within(&mut b.pods[0], Duration::from_secs(60));
    assert_eq!(
        b_status.and_then(|s| s.signal()),
        Some(9),
        "B was not killed at its first checkpoint\n{}",
        log_tail(&log_b)
    );
    assert!(
        std::fs::read_to_string(&log_b)
            .unwrap()
            .contains("checkpoint=2"),
        "B did not restore checkpoint 2\n{}",
        log_tail(&log_b)
    );
    signal(a0, "CONT");
    let a_status = common::wait_exit_within(&mut a.pods[0], Duration::from_secs(60));
    assert!(
        matches!(a_status, Some(s) if !s.success()),
        "A should fail once fenced: {a_status:?}\n{}",
        log_tail(&log_a)
    );
    let a_text = std::fs::read_to_string(&log_a).unwrap();
    let after = a_text
        .split("WEIR_PAUSE_AT: continued")
        .nth(1)
        .unwrap_or_default();
    assert_eq!(
        after.matches("checkpoint completed").count(),
        0,
        "{}",
        log_tail(&log_a)
    );
    // A's `_metadata` of checkpoint 3 is in storage, written by A's generation.
    let (storage, layout) = rt.block_on(async {
        let storage = weir_runtime::storage::Storage::open(
            &job.storage,
            &weir_crds::S3Spec {
                endpoint: job.s3_endpoint.clone(),
                region: Some("us-east-1".into()),
                path_style: Some(true),
                ca_pem_env: None,
            },
        )
        .await
        .unwrap();
        let layout = weir_runtime::checkpoint::layout::Layout::new("local", &job.name);
        (storage, layout)
    });
    let job_id = a_text
        .split("job_id=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let meta = rt
        .block_on(
            storage.get(&weir_runtime::checkpoint::layout::Layout::metadata_in(
                &layout.checkpoint_dir(&job_id, weir_runtime::ids::CheckpointId(3)),
            )),
        )
        .unwrap()
        .expect("A wrote _metadata of checkpoint 3 after B began");
    let meta = weir_runtime::checkpoint::metadata::decode_metadata(&meta).unwrap();
    assert_eq!(meta.generation, 1, "checkpoint 3 is A's");

    let mut c = Incarnation::start(&file, 1, &[], &|_| Vec::new(), &log_c);
    c.all_succeed(Duration::from_secs(120), &log_c, "C");
    let c_text = std::fs::read_to_string(&log_c).unwrap();
    assert!(
        c_text.contains("passing over a checkpoint a fenced incarnation completed"),
        "C did not pass over A's checkpoint 3\n{}",
        log_tail(&log_c)
    );
    assert_matches_oracle(&job, "after a zombie's late checkpoint");
}

/// Stop with a savepoint through pod 0's control API; the savepoint's URI.
fn stop_with_savepoint(child: &mut Child, control: &str, log: &Path) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let accepted = rt.block_on(async {
        for _ in 0..600 {
            if let Ok(r) = reqwest::Client::new()
                .post(format!("http://{control}/v1/stop"))
                .header("content-type", "application/json")
                .body(r#"{"savepoint":true}"#)
                .send()
                .await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    assert!(accepted, "stop not accepted\n{}", log_tail(log));
    let status = common::wait_exit_within(child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("did not stop\n{}", log_tail(log)));
    assert!(status.success(), "{status:?}\n{}", log_tail(log));
    let text = std::fs::read_to_string(log).unwrap();
    let sp = text
        .rsplit("stopped with savepoint ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    assert!(
        sp.contains("/savepoints/"),
        "no savepoint in\n{}",
        log_tail(log)
    );
    sp
}

/// Rescale through savepoints: 1 pod at parallelism 2, then 3 pods at parallelism 3, then 2
/// pods at parallelism 4, each restored from the previous one's stop savepoint; the output
/// is the oracle's.
#[test]
fn rescale_from_one_pod_to_three_to_two_through_savepoints() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = file_job(tmp.path(), "rescale-pods");
    job.count = 150_000;
    job.rate = Some(30_000);
    let file = job.write(tmp.path());
    let log = tmp.path().join("run.log");
    let rows = |job: &OrdersJob| common::read_output(&job.out_dir).0.len();

    let control = free_address(0);
    let mut one = spawn_runtime(
        &file,
        &[
            "--pods",
            "1",
            "--parallelism",
            "2",
            "--control-addr",
            &control,
        ],
        &[],
        &log,
    );
    let t = Instant::now();
    while rows(&job) < 10 {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", log_tail(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    let sp1 = stop_with_savepoint(&mut one, &control, &log);

    let control = free_address(0);
    let mut three = spawn_runtime(
        &file,
        &[
            "--pods",
            "3",
            "--parallelism",
            "3",
            "--control-addr",
            &control,
            "--restore-from",
            &sp1,
        ],
        &[],
        &log,
    );
    let before = rows(&job);
    let t = Instant::now();
    while rows(&job) < before + 10 {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", log_tail(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    let sp2 = stop_with_savepoint(&mut three, &control, &log);
    assert_ne!(sp1, sp2);
    let partial = rows(&job);
    assert!(
        partial < job.oracle().len(),
        "the job should be part-way at the second savepoint: {partial} rows"
    );

    let mut two = spawn_runtime(
        &file,
        &["--pods", "2", "--parallelism", "4", "--restore-from", &sp2],
        &[],
        &log,
    );
    let status = common::wait_exit_within(&mut two, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("two pods did not finish\n{}", log_tail(&log)));
    assert!(status.success(), "{status:?}\n{}", log_tail(&log));
    assert_matches_oracle(&job, "after 1 -> 3 -> 2 pods");
}
