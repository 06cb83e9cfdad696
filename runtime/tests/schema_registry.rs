//! Avro through a real Confluent-compatible Schema Registry (`WEIR_SCHEMA_REGISTRY_URL`, e.g.
//! Karapace or Confluent's own, backed by the local broker): records written by producers
//! with two versions of a schema are read into the job's columns, an undecodable record goes
//! to the side output whole, and the sink registers its value schema and writes every record
//! framed with the id the registry gave it. Values are encoded and decoded here by hand from
//! the Avro specification, not by the library the job uses. Skipped (one line) without a
//! registry: none can be installed from this project's package registries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::Duration;

use common::stack::{create_topic, file_rows, kafka};
use weir_testkit::varint::{long, read_long, read_string, read_varint, varint};

use common::{fresh_bucket, log_tail, s3_endpoint, spawn_runtime, unique, wait_exit_within};

fn registry(test: &str) -> Option<String> {
    weir_testkit::needs_env(
        test,
        "WEIR_SCHEMA_REGISTRY_URL",
        "WEIR_REQUIRE_SCHEMA_REGISTRY",
        "WEIR_SCHEMA_REGISTRY_URL is not set (a Confluent-compatible schema registry on the local broker)",
    )
}

const V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"long"},{"name":"name","type":"string"},
    {"name":"amount","type":["null","double"],"default":null},
    {"name":"channel","type":"string","default":"web"}]}"#;

async fn register(url: &str, subject: &str, schema: &str) -> Result<u32, String> {
    register_typed(url, subject, "AVRO", schema).await
}

async fn register_typed(
    url: &str,
    subject: &str,
    schema_type: &str,
    schema: &str,
) -> Result<u32, String> {
    let resp = reqwest::Client::new()
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(serde_json::json!({ "schema": schema, "schemaType": schema_type }).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["id"].as_u64().unwrap() as u32)
}

