//! JSON record decoding shared by the file and Kafka sources.
//!
//! Records decode together through arrow-json; only when that fails (or yields the wrong
//! number of rows) are they decoded one by one, so a bad record is named and handled by the
//! job's policy while the good ones around it go through at full speed.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;

use crate::error::Result;

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
        for r in records {
            all.extend_from_slice(r.as_ref());
            all.push(b'\n');
        }
        if let Ok(b) = self.decode_text(&all, records.len())
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
