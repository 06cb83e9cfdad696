//! What the suites on a kube-apiserver (`whole_system.rs`, `operator_console.rs`) set up
//! alike: the S3 credentials Secret and the binaries the operator and the pretend kubelet run.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::Value;

/// Secret `weir-s3` in `ns` with the local S3 server's keys (as `tests/run-all.sh` exports
/// them), for a StreamJob's `checkpoint.s3.credentialsSecret`.
pub async fn s3_secret(client: &Client, ns: &str) {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "weir-s3"},
        "stringData": {
            "AWS_ACCESS_KEY_ID": std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
            "AWS_SECRET_ACCESS_KEY": std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()
        }
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// `weir-runtime` (this package's binary) and `weir-operator` beside it, which the
/// workspace build puts there.
pub fn binaries() -> (PathBuf, PathBuf) {
    let runtime = PathBuf::from(env!("CARGO_BIN_EXE_weir-runtime"));
    let operator = runtime.with_file_name("weir-operator");
    assert!(
        operator.is_file(),
        "{} missing: cargo build -p weir-operator",
        operator.display()
    );
    (runtime, operator)
}

/// The StreamJob kind, for `Api<DynamicObject>`: the tests write manifests as users do, as
/// JSON, not through the crate's types.
pub fn job_resource() -> ApiResource {
    ApiResource {
        group: "weir.dev".into(),
        version: "v1alpha1".into(),
        api_version: "weir.dev/v1alpha1".into(),
        kind: "StreamJob".into(),
        plural: "streamjobs".into(),
    }
}

/// Job `name`'s status, or null.
pub async fn status(jobs: &Api<DynamicObject>, name: &str) -> Value {
    jobs.get(name)
        .await
        .map(|j| j.data["status"].clone())
        .unwrap_or(Value::Null)
}
