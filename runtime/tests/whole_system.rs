//! The whole system as users meet it: a real kube-apiserver (envtest, `KUBEBUILDER_ASSETS`),
//! the CRD and the operator's RBAC as the Helm chart renders them, the `weir-operator`
//! binary running as a process with exactly the chart's permissions, a harness playing the
//! kubelet (each runtime pod is a local `weir-runtime` process), and the real Kafka broker,
//! S3 server and ClickHouse from the project's scripts.
//!
//! Scenario: apply `examples/store-sales.yaml` (addresses changed), feed a deterministic
//! order stream, `kill -9` the runtime three times, rescale 2 -> 3 in `savepoint` mode,
//! scale out to two pods (`pods: 2`, again through a savepoint) and `kill -9` one of them
//! (both are replaced, from the newest checkpoint), suspend and resume the two pods, then
//! compare ClickHouse (`FINAL` and raw) and the committed output topic with the oracle:
//! exact equality. Status, conditions and events are read through the API along the way.
//! Without an apiserver it prints one SKIPPED line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use weir_kubetest::envtest::{self, wait_for};
use weir_kubetest::{helm, kubelet};

use common::stack::{
    assert_sales, ch_exec, ch_sales, clickhouse, create_topic, input_producer, kafka, kafka_sales,
    oracle, produce_end_markers, produce_orders,
};
use common::{fresh_bucket, s3_endpoint, unique};

const NS: &str = "shop";
const JOB: &str = "store-sales";
const PARTITIONS: i32 = 3;
const STORES: u64 = 5;
const ORDERS: u64 = 12_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn status(jobs: &Api<DynamicObject>) -> Value {
    common::cluster::status(jobs, JOB).await
}

/// Waits until the job is Running at an incarnation above `after`, with a checkpoint
/// completed by that incarnation; returns the incarnation.
async fn running_after(jobs: &Api<DynamicObject>, after: u64, what: &str) -> u64 {
    wait_for(what, Duration::from_secs(120), || async {
        let s = status(jobs).await;
        let inc = s["incarnation"].as_u64()?;
        (s["lifecycleState"] == "Running" && inc > after && !s["lastCheckpoint"].is_null())
            .then_some(inc)
    })
    .await
}

async fn patch_spec(jobs: &Api<DynamicObject>, spec: Value) {
    jobs.patch(
        JOB,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .unwrap();
}

/// How often each event reason was recorded for the job. kube-runtime's recorder folds a
/// repeated reason into one Event with a `series` count, so counts come from there.
async fn reasons(client: &Client) -> std::collections::BTreeMap<String, i32> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let mut out = std::collections::BTreeMap::new();
    for e in events.list(&Default::default()).await.unwrap().items {
        if e.regarding.as_ref().and_then(|r| r.name.as_deref()) != Some(JOB) {
            continue;
        }
        let n = e.series.as_ref().map_or(1, |s| s.count.max(1));
        *out.entry(e.reason.unwrap_or_default()).or_insert(0) += n;
    }
    out
}

