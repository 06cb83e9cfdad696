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

pub use decode::AvroDecoder;
pub use encode::AvroEncoder;
pub use schema::{reader_schema, record_name, writer_schema};
