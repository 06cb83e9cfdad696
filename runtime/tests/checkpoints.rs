//! Checkpoint storage, retention, restore, corruption and rescaling, against `file://`, the
//! real local S3 server and the Azure Blob Storage emulator (one scenario, every backend).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    OrdersJob, assert_matches_oracle, azure_container, fresh_bucket, s3_endpoint, unique,
};
use weir_runtime::checkpoint::coordinator::{Outcome, Request};
use weir_runtime::checkpoint::layout::Layout;
use weir_runtime::checkpoint::metadata::decode_metadata;
use weir_runtime::checkpoint::{fencing, restore};
use weir_runtime::job::{JobArgs, RunOptions, RunningJob, start};
use weir_runtime::storage::Storage;

fn s3_spec(ep: &str) -> weir_crds::S3Spec {
    weir_crds::S3Spec {
        endpoint: Some(ep.to_string()),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        ca_pem_env: None,
    }
}

async fn run_job(job: &OrdersJob, opts: RunOptions) -> weir_runtime::error::Result<Outcome> {
    let plan = weir_runtime::plan_source(&format!("{}.yaml", job.name), &job.yaml())?;
    start(plan, opts).await?.wait().await
}

/// Where a test keeps checkpoints: a temp dir, or a fresh bucket on the local S3 server.
async fn backend(kind: &str, test: &str, tmp: &Path) -> Option<(String, Option<String>)> {
    match kind {
        "file" => Some((format!("file://{}", tmp.join("chk").display()), None)),
        "azure" => {
            let container = azure_container(test)?;
            Some((format!("az://{container}/{test}-{}", unique()), None))
        }
        _ => {
            let ep = s3_endpoint(test)?;
            let bucket = fresh_bucket(&ep, test).await;
            Some((format!("s3://{bucket}/checkpoints"), Some(ep)))
        }
    }
}

