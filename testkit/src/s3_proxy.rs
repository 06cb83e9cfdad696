//! A failing S3 server for tests: a proxy in front of the local S3 server (moto) that passes
//! every request through, except those matching an injected [`Fault`], which it answers
//! with an error, with a truncated body, or with a `DeleteObjects` result that lists every
//! key as not deleted. The real server still holds the data, so a test can check what an
//! error left behind.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// How a matching request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This status, with an S3 error body; the request never reaches the server.
    Status(u16),
    /// The request reaches the server (an upload is stored), then this status is answered:
    /// the client cannot tell whether it happened.
    AfterForward(u16),
    /// The server's answer, cut to half its body under the full `Content-Length`.
    Truncated,
    /// For `DeleteObjects`: a 200 listing every requested key as an `<Error>`, nothing
    /// deleted.
    DeleteErrors,
}

/// Which requests fail, and how often.
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP method (`PUT`, `GET`, `POST`, `DELETE`).
    pub method: &'static str,
    /// A substring of the path (the object key part, e.g. `/_metadata`).
    pub path_contains: String,
    /// A substring of the query (e.g. `delete` for `DeleteObjects`), when it matters.
    pub query_contains: Option<&'static str>,
    /// How many matching requests fail; then they pass again.
    pub times: usize,
    /// How.
    pub answer: Answer,
}

#[derive(Default)]
struct Faults {
    pending: Vec<Fault>,
    fired: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    faults: Arc<Mutex<Faults>>,
}

/// A running proxy; it stops when dropped.
pub struct FaultyS3 {
    /// `http://127.0.0.1:<port>`: the endpoint to give the code under test.
    pub endpoint: String,
    faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyS3 {
    /// Starts a proxy for `upstream` (e.g. `http://127.0.0.1:9390`) on a free local port.
    ///
    /// # Panics
    /// When no local port can be bound (a test harness failure).
    pub async fn start(upstream: &str) -> Self {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            faults: faults.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the S3 proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy address");
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            faults,
            task,
        }
    }

    /// Fails the next `fault.times` matching requests.
    pub fn inject(&self, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.pending.push(fault);
        }
    }

    /// The requests answered with a fault so far: `METHOD path?query`.
    #[must_use]
    pub fn fired(&self) -> Vec<String> {
        self.faults
            .lock()
            .map(|f| f.fired.clone())
            .unwrap_or_default()
    }
}

impl Drop for FaultyS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fault this request meets, if any (and counts it).
fn take(shared: &Shared, method: &str, path: &str, query: &str) -> Option<Answer> {
    let mut f = shared.faults.lock().ok()?;
    let i = f.pending.iter().position(|x| {
        x.times > 0
            && x.method == method
            && path.contains(&x.path_contains)
            && x.query_contains.is_none_or(|q| query.contains(q))
    })?;
    f.pending[i].times -= 1;
    let answer = f.pending[i].answer;
    f.fired.push(format!("{method} {path}?{query}"));
    Some(answer)
}

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => return error(502, &format!("proxy: reading the request: {e}")),
    };
    let fault = take(&shared, &method, &path, &query);
    match fault {
        Some(Answer::Status(code)) => return error(code, "injected"),
        Some(Answer::DeleteErrors) => return delete_errors(&body),
        _ => {}
    }
    let (status, headers, bytes) =
        match forward(&shared, &method, &path, &query, &headers, body).await {
            Ok(r) => r,
            Err(e) => return error(502, &format!("proxy: {e}")),
        };
    match fault {
        Some(Answer::AfterForward(code)) => error(code, "injected after the request was served"),
        Some(Answer::Truncated) => {
            let mut r = respond(status, &headers, bytes.slice(..bytes.len() / 2));
            if let Ok(v) = HeaderValue::from_str(&bytes.len().to_string()) {
                r.headers_mut().insert(header::CONTENT_LENGTH, v);
            }
            r
        }
        _ => respond(status, &headers, bytes),
    }
}

async fn forward(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let url = if query.is_empty() {
        format!("{}{path}", shared.upstream)
    } else {
        format!("{}{path}?{query}", shared.upstream)
    };
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        if k != header::HOST && k != header::CONTENT_LENGTH && k != header::CONNECTION {
            out.append(k.clone(), v.clone());
        }
    }
    let res = shared
        .client
        .request(method, url)
        .headers(out)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, headers, bytes))
}

fn respond(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    for (k, v) in headers {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING && k != header::CONNECTION
        {
            r.headers_mut().append(k.clone(), v.clone());
        }
    }
    r
}

fn error(code: u16, message: &str) -> Response {
    let s3_code = match code {
        503 => "SlowDown",
        _ => "InternalError",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{s3_code}</Code><Message>{message}</Message></Error>"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

/// A `DeleteObjects` answer listing every key of the request as an error.
fn delete_errors(request: &[u8]) -> Response {
    let text = String::from_utf8_lossy(request);
    let mut errors = String::new();
    for part in text.split("<Key>").skip(1) {
        if let Some((key, _)) = part.split_once("</Key>") {
            errors.push_str(&format!(
                "<Error><Key>{key}</Key><Code>InternalError</Code><Message>injected</Message></Error>"
            ));
        }
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{errors}</DeleteResult>"
    );
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}
