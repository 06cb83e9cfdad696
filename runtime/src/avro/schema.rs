//! A job's columns as Avro schemas: the reader schema the source resolves every writer
//! schema against, and the writer schema a sink registers.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::{Value, json};

/// The Avro type a job column of type `t` is read as.
fn read_type(t: &DataType) -> Result<Value, String> {
    Ok(match t {
        DataType::Utf8 => json!("string"),
        DataType::Int64 => json!("long"),
        DataType::Float64 => json!("double"),
        DataType::Boolean => json!("boolean"),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            json!({"type": "long", "logicalType": "timestamp-millis"})
        }
        other => return Err(format!("type {other} has no Avro reading")),
    })
}

/// `t`, or `["null", t]` with a null default when the column is nullable: a writer schema
/// without the field then reads as null, the way Avro schema evolution drops a field.
fn nullable(t: Value, nullable: bool) -> (Value, Option<Value>) {
    if nullable {
        (json!(["null", t]), Some(Value::Null))
    } else {
        (t, None)
    }
}

fn fields(
    schema: &Schema,
    types: impl Fn(&Field) -> Result<Value, String>,
) -> Result<Vec<Value>, String> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let (t, default) = nullable(types(f)?, f.is_nullable());
            let mut field = json!({"name": f.name(), "type": t});
            if let Some(d) = default {
                field["default"] = d;
            }
            Ok(field)
        })
        .collect()
}

/// The Avro reader schema of the job's `columns`, named like the writer records it reads:
/// Avro resolves records by name, so the first writer name is the record's name and every
/// other its alias. Fields resolve by name; a nullable column a writer lacks reads as null,
/// a writer field the job does not declare is skipped.
///
/// # Errors
/// A column type without an Avro reading (the schema of sources has none).
pub fn reader_schema(columns: &Schema, writer_names: &[String]) -> Result<String, String> {
    let mut names = writer_names.iter();
    let name = names.next().map_or("record", String::as_str);
    let aliases: Vec<&String> = names.collect();
    let mut record = json!({
        "type": "record",
        "name": name,
        "fields": fields(columns, |f| read_type(f.data_type()))?,
    });
    if !aliases.is_empty() {
        record["aliases"] = json!(aliases);
    }
    Ok(record.to_string())
}

/// The full name (`namespace.name`) of a writer schema's top-level record.
///
/// # Errors
/// Text that is not JSON or a schema that is not a record.
pub fn record_full_name(writer: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(writer).map_err(|e| format!("the schema is not JSON: {e}"))?;
    if v.get("type").and_then(Value::as_str) != Some("record") {
        return Err("the schema is not a record; format: avro reads records".to_string());
    }
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("the record has no name")?;
    let ns = v
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(full_name(name, ns))
}

/// Types a writer schema may come to once each use of a named type is written out in full.
/// The decoder copies a named type for each field that uses it (to skip the fields the job
/// does not read), so a schema of a few kilobytes, each record using the one before twice,
/// would make it build 2^40 nodes. A real schema of thousands of fields is far below this.
pub const MAX_EXPANDED_TYPES: u64 = 100_000;

/// The Avro primitive type names, which are never references to a named type.
const PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Refuses a writer schema whose named types, written out where they are used, would come to
/// more than [`MAX_EXPANDED_TYPES`] types, or that holds a record within itself (Arrow
/// columns cannot hold one), before the decoder builds anything from it.
///
/// # Errors
/// Text that is not JSON; which of the two it is.
pub fn check_size(writer: &str) -> Result<(), String> {
    let v: Value =
        serde_json::from_str(writer).map_err(|e| format!("the schema is not JSON: {e}"))?;
    let mut sizes = Sizes::default();
    let n = sizes.of(&v, "")?;
    if n > MAX_EXPANDED_TYPES {
        return Err(format!(
            "the schema comes to more than {MAX_EXPANDED_TYPES} types once each use of a named type is written out (a type used twice counts twice, so types that each use the one before more than once double with every level); it is not read"
        ));
    }
    Ok(())
}

/// The full name of type `name` in namespace `ns`: a dotted name is full already, as is any
/// name in the null namespace.
fn full_name(name: &str, ns: &str) -> String {
    if name.contains('.') || ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}.{name}")
    }
}

