//! API-level tests: `reconcile` against a mocked Kubernetes API (every request is checked, in
//! order, and answered) and a scripted runtime control API. A missing call, an extra call or
//! a call out of order fails the test. Every request is also recorded, and
//! `every_request_is_granted_and_every_grant_is_used` checks the lot against the operator's
//! RBAC table ([`weir_operator::rbac`]).
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
use weir_operator::reconcile::{reconcile, reconcile_watched};
use weir_operator::runtime_client::{Endpoint, RuntimeApi, RuntimeError};
use weir_operator::watched::Watched;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A runtime that answers from a script and records what it was asked.
#[derive(Default)]
struct FakeRuntime {
    view: Mutex<Option<RuntimeView>>,
    calls: Mutex<Vec<String>>,
}

impl RuntimeApi for FakeRuntime {
    fn job<'a>(&'a self, at: Endpoint<'a>) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>> {
        let base = at.base;
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
        at: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        let base = at.base;
        self.calls
            .lock()
            .unwrap()
            .push(format!("POST {base}/v1/savepoints"));
        Box::pin(async { Ok("sp-req-1".to_string()) })
    }
    fn stop_with_savepoint<'a>(
        &'a self,
        at: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let base = at.base;
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
        _: weir_operator::dispose::Access<'a>,
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
            ..Settings::default()
        },
    );
    ctx.now = now;
    (Arc::new(ctx), handle)
}

/// A context for the next pass of the same operator process: it shares what `before` wrote.
fn context_after(
    before: &Context,
    runtime: Arc<FakeRuntime>,
    now: fn() -> jiff::Timestamp,
) -> (Arc<Context>, Handle) {
    let (ctx, handle) = context(runtime, now);
    let ctx = Context {
        written: before.written.clone(),
        ..Arc::unwrap_or_clone(ctx)
    };
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

/// Every request any scenario made: method, path, query, content type.
static SEEN: Mutex<Vec<[String; 4]>> = Mutex::new(Vec::new());

fn record<B>(req: &Request<B>) {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    SEEN.lock().unwrap().push([
        req.method().to_string(),
        req.uri().path().to_string(),
        req.uri().query().unwrap_or_default().to_string(),
        header("content-type"),
    ]);
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
        record(&req);
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
        let code = match answer["kind"].as_str() {
            Some("Status") => answer["code"].as_u64().and_then(|c| u16::try_from(c).ok()),
            _ => None,
        };
        send.send_response(
            Response::builder()
                .status(code.unwrap_or(200))
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
const CONTROL_SECRET: &str = "/api/v1/namespaces/shop/secrets/sales-control";

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "reason": "NotFound", "code": 404, "message": "not found"})
}

/// Observing reads the job's control token after listing the pods; here it exists.
fn control_secret_read() -> Call {
    call(
        Method::GET,
        CONTROL_SECRET,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sales-control", "namespace": "shop",
                            "ownerReferences": [{"apiVersion": "weir.dev/v1alpha1",
                                "kind": "StreamJob", "name": "sales", "uid": "uid-1",
                                "controller": true}]},
               "data": {"token": "dG9rZW4="}}),
    )
}

/// No pod exists, so a new incarnation starts: list pods, find no control Secret, apply
/// ConfigMap and Service, create the control Secret and the pod, record the event, write the
/// status.
fn start_incarnation_calls() -> Vec<Call> {
    vec![
        call(Method::GET, PODS, list(json!([]))),
        call(Method::GET, CONTROL_SECRET, not_found()),
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
        call(Method::POST, "/api/v1/namespaces/shop/secrets", Value::Null),
        call(Method::POST, PODS, Value::Null),
        call(Method::POST, EVENTS, event_ok()),
        call(Method::PATCH, STATUS, Value::Null),
    ]
}

#[tokio::test]
async fn deploy_applies_config_and_service_creates_pod_then_records_event_and_status() {
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let server = tokio::spawn(serve(handle, start_incarnation_calls()));
    run(reconcile(Arc::new(job(Value::Null, json!({}))), ctx)).await;
    let bodies = server.await.unwrap();
    let cm = &bodies[2];
    assert!(
        cm["data"]["job.yaml"]
            .as_str()
            .unwrap()
            .contains("parallelism: 2")
    );
    let pod = &bodies[5];
    assert_eq!(pod["metadata"]["name"], "sales-1");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(bodies[6]["reason"], "Deploying");
    let status = &bodies[7]["status"];
    assert_eq!(status["lifecycleState"], "Deploying");
    assert_eq!(status["incarnation"], 1);
    assert!(rt.calls.lock().unwrap().is_empty(), "no pod to ask yet");
}

