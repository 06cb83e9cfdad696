//! The operator against a real kube-apiserver (envtest: `KUBEBUILDER_ASSETS` names a
//! directory with `etcd` and `kube-apiserver`): the generated CRD is applied, the controller
//! runs in this process, a harness plays the kubelet and each pod's container is a scripted
//! runtime control API. Walks deploy (with the job's NetworkPolicy), heal, a savepoint upgrade, a triggered savepoint, a
//! savepoint that cannot be taken during an upgrade (waits; switching to last-state
//! proceeds), suspend/resume, an invalid spec and deletion with a final savepoint, reading
//! status, conditions and events through the API; and a job of two pods: both start, their
//! Services and Secret are admitted, killing one replaces both (never two incarnations at
//! once), and `pods: 1` rescales it through a savepoint asked of pod 0. Prints one SKIPPED
//! line without an apiserver.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use weir_crds::{LifecycleState, StreamJob, StreamJobStatus};
use weir_kubetest::{envtest, kubelet};
use weir_operator::context::Context;
use weir_operator::decide::Settings;
use weir_operator::dispose::{Access, SavepointStore};
use weir_operator::metrics::Metrics;
use weir_operator::network_policy::PolicySettings;
use weir_operator::runtime_client::HttpRuntime;

const NS: &str = "flows";

/// Disposal is not what this suite checks (`tests/dispose_s3.rs` does): keep everything.
struct KeepAll;
impl SavepointStore for KeepAll {
    fn dispose<'a>(&'a self, _: &'a str, _: Access<'a>) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async { Ok(0) })
    }
}

fn manifest(name: &str, filter: &str) -> StreamJob {
    serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "parallelism": 2,
            "checkpoint": {"interval": "1s", "timeout": "30s", "storage": "s3://weir-test/ckpt"},
            "restart": {"initialBackoff": "1s", "maxBackoff": "2s", "maxRestarts": 5, "window": "1h"},
            "savepoint": {"timeout": "20s"},
            "pipeline": {
                "source": {"kafka": {"bootstrapServers": "kafka:9092", "topic": "orders"},
                           "schema": [{"name": "store_id", "type": "string"},
                                      {"name": "amount", "type": "int64"}]},
                "transforms": [{"filter": filter}],
                "sinks": [{"kafka": {"bootstrapServers": "kafka:9092", "topic": "out",
                                     "transactionalIdPrefix": name}}]
            }
        }
    }))
    .unwrap()
}

/// Everything here happens within a minute.
async fn wait_for<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    envtest::wait_for(what, Duration::from_secs(60), f).await
}

async fn status(jobs: &Api<StreamJob>, name: &str) -> StreamJobStatus {
    jobs.get(name)
        .await
        .ok()
        .and_then(|j| j.status)
        .unwrap_or_default()
}

/// Running at an incarnation above `after`; the incarnation.
async fn running_after(jobs: &Api<StreamJob>, name: &str, after: u64, what: &str) -> u64 {
    wait_for(what, || async {
        let s = status(jobs, name).await;
        (s.lifecycle_state == LifecycleState::Running && s.incarnation > after)
            .then_some(s.incarnation)
    })
    .await
}

fn condition<'a>(
    s: &'a StreamJobStatus,
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == t)
}

async fn patch(jobs: &Api<StreamJob>, name: &str, spec: Value) {
    jobs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .unwrap();
}

async fn event_reasons(client: &Client, name: &str) -> Vec<String> {
    event_reasons_in(client, NS, name).await
}

#[test]
fn operator_flows_against_a_real_apiserver() {
    let Some(assets) = envtest::assets("operator_apiserver") else {
        return;
    };
    weir_operator::tls::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(flows(&assets));
}

