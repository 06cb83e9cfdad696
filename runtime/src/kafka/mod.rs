//! Kafka: the source, the transactional sink, and the one protocol step librdkafka cannot do
//! (committing a transaction another process pre-committed).

pub mod config;
pub mod discovery;
pub mod log;
pub mod sasl;
pub mod security;
pub mod sink;
pub mod source;
pub mod txn_outcome;
pub mod wire;
