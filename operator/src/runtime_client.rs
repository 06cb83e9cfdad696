//! Talking to a runtime pod's control API (`GET /v1/job`, `POST /v1/savepoints`,
//! `POST /v1/stop`). Behind a trait so reconcile tests can script the runtime's answers. The
//! bodies are the contract's types (`weir_crds::control`), which the runtime serves. Every
//! call carries the job's control token, without which the runtime answers `401`.

use std::time::Duration;

use futures::future::BoxFuture;
use weir_crds::control::{ControlToken, JobReport, SavepointAccepted, StopRequest, routes};

use crate::decide::RuntimeView;

/// Why a call to the runtime failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No answer (connection refused, timeout).
    #[error("runtime at {url} did not answer: {message}")]
    Unreachable {
        /// URL called.
        url: String,
        /// The transport error.
        message: String,
    },
    /// An answer that is not a success.
    #[error("runtime at {url} answered {status}: {body}")]
    Status {
        /// URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Body text.
        body: String,
    },
    /// A body longer than [`MAX_BODY`]: not read further.
    #[error("runtime at {url} sent more than {limit} bytes; the operator reads no further")]
    TooLarge {
        /// URL called.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A body that is not what the contract (`weir_crds::control`) says.
    #[error("runtime at {url} sent an unreadable body: {message}")]
    Decode {
        /// URL called.
        url: String,
        /// The decode error.
        message: String,
    },
}

/// Most bytes read from one answer. A job report with its full checkpoint and savepoint
/// history is a few tens of kilobytes; the image is the user's choice, so whatever it
/// answers must not grow the operator, which serves every job, past its memory limit.
pub const MAX_BODY: usize = 1 << 20;
/// Most bytes of an error answer quoted in a message (and so in a status or an event).
const QUOTED: usize = 512;
/// Longest a call may take, answer included: a pod that dribbles its answer must not hold
/// a reconcile.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One runtime's control API: where it is and the token it wants.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// `http://<pod IP>:<port>`.
    pub base: &'a str,
    /// The job's control token; `None` only before its Secret exists (the call is then
    /// refused, and retried by a later reconcile).
    pub token: Option<&'a ControlToken>,
}

/// The control API, as the operator uses it.
pub trait RuntimeApi: Send + Sync {
    /// `GET /v1/job`.
    fn job<'a>(&'a self, at: Endpoint<'a>) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>>;
    /// `POST /v1/savepoints`; the request id.
    fn trigger_savepoint<'a>(
        &'a self,
        at: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<String, RuntimeError>>;
    /// `POST /v1/stop {"savepoint": true}`.
    fn stop_with_savepoint<'a>(
        &'a self,
        at: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
}

/// The real client, over HTTP.
#[derive(Debug, Clone)]
pub struct HttpRuntime {
    http: reqwest::Client,
}

impl HttpRuntime {
    /// A client with short timeouts: a reconcile must not hang on one slow pod.
    ///
    /// # Errors
    /// The HTTP client could not be built.
    pub fn new() -> Result<Self, RuntimeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| RuntimeError::Unreachable {
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self { http })
    }

    async fn call(
        &self,
        url: String,
        token: Option<&ControlToken>,
        method: Method,
    ) -> Result<Vec<u8>, RuntimeError> {
        let mut req = match method {
            Method::Get => self.http.get(&url),
            Method::Post(None) => self.http.post(&url),
            Method::Post(Some(json)) => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(json),
        };
        if let Some(t) = token {
            req = req.header("authorization", t.bearer());
        }
        let unreachable = |e: reqwest::Error| RuntimeError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let too_large = || RuntimeError::TooLarge {
            url: url.clone(),
            limit: MAX_BODY,
        };
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body);
            let mut quoted: String = text.chars().take(QUOTED).collect();
            if quoted.len() < text.len() {
                quoted.push_str("...");
            }
            return Err(RuntimeError::Status {
                url,
                status,
                body: quoted,
            });
        }
        Ok(body)
    }
}

/// A call's method, and a `POST`'s JSON body if it has one.
enum Method {
    Get,
    Post(Option<String>),
}

/// Decode a `GET /v1/job` body.
///
/// # Errors
/// The body is not a [`JobReport`].
pub fn decode_job(body: &[u8]) -> Result<RuntimeView, serde_json::Error> {
    serde_json::from_slice::<JobReport>(body).map(RuntimeView::from)
}

fn decode_error(url: String) -> impl FnOnce(serde_json::Error) -> RuntimeError {
    move |e| RuntimeError::Decode {
        url,
        message: e.to_string(),
    }
}

