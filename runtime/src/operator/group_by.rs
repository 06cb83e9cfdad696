//! An updating `GROUP BY`: no window ends a group, so its aggregates are emitted as they
//! change, as a changelog ([`crate::changelog`]). Each input batch updates the groups it
//! touches; then, per touched group in the order first touched, a new group is emitted as
//! `+I` and a changed one as `-U` (its row as last emitted) followed by `+U` (its row now).
//! A group whose result did not change (a `max` not beaten) emits nothing. Emitting per batch
//! rather than per row is Flink's mini-batch: fewer intermediate versions, the same final
//! table.
//!
//! Without aggregates (`SELECT DISTINCT`) a group's row never changes: it is emitted once,
//! when first seen, and the output is plain inserts, which any sink takes.
//!
//! State is each group's accumulators, kept for as long as the job runs (per key group, so
//! it moves on rescale).
//!
//! Replay after a restore is exact: the checkpoint holds every group as of its barrier, which
//! is what the output committed by that checkpoint last said of it, so the replay's first
//! `-U` of a group retracts exactly the row the committed output holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;

use super::window::Aggregate;
use super::window::accumulators::{Acc, Arguments, Outcome, check_restored, finish_outcomes};
use super::{Input, KeyedState, Operator, Output, decode_keyed, encode_keyed};
use crate::changelog::{self, Kind};
use crate::error::{Error, Result};
use crate::keys::KeyCodec;

const NAME: &str = "group by";

/// Everything the planner decided about an updating `GROUP BY`.
#[derive(Debug)]
pub struct GroupByConfig {
    /// Key codec over the input schema.
    pub keys: KeyCodec,
    /// Aggregates, in output order.
    pub aggregates: Vec<Aggregate>,
    /// Output schema: keys, aggregates, and the change kind when there are aggregates.
    pub output: SchemaRef,
    /// Key groups in the job.
    pub max_parallelism: u32,
}

/// The updating `GROUP BY` of one subtask.
pub struct GroupBy {
    keys: KeyCodec,
    aggregates: Vec<Aggregate>,
    args: Arguments,
    output: SchemaRef,
    changelog: bool,
    max_parallelism: u32,
    groups: HashMap<Vec<u8>, Vec<Acc>>,
}

impl std::fmt::Debug for GroupBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupBy")
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl GroupBy {
    /// A `GROUP BY` with no groups yet.
    ///
    /// # Errors
    /// Arrow's error when a `count_distinct` argument type cannot be row-encoded.
    pub fn new(c: GroupByConfig) -> Result<Self> {
        Ok(Self {
            args: Arguments::new(&c.aggregates)?,
            changelog: changelog::is_changelog(&c.output),
            keys: c.keys,
            aggregates: c.aggregates,
            output: c.output,
            max_parallelism: c.max_parallelism,
            groups: HashMap::new(),
        })
    }

    fn outcomes(accs: &[Acc]) -> Vec<Outcome> {
        accs.iter().map(Acc::outcome).collect()
    }
}

impl Operator for GroupBy {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let key_rows = self.keys.rows(&batch)?;
        let arrays = self.args.eval(&self.aggregates, &batch)?;
        let values = self.args.values(&self.aggregates, &arrays)?;
        // Groups touched, in the order first touched, with their result before this batch
        // (`None`: new).
        let mut touched: Vec<(&[u8], Option<Vec<Outcome>>)> = Vec::new();
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for row in 0..batch.num_rows() {
            let key = key_rows.row(row).data();
            if !self.groups.contains_key(key) {
                seen.insert(key);
                touched.push((key, None));
                let fresh = self.aggregates.iter().map(Acc::new).collect();
                self.groups.insert(key.to_vec(), fresh);
            }
            let accs = self
                .groups
                .get_mut(key)
                .ok_or_else(|| Error::internal("a group just added is gone"))?;
            if seen.insert(key) {
                touched.push((key, Some(Self::outcomes(accs))));
            }
            for (acc, v) in accs.iter_mut().zip(&values) {
                acc.update(v, row);
            }
        }
        let mut rows: Vec<(&[u8], Vec<Outcome>, Kind)> = Vec::new();
        for (key, before) in touched {
            let now = self
                .groups
                .get(key)
                .map(|accs| Self::outcomes(accs))
                .ok_or_else(|| Error::internal("a touched group is gone"))?;
            match before {
                None => rows.push((key, now, Kind::Insert)),
                Some(before) if before != now => {
                    rows.push((key, before, Kind::UpdateBefore));
                    rows.push((key, now, Kind::UpdateAfter));
                }
                Some(_) => {}
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = self.keys.decode(rows.iter().map(|r| r.0))?;
        for (i, a) in self.aggregates.iter().enumerate() {
            columns.push(finish_outcomes(a, rows.iter().map(|r| r.1[i])));
        }
        if self.changelog {
            let kinds: Vec<Kind> = rows.iter().map(|r| r.2).collect();
            columns.push(changelog::column(&kinds));
        }
        out.batches
            .push(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        encode_keyed(
            NAME,
            self.max_parallelism,
            self.groups.iter().map(|(k, accs)| (k.as_slice(), accs)),
        )
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        let restored = decode_keyed::<Vec<Acc>>(NAME, state)?;
        let wrong = |message| Error::State {
            operator: NAME.into(),
            message,
        };
        let keys: Vec<&[u8]> = restored.iter().map(|(k, _)| k.as_slice()).collect();
        if !keys.is_empty() {
            self.keys.decode_stored(&keys).map_err(wrong)?;
        }
        for (_, accs) in &restored {
            check_restored(&self.aggregates, accs).map_err(wrong)?;
        }
        self.groups.extend(restored);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
