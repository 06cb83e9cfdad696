//! Savepoint disposal against the real local S3 server: the savepoint's objects go, a
//! sibling savepoint with a longer name and the lineage's checkpoints stay, and a checkpoint
//! path is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use aws_sdk_s3::primitives::ByteStream;
use weir_crds::JobS3Spec;
use weir_operator::dispose::{S3Savepoints, SavepointStore};

fn endpoint() -> Option<String> {
    match std::env::var("WEIR_S3_ENDPOINT") {
        Ok(ep) => Some(ep),
        Err(_) => {
            assert!(
                std::env::var("WEIR_REQUIRE_S3").is_err(),
                "WEIR_REQUIRE_S3 is set but WEIR_S3_ENDPOINT is not"
            );
            eprintln!(
                "SKIPPED: savepoint disposal: no S3 server (set WEIR_S3_ENDPOINT, or run make test)"
            );
            None
        }
    }
}

fn credentials() -> (String, String) {
    (
        std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "weir-test".into()),
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "weir-test".into()),
    )
}

#[tokio::test]
async fn disposal_deletes_the_savepoint_and_nothing_else() {
    let Some(ep) = endpoint() else { return };
    let (id, secret) = credentials();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&ep)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bucket = format!("weir-dispose-{nanos}");
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let keys = [
        "w/shop/sales/savepoints/sp-1-a/_metadata",
        "w/shop/sales/savepoints/sp-1-a/s0-t0-g1.state",
        "w/shop/sales/savepoints/sp-10-a/_metadata",
        "w/shop/sales/a/chk-1/_metadata",
    ];
    for k in keys {
        client
            .put_object()
            .bucket(&bucket)
            .key(k)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let s3 = JobS3Spec {
        endpoint: Some(ep),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        credentials_secret: None,
        ..JobS3Spec::default()
    };
    let store = S3Savepoints;
    let n = store
        .dispose(
            &format!("s3://{bucket}/w/shop/sales/savepoints/sp-1-a"),
            &s3,
            Some((id.clone(), secret.clone())),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let refused = store
        .dispose(
            &format!("s3://{bucket}/w/shop/sales/a/chk-1"),
            &s3,
            Some((id, secret)),
        )
        .await;
    assert!(refused.is_err(), "a checkpoint is never disposed");
    let left: Vec<String> = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(
        left,
        [
            "w/shop/sales/a/chk-1/_metadata",
            "w/shop/sales/savepoints/sp-10-a/_metadata"
        ]
    );
}
