//! The generated CRD, tested as the apiserver would use it: the committed YAML is current,
//! its schema is structural, and manifests are accepted or rejected by its OpenAPI schema
//! (a JSON-schema validator) and its CEL rules (kube's client-side CEL evaluator), after the
//! schema's defaults are applied as the apiserver applies them.

use serde_json::Value;

use crate::{SinkSpec, StreamJob, crd_yaml};

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
      onDecodeError: {skip: {}}
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
        [
            "State",
            "Ready",
            "Pods",
            "Parallelism",
            "Desired",
            "Last Checkpoint",
            "State Bytes",
            "On Disk",
            "In Memory",
            "Restarts",
            "Age"
        ]
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
fn checkpoints_may_live_on_s3_azure_or_gcs() {
    for storage in [
        "s3://weir-checkpoints/prod",
        "az://checkpoints/prod",
        "gs://weir-checkpoints/prod",
    ] {
        let mut obj = manifest(GOOD);
        obj["spec"]["checkpoint"]["storage"] = Value::from(storage);
        if !storage.starts_with("s3://") {
            obj["spec"]["checkpoint"]["cloud"] = serde_json::json!({"credentialsSecret": "creds"});
        }
        assert_eq!(rejections(&obj, None), Vec::<String>::new(), "{storage}");
        let job: StreamJob = serde_json::from_value(obj).expect("decodes");
        assert_eq!(job.spec.validate("store-sales"), vec![], "{storage}");
    }
    for storage in ["az://A_B/x", "gs://-b/x", "abfs://c/x", "az:///x"] {
        let mut obj = manifest(GOOD);
        obj["spec"]["checkpoint"]["storage"] = Value::from(storage);
        assert!(
            !rejections(&obj, None).is_empty(),
            "{storage} should be refused"
        );
    }
}

