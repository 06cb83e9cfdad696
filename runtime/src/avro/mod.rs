//! Avro record values in the Confluent wire format: a zero byte, the writer schema's id in a
//! Schema Registry (four bytes, big-endian), then the Avro binary body.
//!
//! The Kafka source decodes such values into the job's schema ([`AvroDecoder`]): each writer
//! schema is fetched from the registry once, checked against the job's schema on its own
//! (one producer's incompatible schema makes only its records undecodable, handled by the
//! job's `onDecodeError` policy), and resolved by Avro's rules, so producers can evolve their
//! schema without the job noticing. The Kafka sink registers the schema of its records when
//! the job starts and writes each record framed with its id ([`AvroEncoder`]).
//!
//! The Avro work itself is arrow-avro's (decoding straight into Arrow columns, schema
//! resolution, encoding); this module holds what a streaming job adds: the registry client,
//! the mapping between a job's columns and Avro types, and per-record error handling.

mod decode;
mod encode;
mod schema;

pub use decode::{AvroDecoder, MAX_UNREADABLE_IDS};
pub use encode::AvroEncoder;
pub use schema::{check_timestamps, reader_schema, record_name, writer_schema};

/// `columns` as a batch of `schema` (same columns in the same order), each cast to its
/// field's type where it differs: what arrow-avro reads or takes is close to, not exactly,
/// the job's types (a timestamp's zone, narrower integers).
fn conform(
    columns: &[datafusion::arrow::array::ArrayRef],
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<datafusion::arrow::array::RecordBatch, String> {
    let cols = columns
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                datafusion::arrow::compute::cast(c, f.data_type())
                    .map_err(|e| format!("column `{}`: {e}", f.name()))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    datafusion::arrow::array::RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())
}
