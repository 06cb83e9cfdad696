//! `dedup`: keep the first record of each key; drop later records of that key until `ttl`
//! of event time has passed since the first. A key is forgotten once the watermark passes
//! `first + ttl`, which bounds state by the key rate times the TTL.

use std::collections::{BTreeSet, HashMap};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMillisecondType;

use super::{Input, KeyedState, Operator, OperatorCounters, Output, decode_keyed, encode_keyed};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::KeyCodec;

/// The dedup operator of one subtask.
#[derive(Debug)]
pub struct Dedup {
    keys: KeyCodec,
    time_col: usize,
    ttl: Millis,
    max_parallelism: u32,
    /// key -> event time of the record that was kept.
    seen: HashMap<Vec<u8>, Millis>,
    /// (expiry, key), to forget keys in watermark order.
    expiries: BTreeSet<(Millis, Vec<u8>)>,
    counters: OperatorCounters,
}

impl Dedup {
    /// A dedup operator with no state.
    #[must_use]
    pub fn new(keys: KeyCodec, time_col: usize, ttl: Millis, max_parallelism: u32) -> Self {
        Self {
            keys,
            time_col,
            ttl,
            max_parallelism,
            seen: HashMap::new(),
            expiries: BTreeSet::new(),
            counters: OperatorCounters::default(),
        }
    }

    fn remember(&mut self, key: Vec<u8>, ts: Millis) {
        if let Some(old) = self.seen.insert(key.clone(), ts) {
            self.expiries
                .remove(&(old.saturating_add(self.ttl), key.clone()));
        }
        self.expiries.insert((ts.saturating_add(self.ttl), key));
    }
}

impl Operator for Dedup {
    fn process(&mut self, _input: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = self.keys.rows(&batch)?;
        let ts = batch
            .column(self.time_col)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| Error::internal("dedup time column is not a millisecond timestamp"))?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = rows.row(row);
            let t = if ts.is_null(row) {
                Millis::MIN
            } else {
                ts.value(row)
            };
            let dup = self
                .seen
                .get(key.as_ref())
                .is_some_and(|first| t < first.saturating_add(self.ttl));
            if dup {
                self.counters.duplicates += 1;
            } else {
                self.remember(key.as_ref().to_vec(), t);
            }
            keep.push(!dup);
        }
        let kept = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        if kept.num_rows() > 0 {
            out.batches.push(kept);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, _out: &mut Output) -> Result<()> {
        while let Some((expiry, _)) = self.expiries.first() {
            if *expiry > watermark {
                break;
            }
            if let Some((_, key)) = self.expiries.pop_first() {
                self.seen.remove(&key);
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedState> {
        encode_keyed(
            "dedup",
            self.max_parallelism,
            self.seen.iter().map(|(k, t)| (k.as_slice(), *t)),
        )
    }

    fn restore(&mut self, state: KeyedState) -> Result<()> {
        let restored = decode_keyed::<Millis>("dedup", state)?;
        let keys: Vec<&[u8]> = restored.iter().map(|(k, _)| k.as_slice()).collect();
        if !keys.is_empty() {
            // Dedup only compares key bytes, so a changed key type would not fail: every
            // stored key would silently miss and its duplicates pass once.
            self.keys
                .decode_stored(&keys)
                .map_err(|message| Error::State {
                    operator: "dedup".into(),
                    message,
                })?;
        }
        for (k, t) in restored {
            self.remember(k, t);
        }
        Ok(())
    }

    fn counters(&self) -> OperatorCounters {
        self.counters
    }
}