async fn flows(assets: &std::path::Path) {
    let env = envtest::Envtest::start(assets).await;
    let client = env.client(envtest::ADMIN_TOKEN).await.unwrap();
    let pp = PostParams::default();
    let crd_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/weir/crds/streamjobs.weir.dev.yaml"
    );
    let crd = serde_yaml::from_str(&std::fs::read_to_string(crd_path).unwrap()).unwrap();
    envtest::install_crd(&client, &crd).await;
    envtest::create_namespace(&client, NS).await;

    let fake = Arc::new(kubelet::FakeRuntime::default());
    let logs = tempfile::tempdir().unwrap();
    let kubelet = kubelet::Kubelet::start(
        client.clone(),
        NS,
        kubelet::Runner::Fake(fake.clone()),
        logs.path().to_path_buf(),
    );
    let policy = PolicySettings::from_flags(
        "weir".into(),
        r#"{"app.kubernetes.io/name":"weir","app.kubernetes.io/component":"operator"}"#,
        r#"[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
    )
    .unwrap();
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Arc::new(HttpRuntime::new().unwrap()),
            Arc::new(KeepAll),
            Arc::new(Metrics::new()),
            Settings {
                default_image: "weir-runtime:test".into(),
                ..Settings::default()
            },
        )
        .with_network_policy(policy),
    );
    let controller = tokio::spawn(weir_operator::controller::run(ctx, vec![NS.into()]));
    let jobs: Api<StreamJob> = Api::namespaced(client.clone(), NS);

    // Deploy.
    jobs.create(&pp, &manifest("a", "amount > 0"))
        .await
        .unwrap();
    let mut inc = running_after(&jobs, "a", 0, "the first deploy").await;
    // The job's NetworkPolicy, as the apiserver admitted it: owned by the job, selecting its
    // pods, the operator and the metrics peer on `control`, the job's pods on `exchange`.
    let np = Api::<NetworkPolicy>::namespaced(client.clone(), NS)
        .get("a-runtime")
        .await
        .unwrap();
    let np = serde_json::to_value(np).unwrap();
    let job_uid = jobs.get("a").await.unwrap().metadata.uid.unwrap();
    assert_eq!(
        np["metadata"]["ownerReferences"][0]["uid"],
        job_uid.as_str()
    );
    assert_eq!(
        np["spec"]["podSelector"],
        json!({"matchLabels": {"weir.dev/job": "a"}})
    );
    assert_eq!(
        np["spec"]["ingress"][0]["from"].as_array().map(Vec::len),
        Some(2),
        "{np}"
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], "control");
    assert_eq!(
        np["spec"]["ingress"][1]["from"],
        json!([{"podSelector": {"matchLabels": {"weir.dev/job": "a"}}}])
    );
    let s = status(&jobs, "a").await;
    assert_eq!(
        condition(&s, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    assert!(
        s.last_checkpoint.is_some(),
        "checkpoint from the runtime report"
    );

    // Heal: a crash is replaced, the cause recorded.
    assert!(kubelet.kill9(&format!("a-{inc}")));
    inc = running_after(&jobs, "a", inc, "recovery from a crash").await;
    let s = status(&jobs, "a").await;
    assert_eq!(s.restarts.count, 1);
    assert!(
        s.restarts
            .last_reason
            .as_deref()
            .unwrap_or_default()
            .contains("137"),
        "{:?}",
        s.restarts.last_reason
    );

    // Savepoint upgrade: stop with a savepoint, start the new spec from it.
    patch(&jobs, "a", json!({"parallelism": 3})).await;
    inc = running_after(&jobs, "a", inc, "the savepoint upgrade").await;
    let s = status(&jobs, "a").await;
    let from = s
        .start
        .as_ref()
        .and_then(|p| p.from.clone())
        .unwrap_or_default();
    assert!(from.contains("/savepoints/"), "started from {from:?}");
    let started = fake.started.lock().unwrap().clone();
    let (_, args) = started
        .iter()
        .find(|(p, _)| *p == format!("a-{inc}"))
        .unwrap();
    assert!(args.contains(&from), "{args:?} lacks --start-from {from}");
    assert!(
        fake.calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.ends_with("POST /v1/stop")),
        "the runtime was never asked to stop with a savepoint"
    );

    // A triggered savepoint lands in the history.
    patch(&jobs, "a", json!({"savepointTriggerNonce": 1})).await;
    wait_for("the triggered savepoint", || async {
        (!status(&jobs, "a").await.savepoints.is_empty()).then_some(())
    })
    .await;

    // A pod template, separate requests and limits and text logs: the apiserver admits the
    // merged pod, and the platform's fields are in it next to the operator's.
    patch(
        &jobs,
        "a",
        json!({
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                          "limits": {"memory": "512Mi"}},
            "logging": {"level": "debug", "format": "text"},
            "podTemplate": {
                "metadata": {"labels": {"team": "data"}},
                "spec": {
                    "nodeSelector": {"pool": "stream"},
                    "tolerations": [{"key": "dedicated", "operator": "Exists",
                                     "effect": "NoSchedule"}],
                    "containers": [
                        {"name": "runtime", "env": [{"name": "EXTRA", "value": "1"}]},
                        {"name": "agent", "image": "agent:1"}
                    ]
                }
            }
        }),
    )
    .await;
    inc = running_after(&jobs, "a", inc, "the pod-template upgrade").await;
    let admitted = Api::<Pod>::namespaced(client.clone(), NS)
        .get(&format!("a-{inc}"))
        .await
        .unwrap();
    let labels = admitted.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("data"));
    assert_eq!(labels.get("weir.dev/job").map(String::as_str), Some("a"));
    let ps = admitted.spec.clone().unwrap();
    assert_eq!(
        ps.node_selector
            .unwrap_or_default()
            .get("pool")
            .map(String::as_str),
        Some("stream")
    );
    let names: Vec<&str> = ps.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["runtime", "agent"]);
    let runtime = &ps.containers[0];
    let resources = runtime.resources.clone().unwrap();
    assert_eq!(resources.requests.unwrap()["cpu"].0, "250m");
    assert!(
        !resources.limits.unwrap().contains_key("cpu"),
        "no CPU limit"
    );
    let env = runtime.env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "EXTRA"));
    assert!(
        env.iter()
            .any(|e| e.name == "WEIR_LOG" && e.value.as_deref() == Some("debug"))
    );
    let sidecar = ps.containers[1].security_context.clone().unwrap();
    assert_eq!(sidecar.allow_privilege_escalation, Some(false));

    // A savepoint that cannot be taken: the upgrade waits and says why.
    fake.fail_savepoints.store(true, Ordering::SeqCst);
    patch(&jobs, "a", json!({"parallelism": 2})).await;
    let message = wait_for("Progressing=False while the savepoint fails", || async {
        let s = status(&jobs, "a").await;
        let c = condition(&s, "Progressing")?;
        (c.status == "False" && s.lifecycle_state == LifecycleState::Upgrading)
            .then(|| c.message.clone())
    })
    .await;
    assert!(message.to_lowercase().contains("savepoint"), "{message}");
    assert!(
        kubelet.running().contains(&format!("a-{inc}")),
        "the old pod keeps running"
    );
    // The user chooses: upgrade from the newest checkpoint instead.
    patch(&jobs, "a", json!({"upgradeMode": "last-state"})).await;
    inc = running_after(&jobs, "a", inc, "the last-state upgrade").await;
    fake.fail_savepoints.store(false, Ordering::SeqCst);

    // Suspend (no pods) and resume.
    patch(
        &jobs,
        "a",
        json!({"upgradeMode": "savepoint", "state": "suspended"}),
    )
    .await;
    wait_for("suspension", || async {
        let s = status(&jobs, "a").await;
        (s.lifecycle_state == LifecycleState::Suspended && kubelet.running().is_empty())
            .then_some(())
    })
    .await;
    patch(&jobs, "a", json!({"state": "running"})).await;
    inc = running_after(&jobs, "a", inc, "the resume").await;

    // An invalid spec is not deployed and says which field.
    jobs.create(&pp, &manifest("bad", "no_such_column > 0"))
        .await
        .unwrap();
    let c = wait_for("Ready=False on the invalid job", || async {
        let s = status(&jobs, "bad").await;
        condition(&s, "Ready")
            .filter(|c| c.status == "False" && c.reason == "InvalidSpec")
            .cloned()
    })
    .await;
    assert!(
        c.message.contains("spec.pipeline.transforms[0].filter"),
        "{}",
        c.message
    );
    assert!(!kubelet.running().iter().any(|p| p.starts_with("bad-")));
    assert!(
        event_reasons(&client, "bad")
            .await
            .contains(&"InvalidSpec".to_string())
    );

    // A SQL script reading a table that does not exist: the CRD cannot parse SQL, so the
    // operator refuses it, naming the statement, and deploys nothing.
    let mut badsql = serde_json::to_value(manifest("badsql", "amount > 0")).unwrap();
    let p = &mut badsql["spec"]["pipeline"];
    p.as_object_mut().unwrap().remove("transforms");
    p["source"]["name"] = json!("orders");
    p["sinks"][0]["kafka"]["name"] = json!("out");
    p["sql"] = json!("INSERT INTO out\nSELECT store_id, amount FROM nope\n");
    let badsql: StreamJob = serde_json::from_value(badsql).unwrap();
    jobs.create(&pp, &badsql).await.unwrap();
    let c = wait_for("Ready=False on the bad SQL", || async {
        let s = status(&jobs, "badsql").await;
        condition(&s, "Ready")
            .filter(|c| c.status == "False" && c.reason == "InvalidSpec")
            .cloned()
    })
    .await;
    assert!(
        c.message.contains("spec.pipeline.sql")
            && c.message.contains("statement 1")
            && c.message.contains("table `nope` not found"),
        "{}",
        c.message
    );
    assert!(!kubelet.running().iter().any(|p| p.starts_with("badsql-")));
    assert!(
        event_reasons(&client, "badsql")
            .await
            .contains(&"InvalidSpec".to_string())
    );

    // A template asking for privilege is refused, naming the field; nothing is deployed.
    let mut privileged = manifest("privileged", "amount > 0");
    privileged.spec.pod_template = Some(json!({"spec": {"containers": [
        {"name": "debug", "image": "busybox:1", "securityContext": {"privileged": true}}
    ]}}));
    jobs.create(&pp, &privileged).await.unwrap();
    let c = wait_for("Ready=False on the privileged template", || async {
        let s = status(&jobs, "privileged").await;
        condition(&s, "Ready")
            .filter(|c| c.status == "False" && c.reason == "InvalidSpec")
            .cloned()
    })
    .await;
    assert!(
        c.message
            .contains("spec.podTemplate.spec.containers[0].securityContext.privileged"),
        "{}",
        c.message
    );
    assert!(
        !kubelet
            .running()
            .iter()
            .any(|p| p.starts_with("privileged-"))
    );

    two_pods(&client, &jobs, &fake, &kubelet).await;

    // Deletion with a final savepoint; the object goes once the pod has.
    patch(&jobs, "a", json!({"savepointOnDelete": true})).await;
    let stops = || {
        fake.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.ends_with("POST /v1/stop"))
            .count()
    };
    let stops_before = stops();
    jobs.delete("a", &Default::default()).await.unwrap();
    wait_for("the StreamJob to go", || async {
        jobs.get_opt("a").await.ok()?.is_none().then_some(())
    })
    .await;
    let stops_after = stops();
    assert!(
        stops_after > stops_before,
        "no final savepoint on delete (incarnation {inc})"
    );

    let reasons = event_reasons(&client, "a").await;
    for want in [
        "Deploying",
        "Running",
        "Restarting",
        "UpgradeStarted",
        "UpgradeCompleted",
        "SavepointCompleted",
        "Suspended",
        "Resumed",
        "Deleting",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} event: {reasons:?}"
        );
    }
    controller.abort();
    drop(kubelet);
}

