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
    /// A body that is not what the contract (`weir_crds::control`) says.
    #[error("runtime at {url} sent an unreadable body: {message}")]
    Decode {
        /// URL called.
        url: String,
        /// The decode error.
        message: String,
    },
}

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
            .timeout(Duration::from_secs(5))
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
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        if !(200..300).contains(&status) {
            return Err(RuntimeError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
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
}
