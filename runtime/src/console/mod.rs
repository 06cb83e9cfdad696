//! The web console of one job, served by `weir-runtime run` beside its control API (same
//! listener, under `/console/`).
//!
//! | route | |
//! |---|---|
//! | `GET /console/` | the job page: dataflow with live rates, charts of the last hour, checkpoints, savepoints, sinks, actions |
//! | `GET /console/graph` | the dataflow ([`graph::Graph`]) as JSON |
//! | `GET /console/live` | server-sent events, one a second while the page is open: the job report, per-operator counts and rates, actions, the last hour's samples |
//!
//! Server-rendered structure with a small script and no build step: the page is three files
//! compiled into the binary (`assets/`), so it needs no network, no npm and no time in CI,
//! and the browser draws the graph and charts as SVG from the JSON it receives.
//!
//! Reading is open, like `/metrics` (the report names no secret: specs hold Secret
//! references only). Acting is not: the page's buttons call the control API's `/v1` routes,
//! which need the job's control token when it has one ([`crate::control`]), and every action
//! and every refused attempt is kept in the action log the page shows.

pub mod graph;
pub mod history;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::Stream;
use serde::Serialize;

use crate::control::actions::Action;
use crate::control::status::JobReport;
use crate::control::{ApiState, snapshot};
use graph::Graph;
use history::{History, Point, rate};

/// Time between live updates of an open page.
const TICK: Duration = Duration::from_secs(1);

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    api: ApiState,
    graph: Arc<Graph>,
    history: Arc<History>,
}

impl Console {
    /// A console over the control API's state, drawing `graph`, charting `history`.
    #[must_use]
    pub fn new(api: ApiState, graph: Graph, history: Arc<History>) -> Self {
        Self {
            api,
            graph: Arc::new(graph),
            history,
        }
    }
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/common.js", get(common_script))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .route("/console/graph", get(graph))
        .route("/console/live", get(live))
        .with_state(console)
}

/// No script, style or connection from anywhere but this server; framed only by a page of the
/// same origin (the operator's console, which proxies this page under its own).
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'";

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset(
        include_str!("assets/index.html"),
        "text/html; charset=utf-8",
    )
}

async fn common_script() -> Response {
    asset(
        weir_crds::control::CONSOLE_SCRIPT,
        "text/javascript; charset=utf-8",
    )
}

async fn script() -> Response {
    asset(
        include_str!("assets/app.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn style() -> Response {
    asset(include_str!("assets/app.css"), "text/css; charset=utf-8")
}

async fn graph(State(c): State<Console>) -> Response {
    axum::Json(c.graph.as_ref().clone()).into_response()
}

/// One operator's counts: totals since start and rates since the update before.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct OperatorLive {
    id: String,
    records_in: u64,
    records_out: u64,
    in_per_s: f64,
    out_per_s: f64,
    /// Summed over subtasks, as of the last checkpoint.
    state_bytes: u64,
}

/// One subtask's time since the update before: waiting on full channels downstream
/// (backpressure), and working (busy: neither that nor waiting for input), as Flink's
/// `backPressuredTimeMsPerSecond` and `busyTimeMsPerSecond` count them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskLive {
    /// `s<stage>-t<subtask>`.
    task: String,
    /// Seconds per second, 0 to 1.
    backpressure: f64,
    /// Seconds per second, 0 to 1.
    busy: f64,
}

/// One live update.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Live {
    at_ms: i64,
    job: JobReport,
    /// The operators of the graph, then `source` (all sources) and `sinks` (all sinks).
    operators: Vec<OperatorLive>,
    /// Seconds per second that producers waited on full channels (summed over tasks).
    backpressure: f64,
    /// Seconds per second that inputs were blocked aligning barriers.
    alignment: f64,
    /// Backpressure of each subtask this process runs.
    tasks: Vec<TaskLive>,
    actions: Vec<Action>,
    /// Sink transactions pre-committed and not yet committed.
    in_flight: Vec<crate::control::in_flight::Txn>,
    /// Samples not sent yet on this stream: the whole last hour in the first update.
    history: Vec<Point>,
}

