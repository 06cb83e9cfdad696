//! What the database sinks' tests share: a small keyed schema, its batches, a connector of a
//! spec, and a subtask of a transactional sink.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use weir_crds::SinkSpec;
use weir_runtime::sink::{SinkConnector, SinkContext, SinkEnv, SinkInstance, TwoPhaseCommitSink};

/// `(id int64, name utf8)`.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

/// Rows `ids` of [`schema`], named `n<id>`.
pub fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone().collect::<Vec<_>>())),
            Arc::new(StringArray::from(
                ids.map(|i| Some(format!("n{i}"))).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// The connector of `{kind: spec}` (sink `sink-0` of `job`, parallelism 1).
pub fn connector(kind: &str, spec: serde_json::Value, job: &str) -> Arc<dyn SinkConnector> {
    let spec: SinkSpec = serde_json::from_value(serde_json::json!({ kind: spec })).unwrap();
    weir_runtime::connectors::sink(
        &spec,
        &SinkEnv {
            sink: "sink-0".into(),
            job_name: job.into(),
            parallelism: 1,
            exactly_once: true,
        },
    )
}

/// Subtask 0 of one, in incarnation `generation`, of a transactional sink.
pub fn two_phase(
    c: &Arc<dyn SinkConnector>,
    job: &str,
    generation: u64,
) -> Box<dyn TwoPhaseCommitSink> {
    match c
        .open(&SinkContext {
            subtask: 0,
            parallelism: 1,
            generation,
            job_id: job.into(),
        })
        .unwrap()
    {
        SinkInstance::TwoPhase(s) => s,
        SinkInstance::Plain(_) => panic!("transactional mode is two-phase"),
    }
}

/// [`schema`] as a changelog (the change-kind column last).
pub fn changelog_schema() -> Arc<Schema> {
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(weir_runtime::changelog::field());
    Arc::new(Schema::new(fields))
}

/// Changes `kinds` of key 7 to `name`, in [`changelog_schema`].
pub fn changes_of_key_7(name: &str, kinds: &[weir_runtime::changelog::Kind]) -> RecordBatch {
    RecordBatch::try_new(
        changelog_schema(),
        vec![
            Arc::new(Int64Array::from(vec![7; kinds.len()])),
            Arc::new(StringArray::from(vec![Some(name); kinds.len()])),
            weir_runtime::changelog::column(kinds),
        ],
    )
    .unwrap()
}
