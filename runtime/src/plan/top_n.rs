//! A top-N in the plan (`ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) <= N`), checked
//! against its input. A partition that includes the input's event time completes (a window
//! top-N): its rows are final once the watermark passes, append-only. Any other partition's
//! top changes as rows arrive, so its result is a changelog of the ranks that change
//! ([`crate::changelog`]); over a changelog, ranks may also empty (it may delete).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use weir_crds::FieldError;

use super::check::Incoming;
use crate::operator::top_n::TopNConfig;

/// A top-N as the SQL front end lowers it; names are Weir's column names in its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopNSpec {
    /// `PARTITION BY` columns.
    pub partition: Vec<String>,
    /// `ORDER BY` columns: (column, descending, nulls first).
    pub order: Vec<(String, bool, bool)>,
    /// Rows kept per partition.
    pub n: usize,
    /// The name of the row-number column the operator adds.
    pub rownum: String,
    /// `stateTtl`, for a top-N over all time: a partition without a row for this long (of
    /// event time) is forgotten.
    pub ttl: Option<crate::ids::Millis>,
}

/// A top-N resolved against its input.
pub(super) struct Resolved {
    pub partition: Vec<usize>,
    pub order: Vec<(usize, bool, bool)>,
    pub out: Incoming,
}

/// Resolve `spec` over `input`; `path` names it in messages.
pub(super) fn resolve(
    spec: &TopNSpec,
    input: &Incoming,
    path: &str,
) -> Result<Resolved, Vec<FieldError>> {
    let mut errs = Vec::new();
    let col = |name: &str, errs: &mut Vec<FieldError>| {
        let found = input.schema.index_of(name).ok();
        if found.is_none() {
            errs.push(FieldError::new(
                path,
                format!("internal: column `{name}` not found"),
            ));
        }
        found
    };
    let partition: Vec<usize> = spec
        .partition
        .iter()
        .filter_map(|p| col(p, &mut errs))
        .collect();
    let order: Vec<(usize, bool, bool)> = spec
        .order
        .iter()
        .filter_map(|(c, d, n)| col(c, &mut errs).map(|i| (i, *d, *n)))
        .collect();
    let updating = !input.time_col.is_some_and(|t| partition.contains(&t));
    // Over a changelog the change kind is not a column of the result: its own says which
    // ranks change, and a rank may empty (a deletion).
    let log = crate::changelog::is_changelog(&input.schema);
    if log && !updating {
        errs.push(FieldError::new(
            path,
            "internal: a top-N over a changelog partitioned by event time",
        ));
    }
    if spec.n == 0 {
        errs.push(FieldError::new(path, "keeps no row (N must be at least 1)"));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let width = crate::changelog::data_width(&input.schema);
    let mut fields: Vec<Field> = input
        .schema
        .fields()
        .iter()
        .take(width)
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(&spec.rownum, DataType::Int64, false));
    if log {
        fields.push(crate::changelog::field_with_deletes());
    } else if updating {
        fields.push(crate::changelog::field());
    }
    Ok(Resolved {
        partition,
        order,
        out: Incoming {
            schema: Arc::new(Schema::new(fields)),
            time_col: input.time_col.filter(|_| !updating),
            time_lost_at: if updating {
                Some(path.to_string())
            } else {
                input.time_lost_at.clone()
            },
        },
    })
}

/// What the operator runs.
///
/// # Errors
/// Planning and instantiation disagree (an internal error).
pub(super) fn config(
    spec: &TopNSpec,
    input: &Incoming,
    path: &str,
    max_parallelism: u32,
) -> Result<TopNConfig, String> {
    let r = resolve(spec, input, path).map_err(|e| format!("{e:?}"))?;
    let time_col = input.time_col.filter(|t| r.partition.contains(t));
    Ok(TopNConfig {
        input: Arc::clone(&input.schema),
        partition: r.partition,
        order: r.order,
        n: spec.n,
        time_col,
        ttl: spec
            .ttl
            .zip(input.time_col)
            .filter(|_| time_col.is_none())
            .map(|(t, c)| (c, t)),
        output: r.out.schema,
        max_parallelism,
    })
}
