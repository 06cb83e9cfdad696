//! JSON record decoding shared by the file and Kafka sources.
//!
//! Records decode together through arrow-json; only when that fails (or yields the wrong
//! number of rows) are they decoded one by one, so a bad record is named and handled by the
//! job's policy while the good ones around it go through at full speed.
//!
//! A record nested deeper than [`MAX_NESTING`] is bad before arrow-json sees it: arrow-json
//! parses any depth, but describing a value of the wrong type recurses once per level, so one
//! record of `[[[...` a few hundred kilobytes long, in a field of another type, would
//! overflow the task's stack and abort the process, and the restart would read it again.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;

use crate::error::Result;

/// Arrays and objects within one another a record may have (serde_json's default limit is of
/// the same size). Counted over the whole record, fields the job does not read included.
pub const MAX_NESTING: usize = 128;

/// Whether `record` nests arrays and objects deeper than [`MAX_NESTING`]. Most records hold
/// fewer brackets than that in all, which a loop the compiler vectorises counts; only the
/// others are read bracket by bracket, strings skipped.
fn too_deep(record: &[u8]) -> bool {
    let brackets = record.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if brackets <= MAX_NESTING {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in record {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Decodes JSON objects into record batches of one schema.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
}

/// Decoded records and the ones that did not decode.
#[derive(Debug)]
pub struct Decoded {
    /// Good records, in input order.
    pub data: RecordBatch,
    /// Index into the input and the decoder's message, for each bad record.
    pub bad: Vec<(usize, String)>,
}

impl JsonDecoder {
    /// Decoder for `schema`.
    #[must_use]
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }

    /// Target schema.
    #[must_use]
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn decode_text(&self, text: &[u8], rows: usize) -> std::result::Result<RecordBatch, String> {
        let mut d = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(rows.max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        let used = d.decode(text).map_err(|e| e.to_string())?;
        if used < text.len() {
            return Err("trailing data after the JSON value".to_string());
        }
        Ok(d.flush()
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }

    /// Decode `records`, each one JSON object.
    ///
    /// # Errors
    /// Only Arrow errors joining the good records; bad records are returned, not raised.
    pub fn decode<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<Decoded> {
        let mut all = Vec::with_capacity(records.iter().map(|r| r.as_ref().len() + 1).sum());
        let mut deep = false;
        for r in records {
            deep |= too_deep(r.as_ref());
            all.extend_from_slice(r.as_ref());
            all.push(b'\n');
        }
        if !deep
            && let Ok(b) = self.decode_text(&all, records.len())
            && b.num_rows() == records.len()
        {
            return Ok(Decoded {
                data: b,
                bad: Vec::new(),
            });
        }
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if deep && too_deep(r.as_ref()) {
                bad.push((
                    i,
                    format!(
                        "arrays and objects nested more than {MAX_NESTING} levels deep within one another"
                    ),
                ));
                continue;
            }
            match self.decode_text(r.as_ref(), 1) {
                Ok(b) if b.num_rows() == 1 => good.push(b),
                Ok(b) => bad.push((
                    i,
                    format!("expected one JSON object, found {}", b.num_rows()),
                )),
                Err(e) => bad.push((i, e)),
            }
        }
        Ok(Decoded {
            data: concat_batches(&self.schema, &good)?,
            bad,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::{JsonDecoder, MAX_NESTING};

    fn decoder() -> JsonDecoder {
        JsonDecoder::new(Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ])))
    }

    fn nested(levels: usize) -> String {
        format!(r#"{{"n": {}1{}}}"#, "[".repeat(levels), "]".repeat(levels))
    }

    /// On a tokio worker's stack, a record nested 100 000 levels deep in an integer field
    /// aborted the process inside arrow-json (describing the wrong-typed value recursed per
    /// level); it is now a bad record, and the records around it decode.
    #[test]
    fn a_record_nested_deeper_than_the_bound_is_bad_and_its_neighbours_decode() {
        let records = vec![
            r#"{"n": 1, "s": "a"}"#.to_string(),
            nested(100_000),
            r#"{"n": 2, "s": "[[[[ not brackets: a string"}"#.to_string(),
        ];
        let decoded =
            weir_testkit::on_a_task_stack(move || decoder().decode(&records).expect("decodes"));
        assert_eq!(decoded.bad.len(), 1, "{:?}", decoded.bad);
        assert_eq!(decoded.bad[0].0, 1);
        assert!(
            decoded.bad[0].1.contains("nested more than 128 levels"),
            "{:?}",
            decoded.bad
        );
        let n = decoded.data.column(0).as_primitive::<Int64Type>();
        assert_eq!(n, &Int64Array::from(vec![1, 2]));
    }

    /// Brackets in strings, and many arrays side by side, are not depth: such records take
    /// the exact count and decode (here as records of the wrong type, named as such, not as
    /// too deep).
    #[test]
    fn brackets_in_strings_and_side_by_side_are_not_nesting() {
        let brackets = "[".repeat(MAX_NESTING * 2);
        let side_by_side = vec!["[]"; MAX_NESTING * 2].join(",");
        let records = vec![
            format!(r#"{{"n": 3, "s": "{brackets}"}}"#),
            format!(r#"{{"n": [{side_by_side}]}}"#),
            nested(MAX_NESTING - 1),
            nested(MAX_NESTING),
        ];
        let decoded = decoder().decode(&records).expect("decodes");
        let named: Vec<(usize, bool)> = decoded
            .bad
            .iter()
            .map(|(i, m)| (*i, m.contains("nested more than")))
            .collect();
        // The object adds a level: `nested(MAX_NESTING)` is one over.
        assert_eq!(
            named,
            vec![(1, false), (2, false), (3, true)],
            "{:?}",
            decoded.bad
        );
        assert_eq!(decoded.data.num_rows(), 1);
    }
}
