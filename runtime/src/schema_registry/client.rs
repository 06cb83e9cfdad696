//! A client of the Confluent Schema Registry REST API: the two calls a job makes (a schema
//! by id, registering a subject's schema), with basic authentication and the project's TLS.

use std::time::Duration;

use serde::Deserialize;
use weir_crds::SchemaRegistrySpec;

use crate::retry::Backoff;
use crate::tls::{TlsPem, env_var, http_client};

/// A failed registry call.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered and said no; retrying cannot help.
    #[error("schema registry {url}: {message}")]
    Refused {
        /// The registry's base URL.
        url: String,
        /// Its status and message.
        message: String,
    },
    /// The registry could not be reached (or failed on its side) after a few tries.
    #[error("schema registry {url} unreachable: {message}")]
    Unreachable {
        /// The registry's base URL.
        url: String,
        /// The last failure.
        message: String,
    },
}

/// The kind of a registered schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaType {
    /// Avro (JSON text).
    Avro,
    /// Protobuf (`.proto` text).
    Protobuf,
    /// Anything else (JSON Schema), by the registry's name.
    Other(String),
}

impl SchemaType {
    /// The registry's name for it.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Other(n) => n,
        }
    }
}

/// A schema as the registry holds it.
#[derive(Debug, Clone)]
pub struct Registered {
    /// What kind of schema.
    pub schema_type: SchemaType,
    /// Its text.
    pub schema: String,
}

/// One registry: base URL, credentials, HTTP client.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    url: String,
    auth: Option<(String, String)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url)
            .field("user", &self.auth.as_ref().map(|a| &a.0))
            .finish_non_exhaustive()
    }
}

/// What `GET /schemas/ids/{id}` answers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaById {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

