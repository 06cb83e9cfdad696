//! Connections to the server: the URL of the sink's spec with the password from its
//! environment variable, TLS through the project's one TLS setup, and errors sorted into
//! those worth retrying (the server is away) and those that will not change (a wrong
//! password, a refused certificate, a bad statement).

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use weir_crds::PostgresSinkSpec;

use crate::tls::TlsPem;

/// A server error, or a connection that failed or closed.
#[derive(Debug, Clone)]
pub struct PgError {
    /// What happened, with the server's SQLSTATE when it sent one.
    pub message: String,
    /// SQLSTATE, when the server answered with an error.
    pub code: Option<String>,
    /// Whether the same request may succeed later: the connection broke or the server was
    /// shutting down or starting.
    pub retriable: bool,
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code().to_string();
            let mut message = format!("{} (SQLSTATE {code})", db.message());
            if let Some(d) = db.detail() {
                message.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                message.push_str(&format!("; hint: {h}"));
            }
            // 08: connection exceptions; 57P0x: the server shutting down or starting; 53300:
            // too many connections; 40001/40P01: a serialization failure or deadlock, which
            // the same transaction may pass next time.
            let retriable = code.starts_with("08")
                || matches!(
                    code.as_str(),
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
                );
            return Self {
                message,
                code: Some(code),
                retriable,
            };
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        // A certificate the client refuses is refused again; anything else without a
        // SQLSTATE is the connection (refused, reset, closed).
        let retriable =
            !message.contains("certificate") && !message.contains("invalid configuration");
        Self {
            message,
            code: None,
            retriable,
        }
    }
}

/// Where and how the sink connects.
#[derive(Clone)]
pub struct Endpoint {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    /// `host:port/database`, for messages.
    pub display: String,
}

impl Endpoint {
    /// The endpoint of `spec`, its secrets looked up with `lookup`.
    ///
    /// # Errors
    /// An unparsable URL, a variable that is not set, or PEM text rustls refuses, naming the
    /// field.
    pub fn new(
        spec: &PostgresSinkSpec,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut config =
            Config::from_str(&spec.url).map_err(|e| format!("url `{}`: {e}", spec.url))?;
        if let Some(var) = &spec.password_env {
            config.password(crate::tls::env_var(&lookup, var, "passwordEnv")?);
        }
        if config.get_application_name().is_none() {
            config.application_name("weir");
        }
        let tls = if config.get_ssl_mode() == SslMode::Disable {
            None
        } else {
            let pem = match &spec.tls {
                Some(t) => TlsPem::from_spec("tls", t, &lookup)?,
                None => TlsPem::default(),
            };
            match crate::tls::client_config(&pem) {
                Ok(c) => Some(MakeRustlsConnect::new(c)),
                // `prefer` without a CA bundle on a machine without one: plain text, as
                // libpq does; `require` insists.
                Err(e) if spec.tls.is_none() && config.get_ssl_mode() == SslMode::Prefer => {
                    tracing::warn!(error = %e, "postgres sink: no CA bundle to verify a server certificate; connecting without TLS (set tls.caPemEnv, or sslmode=require to insist)");
                    None
                }
                Err(e) => return Err(e),
            }
        };
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let display = format!(
            "{host}:{port}/{}",
            config.get_dbname().unwrap_or("(user's database)")
        );
        Ok(Self {
            config,
            tls,
            display,
        })
    }

    /// A new connection; its I/O runs on a task of its own until the client is dropped.
    ///
    /// # Errors
    /// The connection or the authentication failed.
    pub async fn connect(&self) -> Result<Client, PgError> {
        // The connection's type depends on the TLS connector; both run the same way.
        Ok(match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                self.drive(conn);
                client
            }
            None => {
                let (client, conn) = self.config.connect(NoTls).await?;
                self.drive(conn);
                client
            }
        })
    }

    /// Run a connection's I/O on a task of its own.
    fn drive(
        &self,
        conn: impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    ) {
        let server = self.display.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%server, error = %e, "postgres connection ended");
            }
        });
    }
}

/// `name` as an SQL identifier.
#[must_use]
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `s` as an SQL string literal (for statements that take no parameters, such as
/// `PREPARE TRANSACTION`).
#[must_use]
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
