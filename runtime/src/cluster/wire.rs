//! What travels between pods, and how it is framed in Arrow Flight messages.
//!
//! Every link is one Flight `DoExchange` stream. Its first message names it ([`Hello`], in
//! the flight descriptor). On a data link, record batches are Arrow IPC (the schema once,
//! then batches) and everything else that flows between subtasks ([`Signal`]: watermarks,
//! barriers, idleness, end) is a message with only `app_metadata` (no IPC header), in the
//! same stream, so it stays in order with the records exactly as on an in-memory channel.
//! The receiver answers with [`Credit`]s. Control-link messages are JSON in `app_metadata`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_flight::utils::flight_data_to_arrow_batch;
use arrow_flight::{FlightData, FlightDescriptor, SchemaAsIpc};
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions,
};
use datafusion::arrow::ipc::{MessageHeader, root_as_message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Barrier;
use crate::checkpoint::coordinator::{Outcome, Request};
use crate::checkpoint::messages::{Ack, Control, TaskEvent};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, Millis, TaskId};
use crate::task::Message;

/// The first message of a link: who is calling, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Hello {
    /// The channel from subtask `from` to subtask `to` of shuffle `edge` (the plan's edge).
    Data {
        /// Must equal the receiving pod's.
        incarnation: String,
        /// Must equal the receiving pod's: a pod of an older generation cannot feed this one.
        generation: u64,
        /// The sending pod.
        pod: u32,
        /// The shuffle.
        edge: u32,
        /// Sending subtask (of the edge's upstream stage).
        from: u32,
        /// Receiving subtask.
        to: u32,
    },
    /// Pod `pod` joins the coordinator (pod 0).
    Control {
        /// Must equal the coordinator's.
        incarnation: String,
        /// The calling pod.
        pod: u32,
    },
}

/// What flows between subtasks besides records, in band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Signal {
    /// See [`Message::Watermark`].
    Watermark(Millis),
    /// See [`Message::Idle`].
    Idle,
    /// See [`Message::Barrier`].
    Barrier(Barrier),
    /// See [`Message::End`].
    End,
}

impl Signal {
    /// The in-band part of `m`; `None` for records.
    #[must_use]
    pub fn of(m: &Message) -> Option<Self> {
        match m {
            Message::Data(_) => None,
            Message::Watermark(w) => Some(Self::Watermark(*w)),
            Message::Idle => Some(Self::Idle),
            Message::Barrier(b) => Some(Self::Barrier(*b)),
            Message::End => Some(Self::End),
        }
    }

    /// Back into a channel message.
    #[must_use]
    pub fn into_message(self) -> Message {
        match self {
            Self::Watermark(w) => Message::Watermark(w),
            Self::Idle => Message::Idle,
            Self::Barrier(b) => Message::Barrier(b),
            Self::End => Message::End,
        }
    }
}

/// Receiver -> sender on a data link: this many more messages may be sent. The receiver
/// grants one when it has handed a message to its subtask's bounded channel, so at most the
/// initial credit is ever in flight or buffered per link, however slow the subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit(pub u32);

/// Where a new incarnation starts, decided by the coordinator for every pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartInfo {
    /// Lineage written.
    pub job_id: String,
    /// Generation claimed.
    pub generation: u64,
    /// Checkpoint each pod restores its own subtasks from.
    pub restored: Option<String>,
    /// First checkpoint id; sinks open their first transaction for it.
    pub first_checkpoint: CheckpointId,
}

/// Coordinator -> pod.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToPod {
    /// Restore and build the tasks.
    Start(StartInfo),
    /// For one of the pod's tasks.
    Control(TaskId, Control),
    /// The job ended this way; exit with it.
    Outcome(Outcome),
}

/// Pod -> coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToCoordinator {
    /// Tasks built, sinks' first transactions open.
    Ready,
    /// One of the pod's tasks.
    Event(Event),
    /// A stop or savepoint asked of this pod (a signal, its control API).
    Request(Request),
}

/// [`TaskEvent`] as it travels: errors as their message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    /// See [`TaskEvent::Ack`].
    Ack(Ack),
    /// See [`TaskEvent::SourceFinished`].
    SourceFinished(TaskId),
    /// See [`TaskEvent::Failed`].
    Failed(TaskId, String),
    /// See [`TaskEvent::Done`].
    Done(TaskId),
    /// See [`TaskEvent::PodLost`].
    PodLost(u32, String),
}

