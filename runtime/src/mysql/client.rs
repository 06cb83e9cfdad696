//! Connections to the server: the URL of the sink's spec with the password from its
//! environment variable, TLS trusting what the project's TLS setup trusts, session settings
//! that make the server refuse rather than mangle a value, and errors sorted into those worth
//! retrying (the server is away) and those that will not change (a wrong password, a refused
//! certificate, a bad statement).

use std::fmt;

use mysql_async::{ClientIdentity, Conn, Opts, OptsBuilder, SslOpts};
use weir_crds::MysqlSinkSpec;

use crate::tls::TlsPem;

/// Server error `XAER_NOTA`: no such XA transaction (or it belongs to a live session).
pub const XA_UNKNOWN: u16 = 1397;

/// Settings of every connection: UTC for `TIMESTAMP` columns (records carry instants), strict
/// mode (a value that does not fit is an error, not a silently truncated row), a bounded wait
/// for a row lock (an error and a restore, never a hang), and `READ COMMITTED`: under InnoDB's
/// default `REPEATABLE READ` writes also take next-key (gap) locks, so the subtasks'
/// transactions, each open for a checkpoint interval (or prepared until the checkpoint
/// completes), can block each other's inserts, and a barrier can wait on a lock only the
/// checkpoint's completion releases. Found by the changelog test in `tests/connectors.rs`
/// (upsert mode, parallelism 3): an insert waiting on another subtask's X lock on the
/// table's supremum pseudo-record until the lock wait timeout, in 2 of 3 runs.
const SESSION: [&str; 4] = [
    "SET time_zone = '+00:00'",
    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
    "SET SESSION innodb_lock_wait_timeout = 30",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
];

/// A server error, or a connection that failed or closed.
#[derive(Debug, Clone)]
pub struct MyError {
    /// What happened, with the server's error code when it sent one.
    pub message: String,
    /// The server's error code.
    pub code: Option<u16>,
    /// Whether the same request may succeed later: the connection broke, the server was
    /// shutting down, or a deadlock or lock wait that the next attempt may pass.
    pub retriable: bool,
}

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<mysql_async::Error> for MyError {
    fn from(e: mysql_async::Error) -> Self {
        use mysql_async::{DriverError, Error, IoError};
        match e {
            Error::Server(s) => {
                // 1040 too many connections, 1053 shutting down, 1205 lock wait timeout,
                // 1213 deadlock, 1927 connection killed, 4031 disconnected for inactivity
                // (MySQL 8.0.24+).
                let retriable = matches!(s.code, 1040 | 1053 | 1205 | 1213 | 1927 | 4031);
                Self {
                    message: format!("{} (error {}, SQLSTATE {})", s.message, s.code, s.state),
                    code: Some(s.code),
                    retriable,
                }
            }
            // A certificate refused during the handshake comes as an I/O error around
            // rustls's; it will be refused again.
            Error::Io(IoError::Io(io))
                if io
                    .get_ref()
                    .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some()) =>
            {
                Self {
                    message: format!("TLS: {io}"),
                    code: None,
                    retriable: false,
                }
            }
            Error::Io(IoError::Io(io)) => Self {
                message: format!("connection: {io}"),
                code: None,
                retriable: true,
            },
            Error::Io(IoError::Tls(t)) => Self {
                message: format!("TLS: {t}"),
                code: None,
                retriable: false,
            },
            Error::Driver(d) => {
                let retriable = matches!(
                    d,
                    DriverError::ConnectionClosed | DriverError::PacketOutOfOrder
                );
                Self {
                    message: d.to_string(),
                    code: None,
                    retriable,
                }
            }
            other => Self {
                message: other.to_string(),
                code: None,
                retriable: false,
            },
        }
    }
}

/// How TLS is used (`sslmode` in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    /// TLS when the server offers it.
    Prefer,
    Require,
}

/// Where and how the sink connects.
#[derive(Clone)]
pub struct Endpoint {
    plain: Opts,
    tls: Option<Opts>,
    mode: SslMode,
    /// `host:port/database`, for messages.
    pub display: String,
}