/// The incarnations whose pods of job `name` exist (terminating ones too).
async fn incarnations(pods: &Api<Pod>, name: &str) -> std::collections::BTreeSet<String> {
    let lp = kube::api::ListParams::default().labels(&format!("weir.dev/job={name}"));
    pods.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.metadata.labels?.get("weir.dev/incarnation").cloned())
        .collect()
}

/// A job of two pods, `m`, next to the others.
async fn two_pods(
    client: &Client,
    jobs: &Api<StreamJob>,
    fake: &Arc<kubelet::FakeRuntime>,
    kubelet: &kubelet::Kubelet,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    // Watches, all along, that no two incarnations of `m` ever have pods at once.
    let overlap = Arc::new(std::sync::Mutex::new(None));
    let watcher = {
        let (pods, overlap) = (pods.clone(), overlap.clone());
        tokio::spawn(async move {
            loop {
                let seen = incarnations(&pods, "m").await;
                if seen.len() > 1 {
                    overlap.lock().unwrap().get_or_insert(seen);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let mut m = manifest("m", "amount > 0");
    m.spec.pods = 2;
    jobs.create(&PostParams::default(), &m).await.unwrap();
    let mut inc = running_after(jobs, "m", 0, "the job of two pods to run").await;
    let s = status(jobs, "m").await;
    assert_eq!(s.pods.as_deref(), Some("2/2"), "{s:?}");

    // What the apiserver admitted: both pods under the headless Service, its Secret.
    let mut ips = Vec::new();
    for i in 0..2 {
        let p = pods.get(&format!("m-{inc}-{i}")).await.unwrap();
        let spec = p.spec.clone().unwrap();
        assert_eq!(spec.hostname, Some(format!("m-{inc}-{i}")));
        assert_eq!(spec.subdomain.as_deref(), Some("m-peers"));
        ips.push(p.status.and_then(|s| s.pod_ip).unwrap());
    }
    assert_ne!(ips[0], ips[1], "each pod has its own address");
    let peers = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), NS)
        .get("m-peers")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
    assert_eq!(peers.publish_not_ready_addresses, Some(true));
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
        .get("m-exchange")
        .await
        .unwrap();
    assert_eq!(secret.immutable, Some(true));
    // The harness gave the pods the addresses it rewrote `--peers` to: no cluster name left.
    let started = fake.started.lock().unwrap().clone();
    let (_, args) = started
        .iter()
        .find(|(p, _)| *p == format!("m-{inc}-1"))
        .unwrap();
    let at = args.iter().position(|a| a == "--peers").unwrap();
    assert!(
        !args[at + 1].contains(".svc") && args[at + 1].contains(&ips[1]),
        "{args:?}"
    );
    assert!(
        args.windows(2).any(|w| w == ["--pod-index", "1"]),
        "{args:?}"
    );

    // Killing pod 1 fails the incarnation: both pods are replaced, the cause recorded.
    assert!(kubelet.kill9(&format!("m-{inc}-1")));
    let killed = inc;
    inc = running_after(jobs, "m", inc, "the job of two pods to recover").await;
    let s = status(jobs, "m").await;
    assert_eq!(s.restarts.count, 1);
    let why = s.restarts.last_reason.clone().unwrap_or_default();
    assert!(
        why.contains(&format!("m-{killed}-1")) && why.contains("137"),
        "{why}"
    );
    assert_eq!(s.pods.as_deref(), Some("2/2"));

    // One pod again: a rescale through a savepoint, asked of pod 0.
    let stopped_0 = format!("m-{inc}-0 POST /v1/stop");
    patch(jobs, "m", json!({"pods": 1})).await;
    inc = running_after(jobs, "m", inc, "the rescale to one pod").await;
    let s = status(jobs, "m").await;
    assert!(
        s.start
            .as_ref()
            .and_then(|p| p.from.as_deref())
            .is_some_and(|f| f.contains("/savepoints/")),
        "{:?}",
        s.start
    );
    assert!(
        fake.calls.lock().unwrap().contains(&stopped_0),
        "the stop went to pod 0"
    );
    assert_eq!(s.pods.as_deref(), Some("1/1"));
    assert!(kubelet.running().contains(&format!("m-{inc}")));

    // More pods than subtasks is refused by the apiserver, naming the field.
    let err = jobs
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"pods": 3}})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("pods must not exceed parallelism"), "{err}");

    jobs.delete("m", &Default::default()).await.unwrap();
    wait_for("the job of two pods to go", || async {
        jobs.get_opt("m").await.ok()?.is_none().then_some(())
    })
    .await;
    watcher.abort();
    assert_eq!(
        *overlap.lock().unwrap(),
        None,
        "pods of two incarnations existed at once"
    );
}

