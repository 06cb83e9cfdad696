//! Changelogs: results that update. A `GROUP BY` without a window emits a group's row when
//! the group first appears and a new row each time it changes; whoever reads the result must
//! replace the old row with the new. Such a result carries one more column, [`CHANGE`], last,
//! saying of each row what it does, in Flink's notation:
//!
//! | `_change` | meaning |
//! |---|---|
//! | `+I` | a row inserted |
//! | `-U` | the row as it was before an update (retract it) |
//! | `+U` | the row after that update |
//! | `-D` | a row deleted |
//!
//! A `-U` comes right before its `+U`. Applying every change in order (add `+I`/`+U`, remove
//! `-U`/`-D`) gives the result as a table. The column is part of the schema, so planning
//! knows which results update: operators that cannot read a changelog refuse one by name,
//! and sinks say whether they take it (a file sink writes `_change` into each line; an
//! append-only sink is refused at validation).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};

/// The change-kind column's name, last in a changelog's schema.
pub const CHANGE: &str = "_change";

/// What a row of a changelog does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new row.
    Insert,
    /// The old row of an update, retracted.
    UpdateBefore,
    /// The new row of an update.
    UpdateAfter,
    /// A row removed.
    Delete,
}

impl Kind {
    /// Flink's short form, as written in [`CHANGE`].
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "+I",
            Self::UpdateBefore => "-U",
            Self::UpdateAfter => "+U",
            Self::Delete => "-D",
        }
    }

    /// The kind written as `s`, if it is one.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Insert,
            Self::UpdateBefore,
            Self::UpdateAfter,
            Self::Delete,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether the row is taken away (`-U`, `-D`) rather than added.
    #[must_use]
    pub fn retracts(self) -> bool {
        matches!(self, Self::UpdateBefore | Self::Delete)
    }
}

/// Whether records of `schema` are a changelog.
#[must_use]
pub fn is_changelog(schema: &Schema) -> bool {
    schema
        .fields()
        .last()
        .is_some_and(|f| f.name() == CHANGE && f.data_type() == &DataType::Utf8)
}

/// How many of `schema`'s columns are data: all but a changelog's change kind, which
/// operators that read a changelog do not keep or output as a column.
#[must_use]
pub fn data_width(schema: &Schema) -> usize {
    schema.fields().len() - usize::from(is_changelog(schema))
}

/// The change-kind field, appended to a changelog's schema, of a changelog that updates
/// and inserts but never deletes.
#[must_use]
pub fn field() -> Field {
    Field::new(CHANGE, DataType::Utf8, false)
}

/// Marks a change-kind field whose changelog may delete rows (`-D`).
const DELETES: &str = "weir.deletes";

/// [`field`] of a changelog that may also delete rows: sinks that cannot write a deletion
/// refuse it when planning.
#[must_use]
pub fn field_with_deletes() -> Field {
    field().with_metadata([(DELETES.to_string(), "true".to_string())].into())
}

/// Whether records of `schema` are a changelog that may delete rows.
#[must_use]
pub fn may_delete(schema: &Schema) -> bool {
    is_changelog(schema)
        && schema
            .fields()
            .last()
            .is_some_and(|f| f.metadata().contains_key(DELETES))
}

/// The change kind of every row of a changelog batch.
///
/// # Errors
/// The batch is not a changelog, or a row's kind is not one of the four.
pub fn kinds(batch: &RecordBatch) -> Result<Vec<Kind>> {
    let last = batch.num_columns().saturating_sub(1);
    let col = batch
        .column(last)
        .as_string_opt::<i32>()
        .filter(|_| is_changelog(batch.schema_ref()))
        .ok_or_else(|| Error::internal("a changelog batch without its change kind"))?;
    col.iter()
        .map(|k| {
            k.and_then(Kind::parse)
                .ok_or_else(|| Error::internal(format!("unknown change kind {k:?}")))
        })
        .collect()
}

/// The rows that leave a batch's final table, by key: each key's last change only, split
/// into deletions and upserts (row numbers, in order). A database statement may not touch a
/// row twice, and applying only a key's last change gives the same table. A `-U` is followed
/// by its `+U` (same key), so it writes nothing of its own.
pub fn last_per_key<K: std::hash::Hash + Eq>(
    kinds: &[Kind],
    key: impl Fn(usize) -> K,
) -> (Vec<usize>, Vec<usize>) {
    let mut last: std::collections::HashMap<K, (usize, bool)> = std::collections::HashMap::new();
    for (r, k) in kinds.iter().enumerate() {
        match k {
            Kind::Insert | Kind::UpdateAfter => {
                last.insert(key(r), (r, false));
            }
            Kind::Delete => {
                last.insert(key(r), (r, true));
            }
            Kind::UpdateBefore => {}
        }
    }
    let mut chosen: Vec<(usize, bool)> = last.into_values().collect();
    chosen.sort_unstable();
    let deletes = chosen.iter().filter(|c| c.1).map(|c| c.0).collect();
    let upserts = chosen.iter().filter(|c| !c.1).map(|c| c.0).collect();
    (deletes, upserts)
}

/// The change-kind column for `kinds`.
#[must_use]
pub fn column(kinds: &[Kind]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        kinds.iter().map(|k| k.as_str()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_only_a_trailing_change_column_makes_a_changelog() {
        for k in [
            Kind::Insert,
            Kind::UpdateBefore,
            Kind::UpdateAfter,
            Kind::Delete,
        ] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("+X"), None);
        let plain = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
        assert!(!is_changelog(&plain));
        let log = Schema::new(vec![Field::new("a", DataType::Int64, true), field()]);
        assert!(is_changelog(&log));
        let first = Schema::new(vec![field(), Field::new("a", DataType::Int64, true)]);
        assert!(!is_changelog(&first));
    }
}
