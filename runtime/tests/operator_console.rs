//! The operator's web console in a real browser (headless Chromium through chromedriver), on
//! a real kube-apiserver (envtest, `KUBEBUILDER_ASSETS`): the `weir-operator` binary with the
//! chart's RBAC as rendered with `console.enabled=true`, a harness playing the kubelet (each
//! runtime pod a local `weir-runtime` process) and the project's S3 server.
//!
//! What a person sees and may do: the job list shows the running job with a rate; its page
//! shows its events and the runtime's own page (proxied from the pod) with non-zero rates;
//! "Take savepoint" is refused without a token (401) and for a known person without the
//! right (403), and with it the savepoint appears in the page's history, in the job's status
//! and as an Event naming the person; suspend and resume from the page do what they say. What
//! the page shows is checked against the API, not against the page alone.
//!
//! Without an apiserver it prints one SKIPPED line; without a browser too (unless
//! `WEIR_REQUIRE_BROWSER=1`). `WEIR_UPDATE_SCREENSHOTS=1` writes the README's screenshots.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use weir_kubetest::envtest::{self, wait_for};
use weir_kubetest::{helm, kubelet};
use weir_testkit::browser::{self, Browser, BrowserError};

use common::page::{rate, screenshot, until};
use common::{fresh_bucket, s3_endpoint, unique};

const NS: &str = "analytics";
const OTHER_NS: &str = "shop";
const JOB: &str = "clicks";

async fn status(jobs: &Api<DynamicObject>) -> Value {
    common::cluster::status(jobs, JOB).await
}

/// The job's Events: (reason, note).
async fn events(client: &Client) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), NS);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(JOB))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Click an action with `token` in the token field (empty: none); the result line's text.
async fn act(b: &Browser, action: &str, token: &str, confirm: bool) -> String {
    b.clear("#token").await.unwrap();
    if !token.is_empty() {
        b.type_into("#token", token).await.unwrap();
    }
    b.click(&format!("button[data-action={action}]"))
        .await
        .unwrap();
    if confirm {
        b.accept_alert().await.unwrap();
    }
    b.wait_for("the action's answer", Duration::from_secs(30), || async {
        let t = b.text("#action-result").await?;
        Ok::<_, BrowserError>((!t.is_empty() && !t.ends_with('…')).then_some(t))
    })
    .await
    .unwrap()
}

#[test]
fn the_operator_console_shows_jobs_and_acts_only_for_people_kubernetes_allows() {
    let Some(assets) = envtest::assets("operator_console") else {
        return;
    };
    let Some((chromium, driver)) = browser::installed() else {
        assert!(
            std::env::var(browser::ENV_REQUIRE_BROWSER).as_deref() != Ok("1"),
            "WEIR_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed"
        );
        println!("SKIPPED operator_console: needs Debian's chromium and chromium-driver");
        return;
    };
    let Some(s3) = s3_endpoint("operator_console") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario(&assets, &s3, &chromium, &driver));
}

