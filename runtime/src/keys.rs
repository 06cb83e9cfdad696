//! Keys and key groups. A key (the `keyBy` columns of a row) hashes to one of
//! `max_parallelism` key groups; each subtask owns a contiguous range of key groups. State is
//! stored per key group, so a savepoint taken at parallelism 2 restores at 3: each new subtask
//! takes the key groups in its new range, whatever subtask wrote them.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use crate::error::Result;

/// Turns key columns into comparable, hashable byte rows (Arrow's row format), and back.
#[derive(Debug)]
pub struct KeyCodec {
    columns: Vec<usize>,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl KeyCodec {
    /// Codec for `key_by` column indices of `schema`. No columns is one key for every row
    /// (a window over everything): Arrow's rows need a column to count rows by, so that key
    /// is encoded as a column of nulls, which takes no bytes.
    ///
    /// # Errors
    /// Arrow's error when a key column's type cannot be row-encoded.
    pub fn new(schema: &SchemaRef, columns: Vec<usize>) -> Result<Self> {
        let types: Vec<DataType> = columns
            .iter()
            .map(|&i| schema.field(i).data_type().clone())
            .collect();
        let fields = if types.is_empty() {
            vec![SortField::new(DataType::Null)]
        } else {
            types.iter().map(|t| SortField::new(t.clone())).collect()
        };
        Ok(Self {
            columns,
            types,
            converter: RowConverter::new(fields)?,
        })
    }

    /// Key rows of every row of `batch`.
    ///
    /// # Errors
    /// Arrow's error on encoding.
    pub fn rows(&self, batch: &RecordBatch) -> Result<Rows> {
        let cols: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        self.rows_of(&cols, batch.num_rows())
    }

    /// Key rows of `n` rows' key columns, already taken out of a batch.
    ///
    /// # Errors
    /// Arrow's error on encoding.
    pub fn rows_of(&self, key_columns: &[ArrayRef], n: usize) -> Result<Rows> {
        if self.columns.is_empty() {
            return Ok(self
                .converter
                .convert_columns(&[new_null_array(&DataType::Null, n)])?);
        }
        Ok(self.converter.convert_columns(key_columns)?)
    }

    /// Decode stored key bytes back into key columns (one row per key).
    ///
    /// # Errors
    /// Arrow's error on malformed rows.
    pub fn decode<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let rows: Vec<_> = keys.into_iter().map(|k| parser.parse(k)).collect();
        let columns = self.converter.convert_rows(rows)?;
        // No key columns: the null column only counted rows.
        Ok(if self.columns.is_empty() {
            Vec::new()
        } else {
            columns
        })
    }

    /// Decode keys read back from a checkpoint, which a job with other key columns may have
    /// written. Arrow's row decoding trusts its input: a key of another type either panics
    /// (too short) or decodes into a different key (an integer key read as a string is the
    /// empty string, and every key becomes one). So a key must have the length the types
    /// fix, when they do, and encode back to exactly the stored bytes.
    ///
    /// # Errors
    /// The first key that is not a key of these types, with the types.
    pub fn decode_stored(&self, keys: &[&[u8]]) -> std::result::Result<Vec<ArrayRef>, String> {
        let wrong = |key: &[u8]| {
            format!(
                "a stored key ({} bytes, {}) is not a key of type ({}): the key columns were \
                 changed since the checkpoint was taken",
                key.len(),
                hex_prefix(key),
                self.type_names()
            )
        };
        if let Some(len) = self.fixed_len()
            && let Some(k) = keys.iter().find(|k| k.len() != len)
        {
            return Err(wrong(k));
        }
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.decode(keys.iter().copied())
        }));
        let Ok(Ok(columns)) = decoded else {
            return Err(wrong(keys.first().copied().unwrap_or_default()));
        };
        let rows = self
            .rows_of(&columns, keys.len())
            .map_err(|e| e.to_string())?;
        if let Some(i) = (0..keys.len()).find(|&i| rows.row(i).as_ref() != keys[i]) {
            return Err(wrong(keys[i]));
        }
        Ok(columns)
    }

    /// A key's length in row format when every key column has a fixed width (a null byte
    /// plus the value), which settles most mismatches before anything is decoded.
    fn fixed_len(&self) -> Option<usize> {
        if self.types.is_empty() {
            // The null column standing for no key: the round trip checks it.
            return None;
        }
        self.types
            .iter()
            .map(|t| {
                let fixed = t.is_integer()
                    || t.is_floating()
                    || matches!(
                        t,
                        DataType::Timestamp(..)
                            | DataType::Date32
                            | DataType::Date64
                            | DataType::Duration(_)
                    );
                t.primitive_width().filter(|_| fixed).map(|w| w + 1)
            })
            .sum()
    }

    fn type_names(&self) -> String {
        self.types
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Key column types, in key order.
    #[must_use]
    pub fn types(&self) -> &[DataType] {
        &self.types
    }

    /// Key column indices.
    #[must_use]
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }
}

