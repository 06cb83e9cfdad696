//! The generated CRD, tested as the apiserver would use it: the committed YAML is current,
//! its schema is structural, and manifests are accepted or rejected by its OpenAPI schema
//! (a JSON-schema validator) and its CEL rules (kube's client-side CEL evaluator), after the
//! schema's defaults are applied as the apiserver applies them.

use serde_json::Value;

use crate::{StreamJob, crd_yaml};

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/weir/crds/streamjobs.weir.dev.yaml"
);

const GOOD: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata: {name: store-sales, namespace: shop}
spec:
  parallelism: 2
  checkpoint:
    interval: 30s
    storage: s3://weir-checkpoints/prod
    s3: {endpoint: "http://s3.storage:9000", credentialsSecret: s3-creds}
  secretEnv: [{name: CLICKHOUSE_PASSWORD, secret: ch, key: password}]
  pipeline:
    source:
      kafka: {bootstrapServers: "kafka:9092", topic: orders}
      schema:
        - {name: store_id, type: string}
        - {name: amount, type: float64}
        - {name: ts, type: timestamp}
      eventTime: {field: ts, maxOutOfOrderness: 5s}
      onDecodeError: skip
    transforms:
      - filter: amount > 0
      - window: {tumbling: 1m, keyBy: [store_id], aggregates: {orders: "count(*)", sales: sum(amount)}}
    sinks:
      - clickhouse: {url: "http://clickhouse:8123", table: store_sales, passwordEnv: CLICKHOUSE_PASSWORD}
      - kafka: {bootstrapServers: "kafka:9092", topic: store-sales, transactionalIdPrefix: store-sales}
"#;

fn schema() -> Value {
    let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(CRD_PATH).expect("CRD file"))
        .expect("CRD is YAML");
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .expect("openAPIV3Schema")
        .clone()
}

fn manifest(src: &str) -> Value {
    serde_yaml::from_str(src).expect("test manifest is YAML")
}

/// Every message the schema and CEL rules give for `obj` (empty = accepted).
fn rejections(obj: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut out: Vec<String> = validator
        .iter_errors(obj)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    let defaulted = kube::core::cel::apply_defaults(&schema, obj);
    let old = old.map(|o| kube::core::cel::apply_defaults(&schema, o));
    if let Err(errs) = kube::core::cel::Validator::new().validate(&schema, &defaulted, old.as_ref())
    {
        out.extend(
            errs.into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    out
}

fn edit(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = manifest(GOOD);
    f(&mut v);
    v
}

#[test]
fn committed_crd_matches_the_types() {
    let committed = std::fs::read_to_string(CRD_PATH).unwrap_or_default();
    let generated = crd_yaml().expect("CRD renders");
    assert!(
        committed == generated,
        "charts/weir/crds/streamjobs.weir.dev.yaml is stale; regenerate it with\n  cargo run -p weir-crds --features kube --bin crdgen > charts/weir/crds/streamjobs.weir.dev.yaml"
    );
}

/// The apiserver refuses non-structural schemas; no apiserver runs here, so check the rules
/// it applies: every node has a type (or keeps unknown fields), `oneOf`/`anyOf` branches only
/// constrain, and no `additionalProperties` sits next to `properties`.
#[test]
fn schema_is_structural() {
    fn walk(n: &Value, path: &str, bad: &mut Vec<String>) {
        let Some(m) = n.as_object() else { return };
        let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !m.contains_key("type") && !preserve {
            bad.push(format!("{path}: no type"));
        }
        if m.contains_key("properties") && m.contains_key("additionalProperties") {
            bad.push(format!("{path}: properties and additionalProperties"));
        }
        for q in ["oneOf", "anyOf", "allOf"] {
            for b in m.get(q).and_then(Value::as_array).into_iter().flatten() {
                for k in ["type", "description", "default", "nullable", "properties"] {
                    if b.get(k).is_some() {
                        bad.push(format!("{path}.{q}: branch sets {k}"));
                    }
                }
            }
        }
        for (k, v) in m
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            walk(v, &format!("{path}.{k}"), bad);
        }
        if let Some(i) = m.get("items") {
            walk(i, &format!("{path}[]"), bad);
        }
        if let Some(a) = m.get("additionalProperties").filter(|a| a.is_object()) {
            walk(a, &format!("{path}{{}}"), bad);
        }
    }
    let mut bad = Vec::new();
    walk(&schema(), "", &mut bad);
    assert!(bad.is_empty(), "non-structural schema nodes: {bad:#?}");
}

#[test]
fn crd_names_printer_columns_and_status_subresource() {
    let crd: Value =
        serde_yaml::from_str(&std::fs::read_to_string(CRD_PATH).expect("CRD file")).expect("YAML");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "sj");
    let v = &crd["spec"]["versions"][0];
    assert!(
        v["subresources"]["status"].is_object(),
        "status subresource"
    );
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cols,
        ["State", "Parallelism", "Last Checkpoint", "Restarts", "Age"]
    );
}