/// The expanded size of each named type, as [`check_size`] walks a schema in order (Avro
/// defines a name before any use of it).
#[derive(Default)]
struct Sizes {
    /// Full name to its expanded size; `None` while its own fields are walked.
    named: std::collections::HashMap<String, Option<u64>>,
}

impl Sizes {
    /// Expanded size of type `t` in namespace `ns`, saturating above the bound.
    fn of(&mut self, t: &Value, ns: &str) -> Result<u64, String> {
        match t {
            Value::String(name) if PRIMITIVES.contains(&name.as_str()) => Ok(1),
            Value::String(name) => {
                let found = self
                    .named
                    .get(&full_name(name, ns))
                    .or_else(|| self.named.get(name))
                    .copied();
                match found {
                    Some(Some(n)) => Ok(n),
                    Some(None) => Err(format!(
                        "type `{name}` holds itself; a recursive type cannot be read into columns"
                    )),
                    // Not defined before its use: the decoder refuses it, by name.
                    None => Ok(1),
                }
            }
            Value::Array(branches) => {
                let mut n = 1u64;
                for b in branches {
                    n = n.saturating_add(self.of(b, ns)?);
                    if n > MAX_EXPANDED_TYPES {
                        break;
                    }
                }
                Ok(n)
            }
            Value::Object(o) => match o.get("type") {
                Some(Value::String(kind)) if matches!(kind.as_str(), "record" | "error") => {
                    let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
                    // As arrow-avro resolves the names its fields use: the record's own
                    // namespace, else the enclosing one.
                    let own_ns = o
                        .get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(ns)
                        .to_string();
                    let full = full_name(name, &own_ns);
                    self.named.insert(full.clone(), None);
                    let mut n = 1u64;
                    for f in o
                        .get("fields")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(ft) = f.get("type") {
                            n = n.saturating_add(self.of(ft, &own_ns)?);
                        }
                        if n > MAX_EXPANDED_TYPES {
                            break;
                        }
                    }
                    self.named.insert(full, Some(n));
                    Ok(n)
                }
                Some(Value::String(kind)) if matches!(kind.as_str(), "enum" | "fixed") => {
                    if let Some(name) = o.get("name").and_then(Value::as_str) {
                        let own_ns = o.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                        self.named.insert(full_name(name, own_ns), Some(1));
                    }
                    Ok(1)
                }
                Some(Value::String(kind)) if matches!(kind.as_str(), "array" | "map") => {
                    let inner = if kind == "array" { "items" } else { "values" };
                    Ok(1u64.saturating_add(o.get(inner).map_or(Ok(0), |i| self.of(i, ns))?))
                }
                // A primitive with attributes (a logical type), or a reference written as an
                // object (`{"type": "A"}`, which arrow-avro resolves by name like `"A"`).
                Some(name @ Value::String(_)) => self.of(name, ns),
                // A type nested as an object.
                Some(inner @ (Value::Object(_) | Value::Array(_))) => self.of(inner, ns),
                _ => Ok(1),
            },
            _ => Ok(1),
        }
    }
}

