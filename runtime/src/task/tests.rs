#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tokio::sync::mpsc;

use super::chain::Chain;
use super::{Message, Outlet, StageTask, TaskCore};
use crate::checkpoint::layout::Layout;
use crate::checkpoint::snapshot::Uploader;
use crate::checkpoint::{Barrier, BarrierKind};
use crate::control::metrics::Metrics;
use crate::ids::{CheckpointId, Millis, TaskId};
use crate::operator::Input;
use crate::operator::union::Union;
use crate::storage::Storage;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]))
}

fn batch(v: i64) -> Message {
    Message::Data(
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![v]))]).unwrap(),
    )
}

/// A stage with two inputs (a union of two stages' results) snapshots only when the barrier
/// has come on both: what the first input sends after its barrier waits, what the second
/// sends before its barrier is in the checkpoint. The output shows it as the order of
/// records around the barrier.
#[tokio::test]
async fn a_stage_of_two_inputs_aligns_the_barrier_across_both() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(
        &format!("file://{}", dir.path().display()),
        &weir_crds::S3Spec::default(),
    )
    .await
    .unwrap();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out) = mpsc::channel(16);
    let chain = Chain::new(
        vec![("u".into(), Box::new(Union::new(schema())), vec![None])],
        &[Some(0)],
    )
    .unwrap();
    let core = TaskCore {
        id: TaskId {
            stage: 1,
            subtask: 0,
        },
        chain,
        side: vec![None],
        decode_side: None,
        outlets: vec![Outlet::Forward(out_tx)],
        events,
        uploader: Uploader {
            storage,
            layout: Layout::new("ns", "job"),
            job_id: "j".into(),
            generation: 1,
            sizes: crate::checkpoint::snapshot::StateSizes::ignored(),
        },
        metrics: Arc::new(Metrics::new(vec!["t".into()])),
        slot: 0,
        watermark: Millis::MIN,
        idle: false,
    };
    let b = Barrier {
        id: CheckpointId(1),
        kind: BarrierKind::Checkpoint,
    };
    let (first, first_rx) = mpsc::channel(8);
    let (second, second_rx) = mpsc::channel(8);
    for m in [Message::Barrier(b), batch(1), Message::End] {
        first.send(m).await.unwrap();
    }
    for m in [batch(2), Message::Barrier(b), batch(3), Message::End] {
        second.send(m).await.unwrap();
    }
    let (_ctrl, ctrl) = mpsc::unbounded_channel();
    StageTask {
        core,
        inputs: vec![(Input(0), first_rx), (Input(1), second_rx)],
        ctrl,
    }
    .run()
    .await
    .unwrap();
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut barriers = 0;
    while let Ok(m) = out.try_recv() {
        match m {
            Message::Data(d) => {
                let v = d
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0);
                if barriers == 0 {
                    before.push(v);
                } else {
                    after.push(v);
                }
            }
            Message::Barrier(_) => barriers += 1,
            _ => {}
        }
    }
    after.sort_unstable();
    assert_eq!((before, barriers, after), (vec![2], 1, vec![1, 3]));
}
