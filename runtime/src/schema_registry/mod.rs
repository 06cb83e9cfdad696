//! A Confluent-compatible Schema Registry and the wire format its serializers write: a zero
//! byte, the writer schema's id (four bytes, big-endian), then the body (for Protobuf, the
//! message's index path comes first). The formats that use it are rooms of their own
//! (`avro`, `protobuf`); what they share lives here: the REST client and the frame.

mod client;

pub use client::{Registered, Registry, RegistryError, SchemaType};

/// The registry's answer for schema `id` as a decoder needs it: `Ok(Ok(text))` for a schema
/// of type `want`, `Ok(Err(why))` when records of `id` can never be read (no such id, another
/// type, a refusal: bad records, not a failing job), `Err` when the registry was unreachable
/// (the job fails and retries; the records are not at fault).
///
/// # Errors
/// An unreachable registry.
pub fn readable(
    id: u32,
    fetched: Result<Option<Registered>, RegistryError>,
    want: &SchemaType,
    registry: &str,
) -> Result<Result<String, String>, RegistryError> {
    Ok(match fetched {
        Ok(Some(r)) if &r.schema_type == want => Ok(r.schema),
        Ok(Some(r)) => Err(format!(
            "schema id {id} is a {} schema; this format reads {}",
            r.schema_type.name(),
            want.name()
        )),
        Ok(None) => Err(format!(
            "schema id {id} is not in the schema registry {registry}"
        )),
        Err(RegistryError::Refused { message, .. }) => Err(message),
        Err(e) => return Err(e),
    })
}

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

/// A registry nobody answers at, for decoder tests that hand the registry's answers in.
#[cfg(test)]
#[allow(clippy::expect_used)]
pub(crate) fn unreachable() -> Registry {
    let spec = weir_crds::SchemaRegistrySpec {
        url: "http://127.0.0.1:9".to_string(),
        username: None,
        password_env: None,
        tls: None,
        subject: None,
    };
    Registry::from_spec(&spec, "schemaRegistry", |_| None).expect("a plain http registry")
}
