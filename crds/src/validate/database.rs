//! The database sinks' checks (PostgreSQL, MySQL): the same URL rules (no password in it,
//! a host, a known `sslmode`), the same field rules, and `transactional` only when the
//! checkpoints are exactly-once.

use super::FieldError;
use crate::connectors::{DatabaseMode, TlsSpec};
use crate::duration::Duration;
use crate::mysql::MysqlSinkSpec;
use crate::pipeline::CheckpointSpec;
use crate::postgres::PostgresSinkSpec;

/// The fields both database sinks have.
struct Common<'a> {
    /// `postgres`, `mysql`: the sink's key under `path`.
    kind: &'a str,
    /// URL schemes the sink takes.
    schemes: &'a [&'a str],
    url: &'a str,
    tls: Option<&'a TlsSpec>,
    names: Vec<(&'a str, &'a str)>,
    primary_key: &'a [String],
    batch_rows: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    mode: DatabaseMode,
}

/// The PostgreSQL sink at `path`.
pub(super) fn check_postgres(
    path: &str,
    pg: &PostgresSinkSpec,
    c: &CheckpointSpec,
    errs: &mut Vec<FieldError>,
) {
    check(
        path,
        &Common {
            kind: "postgres",
            schemes: &["postgres", "postgresql"],
            url: &pg.url,
            tls: pg.tls.as_ref(),
            names: vec![
                ("table", &pg.table),
                ("schema", &pg.schema),
                ("progressTable", &pg.progress_table),
            ],
            primary_key: &pg.primary_key,
            batch_rows: pg.batch_rows,
            initial_backoff: pg.initial_backoff,
            max_backoff: pg.max_backoff,
            mode: pg.mode,
        },
        c,
        errs,
    );
}

/// The MySQL sink at `path`. MySQL's XA ids are at most 64 bytes, which the prefix must fit.
pub(super) fn check_mysql(
    path: &str,
    m: &MysqlSinkSpec,
    c: &CheckpointSpec,
    errs: &mut Vec<FieldError>,
) {
    check(
        path,
        &Common {
            kind: "mysql",
            schemes: &["mysql", "mariadb"],
            url: &m.url,
            tls: m.tls.as_ref(),
            names: vec![("table", &m.table), ("progressTable", &m.progress_table)],
            primary_key: &m.primary_key,
            batch_rows: m.batch_rows,
            initial_backoff: m.initial_backoff,
            max_backoff: m.max_backoff,
            mode: m.mode,
        },
        c,
        errs,
    );
    if let Some(p) = &m.transaction_id_prefix
        && (p.is_empty() || p.len() > 64)
    {
        errs.push(FieldError::new(
            format!("{path}.mysql.transactionIdPrefix"),
            format!("is {} bytes: an XA transaction id holds 1 to 64", p.len()),
        ));
    }
}

fn check(path: &str, s: &Common<'_>, c: &CheckpointSpec, errs: &mut Vec<FieldError>) {
    let field = |f: &str| format!("{path}.{}.{f}", s.kind);
    let no_password =
        "the password must not be in the URL: name the variable holding it in passwordEnv";
    match s
        .schemes
        .iter()
        .find_map(|scheme| s.url.strip_prefix(&format!("{scheme}://")))
    {
        None => errs.push(FieldError::new(
            field("url"),
            format!("`{}` is not a {}:// URL", s.url, s.schemes[0]),
        )),
        Some(rest) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            if let Some((user, _)) = authority.rsplit_once('@')
                && user.contains(':')
            {
                errs.push(FieldError::new(field("url"), no_password));
            }
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if host.is_empty() {
                errs.push(FieldError::new(field("url"), "names no host"));
            }
            if let Some((_, query)) = rest.split_once('?') {
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == "sslmode" && !matches!(v, "disable" | "prefer" | "require") {
                        errs.push(FieldError::new(
                            field("url"),
                            format!("sslmode={v}: use disable, prefer or require (a certificate is always verified when TLS is used)"),
                        ));
                    }
                    if k == "password" {
                        errs.push(FieldError::new(field("url"), no_password));
                    }
                }
            }
        }
    }
    if let Some(t) = s.tls {
        super::check_tls(
            t,
            !s.url.contains("sslmode=disable"),
            "an sslmode other than disable",
            &field("tls"),
            errs,
        );
    }
    for (f, v) in &s.names {
        if v.trim().is_empty() {
            errs.push(FieldError::new(field(f), "is empty"));
        }
    }
    if s.primary_key.iter().any(|k| k.trim().is_empty()) {
        errs.push(FieldError::new(
            field("primaryKey"),
            "names an empty column",
        ));
    }
    if s.batch_rows == 0 {
        errs.push(FieldError::new(field("batchRows"), "must be at least 1"));
    }
    if s.initial_backoff.get().is_zero() || s.max_backoff < s.initial_backoff {
        errs.push(FieldError::new(
            field("maxBackoff"),
            "initialBackoff must be > 0 and maxBackoff >= initialBackoff",
        ));
    }
    if s.mode == DatabaseMode::Transactional && !c.exactly_once {
        errs.push(FieldError::new(
            field("mode"),
            "transactional needs checkpoint.exactlyOnce: true; use mode: upsert",
        ));
    }
}
