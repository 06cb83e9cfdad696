//! The operator's web console: every StreamJob it watches, one page per job, and the job's
//! own runtime page (`weir-runtime`'s console) proxied under it, on a port of its own
//! (`--console-addr`, off unless given; the chart's `console.enabled`).
//!
//! - `GET /console/` lists the jobs (state, health, pods, records/s, lag, last checkpoint,
//!   restarts), updated by server-sent events every two seconds (`/console/live`).
//! - `GET /console/jobs/<ns>/<name>/` is a job's page: status with restarts and their
//!   reasons, savepoints, the job's Events, the spec with who changed it last and what is not
//!   rolled out yet (`live`), and the runtime's page in a frame (`runtime/`, proxied from pod 0
//!   of the current incarnation, GET only).
//! - `POST /console/jobs/<ns>/<name>/actions/<savepoint|suspend|resume|restart>` acts, for a
//!   person whose Kubernetes token may `patch` the StreamJob ([`auth`]); the change is the spec
//!   change `kubectl patch` would make ([`actions`]) and an Event names who asked.
//!
//! Reading needs no token: whoever reaches the port could read the same through the rights
//! `kubectl port-forward` to the operator takes. An Ingress in front of it should
//! authenticate (the chart's Ingress is off by default and says so).

mod actions;
mod auth;
mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};
use weir_crds::StreamJob;

use crate::claims::Directory;
use crate::context::{Context, MANAGER};
use crate::events::{Event, Reason};
use crate::reconcile::{object_ref, publish};
use crate::watched::Watched;
use actions::Action;
use auth::Refusal;
use view::Rates;

/// How often the pages are updated.
const TICK: Duration = Duration::from_secs(2);

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    ctx: Arc<Context>,
    /// The console's own cache of StreamJobs: a replica waiting for the leader Lease runs no
    /// controller, and its console must still list every job.
    directory: Directory,
    rates: Arc<Rates>,
    /// For the proxied runtime page: no overall timeout, its live updates stream.
    http: reqwest::Client,
}

impl Console {
    /// A console over the operator's context (its client and runtime client), watching the
    /// StreamJobs of `namespaces` (all when empty) for itself.
    ///
    /// # Errors
    /// The HTTP client could not be built.
    pub fn new(ctx: Arc<Context>, namespaces: &[String]) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let directory = Directory::default();
        let scopes: Vec<Option<&String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().map(Some).collect()
        };
        for ns in scopes {
            let api: Api<Watched> = match ns {
                Some(ns) => Api::namespaced(ctx.client.clone(), ns),
                None => Api::all(ctx.client.clone()),
            };
            let (reader, writer) = reflector::store();
            directory.add(reader);
            let watch = reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff()
                .touched_objects();
            tokio::spawn(watch.for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "console's StreamJob watch");
                }
            }));
        }
        Ok(Self {
            ctx,
            directory,
            rates: Arc::default(),
            http,
        })
    }
}

/// Listens on `addr` and serves the console until the process ends.
///
/// # Errors
/// The address could not be bound.
pub async fn serve(addr: SocketAddr, console: Console) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving the web console on /console/");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(console)).await {
            tracing::error!(error = %e, "console server stopped");
        }
    });
    Ok(())
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(list_page))
        .route("/console/common.js", get(common_script))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/console/live", get(list_live))
        .route("/console/jobs/{ns}/{name}", get(job_redirect))
        .route("/console/jobs/{ns}/{name}/", get(job_page))
        .route("/console/jobs/{ns}/{name}/live", get(job_live))
        .route(
            "/console/jobs/{ns}/{name}/actions/{action}",
            axum::routing::post(act),
        )
        .route(
            "/console/jobs/{ns}/{name}/runtime/",
            get(proxy_root).post(proxy_refused),
        )
        .route(
            "/console/jobs/{ns}/{name}/runtime/{*rest}",
            get(proxy).post(proxy_refused),
        )
        .with_state(console)
}

