//! The control API (HTTP): job status, savepoints, stop, health and metrics.
//!
//! The `/v1` routes are the operator's side of the contract; their bodies are the types of
//! `weir_crds::control` (`crds/src/control/`), which the operator decodes, so the JSON is
//! defined there and nowhere else.
//!
//! | route | |
//! |---|---|
//! | `GET /v1/job` | `JobReport`: state, parallelism, watermarks, checkpoint history, savepoints, sinks |
//! | `POST /v1/savepoints` | trigger a savepoint; `202` `SavepointAccepted` (`{"id": …}`); `429` while [`MAX_PENDING_SAVEPOINTS`] wait |
//! | `GET /v1/savepoints/{id}` | `SavepointReport`: `pending`, `completed` (with `path`) or `failed` (with `error`) |
//! | `POST /v1/stop` | optional `StopRequest` (`{"savepoint": true}`); final checkpoint (or savepoint), commit, exit 0; `202` `StopAccepted` |
//! | `GET /healthz` | the process serves requests |
//! | `GET /readyz` | restore is done and tasks run; before that `503` with the state and what start-up waits for |
//! | `GET /metrics` | OpenMetrics text |
//!
//! With a control token (`WEIR_CONTROL_TOKEN`, which the operator sets from the job's control
//! Secret) every `/v1` route needs `Authorization: Bearer <token>` and answers `401` without
//! it; the health and metrics routes never do. See `weir_crds::control::auth`.
//!
//! The same listener serves the web console under `/console/` ([`crate::console`]); its
//! buttons act through the `/v1` routes, and every action (and every refused one) is kept in
//! the [`actions::ActionLog`] it shows.
//!
//! The API is up from the start of `job::start`, so the kubelet's liveness probe passes while
//! start-up waits for a broker or restores large state; savepoint and stop requests are
//! refused (`409`) until the job runs.

pub mod actions;
pub mod in_flight;
pub mod metrics;
pub mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use weir_crds::control::{
    ControlToken, SavepointAccepted, SourceLag, StopAccepted, StopRequest, TaskWatermark, routes,
};

use crate::checkpoint::coordinator::Request;
use crate::ids::{Millis, TaskId};
use actions::ActionLog;
use metrics::Metrics;
use status::{JobReport, JobState};

/// Shared with the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// Job status.
    pub status: Arc<RwLock<JobReport>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// To the coordinator.
    pub requests: mpsc::Sender<Request>,
    /// Task of each watermark slot.
    pub tasks: Arc<Vec<TaskId>>,
    /// What was asked of the job, for the console.
    pub actions: Arc<ActionLog>,
    /// Required on `/v1` routes when set.
    token: Option<Arc<ControlToken>>,
    next_savepoint: Arc<AtomicU64>,
}

impl ApiState {
    /// State for the handlers.
    #[must_use]
    pub fn new(
        status: Arc<RwLock<JobReport>>,
        metrics: Arc<Metrics>,
        requests: mpsc::Sender<Request>,
        tasks: Vec<TaskId>,
        token: Option<ControlToken>,
    ) -> Self {
        Self {
            status,
            metrics,
            requests,
            tasks: Arc::new(tasks),
            actions: Arc::new(ActionLog::default()),
            token: token.map(Arc::new),
            next_savepoint: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// The router; `extra` adds routes of their own state (the console).
pub fn router(state: ApiState, extra: Router) -> Router {
    let v1 = Router::new()
        .route(routes::JOB, get(job))
        .route(routes::SAVEPOINTS, post(trigger_savepoint))
        .route(&format!("{}/{{id}}", routes::SAVEPOINTS), get(savepoint))
        .route(routes::STOP, post(stop))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .merge(v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(extra)
}

/// Bind `addr` and serve the API and `extra` until the process ends.
///
/// # Errors
/// The bind error, naming the address.
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    extra: Router,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("control API cannot bind {addr}: {e}"))
    })?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state, extra)).await {
            tracing::error!(error = %e, "control API stopped");
        }
    });
    Ok(bound)
}

