//! A Confluent-compatible Schema Registry and the wire format its serializers write: a zero
//! byte, the writer schema's id (four bytes, big-endian), then the body (for Protobuf, the
//! message's index path comes first). The formats that use it are rooms of their own
//! (`avro`, `protobuf`); what they share lives here: the REST client and the frame.

mod client;

pub use client::{Registered, Registry, RegistryError, SchemaType};

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
