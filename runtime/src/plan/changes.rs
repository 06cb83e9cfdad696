//! Where a changelog ([`crate::changelog`]) may go. Filters and selects read one row at a
//! time, so they pass a changelog on (a select carries the change kind along); a `GROUP BY`
//! takes retracted rows back from their groups; a regular join takes them out of its state
//! and retracts their pairs (an interval join refuses them when it is resolved); a top-N
//! keeps every row to refill a rank; `UNION ALL` passes every input's changes on. Windows
//! and dedup do not read one, and are refused by name rather than run over rows they would
//! take for inserts (Flink's window aggregations refuse one too). Sinks that only append are refused a changelog:
//! they would store every old version of each row beside the new one. A ClickHouse sink with
//! a version column and a Kafka sink with `keyBy` write it as upserts by key; a file sink
//! writes each change with its kind. A ClickHouse sink with
//! a version column writes it as upserts.

use weir_crds::{FieldError, SinkSpec, Transform};

use super::Operation;
use super::check::Incoming;
use crate::changelog::{CHANGE, is_changelog};

/// `op` (node `i`) as it runs over `ins`: unchanged over inserts only; over a changelog, a
/// select also passes the change kind on, and anything but a filter or a select is refused.
///
/// # Errors
/// The node, and why it cannot read a changelog.
pub(super) fn through<T>(
    i: usize,
    op: &Operation,
    ins: &[(usize, T, Incoming)],
) -> Result<Operation, FieldError> {
    if !ins.iter().any(|x| is_changelog(&x.2.schema)) {
        return Ok(op.clone());
    }
    let what = match op {
        Operation::Transform(Transform::Filter(_)) => return Ok(op.clone()),
        Operation::Transform(Transform::Select(cols)) => {
            let mut cols = cols.clone();
            cols.insert(CHANGE.to_string(), CHANGE.to_string());
            return Ok(Operation::Transform(Transform::Select(cols)));
        }
        Operation::Transform(Transform::Window(_)) => "a window",
        Operation::Transform(Transform::Dedup(_)) => "a dedup",
        // Takes rows back from their groups (`operator/group_by/retract.rs`).
        Operation::GroupBy(..) => return Ok(op.clone()),
        // Each input's changes as they are (`check::union`, `operator/union.rs`).
        Operation::Union => return Ok(op.clone()),
        // Rows taken out of a side's state (`operator/join`); only a regular join
        // (`plan/join.rs` refuses an interval join over a changelog).
        Operation::Join(_) => return Ok(op.clone()),
        // Every row of a partition kept, so that a row taken back is replaced
        // (`operator/top_n.rs`).
        Operation::TopN(_) => return Ok(op.clone()),
    };
    Err(FieldError::new(
        format!("transforms[{i}]"),
        format!(
            "{what} over an updating result (a changelog of inserts, updates and deletes: a GROUP BY without a window, or a join or top-N over one) is not supported: {what} would read its updates and deletions as new rows; aggregate in a window before, or write the updating result to a sink"
        ),
    ))
}

/// Whether sink `spec` can take a changelog, and if not, why.
///
/// # Errors
/// What the sink does instead, and what to do.
pub(super) fn sink_takes(spec: &SinkSpec, deletes: bool) -> Result<(), String> {
    match spec {
        SinkSpec::Stdout { .. } | SinkSpec::Blackhole { .. } | SinkSpec::File(_) => Ok(()),
        SinkSpec::ClickHouse(_) if deletes => Err(format!(
            "sink `{}` (clickhouse) cannot delete a row, and this statement's result may delete some (a GROUP BY over an updating result loses a group when all its rows are taken back); write it to a file sink or to Kafka with keyBy (a deletion is a tombstone)",
            spec.name().unwrap_or("?")
        )),
        // Upserts into a ReplacingMergeTree (its engine is checked when the job starts).
        SinkSpec::ClickHouse(c) if c.version_column.is_some() => Ok(()),
        SinkSpec::ClickHouse(_) => Err(format!(
            "sink `{}` (clickhouse) has no versionColumn, and this statement's result updates (a GROUP BY without a window emits a new row each time a group changes): write it into a ReplacingMergeTree(<version>) table ordered by the result's key and set versionColumn to <version>, so that each key's newest row replaces the older",
            spec.name().unwrap_or("?")
        )),
        // Upserts and deletes by the table's primary key (checked when the job starts).
        SinkSpec::Postgres(_) | SinkSpec::Mysql(_) => Ok(()),
        // Upserts by key: the newest record of a key (a compacted topic) is the result.
        SinkSpec::Kafka(k) if !k.key_by.is_empty() => Ok(()),
        SinkSpec::Kafka(_) => Err(format!(
            "sink `{}` (kafka) has no keyBy, and this statement's result updates (a GROUP BY without a window emits a new row each time a group changes): set keyBy to the result's key columns, and each change is written as a record of that key (the newest record of a key is the result; a deletion is a tombstone)",
            spec.name().unwrap_or("?")
        )),
    }
}
