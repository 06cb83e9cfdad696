//! Values encoded here by hand (zigzag varints, as the Avro specification writes them, not
//! by arrow-avro) decoded through the real decoder; only the registry's HTTP answer is
//! stood in for (the real registry is exercised by `tests/schema_registry.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};

use weir_testkit::varint::{long, string};

use super::*;

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(body);
    v
}

const V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
/// v1 plus an optional amount and a field the job does not read; `id` narrowed to `int`
/// (which the job's `long` widens).
const V2: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"int"},{"name":"name","type":"string"},
    {"name":"amount","type":["null","double"],"default":null},
    {"name":"extra","type":"string","default":""}]}"#;
/// `name` as a number: the job cannot read it as text.
const WRONG: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"long"},{"name":"name","type":"long"}]}"#;

fn v1(id: i64, name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    long(id, &mut b);
    string(name, &mut b);
    framed(1, &b)
}

fn v2(id: i64, name: &str, amount: Option<f64>) -> Vec<u8> {
    let mut b = Vec::new();
    long(id, &mut b);
    string(name, &mut b);
    match amount {
        None => long(0, &mut b),
        Some(a) => {
            long(1, &mut b);
            b.extend_from_slice(&a.to_le_bytes());
        }
    }
    string("ignored", &mut b);
    framed(2, &b)
}

fn avro(schema: &str) -> Registered {
    Registered {
        schema_type: SchemaType::Avro,
        schema: schema.to_string(),
    }
}

fn decoder() -> AvroDecoder {
    let registry = crate::schema_registry::unreachable();
    let target = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
    ]));
    let mut d = AvroDecoder::new(registry, target);
    d.accept(1, Ok(Some(avro(V1)))).unwrap();
    d.accept(2, Ok(Some(avro(V2)))).unwrap();
    d.accept(3, Ok(Some(avro(WRONG)))).unwrap();
    d.accept(4, Ok(None)).unwrap();
    d
}

fn rows(b: &RecordBatch) -> Vec<(i64, String, Option<f64>)> {
    let id = b.column(0).as_primitive::<Int64Type>();
    let name = b.column(1).as_string::<i32>();
    let amount = b.column(2).as_primitive::<Float64Type>();
    (0..b.num_rows())
        .map(|i| {
            (
                id.value(i),
                name.value(i).to_string(),
                (!amount.is_null(i)).then(|| amount.value(i)),
            )
        })
        .collect()
}

#[test]
fn evolved_writer_schemas_resolve_into_the_jobs_columns() {
    let mut d = decoder();
    let values = vec![
        v1(1, "a"),
        v2(2, "b", Some(2.5)),
        v2(3, "c", None),
        v1(4, "d"),
    ];
    let out = d.decode(&values).unwrap();
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(
        rows(&out.data),
        vec![
            (1, "a".to_string(), None),
            (2, "b".to_string(), Some(2.5)),
            (3, "c".to_string(), None),
            (4, "d".to_string(), None),
        ]
    );
}

#[test]
fn each_bad_value_is_named_and_the_good_ones_around_it_kept() {
    let mut d = decoder();
    let mut truncated = v2(6, "truncated", Some(1.0));
    truncated.truncate(truncated.len() - 9);
    let values = vec![
        v1(1, "a"),
        br#"{"id": 2}"#.to_vec(),
        framed(3, &[2, 2]),
        framed(4, &[2]),
        truncated,
        framed(1, &[]),
        v1(8, "h"),
        vec![0, 0],
    ];
    let out = d.decode(&values).unwrap();
    assert_eq!(
        rows(&out.data),
        vec![(1, "a".to_string(), None), (8, "h".to_string(), None)]
    );
    let bad: Vec<usize> = out.bad.iter().map(|(i, _)| *i).collect();
    assert_eq!(bad, vec![1, 2, 3, 4, 5, 7], "{:?}", out.bad);
    let why = |i: usize| &out.bad.iter().find(|(j, _)| *j == i).unwrap().1;
    assert!(why(1).contains("0x7b"), "{}", why(1));
    assert!(why(2).contains("schema id 3 cannot be read"), "{}", why(2));
    assert!(
        why(3).contains("schema id 4 is not in the schema registry"),
        "{}",
        why(3)
    );
    assert!(why(7).contains("fewer than the 5"), "{}", why(7));
    // The decoder is whole again afterwards.
    let again = d.decode(&[v2(9, "i", Some(9.0))]).unwrap();
    assert_eq!(rows(&again.data), vec![(9, "i".to_string(), Some(9.0))]);
}

#[test]
fn an_unreachable_registry_fails_the_poll_instead_of_dropping_records() {
    let mut d = decoder();
    let e = d.decode(&[framed(5, &[2])]).unwrap_err();
    assert!(e.contains("unreachable"), "{e}");
}