/// Refuses a writer schema whose field for a timestamp column is not milliseconds: Avro
/// resolution looks at the primitive only, so `timestamp-micros` (or a `date`'s days) would
/// read as milliseconds, off by a factor, and move event time and watermarks with it.
///
/// # Errors
/// The field and its logical type.
pub fn check_timestamps(writer: &str, columns: &Schema) -> Result<(), String> {
    let v: Value =
        serde_json::from_str(writer).map_err(|e| format!("the schema is not JSON: {e}"))?;
    let fields = v.get("fields").and_then(Value::as_array);
    for col in columns.fields() {
        if !matches!(col.data_type(), DataType::Timestamp(_, _)) {
            continue;
        }
        let Some(t) = fields
            .into_iter()
            .flatten()
            .find(|f| f.get("name").and_then(Value::as_str) == Some(col.name().as_str()))
            .and_then(|f| f.get("type"))
        else {
            continue;
        };
        // The non-null branch of a nullable union.
        let t = match t.as_array() {
            Some(branches) => branches
                .iter()
                .find(|b| b.as_str() != Some("null"))
                .unwrap_or(t),
            None => t,
        };
        let (primitive, logical) = match t {
            Value::String(p) => (p.as_str(), None),
            Value::Object(o) => (
                o.get("type").and_then(Value::as_str).unwrap_or(""),
                o.get("logicalType").and_then(Value::as_str),
            ),
            _ => ("", None),
        };
        match (primitive, logical) {
            ("long", None | Some("timestamp-millis" | "local-timestamp-millis")) => {}
            (p, l) => {
                return Err(format!(
                    "field `{}` is {p}{}; a timestamp column reads epoch milliseconds \
                     (long, timestamp-millis)",
                    col.name(),
                    l.map(|l| format!(" ({l})")).unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// The Avro type a sink column of type `t` is written as, and the Arrow type the column is
/// cast to first, so the encoder sees exactly the type the schema declares.
fn write_type(t: &DataType) -> Option<(Value, DataType)> {
    let utc = || Some(Arc::from("+00:00"));
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            (json!("string"), DataType::Utf8)
        }
        DataType::Boolean => (json!("boolean"), DataType::Boolean),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            (json!("int"), DataType::Int32)
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => (json!("long"), DataType::Int64),
        DataType::Float16 | DataType::Float32 => (json!("float"), DataType::Float32),
        DataType::Float64 => (json!("double"), DataType::Float64),
        DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, _) => (
            json!({"type": "long", "logicalType": "timestamp-millis"}),
            DataType::Timestamp(TimeUnit::Millisecond, utc()),
        ),
        DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _) => (
            json!({"type": "long", "logicalType": "timestamp-micros"}),
            DataType::Timestamp(TimeUnit::Microsecond, utc()),
        ),
        DataType::Date32 | DataType::Date64 => (
            json!({"type": "int", "logicalType": "date"}),
            DataType::Date32,
        ),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            (json!("bytes"), DataType::Binary)
        }
        DataType::Decimal128(p, s) => (
            json!({"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}),
            DataType::Decimal128(*p, *s),
        ),
        _ => return None,
    })
}

/// Whether `name` is a valid Avro name.
fn avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The record name a sink writing to `topic` registers: the topic with every character an
/// Avro name cannot hold replaced by `_`.
#[must_use]
pub fn record_name(topic: &str) -> String {
    let mut name: String = topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

/// The writer schema (Avro JSON, record `name` in namespace `weir`) of a sink's records,
/// and the Arrow schema the records are cast to before encoding.
///
/// # Errors
/// A column whose name is not an Avro name, or whose type has no Avro writing, named.
pub fn writer_schema(columns: &Schema, name: &str) -> Result<(String, SchemaRef), String> {
    let mut cast_to = Vec::with_capacity(columns.fields().len());
    for f in columns.fields() {
        if !avro_name(f.name()) {
            return Err(format!(
                "column `{}` is not a valid Avro field name (letters, digits, `_`, not starting \
                 with a digit); name it with AS",
                f.name()
            ));
        }
        let Some((_, arrow)) = write_type(f.data_type()) else {
            return Err(format!(
                "column `{}` has type {}, which has no Avro writing; cast it",
                f.name(),
                f.data_type()
            ));
        };
        cast_to.push(Field::new(f.name(), arrow, f.is_nullable()));
    }
    let record = json!({
        "type": "record",
        "name": name,
        "namespace": "weir",
        "fields": fields(columns, |f| write_type(f.data_type()).map(|(v, _)| v).ok_or_else(String::new))?,
    });
    Ok((record.to_string(), Arc::new(Schema::new(cast_to))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_valid_avro_names() {
        assert_eq!(record_name("orders.v1-out"), "orders_v1_out");
        assert_eq!(record_name("1st"), "_1st");
        assert!(avro_name(&record_name("ä-topic")));
    }

    #[test]
    fn full_names_join_namespace_and_name() {
        assert_eq!(
            record_full_name(r#"{"type":"record","name":"O","namespace":"shop","fields":[]}"#),
            Ok("shop.O".to_string())
        );
        assert!(record_full_name(r#""string""#).is_err());
    }

    #[test]
    fn a_sink_column_without_an_avro_name_is_named() {
        let s = Schema::new(vec![Field::new("count(*)", DataType::Int64, false)]);
        let e = writer_schema(&s, "r").unwrap_err();
        assert!(e.contains("`count(*)`"), "{e}");
    }
}
