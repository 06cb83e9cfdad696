//! A subtask's snapshot on its way to storage: encoded (with its checksum) on the task, then
//! uploaded off the hot path; the acknowledgement reaches the coordinator when the state file
//! exists (or with the reason it does not).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Barrier;
use super::layout::Layout;
use super::messages::{Ack, TaskEvent};
use super::metadata::{SinkCommittable, StateFileRef, TaskState, encode_state};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::storage::Storage;

/// Where this incarnation's snapshots go.
#[derive(Debug, Clone)]
pub struct Uploader {
    /// Checkpoint storage.
    pub storage: Storage,
    /// Paths.
    pub layout: Layout,
    /// Lineage.
    pub job_id: String,
    /// This incarnation's generation.
    pub generation: u64,
}

impl Uploader {
    /// Encodes `state` of `task` for barrier `b` now, uploads it in the background, then
    /// acknowledges `b` on `events` with the file (or the upload error) and `committables`.
    ///
    /// # Errors
    /// State that cannot be encoded (the task fails).
    pub fn upload(
        &self,
        task: TaskId,
        b: Barrier,
        state: &TaskState,
        committables: Vec<SinkCommittable>,
        alignment: Duration,
        events: mpsc::UnboundedSender<TaskEvent>,
    ) -> Result<()> {
        let bytes = encode_state(state).map_err(|e| Error::State {
            operator: task.to_string(),
            message: e.to_string(),
        })?;
        let up = self.clone();
        let alignment_ms = alignment.as_millis() as u64;
        tokio::spawn(async move {
            let file = Layout::state_file(task, up.generation);
            let key = Layout::file_in(&up.layout.checkpoint_dir(&up.job_id, b.id), &file);
            let crc32 = crc32fast::hash(&bytes);
            let size = bytes.len() as u64;
            crate::fault::point("during-upload", b.id);
            let state = up
                .storage
                .put(&key, Bytes::from(bytes))
                .await
                .map(|()| StateFileRef {
                    task,
                    file,
                    size,
                    crc32,
                })
                .map_err(|e| e.to_string());
            let _ = events.send(TaskEvent::Ack(Ack {
                barrier: b,
                task,
                state,
                committables,
                alignment_ms,
            }));
        });
        Ok(())
    }
}
