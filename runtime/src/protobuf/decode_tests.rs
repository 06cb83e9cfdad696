//! Messages encoded here by hand from the protobuf wire format (tags, varints), not by the
//! library the decoder uses; only the registry's HTTP answer is stood in for (the real
//! registry is exercised by `tests/schema_registry.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMillisecondType,
};

use weir_testkit::varint::varint;

use super::*;

const ORDERS: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order {
  int64 id = 1;
  string name = 2;
  optional double amount = 3;
  google.protobuf.Timestamp at = 4;
  string channel = 5;
}
message Refund { string id = 1; }
"#;

fn tag(field: u64, wire: u64, out: &mut Vec<u8>) {
    varint(field << 3 | wire, out);
}

fn bytes(field: u64, b: &[u8], out: &mut Vec<u8>) {
    tag(field, 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// An Order: id, name, amount when given, `at` (ms) when given, channel.
fn order(id: i64, name: &str, amount: Option<f64>, at: Option<i64>) -> Vec<u8> {
    let mut b = Vec::new();
    tag(1, 0, &mut b);
    varint(id as u64, &mut b);
    bytes(2, name.as_bytes(), &mut b);
    if let Some(a) = amount {
        tag(3, 1, &mut b);
        b.extend_from_slice(&a.to_le_bytes());
    }
    if let Some(ms) = at {
        let mut ts = Vec::new();
        tag(1, 0, &mut ts);
        varint((ms / 1000) as u64, &mut ts);
        tag(2, 0, &mut ts);
        varint(((ms % 1000) * 1_000_000) as u64, &mut ts);
        bytes(4, &ts, &mut b);
    }
    bytes(5, b"app", &mut b);
    b
}

fn framed(id: u32, path: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(path);
    v.extend_from_slice(body);
    v
}

fn target() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("note", DataType::Utf8, true),
    ]))
}

fn decoder() -> ProtobufDecoder {
    let registry = crate::schema_registry::unreachable();
    let mut d = ProtobufDecoder::new(registry, target());
    let proto = |schema: &str| {
        Ok(Some(Registered {
            schema_type: SchemaType::Protobuf,
            schema: schema.to_string(),
        }))
    };
    d.accept(1, proto(ORDERS)).unwrap();
    d.accept(2, proto("syntax = \"proto3\"; message { broken"))
        .unwrap();
    d.accept(3, Ok(None)).unwrap();
    d.accept(
        4,
        Ok(Some(Registered {
            schema_type: SchemaType::Avro,
            schema: "\"string\"".to_string(),
        })),
    )
    .unwrap();
    d
}

type Row = (i64, String, Option<f64>, Option<i64>, Option<String>);

fn rows(b: &RecordBatch) -> Vec<Row> {
    let id = b.column(0).as_primitive::<Int64Type>();
    let name = b.column(1).as_string::<i32>();
    let amount = b.column(2).as_primitive::<Float64Type>();
    let at = b.column(3).as_primitive::<TimestampMillisecondType>();
    let note = b.column(4).as_string::<i32>();
    (0..b.num_rows())
        .map(|i| {
            (
                id.value(i),
                name.value(i).to_string(),
                (!amount.is_null(i)).then(|| amount.value(i)),
                (!at.is_null(i)).then(|| at.value(i)),
                (!note.is_null(i)).then(|| note.value(i).to_string()),
            )
        })
        .collect()
}

#[test]
fn message_fields_fill_the_columns_of_the_same_name() {
    let mut d = decoder();
    let values = vec![
        framed(1, &[0], &order(7, "a", Some(2.5), Some(1_700_000_000_123))),
        // The index path written out in full ([0]) reads the same.
        framed(1, &[2, 0], &order(8, "b", None, None)),
    ];
    let out = d.decode(&values).unwrap();
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(
        rows(&out.data),
        vec![
            (7, "a".to_string(), Some(2.5), Some(1_700_000_000_123), None),
            (8, "b".to_string(), None, None, None),
        ]
    );
}