#[test]
fn a_writer_timestamp_in_microseconds_is_refused_not_read_as_milliseconds() {
    let mut d = AvroDecoder::new(
        crate::schema_registry::unreachable(),
        Arc::new(Schema::new(vec![Field::new(
            "at",
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None),
            true,
        )])),
    );
    let micros = r#"{"type":"record","name":"E","fields":[
        {"name":"at","type":["null",{"type":"long","logicalType":"timestamp-micros"}]}]}"#;
    let millis = r#"{"type":"record","name":"E","fields":[
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
    d.accept(1, Ok(Some(avro(micros)))).unwrap();
    d.accept(2, Ok(Some(avro(millis)))).unwrap();
    let mut one = Vec::new();
    long(1, &mut one);
    long(1_700_000_000_000_000, &mut one);
    let mut two = Vec::new();
    long(1_700_000_000_000, &mut two);
    let out = d.decode(&[framed(1, &one), framed(2, &two)]).unwrap();
    assert_eq!(out.data.num_rows(), 1);
    assert_eq!(out.bad.len(), 1);
    assert!(out.bad[0].1.contains("timestamp-micros"), "{:?}", out.bad);
}

/// Record `A0` of one long, and `A<k>` of two fields of type `A<k-1>` (written out in full
/// the first time, by name the second, in the object form `{"type": "A<k-1>"}`), `levels`
/// deep: a few kilobytes that expand to 2^levels.
fn doubling_schema(levels: usize) -> String {
    let mut t =
        r#"{"type":"record","name":"A0","fields":[{"name":"v","type":"long"}]}"#.to_string();
    for k in 1..levels {
        t = format!(
            r#"{{"type":"record","name":"A{k}","fields":[{{"name":"l","type":{t}}},{{"name":"r","type":{{"type":"A{}"}}}}]}}"#,
            k - 1
        );
    }
    // The top-level record the job reads: its `id` and `name`, and the tree it skips.
    format!(
        r#"{{"type":"record","name":"Order","namespace":"shop","fields":[
        {{"name":"id","type":"long"}},{{"name":"name","type":"string"}},{{"name":"tree","type":{t}}}]}}"#
    )
}

/// A writer schema that doubles with every level would have the decoder build 2^30 nodes to
/// skip the field: it is refused before anything is built, and its records follow the
/// policy, named, while the other schemas' records decode.
#[test]
fn a_writer_schema_that_expands_without_bound_is_refused_before_the_decoder_builds_it() {
    let mut d = decoder();
    let started = std::time::Instant::now();
    // 30 levels: three levels of JSON each, within serde_json's 128.
    d.accept(9, Ok(Some(avro(&doubling_schema(30))))).unwrap();
    let recursive = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"},
        {"name":"next","type":["null","Order"]}]}"#;
    d.accept(10, Ok(Some(avro(recursive)))).unwrap();
    let out = d
        .decode(&[framed(9, &[2]), v1(1, "a"), framed(10, &[2])])
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(rows(&out.data), vec![(1, "a".to_string(), None)]);
    let why: Vec<(usize, &str)> = out.bad.iter().map(|(i, m)| (*i, m.as_str())).collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert_eq!(why[0].0, 0);
    assert!(
        why[0]
            .1
            .contains("schema id 9: the schema comes to more than 100000 types"),
        "{why:?}"
    );
    assert_eq!(why[1].0, 2);
    assert!(
        why[1].1.contains("schema id 10: type `Order` holds itself"),
        "{why:?}"
    );
}

/// Named types used a few times each, as real schemas use them, are well within the bound.
#[test]
fn a_schema_reusing_its_named_types_a_few_times_is_read() {
    crate::avro::schema::check_size(&doubling_schema(12)).expect("2^12 types");
    let e = crate::avro::schema::check_size(&doubling_schema(18)).expect_err("2^18 types");
    assert!(e.contains("more than 100000"), "{e}");
}

/// Schema ids are the records' to choose: the ids remembered as unreadable stay bounded
/// however many a stream of bad records names.
#[test]
fn unreadable_schema_ids_are_remembered_up_to_a_bound() {
    let mut d = decoder();
    for id in 100..100 + 3 * super::MAX_UNREADABLE_IDS as u32 {
        d.accept(id, Ok(None)).unwrap();
    }
    assert!(d.unreadable.len() <= super::MAX_UNREADABLE_IDS);
    // Those readable stay.
    let out = d.decode(&[v1(1, "a")]).unwrap();
    assert_eq!(rows(&out.data), vec![(1, "a".to_string(), None)]);
}