async fn layout_and_retention(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some((storage_uri, ep)) = backend(kind, "layout_and_retention", tmp.path()).await else {
        return;
    };
    let mut job = OrdersJob::new("retention", storage_uri.clone(), tmp.path().join("out"));
    job.s3_endpoint = ep.clone();
    job.count = 30_000;
    job.rate = Some(30_000);
    job.interval_ms = 50;
    job.retained = 2;
    let outcome = run_job(&job, RunOptions::default()).await.unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_matches_oracle(&job, kind);

    let spec = ep.as_deref().map(s3_spec).unwrap_or_default();
    let storage = Storage::open(&storage_uri, &spec).await.unwrap();
    let layout = Layout::new("local", "retention");
    let generation = fencing::latest(&storage, &layout)
        .await
        .unwrap()
        .expect("a generation claim");
    assert_eq!(generation.generation, 1);
    let dirs = restore::list(&storage, &layout, &generation.job_id)
        .await
        .unwrap();
    let completed: Vec<_> = dirs
        .iter()
        .filter(|(_, d)| **d)
        .map(|(id, _)| id.0)
        .collect();
    assert!(
        completed.len() <= 2,
        "retained 2, found completed {completed:?}"
    );
    let newest = *completed.last().expect("a completed checkpoint");
    assert!(
        newest >= 3,
        "expected several checkpoints in {}ms-interval run, newest is {newest}",
        job.interval_ms
    );
    let keys = storage
        .list(&layout.checkpoint_dir(&generation.job_id, weir_runtime::ids::CheckpointId(newest)))
        .await
        .unwrap();
    let names: Vec<&str> = keys.iter().filter_map(|k| k.rsplit('/').next()).collect();
    assert!(names.contains(&"_metadata"), "{names:?}");
    for t in [
        "s0-t0-g1.state",
        "s0-t1-g1.state",
        "s1-t0-g1.state",
        "s1-t1-g1.state",
    ] {
        assert!(names.contains(&t), "missing {t} in {names:?}");
    }
    let meta_key = format!(
        "{}_metadata",
        layout.checkpoint_dir(&generation.job_id, weir_runtime::ids::CheckpointId(newest))
    );
    let meta = decode_metadata(&storage.get(&meta_key).await.unwrap().unwrap()).unwrap();
    assert_eq!(meta.state_files.len(), 4);
    assert_eq!(meta.generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_land_in_the_layout_and_retention_holds_on_file() {
    layout_and_retention("file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_land_in_the_layout_and_retention_holds_on_s3() {
    layout_and_retention("s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_land_in_the_layout_and_retention_holds_on_azure_blob_storage() {
    layout_and_retention("azure").await;
}

/// What the protocol needs of storage, on the Azure emulator: conditional create (one winner),
/// a missing object read as absent, listing and deleting by string prefix as S3 does (a
/// checkpoint directory, one object, `sp-1` not matching `sp-10`).
#[tokio::test]
async fn azure_blob_storage_keeps_the_storage_contract() {
    let Some(container) = azure_container("azure_storage_contract") else {
        return;
    };
    let root = format!("az://{container}/contract-{}", unique());
    let st = Storage::open(&root, &weir_crds::S3Spec::default())
        .await
        .unwrap();
    assert!(st.probe_conditional_writes("_probe/p1").await.unwrap());
    assert!(st.put_if_absent("a/x", "1".into()).await.unwrap());
    assert!(!st.put_if_absent("a/x", "2".into()).await.unwrap());
    assert_eq!(st.get("a/x").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(st.get("a/missing").await.unwrap(), None);
    for k in ["sp-1/_metadata", "sp-1/s0.state", "sp-10/_metadata", "b/y"] {
        st.put(k, "z".into()).await.unwrap();
    }
    assert_eq!(
        st.list("sp-1/").await.unwrap(),
        ["sp-1/_metadata", "sp-1/s0.state"]
    );
    assert_eq!(st.list("sp-1").await.unwrap().len(), 3, "a string prefix");
    assert_eq!(st.uri("a/x"), format!("{root}/a/x"));
    st.delete_prefix("sp-1/").await.unwrap();
    st.delete_prefix("a/x").await.unwrap();
    assert_eq!(st.list("").await.unwrap(), ["b/y", "sp-10/_metadata"]);
}

/// The id of `running`'s newest completed checkpoint (0 before the first).
fn newest_checkpoint(running: &RunningJob) -> u64 {
    running
        .status
        .read()
        .unwrap()
        .last_checkpoint
        .as_ref()
        .map_or(0, |c| c.id)
}

/// Whether `running` completes checkpoint `id` (or a later one) within `tries` polls 20 ms
/// apart.
async fn reaches_checkpoint(running: &RunningJob, id: u64, tries: u32) -> bool {
    for _ in 0..tries {
        if newest_checkpoint(running) >= id {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    newest_checkpoint(running) >= id
}

/// Run until a few checkpoints completed, then stop (final checkpoint, no savepoint).
async fn run_then_stop(job: &OrdersJob, opts: RunOptions, min_checkpoints: u64) -> Outcome {
    let plan = weir_runtime::plan_source(&format!("{}.yaml", job.name), &job.yaml()).unwrap();
    let running = start(plan, opts).await.unwrap();
    reaches_checkpoint(&running, min_checkpoints, 600).await;
    running
        .requests
        .send(Request::Stop { savepoint: false })
        .await
        .unwrap();
    running.wait().await.unwrap()
}

async fn completed_ids(storage: &Storage, layout: &Layout, job_id: &str) -> Vec<u64> {
    restore::list(storage, layout, job_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, done)| *done)
        .map(|(id, _)| id.0)
        .collect()
}

/// A corrupt newest checkpoint stops the start, naming it (its output may be committed
/// already; an older checkpoint would write it again); with `--skip-unreadable-checkpoints`
/// the newest readable older one is restored. Mutation: fall back without the flag (as before)
/// and the refusal assertions fail.
async fn corruption_is_refused_unless_allowed(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some((storage_uri, ep)) = backend(kind, "corruption", tmp.path()).await else {
        return;
    };
    let mut job = OrdersJob::new("corrupt", storage_uri.clone(), tmp.path().join("out"));
    job.s3_endpoint = ep.clone();
    job.count = 1_000_000;
    job.rate = Some(20_000);
    job.interval_ms = 50;
    job.retained = 10;
    let outcome = run_then_stop(&job, RunOptions::default(), 4).await;
    assert_eq!(outcome, Outcome::Stopped { savepoint: None });

    let spec = ep.as_deref().map(s3_spec).unwrap_or_default();
    let storage = Storage::open(&storage_uri, &spec).await.unwrap();
    let layout = Layout::new("local", "corrupt");
    let job_id = fencing::latest(&storage, &layout)
        .await
        .unwrap()
        .unwrap()
        .job_id;
    let completed = completed_ids(&storage, &layout, &job_id).await;
    assert!(completed.len() >= 3, "{completed:?}");
    let n = completed[completed.len() - 1];
    let prev = completed[completed.len() - 2];
    let before = completed[completed.len() - 3];

    // Flip a byte in the newest _metadata: refused, naming it; the previous one only when
    // allowed.
    let dir = |id: u64| layout.checkpoint_dir(&job_id, weir_runtime::ids::CheckpointId(id));
    let meta_key = format!("{}_metadata", dir(n));
    let mut bytes = storage.get(&meta_key).await.unwrap().unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    storage.put(&meta_key, bytes.into()).await.unwrap();
    let refused = restore::newest(&storage, &layout, &job_id, false)
        .await
        .expect_err("an unreadable newest checkpoint must not be passed over unasked")
        .to_string();
    assert!(
        refused.contains(&format!("checkpoint, {n} ("))
            && refused.contains(&storage.uri(&meta_key)),
        "{refused}"
    );
    let chosen = restore::newest(&storage, &layout, &job_id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        chosen.metadata.id.0, prev,
        "corrupt _metadata of {n} must be skipped"
    );

    // Truncate a state file of that one: the one before is chosen.
    let state_key = format!("{}s1-t0-g1.state", dir(prev));
    let state = storage.get(&state_key).await.unwrap().unwrap();
    storage
        .put(&state_key, state.slice(..state.len() / 2))
        .await
        .unwrap();
    let chosen = restore::newest(&storage, &layout, &job_id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        chosen.metadata.id.0, before,
        "corrupt state file of {prev} must be skipped"
    );

    // The runtime refuses to start, naming the checkpoint, and tells the operator it needs a
    // decision (not a retry) in its termination message.
    let file = job.write(tmp.path());
    let refused_log = tmp.path().join("refused.log");
    let termination = tmp.path().join("termination");
    let termination_env = termination.display().to_string();
    let mut child = common::spawn_runtime(
        &file,
        &[],
        &[("WEIR_TERMINATION_LOG", termination_env.as_str())],
        &refused_log,
    );
    common::refused_fast(
        "a runtime whose newest checkpoint is corrupt",
        &refused_log,
        &[&storage.uri(&meta_key), "--skip-unreadable-checkpoints"],
        || child.wait().unwrap(),
    );
    let outcome = common::read_outcome(&termination);
    assert!(
        matches!(outcome, weir_crds::control::Outcome::Refused { .. }),
        "{outcome:?}"
    );

    // Allowed, it reports both files by name and restores from the one before.
    let log = tmp.path().join("restart.log");
    let mut child = common::spawn_runtime(&file, &["--skip-unreadable-checkpoints"], &[], &log);
    let mut text = String::new();
    for _ in 0..300 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("job started") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains(&storage.uri(&meta_key)),
        "log does not name the corrupt _metadata:\n{text}"
    );
    assert!(
        text.contains(&storage.uri(&state_key)),
        "log does not name the corrupt state file:\n{text}"
    );
    assert!(
        text.contains(&format!("checkpoint={before}")),
        "restore did not use checkpoint {before}:\n{text}"
    );

    // With every completed checkpoint corrupt, the job refuses to start from nothing.
    // (Listed again: the restarted runtime may have completed one more before it was killed.)
    let now = completed_ids(&storage, &layout, &job_id).await;
    for id in &now {
        let key = format!("{}_metadata", dir(*id));
        if let Some(bytes) = storage.get(&key).await.unwrap() {
            storage
                .put(&key, bytes.slice(..bytes.len() - 1))
                .await
                .unwrap();
        }
    }
    let plan = weir_runtime::plan_source("corrupt.yaml", &job.yaml()).unwrap();
    let allowed = RunOptions {
        job: JobArgs {
            skip_unreadable_checkpoints: true,
            ..JobArgs::default()
        },
        ..RunOptions::default()
    };
    let err = match start(plan, allowed).await {
        Ok(_) => panic!("must refuse to start when every checkpoint is corrupt"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("refusing to start from nothing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_is_refused_unless_an_older_one_is_allowed_on_file() {
    corruption_is_refused_unless_allowed("file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_is_refused_unless_an_older_one_is_allowed_on_s3() {
    corruption_is_refused_unless_allowed("s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_is_refused_unless_an_older_one_is_allowed_on_azure_blob_storage() {
    corruption_is_refused_unless_allowed("azure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_at_parallelism_2_restores_at_3_and_at_1_with_identical_results() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((storage_uri, ep)) = backend("s3", "rescale", tmp.path()).await else {
        return;
    };
    let mut job = OrdersJob::new("rescale", storage_uri.clone(), tmp.path().join("out-a"));
    job.s3_endpoint = ep.clone();
    job.count = 60_000;
    job.rate = Some(20_000);
    job.interval_ms = 200;
    job.parallelism = 2;

    // Phase 1: run at 2, stop with a savepoint part-way.
    let plan = weir_runtime::plan_source("rescale.yaml", &job.yaml()).unwrap();
    let running = start(plan, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    running
        .requests
        .send(Request::Stop { savepoint: true })
        .await
        .unwrap();
    let Outcome::Stopped {
        savepoint: Some(sp),
    } = running.wait().await.unwrap()
    else {
        panic!("no savepoint")
    };
    assert!(sp.contains("/savepoints/sp-"), "{sp}");
    let partial = common::read_output(&job.out_dir).0.len();
    assert!(
        partial > 0 && partial < job.oracle().len(),
        "savepoint should be part-way: {partial} rows"
    );

    // Two branches from the same savepoint, each with a copy of the output so far.
    let out_b = tmp.path().join("out-b");
    common::branch_output(&job.out_dir, &out_b);
    for (p, out) in [(3u32, job.out_dir.clone()), (1, out_b)] {
        let mut branch = job.clone();
        branch.out_dir = out;
        branch.rate = None;
        let opts = common::from_savepoint(&sp, p, format!("{storage_uri}-p{p}"));
        assert_eq!(run_job(&branch, opts).await.unwrap(), Outcome::Finished);
        assert_matches_oracle(&branch, &format!("restored at parallelism {p}"));
    }
    let a = common::read_output(&job.out_dir).0;
    let b = common::read_output(&tmp.path().join("out-b")).0;
    assert_eq!(a, b, "parallelism 3 and 1 disagree");
}

/// `--start-from` starts a new lineage once: a second run with the same start id continues
/// that lineage (its newest checkpoint) instead of going back to the start point, and a new
/// id starts over. This is what keeps a pod that dies after an upgrade from replaying output.
#[tokio::test]
async fn start_request_begins_a_lineage_once_and_is_then_continued() {
    use weir_runtime::job::Start;
    let tmp = tempfile::tempdir().unwrap();
    let storage_uri = format!("file://{}", tmp.path().join("chk").display());
    let mut job = OrdersJob::new("starts", storage_uri.clone(), tmp.path().join("out"));
    job.count = 5_000;
    job.interval_ms = 50;
    let storage = Storage::open(&storage_uri, &weir_crds::S3Spec::default())
        .await
        .unwrap();
    let layout = Layout::new("local", "starts");
    let latest = || async { fencing::latest(&storage, &layout).await.unwrap().unwrap() };

    run_job(&job, RunOptions::default()).await.unwrap();
    let first = latest().await;
    let first_chk = restore::newest(&storage, &layout, &first.job_id, false)
        .await
        .unwrap()
        .expect("first lineage has a checkpoint")
        .uri;

    let empty = |id: &str| RunOptions {
        job: JobArgs {
            start: Some(Start {
                id: id.into(),
                from: None,
            }),
            ..JobArgs::default()
        },
        ..RunOptions::default()
    };
    run_job(&job, empty("upgrade-1")).await.unwrap();
    let second = latest().await;
    assert_ne!(second.job_id, first.job_id, "a start begins a new lineage");
    assert_eq!(second.restored_from, None, "empty start restores nothing");
    assert_eq!(second.start_id.as_deref(), Some("upgrade-1"));

    run_job(&job, empty("upgrade-1")).await.unwrap();
    let third = latest().await;
    assert_eq!(third.job_id, second.job_id, "same start id continues");
    let restored = third.restored_from.expect("continued from a checkpoint");
    assert!(
        restored.contains(&second.job_id),
        "restored {restored} from the new lineage"
    );
    assert_eq!(third.start_id.as_deref(), Some("upgrade-1"));

    let from = RunOptions {
        job: JobArgs {
            start: Some(Start {
                id: "upgrade-2".into(),
                from: Some(first_chk.clone()),
            }),
            ..JobArgs::default()
        },
        ..RunOptions::default()
    };
    run_job(&job, from).await.unwrap();
    let fourth = latest().await;
    assert_ne!(fourth.job_id, third.job_id);
    assert_eq!(
        fourth.restored_from.as_deref(),
        Some(first_chk.trim_end_matches('/'))
    );
}

/// An S3 endpoint that does not answer is waited for, then refused naming the store; a
/// bucket the server refuses fails at once instead of waiting.
#[tokio::test]
async fn an_unreachable_store_is_waited_for_and_then_named() {
    let storage = Storage::open("s3://weir-nowhere/chk", &s3_spec("http://127.0.0.1:1"))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let e = storage
        .wait_until_reachable(Duration::from_secs(3))
        .await
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() >= Duration::from_secs(3), "gave up early: {e}");
    assert!(
        e.contains("s3://weir-nowhere/chk")
            && e.contains("does not answer")
            && e.contains("gave up after"),
        "{e}"
    );
    let Some(ep) = s3_endpoint("unreachable_store") else {
        return;
    };
    let missing = Storage::open("s3://no-such-bucket-for-weir/chk", &s3_spec(&ep))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let e = missing
        .wait_until_reachable(Duration::from_secs(30))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a refusal was waited for: {e}"
    );
    assert!(!e.contains("does not answer"), "{e}");
}

/// Checkpoints to S3 over HTTPS with a private CA (`checkpoint.s3.caPemEnv`): the local S3
/// server behind a TLS terminator with `tests/tls.sh`'s certificate. The job, killed after a
/// checkpoint's `_metadata` and restarted, restores from S3 over TLS and its output equals
/// the oracle; with another CA it fails at once, naming the bucket and the certificate.
#[test]
fn checkpoints_reach_s3_over_https_with_a_private_ca() {
    let Some(plain) = s3_endpoint("s3_https") else {
        return;
    };
    let Some(tls) = weir_testkit::needs_env(
        "s3_https",
        "WEIR_TLS_DIR",
        "WEIR_REQUIRE_S3",
        "WEIR_TLS_DIR is not set (tests/run-all.sh sets it from tests/tls.sh)",
    ) else {
        return;
    };
    let tls = std::path::PathBuf::from(tls);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = plain.trim_start_matches("http://").to_string();
    let front = rt.block_on(weir_testkit::front::start(
        "127.0.0.1:9403",
        &upstream,
        weir_testkit::front::Transport::Tls {
            dir: &tls,
            mutual: false,
        },
    ));
    let bucket = rt.block_on(fresh_bucket(&plain, "s3-https"));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "s3-https",
        format!("s3://{bucket}/chk"),
        tmp.path().join("out"),
    );
    job.count = 200_000;
    job.rate = Some(100_000);
    job.interval_ms = 200;
    job.s3_endpoint = Some("https://localhost:9403".into());
    let yaml = job
        .yaml()
        .replace("pathStyle: true}", "pathStyle: true, caPemEnv: S3_CA}");
    assert!(yaml.contains("caPemEnv: S3_CA"), "{yaml}");
    let file = tmp.path().join("job.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let ca = std::fs::read_to_string(tls.join("ca.pem")).unwrap();
    let log = tmp.path().join("run.log");
    let mut child = common::spawn_runtime(
        &file,
        &[],
        &[("S3_CA", &ca), ("WEIR_CRASH_AT", "after-metadata:2")],
        &log,
    );
    let status = common::wait_exit_within(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("crash point not reached\n{}", common::log_tail(&log)));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{}", common::log_tail(&log));
    let mut child = common::spawn_runtime(&file, &[], &[("S3_CA", &ca)], &log);
    let status = common::wait_exit_within(&mut child, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("restored run did not finish\n{}", common::log_tail(&log)));
    assert!(status.success(), "{status:?}\n{}", common::log_tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("restor"),
        "the restart restored nothing\n{text}"
    );
    assert_matches_oracle(&job, "checkpoints to S3 over HTTPS, after a crash");

    let other = std::fs::read_to_string(tls.join("other-ca.pem")).unwrap();
    let log = tmp.path().join("wrong-ca.log");
    let took = common::refused_fast(
        "S3 with an unknown CA",
        &log,
        &[bucket.as_str(), "certificate"],
        || {
            let mut child = common::spawn_runtime(&file, &[], &[("S3_CA", &other)], &log);
            common::wait_exit_within(&mut child, Duration::from_secs(60)).expect("no exit")
        },
    );
    println!("S3 over HTTPS: exact after a crash; an unknown CA refused in {took:?}");
    drop(front);
}

/// A job started from another job's checkpoint (`initialSavepointPath` on Kubernetes,
/// `--restore-from` here) writes nothing into that job's directory: the commit-phase marker
/// goes into its own, so the other job's own recovery is exactly what it was. Mutation: write
/// the marker into the restored checkpoint (as before) and A's listing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_from_another_jobs_checkpoint_leaves_that_job_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let root_a = format!("file://{}", tmp.path().join("a").display());
    let mut a = OrdersJob::new("a", root_a.clone(), tmp.path().join("out-a"));
    a.count = 1_000_000;
    a.rate = Some(20_000);
    a.interval_ms = 50;
    a.retained = 10;
    assert_eq!(
        run_then_stop(&a, RunOptions::default(), 2).await,
        Outcome::Stopped { savepoint: None }
    );
    let storage_a = Storage::open(&root_a, &weir_crds::S3Spec::default())
        .await
        .unwrap();
    let layout_a = Layout::new("local", "a");
    let job_id = fencing::latest(&storage_a, &layout_a)
        .await
        .unwrap()
        .unwrap()
        .job_id;
    let newest = *completed_ids(&storage_a, &layout_a, &job_id)
        .await
        .last()
        .unwrap();
    let from =
        storage_a.uri(&layout_a.checkpoint_dir(&job_id, weir_runtime::ids::CheckpointId(newest)));
    let mut before = storage_a.list("").await.unwrap();
    before.sort();

    let root_b = format!("file://{}", tmp.path().join("b").display());
    let mut b = OrdersJob::new("b", root_b.clone(), tmp.path().join("out-b"));
    b.count = a.count;
    b.rate = a.rate;
    b.interval_ms = 50;
    let opts = RunOptions {
        job: JobArgs {
            restore_from: Some(from.clone()),
            ..JobArgs::default()
        },
        ..RunOptions::default()
    };
    assert_eq!(
        run_then_stop(&b, opts, newest + 2).await,
        Outcome::Stopped { savepoint: None }
    );
    let mut after = storage_a.list("").await.unwrap();
    after.sort();
    assert_eq!(before, after, "job b wrote into job a's directory");
    let storage_b = Storage::open(&root_b, &weir_crds::S3Spec::default())
        .await
        .unwrap();
    let marker = Layout::new("local", "b").recovered(&from);
    assert!(
        storage_b.get(&marker).await.unwrap().is_some(),
        "job b did not record its commit-phase recovery of {from} in its own directory"
    );
}

/// A job `name` whose checkpoints go through a fault-injecting proxy in front of the local S3
/// server, into a fresh bucket: the proxy, the server's endpoint, the storage URI and the
/// job. `None` (with a SKIPPED line) when there is no S3 server.
async fn through_faulty_s3(
    test: &str,
    name: &str,
    tmp: &Path,
) -> Option<(weir_testkit::s3_proxy::FaultyS3, String, String, OrdersJob)> {
    let ep = s3_endpoint(test)?;
    let bucket = fresh_bucket(&ep, name).await;
    let proxy = weir_testkit::s3_proxy::FaultyS3::start(&ep).await;
    let storage_uri = format!("s3://{bucket}/checkpoints");
    let mut job = OrdersJob::new(name, storage_uri.clone(), tmp.join("out"));
    job.s3_endpoint = Some(proxy.endpoint.clone());
    Some((proxy, ep, storage_uri, job))
}

/// An S3 server that fails, through a proxy in front of the local one: state-file uploads
/// answered 503 (the client's retries run out), the answer to the `_metadata` write lost
/// after the object was stored (a 500 whose retry meets the object: 412), and retention's
/// `DeleteObjects` answered 200 with every key listed as not deleted. The job finishes with
/// output equal to the oracle (no acknowledged checkpoint lost, nothing twice), every error
/// is counted (`checkpoints_failed`, `checkpoint_cleanups_failed`), the lost answer does not
/// stop the job (the store holds exactly what it wrote), retention catches up, and the newest
/// checkpoint restores. Mutations: ignore `DeleteObjects`' errors and the cleanup failures
/// are not counted; take the 412 as another incarnation's (as before) and the job fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_s3_server_loses_no_acknowledged_checkpoint_and_every_error_is_reported() {
    use weir_testkit::s3_proxy::{Answer, Fault};
    let tmp = tempfile::tempdir().unwrap();
    let Some((proxy, ep, storage_uri, mut job)) =
        through_faulty_s3("a_failing_s3_server", "failing-s3", tmp.path()).await
    else {
        return;
    };
    job.count = 60_000;
    job.rate = Some(15_000);
    job.interval_ms = 100;
    job.retained = 2;
    let fault = |method, path: &str, query, times, answer| Fault {
        method,
        path_contains: path.into(),
        query_contains: query,
        times,
        answer,
    };
    // Three in a row on one file: the client's three attempts, so the checkpoint fails.
    proxy.inject(fault("PUT", "s0-t0-g1.state", None, 3, Answer::Status(503)));
    proxy.inject(fault(
        "PUT",
        "/_metadata",
        None,
        1,
        Answer::AfterForward(500),
    ));

    let plan = weir_runtime::plan_source("failing-s3.yaml", &job.yaml()).unwrap();
    let running = start(plan, RunOptions::default()).await.unwrap();
    // After the start-up probe of conditional writes, whose clean-up must succeed.
    proxy.inject(fault("POST", "/", Some("delete"), 3, Answer::DeleteErrors));
    let metrics = running.metrics.clone();
    let outcome = running.wait().await.unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_matches_oracle(&job, "through a failing S3 server");
    let fired = proxy.fired();
    for what in [".state", "_metadata", "delete"] {
        assert!(
            fired.iter().any(|f| f.contains(what)),
            "no {what} fault fired: {fired:?}"
        );
    }
    assert!(
        metrics.checkpoints_failed.get() >= 1,
        "state upload failures not counted"
    );
    assert!(
        metrics.checkpoint_cleanups_failed.get() >= 1,
        "DeleteObjects errors not reported"
    );

    // Straight to the server: retention caught up, and the newest checkpoint restores.
    let storage = Storage::open(&storage_uri, &s3_spec(&ep)).await.unwrap();
    let layout = Layout::new("local", "failing-s3");
    let generation = fencing::latest(&storage, &layout).await.unwrap().unwrap();
    let dirs = restore::list(&storage, &layout, &generation.job_id)
        .await
        .unwrap();
    let completed = dirs.values().filter(|d| **d).count();
    assert!(completed <= 2, "retained 2, found {dirs:?}");
    let newest = restore::newest(&storage, &layout, &generation.job_id, false)
        .await
        .unwrap();
    assert!(newest.is_some(), "no restorable checkpoint left");
}

/// The retention pass after a job's last checkpoint is tried again when it fails, as no later
/// checkpoint would: here its first `DeleteObjects` is answered with every key not deleted,
/// and the job still ends with exactly `retained` checkpoints and no cleanup failure
/// reported. Mutation: one attempt after the last checkpoint too (as before), and a third
/// checkpoint is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_after_the_last_checkpoint_is_tried_again() {
    use weir_testkit::s3_proxy::{Answer, Fault};
    let tmp = tempfile::tempdir().unwrap();
    let Some((proxy, ep, storage_uri, mut job)) = through_faulty_s3(
        "retention_after_the_last_checkpoint",
        "final-retention",
        tmp.path(),
    )
    .await
    else {
        return;
    };
    job.count = 10_000_000;
    job.rate = Some(10_000);
    // The test takes its checkpoints (savepoints) within a few seconds; a periodic one, every
    // 25 s (under the 30 s timeout), with a pass of its own, would not come between the fault
    // and the stop.
    job.interval_ms = 25_000;
    job.retained = 2;
    let storage = Storage::open(&storage_uri, &s3_spec(&ep)).await.unwrap();
    let layout = Layout::new("local", "final-retention");

    let plan = weir_runtime::plan_source("final-retention.yaml", &job.yaml()).unwrap();
    let running = start(plan, RunOptions::default()).await.unwrap();
    let metrics = running.metrics.clone();
    for n in 1..=3 {
        // Read before the request, so a savepoint that completes at once is not missed.
        let before = newest_checkpoint(&running);
        running
            .requests
            .send(Request::Savepoint {
                id: format!("sp{n}"),
            })
            .await
            .unwrap();
        assert!(
            reaches_checkpoint(&running, before + 1, 1_500).await,
            "savepoint {n} never completed"
        );
    }
    // The pass after the third has deleted the first: its `_metadata`, then (the pass's last
    // request) the rest of its directory. Waiting only for the `_metadata` to go left that
    // last request to meet the fault.
    let job_id = fencing::latest(&storage, &layout)
        .await
        .unwrap()
        .unwrap()
        .job_id;
    let mut dirs = Default::default();
    for _ in 0..500 {
        dirs = restore::list(&storage, &layout, &job_id).await.unwrap();
        if dirs.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dirs.len(), 2, "retention never settled: {dirs:?}");
    proxy.inject(Fault {
        method: "POST",
        path_contains: "/".into(),
        query_contains: Some("delete"),
        times: 1,
        answer: Answer::DeleteErrors,
    });
    running
        .requests
        .send(Request::Stop { savepoint: false })
        .await
        .unwrap();
    assert_eq!(
        running.wait().await.unwrap(),
        Outcome::Stopped { savepoint: None }
    );
    assert!(
        proxy.fired().iter().any(|f| f.contains("delete")),
        "the DeleteObjects fault never fired"
    );
    let completed = completed_ids(&storage, &layout, &job_id).await;
    assert_eq!(completed.len(), 2, "retained 2, found {completed:?}");
    assert_eq!(
        metrics.checkpoint_cleanups_failed.get(),
        0,
        "a retried pass that succeeded is no failure"
    );
}

/// A restore whose reads are cut short (the body stops before its `Content-Length`: a
/// dropped connection) reads again and restores the newest checkpoint, instead of failing
/// the start or taking the checkpoint for corrupt (the S3 client's own retries do it: a read
/// loop of ours was tried and never ran); reads cut short every time fail the start as a
/// storage error naming the object (a restart may help), never as an unreadable checkpoint
/// that needs the user's decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cut_short_during_a_restore_are_read_again() {
    use weir_testkit::s3_proxy::{Answer, Fault, FaultyS3};
    let tmp = tempfile::tempdir().unwrap();
    let Some(ep) = s3_endpoint("reads_cut_short") else {
        return;
    };
    let bucket = fresh_bucket(&ep, "cut-short").await;
    let storage_uri = format!("s3://{bucket}/checkpoints");
    let mut job = OrdersJob::new("cut-short", storage_uri.clone(), tmp.path().join("out"));
    job.s3_endpoint = Some(ep.clone());
    job.count = 20_000;
    job.rate = Some(10_000);
    let plan = weir_runtime::plan_source("cut-short.yaml", &job.yaml()).unwrap();
    let running = start(plan, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    running
        .requests
        .send(Request::Stop { savepoint: false })
        .await
        .unwrap();
    assert!(matches!(
        running.wait().await.unwrap(),
        Outcome::Stopped { .. }
    ));

    let proxy = FaultyS3::start(&ep).await;
    job.s3_endpoint = Some(proxy.endpoint.clone());
    let cut = |path: &str, times| Fault {
        method: "GET",
        path_contains: path.into(),
        query_contains: None,
        times,
        answer: Answer::Truncated,
    };
    proxy.inject(cut("/_metadata", 2));
    proxy.inject(cut(".state", 2));
    let plan = weir_runtime::plan_source("cut-short.yaml", &job.yaml()).unwrap();
    let resumed = start(plan, RunOptions::default()).await.unwrap();
    let fired = proxy.fired();
    assert!(
        fired.iter().any(|f| f.contains("_metadata")) && fired.iter().any(|f| f.contains(".state")),
        "{fired:?}"
    );
    assert_eq!(resumed.wait().await.unwrap(), Outcome::Finished);
    assert_matches_oracle(&job, "restored through reads cut short");

    proxy.inject(cut("/_metadata", 100));
    let plan = weir_runtime::plan_source("cut-short.yaml", &job.yaml()).unwrap();
    let Err(e) = start(plan, RunOptions::default()).await else {
        panic!("a start whose every read was cut short went on");
    };
    assert!(matches!(e, weir_runtime::error::Error::Storage(_)), "{e:?}");
    assert!(e.to_string().contains("_metadata"), "{e}");
}

/// A start that cannot restore what it was told to (here `--restore-from` a checkpoint that
/// does not exist: on Kubernetes a mistyped `initialSavepointPath`) is reported as refused in
/// the termination message, so the operator asks for a decision at once instead of
/// restarting the pod until the restart budget runs out; before, it was `failed`.
#[test]
fn a_start_that_cannot_restore_what_it_was_told_to_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let job = OrdersJob::new(
        "missing-start",
        format!("file://{}", tmp.path().join("chk").display()),
        tmp.path().join("out"),
    );
    let file = job.write(tmp.path());
    let missing = format!("file://{}/nowhere/chk-7", tmp.path().display());
    let log = tmp.path().join("refused.log");
    let termination = tmp.path().join("termination");
    let termination_env = termination.display().to_string();
    let mut child = common::spawn_runtime(
        &file,
        &["--restore-from", &missing],
        &[("WEIR_TERMINATION_LOG", termination_env.as_str())],
        &log,
    );
    common::refused_fast(
        "a start from a checkpoint that does not exist",
        &log,
        &["nowhere/chk-7"],
        || child.wait().unwrap(),
    );
    let outcome = common::read_outcome(&termination);
    assert!(
        matches!(outcome, weir_crds::control::Outcome::Refused { .. }),
        "{outcome:?}"
    );
}

/// State tables travel between local files and storage without being held in memory: a
/// file past one upload part (Azure's multipart starts at 10 MiB) arrives byte for byte, a
/// missing object is told apart, and a replaced object is replaced.
async fn files_stream_both_ways(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some((uri, ep)) = backend(kind, "files_stream", tmp.path()).await else {
        return;
    };
    let spec = ep.as_deref().map(s3_spec).unwrap_or_default();
    let st = Storage::open(&uri, &spec).await.unwrap();
    let big: Vec<u8> = (0..(23u32 << 20) / 4)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let source = tmp.path().join("table.sst");
    std::fs::write(&source, &big).unwrap();
    st.put_file("shared/t-000012.sst", &source).await.unwrap();
    let back = tmp.path().join("back.sst");
    assert!(st.get_file("shared/t-000012.sst", &back).await.unwrap());
    let got = std::fs::read(&back).unwrap();
    assert!(
        got == big,
        "{kind}: {} bytes back of {}",
        got.len(),
        big.len()
    );
    assert!(
        !st.get_file("shared/missing.sst", &tmp.path().join("none"))
            .await
            .unwrap()
    );
    std::fs::write(&source, b"small").unwrap();
    st.put_file("shared/t-000012.sst", &source).await.unwrap();
    assert!(st.get_file("shared/t-000012.sst", &back).await.unwrap());
    assert_eq!(std::fs::read(&back).unwrap(), b"small");
    assert_eq!(
        st.get("shared/t-000012.sst").await.unwrap().as_deref(),
        Some(&b"small"[..])
    );
}

#[tokio::test]
async fn files_stream_both_ways_on_local_storage() {
    files_stream_both_ways("file").await;
}

#[tokio::test]
async fn files_stream_both_ways_on_s3() {
    files_stream_both_ways("s3").await;
}

#[tokio::test]
async fn files_stream_both_ways_on_azure_blob_storage() {
    files_stream_both_ways("azure").await;
}
