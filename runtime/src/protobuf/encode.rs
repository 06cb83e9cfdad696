//! A sink's records as framed Protobuf messages.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMillisecondType,
    UInt64Type,
};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};

use super::compile::write_type;
use super::{header, message_at, proto_file};

/// Encodes batches with a registered message type.
#[derive(Debug, Clone)]
pub struct ProtobufEncoder {
    id: u32,
    message: MessageDescriptor,
}

impl ProtobufEncoder {
    /// Encoder for `proto` (from [`super::compile::sink_proto`]) registered as `id`.
    ///
    /// # Errors
    /// Text that does not compile.
    pub fn new(id: u32, proto: &str) -> Result<Self, String> {
        let file = proto_file(proto)?;
        Ok(Self {
            id,
            message: message_at(&file, &[0])?,
        })
    }

    /// One framed message per row of `batch`.
    ///
    /// # Errors
    /// A column that does not cast to its written type.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        let n = batch.num_rows();
        let mut msgs: Vec<DynamicMessage> = (0..n)
            .map(|_| DynamicMessage::new(self.message.clone()))
            .collect();
        for (col, f) in batch.columns().iter().zip(batch.schema().fields()) {
            let Some(field) = self.message.get_field_by_name(f.name()) else {
                return Err(format!(
                    "column `{}` is not in the registered message",
                    f.name()
                ));
            };
            let kind = write_type(f.data_type()).unwrap_or("");
            let as_type =
                |t: &DataType| cast(col, t).map_err(|e| format!("column `{}`: {e}", f.name()));
            let values: Vec<Option<Value>> = match kind {
                "string" => {
                    let a = as_type(&DataType::Utf8)?;
                    a.as_string::<i32>()
                        .iter()
                        .map(|v| v.map(|s| Value::String(s.to_string())))
                        .collect()
                }
                "bool" => {
                    let a = as_type(&DataType::Boolean)?;
                    a.as_boolean().iter().map(|v| v.map(Value::Bool)).collect()
                }
                "int32" => {
                    let a = as_type(&DataType::Int32)?;
                    a.as_primitive::<Int32Type>()
                        .iter()
                        .map(|v| v.map(Value::I32))
                        .collect()
                }
                "int64" => {
                    let a = as_type(&DataType::Int64)?;
                    a.as_primitive::<Int64Type>()
                        .iter()
                        .map(|v| v.map(Value::I64))
                        .collect()
                }
                "uint64" => {
                    let a = as_type(&DataType::UInt64)?;
                    a.as_primitive::<UInt64Type>()
                        .iter()
                        .map(|v| v.map(Value::U64))
                        .collect()
                }
                "float" => {
                    let a = as_type(&DataType::Float32)?;
                    a.as_primitive::<Float32Type>()
                        .iter()
                        .map(|v| v.map(Value::F32))
                        .collect()
                }
                "double" => {
                    let a = as_type(&DataType::Float64)?;
                    a.as_primitive::<Float64Type>()
                        .iter()
                        .map(|v| v.map(Value::F64))
                        .collect()
                }
                "bytes" => {
                    let a = as_type(&DataType::Binary)?;
                    a.as_binary::<i32>()
                        .iter()
                        .map(|v| v.map(|b| Value::Bytes(b.to_vec().into())))
                        .collect()
                }
                "google.protobuf.Timestamp" => {
                    let a = as_type(&DataType::Timestamp(TimeUnit::Millisecond, None))?;
                    let Some(ts) = field.kind().as_message().cloned() else {
                        return Err(format!("column `{}`: the field is not a message", f.name()));
                    };
                    a.as_primitive::<TimestampMillisecondType>()
                        .iter()
                        .map(|v| {
                            v.map(|ms| {
                                let mut m = DynamicMessage::new(ts.clone());
                                m.set_field_by_name("seconds", Value::I64(ms.div_euclid(1000)));
                                m.set_field_by_name(
                                    "nanos",
                                    Value::I32((ms.rem_euclid(1000) * 1_000_000) as i32),
                                );
                                Value::Message(m)
                            })
                        })
                        .collect()
                }
                _ => {
                    return Err(format!(
                        "column `{}` has type {}, which has no protobuf writing",
                        f.name(),
                        f.data_type()
                    ));
                }
            };
            if col.len() != n {
                return Err(format!(
                    "column `{}` has {} rows, not {n}",
                    f.name(),
                    col.len()
                ));
            }
            for (m, v) in msgs.iter_mut().zip(values) {
                if let Some(v) = v {
                    m.try_set_field(&field, v)
                        .map_err(|e| format!("column `{}`: {e}", f.name()))?;
                }
            }
        }
        let head = header(self.id);
        Ok(msgs
            .iter()
            .map(|m| {
                let mut out = Vec::with_capacity(head.len() + m.encoded_len());
                out.extend_from_slice(&head);
                m.encode_raw(&mut out);
                out
            })
            .collect())
    }
}
