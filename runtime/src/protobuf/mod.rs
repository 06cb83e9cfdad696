//! Protobuf record values in the Confluent wire format: a zero byte, the writer schema's id
//! in a Schema Registry, the message's index path in its `.proto` file (`[0]`, the first
//! message, written as a single zero byte), then the message.
//!
//! The registry holds `.proto` text; it is compiled here at run time (protox), and messages
//! are read and written by reflection (prost-reflect), so no code is generated for a user's
//! schema. A source maps message fields to the job's columns by name ([`ProtobufDecoder`]);
//! a sink derives a `proto3` message from its columns and registers it ([`ProtobufEncoder`]).

mod compile;
mod decode;
mod encode;

pub use compile::{message_at, proto_file, sink_proto};
pub use decode::ProtobufDecoder;
pub use encode::ProtobufEncoder;

/// Reads a zigzag varint (the wire format's message indexes use Kafka's zigzag varints).
fn zigzag(b: &[u8], at: &mut usize) -> Option<i64> {
    let (mut z, mut shift) = (0u64, 0u32);
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        z |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The message index path after the five-byte header, and where the message starts.
///
/// # Errors
/// A path that runs past the value or holds a negative index.
pub fn message_indexes(value: &[u8]) -> Result<(Vec<usize>, usize), String> {
    let mut at = 5;
    let bad = || "the message index path after the schema id is malformed".to_string();
    let count = zigzag(value, &mut at).ok_or_else(bad)?;
    if count == 0 {
        return Ok((vec![0], at));
    }
    if !(1..=100).contains(&count) {
        return Err(bad());
    }
    let mut path = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let i = zigzag(value, &mut at).ok_or_else(bad)?;
        path.push(usize::try_from(i).map_err(|_| bad())?);
    }
    Ok((path, at))
}

/// The header a sink writes before each message of schema `id`: magic byte, id, and the
/// path `[0]` (the generated file has one message).
#[must_use]
pub fn header(id: u32) -> [u8; 6] {
    let [a, b, c, d] = id.to_be_bytes();
    [crate::schema_registry::MAGIC, a, b, c, d, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_read_as_confluent_writes_them() {
        // [0] as the single zero byte; [1, 2] as count 2 then 1, 2, all zigzag.
        assert_eq!(message_indexes(&[0, 0, 0, 0, 1, 0, 9]), Ok((vec![0], 6)));
        assert_eq!(
            message_indexes(&[0, 0, 0, 0, 1, 4, 2, 4, 9]),
            Ok((vec![1, 2], 8))
        );
        assert!(message_indexes(&[0, 0, 0, 0, 1, 4, 2]).is_err());
        assert!(message_indexes(&[0, 0, 0, 0, 1, 1]).is_err());
    }
}
