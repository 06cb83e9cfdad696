//! `helm template` of the chart, as JSON objects: shared by the operator's chart tests and
//! the whole-system test (which installs the rendered CRD and RBAC).

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// Renders `charts/weir` (release `weir`, namespace `weir`, Kubernetes 1.33) with `args`
/// using the helm binary `helm`.
pub fn template(helm: &str, args: &[&str]) -> Vec<Value> {
    // This crate sits at the workspace root like `charts/`, so the chart is found from here
    // whichever suite calls.
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/weir");
    let out = Command::new(helm)
        .args(["template", "weir"])
        .arg(&chart)
        .args(["--namespace", "weir", "--kube-version", "1.33.0"])
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_json::to_value(serde_yaml::Value::deserialize(d).expect("YAML")).expect("JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}