impl From<TaskEvent> for Event {
    fn from(e: TaskEvent) -> Self {
        match e {
            TaskEvent::Ack(a) => Self::Ack(a),
            TaskEvent::SourceFinished(t) => Self::SourceFinished(t),
            TaskEvent::Failed(t, e) => Self::Failed(t, e.to_string()),
            TaskEvent::Done(t) => Self::Done(t),
            TaskEvent::PodLost { pod, error } => Self::PodLost(pod, error.to_string()),
        }
    }
}

impl Event {
    /// Back into a task event, as seen from pod `from`.
    #[must_use]
    pub fn into_task_event(self, from: u32) -> TaskEvent {
        match self {
            Self::Ack(a) => TaskEvent::Ack(a),
            Self::SourceFinished(t) => TaskEvent::SourceFinished(t),
            Self::Failed(t, e) => TaskEvent::Failed(t, Error::internal(format!("pod {from}: {e}"))),
            Self::Done(t) => TaskEvent::Done(t),
            Self::PodLost(pod, e) => TaskEvent::PodLost {
                pod,
                error: Error::internal(format!("pod {from} lost pod {pod}: {e}")),
            },
        }
    }
}

/// The first message of a link.
///
/// # Errors
/// Never in practice (JSON of plain data).
pub fn hello(h: &Hello) -> Result<FlightData> {
    let cmd = serde_json::to_vec(h).map_err(|e| Error::internal(e.to_string()))?;
    Ok(FlightData::new().with_descriptor(FlightDescriptor::new_cmd(cmd)))
}

/// The [`Hello`] in a link's first message.
///
/// # Errors
/// No descriptor, or one that is not a hello.
pub fn parse_hello(first: &FlightData) -> Result<Hello> {
    let d = first
        .flight_descriptor
        .as_ref()
        .ok_or_else(|| Error::internal("the first message of a link has no descriptor"))?;
    serde_json::from_slice(&d.cmd)
        .map_err(|e| Error::internal(format!("the first message of a link is no hello: {e}")))
}

/// A message carrying only `v`, as JSON `app_metadata`.
///
/// # Errors
/// Never in practice (JSON of plain data).
pub fn meta<T: Serialize>(v: &T) -> Result<FlightData> {
    let bytes = serde_json::to_vec(v).map_err(|e| Error::internal(e.to_string()))?;
    Ok(FlightData::new().with_app_metadata(Bytes::from(bytes)))
}

/// The value in a message's `app_metadata`.
///
/// # Errors
/// Not JSON of `T`.
pub fn parse_meta<T: DeserializeOwned>(app_metadata: &[u8]) -> Result<T> {
    serde_json::from_slice(app_metadata)
        .map_err(|e| Error::internal(format!("malformed message on a pod link: {e}")))
}

/// Bytes a message puts on the wire (its header, body and metadata).
#[must_use]
pub fn size(fd: &FlightData) -> usize {
    fd.data_header.len() + fd.data_body.len() + fd.app_metadata.len()
}

/// Arrow IPC for the batches of one data link: the schema with the first batch, then each
/// batch (and its dictionaries) alone.
pub struct BatchEncoder {
    data: IpcDataGenerator,
    dictionaries: DictionaryTracker,
    options: IpcWriteOptions,
    context: IpcWriteContext,
    schema_sent: bool,
}

impl Default for BatchEncoder {
    fn default() -> Self {
        Self {
            data: IpcDataGenerator::default(),
            dictionaries: DictionaryTracker::new(false),
            options: IpcWriteOptions::default(),
            context: IpcWriteContext::default(),
            schema_sent: false,
        }
    }
}

impl BatchEncoder {
    /// The messages that carry `batch`.
    ///
    /// # Errors
    /// Arrow's error when the batch cannot be written as IPC.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<FlightData>> {
        let mut out = Vec::with_capacity(2);
        if !self.schema_sent {
            out.push(SchemaAsIpc::new(batch.schema_ref(), &self.options).into());
            self.schema_sent = true;
        }
        let (dictionaries, data) = self.data.encode(
            batch,
            &mut self.dictionaries,
            &self.options,
            &mut self.context,
        )?;
        out.extend(dictionaries.into_iter().map(FlightData::from));
        out.push(data.into());
        Ok(out)
    }
}