#[test]
fn each_bad_value_is_named_and_the_good_ones_around_it_kept() {
    let mut d = decoder();
    let values = vec![
        framed(1, &[0], &order(1, "a", None, None)),
        framed(1, &[2, 2], &{
            let mut b = Vec::new();
            bytes(1, b"r-1", &mut b);
            b
        }),
        framed(1, &[0], &[0x0a, 0xff]),
        framed(2, &[0], &[]),
        framed(3, &[0], &[]),
        framed(4, &[0], &[]),
        framed(1, &[4, 2, 0], &[]),
        b"plain text".to_vec(),
        framed(1, &[0], &order(9, "z", Some(1.0), None)),
        framed(1, &[0], &order(10, "far", None, Some(i64::MAX / 2))),
    ];
    let out = d.decode(&values).unwrap();
    assert_eq!(
        rows(&out.data),
        vec![
            (1, "a".to_string(), None, None, None),
            (9, "z".to_string(), Some(1.0), None, None)
        ]
    );
    let why: Vec<(usize, &str)> = out.bad.iter().map(|(i, e)| (*i, e.as_str())).collect();
    let expect = [
        (
            1,
            "field `id` of shop.Refund is string, which a column of type Int64 cannot read",
        ),
        (2, "does not decode as shop.Order"),
        (3, "schema id 2 does not compile"),
        (4, "schema id 3 is not in the schema registry"),
        (5, "schema id 4 is a AVRO schema"),
        (6, "no message at index path [1, 0]"),
        (7, "not the Confluent wire format"),
        (9, "outside google.protobuf.Timestamp's range"),
    ];
    assert_eq!(why.len(), expect.len(), "{why:?}");
    for ((i, e), (j, part)) in why.iter().zip(expect) {
        assert_eq!(*i, j);
        assert!(e.contains(part), "record {i}: `{e}` lacks `{part}`");
    }
}

#[test]
fn a_sinks_messages_read_back_as_the_rows_written() {
    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    let columns = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("note", DataType::Utf8, true),
    ]);
    let proto = super::super::sink_proto(&columns, "orders_out").unwrap();
    assert!(proto.contains("optional double amount = 3;"), "{proto}");
    let enc = super::super::ProtobufEncoder::new(1, &proto).unwrap();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![5, -6])),
        Arc::new(StringArray::from(vec!["x", ""])),
        Arc::new(Float64Array::from(vec![Some(0.0), None])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(1_700_000_000_999),
            None,
        ])),
        Arc::new(StringArray::from(vec![None, Some("n")])),
    ];
    let batch = RecordBatch::try_new(Arc::new(columns), cols).unwrap();
    let values = enc.encode(&batch).unwrap();
    assert_eq!(&values[0][..6], &[0, 0, 0, 0, 1, 0]);
    let mut d = decoder();
    d.accept(
        1,
        Ok(Some(Registered {
            schema_type: SchemaType::Protobuf,
            schema: proto,
        })),
    )
    .unwrap();
    let out = d.decode(&values).unwrap();
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    // A present zero stays zero (optional), an empty string is a proto3 default.
    assert_eq!(
        rows(&out.data),
        vec![
            (5, "x".to_string(), Some(0.0), Some(1_700_000_000_999), None),
            (-6, String::new(), None, None, Some("n".to_string())),
        ]
    );
}

/// A message path is the record's to choose: records naming paths the schema lacks are each
/// bad, and none of them leaves anything behind in the decoder.
#[test]
fn bad_message_paths_leave_no_plan_behind() {
    let mut d = decoder();
    // Paths of two indexes (a zigzag count of 2, then each index zigzagged): [a, b] with a
    // in 1..61 and b in 0..16, none of which the schema has (`Refund`, at 1, nests nothing).
    let values: Vec<Vec<u8>> = (1u8..61)
        .flat_map(|a| (0u8..16).map(move |b| framed(1, &[4, 2 * a, 2 * b], &[])))
        .chain(std::iter::once(framed(1, &[0], &order(1, "a", None, None))))
        .collect();
    let out = d.decode(&values).unwrap();
    assert_eq!(out.bad.len(), 960);
    assert!(
        out.bad[0].1.contains("no message at index path"),
        "{:?}",
        out.bad[0]
    );
    assert_eq!(out.data.num_rows(), 1);
    assert_eq!(d.plans.len(), 1, "only the plan that reads is kept");
}