impl RuntimeApi for HttpRuntime {
    fn job<'a>(&'a self, at: Endpoint<'a>) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>> {
        Box::pin(async move {
            let url = format!("{}{}", at.base, routes::JOB);
            let body = self.call(url.clone(), at.token, Method::Get).await?;
            decode_job(&body).map_err(decode_error(url))
        })
    }

    fn trigger_savepoint<'a>(
        &'a self,
        at: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            let url = format!("{}{}", at.base, routes::SAVEPOINTS);
            let body = self.call(url.clone(), at.token, Method::Post(None)).await?;
            serde_json::from_slice::<SavepointAccepted>(&body)
                .map(|a| a.id)
                .map_err(decode_error(url))
        })
    }

    fn stop_with_savepoint<'a>(
        &'a self,
        at: Endpoint<'a>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let url = format!("{}{}", at.base, routes::STOP);
            let body = serde_json::to_string(&StopRequest { savepoint: true })
                .map_err(decode_error(url.clone()))?;
            // The answer (`StopAccepted`) is not read: the stop is underway once accepted, and
            // how it ended comes from the termination message.
            self.call(url, at.token, Method::Post(Some(body)))
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn decodes_the_runtime_job_status() {
        // The shape `weir-runtime`'s control API serves (runtime/src/control/status.rs).
        let body = br#"{"name":"sales","jobId":"abc","generation":2,"state":"running",
            "parallelism":2,"maxParallelism":128,"restoredFrom":null,
            "lastCheckpoint":{"id":7,"kind":"checkpoint","status":"completed",
              "triggeredAtMs":1800000000000,"durationMs":250,"sizeBytes":4096,
              "alignmentMs":3,"path":"s3://b/w/shop/sales/abc/chk-7","error":null},
            "checkpoints":[],"savepoints":[{"id":"sp-req-1","status":"completed",
              "path":"s3://b/sp","checkpoint":8,"error":null}],
            "sinks":[],"watermarks":[],"recordsIn":10,"sourceLag":[],"failure":null}"#;
        let v = decode_job(body).unwrap();
        assert_eq!(
            (v.job_id.as_str(), v.state),
            ("abc", weir_crds::control::JobState::Running)
        );
        let c = v.last_checkpoint.unwrap();
        assert_eq!(c.id, 7);
        assert_eq!(
            c.completed_at.unwrap().0.as_millisecond(),
            1_800_000_000_250
        );
        assert_eq!(v.savepoints[0].path.as_deref(), Some("s3://b/sp"));
    }

    /// A pod that answers `head`, then `chunk` over and over (`times` times, every `pause`),
    /// on a loopback port; its address.
    async fn runtime_answering(
        head: &'static str,
        chunk: &'static [u8],
        times: usize,
        pause: Duration,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    if conn.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for _ in 0..times {
                        let frame = format!("{:x}\r\n", chunk.len());
                        let ok = conn.write_all(frame.as_bytes()).await.is_ok()
                            && conn.write_all(chunk).await.is_ok()
                            && conn.write_all(b"\r\n").await.is_ok();
                        if !ok {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                    }
                    let _ = conn.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        format!("http://{addr}")
    }

    const CHUNKED: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    static MEGABYTE: [u8; 1 << 20] = [b' '; 1 << 20];

    /// A runtime that answers without end (as any image may) is cut off at `MAX_BODY`, not
    /// read into memory. Mutation: read the whole body (`bytes()`, as before) and this call
    /// reads 256 MiB and fails to decode instead.
    #[tokio::test]
    async fn an_endless_answer_is_cut_off_at_the_limit() {
        let base = runtime_answering(CHUNKED, &MEGABYTE, 256, Duration::ZERO).await;
        let rt = HttpRuntime::new().unwrap();
        let at = Endpoint {
            base: &base,
            token: None,
        };
        let e = rt.job(at).await.unwrap_err();
        assert!(
            matches!(
                e,
                RuntimeError::TooLarge {
                    limit: MAX_BODY,
                    ..
                }
            ),
            "{e}"
        );
        let declared = "HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n";
        let base = runtime_answering(declared, b"", 0, Duration::ZERO).await;
        let at = Endpoint {
            base: &base,
            token: None,
        };
        let e = rt.trigger_savepoint(at).await.unwrap_err();
        assert!(matches!(e, RuntimeError::TooLarge { .. }), "{e}");
    }

    /// A runtime that dribbles its answer is given up on after the call's time limit.
    #[tokio::test]
    async fn a_dribbled_answer_times_out() {
        let base = runtime_answering(CHUNKED, b" ", 1000, Duration::from_millis(100)).await;
        let rt = HttpRuntime::new().unwrap();
        let at = Endpoint {
            base: &base,
            token: None,
        };
        let started = std::time::Instant::now();
        let e = rt.job(at).await.unwrap_err();
        assert!(matches!(e, RuntimeError::Unreachable { .. }), "{e}");
        assert!(
            started.elapsed() < CALL_TIMEOUT * 3,
            "{:?}",
            started.elapsed()
        );
    }
}