/// The other end of [`BatchEncoder`]: each message back into what the subtask sent.
#[derive(Default)]
pub struct Decoder {
    schema: Option<SchemaRef>,
}

impl Decoder {
    /// The channel message `f` completes, if any (a schema message completes none).
    ///
    /// # Errors
    /// A malformed message, a batch before its schema, or a dictionary batch (the encoder
    /// never sends one: job schemas have no dictionary columns).
    pub fn decode(&mut self, f: &FlightData) -> Result<Option<Message>> {
        if f.data_header.is_empty() {
            return Ok(Some(parse_meta::<Signal>(&f.app_metadata)?.into_message()));
        }
        let bad = |e: String| Error::internal(format!("malformed Arrow IPC on a data link: {e}"));
        let message = root_as_message(&f.data_header).map_err(|e| bad(e.to_string()))?;
        // Arrow's reader slices the body where the header says its buffers are and panics
        // when that is past the end: a peer's (or a damaged) header must not get that far.
        if let Some(rb) = message.header_as_record_batch() {
            let body = f.data_body.len() as i64;
            let fits = |offset: i64, length: i64| {
                offset >= 0
                    && length >= 0
                    && offset.checked_add(length).is_some_and(|end| end <= body)
            };
            if !fits(0, message.bodyLength()) {
                return Err(bad(format!(
                    "the batch's header says its body is {} bytes, {body} arrived",
                    message.bodyLength()
                )));
            }
            if let Some(b) = rb
                .buffers()
                .into_iter()
                .flatten()
                .find(|b| !fits(b.offset(), b.length()))
            {
                return Err(bad(format!(
                    "a buffer at {}..+{} lies outside the {body}-byte body",
                    b.offset(),
                    b.length()
                )));
            }
        }
        match message.header_type() {
            MessageHeader::Schema => {
                self.schema = Some(Arc::new(Schema::try_from(f)?));
                Ok(None)
            }
            MessageHeader::RecordBatch => {
                let schema = self
                    .schema
                    .clone()
                    .ok_or_else(|| bad("a batch before its schema".into()))?;
                Ok(Some(Message::Data(flight_data_to_arrow_batch(
                    f,
                    schema,
                    &HashMap::new(),
                )?)))
            }
            other => Err(bad(format!("unexpected {other:?} message"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;
    use crate::checkpoint::BarrierKind;

    /// Records and signals in one stream come out in the order they went in, with the
    /// batches equal.
    #[test]
    fn batches_and_signals_keep_their_order_through_encoding() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]));
        let batch = |n: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(0..n)),
                    Arc::new(StringArray::from_iter(
                        (0..n).map(|i| (i % 3 != 0).then(|| format!("s{i}"))),
                    )),
                    Arc::new(Float64Array::from_iter(
                        (0..n).map(|i| Some(i as f64 / 2.0)),
                    )),
                ],
            )
            .unwrap()
        };
        let sent = vec![
            Message::Watermark(5),
            Message::Data(batch(10)),
            Message::Barrier(Barrier {
                id: CheckpointId(3),
                kind: BarrierKind::Checkpoint,
            }),
            Message::Data(batch(0)),
            Message::Data(batch(1000)),
            Message::Idle,
            Message::End,
        ];
        let mut enc = BatchEncoder::default();
        let mut frames = vec![
            hello(&Hello::Control {
                incarnation: "i".into(),
                pod: 1,
            })
            .unwrap(),
        ];
        for m in &sent {
            match m {
                Message::Data(b) => frames.extend(enc.encode(b).unwrap()),
                m => frames.push(meta(&Signal::of(m).unwrap()).unwrap()),
            }
        }
        assert_eq!(
            parse_hello(&frames[0]).unwrap(),
            Hello::Control {
                incarnation: "i".into(),
                pod: 1
            }
        );
        let mut dec = Decoder::default();
        let got: Vec<Message> = frames[1..]
            .iter()
            .filter_map(|f| dec.decode(f).unwrap())
            .collect();
        assert_eq!(got.len(), sent.len());
        for (g, s) in got.iter().zip(&sent) {
            match (g, s) {
                (Message::Data(a), Message::Data(b)) => assert_eq!(a, b),
                (a, b) => assert_eq!(Signal::of(a), Signal::of(b)),
            }
        }
    }
}