/// The registry's error body.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// Error code of "schema not found" (`GET /schemas/ids/{id}` for an unknown id).
const SCHEMA_NOT_FOUND: i64 = 40403;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Longest answer read from the registry. A schema is a few KiB (Confluent's registry keeps
/// each in a Kafka record, at most 1 MiB by default); a longer answer, whatever sent it, is
/// refused rather than read into the source's memory.
pub const MAX_ANSWER: usize = 8 << 20;

/// `resp`'s body, or `None` once it is longer than [`MAX_ANSWER`].
async fn read_at_most(mut resp: reqwest::Response) -> reqwest::Result<Option<String>> {
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

impl Registry {
    /// The registry `spec` describes; secrets read with `lookup`, `field` is where `spec`
    /// sits in the job file.
    ///
    /// # Errors
    /// A named environment variable that is not set, or unusable TLS settings.
    pub fn from_spec(
        spec: &SchemaRegistrySpec,
        field: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let tls = match &spec.tls {
            Some(t) => TlsPem::from_spec(&format!("{field}.tls"), t, &lookup)?,
            None => TlsPem::default(),
        };
        let auth = match (&spec.username, &spec.password_env) {
            (Some(u), Some(p)) => Some((
                u.clone(),
                env_var(&lookup, p, &format!("{field}.passwordEnv"))?,
            )),
            _ => None,
        };
        // No idle connections kept: lookups are rare and may run on a runtime that is gone
        // by the next one.
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0);
        let http = http_client(builder, &tls, &format!("{field}.tls"))?;
        Ok(Self {
            http,
            url: spec.url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// The base URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    fn refused(&self, message: String) -> RegistryError {
        RegistryError::Refused {
            url: self.url.clone(),
            message,
        }
    }

    /// Sends the request `make` builds, retrying network failures and 5xx answers a few
    /// times; the status and body of the first other answer.
    async fn send(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, String), RegistryError> {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = make().header(reqwest::header::ACCEPT, CONTENT_TYPE);
            if let Some((u, p)) = &self.auth {
                req = req.basic_auth(u, Some(p));
            }
            let failure = match req.send().await {
                // Overload and time-outs pass; everything else is the registry's answer.
                Ok(resp)
                    if !resp.status().is_server_error()
                        && !matches!(resp.status().as_u16(), 408 | 429) =>
                {
                    let status = resp.status();
                    match read_at_most(resp).await {
                        Ok(Some(body)) => return Ok((status, body)),
                        Ok(None) => {
                            return Err(self.refused(format!(
                                "answered HTTP {status} with more than {} MiB; a schema is far smaller",
                                MAX_ANSWER >> 20
                            )));
                        }
                        Err(e) => format!(
                            "HTTP {status}, body unreadable: {}",
                            crate::error::chain(&e)
                        ),
                    }
                }
                Ok(resp) => format!("HTTP {}", resp.status()),
                Err(e) => crate::error::chain(&e),
            };
            match backoff.next() {
                Some(d) if attempt < 4 => {
                    tracing::warn!(registry = %self.url, attempt, error = %failure, "schema registry call failed; retrying");
                    tokio::time::sleep(d).await;
                }
                _ => {
                    return Err(RegistryError::Unreachable {
                        url: self.url.clone(),
                        message: failure,
                    });
                }
            }
        }
    }

    fn explain(&self, what: &str, status: reqwest::StatusCode, body: &str) -> RegistryError {
        let message = serde_json::from_str::<ErrorBody>(body)
            .ok()
            .and_then(|b| b.message)
            .unwrap_or_else(|| body.chars().take(300).collect());
        let hint = match status.as_u16() {
            401 => " (check schemaRegistry.username and the password in passwordEnv)",
            403 => " (the credentials may not use this subject)",
            _ => "",
        };
        self.refused(format!("{what}: HTTP {status}: {message}{hint}"))
    }

    /// The schema registered under `id`; `Ok(None)` when the registry has no such id.
    ///
    /// # Errors
    /// The registry refused (naming why) or could not be reached; a schema that uses
    /// references.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<Registered>, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.url);
        let (status, body) = self.send(|| self.http.get(&url)).await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            let code = serde_json::from_str::<ErrorBody>(&body)
                .ok()
                .and_then(|b| b.error_code);
            if code == Some(SCHEMA_NOT_FOUND) {
                return Ok(None);
            }
            // A 404 that is not the registry's "no such schema": a wrong URL, not bad records.
            return Err(RegistryError::Unreachable {
                url: self.url.clone(),
                message: format!(
                    "schema id {id}: HTTP 404 without the registry's error code 40403 \
                     (is schemaRegistry.url the registry's base URL?)"
                ),
            });
        }
        if matches!(status.as_u16(), 401 | 403) {
            // Credentials are the job's configuration: fail the job (it retries from its
            // checkpoint) rather than call every record bad.
            return Err(RegistryError::Unreachable {
                url: self.url.clone(),
                message: self
                    .explain(&format!("schema id {id}"), status, &body)
                    .to_string(),
            });
        }
        if !status.is_success() {
            return Err(self.explain(&format!("schema id {id}"), status, &body));
        }
        let s: SchemaById = serde_json::from_str(&body)
            .map_err(|e| self.refused(format!("schema id {id}: unreadable answer: {e}")))?;
        if !s.references.is_empty() {
            return Err(self.refused(format!(
                "schema id {id} uses schema references, which Weir does not resolve; \
                 register the schema with its types inlined"
            )));
        }
        let schema_type = match s.schema_type.as_deref() {
            None | Some("AVRO") => SchemaType::Avro,
            Some("PROTOBUF") => SchemaType::Protobuf,
            Some(other) => SchemaType::Other(other.to_string()),
        };
        Ok(Some(Registered {
            schema_type,
            schema: s.schema,
        }))
    }

    /// [`Registry::schema_by_id`] from synchronous code (a source's poll), on a thread of
    /// its own with a runtime of its own, so it works inside or outside any tokio runtime.
    ///
    /// # Errors
    /// As [`Registry::schema_by_id`].
    pub fn schema_by_id_blocking(&self, id: u32) -> Result<Option<Registered>, RegistryError> {
        let unreachable = |message: String| RegistryError::Unreachable {
            url: self.url.clone(),
            message,
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| unreachable(format!("no runtime for the lookup: {e}")))?
                    .block_on(self.schema_by_id(id))
            })
            .join()
            .unwrap_or_else(|_| Err(unreachable("the lookup thread panicked".to_string())))
        })
    }

    /// Registers `schema` (Avro JSON) under `subject`, or finds it registered already; its
    /// id.
    ///
    /// # Errors
    /// The registry refused it (an incompatible or invalid schema, named with the
    /// registry's message) or could not be reached.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: &SchemaType,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let url = format!("{}/subjects/{}/versions", self.url, url_segment(subject));
        let body =
            serde_json::json!({ "schema": schema, "schemaType": schema_type.name() }).to_string();
        let (status, answer) = self
            .send(|| {
                self.http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(body.clone())
            })
            .await?;
        if !status.is_success() {
            return Err(self.explain(
                &format!("registering the value schema under subject `{subject}`"),
                status,
                &answer,
            ));
        }
        serde_json::from_str::<Registered>(&answer)
            .map(|r| r.id)
            .map_err(|e| self.refused(format!("subject `{subject}`: unreadable answer: {e}")))
    }
}

/// `s` as one URL path segment (subjects may hold `/`, `:` and spaces).
fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{MAX_ANSWER, Registry, RegistryError, url_segment};

    /// A registry (or anything at its address) answering with more than the bound is
    /// refused, naming it, without reading the answer into memory.
    #[tokio::test]
    async fn an_answer_longer_than_the_bound_is_refused() {
        let big = "x".repeat(MAX_ANSWER + 1);
        let app = axum::Router::new().route(
            "/schemas/ids/{id}",
            axum::routing::get(move || {
                let big = big.clone();
                async move { big }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let spec: weir_crds::SchemaRegistrySpec =
            serde_json::from_value(serde_json::json!({"url": format!("http://{addr}")}))
                .expect("spec");
        let registry = Registry::from_spec(&spec, "schemaRegistry", |_| None).expect("registry");
        match registry.schema_by_id(1).await {
            Err(RegistryError::Refused { message, .. }) => {
                assert!(message.contains("more than 8 MiB"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subjects_are_escaped_as_one_path_segment() {
        assert_eq!(url_segment("orders-value"), "orders-value");
        assert_eq!(url_segment("a/b c:d"), "a%2Fb%20c%3Ad");
    }
}