fn policed(ctx: Arc<Context>) -> Arc<Context> {
    let settings = weir_operator::network_policy::PolicySettings::from_flags(
        "weir".into(),
        r#"{"app.kubernetes.io/name":"weir"}"#,
        "",
    )
    .unwrap();
    Arc::new(Arc::unwrap_or_clone(ctx).with_network_policy(settings))
}

const POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/sales-runtime";

/// With NetworkPolicies on, a deploy applies the job's policy before anything else it
/// writes, so no pod runs unprotected; the next pass of the same process does not apply it
/// again; a new operator process (an upgrade from a chart that wrote no policies) applies it
/// once to a job that is already running. Mutation: drop the once-per-process apply in
/// `reconcile` and the third pass makes no call for the policy.
#[tokio::test]
async fn each_job_gets_its_network_policy_before_its_pods_and_after_an_operator_upgrade() {
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let ctx = policed(ctx);
    let mut calls = start_incarnation_calls();
    calls.insert(2, call(Method::PATCH, POLICY, Value::Null));
    let server = tokio::spawn(serve(handle, calls));
    let stale = Arc::new(job(Value::Null, json!({})));
    run(reconcile(stale.clone(), ctx.clone())).await;
    let bodies = server.await.unwrap();
    let policy = &bodies[2];
    assert_eq!(policy["kind"], "NetworkPolicy");
    assert_eq!(policy["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        policy["spec"]["podSelector"],
        json!({"matchLabels": {"weir.dev/job": "sales"}})
    );
    let deploying = bodies[8]["status"].clone();
    assert_eq!(deploying["lifecycleState"], "Deploying");

    // The same process, the pod starting: nothing to apply.
    let (ctx2, handle) = context_after(&ctx, rt.clone(), || now_at(1));
    let ctx2 = Arc::new(Context {
        policies: ctx.policies.clone(),
        ..Arc::unwrap_or_clone(policed(ctx2))
    });
    let starting = pod_json("sales-1", 1, "Pending", None);
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([starting.clone()]))),
            control_secret_read(),
        ],
    ));
    run(reconcile(stale, ctx2)).await;
    server.await.unwrap();

    // A new operator process: the job gets its policy once.
    let (ctx3, handle) = context(rt, || now_at(2));
    let ctx3 = policed(ctx3);
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([starting]))),
            control_secret_read(),
            call(Method::PATCH, POLICY, Value::Null),
        ],
    ));
    run(reconcile(Arc::new(job(deploying, json!({}))), ctx3)).await;
    let bodies = server.await.unwrap();
    assert_eq!(
        bodies[2]["spec"]["ingress"][1]["ports"],
        json!([{"port": "exchange", "protocol": "TCP"}])
    );
}