/// Lets a `/v1` request through when the runtime has no token or the request carries it.
async fn authorize(State(s): State<ApiState>, req: HttpRequest, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    let offered = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant time, so the answer's timing does not tell how much of a guess was right.
    let granted =
        offered.is_some_and(|o| bool::from(o.as_bytes().ct_eq(token.expose().as_bytes())));
    if granted {
        return next.run(req).await;
    }
    let why = if offered.is_some() {
        "wrong control token"
    } else {
        "this route needs the job's control token (Authorization: Bearer)"
    };
    if req.method() == axum::http::Method::POST {
        s.actions.record(
            &format!("POST {}", req.uri().path()),
            &format!("refused: {why}"),
            false,
        );
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        why,
    )
        .into_response()
}

/// The report with the live numbers (watermarks, records in, lag) filled in.
pub(crate) fn snapshot(s: &ApiState) -> Option<JobReport> {
    let mut st = s.status.read().ok()?.clone();
    st.watermarks = s
        .tasks
        .iter()
        .zip(s.metrics.watermarks())
        .map(|(t, w)| TaskWatermark {
            task: (*t).into(),
            watermark: (w != Millis::MIN).then_some(w),
        })
        .collect();
    st.records_in = s.metrics.records_out("source");
    st.source_lag = s
        .metrics
        .source_lags()
        .into_iter()
        .map(|(topic, partition, lag)| SourceLag {
            topic,
            partition,
            lag,
        })
        .collect();
    Some(st)
}

