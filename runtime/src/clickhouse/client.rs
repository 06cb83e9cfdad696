//! ClickHouse over HTTP or HTTPS: queries, inserts with retry, and what the server can do.

use std::time::Duration;

use reqwest::StatusCode;

use crate::tls::TlsPem;

/// A failed request: whether retrying can help, and the server's message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ChError {
    /// Network trouble or a server state that passes (overload, replica read-only, keeper).
    pub retriable: bool,
    /// What the server or the network said.
    pub message: String,
}

/// Server error codes that mean "try again later" rather than "this insert is wrong".
const RETRIABLE_CODES: [u32; 13] = [
    3,    // UNEXPECTED_END_OF_FILE (connection cut)
    159,  // TIMEOUT_EXCEEDED
    164,  // READONLY
    202,  // TOO_MANY_SIMULTANEOUS_QUERIES
    209,  // SOCKET_TIMEOUT
    210,  // NETWORK_ERROR
    225,  // NO_ZOOKEEPER
    242,  // TABLE_IS_READ_ONLY
    252,  // TOO_MANY_PARTS
    319,  // UNKNOWN_STATUS_OF_INSERT
    425,  // SYSTEM_ERROR
    999,  // KEEPER_EXCEPTION
    1000, // POCO_EXCEPTION
];

/// Code in a ClickHouse exception text (`Code: 60, e.displayText() = ...`).
fn error_code(body: &str) -> Option<u32> {
    let rest = body.split("Code: ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Whether a failed request failed on TLS (an untrusted certificate, a refused client
/// certificate): a retry cannot help.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        let text = err.to_string().to_lowercase();
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
            return true;
        }
        source = err.source();
    }
    false
}

/// One HTTP endpoint and credentials.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    user: String,
    password: Option<String>,
}

impl Client {
    /// Client for `url`.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        url: &str,
        user: &str,
        password: Option<String>,
        tls: &TlsPem,
    ) -> Result<Self, ChError> {
        let refuse = |message: String| ChError {
            retriable: false,
            message,
        };
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300));
        let http = crate::tls::http_client(builder, tls, "tls").map_err(refuse)?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            user: user.to_string(),
            password,
        })
    }

    /// Run `sql` with extra settings and an optional body; the response text.
    ///
    /// # Errors
    /// [`ChError`] with the server's message and whether a retry may help.
    pub async fn execute(
        &self,
        sql: &str,
        settings: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<String, ChError> {
        let mut q: Vec<(&str, String)> = vec![("query", sql.to_string())];
        q.extend(settings.iter().cloned());
        let body = body.unwrap_or_default();
        // Old servers (18.x) refuse a POST that states no length, even an empty one.
        let req = self
            .http
            .post(format!("{}/", self.url))
            .query(&q)
            .basic_auth(&self.user, self.password.as_deref())
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body);
        let resp = req.send().await.map_err(|e| ChError {
            retriable: !is_tls_failure(&e),
            message: format!("{}: {}", self.url, crate::error::chain(&e)),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ChError {
            retriable: true,
            message: format!("{}: reading response: {e}", self.url),
        })?;
        if status == StatusCode::OK {
            return Ok(text);
        }
        let code = error_code(&text);
        Err(ChError {
            retriable: status.is_server_error()
                && code.is_none_or(|c| RETRIABLE_CODES.contains(&c))
                || status == StatusCode::SERVICE_UNAVAILABLE,
            message: text.trim().to_string(),
        })
    }

    /// `(major, minor)` of the server.
    ///
    /// # Errors
    /// Unreachable server or an unparsable answer.
    pub async fn version(&self) -> Result<(u32, u32), ChError> {
        let v = self.execute("SELECT version()", &[], None).await?;
        let mut it = v.trim().split('.').map(|p| p.parse::<u32>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(ChError {
                retriable: false,
                message: format!("unexpected version answer `{}`", v.trim()),
            }),
        }
    }
}

/// Whether a server of this version knows `async_insert` (added in 21.11).
#[must_use]
pub fn has_async_insert((major, minor): (u32, u32)) -> bool {
    (major, minor) >= (21, 11)
}

/// Whether a server of this version knows `insert_deduplication_token` (added in 22.2).
#[must_use]
pub fn has_dedup_token((major, minor): (u32, u32)) -> bool {
    major > 22 || (major == 22 && minor >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_versions() {
        assert_eq!(
            error_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(error_code("no code"), None);
        assert!(!has_dedup_token((18, 16)));
        assert!(!has_dedup_token((22, 1)));
        assert!(has_dedup_token((22, 2)));
        assert!(has_dedup_token((24, 8)));
    }
}