/// What `validate` says about the StreamJob `obj`, one message per error.
fn validation_errors(obj: Value) -> Vec<String> {
    let job: StreamJob = serde_json::from_value(obj).expect("decodes");
    job.spec
        .validate("store-sales")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_registry_password_must_come_from_secret_env() {
    let mut obj = manifest(GOOD);
    obj["spec"]["pipeline"]["source"]["kafka"] = serde_json::json!({
        "bootstrapServers": "kafka:9092", "topic": "orders", "format": "avro",
        "schemaRegistry": {"url": "https://sr:8081", "username": "weir", "passwordEnv": "SR_PASSWORD"}
    });
    assert_eq!(rejections(&obj, None), Vec::<String>::new());
    let errs = validation_errors(obj.clone());
    assert!(
        errs.iter().any(
            |e| e.contains("spec.pipeline.source.kafka.schemaRegistry.passwordEnv")
                && e.contains("SR_PASSWORD")
        ),
        "{errs:?}"
    );
    obj["spec"]["secretEnv"]
        .as_array_mut()
        .expect("secretEnv")
        .push(serde_json::json!({"name": "SR_PASSWORD", "secret": "sr", "key": "password"}));
    let job: StreamJob = serde_json::from_value(obj).expect("decodes");
    assert_eq!(job.spec.validate("store-sales"), vec![]);
}

#[test]
fn a_side_outputs_secret_variables_must_come_from_secret_env_too() {
    let mut obj = manifest(GOOD);
    obj["spec"]["pipeline"]["source"]["onDecodeError"] = serde_json::json!({"sideOutput": {"kafka": {
        "bootstrapServers": "kafka:9092", "topic": "dlq", "transactionalIdPrefix": "dlq",
        "security": {"protocol": "sasl-ssl",
                     "sasl": {"mechanism": "PLAIN", "username": "u", "passwordEnv": "DLQ_PASSWORD"}}
    }}});
    let errs = validation_errors(obj);
    assert!(
        errs.iter().any(|e| e.contains(
            "spec.pipeline.source.onDecodeError.sideOutput.kafka.security.sasl.passwordEnv"
        )),
        "{errs:?}"
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
            "no pods",
            edit(|v| v["spec"]["pods"] = Value::from(0)),
            "/spec/pods",
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
            "bad decode policy",
            edit(|v| {
                v["spec"]["pipeline"]["source"]["onDecodeError"] = serde_json::json!({"ignore": {}})
            }),
            "/spec/pipeline/source/onDecodeError",
        ),
        (
            "decode policy as a bare word",
            edit(|v| v["spec"]["pipeline"]["source"]["onDecodeError"] = Value::from("skip")),
            "/spec/pipeline/source/onDecodeError",
        ),
        (
            "no sinks",
            edit(|v| v["spec"]["pipeline"]["sinks"] = serde_json::json!([])),
            "/spec/pipeline/sinks",
        ),
        (
            "two connectors in one sink",
            edit(|v| v["spec"]["pipeline"]["sinks"][0]["stdout"] = serde_json::json!({})),
            "/spec/pipeline/sinks/0",
        ),
        (
            "one transactional id for two overlapping transactions",
            edit(|v| v["spec"]["pipeline"]["sinks"][1]["kafka"]["transactionPoolSize"] = 1.into()),
            "/spec/pipeline/sinks/1/kafka/transactionPoolSize",
        ),
        (
            "empty INSERT blocks",
            edit(|v| v["spec"]["pipeline"]["sinks"][0]["clickhouse"]["blockRows"] = 0.into()),
            "/spec/pipeline/sinks/0/clickhouse/blockRows",
        ),
        (
            "a sink name that is no SQL identifier",
            edit(|v| {
                v["spec"]["pipeline"]["sinks"][0]["clickhouse"]["name"] = "sales-table".into()
            }),
            "/spec/pipeline/sinks/0/clickhouse/name",
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
            "sql beside transforms",
            edit(|v| v["spec"]["pipeline"]["sql"] = "INSERT INTO a SELECT * FROM b".into()),
            "a pipeline is either transforms or sql, not both",
        ),
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
            "more pods than parallelism",
            edit(|v| v["spec"]["pods"] = Value::from(3)),
            "pods must not exceed parallelism",
        ),
        (
            "more pods than the default parallelism",
            edit(|v| {
                v["spec"].as_object_mut().map(|s| s.remove("parallelism"));
                v["spec"]["pods"] = Value::from(2);
            }),
            "pods must not exceed parallelism",
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
            "stateTtl without sql",
            edit(|v| v["spec"]["pipeline"]["stateTtl"] = "1h".into()),
            "stateTtl applies to sql pipelines",
        ),
        (
            "further sources without sql",
            edit(|v| {
                v["spec"]["pipeline"]["sources"] = serde_json::json!([{
                    "name": "stores",
                    "file": {"path": "stores.jsonl"},
                    "schema": [{"name": "store_id", "type": "string"}]
                }])
            }),
            "further sources are read by sql statements",
        ),
        (
            "backoff above its maximum",
            edit(|v| {
                v["spec"]["restart"] =
                    serde_json::json!({"initialBackoff": "10m", "maxBackoff": "1m"})
            }),
            "initialBackoff must not exceed",
        ),
    ];
    for (what, obj, message) in cases {
        let errs = rejections(&obj, None);
        assert!(
            errs.iter().any(|e| e.contains(message)),
            "{what}: expected `{message}`, got {errs:?}"
        );
    }
    // As many pods as subtasks is the most there can be.
    let ok = edit(|v| v["spec"]["pods"] = Value::from(2));
    assert_eq!(rejections(&ok, None), Vec::<String>::new());
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

/// A job of several pods is found through the Service `<name>-peers`, a DNS label: a name
/// that leaves no room for the suffix is refused naming `spec.pods`, and one pod needs no
/// such Service.
#[test]
fn a_multi_pod_job_needs_room_for_its_peers_service_in_its_name() {
    let mut job: StreamJob = serde_json::from_value(manifest(GOOD)).expect("decodes");
    job.spec.pods = 2;
    let longest = "s".repeat(crate::MAX_MULTI_POD_NAME);
    assert_eq!(format!("{longest}-peers").len(), 63);
    assert_eq!(job.spec.validate(&longest), vec![]);
    let too_long = format!("{longest}s");
    let errs = job.spec.validate(&too_long);
    assert!(
        errs.iter()
            .any(|e| e.path == "spec.pods" && e.message.contains("-peers")),
        "{errs:?}"
    );
    job.spec.pods = 1;
    assert_eq!(job.spec.validate(&too_long), vec![]);
}

