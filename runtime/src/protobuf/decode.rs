//! Kafka values holding framed Protobuf messages into record batches of the job's schema.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use prost_reflect::{
    DynamicMessage, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, Value,
};

use super::{message_at, message_indexes, proto_file};
use crate::schema_registry::{Registered, Registry, RegistryError, SchemaType, frame_id, readable};
use crate::source::json::Decoded;

/// How one column is read from a message field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The message has no such field (a nullable column): always null.
    Absent,
    Text,
    Integer,
    Float,
    Bool,
    /// `google.protobuf.Timestamp` as epoch milliseconds.
    TimestampMessage,
    /// An integer field holding epoch milliseconds.
    TimestampMillis,
}

/// How the columns are read from one message type.
struct Plan {
    message: MessageDescriptor,
    columns: Vec<(Option<FieldDescriptor>, Read, bool)>,
}

fn is_integer(k: &Kind) -> bool {
    matches!(
        k,
        Kind::Int32
            | Kind::Int64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Fixed32
            | Kind::Fixed64
            | Kind::Sfixed32
            | Kind::Sfixed64
    )
}

/// Which field feeds each column of `target`, checked once per message type.
fn plan(message: MessageDescriptor, target: &SchemaRef) -> Result<Plan, String> {
    let mut columns = Vec::with_capacity(target.fields().len());
    for col in target.fields() {
        let Some(field) = message.get_field_by_name(col.name()) else {
            if col.is_nullable() {
                columns.push((None, Read::Absent, true));
                continue;
            }
            return Err(format!(
                "message {} has no field `{}`, and the column is not nullable",
                message.full_name(),
                col.name()
            ));
        };
        if field.is_list() || field.is_map() {
            return Err(format!(
                "field `{}` of {} is repeated; a column reads a single value",
                col.name(),
                message.full_name()
            ));
        }
        let kind = field.kind();
        let read = match (col.data_type(), &kind) {
            (DataType::Utf8, Kind::String) => Read::Text,
            (DataType::Int64, k) if is_integer(k) => Read::Integer,
            (DataType::Float64, Kind::Double | Kind::Float) => Read::Float,
            (DataType::Float64, k) if is_integer(k) => Read::Float,
            (DataType::Boolean, Kind::Bool) => Read::Bool,
            (DataType::Timestamp(_, _), Kind::Message(m))
                if m.full_name() == "google.protobuf.Timestamp" =>
            {
                Read::TimestampMessage
            }
            (DataType::Timestamp(_, _), k) if is_integer(k) => Read::TimestampMillis,
            (t, k) => {
                return Err(format!(
                    "field `{}` of {} is {k:?}, which a column of type {t} cannot read",
                    col.name(),
                    message.full_name()
                ));
            }
        };
        columns.push((Some(field), read, col.is_nullable()));
    }
    Ok(Plan { message, columns })
}

fn integer(v: &Value) -> Option<Result<i64, String>> {
    Some(match v {
        Value::I32(n) => Ok(i64::from(*n)),
        Value::I64(n) => Ok(*n),
        Value::U32(n) => Ok(i64::from(*n)),
        Value::U64(n) => i64::try_from(*n).map_err(|_| format!("{n} does not fit an int64")),
        _ => return None,
    })
}

/// One column's values while a batch is read.
enum Column {
    Text(Vec<Option<String>>),
    Integer(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Timestamp(Vec<Option<i64>>),
}

impl Column {
    fn new(t: &DataType) -> Self {
        match t {
            DataType::Utf8 => Self::Text(Vec::new()),
            DataType::Float64 => Self::Float(Vec::new()),
            DataType::Boolean => Self::Bool(Vec::new()),
            DataType::Timestamp(_, _) => Self::Timestamp(Vec::new()),
            _ => Self::Integer(Vec::new()),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            Self::Text(v) => v.truncate(n),
            Self::Integer(v) | Self::Timestamp(v) => v.truncate(n),
            Self::Float(v) => v.truncate(n),
            Self::Bool(v) => v.truncate(n),
        }
    }