/// The first bytes of `key` in hex, for messages.
fn hex_prefix(key: &[u8]) -> String {
    let shown: String = key.iter().take(12).map(|b| format!("{b:02x}")).collect();
    if key.len() > 12 {
        format!("{shown}...")
    } else {
        shown
    }
}

/// The key group of encoded key bytes. xxh3 is stable across releases and platforms, which
/// matters: key groups are written into savepoints.
#[must_use]
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(max_parallelism)) as u32
}

/// Split `batch` among `targets` subtasks by the key group of each row's key, keeping row
/// order within each part: (subtask, its rows), for subtasks that get any. One subtask owns
/// every key group, so then the batch goes whole, without encoding or hashing a key.
///
/// # Errors
/// Arrow's error on encoding keys or taking rows.
pub fn partition(
    batch: &RecordBatch,
    keys: &KeyCodec,
    targets: u32,
    max_parallelism: u32,
) -> Result<Vec<(usize, RecordBatch)>> {
    if targets == 1 {
        return Ok(vec![(0, batch.clone())]);
    }
    let rows = keys.rows(batch)?;
    let mut idx: Vec<Vec<u32>> = vec![Vec::new(); targets as usize];
    for (r, row) in rows.iter().enumerate() {
        let kg = key_group(row.as_ref(), max_parallelism);
        idx[subtask_of(kg, targets, max_parallelism) as usize].push(r as u32);
    }
    let mut parts = Vec::new();
    for (t, rows) in idx.into_iter().enumerate() {
        if !rows.is_empty() {
            parts.push((t, take_record_batch(batch, &UInt32Array::from(rows))?));
        }
    }
    Ok(parts)
}

