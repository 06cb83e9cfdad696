//! Group keys of one window: each distinct key gets a dense index, so accumulators can live in
//! plain vectors indexed by it (as DataFusion's `GroupValues` does) instead of one heap object
//! per key.
//!
//! A single 64-bit integer or timestamp key, the common case, is kept as the integer itself in
//! the hash table: one probe, no key bytes to chase. Any other key is Arrow's row format, kept
//! in one arena with its hash next to the index, so a probe compares bytes only on a full
//! hash match.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, PrimitiveArray, RecordBatch};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::row::Rows;
use hashbrown::HashTable;

use crate::error::{Error, Result};
use crate::keys::KeyCodec;

/// How a window operator keys its groups, decided once from the key columns' types.
#[derive(Debug, Clone)]
pub enum KeyMode {
    /// One `int64` or millisecond `timestamp` column, of this type.
    Int(DataType),
    /// Anything else: Arrow's row format.
    Rows,
}

impl KeyMode {
    /// The fast path when the key is one 64-bit integer column.
    #[must_use]
    pub fn for_types(types: &[DataType]) -> Self {
        match types {
            [t @ (DataType::Int64 | DataType::Timestamp(TimeUnit::Millisecond, _))] => {
                Self::Int(t.clone())
            }
            _ => Self::Rows,
        }
    }
}

/// The key of every row of one batch, ready for lookups.
pub enum BatchKeys {
    /// Integer keys and their validity.
    Int {
        /// Values (undefined where null); shares the column's buffer.
        values: ScalarBuffer<i64>,
        /// Validity, if any row is null.
        nulls: Option<NullBuffer>,
    },
    /// Row-format keys with their hashes.
    Rows {
        /// Encoded keys.
        rows: Rows,
        /// xxh3 of each row.
        hashes: Vec<u64>,
    },
}

impl BatchKeys {
    /// The keys of `batch`'s rows.
    ///
    /// # Errors
    /// Arrow's error on encoding.
    pub fn of(mode: &KeyMode, codec: &KeyCodec, batch: &RecordBatch) -> Result<Self> {
        match mode {
            KeyMode::Int(_) => {
                let col = codec
                    .columns()
                    .first()
                    .map(|&i| batch.column(i))
                    .ok_or_else(|| Error::internal("integer key mode without a key column"))?;
                Self::from_int_column(col)
            }
            KeyMode::Rows => Self::from_rows(codec.rows(batch)?),
        }
    }

    fn from_int_column(col: &ArrayRef) -> Result<Self> {
        let values = if let Some(a) = col.as_primitive_opt::<Int64Type>() {
            a.values().clone()
        } else if let Some(a) = col.as_primitive_opt::<TimestampMillisecondType>() {
            a.values().clone()
        } else {
            return Err(Error::internal("integer key column is not int64"));
        };
        Ok(Self::Int {
            values,
            nulls: col.logical_nulls().filter(|n| n.null_count() > 0),
        })
    }

    fn from_rows(rows: Rows) -> Result<Self> {
        let hashes = rows
            .iter()
            .map(|r| xxhash_rust::xxh3::xxh3_64(r.as_ref()))
            .collect();
        Ok(Self::Rows { rows, hashes })
    }

    /// Keys decoded from stored row bytes (a restore).
    ///
    /// # Errors
    /// A stored key that is not a key of the job's key columns ([`KeyCodec::decode_stored`]).
    pub fn from_stored<'a>(
        mode: &KeyMode,
        codec: &KeyCodec,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self> {
        let keys: Vec<&[u8]> = keys.into_iter().collect();
        let cols = codec.decode_stored(&keys).map_err(|message| Error::State {
            operator: "window".into(),
            message,
        })?;
        match mode {
            KeyMode::Int(_) => {
                let col = cols
                    .first()
                    .ok_or_else(|| Error::internal("stored keys decode to no column"))?;
                Self::from_int_column(col)
            }
            KeyMode::Rows => Self::from_rows(codec.rows_of(&cols, keys.len())?),
        }
    }
}

/// SplitMix64's finaliser: cheap, and every output bit depends on every input bit, which the
/// table needs (it takes buckets from the low bits and tags from the high ones).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The distinct keys of one window, each with a dense group index.
#[derive(Debug)]
pub enum GroupKeys {
    /// Integer keys.
    Int {
        /// (key, group).
        table: HashTable<(i64, u32)>,
        /// Group of the null key, if seen.
        null_group: Option<u32>,
        /// Key of each group; `None` is the null key.
        keys: Vec<Option<i64>>,
    },
    /// Row-format keys.
    Rows {
        /// (hash, group).
        table: HashTable<(u64, u32)>,
        /// Key bytes of all groups, back to back.
        data: Vec<u8>,
        /// Group `g`'s bytes are `data[offsets[g]..offsets[g + 1]]`.
        offsets: Vec<usize>,
    },
}

impl GroupKeys {
    /// No keys yet, in `mode`.
    #[must_use]
    pub fn new(mode: &KeyMode) -> Self {
        match mode {
            KeyMode::Int(_) => Self::Int {
                table: HashTable::new(),
                null_group: None,
                keys: Vec::new(),
            },
            KeyMode::Rows => Self::Rows {
                table: HashTable::new(),
                data: Vec::new(),
                offsets: vec![0],
            },
        }
    }

