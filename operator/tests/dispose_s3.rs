//! Savepoint disposal against the real local S3 server and the Azure Blob Storage emulator
//! (Azurite): the savepoint's objects go, a sibling savepoint with a longer name and the
//! lineage's checkpoints stay, and a checkpoint path is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use aws_sdk_s3::primitives::ByteStream;
use weir_crds::JobS3Spec;
use weir_operator::dispose::{Access, SavepointStore, StorageSavepoints};

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
    let store = StorageSavepoints;
    let root = format!("s3://{bucket}/w/shop/sales/savepoints/");
    let access = Access {
        root: &root,
        cloud_secret_named: false,
        s3: &s3,
        s3_credentials: Some((&id, &secret)),
        cloud: &[],
    };
    let n = store
        .dispose(
            &format!("s3://{bucket}/w/shop/sales/savepoints/sp-1-a"),
            access,
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let refused = store
        .dispose(&format!("s3://{bucket}/w/shop/sales/a/chk-1"), access)
        .await;
    assert!(refused.is_err(), "a checkpoint is never disposed");
    // Another job's savepoint, reported by a runtime whose image the user chose.
    let refused = store
        .dispose(
            &format!("s3://{bucket}/w/other/job/savepoints/sp-10-a"),
            Access {
                root: &format!("s3://{bucket}/w/shop/sales/savepoints/"),
                ..access
            },
        )
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("not under this job's savepoints")),
        "{refused:?}"
    );
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

#[tokio::test]
async fn disposal_on_azure_blob_storage_deletes_the_savepoint_and_nothing_else() {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    let Some(container) = std::env::var("WEIR_AZURE_CONTAINER")
        .ok()
        .filter(|c| !c.is_empty())
    else {
        assert!(
            std::env::var("WEIR_REQUIRE_AZURITE").is_err(),
            "WEIR_REQUIRE_AZURITE is set but WEIR_AZURE_CONTAINER is not"
        );
        eprintln!("SKIPPED: savepoint disposal on Azure: no Azurite (run make test)");
        return;
    };
    // The test writes with its own client; the operator's is built from the Secret's keys.
    let writer = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(&container)
        .build()
        .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = format!("dispose-{nanos}");
    let keys = [
        "shop/sales/savepoints/sp-1-a/_metadata",
        "shop/sales/savepoints/sp-1-a/s0-t0-g1.state",
        "shop/sales/savepoints/sp-10-a/_metadata",
        "shop/sales/a/chk-1/_metadata",
    ];
    for k in keys {
        writer
            .put(
                &object_store::path::Path::from(format!("{dir}/{k}")),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
    }
    // Azurite's documented development account; the emulator's address comes from the
    // operator's environment (a Secret may only hold credentials).
    let cloud = [
        ("AZURE_STORAGE_ACCOUNT_NAME".to_string(), "devstoreaccount1".to_string()),
        (
            "AZURE_STORAGE_ACCOUNT_KEY".to_string(),
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
                .to_string(),
        ),
        ("AZURE_STORAGE_ENDPOINT".to_string(), "http://attacker.invalid".to_string()),
    ];
    let s3 = JobS3Spec::default();
    let sp_root = format!("az://{container}/{dir}/shop/sales/savepoints/");
    let access = Access {
        root: &sp_root,
        cloud_secret_named: true,
        s3: &s3,
        s3_credentials: None,
        cloud: &cloud,
    };
    let store = StorageSavepoints;
    let n = store
        .dispose(&format!("{sp_root}sp-1-a"), access)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let refused = store
        .dispose(
            &format!("az://{container}/{dir}/shop/sales/a/chk-1"),
            access,
        )
        .await;
    assert!(refused.is_err(), "a checkpoint is never disposed");
    // A named Secret that is gone: not the operator's own identity instead.
    let refused = store
        .dispose(
            &format!("{sp_root}sp-10-a"),
            Access {
                cloud: &[],
                ..access
            },
        )
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("missing or empty")),
        "{refused:?}"
    );
    let mut left: Vec<String> = writer
        .list(Some(&object_store::path::Path::from(dir.as_str())))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    left.sort();
    assert_eq!(
        left,
        [
            format!("{dir}/shop/sales/a/chk-1/_metadata"),
            format!("{dir}/shop/sales/savepoints/sp-10-a/_metadata")
        ]
    );
}