impl Endpoint {
    /// The endpoint of `spec`, its secrets looked up with `lookup`.
    ///
    /// # Errors
    /// An unparsable URL, a variable that is not set, or a CA bundle that holds no
    /// certificate, naming the field.
    pub fn new(
        spec: &MysqlSinkSpec,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let (base, query) = spec.url.split_once('?').unwrap_or((&spec.url, ""));
        let mut mode = SslMode::Prefer;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            mode = match pair.split_once('=').unwrap_or((pair, "")) {
                ("sslmode", "disable") => SslMode::Disable,
                ("sslmode", "prefer") => SslMode::Prefer,
                ("sslmode", "require") => SslMode::Require,
                _ => {
                    return Err(format!(
                        "url `{}`: `{pair}` is not a setting this sink takes (only sslmode=disable|prefer|require)",
                        spec.url
                    ));
                }
            };
        }
        // The client library parses `mysql://` only.
        let base = match base.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => base.to_string(),
        };
        let opts = Opts::from_url(&base).map_err(|e| format!("url `{}`: {e}", spec.url))?;
        let display = format!(
            "{}:{}/{}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.db_name().unwrap_or("(no database)")
        );
        if opts.db_name().is_none() {
            return Err(format!(
                "url `{}` names no database (mysql://user@host:port/database)",
                spec.url
            ));
        }
        let mut builder = OptsBuilder::from_opts(opts)
            .init(SESSION.to_vec())
            // A connection that died without the server noticing (a partition, a NAT's idle
            // timeout) keeps an XA transaction it prepared attached, so neither a commit nor a
            // rollback from elsewhere can end it until the server drops the session: an hour
            // at most instead of the default eight. Idle connections it closes are reopened.
            .wait_timeout(Some(3600_usize))
            .stmt_cache_size(16_usize)
            .tcp_nodelay(true);
        if let Some(var) = &spec.password_env {
            builder = builder.pass(Some(crate::tls::env_var(&lookup, var, "passwordEnv")?));
        }
        let plain: Opts = builder.clone().into();
        let tls = if mode == SslMode::Disable {
            None
        } else {
            let pem = match &spec.tls {
                Some(t) => TlsPem::from_spec("tls", t, &lookup)?,
                None => TlsPem::default(),
            };
            // The client library's type for these is not public: it converts from bytes.
            let roots: Vec<Vec<u8>> = crate::tls::root_certificates(&pem)?
                .into_iter()
                .map(|c| c.as_ref().to_vec())
                .collect();
            if roots.is_empty() {
                if mode == SslMode::Require {
                    return Err("no CA certificates in the system bundle; set tls.caPemEnv".into());
                }
                tracing::warn!(
                    "mysql sink: no CA bundle to verify a server certificate; connecting without TLS (set tls.caPemEnv, or sslmode=require to insist)"
                );
                None
            } else {
                let identity = pem.identity().map(|(cert, key)| {
                    ClientIdentity::new(
                        cert.as_bytes().to_vec().into(),
                        key.as_bytes().to_vec().into(),
                    )
                });
                let ssl = SslOpts::default()
                    .with_root_certs(roots.into_iter().map(Into::into).collect())
                    .with_disable_built_in_roots(true)
                    .with_client_identity(identity);
                Some(builder.ssl_opts(ssl).into())
            }
        };
        Ok(Self {
            plain,
            tls,
            mode,
            display,
        })
    }

    /// A new connection with the session settings applied: over TLS unless `sslmode=disable`;
    /// with `prefer`, in plain text only when the server offers no TLS at all.
    ///
    /// # Errors
    /// The connection or the authentication failed.
    pub async fn connect(&self) -> Result<Conn, MyError> {
        // The client library builds its rustls settings with the process's default provider,
        // which the binaries install at start; a library caller (a test, an embedder) may not
        // have. The project's one provider, installed at most once.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let Some(tls) = &self.tls else {
            return Ok(Conn::new(self.plain.clone()).await?);
        };
        match Conn::new(tls.clone()).await {
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if self.mode == SslMode::Prefer => {
                tracing::debug!(server = %self.display, "the server offers no TLS; sslmode=prefer connects in plain text");
                Ok(Conn::new(self.plain.clone()).await?)
            }
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) => Err(MyError {
                message: "the server offers no TLS, and sslmode=require insists on it".into(),
                code: None,
                retriable: false,
            }),
            other => Ok(other?),
        }
    }
}

/// `name` as an SQL identifier.
#[must_use]
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// An XA transaction id, `X'gtrid',X'bqual'`: hexadecimal literals need no escaping.
#[must_use]
pub fn xid(gtrid: &str, bqual: &str) -> String {
    format!(
        "X'{}',X'{}'",
        hex::encode(gtrid.as_bytes()),
        hex::encode(bqual.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    fn spec(url: &str) -> MysqlSinkSpec {
        serde_yaml::from_str(&format!("{{url: '{url}', table: t, passwordEnv: P}}")).unwrap()
    }

    #[test]
    fn urls_take_sslmode_only_and_need_a_database_and_the_password_variable() {
        let env = |v: &str| (v == "P").then(|| "pw".to_string());
        let e = Endpoint::new(&spec("mysql://weir@db:3307/shop?sslmode=disable"), env).unwrap();
        assert_eq!(e.display, "db:3307/shop");
        assert!(e.tls.is_none());
        assert_eq!(e.plain.pass(), Some("pw"));
        let e = Endpoint::new(&spec("mariadb://weir@db/shop"), env).unwrap();
        assert_eq!(e.display, "db:3306/shop");
        assert!(
            Endpoint::new(&spec("mysql://weir@db/shop?require_ssl=true"), env)
                .err()
                .unwrap()
                .contains("require_ssl=true")
        );
        assert!(
            Endpoint::new(&spec("mysql://weir@db"), env)
                .err()
                .unwrap()
                .contains("names no database")
        );
        assert!(
            Endpoint::new(&spec("mysql://weir@db/shop"), |_| None)
                .err()
                .unwrap()
                .contains("P (passwordEnv) is not set")
        );
        assert_eq!(xid("a'b", "0:1:2"), "X'612762',X'303a313a32'");
        assert_eq!(ident("a`b"), "`a``b`");
    }
}