#[test]
fn good_manifest_is_accepted_and_decodes() {
    let obj = manifest(GOOD);
    assert_eq!(rejections(&obj, None), Vec::<String>::new());
    let job: StreamJob = serde_json::from_value(obj).expect("decodes as StreamJob");
    assert_eq!(job.spec.parallelism, 2);
    assert_eq!(job.spec.checkpoint.retained, 3, "default applied by serde");
    assert_eq!(
        job.spec.validate("store-sales"),
        vec![],
        "no semantic errors"
    );
}

#[test]
fn schema_rejects_wrong_types_missing_fields_and_out_of_range_values() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "wrong type",
            edit(|v| v["spec"]["parallelism"] = Value::from("two")),
            "/spec/parallelism",
        ),
        (
            "missing required field",
            edit(|v| {
                v["spec"]["checkpoint"]
                    .as_object_mut()
                    .map(|c| c.remove("storage"));
            }),
            "storage",
        ),
        (
            "out of range",
            edit(|v| v["spec"]["parallelism"] = Value::from(0)),
            "/spec/parallelism",
        ),
        (
            "out of range retained",
            edit(|v| v["spec"]["checkpoint"]["retained"] = Value::from(0)),
            "/spec/checkpoint/retained",
        ),
        (
            "not s3 storage",
            edit(|v| v["spec"]["checkpoint"]["storage"] = Value::from("file:///tmp/x")),
            "/spec/checkpoint/storage",
        ),
        (
            "bad enum",
            edit(|v| v["spec"]["upgradeMode"] = Value::from("yolo")),
            "/spec/upgradeMode",
        ),
        (
            "bad duration",
            edit(|v| v["spec"]["checkpoint"]["interval"] = Value::from("30 seconds")),
            "/spec/checkpoint/interval",
        ),
        (
            "two connectors in one sink",
            edit(|v| v["spec"]["pipeline"]["sinks"][0]["stdout"] = serde_json::json!({})),
            "/spec/pipeline/sinks/0",
        ),
    ];
    for (what, obj, field) in cases {
        let errs = rejections(&obj, None);
        assert!(
            errs.iter().any(|e| e.contains(field)),
            "{what}: expected an error naming {field}, got {errs:?}"
        );
    }
}

