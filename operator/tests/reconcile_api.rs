//! API-level tests: `reconcile` against a mocked Kubernetes API (every request is checked, in
//! order, and answered) and a scripted runtime control API. A missing call, an extra call or
//! a call out of order fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use weir_crds::StreamJob;
use weir_operator::context::Context;
use weir_operator::decide::{RuntimeView, Settings};
use weir_operator::dispose::SavepointStore;
use weir_operator::metrics::Metrics;
use weir_operator::reconcile::reconcile;
use weir_operator::runtime_client::{RuntimeApi, RuntimeError};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A runtime that answers from a script and records what it was asked.
#[derive(Default)]
struct FakeRuntime {
    view: Mutex<Option<RuntimeView>>,
    calls: Mutex<Vec<String>>,
}

impl RuntimeApi for FakeRuntime {
    fn job<'a>(&'a self, base: &'a str) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("GET {base}/v1/job"));
        let v = self.view.lock().unwrap().clone();
        Box::pin(async move {
            v.ok_or(RuntimeError::Unreachable {
                url: base.into(),
                message: "down".into(),
            })
        })
    }
    fn trigger_savepoint<'a>(
        &'a self,
        base: &'a str,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("POST {base}/v1/savepoints"));
        Box::pin(async { Ok("sp-req-1".to_string()) })
    }
    fn stop_with_savepoint<'a>(&'a self, base: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("POST {base}/v1/stop"));
        Box::pin(async { Ok(()) })
    }
}

struct NoStore;
impl SavepointStore for NoStore {
    fn dispose<'a>(
        &'a self,
        path: &'a str,
        _: &'a weir_crds::JobS3Spec,
        _: Option<(String, String)>,
    ) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async move { Err(format!("unexpected disposal of {path}")) })
    }
}

fn now_at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn context(runtime: Arc<FakeRuntime>, now: fn() -> jiff::Timestamp) -> (Arc<Context>, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let mut ctx = Context::new(
        client,
        runtime,
        Arc::new(NoStore),
        Arc::new(Metrics::new()),
        Settings {
            default_image: "weir-runtime:test".into(),
        },
    );
    ctx.now = now;
    (Arc::new(ctx), handle)
}

fn job(status: Value, extra_meta: Value) -> StreamJob {
    let mut meta = json!({
        "name": "sales", "namespace": "shop", "uid": "uid-1", "generation": 1,
        "resourceVersion": "7", "finalizers": ["weir.dev/finalizer"]
    });
    if let (Some(m), Some(x)) = (meta.as_object_mut(), extra_meta.as_object()) {
        m.extend(x.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
        "metadata": meta,
        "spec": {
            "parallelism": 2,
            "checkpoint": {"storage": "s3://bucket/weir"},
            "pipeline": {
                "source": {"kafka": {"bootstrapServers": "kafka:9092", "topic": "orders"},
                           "schema": [{"name": "amount", "type": "int64"}]},
                "sinks": [{"kafka": {"bootstrapServers": "kafka:9092", "topic": "out",
                                     "transactionalIdPrefix": "out"}}]
            }
        },
        "status": status,
    }))
    .unwrap()
}

/// One expected API call: method, path (without query), and the answer to give.
struct Call {
    method: Method,
    path: String,
    answer: Value,
}

fn call(method: Method, path: &str, answer: Value) -> Call {
    Call {
        method,
        path: path.into(),
        answer,
    }
}