#[test]
fn store_sales_on_kubernetes_is_exactly_once_through_kills_rescale_and_suspend() {
    let Some(assets) = envtest::assets("whole_system") else {
        return;
    };
    let (Some(s3), Some(kafka), Some(ch)) = (
        s3_endpoint("whole_system"),
        kafka("whole_system"),
        clickhouse("whole_system"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario(&assets, &s3, &kafka, &ch));
}

async fn scenario(assets: &Path, s3: &str, kafka: &str, ch: &str) {
    let env = envtest::Envtest::start(assets).await;
    let admin = env.client(envtest::ADMIN_TOKEN).await.unwrap();
    let pp = PostParams::default();

    // The chart: CRD, the operator's ClusterRole and binding (ServiceAccount weir/weir).
    let helm_bin = std::env::var("WEIR_HELM")
        .expect("the whole-system test renders the chart: set WEIR_HELM (tests/chart.sh helm)");
    let objects = helm::template(&helm_bin, &["--include-crds"]);
    envtest::install_cluster_objects(&admin, &objects).await;
    for ns in ["weir", NS] {
        envtest::create_namespace(&admin, ns).await;
    }

    // The stack: topics, table from the example DDL, bucket, S3 credentials Secret.
    let u = unique();
    let (input, output, table) = (
        format!("orders-k8s-{u}"),
        format!("store-sales-k8s-{u}"),
        format!("store_sales_k8s_{u}"),
    );
    create_topic(kafka, &input, PARTITIONS).await;
    create_topic(kafka, &output, PARTITIONS).await;
    let ddl = std::fs::read_to_string(repo().join("examples/clickhouse/store_sales.sql")).unwrap();
    let ddl: Vec<&str> = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    ch_exec(
        ch,
        ddl.join("\n")
            .replace("store_sales", &table)
            .trim()
            .trim_end_matches(';'),
    )
    .await;
    let bucket = fresh_bucket(s3, "whole-system").await;
    common::cluster::s3_secret(&admin, NS).await;

    // The node and the operator (as the chart's ServiceAccount).
    let (runtime_bin, operator_bin) = common::cluster::binaries();
    // Kept after the test: the operator's and every pod's log, for when it fails.
    let logs = std::env::temp_dir().join(format!("weir-whole-system-{u}"));
    println!("whole_system: operator and pod logs in {}", logs.display());
    let kubelet = kubelet::Kubelet::start(
        admin.clone(),
        NS,
        kubelet::Runner::Process(runtime_bin),
        logs.join("pods"),
    );
    let _operator = env.start_operator(
        &operator_bin,
        &["--runtime-image", "weir-runtime:harness"],
        &logs.join("operator.log"),
    );

    // The example, pointed at this machine.
    let producer = input_producer(kafka);
    produce_orders(&producer, &input, 0..3_000, PARTITIONS, STORES).await;
    let mut manifest: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("examples/store-sales.yaml")).unwrap(),
    )
    .unwrap();
    let spec = &mut manifest["spec"];
    spec["checkpoint"] = json!({"interval": "1s", "timeout": "30s", "retained": 3,
        "storage": format!("s3://{bucket}/checkpoints"),
        "s3": {"endpoint": s3, "region": "us-east-1", "pathStyle": true, "credentialsSecret": "weir-s3"}});
    spec["resources"] = json!({"cpu": "1", "memory": "1Gi"});
    spec["upgrade"] = json!({"readyTimeout": "2m", "rollback": false});
    let p = &mut spec["pipeline"];
    p["source"]["kafka"]["bootstrapServers"] = json!(kafka);
    p["source"]["kafka"]["topic"] = json!(input);
    for sink in p["sinks"].as_array_mut().unwrap() {
        if let Some(c) = sink.get_mut("clickhouse") {
            c["url"] = json!(ch);
            c["table"] = json!(table);
        }
        if let Some(k) = sink.get_mut("kafka") {
            k["bootstrapServers"] = json!(kafka);
            k["topic"] = json!(output);
            k["transactionalIdPrefix"] = json!(format!("k8s-{u}"));
        }
    }
    let jobs: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), NS, &common::cluster::job_resource());
    let job: DynamicObject = serde_json::from_value(manifest).unwrap();
    jobs.create(&pp, &job).await.unwrap();
    let mut inc = running_after(&jobs, 0, "the first deploy to run").await;

    // Three crashes while orders keep coming.
    for (k, range) in [(1, 3_000..5_000), (2, 5_000..6_000), (3, 6_000..7_000)] {
        let pod = format!("{JOB}-{inc}");
        assert!(
            kubelet.kill9(&pod),
            "no process for {pod}: {:?}",
            kubelet.running()
        );
        produce_orders(&producer, &input, range, PARTITIONS, STORES).await;
        inc = running_after(&jobs, inc, &format!("recovery from kill {k}")).await;
        let s = status(&jobs).await;
        assert_eq!(s["restarts"]["count"].as_u64(), Some(k), "{s}");
    }

    // Rescale 2 -> 3 through a savepoint.
    patch_spec(&jobs, json!({"parallelism": 3})).await;
    inc = running_after(&jobs, inc, "the rescale to finish").await;
    let s = status(&jobs).await;
    let from = s["start"]["from"].as_str().unwrap_or_default().to_string();
    assert!(
        from.contains("/savepoints/"),
        "the rescaled job did not start from a savepoint: {s}"
    );
    produce_orders(&producer, &input, 7_000..8_000, PARTITIONS, STORES).await;

    // Scale out: the same parallelism on two pods, each running a slice of every operator's
    // subtasks and exchanging records with the other; through a savepoint again.
    patch_spec(&jobs, json!({"pods": 2})).await;
    inc = running_after(&jobs, inc, "the scale-out to two pods").await;
    let s = status(&jobs).await;
    assert_eq!(s["pods"], "2/2", "{s}");
    let from_2 = s["start"]["from"].as_str().unwrap_or_default().to_string();
    assert!(
        from_2.contains("/savepoints/") && from_2 != from,
        "the scale-out did not start from a savepoint of its own: {s}"
    );
    let pods: Vec<String> = (0..2).map(|i| format!("{JOB}-{inc}-{i}")).collect();
    let running = kubelet.running();
    assert!(
        pods.iter().all(|p| running.contains(p)),
        "{pods:?} not all running: {running:?}"
    );
    // A crash of one pod fails both: the other stops once its links break, and the operator
    // starts both again, from the newest checkpoint, once neither is left.
    assert!(kubelet.kill9(&pods[1]), "no process for {}", pods[1]);
    produce_orders(&producer, &input, 8_000..9_000, PARTITIONS, STORES).await;
    inc = running_after(&jobs, inc, "both pods to recover from the kill of pod 1").await;
    let s = status(&jobs).await;
    assert_eq!(s["restarts"]["count"].as_u64(), Some(4), "{s}");
    assert!(
        s["restarts"]["lastReason"]
            .as_str()
            .unwrap_or_default()
            .contains(&pods[1]),
        "the restart does not name the killed pod: {s}"
    );
    assert_eq!(s["start"]["from"].as_str(), Some(from_2.as_str()), "{s}");
    assert_eq!(s["pods"], "2/2", "{s}");

    // Suspend (no pods), feed more input, resume.
    patch_spec(&jobs, json!({"state": "suspended"})).await;
    wait_for("suspension", Duration::from_secs(120), || async {
        let s = status(&jobs).await;
        (s["lifecycleState"] == "Suspended" && kubelet.running().is_empty()).then_some(())
    })
    .await;
    produce_orders(&producer, &input, 9_000..ORDERS, PARTITIONS, STORES).await;
    patch_spec(&jobs, json!({"state": "running"})).await;
    running_after(&jobs, inc, "the resume").await;
    produce_end_markers(&producer, &input, ORDERS, PARTITIONS).await;

    // Every window, exactly once, in both sinks.
    let expected = oracle(ORDERS, PARTITIONS, STORES);
    wait_for(
        "ClickHouse to hold every window",
        Duration::from_secs(180),
        || async {
            let (rows, _) = ch_sales(ch, &table, true).await;
            (rows.len() == expected.len()).then_some(())
        },
    )
    .await;
    let (rows, dups) = ch_sales(ch, &table, true).await;
    assert_sales("ClickHouse FINAL", &expected, &rows, &dups);
    // Raw rows: a replay may repeat a row; every key is there with the oracle's value.
    let (raw, _) = ch_sales(ch, &table, false).await;
    assert_sales("ClickHouse raw (distinct keys)", &expected, &raw, &[]);
    let (k, k_dups) = wait_for(
        "the output topic to commit every window",
        Duration::from_secs(120),
        || async {
            let (rows, dups, open) = kafka_sales(kafka, &output).await;
            (rows.len() >= expected.len() && open == 0).then_some((rows, dups))
        },
    )
    .await;
    assert_sales("committed Kafka records", &expected, &k, &k_dups);

    // What `kubectl describe` shows.
    let r = reasons(&admin).await;
    for want in [
        "Deploying",
        "Restarting",
        "UpgradeStarted",
        "UpgradeCompleted",
        "Suspended",
        "Resumed",
    ] {
        assert!(r.contains_key(want), "no {want} event in {r:?}");
    }
    assert!(r["Restarting"] >= 4, "{r:?}");
    let s = status(&jobs).await;
    let ready = s["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{s}");

    // Deleting the job removes its pods and lets the object go; storage keeps its state.
    jobs.delete(JOB, &Default::default()).await.unwrap();
    wait_for(
        "the StreamJob to be deleted",
        Duration::from_secs(120),
        || async { jobs.get_opt(JOB).await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert!(kubelet.running().is_empty(), "{:?}", kubelet.running());
    drop(kubelet);
}