/// `pods: 1` is left out of the spec's JSON, so a spec the operator recorded in status
/// before the field existed is byte-for-byte what the same spec serializes to now (the
/// operator compares them to find changes), and any other value is written.
#[test]
fn one_pod_is_left_out_of_the_json_and_more_are_written() {
    let mut job: StreamJob = serde_json::from_value(manifest(GOOD)).expect("decodes");
    assert_eq!(job.spec.pods, 1, "the default");
    let one = serde_json::to_value(&job.spec).expect("serializes");
    assert!(one.get("pods").is_none(), "{one}");
    job.spec.pods = 2;
    let two = serde_json::to_value(&job.spec).expect("serializes");
    assert_eq!(two["pods"], 2);
    let back: crate::StreamJobSpec = serde_json::from_value(two).expect("decodes");
    assert_eq!(back.pods, 2);
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
    assert_eq!(
        seen,
        [
            "large-orders",
            "store-sales",
            "store-sales-mysql",
            "store-sales-postgres",
            "store-sales-sql"
        ]
    );
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

/// The apiserver refuses a CEL rule on a node without a type ("failed to convert to
/// declType"), and a rule whose estimated cost has no bound (a list, map or string it walks
/// with no `maxItems`/`maxProperties`/`maxLength`, or a rule under an unbounded list, which
/// runs once per item). This guard fails on both without an apiserver; the real apiserver run
/// stays the proof (the costs themselves are only computed there).
#[test]
fn cel_rules_sit_on_typed_nodes_and_walk_only_bounded_values() {
    let mut bad = Vec::new();
    rule_nodes(&schema(), "", &[], &mut bad);
    assert!(
        bad.is_empty(),
        "CEL rules the apiserver refuses or cannot cost: {bad:#?}"
    );
}

/// Visits every node; for each one with rules, checks the node, the lists/maps it sits in, and
/// what its rules walk.
fn rule_nodes(n: &Value, path: &str, unbounded_above: &[String], bad: &mut Vec<String>) {
    let Some(m) = n.as_object() else { return };
    if let Some(rules) = m.get("x-kubernetes-validations").and_then(Value::as_array) {
        if !m.contains_key("type") {
            bad.push(format!("{path}: rules on a node without a type"));
        }
        for above in unbounded_above {
            bad.push(format!("{path}: rules under unbounded {above}"));
        }
        for rule in rules.iter().filter_map(|r| r["rule"].as_str()) {
            let named = referenced_fields(rule);
            walked_unbounded(n, path, &named, true, rule, bad);
        }
    }
    for (k, v) in m
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        rule_nodes(v, &format!("{path}.{k}"), unbounded_above, bad);
    }
    for (key, bound, suffix) in [
        ("items", "maxItems", "[]"),
        ("additionalProperties", "maxProperties", "{}"),
    ] {
        if let Some(child) = m.get(key).filter(|c| c.is_object()) {
            let mut above = unbounded_above.to_vec();
            if !m.contains_key(bound) {
                above.push(format!("{path} (no {bound})"));
            }
            rule_nodes(child, &format!("{path}{suffix}"), &above, bad);
        }
    }
}

/// The field names a rule mentions after a dot (`self.spec.pipeline.sinks`, `s.kafka`).
fn referenced_fields(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = rule.as_bytes();
    for (i, _) in rule.match_indices('.') {
        let name: String = rule[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let follows_ident =
            i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b')' || b[i - 1] == b'_');
        if follows_ident && !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            out.push(name);
        }
    }
    out
}

/// Follows the fields a rule names from the node it sits on, through list items and map
/// values, and reports each list, map or string on the way that has no bound.
fn walked_unbounded(
    n: &Value,
    path: &str,
    named: &[String],
    root: bool,
    rule: &str,
    bad: &mut Vec<String>,
) {
    let Some(m) = n.as_object() else { return };
    let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
    let missing = match ty {
        "array" if !m.contains_key("maxItems") => Some("maxItems"),
        "string" if !m.contains_key("maxLength") => Some("maxLength"),
        "object" if m.contains_key("additionalProperties") && !m.contains_key("maxProperties") => {
            Some("maxProperties")
        }
        _ => None,
    };
    if let Some(bound) = missing
        && !root
    {
        bad.push(format!("{path}: walked by `{rule}` but has no {bound}"));
    }
    for (k, v) in m
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if named.iter().any(|f| f == k) {
            walked_unbounded(v, &format!("{path}.{k}"), named, false, rule, bad);
        }
    }
    if let Some(i) = m.get("items") {
        walked_unbounded(i, &format!("{path}[]"), named, false, rule, bad);
    }
    if let Some(a) = m.get("additionalProperties").filter(|a| a.is_object()) {
        walked_unbounded(a, &format!("{path}{{}}"), named, false, rule, bad);
    }
}