async fn latest(url: &str, subject: &str) -> serde_json::Value {
    let text = reqwest::get(format!("{url}/subjects/{subject}/versions/latest"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

type Row = (i64, String, Option<f64>);

async fn send(p: &rdkafka::producer::FutureProducer, topic: &str, partition: i32, value: &[u8]) {
    p.send(
        rdkafka::producer::FutureRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(value),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
}

fn job_in(
    name: &str,
    bucket: &str,
    s3: &str,
    (bootstrap, url): (&str, &str),
    topics: (&str, &str),
    dir: &Path,
    format: &str,
) -> String {
    format!(
        "name: {name}
parallelism: 1
checkpoint: {{interval: 300ms, timeout: 30s, storage: \"s3://{bucket}/ckpt\", s3: {{endpoint: \"{s3}\", region: us-east-1, pathStyle: true}}}}
source:
  kafka:
    bootstrapServers: \"{bootstrap}\"
    topic: {input}
    bounded: true
    format: {format}
    schemaRegistry: {{url: \"{url}\"}}
  schema:
    - {{name: id, type: int64}}
    - {{name: name, type: string}}
    - {{name: amount, type: float64, nullable: true}}
  onDecodeError:
    sideOutput: {{file: {{path: \"{side}\"}}}}
sinks:
  - kafka:
      bootstrapServers: \"{bootstrap}\"
      topic: {output}
      transactionalIdPrefix: {name}
      format: {format}
      schemaRegistry: {{url: \"{url}\"}}
",
        input = topics.0,
        output = topics.1,
        side = dir.join("side").display(),
    )
}

fn run(yaml: &str, dir: &Path, name: &str) -> (bool, String) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let log = dir.join(format!("{name}.log"));
    let mut child = spawn_runtime(&file, &[], &[("WEIR_WAIT_TIMEOUT", "5s")], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(90)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{name}: did not exit\n{}", log_tail(&log))
    });
    (status.success(), std::fs::read_to_string(&log).unwrap())
}

/// A registry, the stack, an input and an output topic and a bucket of one test.
struct Scenario {
    rt: tokio::runtime::Runtime,
    tmp: tempfile::TempDir,
    url: String,
    s3: String,
    bootstrap: String,
    input: String,
    output: String,
    bucket: String,
}

fn scenario(test: &str, prefix: &str, partitions: i32) -> Option<Scenario> {
    let (Some(url), Some(s3), Some(bootstrap)) = (registry(test), s3_endpoint(test), kafka(test))
    else {
        return None;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let (input, output) = (format!("{prefix}-in-{u}"), format!("{prefix}-out-{u}"));
    rt.block_on(create_topic(&bootstrap, &input, partitions));
    rt.block_on(create_topic(&bootstrap, &output, partitions));
    let bucket = rt.block_on(fresh_bucket(&s3, prefix));
    Some(Scenario {
        rt,
        tmp: tempfile::tempdir().unwrap(),
        url,
        s3,
        bootstrap,
        input,
        output,
        bucket,
    })
}

impl Scenario {
    fn job(&self, name: &str, format: &str) -> String {
        job_in(
            name,
            &self.bucket,
            &self.s3,
            (&self.bootstrap, &self.url),
            (&self.input, &self.output),
            self.tmp.path(),
            format,
        )
    }

    /// The output subject's latest schema, and each committed value after the `header`
    /// bytes that must follow the magic byte and that schema's id.
    fn committed(&self, header: &[u8]) -> (serde_json::Value, Vec<Vec<u8>>) {
        let registered = self
            .rt
            .block_on(latest(&self.url, &format!("{}-value", self.output)));
        let id = registered["id"].as_u64().unwrap() as u32;
        let report = self
            .rt
            .block_on(weir_testkit::read_topic_settled(
                &self.bootstrap,
                &self.output,
                0,
            ))
            .unwrap();
        let mut frame = vec![0];
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(header);
        let bodies = report
            .committed
            .iter()
            .map(|r| {
                let v = r.value.as_deref().unwrap();
                assert_eq!(
                    &v[..frame.len()],
                    &frame[..],
                    "magic byte, schema id {id}, header"
                );
                v[frame.len()..].to_vec()
            })
            .collect();
        (registered, bodies)
    }
}

#[test]
fn avro_records_of_two_schema_versions_are_read_and_written_through_the_registry() {
    let Some(sc) = scenario("avro_registry", "avro", 2) else {
        return;
    };
    let (rt, url, bootstrap, input) = (&sc.rt, &sc.url, &sc.bootstrap, &sc.input);
    // Version 2 adds two fields with defaults: backward compatible, so the registry takes it.
    let subject = format!("{input}-value");
    let v1 = rt.block_on(register(url, &subject, V1)).unwrap();
    let v2 = rt.block_on(register(url, &subject, V2)).unwrap();
    assert_ne!(v1, v2);
    let mut oracle: Vec<Row> = Vec::new();
    let producer = common::stack::input_producer(bootstrap);
    const N: i64 = 120;
    rt.block_on(async {
        for i in 0..N {
            let mut v = vec![0];
            let name = format!("order-{i}");
            let amount = (i % 3 != 0).then_some(i as f64 * 1.25);
            if i % 2 == 0 {
                v.extend_from_slice(&v1.to_be_bytes());
                long(i, &mut v);
                long(name.len() as i64, &mut v);
                v.extend_from_slice(name.as_bytes());
                oracle.push((i, name, None));
            } else {
                v.extend_from_slice(&v2.to_be_bytes());
                long(i, &mut v);
                long(name.len() as i64, &mut v);
                v.extend_from_slice(name.as_bytes());
                match amount {
                    None => long(0, &mut v),
                    Some(a) => {
                        long(1, &mut v);
                        v.extend_from_slice(&a.to_le_bytes());
                    }
                }
                long(3, &mut v);
                v.extend_from_slice(b"app");
                oracle.push((i, name, amount));
            }
            if i == 50 {
                // A producer that forgot the registry: JSON where Avro belongs.
                send(&producer, input, 0, br#"{"id": 50}"#).await;
            }
            // One record per send: the local broker's end offset is the last batch's first
            // offset + 1, so a bounded source finds the true end only after single batches.
            send(&producer, input, (i % 2) as i32, &v).await;
        }
    });
    let (ok, log) = run(&sc.job("avro-ok", "avro"), sc.tmp.path(), "avro-ok");
    assert!(ok, "{log}");

    // The registry holds the sink's value schema under <topic>-value, and every committed
    // value is framed with its id and decodes to the oracle's rows.
    let (registered, values) = sc.committed(&[]);
    let schema: serde_json::Value =
        serde_json::from_str(registered["schema"].as_str().unwrap()).unwrap();
    let fields: Vec<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["id", "name", "amount"], "{schema}");
    let mut got: Vec<Row> = values
        .iter()
        .map(|v| {
            let mut at = 0;
            let id = read_long(v, &mut at);
            let name = read_string(v, &mut at);
            let amount = match read_long(v, &mut at) {
                0 => None,
                _ => {
                    at += 8;
                    Some(f64::from_le_bytes(v[at - 8..at].try_into().unwrap()))
                }
            };
            assert_eq!(at, v.len());
            (id, name, amount)
        })
        .collect();
    got.sort_by_key(|r| r.0);
    assert_eq!(got, oracle);

    // The JSON record is in the side output, whole (base64: Avro values are binary).
    let side = file_rows(&sc.tmp.path().join("side"));
    assert_eq!(side.len(), 1, "{side:?}");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(side[0]["raw"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, br#"{"id": 50}"#);
    assert!(
        side[0]["error"].as_str().unwrap().contains("0x7b"),
        "{side:?}"
    );
}

#[test]
fn a_value_schema_the_subject_cannot_take_is_refused_before_anything_is_written() {
    let Some(sc) = scenario("avro_incompatible", "avro-x", 1) else {
        return;
    };
    let (rt, output) = (&sc.rt, &sc.output);
    // Consumers of the output read `id` as text; the job would write a long.
    let theirs = r#"{"type":"record","name":"x","namespace":"weir","fields":[{"name":"id","type":"string"}]}"#;
    rt.block_on(register(&sc.url, &format!("{output}-value"), theirs))
        .unwrap();
    let (ok, log) = run(&sc.job("avro-x", "avro"), sc.tmp.path(), "avro-x");
    assert!(!ok, "the job started:\n{log}");
    assert!(
        log.contains(&format!("subject `{output}-value`")) && log.contains("409"),
        "{log}"
    );
    let report = rt
        .block_on(weir_testkit::read_topic(&sc.bootstrap, output))
        .unwrap();
    assert!(report.committed.is_empty() && report.open == 0);
}

const PROTO_V1: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  int64 id = 1;\n  string name = 2;\n}\n";
const PROTO_V2: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  int64 id = 1;\n  string name = 2;\n  optional double amount = 3;\n  string channel = 4;\n}\n";

#[test]
fn protobuf_records_of_two_schema_versions_are_read_and_written_through_the_registry() {
    let Some(sc) = scenario("protobuf_registry", "proto", 2) else {
        return;
    };
    let (rt, url, bootstrap, input) = (&sc.rt, &sc.url, &sc.bootstrap, &sc.input);
    let subject = format!("{input}-value");
    let v1 = rt
        .block_on(register_typed(url, &subject, "PROTOBUF", PROTO_V1))
        .unwrap();
    let v2 = rt
        .block_on(register_typed(url, &subject, "PROTOBUF", PROTO_V2))
        .unwrap();
    assert_ne!(v1, v2);
    let producer = common::stack::input_producer(bootstrap);
    let mut oracle: Vec<Row> = Vec::new();
    const N: i64 = 80;
    rt.block_on(async {
        for i in 0..N {
            let name = format!("order-{i}");
            let v2_record = i % 2 == 1;
            let amount = (v2_record && i % 3 != 0).then_some(i as f64 * 0.5);
            // Magic byte, id, index path [0] (one zero byte), then the message.
            let mut v = vec![0];
            v.extend_from_slice(&(if v2_record { v2 } else { v1 }).to_be_bytes());
            v.push(0);
            v.push(1 << 3);
            varint(i as u64, &mut v);
            v.push(2 << 3 | 2);
            varint(name.len() as u64, &mut v);
            v.extend_from_slice(name.as_bytes());
            if let Some(a) = amount {
                v.push(3 << 3 | 1);
                v.extend_from_slice(&a.to_le_bytes());
            }
            if v2_record {
                v.push(4 << 3 | 2);
                v.push(3);
                v.extend_from_slice(b"app");
            }
            oracle.push((i, name, amount));
            send(&producer, input, (i % 2) as i32, &v).await;
        }
    });
    let (ok, log) = run(&sc.job("proto-ok", "protobuf"), sc.tmp.path(), "proto-ok");
    assert!(ok, "{log}");
    // Index path [0] after the id; the fields as the generated message numbers them.
    let (registered, values) = sc.committed(&[0]);
    assert_eq!(registered["schemaType"], "PROTOBUF", "{registered}");
    let mut got: Vec<Row> = values
        .iter()
        .map(|v| {
            let mut at = 0;
            let (mut id, mut name, mut amount) = (0i64, String::new(), None);
            while at < v.len() {
                let key = read_varint(v, &mut at);
                match (key >> 3, key & 7) {
                    (1, 0) => id = read_varint(v, &mut at) as i64,
                    (2, 2) => {
                        let len = read_varint(v, &mut at) as usize;
                        name = String::from_utf8(v[at..at + len].to_vec()).unwrap();
                        at += len;
                    }
                    (3, 1) => {
                        amount = Some(f64::from_le_bytes(v[at..at + 8].try_into().unwrap()));
                        at += 8;
                    }
                    other => panic!("unexpected field {other:?}"),
                }
            }
            (id, name, amount)
        })
        .collect();
    got.sort_by_key(|r| r.0);
    assert_eq!(got, oracle);
}