/// A job of two pods starts as two pods at once, after its config: the control Service
/// (selecting pod 0), the headless `sales-peers` Service, the exchange Secret (created
/// blind: a `409` from an earlier pass is fine; observe reads it to check the job owns it),
/// then pod 0 and pod 1.
#[tokio::test]
async fn a_job_of_two_pods_starts_with_its_peers_service_exchange_secret_and_both_pods() {
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let calls = vec![
        call(Method::GET, PODS, list(json!([]))),
        control_secret_read(),
        call(
            Method::GET,
            "/api/v1/namespaces/shop/secrets/sales-exchange",
            not_found(),
        ),
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
        call(
            Method::PATCH,
            "/api/v1/namespaces/shop/services/sales-peers",
            Value::Null,
        ),
        call(
            Method::POST,
            "/api/v1/namespaces/shop/secrets",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "AlreadyExists", "code": 409, "message": "exists"}),
        ),
        call(Method::POST, PODS, Value::Null),
        call(Method::POST, PODS, Value::Null),
        call(Method::POST, EVENTS, event_ok()),
        call(Method::PATCH, STATUS, Value::Null),
    ];
    let server = tokio::spawn(serve(handle, calls));
    let mut j = job(Value::Null, json!({}));
    j.spec.pods = 2;
    run(reconcile(Arc::new(j), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(
        bodies[4]["spec"]["selector"],
        json!({"weir.dev/job": "sales", "weir.dev/pod-index": "0"})
    );
    assert_eq!(bodies[5]["spec"]["clusterIP"], "None");
    assert_eq!(bodies[5]["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(bodies[6]["metadata"]["name"], "sales-exchange");
    assert_eq!(bodies[6]["immutable"], true);
    let token = bodies[6]["stringData"]["token"].as_str().unwrap();
    assert!(token.len() >= 16, "the runtime refuses shorter tokens");
    for (i, pod) in bodies[7..9].iter().enumerate() {
        assert_eq!(pod["metadata"]["name"], format!("sales-1-{i}"));
        assert_eq!(
            pod["metadata"]["labels"]["weir.dev/pod-index"],
            i.to_string()
        );
        assert_eq!(pod["spec"]["hostname"], format!("sales-1-{i}"));
        assert_eq!(pod["spec"]["subdomain"], "sales-peers");
        let args = pod["spec"]["containers"][0]["args"].to_string();
        assert!(args.contains(&format!("\"--pod-index\",\"{i}\"")), "{args}");
        assert!(
            args.contains(
                "sales-1-0.sales-peers.shop.svc:7070,sales-1-1.sales-peers.shop.svc:7070"
            ),
            "{args}"
        );
    }
    assert!(
        !bodies[7..9].iter().any(|b| b.to_string().contains(token)),
        "the pods get the exchange token only by reference"
    );
    assert!(
        bodies[9]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("on 2 pods"),
        "{}",
        bodies[9]
    );
    let status = &bodies[10]["status"];
    assert_eq!(status["pods"], "0/2");
    assert!(rt.calls.lock().unwrap().is_empty(), "no pod to ask yet");
}

/// `weir_operator_reconciles_total{result}` as `/metrics` shows it.
fn reconciles(metrics: &Metrics, result: &str) -> u64 {
    let line = format!("weir_operator_reconciles_total{{result=\"{result}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn reconciles_are_counted_by_their_result() {
    // A pass that decides and acts is `done`.
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let server = tokio::spawn(serve(handle, start_incarnation_calls()));
    run(reconcile(
        Arc::new(job(Value::Null, json!({}))),
        ctx.clone(),
    ))
    .await;
    server.await.unwrap();
    assert_eq!(
        (
            reconciles(&ctx.metrics, "done"),
            reconciles(&ctx.metrics, "error")
        ),
        (1, 0)
    );
    // A pass whose API call fails is an `error`, not `done`.
    let (ctx, mut handle) = context(rt, || now_at(0));
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("the pods are listed");
        record(&req);
        assert_eq!(req.uri().path(), PODS);
        let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                            "message": "etcd timeout", "reason": "InternalError", "code": 500});
        send.send_response(
            Response::builder()
                .status(500)
                .body(Body::from(serde_json::to_vec(&status).unwrap()))
                .unwrap(),
        );
    });
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(job(Value::Null, json!({}))), ctx.clone()),
    )
    .await
    .expect("no hang");
    assert!(result.is_err(), "the failed list fails the pass");
    server.await.unwrap();
    assert_eq!(
        (
            reconciles(&ctx.metrics, "done"),
            reconciles(&ctx.metrics, "error")
        ),
        (0, 1)
    );
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

/// The first heal pass over an OOMKilled pod: list it, delete it, write the status.
fn heal_first_pass_calls() -> Vec<Call> {
    let failed = pod_json(
        "sales-1",
        1,
        "Failed",
        Some(json!({"exitCode": 137, "reason": "OOMKilled"})),
    );
    vec![
        call(Method::GET, PODS, list(json!([failed.clone()]))),
        control_secret_read(),
        call(
            Method::DELETE,
            "/api/v1/namespaces/shop/pods/sales-1",
            failed,
        ),
        call(Method::PATCH, STATUS, Value::Null),
    ]
}

