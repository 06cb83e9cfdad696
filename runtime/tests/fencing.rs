//! Zombie fencing in storage: two incarnations of one job against the real S3 server, and a
//! storage that ignores conditional writes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::{OrdersJob, fresh_bucket, s3_endpoint};
use weir_runtime::checkpoint::coordinator::Request;
use weir_runtime::checkpoint::layout::Layout;
use weir_runtime::checkpoint::metadata::decode_metadata;
use weir_runtime::checkpoint::{fencing, restore};
use weir_runtime::error::Error;
use weir_runtime::job::{RunOptions, start};
use weir_runtime::storage::Storage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_successor_claims_its_generation_the_zombie_completes_no_checkpoint() {
    let Some(ep) = s3_endpoint("fencing") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bucket = fresh_bucket(&ep, "fencing").await;
    let uri = format!("s3://{bucket}/chk");
    let mut job = OrdersJob::new("zombie", uri.clone(), tmp.path().join("out"));
    job.s3_endpoint = Some(ep.clone());
    job.count = 10_000_000;
    job.rate = Some(10_000);
    job.interval_ms = 50;
    job.retained = 100;
    let plan = || weir_runtime::plan_source("zombie.yaml", &job.yaml()).unwrap();

    let first = start(plan(), RunOptions::default()).await.unwrap();
    for _ in 0..500 {
        if first.status.read().unwrap().last_checkpoint.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        first.status.read().unwrap().last_checkpoint.is_some(),
        "first incarnation never checkpointed"
    );

    // The successor starts while the first keeps running (a partitioned pod).
    let second = start(plan(), RunOptions::default()).await.unwrap();
    let second_gen = second.status.read().unwrap().generation;
    assert_eq!(second_gen, 2);
    let storage = Storage::open(
        &uri,
        &weir_crds::S3Spec {
            endpoint: Some(ep.clone()),
            region: None,
            path_style: Some(true),
            ca_pem_env: None,
        },
    )
    .await
    .unwrap();
    let layout = Layout::new("local", "zombie");
    let job_id = second.status.read().unwrap().job_id.clone();
    let at_claim = restore::list(&storage, &layout, &job_id).await.unwrap();
    let newest_at_claim = at_claim
        .iter()
        .filter(|(_, d)| **d)
        .map(|(i, _)| i.0)
        .max()
        .unwrap();

    let err = tokio::time::timeout(Duration::from_secs(20), first.wait())
        .await
        .expect("zombie kept running")
        .expect_err("zombie must fail");
    // Fenced at its next commit; in the narrow race where its generation check passed just
    // before the claim, its `_metadata` create or its sink commit fails instead.
    assert!(
        matches!(
            err,
            Error::Fenced { mine: 1, newer: 2 } | Error::Checkpoint { .. } | Error::Sink { .. }
        ),
        "unexpected: {err}"
    );

    // Let the successor complete checkpoints of its own.
    for _ in 0..500 {
        if second.status.read().unwrap().last_checkpoint.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    second
        .requests
        .send(Request::Stop { savepoint: false })
        .await
        .unwrap();
    second.wait().await.unwrap();

    // No checkpoint of generation 1 completed after the claim, except (at most) the single
    // one already past its generation check when the claim happened.
    for (id, done) in restore::list(&storage, &layout, &job_id).await.unwrap() {
        if !done {
            continue;
        }
        let key = format!("{}_metadata", layout.checkpoint_dir(&job_id, id));
        let meta = decode_metadata(&storage.get(&key).await.unwrap().unwrap()).unwrap();
        if meta.generation == 1 {
            assert!(
                id.0 <= newest_at_claim + 1,
                "generation 1 completed checkpoint {id} after generation 2 claimed (newest then: {newest_at_claim})"
            );
        }
    }
    // A restore now follows the successor's lineage.
    let newest = restore::newest(&storage, &layout, &job_id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        newest.metadata.generation, 2,
        "restore must follow generation 2"
    );
    assert_eq!(
        fencing::latest(&storage, &layout)
            .await
            .unwrap()
            .unwrap()
            .generation,
        2
    );
}

/// An S3 endpoint that accepts every write and honours no condition (as some S3-compatible
/// servers do): enough of the protocol for the probe.
async fn unconditional_s3() -> String {
    use axum::Router;
    use axum::routing::any;
    let app = Router::new().fallback(any(|req: axum::extract::Request| async move {
        let q = req.uri().query().unwrap_or_default().to_string();
        if q.contains("list-type") {
            "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>".to_string()
        } else if q.contains("delete") {
            "<?xml version=\"1.0\"?><DeleteResult></DeleteResult>".to_string()
        } else {
            String::new()
        }
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_without_conditional_writes_is_refused_for_exactly_once_jobs() {
    let ep = unconditional_s3().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "noconditional",
        "s3://bucket/chk".into(),
        tmp.path().join("out"),
    );
    job.s3_endpoint = Some(ep);
    let plan = weir_runtime::plan_source("noconditional.yaml", &job.yaml()).unwrap();
    // Credentials only need to exist; the stub does not check them.
    let err = match start(plan, RunOptions::default()).await {
        Ok(_) => panic!("a job on storage without conditional writes must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("does not honour conditional writes"), "{err}");
    assert!(
        err.contains("exactlyOnce"),
        "message must say which setting to change: {err}"
    );
}