    fn into_array(self) -> ArrayRef {
        match self {
            Self::Text(v) => Arc::new(StringArray::from(v)),
            Self::Integer(v) => Arc::new(Int64Array::from(v)),
            Self::Float(v) => Arc::new(Float64Array::from(v)),
            Self::Bool(v) => Arc::new(BooleanArray::from(v)),
            Self::Timestamp(v) => Arc::new(TimestampMillisecondArray::from(v)),
        }
    }

    /// Appends the field's value (or null); an error for a value the column cannot hold.
    fn push(
        &mut self,
        msg: &DynamicMessage,
        field: Option<&FieldDescriptor>,
        read: Read,
        nullable: bool,
    ) -> Result<(), String> {
        let set = field.filter(|f| !f.supports_presence() || msg.has_field(f));
        let Some(f) = set else {
            if !nullable && read != Read::Absent {
                if let Some(f) = field
                    && read != Read::TimestampMessage
                {
                    // Unset with presence: the field's default, as a proto3 reader sees it.
                    return self.push_value(&msg.get_field(f), read);
                }
                return Err(format!(
                    "field `{}` is not set and its column is not nullable",
                    field.map_or("?", |f| f.name())
                ));
            }
            self.push_null();
            return Ok(());
        };
        self.push_value(&msg.get_field(f), read)
    }

    fn push_null(&mut self) {
        match self {
            Self::Text(v) => v.push(None),
            Self::Integer(v) | Self::Timestamp(v) => v.push(None),
            Self::Float(v) => v.push(None),
            Self::Bool(v) => v.push(None),
        }
    }

    fn push_value(&mut self, value: &Value, read: Read) -> Result<(), String> {
        let unexpected = || format!("unexpected value {value:?}");
        match (self, read) {
            (Self::Text(v), Read::Text) => {
                v.push(Some(value.as_str().ok_or_else(unexpected)?.to_string()))
            }
            (Self::Integer(v), Read::Integer) | (Self::Timestamp(v), Read::TimestampMillis) => {
                v.push(Some(integer(value).ok_or_else(unexpected)??));
            }
            (Self::Float(v), Read::Float) => v.push(Some(match value {
                Value::F64(x) => *x,
                Value::F32(x) => f64::from(*x),
                other => integer(other).ok_or_else(unexpected)?? as f64,
            })),
            (Self::Bool(v), Read::Bool) => v.push(Some(value.as_bool().ok_or_else(unexpected)?)),
            (Self::Timestamp(v), Read::TimestampMessage) => {
                let m = value.as_message().ok_or_else(unexpected)?;
                let part = |name: &str| {
                    m.get_field_by_name(name)
                        .and_then(|v| integer(&v).and_then(Result::ok))
                        .unwrap_or(0)
                };
                let (seconds, nanos) = (part("seconds"), part("nanos"));
                // google.protobuf.Timestamp's own range: years 0001 to 9999.
                if !(-62_135_596_800..=253_402_300_799).contains(&seconds)
                    || !(0..1_000_000_000).contains(&nanos)
                {
                    return Err(format!(
                        "timestamp {seconds}s {nanos}ns is outside google.protobuf.Timestamp's range"
                    ));
                }
                v.push(Some(seconds * 1000 + nanos / 1_000_000));
            }
            _ => return Err(unexpected()),
        }
        Ok(())
    }
}

/// Decodes framed Protobuf values into one schema, fetching `.proto` files from the
/// registry as their ids first appear.
pub struct ProtobufDecoder {
    registry: Registry,
    target: SchemaRef,
    /// Compiled files by schema id, or why the id's records cannot be read.
    files: HashMap<u32, Result<FileDescriptor, String>>,
    /// Reading plans by schema id and message path. Only plans that read are kept: the path
    /// is the record's to choose (up to 100 indexes), so keeping why each one failed would
    /// grow without bound under a stream of bad records; a failure is cheap to find again.
    plans: HashMap<(u32, Vec<usize>), Plan>,
}

impl ProtobufDecoder {
    /// Decoder into `target` (the source's schema) with schemas from `registry`.
    #[must_use]
    pub fn new(registry: Registry, target: SchemaRef) -> Self {
        Self {
            registry,
            target,
            files: HashMap::new(),
            plans: HashMap::new(),
        }
    }