#[tokio::test]
async fn heal_deletes_the_failed_pod_then_starts_the_next_incarnation() {
    let rt = Arc::new(FakeRuntime::default());
    // Pass 1: the pod was OOMKilled: delete it, record why.
    let (ctx, handle) = context(rt.clone(), || now_at(100_000));
    let server = tokio::spawn(serve(handle, heal_first_pass_calls()));
    run(reconcile(Arc::new(job(running_status(), json!({}))), ctx)).await;
    let bodies = server.await.unwrap();
    let status = bodies[3]["status"].clone();
    assert_eq!(
        status["restarts"]["lastReason"],
        "pod sales-1 OOMKilled (exit 137)"
    );

    // Pass 2, after the backoff, the pod is gone: incarnation 2.
    let (ctx, handle) = context(rt, || now_at(100_010));
    let server = tokio::spawn(serve(handle, start_incarnation_calls()));
    run(reconcile(Arc::new(job(status, json!({}))), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[5]["metadata"]["name"], "sales-2");
    assert_eq!(bodies[6]["reason"], "Restarting");
    assert_eq!(bodies[7]["status"]["restarts"]["count"], 1);
}

/// The pass that a pass's own writes trigger is handed the cached object, which on a real
/// apiserver often lacks the status just written. It must decide from the status this
/// process wrote, not repeat the previous decision.
#[tokio::test]
async fn a_pass_with_a_stale_cached_status_decides_from_the_status_last_written() {
    let rt = Arc::new(FakeRuntime::default());
    // First deploy, then a pass with the same (stale: no status) object while the pod starts:
    // no second "Deploying" event, no second pod, nothing to write.
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let server = tokio::spawn(serve(handle, start_incarnation_calls()));
    let stale = Arc::new(job(Value::Null, json!({})));
    run(reconcile(stale.clone(), ctx.clone())).await;
    server.await.unwrap();
    let (ctx2, handle) = context_after(&ctx, rt.clone(), || now_at(1));
    let starting = pod_json("sales-1", 1, "Pending", None);
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([starting]))),
            control_secret_read(),
        ],
    ));
    run(reconcile(stale, ctx2)).await;
    server.await.unwrap();

    // Heal: the failed pod is deleted and the restart recorded; the next pass still sees
    // the old status (Running, no restart) and no pod. It must wait out the backoff, not
    // count the vanished pod as a second restart.
    let (ctx, handle) = context(rt.clone(), || now_at(100_000));
    let server = tokio::spawn(serve(handle, heal_first_pass_calls()));
    let stale = Arc::new(job(running_status(), json!({})));
    run(reconcile(stale.clone(), ctx.clone())).await;
    server.await.unwrap();
    let (ctx2, handle) = context_after(&ctx, rt.clone(), || now_at(100_000));
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([]))),
            control_secret_read(),
            call(Method::PATCH, STATUS, Value::Null),
        ],
    ));
    run(reconcile(stale.clone(), ctx2)).await;
    let bodies = server.await.unwrap();
    let waiting = &bodies[2]["status"]["restarts"];
    assert_eq!(
        (&waiting["count"], &waiting["lastReason"]),
        (&json!(0), &json!("pod sales-1 OOMKilled (exit 137)")),
        "the pass between pods records no second failure"
    );
    // After the backoff, incarnation 2 starts, and the restart is counted once.
    let (ctx3, handle) = context_after(&ctx, rt, || now_at(100_010));
    let server = tokio::spawn(serve(handle, start_incarnation_calls()));
    run(reconcile(stale, ctx3)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[5]["metadata"]["name"], "sales-2");
    assert_eq!(bodies[7]["status"]["restarts"]["count"], 1);
}

#[tokio::test]
async fn savepoint_upgrade_asks_the_runtime_to_stop_with_a_savepoint() {
    let rt = Arc::new(FakeRuntime::default());
    *rt.view.lock().unwrap() = Some(RuntimeView {
        progress: Default::default(),
        job_id: "lineage-a".into(),
        state: weir_crds::control::JobState::Running,
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
            control_secret_read(),
            call(Method::POST, EVENTS, event_ok()),
            call(Method::PATCH, STATUS, Value::Null),
        ],
    ));
    let mut j = job(running_status(), json!({"generation": 2}));
    j.spec.parallelism = 3;
    run(reconcile(Arc::new(j), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[2]["reason"], "UpgradeStarted");
    assert_eq!(bodies[3]["status"]["lifecycleState"], "Upgrading");
    assert_eq!(bodies[3]["status"]["operation"]["stop"], "savepoint");
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
            control_secret_read(),
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
    assert_eq!(bodies[3]["reason"], "Deleting");
    let status = bodies[4]["status"].clone();
    assert_eq!(status["lifecycleState"], "Deleting");

    let (ctx, handle) = context(rt, || now_at(100_005));
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, PODS, list(json!([]))),
            control_secret_read(),
            call(
                Method::PATCH,
                "/apis/weir.dev/v1alpha1/namespaces/shop/streamjobs/sales",
                Value::Null,
            ),
        ],
    ));
    run(reconcile(Arc::new(job(status, deleting)), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[2]["metadata"]["finalizers"], json!([]));
}