fn list(items: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Serves `calls` in order, echoing bodies when the answer is `null`; returns the request
/// bodies. Panics on any call that differs.
async fn serve(mut handle: Handle, calls: Vec<Call>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for (i, c) in calls.into_iter().enumerate() {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("call {i} ({} {}) never came", c.method, c.path))
            .expect("client dropped");
        assert_eq!(
            (req.method().clone(), req.uri().path().to_string()),
            (c.method.clone(), c.path.clone()),
            "call {i}: got {} {}",
            req.method(),
            req.uri()
        );
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // `null` echoes the request, as the API server answers a write with the object; a
        // StreamJob write (finalizer, status) is answered with a whole StreamJob.
        let answer = if !c.answer.is_null() {
            c.answer
        } else if c.path.contains("/streamjobs/") {
            serde_json::to_value(job(body["status"].clone(), json!({}))).unwrap()
        } else {
            let mut echo = body.clone();
            if echo.get("metadata").is_none() {
                echo["metadata"] = json!({"name": "x", "namespace": "shop"});
            }
            echo
        };
        bodies.push(body);
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    bodies
}

/// Runs one reconcile; a call the scenario does not answer shows up as a hang, caught here.
async fn run(
    f: impl std::future::Future<
        Output = Result<kube::runtime::controller::Action, weir_operator::error::Error>,
    >,
) {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("reconcile made a call the scenario does not expect (or hung)")
        .expect("reconcile succeeds");
}

fn event_ok() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "shop"},
           "eventTime": "2027-01-15T08:00:00.000000Z"})
}

const PODS: &str = "/api/v1/namespaces/shop/pods";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const STATUS: &str = "/apis/weir.dev/v1alpha1/namespaces/shop/streamjobs/sales/status";

#[tokio::test]
async fn deploy_applies_config_and_service_creates_pod_then_records_event_and_status() {
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([]))),
            call(
                Method::PATCH,
                "/api/v1/namespaces/shop/configmaps/sales-job",
                Value::Null,
            ),
            call(
                Method::PATCH,
                "/api/v1/namespaces/shop/services/sales",
                Value::Null,
            ),
            call(Method::POST, PODS, Value::Null),
            call(Method::POST, EVENTS, event_ok()),
            call(Method::PATCH, STATUS, Value::Null),
        ],
    ));
    run(reconcile(Arc::new(job(Value::Null, json!({}))), ctx)).await;
    let bodies = server.await.unwrap();
    let cm = &bodies[1];
    assert!(
        cm["data"]["job.yaml"]
            .as_str()
            .unwrap()
            .contains("parallelism: 2")
    );
    let pod = &bodies[3];
    assert_eq!(pod["metadata"]["name"], "sales-1");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(bodies[4]["reason"], "Deploying");
    let status = &bodies[5]["status"];
    assert_eq!(status["lifecycleState"], "Deploying");
    assert_eq!(status["incarnation"], 1);
    assert!(rt.calls.lock().unwrap().is_empty(), "no pod to ask yet");
}

#[tokio::test]
async fn new_job_gets_the_finalizer_first() {
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt, || now_at(0));
    let server = tokio::spawn(serve(
        handle,
        vec![call(
            Method::PATCH,
            "/apis/weir.dev/v1alpha1/namespaces/shop/streamjobs/sales",
            Value::Null,
        )],
    ));
    let j = job(Value::Null, json!({"finalizers": []}));
    run(reconcile(Arc::new(j), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(
        bodies[0]["metadata"]["finalizers"],
        json!(["weir.dev/finalizer"])
    );
}

fn running_status() -> Value {
    json!({
        "lifecycleState": "Running", "incarnation": 1,
        "incarnationStartedAt": "2027-01-15T08:00:00Z", "runningSince": "2027-01-15T08:00:00Z",
        "lastReconciledSpec": serde_json::to_string(&job(Value::Null, json!({})).spec).unwrap(),
        "restarts": {"count": 0}
    })
}

fn pod_json(name: &str, incarnation: u64, phase: &str, terminated: Option<Value>) -> Value {
    let mut status = json!({"phase": phase, "podIP": "10.1.2.3"});
    if let Some(t) = terminated {
        status["containerStatuses"] = json!([{"name": "runtime", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": t}}]);
    }
    json!({"metadata": {"name": name, "namespace": "shop",
                        "labels": {"weir.dev/job": "sales", "weir.dev/incarnation": incarnation.to_string()}},
           "status": status})
}

#[tokio::test]
async fn heal_deletes_the_failed_pod_then_starts_the_next_incarnation() {
    let rt = Arc::new(FakeRuntime::default());
    // Pass 1: the pod was OOMKilled: delete it, record why.
    let (ctx, handle) = context(rt.clone(), || now_at(100_000));
    let failed = pod_json(
        "sales-1",
        1,
        "Failed",
        Some(json!({"exitCode": 137, "reason": "OOMKilled"})),
    );
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([failed]))),
            call(
                Method::DELETE,
                "/api/v1/namespaces/shop/pods/sales-1",
                failed.clone(),
            ),
            call(Method::PATCH, STATUS, Value::Null),
        ],
    ));
    run(reconcile(Arc::new(job(running_status(), json!({}))), ctx)).await;
    let bodies = server.await.unwrap();
    let status = bodies[2]["status"].clone();
    assert_eq!(
        status["restarts"]["lastReason"],
        "pod sales-1 OOMKilled (exit 137)"
    );

    // Pass 2, after the backoff, the pod is gone: incarnation 2.
    let (ctx, handle) = context(rt, || now_at(100_010));
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([]))),
            call(
                Method::PATCH,
                "/api/v1/namespaces/shop/configmaps/sales-job",
                Value::Null,
            ),
            call(
                Method::PATCH,
                "/api/v1/namespaces/shop/services/sales",
                Value::Null,
            ),
            call(Method::POST, PODS, Value::Null),
            call(Method::POST, EVENTS, event_ok()),
            call(Method::PATCH, STATUS, Value::Null),
        ],
    ));
    run(reconcile(Arc::new(job(status, json!({}))), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[3]["metadata"]["name"], "sales-2");
    assert_eq!(bodies[4]["reason"], "Restarting");
    assert_eq!(bodies[5]["status"]["restarts"]["count"], 1);
}