/// What a stream remembers between updates, to turn totals into rates.
struct Previous {
    at: Instant,
    counts: Vec<(u64, u64)>,
    backpressure: f64,
    alignment: f64,
    blocked: Vec<f64>,
    idle: Vec<f64>,
    history_sent: i64,
}

fn sample(c: &Console, prev: Option<&Previous>) -> Option<(Live, Previous)> {
    let job = snapshot(&c.api)?;
    let metrics = &c.api.metrics;
    let now = Instant::now();
    let since = prev.map_or(Duration::ZERO, |p| now.duration_since(p.at));
    let ids: Vec<&str> = c.graph.operator_ids().chain(["source", "sinks"]).collect();
    let counts: Vec<(u64, u64)> = ids
        .iter()
        .map(|id| (metrics.records_in(id), metrics.records_out(id)))
        .collect();
    let operators = ids
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(i, (id, &(r_in, r_out)))| {
            let (p_in, p_out) = prev
                .and_then(|p| p.counts.get(i).copied())
                .unwrap_or((r_in, r_out));
            OperatorLive {
                id: (*id).to_string(),
                records_in: r_in,
                records_out: r_out,
                in_per_s: rate(r_in.saturating_sub(p_in), since),
                out_per_s: rate(r_out.saturating_sub(p_out), since),
                state_bytes: metrics.state_bytes(id),
            }
        })
        .collect();
    let backpressure = metrics.backpressure.get();
    let alignment = metrics.alignment.get();
    let per_s = |now: f64, before: Option<f64>| {
        let secs = since.as_secs_f64();
        match before {
            Some(b) if secs > 0.0 => ((now - b) / secs).max(0.0),
            _ => 0.0,
        }
    };
    let waits = metrics.waits_by_task();
    let tasks = waits
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let backpressure =
                per_s(w.blocked, prev.and_then(|p| p.blocked.get(i).copied())).min(1.0);
            let idle = per_s(w.idle, prev.and_then(|p| p.idle.get(i).copied())).min(1.0);
            TaskLive {
                task: w.task.to_string(),
                backpressure,
                // Nothing known before the second update: neither busy nor idle.
                busy: if prev.is_some() {
                    (1.0 - backpressure - idle).clamp(0.0, 1.0)
                } else {
                    0.0
                },
            }
        })
        .collect();
    let history_sent = prev.map_or(i64::MIN, |p| p.history_sent);
    let history: Vec<Point> = c
        .history
        .points()
        .into_iter()
        .filter(|p| p.at_ms > history_sent)
        .collect();
    let live = Live {
        at_ms: crate::ids::now_millis(),
        job,
        operators,
        backpressure: per_s(backpressure, prev.map(|p| p.backpressure)),
        alignment: per_s(alignment, prev.map(|p| p.alignment)),
        tasks,
        actions: c.api.actions.recent(),
        in_flight: metrics.in_flight.all(),
        history,
    };
    let next = Previous {
        at: now,
        counts,
        backpressure,
        alignment,
        blocked: waits.iter().map(|w| w.blocked).collect(),
        idle: waits.iter().map(|w| w.idle).collect(),
        history_sent: live.history.last().map_or(history_sent, |p| p.at_ms),
    };
    Some((live, next))
}

async fn live(State(c): State<Console>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream =
        futures::stream::unfold((c, None::<Previous>, true), |(c, prev, first)| async move {
            if !first {
                tokio::time::sleep(TICK).await;
            }
            let event = match sample(&c, prev.as_ref()) {
                Some((live, next)) => {
                    let event = Event::default()
                        .event("live")
                        .json_data(&live)
                        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
                    return Some((Ok::<_, Infallible>(event), (c, Some(next), false)));
                }
                None => Event::default()
                    .event("error")
                    .data("the job's status is unavailable"),
            };
            Some((Ok(event), (c, prev, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