/// Answers whatever comes, as an empty cluster would: lists are empty, named reads are 404
/// (or `lease` for the Lease), writes echo, watches stay open. Records every request.
async fn lenient(mut handle: Handle, lease: Option<Value>) {
    let mut open_watches = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        record(&req);
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let method = req.method().clone();
        let named = weir_operator::rbac::request_verbs(method.as_str(), &path, &query, "")
            .is_some_and(|(_, _, v)| v == ["get"]);
        if query.contains("watch=true") {
            open_watches.push(send);
            continue;
        }
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"});
        let (code, answer) = match method {
            Method::GET if named && path.contains("/leases/") && lease.is_some() => {
                (200, lease.clone().unwrap())
            }
            Method::GET if named => (404, not_found),
            Method::GET => (200, list(json!([]))),
            _ if path.contains("/streamjobs/") => (
                200,
                serde_json::to_value(job(body["status"].clone(), json!({}))).unwrap(),
            ),
            Method::POST if path.ends_with("/events") => (201, event_ok()),
            _ => {
                let mut echo = body;
                if echo.get("metadata").is_none() {
                    echo["metadata"] = json!({"name": "x", "namespace": "shop"});
                }
                (200, echo)
            }
        };
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
}

/// The requests no scenario above makes: the start-up CRD check, the controller's lists and
/// watches, a job naming a Secret, and both ways of taking the Lease.
async fn remaining_requests() {
    let rt = Arc::new(FakeRuntime::default());
    for namespaces in [vec![], vec!["shop".to_string()]] {
        let (ctx, handle) = context(rt.clone(), || now_at(0));
        let server = tokio::spawn(lenient(handle, None));
        weir_operator::controller::check_crd(&ctx.client, &namespaces)
            .await
            .unwrap();
        let watching = weir_operator::controller::run(ctx, namespaces);
        let _ = tokio::time::timeout(Duration::from_millis(500), watching).await;
        server.abort();
    }

    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let server = tokio::spawn(lenient(handle, None));
    let mut j = job(Value::Null, json!({}));
    j.spec.secret_env = vec![
        serde_json::from_value(json!({"name": "DB_PASSWORD", "secret": "db", "key": "pw"}))
            .unwrap(),
    ];
    run(reconcile(Arc::new(j), ctx)).await;
    server.abort();

    let expired = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "weir-operator", "namespace": "weir", "resourceVersion": "3"},
        "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15,
                 "renewTime": "2020-01-01T00:00:00.000000Z"}});
    for lease in [None, Some(expired)] {
        let (ctx, handle) = context(rt.clone(), || now_at(0));
        let server = tokio::spawn(lenient(handle, lease));
        let cfg = weir_operator::leader::LeaseConfig {
            namespace: "weir".into(),
            name: "weir-operator".into(),
            identity: "me".into(),
        };
        assert!(
            weir_operator::leader::try_acquire(&ctx.client, &cfg)
                .await
                .unwrap()
        );
        server.abort();
    }
}

/// What the code calls, what `rbac::PERMISSIONS` declares and (through `tests/chart.rs`) what
/// the chart grants must agree: an undeclared call fails here, and so does a declared verb
/// no request uses (unless `rbac::IMPLIED` says why it is needed anyway).
#[test]
fn every_request_is_granted_and_every_grant_is_used() {
    use std::collections::BTreeSet;
    use weir_operator::rbac::{IMPLIED, PERMISSIONS, request_verbs};

    deploy_applies_config_and_service_creates_pod_then_records_event_and_status();
    each_job_gets_its_network_policy_before_its_pods_and_after_an_operator_upgrade();
    a_job_of_two_pods_starts_with_its_peers_service_exchange_secret_and_both_pods();
    new_job_gets_the_finalizer_first();
    heal_deletes_the_failed_pod_then_starts_the_next_incarnation();
    savepoint_upgrade_asks_the_runtime_to_stop_with_a_savepoint();
    delete_removes_pods_then_the_finalizer();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(remaining_requests());

    let mut used: BTreeSet<(String, String, String)> = BTreeSet::new();
    for [method, path, query, content_type] in SEEN.lock().unwrap().iter() {
        let (g, r, verbs) = request_verbs(method, path, query, content_type)
            .unwrap_or_else(|| panic!("not a resource request: {method} {path}"));
        for v in verbs {
            let granted = PERMISSIONS
                .iter()
                .any(|p| p.group == g && p.resource == r && p.verbs.contains(&v));
            assert!(
                granted,
                "{method} {path}?{query} needs `{v}` on {g}/{r}, which rbac::PERMISSIONS lacks"
            );
            used.insert((g.clone(), r.clone(), v.to_string()));
        }
    }
    for p in PERMISSIONS {
        for v in p.verbs {
            let implied = IMPLIED
                .iter()
                .any(|(g, r, iv, _)| *g == p.group && *r == p.resource && iv == v);
            assert!(
                implied || used.contains(&(p.group.into(), p.resource.into(), (*v).into())),
                "rbac::PERMISSIONS grants `{v}` on {}/{} but no request used it",
                p.group,
                p.resource
            );
        }
    }
}

