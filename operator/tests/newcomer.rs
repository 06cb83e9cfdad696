//! The path a new user walks, with the real clients against a real kube-apiserver (envtest:
//! `KUBEBUILDER_ASSETS`): `helm install` of the chart as shipped (CRD included), the
//! `weir-operator` binary started with a kubeconfig that carries exactly the chart's RBAC (and
//! the chart's NetworkPolicy flags: each job's policy is written),
//! `kubectl apply` of every example, `kubectl get sj` with its columns, `kubectl explain`,
//! `kubectl describe` with events, and a table of bad manifests that `kubectl apply` must
//! refuse naming the field. A harness plays the kubelet with a scripted runtime control API
//! per pod. Prints one SKIPPED line without an apiserver.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weir_kubetest::{envtest, kubelet};

const NS: &str = "newcomer";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a client (`helm` or `kubectl`) against the envtest apiserver as the administrator.
struct Clients {
    helm: String,
    kubectl: String,
    kubeconfig: PathBuf,
}

impl Clients {
    fn run(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {bin}: {e}"));
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `kubectl args`, which must succeed; its standard output.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.run(&self.kubectl, args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl apply` of `manifest` on standard input: (succeeded, stdout + stderr).
    fn apply(&self, manifest: &str) -> (bool, String) {
        let out = self.run(
            &self.kubectl,
            &["apply", "-n", NS, "-f", "-"],
            Some(manifest),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

#[test]
fn the_newcomer_path_works_with_the_real_clients() {
    let Some(assets) = envtest::assets("operator_newcomer_path") else {
        return;
    };
    let helm = std::env::var("WEIR_HELM").expect(
        "the newcomer test installs the chart with helm: set WEIR_HELM (tests/chart.sh helm)",
    );
    let kubectl = std::env::var("WEIR_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(newcomer(&assets, helm, kubectl));
}

async fn newcomer(assets: &Path, helm: String, kubectl: String) {
    let env = envtest::Envtest::start(assets).await;
    let admin = env.client(envtest::ADMIN_TOKEN).await.unwrap();
    let c = Clients {
        helm,
        kubectl,
        kubeconfig: env.kubeconfig(envtest::ADMIN_TOKEN),
    };

    // 1. helm install of the chart as shipped: CRD, ServiceAccount weir/weir, RBAC, Deployment.
    let chart = repo().join("charts/weir");
    let out = c.run(
        &c.helm,
        &[
            "install",
            "weir",
            chart.to_str().unwrap(),
            "--namespace",
            "weir",
            "--create-namespace",
        ],
        None,
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "helm install failed: {warned}{said}");
    assert!(said.contains("STATUS: deployed"), "{said}");
    // The apiserver's warnings (an unknown schema format, a deprecated field) reach the user
    // on stderr; a clean install prints none.
    assert!(
        !warned.to_lowercase().contains("warning"),
        "helm install printed apiserver warnings:\n{warned}"
    );
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/streamjobs.weir.dev",
    ]);
    c.kubectl(&["create", "namespace", NS]);

    // 2. The operator binary with a kubeconfig whose user has only what the chart granted.
    let logs = std::env::temp_dir().join(format!("weir-newcomer-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    println!("newcomer: operator and pod logs in {}", logs.display());
    let fake = Arc::new(kubelet::FakeRuntime::default());
    let _kubelet = kubelet::Kubelet::start(
        admin.clone(),
        NS,
        kubelet::Runner::Fake(fake.clone()),
        logs.clone(),
    );
    // The NetworkPolicy flags exactly as the chart's Deployment passes them, and the
    // namespace the Deployment's downward API would give.
    let deployment: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "deployment",
        "weir",
        "-n",
        "weir",
        "-o",
        "json",
    ]))
    .unwrap();
    let mut operator_args: Vec<String> =
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .filter(|a| a.starts_with("--network-policy"))
            .map(String::from)
            .collect();
    assert!(
        !operator_args.is_empty(),
        "the chart passes no NetworkPolicy flags"
    );
    operator_args.push("--lease-namespace=weir".into());
    let operator_args: Vec<&str> = operator_args.iter().map(String::as_str).collect();
    let _operator = env.start_operator(
        Path::new(env!("CARGO_BIN_EXE_weir-operator")),
        &operator_args,
        &logs.join("operator.log"),
    );

    // 3. Every StreamJob in examples/ applies as shipped and the operator runs it (the other
    //    files there are local job files for `weir-runtime run`), after the Secret that
    //    examples/store-sales-postgres.yaml and store-sales-mysql.yaml tell their reader to
    //    create (their pods need it).
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "shop-db",
        "-n",
        NS,
        "--from-literal=password=example",
        "--from-literal=ca.pem=example",
    ]);
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("kind: StreamJob")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "no StreamJob examples found: {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.display();
        let (ok, said) = c.apply(&text);
        assert!(ok, "{file} was refused: {said}");
        assert!(!said.contains("Warning"), "{file}: apply warned: {said}");
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        names.push(v["metadata"]["name"].as_str().unwrap().to_string());
    }
    for name in &names {
        envtest::wait_for(
            &format!("{name} to run (Ready=True)"),
            Duration::from_secs(90),
            || async {
                let out = c.run(
                    &c.kubectl,
                    &["get", "sj", name, "-n", NS, "-o", "json"],
                    None,
                );
                let v: Value = serde_json::from_slice(&out.stdout).ok()?;
                let ready = v["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                let checkpoint = v["status"]["lastCheckpoint"]["completedAt"].is_string();
                (v["status"]["lifecycleState"] == "Running" && ready && checkpoint).then_some(())
            },
        )
        .await;
    }

    // Each job got its NetworkPolicy, written with only the chart's RBAC.
    let policies: Value =
        serde_json::from_str(&c.kubectl(&["get", "networkpolicies", "-n", NS, "-o", "json"]))
            .unwrap();
    let mut policed: Vec<String> = policies["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["spec"]["podSelector"]["matchLabels"]["weir.dev/job"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    policed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(policed, want, "one NetworkPolicy per job");

    // 4. kubectl get sj: State, Ready, ready/desired pods, running and desired parallelism,
    // Last Checkpoint, State Bytes, state On Disk and In Memory (a disk backend's), Restarts.
    let table = c.kubectl(&["get", "sj", "-n", NS]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATE",
            "READY",
            "PODS",
            "PARALLELISM",
            "DESIRED",
            "LAST",
            "CHECKPOINT",
            "STATE",
            "BYTES",
            "ON",
            "DISK",
            "IN",
            "MEMORY",
            "RESTARTS",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.starts_with("store-sales "))
        .unwrap()
        .split_whitespace()
        .collect();
    // store-sales runs on one pod at parallelism 2; the checkpoint column is an age such as
    // `3s`, then the state the (scripted) runtime reported for it: in the checkpoint, on
    // disk, in memory.
    assert_eq!(
        row[..6],
        ["store-sales", "Running", "True", "1/1", "2", "2"],
        "{table}"
    );
    assert!(row[6].ends_with('s') || row[6].ends_with('m'), "{table}");
    assert_eq!(row[7..10], ["100", "300", "20"], "{table}");
    assert_eq!(row[10], "0", "{table}");

    // 5. kubectl explain prints the doc comments.
    let explained = c.kubectl(&["explain", "streamjob.spec.checkpoint"]);
    for text in ["interval", "retained", "Completed checkpoints kept"] {
        assert!(
            explained.contains(text),
            "explain lacks {text:?}:\n{explained}"
        );
    }

    // 6. kubectl describe shows the operator's events.
    let described = c.kubectl(&["describe", "sj", "store-sales", "-n", NS]);
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(
        !events.trim_start().starts_with("<none>") && events.contains("Deploying"),
        "describe shows no events:\n{described}"
    );
    assert!(events.contains("Running"), "{described}");
    // One decision, one event: a pass handed a stale cached status must not deploy again.
    assert_eq!(
        events.matches("first deploy").count(),
        1,
        "the first deploy was decided more than once:\n{described}"
    );

    // 7. Bad manifests are refused at apply, naming the field; nothing is created.
    for (what, manifest, field) in bad_manifests() {
        let (ok, said) = c.apply(&manifest);
        assert!(!ok, "{what}: accepted:\n{manifest}");
        assert!(
            said.contains(field),
            "{what}: the error does not name {field}:\n{said}"
        );
        let out = c.run(&c.kubectl, &["get", "sj", "bad", "-n", NS], None);
        assert!(!out.status.success(), "{what}: the object was created");
    }
}

/// A valid StreamJob named `bad`, edited by `f`, as JSON text (which kubectl reads as YAML).
fn bad(f: impl FnOnce(&mut Value)) -> String {
    let mut v = json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": "bad"},
        "spec": {
            "checkpoint": {"interval": "30s", "storage": "s3://weir/checkpoints"},
            "pipeline": {
                "source": {"kafka": {"bootstrapServers": "kafka:9092", "topic": "orders"},
                           "schema": [{"name": "store_id", "type": "string"},
                                      {"name": "amount", "type": "int64"},
                                      {"name": "ts", "type": "timestamp"}],
                           "eventTime": {"field": "ts"}},
                "transforms": [{"window": {"tumbling": "1m", "keyBy": ["store_id"],
                                           "aggregates": {"n": "count(*)"}}}],
                "sinks": [{"kafka": {"bootstrapServers": "kafka:9092", "topic": "out",
                                     "transactionalIdPrefix": "bad"}}]
            }
        }
    });
    f(&mut v["spec"]);
    v.to_string()
}

/// (what, manifest, the field the refusal must name).
fn bad_manifests() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "misspelled enum",
            bad(|s| s["upgradeMode"] = json!("savepiont")),
            "spec.upgradeMode",
        ),
        (
            "unknown field",
            bad(|s| s["paralelism"] = json!(2)),
            "spec.paralelism",
        ),
        (
            "parallelism above maxParallelism",
            bad(|s| {
                s["parallelism"] = json!(16);
                s["maxParallelism"] = json!(8);
            }),
            "spec.parallelism",
        ),
        (
            "timeout not above interval",
            bad(|s| s["checkpoint"]["timeout"] = json!("10s")),
            "spec.checkpoint.timeout",
        ),
        (
            "bad duration",
            bad(|s| s["checkpoint"]["interval"] = json!("30 seconds")),
            "spec.checkpoint.interval",
        ),
        (
            "bad storage URI",
            bad(|s| s["checkpoint"]["storage"] = json!("file:///tmp/weir")),
            "spec.checkpoint.storage",
        ),
        (
            "two sources",
            bad(|s| s["pipeline"]["source"]["file"] = json!({"path": "/in.jsonl"})),
            "spec.pipeline.source",
        ),
        (
            "no sinks",
            bad(|s| s["pipeline"]["sinks"] = json!([])),
            "spec.pipeline.sinks",
        ),
        (
            "exactly-once Kafka sink without transactionalIdPrefix",
            bad(|s| {
                s["pipeline"]["sinks"][0]["kafka"]
                    .as_object_mut()
                    .unwrap()
                    .remove("transactionalIdPrefix");
            }),
            "spec.pipeline.sinks",
        ),
        (
            "a window with two kinds",
            bad(|s| s["pipeline"]["transforms"][0]["window"]["session"] = json!({"gap": "1m"})),
            "spec.pipeline.transforms[0].window",
        ),
        (
            "bad schema type",
            bad(|s| s["pipeline"]["source"]["schema"][1]["type"] = json!("int32")),
            "spec.pipeline.source.schema[1].type",
        ),
        (
            "negative parallelism",
            bad(|s| s["parallelism"] = json!(-1)),
            "spec.parallelism",
        ),
        (
            "negative restart budget",
            bad(|s| s["restart"] = json!({"maxRestarts": -1})),
            "spec.restart.maxRestarts",
        ),
        (
            "two connectors in one sink",
            bad(|s| s["pipeline"]["sinks"][0]["stdout"] = json!({})),
            "spec.pipeline.sinks[0]",
        ),
        (
            "a transaction pool of one",
            bad(|s| s["pipeline"]["sinks"][0]["kafka"]["transactionPoolSize"] = json!(1)),
            "spec.pipeline.sinks[0].kafka.transactionPoolSize",
        ),
        (
            "a decode policy as a bare word",
            bad(|s| s["pipeline"]["source"]["onDecodeError"] = json!("skip")),
            "spec.pipeline.source.onDecodeError",
        ),
        (
            "Avro without a schema registry",
            bad(|s| s["pipeline"]["source"]["kafka"]["format"] = json!("avro")),
            "spec.pipeline.source.kafka",
        ),
        (
            "an unknown state backend",
            bad(|s| s["stateBackend"] = json!({"type": "rocksdb"})),
            "spec.stateBackend.type",
        ),
        (
            "a state memory budget that is not a quantity",
            bad(|s| s["stateBackend"] = json!({"type": "disk", "memory": "256MB"})),
            "spec.stateBackend.memory",
        ),
        (
            "a PostgreSQL password in the URL",
            bad(|s| {
                s["pipeline"]["sinks"] = json!([{"postgres": {
                    "url": "postgres://weir:hunter2@db:5432/shop", "table": "t"}}]);
            }),
            "spec.pipeline.sinks[0].postgres",
        ),
        (
            "a PostgreSQL sink with an unknown mode",
            bad(|s| {
                s["pipeline"]["sinks"] = json!([{"postgres": {
                    "url": "postgres://weir@db:5432/shop", "table": "t", "mode": "xa"}}]);
            }),
            "spec.pipeline.sinks[0].postgres.mode",
        ),
        (
            "a MySQL password in the URL",
            bad(|s| {
                s["pipeline"]["sinks"] = json!([{"mysql": {
                    "url": "mysql://weir:hunter2@db:3306/shop", "table": "t"}}]);
            }),
            "spec.pipeline.sinks[0].mysql",
        ),
        (
            "a MySQL XA prefix longer than an XA id holds",
            bad(|s| {
                s["pipeline"]["sinks"] = json!([{"mysql": {
                    "url": "mysql://weir@db:3306/shop", "table": "t",
                    "transactionIdPrefix": "x".repeat(65)}}]);
            }),
            "spec.pipeline.sinks[0].mysql.transactionIdPrefix",
        ),
    ]
}
