//! A sink's records as framed Avro values.

use std::collections::HashMap;

use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::AvroSoeFormat;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};

/// Encodes batches of one schema with a registered writer schema.
#[derive(Debug, Clone)]
pub struct AvroEncoder {
    id: u32,
    /// The Arrow types the writer schema declares, with the schema attached as metadata.
    schema: SchemaRef,
}

impl AvroEncoder {
    /// Encoder writing `schema` (the writer schema's JSON) under registry id `id`, for
    /// records cast to `columns` first (from [`super::writer_schema`]).
    #[must_use]
    pub fn new(id: u32, schema: &str, columns: &Schema) -> Self {
        let mut md = HashMap::new();
        md.insert(SCHEMA_METADATA_KEY.to_string(), schema.to_string());
        Self {
            id,
            schema: std::sync::Arc::new(Schema::new_with_metadata(columns.fields().clone(), md)),
        }
    }

    /// The registry id every value carries.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// One framed value per row of `batch`.
    ///
    /// # Errors
    /// A column that does not cast to its declared type, or the encoder's refusal.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        let batch = super::conform(batch.columns(), &self.schema)?;
        let mut encoder = WriterBuilder::new(self.schema.as_ref().clone())
            .with_fingerprint_strategy(FingerprintStrategy::Id(self.id))
            .build_encoder::<AvroSoeFormat>()
            .map_err(|e| e.to_string())?;
        encoder.encode(&batch).map_err(|e| e.to_string())?;
        Ok(encoder.flush().iter().map(|b| b.to_vec()).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

    use weir_testkit::varint::read_long as long;

    use super::*;

    #[test]
    fn every_row_is_framed_with_the_registered_id_and_encoded_as_the_schema_says() {
        let columns = Schema::new(vec![
            Field::new("store", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("avg", DataType::Float64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]);
        let (schema, cast_to) = crate::avro::writer_schema(&columns, "sales").unwrap();
        assert!(
            schema.contains(r#""logicalType":"timestamp-millis""#),
            "{schema}"
        );
        let enc = AvroEncoder::new(258, &schema, &cast_to);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("s1"), None])),
            Arc::new(Int64Array::from(vec![-3, 300])),
            Arc::new(Float64Array::from(vec![1.5, -0.25])),
            Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_123, 0])),
        ];
        let batch = RecordBatch::try_new(Arc::new(columns), cols).unwrap();
        let values = enc.encode(&batch).unwrap();
        assert_eq!(values.len(), 2);
        let mut decoded = Vec::new();
        for v in &values {
            assert_eq!(
                &v[..5],
                &[0, 0, 0, 1, 2],
                "magic byte and id 258, big-endian"
            );
            let mut at = 5;
            let store = match long(v, &mut at) {
                0 => None,
                1 => {
                    let len = long(v, &mut at) as usize;
                    at += len;
                    Some(String::from_utf8(v[at - len..at].to_vec()).unwrap())
                }
                b => panic!("union branch {b}"),
            };
            let n = long(v, &mut at);
            let avg = f64::from_le_bytes(v[at..at + 8].try_into().unwrap());
            at += 8;
            let ts = long(v, &mut at);
            assert_eq!(at, v.len(), "nothing after the record");
            decoded.push((store, n, avg, ts));
        }
        assert_eq!(
            decoded,
            vec![
                (Some("s1".to_string()), -3, 1.5, 1_700_000_000_123),
                (None, 300, -0.25, 0)
            ]
        );
    }
}