/// The subtask that owns `key_group`.
#[must_use]
pub fn subtask_of(key_group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key groups `subtask` owns: the inverse of [`subtask_of`].
#[must_use]
pub fn key_group_range(subtask: u32, parallelism: u32, max_parallelism: u32) -> Range<u32> {
    let (p, m) = (u64::from(parallelism), u64::from(max_parallelism));
    let start = (u64::from(subtask) * m).div_ceil(p);
    let end = (u64::from(subtask + 1) * m).div_ceil(p);
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn key_group_ranges_partition_all_groups_and_match_subtask_of() {
        for max in [1u32, 7, 128, 1000] {
            for par in 1..=max.min(17) {
                let mut next = 0;
                for t in 0..par {
                    let r = key_group_range(t, par, max);
                    assert_eq!(r.start, next, "max {max} par {par} subtask {t}");
                    for kg in r.clone() {
                        assert_eq!(subtask_of(kg, par, max), t, "max {max} par {par} kg {kg}");
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn partition_sends_each_row_to_the_subtask_owning_its_key_group() {
        use datafusion::arrow::array::{AsArray, Int64Array};
        use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..500))],
        )
        .expect("batch");
        let codec = KeyCodec::new(&schema, vec![0]).expect("codec");
        let whole = partition(&batch, &codec, 1, 128).expect("partition");
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].0, &whole[0].1), (0, &batch));
        let parts = partition(&batch, &codec, 3, 128).expect("partition");
        let mut seen = Vec::new();
        for (t, part) in &parts {
            let rows = codec.rows(part).expect("rows");
            for (i, row) in rows.iter().enumerate() {
                let kg = key_group(row.as_ref(), 128);
                assert_eq!(subtask_of(kg, 3, 128) as usize, *t);
                seen.push(part.column(0).as_primitive::<Int64Type>().value(i));
            }
        }
        assert_eq!(parts.len(), 3);
        seen.sort_unstable();
        assert_eq!(seen, (0..500).collect::<Vec<i64>>());
    }

    /// Stored keys of another type are refused, not decoded into other keys. An `Int8` key is
    /// two bytes, as a `Boolean` key is, so neither the length nor Arrow's decoding notices:
    /// only encoding the decoded key again shows that `5` is not `true`. The string/integer
    /// pairs are refused by length or by a decode that does not use every byte.
    /// Mutation: drop the round trip and the `Int8`-as-`Boolean` case decodes.
    #[test]
    fn no_key_columns_is_one_key_for_every_row() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let codec = KeyCodec::new(&schema, Vec::new()).unwrap();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))],
        )
        .unwrap();
        let rows = codec.rows(&batch).unwrap();
        assert_eq!(rows.num_rows(), 5);
        assert!(rows.iter().all(|r| r.as_ref() == rows.row(0).as_ref()));
        // A shuffle sends every row, all to one subtask.
        let parts = partition(&batch, &codec, 3, 128).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1.num_rows(), 5);
        // Stored and restored: still no columns, and the same key.
        let stored: Vec<Vec<u8>> = rows.iter().map(|r| r.as_ref().to_vec()).collect();
        let stored: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
        assert!(codec.decode_stored(&stored).unwrap().is_empty());
    }

    #[test]
    fn stored_keys_of_another_type_are_refused() {
        use datafusion::arrow::array::{BooleanArray, Int8Array, StringArray};
        use datafusion::arrow::datatypes::{Field, Schema};
        let codec = |t: DataType| {
            KeyCodec::new(
                &Arc::new(Schema::new(vec![Field::new("k", t, true)])),
                vec![0],
            )
            .unwrap()
        };
        let stored = |c: &KeyCodec, col: ArrayRef| -> Vec<Vec<u8>> {
            let n = col.len();
            let rows = c.rows_of(&[col], n).unwrap();
            rows.iter().map(|r| r.as_ref().to_vec()).collect()
        };
        let ints = stored(
            &codec(DataType::Int8),
            Arc::new(Int8Array::from(vec![5, -3, 100])),
        );
        let strings = stored(
            &codec(DataType::Utf8),
            Arc::new(StringArray::from(vec!["eu", "us"])),
        );
        let bools = stored(
            &codec(DataType::Boolean),
            Arc::new(BooleanArray::from(vec![true, false])),
        );
        let refs = |v: &[Vec<u8>]| -> Vec<Vec<u8>> { v.to_vec() };
        for (keys, t) in [
            (refs(&ints), DataType::Boolean),
            (refs(&ints), DataType::Utf8),
            (refs(&ints), DataType::Int64),
            (refs(&strings), DataType::Int64),
            (refs(&bools), DataType::Utf8),
        ] {
            let slices: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let name = t.to_string();
            let e = codec(t).decode_stored(&slices).unwrap_err();
            assert!(e.contains(&format!("type ({name})")), "{e}");
        }
        for (keys, t) in [
            (ints, DataType::Int8),
            (strings, DataType::Utf8),
            (bools, DataType::Boolean),
        ] {
            let slices: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let cols = codec(t).decode_stored(&slices).unwrap();
            assert_eq!(cols[0].len(), slices.len());
        }
    }
}