/// A StreamJob the apiserver admitted but the operator cannot read (an unknown field nested
/// 300 levels deep in `podTemplate`, as a tenant reproduced on a real apiserver) is refused by
/// name: one event and a `Ready=False` condition naming the field, nothing deployed. Before,
/// the same object failed the operator's whole list of jobs. Mutation: decode the list as
/// `StreamJob` again and `Watched` cannot be built from this text.
#[tokio::test]
async fn an_unreadable_job_is_refused_by_name_and_nothing_is_deployed() {
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let calls = vec![
        call(Method::POST, EVENTS, event_ok()),
        call(Method::PATCH, STATUS, Value::Null),
    ];
    let server = tokio::spawn(serve(handle, calls));
    let mut v = serde_json::to_value(job(Value::Null, json!({}))).unwrap();
    v["spec"]["podTemplate"] = json!({"spec": {"x": "DEEP"}});
    let deep = format!("{}1{}", r#"{"a":"#.repeat(300), "}".repeat(300));
    let text = v.to_string().replace("\"DEEP\"", &deep);
    assert!(serde_json::from_str::<StreamJob>(&text).is_err());
    let watched: Watched = serde_json::from_str(&text).unwrap();
    run(reconcile_watched(Arc::new(watched), ctx)).await;
    let bodies = server.await.unwrap();
    let note = bodies[0]["note"].as_str().unwrap_or_default();
    assert_eq!(bodies[0]["reason"], "InvalidSpec");
    assert!(note.contains("spec.podTemplate.spec.x.a"), "{note}");
    let ready = bodies[1]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InvalidSpec"))
    );
    assert!(rt.calls.lock().unwrap().is_empty());
}

/// A second job with the transactional-id prefix of an older one on the same brokers is not
/// deployed: the event and the Ready condition name the field and the older job. (Mutation:
/// skip the directory check in `reconcile_with`, and the pod is created.)
#[tokio::test]
async fn a_job_reusing_an_older_jobs_transactional_prefix_is_refused_naming_it() {
    use kube::runtime::{reflector, watcher};
    let rt = Arc::new(FakeRuntime::default());
    let (ctx, handle) = context(rt.clone(), || now_at(0));
    let mut older = serde_json::to_value(job(Value::Null, json!({}))).unwrap();
    older["metadata"]["name"] = "orders-copy".into();
    older["metadata"]["namespace"] = "other".into();
    older["metadata"]["uid"] = "uid-0".into();
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
    let older: Watched = serde_json::from_value(older).unwrap();
    let (store, mut writer) = reflector::store::<Watched>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(older));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    ctx.directory.add(store);
    let calls = vec![
        call(Method::GET, PODS, list(json!([]))),
        call(Method::GET, CONTROL_SECRET, not_found()),
        call(Method::POST, EVENTS, event_ok()),
        call(Method::PATCH, STATUS, Value::Null),
    ];
    let server = tokio::spawn(serve(handle, calls));
    let newer = job(
        Value::Null,
        json!({"creationTimestamp": "2026-06-01T00:00:00Z"}),
    );
    run(reconcile(Arc::new(newer), ctx)).await;
    let bodies = server.await.unwrap();
    assert_eq!(bodies[2]["reason"], "InvalidSpec");
    let note = bodies[2]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("spec.pipeline.sinks[0].kafka.transactionalIdPrefix")
            && note.contains("StreamJob other/orders-copy"),
        "{note}"
    );
    let ready = bodies[3]["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["reason"], "InvalidSpec", "{}", bodies[3]);
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("StreamJob other/orders-copy")),
        "{ready}"
    );
    assert!(rt.calls.lock().unwrap().is_empty());
}