    /// Groups in all.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Int { keys, .. } => keys.len(),
            Self::Rows { offsets, .. } => offsets.len() - 1,
        }
    }

    /// Whether no key was seen.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The group of each of `rows` (indices into `keys`), adding groups for keys not seen yet;
    /// `out` is cleared first.
    pub fn assign(&mut self, keys: &BatchKeys, rows: &[u32], out: &mut Vec<u32>) {
        out.clear();
        out.reserve(rows.len());
        match (self, keys) {
            (
                Self::Int {
                    table,
                    null_group,
                    keys: group_keys,
                },
                BatchKeys::Int { values, nulls },
            ) => {
                for &r in rows {
                    let r = r as usize;
                    if nulls.as_ref().is_some_and(|n| n.is_null(r)) {
                        let g = *null_group.get_or_insert_with(|| {
                            group_keys.push(None);
                            (group_keys.len() - 1) as u32
                        });
                        out.push(g);
                        continue;
                    }
                    let k = values[r];
                    let h = mix(k as u64);
                    let g = match table.find(h, |e| e.0 == k) {
                        Some(e) => e.1,
                        None => {
                            let g = group_keys.len() as u32;
                            group_keys.push(Some(k));
                            table.insert_unique(h, (k, g), |e| mix(e.0 as u64));
                            g
                        }
                    };
                    out.push(g);
                }
            }
            (
                Self::Rows {
                    table,
                    data,
                    offsets,
                },
                BatchKeys::Rows {
                    rows: key_rows,
                    hashes,
                },
            ) => {
                for &r in rows {
                    let r = r as usize;
                    let h = hashes[r];
                    let key = key_rows.row(r);
                    let key = key.as_ref();
                    let found = table.find(h, |e| {
                        e.0 == h && &data[offsets[e.1 as usize]..offsets[e.1 as usize + 1]] == key
                    });
                    let g = match found {
                        Some(e) => e.1,
                        None => {
                            let g = (offsets.len() - 1) as u32;
                            data.extend_from_slice(key);
                            offsets.push(data.len());
                            table.insert_unique(h, (h, g), |e| e.0);
                            g
                        }
                    };
                    out.push(g);
                }
            }
            // The mode is fixed per operator, so both sides always agree.
            _ => debug_assert!(false, "group keys and batch keys disagree"),
        }
    }

    /// Every group's key in row format, indexed by group.
    ///
    /// # Errors
    /// Arrow's error on encoding.
    pub fn rows(&self, mode: &KeyMode, codec: &KeyCodec) -> Result<KeyRows> {
        match self {
            Self::Int { keys, .. } => {
                let ints: ArrayRef = Arc::new(Int64Array::from(keys.clone()));
                let col = match mode {
                    KeyMode::Int(t) if t != &DataType::Int64 => cast(&ints, t)?,
                    _ => ints,
                };
                Ok(KeyRows::Encoded(codec.rows_of(&[col], keys.len())?))
            }
            Self::Rows { data, offsets, .. } => Ok(KeyRows::Arena {
                data: data.clone(),
                offsets: offsets.clone(),
            }),
        }
    }

    /// The key columns of groups `order`, as the output schema has them.
    ///
    /// # Errors
    /// Arrow's error on decoding.
    pub fn columns(
        &self,
        mode: &KeyMode,
        codec: &KeyCodec,
        order: &[u32],
    ) -> Result<Vec<ArrayRef>> {
        match (self, mode) {
            (Self::Int { keys, .. }, KeyMode::Int(t)) => {
                let ints: PrimitiveArray<Int64Type> =
                    order.iter().map(|&g| keys[g as usize]).collect();
                let ints: ArrayRef = Arc::new(ints);
                Ok(vec![if t == &DataType::Int64 {
                    ints
                } else {
                    cast(&ints, t)?
                }])
            }
            (Self::Rows { data, offsets, .. }, _) => codec.decode(
                order
                    .iter()
                    .map(|&g| &data[offsets[g as usize]..offsets[g as usize + 1]]),
            ),
            _ => Err(Error::internal("group keys and key mode disagree")),
        }
    }
}

/// The row-format keys of a window's groups, owned (a checkpoint encodes them off the task),
/// without an allocation per key.
pub enum KeyRows {
    /// Integer keys, encoded for the occasion.
    Encoded(Rows),
    /// Row-format keys, copied from the group table.
    Arena {
        /// Key bytes back to back.
        data: Vec<u8>,
        /// Group `g`'s bytes are `data[offsets[g]..offsets[g + 1]]`.
        offsets: Vec<usize>,
    },
}

impl KeyRows {
    /// Keys in all.
    #[must_use]
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Encoded(rows) => rows.num_rows(),
            Self::Arena { offsets, .. } => offsets.len() - 1,
        }
    }

    /// Group `g`'s key bytes.
    #[must_use]
    pub fn get(&self, g: usize) -> &[u8] {
        match self {
            Self::Encoded(rows) => rows.row(g).data(),
            Self::Arena { data, offsets } => &data[offsets[g]..offsets[g + 1]],
        }
    }
}
