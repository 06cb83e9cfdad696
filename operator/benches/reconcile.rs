//! Reconcile throughput with many StreamJobs against a mocked API server that answers every
//! call at once: what the operator itself costs per reconcile (observe, decide, act, events,
//! status), without network time. Two passes per job: first deploy (6 API calls) and a steady
//! running pass (pod list and the runtime's status; no writes).
//!
//! `cargo bench -p weir-operator --bench reconcile -- [jobs]` (default 1000; 20 when run by
//! `cargo test`, as a smoke run). Prints
//! reconciles/s per pass and the process's peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark binary: a panic is the report

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use weir_crds::StreamJob;
use weir_operator::context::Context;
use weir_operator::decide::{RuntimeView, Settings};
use weir_operator::dispose::SavepointStore;
use weir_operator::metrics::Metrics;
use weir_operator::reconcile::reconcile;
use weir_operator::runtime_client::{Endpoint, RuntimeApi, RuntimeError};

struct Runtime;
impl RuntimeApi for Runtime {
    fn job<'a>(&'a self, _: Endpoint<'a>) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>> {
        Box::pin(async {
            Ok(RuntimeView {
                progress: Default::default(),
                job_id: "lineage".into(),
                state: weir_crds::control::JobState::Running,
                ..RuntimeView::default()
            })
        })
    }
    fn trigger_savepoint<'a>(
        &'a self,
        _: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async { Ok("sp".into()) })
    }
    fn stop_with_savepoint<'a>(
        &'a self,
        _: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
}

struct Store;
impl SavepointStore for Store {
    fn dispose<'a>(
        &'a self,
        _: &'a str,
        _: weir_operator::dispose::Access<'a>,
    ) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async { Ok(0) })
    }
}

/// Answers like an API server would, for the calls reconcile makes: lists return the pods
/// in `running` (a Running pod of incarnation 1 per job), Secrets exist, writes echo their
/// body.
async fn api_server(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    running: bool,
) {
    while let Some((req, send)) = handle.next_request().await {
        let path = req.uri().path().to_string();
        let is_list = req.method() == http::Method::GET && path.ends_with("/pods");
        let req_get_secret = req.method() == http::Method::GET && path.contains("/secrets/");
        let job_name = req
            .uri()
            .query()
            .and_then(|q| q.split("job%3D").nth(1))
            .unwrap_or("")
            .split('&')
            .next()
            .unwrap_or("")
            .to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let answer: Value = if is_list {
            let items = if running {
                json!([{"metadata": {"name": format!("{job_name}-1"), "namespace": "bench",
                    "labels": {"weir.dev/job": job_name, "weir.dev/incarnation": "1"}},
                    "status": {"phase": "Running", "podIP": "10.0.0.1"}}])
            } else {
                json!([])
            };
            json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
        } else if req_get_secret {
            // The job's control Secret, which observe reads on every pass, owned by the job
            // (`job-<i>-control` belongs to uid `u<i>`).
            let job = path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches("-control");
            let uid = format!("u{}", job.trim_start_matches("job-"));
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "control", "namespace": "bench",
                                "ownerReferences": [{"apiVersion": "weir.dev/v1alpha1",
                                    "kind": "StreamJob", "name": job, "uid": uid,
                                    "controller": true}]},
                   "data": {"token": "dG9rZW4="}})
        } else if path.contains("/events") {
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                   "metadata": {"name": "e", "namespace": "bench"}, "eventTime": "2027-01-15T08:00:00.000000Z"})
        } else if path.contains("/streamjobs/") {
            // A StreamJob write is answered with a whole StreamJob.
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let name = path
                .split("/streamjobs/")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches("/status");
            json!({"apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
                   "metadata": {"name": name, "namespace": "bench"},
                   "spec": serde_json::to_value(&job(0, None).spec).unwrap(),
                   "status": body["status"]})
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
}

fn job(i: usize, status: Option<Value>) -> StreamJob {
    serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": format!("job-{i}"), "namespace": "bench", "uid": format!("u{i}"),
                     "generation": 1, "finalizers": ["weir.dev/finalizer"]},
        "spec": {
            "parallelism": 2,
            "checkpoint": {"storage": "s3://bucket/weir"},
            "pipeline": {
                "source": {"kafka": {"bootstrapServers": "kafka:9092", "topic": "orders"},
                           "schema": [{"name": "store_id", "type": "string"},
                                      {"name": "amount", "type": "int64"},
                                      {"name": "ts", "type": "timestamp"}],
                           "eventTime": {"field": "ts"}},
                "transforms": [{"filter": "amount > 0"},
                               {"window": {"tumbling": "1m", "keyBy": ["store_id"],
                                           "aggregates": {"sales": "sum(amount)"}}}],
                "sinks": [{"kafka": {"bootstrapServers": "kafka:9092", "topic": "out",
                                     "transactionalIdPrefix": format!("out-{i}")}}]
            }
        },
        "status": status,
    }))
    .unwrap()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn pass(jobs: &[StreamJob], running: bool) -> (f64, Vec<StreamJob>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(api_server(handle, running));
    let client = kube::Client::new(svc, "bench");
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Runtime),
        Arc::new(Store),
        Arc::new(Metrics::new()),
        Settings {
            default_image: "weir-runtime:bench".into(),
            ..Settings::default()
        },
    ));
    let start = Instant::now();
    for j in jobs {
        reconcile(Arc::new(j.clone()), ctx.clone()).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    drop(ctx);
    server.abort();
    (secs, jobs.to_vec())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, as a quick smoke run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default = if args.iter().any(|a| a == "--bench") {
        1000
    } else {
        20
    };
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(default);
    let fresh: Vec<StreamJob> = (0..n).map(|i| job(i, None)).collect();
    let (secs, _) = pass(&fresh, false).await;
    println!(
        "first deploy: {n} jobs in {secs:.3} s = {:.0} reconciles/s",
        n as f64 / secs
    );
    let running_status = |i: usize| {
        json!({"lifecycleState": "Running", "incarnation": 1,
               "incarnationStartedAt": "2027-01-15T08:00:00Z",
               "runningSince": jiff::Timestamp::now().to_string(),
               "lastReconciledSpec": serde_json::to_string(&job(i, None).spec).unwrap()})
    };
    let steady: Vec<StreamJob> = (0..n).map(|i| job(i, Some(running_status(i)))).collect();
    let (secs, _) = pass(&steady, true).await;
    println!(
        "steady running: {n} jobs in {secs:.3} s = {:.0} reconciles/s",
        n as f64 / secs
    );
    println!("peak RSS: {:.1} MiB", peak_rss_kib() as f64 / 1024.0);
}