/// Every `format` is one the apiserver knows: an unknown one (schemars writes `uint32` and
/// `uint64`) is accepted but warned about on every `helm install` and CRD apply, which a
/// newcomer reads as something broken.
#[test]
fn every_format_is_one_kubernetes_recognises() {
    // apiextensions-apiserver's supported formats (validation/formats.go), the ones we may use.
    const KNOWN: &[&str] = &[
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
        "datetime",
        "duration",
        "uri",
        "hostname",
        "password",
    ];
    fn walk(v: &Value, path: &str, bad: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(f) = m.get("format").and_then(Value::as_str)
                    && !KNOWN.contains(&f)
                {
                    bad.push(format!("{path}: format {f}"));
                }
                m.iter()
                    .filter(|(k, _)| *k != "default" && *k != "example")
                    .for_each(|(k, v)| walk(v, &format!("{path}.{k}"), bad));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, path, bad)),
            _ => {}
        }
    }
    let mut bad = Vec::new();
    walk(&schema(), "", &mut bad);
    assert!(bad.is_empty(), "formats Kubernetes warns about: {bad:#?}");
}

#[test]
fn the_guard_catches_the_defects_real_apiservers_refused() {
    // Defect 1: a rule on an untyped (preserve-unknown-fields) node.
    let untyped = serde_json::json!({"type": "object", "properties": {"p": {
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-validations": [{"rule": "self == 'x'"}]}}});
    // Defect 2: a root rule walking an unbounded list and strings.
    let unbounded = serde_json::json!({"type": "object",
        "x-kubernetes-validations": [{"rule": "self.sinks.all(s, s.name != 'x')"}],
        "properties": {"sinks": {"type": "array", "items": {"type": "object",
            "properties": {"name": {"type": "string"}}}}}});
    for (what, s, expect) in [
        ("untyped", untyped, "without a type"),
        ("unbounded", unbounded, "no maxItems"),
    ] {
        let mut bad = Vec::new();
        rule_nodes(&s, "", &[], &mut bad);
        assert!(bad.iter().any(|b| b.contains(expect)), "{what}: {bad:?}");
    }
}

/// Manifests that between them use every connector, transform, generator and policy, each
/// written with as little as the schema allows.
fn every_shape() -> Vec<Value> {
    let mut out = vec![manifest(GOOD)];
    let datagen = edit(|v| {
        v["spec"]["pipeline"]["source"] = serde_json::json!({
            "datagen": {"fields": {
                "id": {"sequence": {}}, "store_id": {"key": {"cardinality": 5}},
                "amount": {"uniform": {"min": 0, "max": 10}}, "vip": {"bernoulli": {"p": 0.5}},
                "ts": {"eventTime": {}}}},
            "schema": [{"name": "id", "type": "int64"}, {"name": "store_id", "type": "string"},
                       {"name": "amount", "type": "float64"}, {"name": "vip", "type": "boolean"},
                       {"name": "ts", "type": "timestamp"}],
            "eventTime": {"field": "ts"},
            "onDecodeError": {"sideOutput": {"stdout": {}}}});
        v["spec"]["pipeline"]["transforms"] = serde_json::json!([
            {"select": {"store_id": "store_id", "amount": "amount", "ts": "ts"}},
            {"dedup": {"keyBy": ["store_id"], "ttl": "1m"}},
            {"window": {"sliding": {"size": "1m", "slide": "10s"}, "keyBy": ["store_id"],
                        "aggregates": {"n": "count(*)"}, "lateRecords": {"sideOutput": {"blackhole": {}}}}},
            {"window": {"session": {"gap": "30s"}, "keyBy": ["store_id"], "aggregates": {"m": "max(n)"}}}]);
        v["spec"]["pipeline"]["sinks"] = serde_json::json!([
            {"file": {"path": "/out"}}, {"stdout": {}}, {"blackhole": {}},
            {"kafka": {"bootstrapServers": "k:9092", "topic": "t", "delivery": "at-least-once"}}]);
        v["spec"]["secretEnv"] = serde_json::json!([]);
    });
    let file = edit(|v| {
        v["spec"]["pipeline"]["source"]
            .as_object_mut()
            .map(|s| s.remove("kafka"));
        v["spec"]["pipeline"]["source"]["file"] = serde_json::json!({"path": "/in.jsonl"});
    });
    out.push(datagen);
    out.push(file);
    out
}

/// `None` must be omitted, never sent as `null`: the apiserver validates an explicit null
/// against the field's enum or type ("Unsupported value: null"). What the Rust types write is
/// also what the schema and rules accept, so the operator can create what users can.
#[test]
fn rust_types_omit_absent_fields_and_write_what_the_schema_accepts() {
    fn nulls(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Null => out.push(path.to_string()),
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| nulls(v, &format!("{path}.{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| nulls(v, &format!("{path}[{i}]"), out)),
            _ => {}
        }
    }
    for obj in every_shape() {
        assert_eq!(rejections(&obj, None), Vec::<String>::new(), "{obj}");
        let job: StreamJob = serde_json::from_value(obj).expect("decodes");
        let written = serde_json::to_value(&job).expect("serializes");
        let mut found = Vec::new();
        nulls(&written, "", &mut found);
        let status = serde_json::to_value(crate::StreamJobStatus::default()).expect("status");
        nulls(&status, "status", &mut found);
        assert!(found.is_empty(), "fields written as null: {found:?}");
        assert_eq!(
            rejections(&written, None),
            Vec::<String>::new(),
            "{written}"
        );
    }
}

/// The local reference job (`examples/store-sales.local.yaml`) is the manifest's pipeline
/// with local addresses, and the README shows the ClickHouse table the examples ship.
#[test]
fn the_local_reference_job_and_the_readme_agree_with_the_shipped_examples() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../");
    let read = |p: &str| std::fs::read_to_string(format!("{root}{p}")).expect(p);
    // JSON-shaped, as the apiserver stores it.
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&read("examples/store-sales.yaml")).expect("manifest");
    let manifest: StreamJob =
        serde_json::from_value(serde_json::to_value(yaml).expect("JSON")).expect("decodes");
    let local = crate::load_job(
        "examples/store-sales.local.yaml",
        &read("examples/store-sales.local.yaml"),
    )
    .expect("local job");
    let mut pipeline = local.pipeline.clone();
    // Only the addresses may differ.
    let remote = &manifest.spec.pipeline;
    if let (Some(l), Some(r)) = (pipeline.source.kafka.as_mut(), remote.source.kafka.as_ref()) {
        l.bootstrap_servers.clone_from(&r.bootstrap_servers);
    }
    for (l, r) in pipeline.sinks.iter_mut().zip(&remote.sinks) {
        match (l, r) {
            (SinkSpec::Kafka(l), SinkSpec::Kafka(r)) => {
                l.bootstrap_servers.clone_from(&r.bootstrap_servers);
            }
            (SinkSpec::ClickHouse(l), SinkSpec::ClickHouse(r)) => l.url.clone_from(&r.url),
            _ => {}
        }
    }
    assert_eq!(&pipeline, remote, "examples/store-sales.local.yaml drifted");
    assert_eq!(local.name.as_deref(), manifest.metadata.name.as_deref());
    assert_eq!(local.parallelism, manifest.spec.parallelism);

    let sql = read("examples/clickhouse/store_sales.sql");
    let create = &sql[sql.find("CREATE TABLE").expect("a CREATE TABLE")..];
    assert!(
        read("README.md").contains(create.trim_end()),
        "README.md does not show examples/clickhouse/store_sales.sql as shipped"
    );
}

/// The restart backoff is a wait before a crashed job's pending transactions are committed,
/// so a StreamJob counts it against `transactionTimeout`; the same pipeline run locally (no
/// operator restarts) does not.
#[test]
fn the_restart_backoff_counts_against_the_kafka_transaction_timeout() {
    let mut job: StreamJob = serde_json::from_value(manifest(GOOD)).expect("decodes");
    assert_eq!(job.spec.validate("store-sales"), vec![], "defaults fit");
    job.spec.restart.max_backoff = "3m".parse().expect("duration");
    let errs = job.spec.validate("store-sales");
    let field = "spec.pipeline.sinks[1].kafka.transactionTimeout";
    assert!(
        errs.iter().any(|e| e.path == field
            && e.message.contains("restart.maxBackoff 180s")
            && e.message.contains("at least 990s")),
        "{errs:?}"
    );
    let local = crate::validate::validate(&job.spec.job_file("store-sales"));
    assert!(
        !local.iter().any(|e| e.path.ends_with("transactionTimeout")),
        "{local:?}"
    );
}