#[test]
fn cel_rules_reject_cross_field_mistakes_with_their_message() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "interval >= timeout",
            edit(|v| v["spec"]["checkpoint"]["timeout"] = Value::from("20s")),
            "checkpoint.timeout must be longer than checkpoint.interval",
        ),
        (
            "parallelism > maxParallelism",
            edit(|v| {
                v["spec"]["parallelism"] = Value::from(16);
                v["spec"]["maxParallelism"] = Value::from(8);
            }),
            "parallelism must not exceed maxParallelism",
        ),
        (
            "exactly-once Kafka sink without prefix",
            edit(|v| {
                v["spec"]["pipeline"]["sinks"][1]["kafka"]
                    .as_object_mut()
                    .map(|k| k.remove("transactionalIdPrefix"));
            }),
            "needs transactionalIdPrefix",
        ),
        (
            "two sources",
            edit(|v| {
                v["spec"]["pipeline"]["source"]["file"] = serde_json::json!({"path": "x.jsonl"})
            }),
            "exactly one of datagen, file, kafka",
        ),
        (
            "window without geometry",
            edit(|v| {
                v["spec"]["pipeline"]["transforms"][1]["window"]
                    .as_object_mut()
                    .map(|w| w.remove("tumbling"));
            }),
            "exactly one of tumbling, sliding, session",
        ),
        (
            "backoff above its maximum",
            edit(|v| {
                v["spec"]["restart"] =
                    serde_json::json!({"initialBackoff": "10m", "maxBackoff": "1m"})
            }),
            "initialBackoff must not exceed",
        ),
        (
            "bad decode policy",
            edit(|v| v["spec"]["pipeline"]["source"]["onDecodeError"] = Value::from("ignore")),
            "must be fail, skip, drop",
        ),
    ];
    for (what, obj, message) in cases {
        let errs = rejections(&obj, None);
        assert!(
            errs.iter().any(|e| e.contains(message)),
            "{what}: expected `{message}`, got {errs:?}"
        );
    }
    // At-least-once Kafka sinks need no prefix.
    let ok = edit(|v| {
        let k = &mut v["spec"]["pipeline"]["sinks"][1]["kafka"];
        k.as_object_mut().map(|k| k.remove("transactionalIdPrefix"));
        k["delivery"] = Value::from("at-least-once");
    });
    assert_eq!(rejections(&ok, None), Vec::<String>::new());
}

#[test]
fn max_parallelism_cannot_change_on_update() {
    let old = manifest(GOOD);
    let new = edit(|v| v["spec"]["maxParallelism"] = Value::from(256));
    let errs = rejections(&new, Some(&old));
    assert!(
        errs.iter().any(|e| e.contains("maxParallelism is fixed")),
        "{errs:?}"
    );
    let same = edit(|v| v["spec"]["parallelism"] = Value::from(4));
    assert_eq!(rejections(&same, Some(&old)), Vec::<String>::new());
}

#[test]
fn semantic_errors_name_the_manifest_field() {
    let mut job: StreamJob = serde_json::from_value(manifest(GOOD)).expect("decodes");
    job.spec.pipeline.transforms[0] = crate::Transform::Filter("amount > 0 AND vip".into());
    job.spec.secret_env.clear();
    let errs = job.spec.validate("store-sales");
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        errs.iter()
            .any(|e| e.path == "spec.pipeline.transforms[0].filter" && e.message.contains("`vip`")),
        "{shown:?}"
    );
    assert!(
        errs.iter().any(
            |e| e.path == "spec.pipeline.sinks[0].clickhouse.passwordEnv"
                && e.message.contains("CLICKHOUSE_PASSWORD")
        ),
        "{shown:?}"
    );
}

/// Every `StreamJob` in `examples/` is what the cluster would accept and the operator would
/// deploy: schema, CEL rules and the semantic checks all pass.
#[test]
fn example_manifests_are_accepted_and_valid() {
    use serde::Deserialize;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = match serde_yaml::Value::deserialize(doc) {
                Ok(y) => serde_json::to_value(y).expect("JSON-shaped"),
                Err(e) => panic!("{}: {e}", path.display()),
            };
            if v["kind"] != "StreamJob" {
                continue;
            }
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert_eq!(
                rejections(&v, None),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            let job: StreamJob = serde_json::from_value(v).expect("decodes");
            assert_eq!(job.spec.validate(&name), vec![], "{}", path.display());
            seen.push(name);
        }
    }
    seen.sort();
    assert_eq!(seen, ["large-orders", "store-sales"]);
}

#[test]
fn committed_reference_matches_the_schema() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/streamjob-reference.md"
    );
    let committed = std::fs::read_to_string(path).expect("docs/streamjob-reference.md");
    let current = crate::reference::markdown().expect("renders");
    assert!(
        committed == current,
        "docs/streamjob-reference.md is stale; regenerate it with \
         `cargo run -p weir-crds --features kube --bin crdgen -- --reference > docs/streamjob-reference.md`"
    );
    for field in [
        "spec.checkpoint.storage",
        "spec.pipeline.sinks[].kafka.transactionalIdPrefix",
        "status.lifecycleState",
    ] {
        assert!(current.contains(&format!("`{field}`")), "{field} missing");
    }
}