async fn scenario(assets: &Path, s3: &str, chromium: &Path, driver: &Path) {
    let env = envtest::Envtest::start(assets).await;
    let admin = env.client(envtest::ADMIN_TOKEN).await.unwrap();
    let pp = PostParams::default();

    // The chart with the console on: CRD, the operator's ClusterRoles and bindings.
    let helm_bin = std::env::var("WEIR_HELM")
        .expect("the console test renders the chart: set WEIR_HELM (tests/chart.sh helm)");
    let objects = helm::template(
        &helm_bin,
        &["--include-crds", "--set", "console.enabled=true"],
    );
    envtest::install_cluster_objects(&admin, &objects).await;
    for ns in ["weir", NS] {
        envtest::create_namespace(&admin, ns).await;
    }

    let console_args: Vec<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(String::from))
        .filter(|a| a.starts_with("--console-addr"))
        .collect();
    assert_eq!(console_args, ["--console-addr=0.0.0.0:8090"]);

    // Alice may edit StreamJobs in the namespace (what `kubectl edit` needs); mallory is
    // known to the apiserver and may do nothing.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "streamjob-editor"},
        "rules": [{"apiGroups": ["weir.dev"], "resources": ["streamjobs"],
                   "verbs": ["get", "list", "watch", "patch", "update"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), NS)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "alice-edits-streamjobs"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "streamjob-editor"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": envtest::PERSON_USER}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), NS)
        .create(&pp, &binding)
        .await
        .unwrap();

    let u = unique();
    let bucket = fresh_bucket(s3, "operator-console").await;
    common::cluster::s3_secret(&admin, NS).await;
    let (runtime_bin, operator_bin) = common::cluster::binaries();
    let logs = std::env::temp_dir().join(format!("weir-operator-console-{u}"));
    println!(
        "operator_console: operator and pod logs in {}",
        logs.display()
    );
    let kubelet = kubelet::Kubelet::start(
        admin.clone(),
        NS,
        kubelet::Runner::Process(runtime_bin),
        logs.join("pods"),
    );
    let port = envtest::free_port();
    let console = format!("http://127.0.0.1:{port}");
    let _operator = env.start_operator(
        &operator_bin,
        &[
            "--runtime-image",
            "weir-runtime:harness",
            "--console-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &logs.join("operator.log"),
    );

    let manifest = json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": JOB, "namespace": NS},
        "spec": {
            "parallelism": 2,
            "checkpoint": {"interval": "1s", "timeout": "30s", "retained": 2,
                "storage": format!("s3://{bucket}/checkpoints"),
                "s3": {"endpoint": s3, "region": "us-east-1", "pathStyle": true, "credentialsSecret": "weir-s3"}},
            "resources": {"cpu": "1", "memory": "1Gi"},
            // The window's state on disk, so that the status reports it there.
            "stateBackend": {"type": "disk", "memory": "64Mi",
                "dir": logs.join("state").display().to_string()},
            "pipeline": {
                "source": {
                    "datagen": {"seed": 7, "rate": 20000, "splits": 2, "fields": {
                        "user": {"key": {"cardinality": 50, "prefix": "user-"}},
                        "ts": {"eventTime": {"start": "2026-01-01T00:00:00Z", "step": "1ms"}}}},
                    "schema": [{"name": "user", "type": "string"}, {"name": "ts", "type": "timestamp"}],
                    "eventTime": {"field": "ts", "maxOutOfOrderness": "100ms"}
                },
                "transforms": [{"window": {"tumbling": "1s", "keyBy": ["user"],
                    "aggregates": {"clicks": "count(*)"}}}],
                "sinks": [{"blackhole": {}}]
            }
        }
    });
    // A second job, in another namespace, created suspended: the list spans namespaces.
    envtest::create_namespace(&admin, OTHER_NS).await;
    let mut other = manifest.clone();
    other["metadata"] = json!({"name": "orders", "namespace": OTHER_NS});
    other["spec"]["state"] = json!("suspended");
    other["spec"]["checkpoint"]["s3"] =
        json!({"endpoint": s3, "region": "us-east-1", "pathStyle": true});
    let others: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), OTHER_NS, &common::cluster::job_resource());
    others
        .create(&pp, &serde_json::from_value(other).unwrap())
        .await
        .unwrap();
    let jobs: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), NS, &common::cluster::job_resource());
    jobs.create(&pp, &serde_json::from_value(manifest).unwrap())
        .await
        .unwrap();
    wait_for(
        "the job to run and checkpoint",
        Duration::from_secs(120),
        || async {
            let s = status(&jobs).await;
            (s["lifecycleState"] == "Running" && !s["lastCheckpoint"].is_null()).then_some(())
        },
    )
    .await;
    // What `kubectl get sj` shows as On Disk and In Memory, from the pods' own stores.
    let local = wait_for(
        "the status to report state on disk",
        Duration::from_secs(60),
        || async {
            let c = status(&jobs).await["lastCheckpoint"].clone();
            (c["diskBytes"].as_u64()? > 0).then_some(c)
        },
    )
    .await;
    assert!(local["memoryBytes"].is_u64(), "{local}");

    let b = Browser::start(chromium, driver).await.unwrap();
    let limit = Duration::from_secs(60);

    // The list: the job, running, with a rate read from its pod.
    b.goto(&format!("{console}/console/")).await.unwrap();
    let row = format!("tr[data-job=\"{NS}/{JOB}\"]");
    until(&b, &format!("{row} td.state"), "Running", true).await;
    let rate_cell = format!("{row} td.rate");
    let listed = b
        .wait_for("a rate in the list", limit, || rate(&b, &rate_cell))
        .await
        .unwrap();
    assert!(
        listed > 1_000.0,
        "listed at {listed}/s, datagen makes 20 000/s"
    );
    // The other job, in the state its status gives.
    let other_state = wait_for(
        "the other job's status",
        Duration::from_secs(60),
        || async {
            let s = others.get("orders").await.ok()?.data["status"]["lifecycleState"].clone();
            s.as_str().map(String::from)
        },
    )
    .await;
    until(
        &b,
        &format!("tr[data-job=\"{OTHER_NS}/orders\"] td.state"),
        &other_state,
        true,
    )
    .await;
    screenshot(&b, "console-jobs.png", &logs).await;

    // The runtime's own page through the operator: non-zero rates, its actions withheld.
    b.goto(&format!(
        "{console}/console/jobs/{NS}/{JOB}/runtime/?embedded"
    ))
    .await
    .unwrap();
    let source = b
        .wait_for("the proxied source rate", limit, || {
            rate(&b, "[data-op=source] .out")
        })
        .await
        .unwrap();
    assert!(source > 1_000.0, "source at {source}/s");
    assert_eq!(
        b.attribute("#act", "hidden").await.unwrap().as_deref(),
        Some("true")
    );
    // The runtime's own actions are not reachable through the operator.
    let posted = reqwest::Client::new()
        .post(format!("{console}/console/jobs/{NS}/{JOB}/runtime/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 403);

    // The job page.
    b.goto(&format!("{console}/console/jobs/{NS}/{JOB}/"))
        .await
        .unwrap();
    until(&b, "#state", "Running", true).await;
    until(&b, "#events tbody", "Deploying", true).await;
    until(&b, "#spec", "parallelism: 2", true).await;
    b.wait_for("the job page's rate", limit, || rate(&b, "#rate"))
        .await
        .unwrap();

    // No token: 401; a known person without the right: 403; nothing changes either way.
    let before = status(&jobs).await["savepoints"]
        .as_array()
        .map_or(0, Vec::len);
    let r = act(&b, "savepoint", "", false).await;
    assert!(r.contains("(401)"), "{r}");
    let r = act(&b, "savepoint", envtest::STRANGER_TOKEN, false).await;
    assert!(r.contains("(403)") && r.contains("mallory"), "{r}");
    let r = act(&b, "savepoint", "not-a-token", false).await;
    assert!(r.contains("(401)"), "{r}");
    let spec = jobs.get(JOB).await.unwrap().data["spec"].clone();
    assert_eq!(
        spec["savepointTriggerNonce"].as_i64().unwrap_or(0),
        0,
        "{spec}"
    );
    assert!(
        !events(&admin)
            .await
            .iter()
            .any(|(r, _)| r == "ConsoleAction"),
        "a refused action left an event"
    );

    // Alice may: the savepoint is taken, listed on the page and in status, and an Event
    // names her.
    let r = act(&b, "savepoint", envtest::PERSON_TOKEN, false).await;
    assert!(
        r.contains("savepoint requested") && r.contains("alice"),
        "{r}"
    );
    let path = wait_for(
        "the savepoint in status",
        Duration::from_secs(60),
        || async {
            let s = status(&jobs).await;
            let sps = s["savepoints"].as_array()?;
            (sps.len() > before)
                .then(|| sps.last()?["path"].as_str().map(String::from))
                .flatten()
        },
    )
    .await;
    until(&b, "#savepoints tbody", &path, true).await;
    let ev = events(&admin).await;
    assert!(
        ev.iter().any(|(r, n)| r == "ConsoleAction"
            && n.contains("savepoint requested")
            && n.contains("alice")),
        "{ev:?}"
    );
    until(&b, "#events tbody", "ConsoleAction", true).await;
    screenshot(&b, "console-job-page.png", &logs).await;

    // Suspend and resume from the page.
    let r = act(&b, "suspend", envtest::PERSON_TOKEN, true).await;
    assert!(r.contains("suspend requested"), "{r}");
    wait_for("suspension", Duration::from_secs(120), || async {
        let s = status(&jobs).await;
        (s["lifecycleState"] == "Suspended" && kubelet.running().is_empty()).then_some(())
    })
    .await;
    until(&b, "#state", "Suspended", true).await;
    let r = act(&b, "resume", envtest::PERSON_TOKEN, false).await;
    assert!(r.contains("resume requested"), "{r}");
    wait_for("the resume", Duration::from_secs(120), || async {
        (status(&jobs).await["lifecycleState"] == "Running").then_some(())
    })
    .await;
    until(&b, "#state", "Running", true).await;
    let reasons: Vec<String> = events(&admin).await.into_iter().map(|(r, _)| r).collect();
    for want in ["Suspended", "Resumed"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} in {reasons:?}"
        );
    }
    assert_eq!(
        reasons.iter().filter(|r| *r == "ConsoleAction").count(),
        3,
        "{reasons:?}"
    );
    drop(b);
    jobs.delete(JOB, &Default::default()).await.unwrap();
    wait_for(
        "the StreamJob to be deleted",
        Duration::from_secs(120),
        || async { jobs.get_opt(JOB).await.ok()?.is_none().then_some(()) },
    )
    .await;
    drop(kubelet);
}