async fn job(State(s): State<ApiState>) -> Response {
    match snapshot(&s) {
        Some(st) => Json(st).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Savepoint requests that may wait at once; more are refused (`429`) until one has completed.
/// Each is a savepoint of all of the job's state, written to storage: a client repeating its
/// request, or anyone who reaches an API without a token, would otherwise queue them without
/// end.
pub const MAX_PENDING_SAVEPOINTS: usize = 4;

async fn trigger_savepoint(State(s): State<ApiState>) -> Response {
    if !running(&s) {
        s.actions.record(
            "savepoint",
            "refused: the job is still starting",
            s.token.is_some(),
        );
        return (StatusCode::CONFLICT, "job is still starting").into_response();
    }
    let id = format!(
        "sp-req-{}",
        s.next_savepoint.fetch_add(1, Ordering::Relaxed)
    );
    // Listed as pending before the coordinator hears of it, so that a client polling
    // `GET /v1/savepoints/{id}` right after the 202 never gets a 404 for the id it was given;
    // counted under the same lock, so that requests at once cannot all pass the bound.
    let waiting = {
        let mut st = s
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let waiting = st
            .savepoints
            .iter()
            .filter(|x| x.status == weir_crds::control::SavepointState::Pending)
            .count();
        let full = waiting >= MAX_PENDING_SAVEPOINTS;
        if !full {
            status::add_pending_savepoint(&mut st, &id);
        }
        full.then_some(waiting)
    };
    if let Some(waiting) = waiting {
        s.actions.record(
            "savepoint",
            &format!("refused: {waiting} savepoint requests are waiting already"),
            s.token.is_some(),
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{waiting} savepoint requests are waiting already (at most {MAX_PENDING_SAVEPOINTS}); ask again once one has completed (GET /v1/savepoints/{{id}})"
            ),
        )
            .into_response();
    }
    match s.requests.send(Request::Savepoint { id: id.clone() }).await {
        Ok(()) => {
            s.actions
                .record("savepoint", &format!("accepted ({id})"), s.token.is_some());
            (StatusCode::ACCEPTED, Json(SavepointAccepted { id })).into_response()
        }
        Err(_) => {
            if let Ok(mut st) = s.status.write() {
                st.savepoints.retain(|x| x.id != id);
            }
            s.actions.record(
                "savepoint",
                "refused: the job is not running",
                s.token.is_some(),
            );
            (StatusCode::CONFLICT, "job is not running").into_response()
        }
    }
}

async fn savepoint(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let found = s
        .status
        .read()
        .ok()
        .and_then(|st| st.savepoints.iter().find(|x| x.id == id).cloned());
    match found {
        Some(sp) => Json(sp).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no savepoint request {id}")).into_response(),
    }
}

async fn stop(State(s): State<ApiState>, body: Option<Json<StopRequest>>) -> Response {
    let StopRequest { savepoint } = body.map(|Json(b)| b).unwrap_or_default();
    let action = if savepoint {
        "stop with savepoint"
    } else {
        "stop"
    };
    let authenticated = s.token.is_some();
    if !running(&s) {
        s.actions
            .record(action, "refused: the job is still starting", authenticated);
        return (StatusCode::CONFLICT, "job is still starting").into_response();
    }
    match s.requests.send(Request::Stop { savepoint }).await {
        Ok(()) => {
            s.actions.record(action, "accepted", authenticated);
            (
                StatusCode::ACCEPTED,
                Json(StopAccepted {
                    stopping: true,
                    savepoint,
                }),
            )
                .into_response()
        }
        Err(_) => {
            s.actions
                .record(action, "refused: the job is not running", authenticated);
            (StatusCode::CONFLICT, "job is not running").into_response()
        }
    }
}

async fn ready(State(s): State<ApiState>) -> Response {
    let state = s
        .status
        .read()
        .map(|st| st.state)
        .unwrap_or(JobState::Failed);
    if state == JobState::Running {
        return "ready".into_response();
    }
    let body = match (state, crate::wait::current()) {
        (JobState::Initializing, Some(w)) => format!("{state:?}: {w}"),
        _ => format!("{state:?}"),
    };
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// Requests need a running job; while it starts they are refused, not queued for later.
fn running(s: &ApiState) -> bool {
    s.status
        .read()
        .is_ok_and(|st| st.state != JobState::Initializing)
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        s.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use axum::extract::State;
    use axum::http::StatusCode;
    use tokio::sync::mpsc;

    use super::status::{JobReport, JobState};
    use super::{ApiState, MAX_PENDING_SAVEPOINTS, trigger_savepoint};
    use crate::control::metrics::Metrics;

    /// A running job's report, with no checkpoint yet.
    fn test_report() -> JobReport {
        let mut r = super::status::initializing("t", 1, 128);
        r.state = JobState::Running;
        r
    }

    /// Requests beyond the bound are refused while the coordinator has taken none; the
    /// coordinator's queue never holds more than the bound.
    #[tokio::test]
    async fn savepoint_requests_beyond_the_bound_wait_for_none_and_are_refused() {
        let report = test_report();
        let (tx, mut rx) = mpsc::channel(16);
        let state = ApiState::new(
            Arc::new(RwLock::new(report)),
            Arc::new(Metrics::new(Vec::new())),
            tx,
            Vec::new(),
            None,
        );
        let mut codes = Vec::new();
        for _ in 0..MAX_PENDING_SAVEPOINTS + 3 {
            codes.push(trigger_savepoint(State(state.clone())).await.status());
        }
        let mut want = vec![StatusCode::ACCEPTED; MAX_PENDING_SAVEPOINTS];
        want.extend([StatusCode::TOO_MANY_REQUESTS; 3]);
        assert_eq!(codes, want);
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, MAX_PENDING_SAVEPOINTS);
        let refused = state
            .actions
            .recent()
            .iter()
            .filter(|a| a.outcome.starts_with("refused: 4 savepoint requests"))
            .count();
        assert_eq!(refused, 3);
    }

    /// The list of savepoint requests keeps every pending one and the newest finished ones.
    #[test]
    fn finished_savepoint_requests_beyond_those_kept_are_forgotten_oldest_first() {
        use super::status::{KEPT_FINISHED_SAVEPOINTS, add_pending_savepoint};
        use weir_crds::control::{SavepointReport, SavepointState};
        let report = |id: usize, status| SavepointReport {
            id: format!("sp-req-{id}"),
            status,
            path: None,
            checkpoint: None,
            error: None,
        };
        let mut st = test_report();
        st.savepoints.push(report(0, SavepointState::Pending));
        for i in 1..=KEPT_FINISHED_SAVEPOINTS + 20 {
            st.savepoints.push(report(i, SavepointState::Completed));
        }
        add_pending_savepoint(&mut st, "sp-req-new");
        let ids: Vec<&str> = st.savepoints.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids.len(), KEPT_FINISHED_SAVEPOINTS + 2);
        assert_eq!(ids[..2], ["sp-req-0", "sp-req-21"]);
        assert_eq!(ids[ids.len() - 1], "sp-req-new");
    }
}
