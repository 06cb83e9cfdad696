//! Talking to a runtime pod's control API (`GET /v1/job`, `POST /v1/savepoints`,
//! `POST /v1/stop`). Behind a trait so reconcile tests can script the runtime's answers.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::decide::{RuntimeSavepoint, RuntimeView};

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
    /// A body that is not what the control API returns.
    #[error("runtime at {url} sent an unreadable body: {message}")]
    Decode {
        /// URL called.
        url: String,
        /// The decode error.
        message: String,
    },
}

/// The control API, as the operator uses it. `base` is `http://<pod IP>:<port>`.
pub trait RuntimeApi: Send + Sync {
    /// `GET /v1/job`.
    fn job<'a>(&'a self, base: &'a str) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>>;
    /// `POST /v1/savepoints`; the request id.
    fn trigger_savepoint<'a>(
        &'a self,
        base: &'a str,
    ) -> BoxFuture<'a, Result<String, RuntimeError>>;
    /// `POST /v1/stop {"savepoint": true}`.
    fn stop_with_savepoint<'a>(&'a self, base: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
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
        post: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let req = match post {
            Some(body) => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
            None => self.http.get(&url),
        };
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

/// The parts of `GET /v1/job` decisions read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobBody {
    job_id: String,
    state: String,
    last_checkpoint: Option<CheckpointBody>,
    #[serde(default)]
    savepoints: Vec<SavepointBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointBody {
    id: u64,
    triggered_at_ms: i64,
    duration_ms: Option<u64>,
    size_bytes: Option<u64>,
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SavepointBody {
    id: String,
    status: String,
    path: Option<String>,
    error: Option<String>,
}

/// Decode a `GET /v1/job` body.
///
/// # Errors
/// The body is not the control API's JSON.
pub fn decode_job(body: &[u8]) -> Result<RuntimeView, serde_json::Error> {
    let b: JobBody = serde_json::from_slice(body)?;
    let last_checkpoint = b.last_checkpoint.map(|c| {
        let done_ms = c
            .triggered_at_ms
            .saturating_add(i64::try_from(c.duration_ms.unwrap_or(0)).unwrap_or(0));
        weir_crds::CheckpointStatus {
            id: c.id,
            path: c.path,
            completed_at: jiff::Timestamp::from_millisecond(done_ms)
                .ok()
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            size_bytes: c.size_bytes,
        }
    });
    Ok(RuntimeView {
        job_id: b.job_id,
        state: b.state,
        last_checkpoint,
        savepoints: b
            .savepoints
            .into_iter()
            .map(|s| RuntimeSavepoint {
                id: s.id,
                status: s.status,
                path: s.path,
                error: s.error,
            })
            .collect(),
    })
}

impl RuntimeApi for HttpRuntime {
    fn job<'a>(&'a self, base: &'a str) -> BoxFuture<'a, Result<RuntimeView, RuntimeError>> {
        Box::pin(async move {
            let url = format!("{base}/v1/job");
            let body = self.call(url.clone(), None).await?;
            decode_job(&body).map_err(|e| RuntimeError::Decode {
                url,
                message: e.to_string(),
            })
        })
    }

    fn trigger_savepoint<'a>(
        &'a self,
        base: &'a str,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            let url = format!("{base}/v1/savepoints");
            let body = self.call(url.clone(), Some(serde_json::json!({}))).await?;
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
                .ok_or_else(|| RuntimeError::Decode {
                    url,
                    message: "no `id` in the answer".into(),
                })
        })
    }

    fn stop_with_savepoint<'a>(&'a self, base: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let url = format!("{base}/v1/stop");
            self.call(url, Some(serde_json::json!({"savepoint": true})))
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
        assert_eq!((v.job_id.as_str(), v.state.as_str()), ("abc", "running"));
        let c = v.last_checkpoint.unwrap();
        assert_eq!(c.id, 7);
        assert_eq!(
            c.completed_at.unwrap().0.as_millisecond(),
            1_800_000_000_250
        );
        assert_eq!(v.savepoints[0].path.as_deref(), Some("s3://b/sp"));
    }
}
