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
mod registry;
mod schema;

pub use decode::AvroDecoder;
pub use encode::AvroEncoder;
pub use registry::{Registry, RegistryError};
pub use schema::{reader_schema, record_name, writer_schema};

/// The first byte of a value in the Confluent wire format.
pub const MAGIC: u8 = 0;

/// The schema id of a framed value, or why the value is not framed.
///
/// # Errors
/// A value shorter than the frame or starting with another byte.
pub fn frame_id(value: &[u8]) -> Result<u32, String> {
    match value {
        [MAGIC, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        [] => Err("the value is empty (a tombstone?), not an Avro record".to_string()),
        [first, ..] if *first != MAGIC => Err(format!(
            "the value starts with byte {first:#04x}, not the Confluent wire format's 0x00 \
             (written without a schema registry?)"
        )),
        _ => Err(format!(
            "the value has {} bytes, fewer than the 5 of the wire format's header",
            value.len()
        )),
    }
}
