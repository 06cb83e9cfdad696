//! A database sink's target table, as the server's catalog describes it, and the checks that
//! the records fit it, the same for every database (PostgreSQL, MySQL): every record column
//! exists with a type that takes its values, every other column can be left out, and the key
//! that upserts and deletes go by is a unique index.

use datafusion::arrow::datatypes::{DataType, Schema};

/// A column of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Its type as the server writes it (PostgreSQL's `format_type`, e.g. `timestamp without
    /// time zone`; MySQL's `COLUMN_TYPE`, e.g. `datetime(3)`).
    pub type_name: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// A default, identity or generated value fills it when an insert leaves it out.
    pub has_default: bool,
}

/// The table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Primary key columns, in index order (empty without one).
    pub primary_key: Vec<String>,
    /// The columns of every unique index (the primary key among them).
    pub unique: Vec<Vec<String>>,
}

/// What a sink's records write into the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// The table's columns the records write, in the records' order.
    pub targets: Vec<Column>,
    /// The columns rows are written by (upserts and deletes); empty when appended.
    pub key: Vec<String>,
}

impl Table {
    /// How records of `input` fit the table for a sink in `mode`: the columns they write
    /// ([`Table::targets`]), and the key they are written by ([`Table::key`] of `primary_key`)
    /// when the mode is upsert or the records are a changelog.
    ///
    /// # Errors
    /// A column or the key does not fit, named, with why a key is needed.
    pub fn fit(
        &self,
        input: &Schema,
        mode: weir_crds::DatabaseMode,
        primary_key: &[String],
        takes: impl Fn(&DataType, &str) -> bool,
    ) -> Result<Fit, String> {
        let targets = self.targets(input, crate::changelog::data_width(input), takes)?;
        let upsert = mode == weir_crds::DatabaseMode::Upsert;
        let key = if upsert || crate::changelog::is_changelog(input) {
            self.key(primary_key).map_err(|m| {
                let why = if upsert {
                    "mode upsert writes rows by key"
                } else {
                    "the records are a changelog, written by key"
                };
                format!("{m} ({why})")
            })?
        } else {
            Vec::new()
        };
        Ok(Fit { targets, key })
    }

    /// The columns the records write, each with the table's type, in the records' order;
    /// `takes` says whether a column of the database's type takes a record type.
    ///
    /// # Errors
    /// A record column the table lacks or whose type cannot take the values, or a table
    /// column the insert would leave empty although it needs a value; each named.
    pub fn targets(
        &self,
        input: &Schema,
        data_width: usize,
        takes: impl Fn(&DataType, &str) -> bool,
    ) -> Result<Vec<Column>, String> {
        let listing = || {
            self.columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.type_name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = Vec::with_capacity(data_width);
        for f in input.fields().iter().take(data_width) {
            let Some(col) = self.columns.iter().find(|c| &c.name == f.name()) else {
                return Err(format!(
                    "column `{}` of the records is not in the table (the table has: {})",
                    f.name(),
                    listing()
                ));
            };
            if !takes(f.data_type(), &col.type_name) {
                return Err(format!(
                    "column `{}`: the records carry {}, the table's column is {}",
                    f.name(),
                    f.data_type(),
                    col.type_name
                ));
            }
            out.push(col.clone());
        }
        for c in &self.columns {
            let written = input
                .fields()
                .iter()
                .take(data_width)
                .any(|f| f.name() == &c.name);
            if !written && c.not_null && !c.has_default {
                return Err(format!(
                    "column `{}` ({}) is NOT NULL without a default, and the records have no such column",
                    c.name, c.type_name
                ));
            }
        }
        Ok(out)
    }

    /// The key upserts and deletes go by: `wanted` when given (it must be a unique index's
    /// columns), else the primary key.
    ///
    /// # Errors
    /// No such unique index, or no primary key.
    pub fn key(&self, wanted: &[String]) -> Result<Vec<String>, String> {
        if wanted.is_empty() {
            return if self.primary_key.is_empty() {
                Err("the table has no primary key: give it one, or name a unique index's columns in primaryKey".into())
            } else {
                Ok(self.primary_key.clone())
            };
        }
        let mut w = wanted.to_vec();
        w.sort();
        let found = self.unique.iter().any(|u| {
            let mut u = u.clone();
            u.sort();
            u == w
        });
        if found {
            Ok(wanted.to_vec())
        } else {
            Err(format!(
                "primaryKey [{}] is not the columns of a unique index of the table (its unique keys: {})",
                wanted.join(", "),
                if self.unique.is_empty() {
                    "none".to_string()
                } else {
                    self.unique
                        .iter()
                        .map(|u| format!("[{}]", u.join(", ")))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        }
    }
}

/// Where each of the `key` columns sits among `targets` (the columns the records write).
///
/// # Errors
/// A key column the records do not carry, named.
pub fn key_positions(targets: &[Column], key: &[String]) -> Result<Vec<usize>, String> {
    key.iter()
        .map(|k| {
            targets.iter().position(|c| &c.name == k).ok_or_else(|| {
                format!(
                    "key column `{k}` is not among the records' columns, so rows cannot be matched by it"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn a_key_must_be_a_unique_index() {
        let t = Table {
            columns: vec![],
            primary_key: vec!["a".into(), "b".into()],
            unique: vec![vec!["a".into(), "b".into()], vec!["c".into()]],
        };
        assert_eq!(t.key(&[]).unwrap_or_default(), vec!["a", "b"]);
        assert!(t.key(&["b".into(), "a".into()]).is_ok());
        assert!(t.key(&["c".into()]).is_ok());
        let e = t.key(&["a".into()]).unwrap_err();
        assert!(e.contains("[a, b], [c]"), "{e}");
        let none = Table {
            primary_key: vec![],
            unique: vec![],
            ..t
        };
        assert!(none.key(&[]).unwrap_err().contains("no primary key"));
    }
}