/// The harness's scripted control API speaks what the operator's client reads (this part
/// needs no apiserver): a job report with a checkpoint, a triggered savepoint that
/// completes, and a stop with a savepoint that ends the container with its path.
#[test]
fn scripted_control_api_speaks_the_runtime_dialect() {
    use weir_operator::runtime_client::{Endpoint, RuntimeApi, RuntimeError};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fake = Arc::new(kubelet::FakeRuntime::default());
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = fake
            .start("a-1", addr, &["run".into()], Some("tok-a-1".into()))
            .await;
        let base = format!("http://{addr}");
        let client = HttpRuntime::new().unwrap();
        let token = weir_crds::control::ControlToken::new("tok-a-1").unwrap();
        let stranger = Endpoint {
            base: &base,
            token: None,
        };
        let err = client.job(stranger).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::Status { status: 401, .. }),
            "{err}"
        );
        let at = Endpoint {
            base: &base,
            token: Some(&token),
        };
        let v = client.job(at).await.unwrap();
        assert_eq!(
            (v.job_id.as_str(), v.state),
            ("lineage-a-1", weir_crds::control::JobState::Running)
        );
        assert!(v.last_checkpoint.is_some());
        let id = client.trigger_savepoint(at).await.unwrap();
        let v = client.job(at).await.unwrap();
        let sp = v.savepoints.iter().find(|s| s.id == id).unwrap();
        assert_eq!(sp.status, weir_crds::control::SavepointState::Completed);
        assert!(
            sp.path
                .as_deref()
                .unwrap_or_default()
                .contains("/savepoints/")
        );

        fake.fail_savepoints.store(true, Ordering::SeqCst);
        assert!(client.stop_with_savepoint(at).await.is_err());
        fake.fail_savepoints.store(false, Ordering::SeqCst);
        client.stop_with_savepoint(at).await.unwrap();
        let (code, message) = started.exit.await.unwrap();
        assert_eq!(code, 0);
        let m: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(m["outcome"], "stopped");
        assert!(m["savepoint"].as_str().unwrap().contains("/savepoints/"));
        assert_eq!(
            fake.calls.lock().unwrap().len(),
            6,
            "{:?}",
            fake.calls.lock().unwrap()
        );
        assert_eq!(fake.calls.lock().unwrap()[0], "a-1 REFUSED GET /v1/job");
    });
}