    /// Records what the registry answered for `id`.
    fn accept(
        &mut self,
        id: u32,
        fetched: Result<Option<Registered>, RegistryError>,
    ) -> Result<(), RegistryError> {
        let file =
            readable(id, fetched, &SchemaType::Protobuf, self.registry.url())?.and_then(|schema| {
                proto_file(&schema).map_err(|e| format!("schema id {id} does not compile: {e}"))
            });
        // As the Avro decoder's unreadable ids: bounded, since the ids are the records'.
        if file.is_err()
            && self.files.values().filter(|f| f.is_err()).count() >= crate::avro::MAX_UNREADABLE_IDS
        {
            self.files.retain(|_, f| f.is_ok());
        }
        self.files.insert(id, file);
        Ok(())
    }

    fn plan_for(&mut self, id: u32, path: &[usize]) -> Result<&Plan, String> {
        let key = (id, path.to_vec());
        if !self.plans.contains_key(&key) {
            let plan = match self.files.get(&id) {
                Some(Ok(file)) => message_at(file, path)
                    .and_then(|m| plan(m, &self.target))
                    .map_err(|e| {
                        format!("schema id {id} cannot be read as the source's schema: {e}")
                    }),
                Some(Err(e)) => Err(e.clone()),
                None => Err(format!("schema id {id} is unknown")),
            }?;
            self.plans.insert(key.clone(), plan);
        }
        self.plans
            .get(&key)
            .ok_or_else(|| format!("schema id {id} is unknown"))
    }

    /// Decode `records`, each one framed Protobuf value.
    ///
    /// # Errors
    /// The registry could not be reached for a new schema id (the source fails and the job
    /// retries from its checkpoint). Bad records are returned, not raised.
    pub fn decode<R: AsRef<[u8]>>(&mut self, records: &[R]) -> Result<Decoded, String> {
        let mut columns: Vec<Column> = self
            .target
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type()))
            .collect();
        let mut rows = 0;
        let mut bad = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let value = r.as_ref();
            let id = match frame_id(value) {
                Ok(id) => id,
                Err(e) => {
                    bad.push((i, e));
                    continue;
                }
            };
            if !self.files.contains_key(&id) {
                let fetched = self.registry.schema_by_id_blocking(id);
                self.accept(id, fetched).map_err(|e| e.to_string())?;
            }
            let (path, body) = match message_indexes(value) {
                Ok(x) => x,
                Err(e) => {
                    bad.push((i, e));
                    continue;
                }
            };
            let plan = match self.plan_for(id, &path) {
                Ok(p) => p,
                Err(e) => {
                    bad.push((i, e));
                    continue;
                }
            };
            let msg = match DynamicMessage::decode(plan.message.clone(), &value[body..]) {
                Ok(m) => m,
                Err(e) => {
                    bad.push((
                        i,
                        format!(
                            "the message does not decode as {}: {e}",
                            plan.message.full_name()
                        ),
                    ));
                    continue;
                }
            };
            let filled = plan.columns.iter().zip(columns.iter_mut()).try_for_each(
                |((field, read, nullable), col)| col.push(&msg, field.as_ref(), *read, *nullable),
            );
            match filled {
                Ok(()) => rows += 1,
                Err(e) => {
                    for c in &mut columns {
                        c.truncate(rows);
                    }
                    bad.push((i, e));
                }
            }
        }
        let arrays: Vec<ArrayRef> = columns.into_iter().map(Column::into_array).collect();
        let data = RecordBatch::try_new(self.target.clone(), arrays).map_err(|e| e.to_string())?;
        Ok(Decoded { data, bad })
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