#[tokio::test]
async fn savepoint_upgrade_asks_the_runtime_to_stop_with_a_savepoint() {
    let rt = Arc::new(FakeRuntime::default());
    *rt.view.lock().unwrap() = Some(RuntimeView {
        job_id: "lineage-a".into(),
        state: "running".into(),
        ..RuntimeView::default()
    });
    let (ctx, handle) = context(rt.clone(), || now_at(100_000));
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(
                Method::GET,
                PODS,
                list(json!([pod_json("sales-1", 1, "Running", None)])),
            ),
            call(Method::POST, EVENTS, event_ok()),
            call(Method::PATCH, STATUS, Value::Null),
        ],
    ));
    let mut j = job(running_status(), json!({"generation": 2}));
    j.spec.parallelism = 3;
    run(reconcile(Arc::new(j), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["reason"], "UpgradeStarted");
    assert_eq!(bodies[2]["status"]["lifecycleState"], "Upgrading");
    assert_eq!(bodies[2]["status"]["operation"]["stop"], "savepoint");
    assert_eq!(
        *rt.calls.lock().unwrap(),
        vec![
            "GET http://10.1.2.3:8081/v1/job".to_string(),
            "POST http://10.1.2.3:8081/v1/stop".to_string()
        ]
    );
}

#[tokio::test]
async fn delete_removes_pods_then_the_finalizer() {
    let rt = Arc::new(FakeRuntime::default());
    let deleting = json!({"deletionTimestamp": "2027-01-15T08:00:00Z"});
    let (ctx, handle) = context(rt.clone(), || now_at(100_000));
    let pod = pod_json("sales-1", 1, "Running", None);
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([pod.clone()]))),
            call(Method::DELETE, "/api/v1/namespaces/shop/pods/sales-1", pod),
            call(Method::POST, EVENTS, event_ok()),
            call(Method::PATCH, STATUS, Value::Null),
        ],
    ));
    run(reconcile(
        Arc::new(job(running_status(), deleting.clone())),
        ctx,
    ))
    .await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[2]["reason"], "Deleting");
    let status = bodies[3]["status"].clone();
    assert_eq!(status["lifecycleState"], "Deleting");

    let (ctx, handle) = context(rt, || now_at(100_005));
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([]))),
            call(
                Method::PATCH,
                "/apis/weir.dev/v1alpha1/namespaces/shop/streamjobs/sales",
                Value::Null,
            ),
        ],
    ));
    run(reconcile(Arc::new(job(status, deleting)), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["finalizers"], json!([]));
}