/// Scripts, styles, connections and frames from this server only.
const POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'";

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

async fn list_page() -> Response {
    asset(include_str!("assets/list.html"), "text/html; charset=utf-8")
}

async fn job_page() -> Response {
    asset(include_str!("assets/job.html"), "text/html; charset=utf-8")
}

async fn job_redirect(Path((ns, name)): Path<(String, String)>) -> Redirect {
    Redirect::permanent(&format!("/console/jobs/{ns}/{name}/"))
}

async fn common_script() -> Response {
    asset(
        weir_crds::control::CONSOLE_SCRIPT,
        "text/javascript; charset=utf-8",
    )
}

async fn script() -> Response {
    asset(
        include_str!("assets/console.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn style() -> Response {
    asset(
        include_str!("assets/console.css"),
        "text/css; charset=utf-8",
    )
}

/// Every readable watched job, sorted by namespace and name.
async fn jobs(c: &Console) -> Vec<Arc<StreamJob>> {
    let mut jobs = c.directory.jobs().await;
    jobs.sort_by_key(|j| (j.namespace(), j.name_any()));
    jobs
}

async fn find(c: &Console, ns: &str, name: &str) -> Option<Arc<StreamJob>> {
    jobs(c)
        .await
        .into_iter()
        .find(|j| j.namespace().as_deref() == Some(ns) && j.name_any() == name)
}

async fn rate_of(c: &Console, job: &StreamJob) -> Option<(Option<f64>, i64)> {
    let running = job
        .status
        .as_ref()
        .is_some_and(|s| s.lifecycle_state == weir_crds::LifecycleState::Running);
    if !running {
        return None;
    }
    c.rates.of(&c.ctx.client, c.ctx.runtime.as_ref(), job).await
}

/// Reports asked of running jobs at once for the list: a slow pod delays its own row, not
/// every row after it.
const REPORTS_AT_ONCE: usize = 8;

async fn list_rows(c: &Console) -> Vec<view::JobRow> {
    futures::stream::iter(jobs(c).await)
        .map(|job| async move {
            let rate = rate_of(c, &job).await;
            view::row(&job, rate)
        })
        .buffered(REPORTS_AT_ONCE)
        .collect()
        .await
}

fn every_tick<T, F, Fut>(make: F) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>>
where
    T: serde::Serialize,
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let stream = futures::stream::unfold((make, true), |(make, first)| async move {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        let value = make().await;
        let event = SseEvent::default()
            .event("live")
            .json_data(&value)
            .unwrap_or_else(|_| SseEvent::default().comment("unserialisable"));
        Some((Ok(event), (make, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn list_live(State(c): State<Console>) -> impl IntoResponse {
    every_tick(move || {
        let c = c.clone();
        async move { serde_json::json!({"jobs": list_rows(&c).await}) }
    })
}

async fn job_live(
    State(c): State<Console>,
    Path((ns, name)): Path<(String, String)>,
) -> impl IntoResponse {
    every_tick(move || {
        let (c, ns, name) = (c.clone(), ns.clone(), name.clone());
        async move {
            let Some(job) = find(&c, &ns, &name).await else {
                return serde_json::json!({"missing": format!("no StreamJob {ns}/{name} is watched")});
            };
            let rate = rate_of(&c, &job).await;
            let row = view::row(&job, rate);
            serde_json::to_value(view::detail(&c.ctx.client, &job, row).await).unwrap_or_default()
        }
    })
}

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn act(
    State(c): State<Console>,
    Path((ns, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(action) = Action::parse(&action) else {
        return refused(
            StatusCode::NOT_FOUND,
            format!("no action {action:?}: savepoint, suspend, resume or restart"),
        );
    };
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match auth::authorize(&c.ctx.client, auth::bearer(header), "patch", &ns, &name)
        .await
    {
        Ok(caller) => caller,
        Err(r) => {
            tracing::warn!(namespace = %ns, job = %name, action = ?action, refusal = %r, "console action refused");
            let status = match r {
                Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
                Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            return refused(status, r.to_string());
        }
    };
    let Some(job) = find(&c, &ns, &name).await else {
        return refused(
            StatusCode::NOT_FOUND,
            format!("no StreamJob {ns}/{name} is watched by this operator"),
        );
    };
    let patch = match action.patch(&job) {
        Ok(p) => p,
        Err(why) => return refused(StatusCode::CONFLICT, why),
    };
    let api: Api<StreamJob> = Api::namespaced(c.ctx.client.clone(), &ns);
    let params = PatchParams {
        field_manager: Some(format!("{MANAGER}-console")),
        ..PatchParams::default()
    };
    if let Err(e) = api.patch(&name, &params, &Patch::Merge(&patch)).await {
        let status = match &e {
            kube::Error::Api(s) if s.code == 409 => StatusCode::CONFLICT,
            _ => StatusCode::BAD_GATEWAY,
        };
        return refused(status, format!("the change was not made: {e}"));
    }
    let message = format!("{} from the console by {}", action.describe(), caller.user);
    tracing::info!(namespace = %ns, job = %name, user = %caller.user, action = ?action, "console action");
    publish(
        &c.ctx,
        &object_ref(&job.metadata),
        &[Event::new(Reason::ConsoleAction, message.clone())],
    )
    .await;
    (StatusCode::ACCEPTED, message).into_response()
}

/// The runtime page's files and its two feeds, nothing else of the pod's API.
const PROXIED: &[&str] = &["", "common.js", "app.js", "app.css", "graph", "live"];

async fn proxy_root(
    State(c): State<Console>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    forward(&c, &ns, &name, "", query).await
}

async fn proxy(
    State(c): State<Console>,
    Path((ns, name, rest)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    forward(&c, &ns, &name, &rest, query).await
}

async fn proxy_refused() -> Response {
    refused(
        StatusCode::FORBIDDEN,
        "the runtime's own actions are not reachable through the operator: use the job page's \
         actions, which check your Kubernetes identity",
    )
}

/// GETs `/console/<rest>` of the job's pod 0 and passes the answer on as it streams.
async fn forward(c: &Console, ns: &str, name: &str, rest: &str, query: Option<String>) -> Response {
    if !PROXIED.contains(&rest) {
        return refused(StatusCode::NOT_FOUND, format!("{rest} is not proxied"));
    }
    let Some(job) = find(c, ns, name).await else {
        return refused(
            StatusCode::NOT_FOUND,
            format!("no StreamJob {ns}/{name} is watched"),
        );
    };
    let base = match crate::observe::coordinator(&c.ctx.client, &job, ns, name).await {
        Ok(Some((base, _))) => base,
        Ok(None) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{ns}/{name} has no running pod to show"),
            );
        }
        Err(e) => return refused(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let mut url = format!("{base}/console/{rest}");
    if let Some(q) = query {
        url.push('?');
        url.push_str(&q);
    }
    let answer = match c.http.get(&url).send().await {
        Ok(a) => a,
        Err(e) => {
            return refused(
                StatusCode::BAD_GATEWAY,
                format!("the job's pod did not answer: {e}"),
            );
        }
    };
    let status = answer.status();
    let mut out = Response::builder().status(status.as_u16());
    for h in [
        header::CONTENT_TYPE,
        header::CONTENT_SECURITY_POLICY,
        header::CACHE_CONTROL,
    ] {
        if let Some(v) = answer.headers().get(h.as_str()) {
            out = out.header(h, v.as_bytes());
        }
    }
    // Chunk by chunk, so the runtime page's live feed reaches the browser as it is sent.
    let body = futures::stream::unfold(Some(answer), |a| async move {
        let mut a = a?;
        match a.chunk().await {
            Ok(Some(bytes)) => Some((Ok::<_, reqwest::Error>(bytes), Some(a))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    out.body(Body::from_stream(body))
        .unwrap_or_else(|e| refused(StatusCode::BAD_GATEWAY, e.to_string()))
}
