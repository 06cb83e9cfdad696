//! The PostgreSQL sink's checks.

use super::FieldError;
use crate::pipeline::CheckpointSpec;
use crate::postgres::{PostgresMode, PostgresSinkSpec};

/// The sink at `path`. `transactional` commits with the checkpoints, so it is only
/// exactly-once (and only allowed) when the checkpoints are.
pub(super) fn check_sink(
    path: &str,
    pg: &PostgresSinkSpec,
    c: &CheckpointSpec,
    errs: &mut Vec<FieldError>,
) {
    let field = |f: &str| format!("{path}.postgres.{f}");
    match pg
        .url
        .strip_prefix("postgres://")
        .or_else(|| pg.url.strip_prefix("postgresql://"))
    {
        None => errs.push(FieldError::new(
            field("url"),
            format!("`{}` is not a postgres:// URL", pg.url),
        )),
        Some(rest) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            if let Some((user, _)) = authority.rsplit_once('@')
                && user.contains(':')
            {
                errs.push(FieldError::new(
                    field("url"),
                    "the password must not be in the URL: name the variable holding it in passwordEnv",
                ));
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
                        errs.push(FieldError::new(
                            field("url"),
                            "the password must not be in the URL: name the variable holding it in passwordEnv",
                        ));
                    }
                }
            }
        }
    }
    if let Some(t) = &pg.tls {
        super::check_tls(
            t,
            !pg.url.contains("sslmode=disable"),
            "an sslmode other than disable",
            &field("tls"),
            errs,
        );
    }
    for (f, v) in [
        ("table", &pg.table),
        ("schema", &pg.schema),
        ("progressTable", &pg.progress_table),
    ] {
        if v.trim().is_empty() {
            errs.push(FieldError::new(field(f), "is empty"));
        }
    }
    if pg.primary_key.iter().any(|k| k.trim().is_empty()) {
        errs.push(FieldError::new(
            field("primaryKey"),
            "names an empty column",
        ));
    }
    if pg.batch_rows == 0 {
        errs.push(FieldError::new(field("batchRows"), "must be at least 1"));
    }
    if pg.initial_backoff.get().is_zero() || pg.max_backoff < pg.initial_backoff {
        errs.push(FieldError::new(
            field("maxBackoff"),
            "initialBackoff must be > 0 and maxBackoff >= initialBackoff",
        ));
    }
    if pg.mode == PostgresMode::Transactional && !c.exactly_once {
        errs.push(FieldError::new(
            field("mode"),
            "transactional needs checkpoint.exactlyOnce: true; use mode: upsert",
        ));
    }
}