/// `{"a": {"a": ... 1}}`, `depth` levels deep, built without recursion limits.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

/// One StreamJob the apiserver admits and the operator cannot read (an unknown field nested
/// 250 levels deep in `podTemplate`, which the schema leaves open) used to make every list of
/// StreamJobs fail: no job in the namespace was reconciled again. Now that job alone is
/// refused, naming the field, and the others run.
#[test]
fn an_unreadable_job_does_not_stop_the_others_on_a_real_apiserver() {
    let Some(assets) = envtest::assets("operator_apiserver_unreadable") else {
        return;
    };
    weir_operator::tls::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        const NS2: &str = "tenants";
        let env = envtest::Envtest::start(&assets).await;
        let client = env.client(envtest::ADMIN_TOKEN).await.unwrap();
        let crd_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/weir/crds/streamjobs.weir.dev.yaml"
        );
        let crd = serde_yaml::from_str(&std::fs::read_to_string(crd_path).unwrap()).unwrap();
        envtest::install_crd(&client, &crd).await;
        envtest::create_namespace(&client, NS2).await;
        let fake = Arc::new(kubelet::FakeRuntime::default());
        let logs = tempfile::tempdir().unwrap();
        let _kubelet = kubelet::Kubelet::start(
            client.clone(),
            NS2,
            kubelet::Runner::Fake(fake.clone()),
            logs.path().to_path_buf(),
        );
        let jobs: Api<StreamJob> = Api::namespaced(client.clone(), NS2);
        let pp = PostParams::default();
        // The unreadable job exists before the operator starts: its first list must work.
        let mut deep = manifest("deep", "amount > 0");
        deep.metadata.namespace = Some(NS2.into());
        deep.spec.pod_template = Some(json!({"spec": {"x": nested(250)}}));
        // The apiserver admits it; its answer is the object, which the typed client cannot
        // read back (the failure the operator's list used to have).
        match jobs.create(&pp, &deep).await {
            Err(kube::Error::SerdeError(e)) => assert!(e.to_string().contains("recursion")),
            other => panic!("expected the typed answer to be unreadable: {other:?}"),
        }
        weir_operator::controller::check_crd(&client, &[NS2.to_string()])
            .await
            .expect("the operator's start-up check lists StreamJobs");
        let ctx = Arc::new(Context::new(
            client.clone(),
            Arc::new(HttpRuntime::new().unwrap()),
            Arc::new(KeepAll),
            Arc::new(Metrics::new()),
            Settings {
                default_image: "weir-runtime:test".into(),
                ..Settings::default()
            },
        ));
        let controller = tokio::spawn(weir_operator::controller::run(ctx, vec![NS2.into()]));
        let mut ok = manifest("ok", "amount > 0");
        ok.metadata.namespace = Some(NS2.into());
        jobs.create(&pp, &ok).await.unwrap();
        running_after(&jobs, "ok", 0, "a readable job next to an unreadable one").await;
        // The unreadable one, read as the operator reads it: Ready=False naming the field,
        // and an event.
        let watched: Api<weir_operator::watched::Watched> = Api::namespaced(client.clone(), NS2);
        let message = wait_for("the unreadable job's condition", || async {
            let w = watched.get("deep").await.ok()?;
            let status = w.job.err()?.status?;
            let ready = condition(&status, "Ready")?.clone();
            (ready.reason == "InvalidSpec").then_some(ready.message)
        })
        .await;
        assert!(message.contains("spec.podTemplate.spec.x.a"), "{message}");
        assert!(
            event_reasons_in(&client, NS2, "deep")
                .await
                .contains(&"InvalidSpec".to_string())
        );
        controller.abort();
    });
}

async fn event_reasons_in(client: &Client, ns: &str, name: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}
