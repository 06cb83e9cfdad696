//! The ClickHouse sink's checks.

use super::FieldError;
use crate::connectors::{ClickHouseMode, ClickHouseSinkSpec};
use crate::pipeline::CheckpointSpec;

/// The sink at `path`. `writeAhead` keeps rows in checkpoints until they commit, so it is
/// only exactly-once (and only allowed) when the checkpoints are.
pub(super) fn check_sink(
    path: &str,
    ch: &ClickHouseSinkSpec,
    c: &CheckpointSpec,
    errs: &mut Vec<FieldError>,
) {
    if !(ch.url.starts_with("http://") || ch.url.starts_with("https://")) {
        errs.push(FieldError::new(
            format!("{path}.clickhouse.url"),
            format!("`{}` is not an http:// or https:// URL", ch.url),
        ));
    }
    if let Some(t) = &ch.tls {
        super::check_tls(
            t,
            ch.url.starts_with("https://"),
            "an https:// URL",
            &format!("{path}.clickhouse.tls"),
            errs,
        );
    }
    if ch.table.trim().is_empty() {
        errs.push(FieldError::new(
            format!("{path}.clickhouse.table"),
            "is empty",
        ));
    }
    if ch.block_rows == 0 {
        errs.push(FieldError::new(
            format!("{path}.clickhouse.blockRows"),
            "must be at least 1",
        ));
    }
    if ch.initial_backoff.get().is_zero() || ch.max_backoff < ch.initial_backoff {
        errs.push(FieldError::new(
            format!("{path}.clickhouse.maxBackoff"),
            "initialBackoff must be > 0 and maxBackoff >= initialBackoff",
        ));
    }
    if ch.mode == ClickHouseMode::WriteAhead && !c.exactly_once {
        errs.push(FieldError::new(
            format!("{path}.clickhouse.mode"),
            "writeAhead needs checkpoint.exactlyOnce: true; use mode: replacing",
        ));
    }
}
