//! A subtask's snapshot on its way to storage: captured on the task, then encoded (with its
//! checksum) and uploaded off it, so records flow again while a large state is written; the
//! acknowledgement reaches the coordinator when the state file exists (or with the reason it
//! does not, which fails the checkpoint, not the job).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Barrier;
use super::layout::Layout;
use super::messages::{Ack, LocalState, TaskEvent};
use super::metadata::{SinkCommittable, StateFileRef, TaskState, encode_state};
use super::parts::PartWriter;
use super::state::{Capture, Committable, DeferredState, StreamedState, WriteAheadData};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::storage::Storage;

/// A subtask's state at a barrier: what is plain data already (source positions), and each
/// operator's state as captured, still to be encoded ([`crate::operator::Operator::capture`]).
#[derive(Default)]
pub struct Snapshot {
    /// Source positions; operators and write-ahead rows are filled in on the way.
    pub state: TaskState,
    /// Captured operator state by operator id, in operator order.
    pub operators: Vec<(String, Capture)>,
}

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
    /// Told each operator's state size as it is encoded.
    pub sizes: StateSizes,
}

/// Told `(operator, task, size)` for each operator's state in a snapshot (the job points it
/// at its metrics; the checkpoint protocol does not know them).
#[derive(Clone)]
pub struct StateSizes(pub Arc<dyn StateSizeFn>);

/// What [`StateSizes`] calls: `(operator, task, size)`.
pub trait StateSizeFn: Fn(&str, TaskId, StateSize) + Send + Sync {}

impl<F: Fn(&str, TaskId, StateSize) + Send + Sync> StateSizeFn for F {}

/// One operator's state in one subtask at a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Bytes the checkpoint holds of it (encoded keyed state, or the store's files).
    pub checkpoint: u64,
    /// Of those, bytes this checkpoint uploaded: all of keyed state; for a store, the tables
    /// storage lacked and its small files.
    pub uploaded: u64,
    /// A store's size at the barrier: `(table files on local disk, write buffers in memory)`.
    pub local: Option<(u64, u64)>,
}

impl StateSize {
    /// State encoded and stored whole by this checkpoint (keyed state, inline or in parts).
    #[must_use]
    pub fn encoded(bytes: u64) -> Self {
        Self {
            checkpoint: bytes,
            uploaded: bytes,
            local: None,
        }
    }
}

impl StateSizes {
    /// Told nothing.
    #[must_use]
    pub fn ignored() -> Self {
        Self(Arc::new(|_, _, _| {}))
    }
}

impl std::fmt::Debug for StateSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSizes")
    }
}

impl Uploader {
    /// Encodes the `snapshot` of `task` for barrier `b` and uploads it, both in the background; then acknowledges `b` on `events` with
    /// the file (or the encoding or upload error) and `committables`. The rows of write-ahead
    /// committables go into the state file; `_metadata` will hold only their size and
    /// checksum.
    pub fn upload(
        &self,
        task: TaskId,
        b: Barrier,
        snapshot: Snapshot,
        committables: Vec<SinkCommittable>,
        alignment: Duration,
        events: mpsc::UnboundedSender<TaskEvent>,
    ) {
        let Snapshot {
            mut state,
            operators: captured,
        } = snapshot;
        state.write_ahead = committables
            .iter()
            .filter_map(|c| match &c.committable {
                Committable::WriteAhead(w) => Some(WriteAheadData {
                    sink: c.sink.clone(),
                    checkpoint: w.checkpoint,
                    data: w.data.to_vec(),
                }),
                _ => None,
            })
            .collect();
        let up = self.clone();
        let sizes = self.sizes.clone();
        let alignment_ms = alignment.as_millis() as u64;
        tokio::spawn(async move {
            let file = Layout::state_file(task, up.generation);
            let dir = up.layout.checkpoint_dir(&up.job_id, b.id);
            let key = Layout::file_in(&dir, &file);
            // Disk stores first: their new tables go to storage on their own, and the state
            // file refers to them.
            let mut keyed = Vec::new();
            let mut streamed = Vec::new();
            let mut shared = Vec::new();
            let (mut shared_bytes, mut uploaded_bytes) = (0, 0);
            let mut local_state = None;
            let mut disk_err = None;
            for (id, c) in captured {
                match c {
                    Capture::Keyed(d) => keyed.push((id, d)),
                    Capture::Streamed(d) => streamed.push((id, d)),
                    Capture::Disk(d) => {
                        let local = d.local;
                        local_state = LocalState::sum([
                            local_state,
                            Some(LocalState {
                                disk_bytes: local.0,
                                memory_bytes: local.1,
                            }),
                        ]);
                        let shared_dir = up.layout.shared_dir(&up.job_id);
                        match crate::state::upload::upload(&up.storage, &shared_dir, d, b.id).await
                        {
                            Ok((snap, sent)) => {
                                let tables: u64 = snap.tables.iter().map(|t| t.size).sum();
                                (sizes.0)(
                                    &id,
                                    task,
                                    StateSize {
                                        checkpoint: sent.total_bytes,
                                        // The small files travel in the state file;
                                        // tables sent ahead since the last barrier count.
                                        uploaded: sent.total_bytes - tables
                                            + sent.new_bytes
                                            + sent.ahead_bytes,
                                        local: Some(local),
                                    },
                                );
                                shared_bytes += tables;
                                uploaded_bytes += sent.new_bytes + sent.ahead_bytes;
                                shared.extend(snap.tables.iter().map(|t| t.object.clone()));
                                state.disk.push(snap);
                            }
                            Err(e) => {
                                disk_err.get_or_insert(format!("uploading the state of {id}: {e}"));
                            }
                        }
                    }
                }
            }
            let parts = Parts {
                storage: up.storage.clone(),
                runtime: tokio::runtime::Handle::current(),
                dir,
                state_file: file.clone(),
            };
            let encoded = match disk_err {
                Some(e) => Err(e),
                None => tokio::task::spawn_blocking(move || {
                    let parts_bytes = stream(task, &mut state, streamed, &parts, &sizes)?;
                    encode(task, state, keyed, &sizes).map(|b| (b, parts_bytes))
                })
                .await
                .map_err(|e| format!("encoding the state of {task}: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string())),
            };
            let state = match encoded {
                Ok((bytes, parts_bytes)) => {
                    let crc32 = crc32fast::hash(&bytes);
                    let size = bytes.len() as u64;
                    crate::fault::point("during-upload", b.id);
                    up.storage
                        .put(&key, Bytes::from(bytes))
                        .await
                        .map(|()| StateFileRef {
                            task,
                            file,
                            size,
                            crc32,
                            shared,
                            shared_bytes,
                            uploaded_bytes,
                            parts_bytes,
                        })
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            let _ = events.send(TaskEvent::Ack(Ack {
                barrier: b,
                task,
                state,
                committables,
                alignment_ms,
                local: local_state,
            }));
        });
    }
}

/// Where a subtask's streamed state goes: parts beside its state file.
struct Parts {
    storage: Storage,
    runtime: tokio::runtime::Handle,
    dir: String,
    state_file: String,
}

/// Stream each operator's state into parts, stored as they fill and listed in `state`; returns
/// their bytes. Runs on a blocking thread.
fn stream(
    task: TaskId,
    state: &mut TaskState,
    captured: Vec<(String, StreamedState)>,
    to: &Parts,
    sizes: &StateSizes,
) -> Result<u64> {
    let mut total = 0;
    for (id, encode_operator) in captured {
        let mut writer = PartWriter::new(
            &to.storage,
            to.runtime.clone(),
            &to.dir,
            &to.state_file,
            &id,
        );
        encode_operator(&mut |kg, piece| writer.piece(kg, piece))?;
        let parts = writer.finish()?;
        let bytes = parts.iter().map(|p| p.size).sum();
        (sizes.0)(&id, task, StateSize::encoded(bytes));
        total += bytes;
        state.parts.extend(parts);
    }
    Ok(total)
}

/// Encode the captured operator state into `state`, then the whole of it.
fn encode(
    task: TaskId,
    mut state: TaskState,
    captured: Vec<(String, DeferredState)>,
    sizes: &StateSizes,
) -> Result<Vec<u8>> {
    for (id, encode_operator) in captured {
        let keyed = encode_operator()?;
        let bytes = keyed.iter().map(|(_, b)| b.len() as u64).sum();
        (sizes.0)(&id, task, StateSize::encoded(bytes));
        state.operators.push((id, keyed));
    }
    encode_state(&state).map_err(|e| Error::State {
        operator: task.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;
    use crate::checkpoint::metadata::{CheckpointMetadata, decode_state, encode_metadata};
    use crate::checkpoint::restore;
    use crate::checkpoint::state::WriteAhead;
    use crate::checkpoint::{Barrier, BarrierKind};
    use crate::ids::CheckpointId;

    async fn uploader(dir: &std::path::Path) -> Uploader {
        let uri = format!("file://{}", dir.display());
        Uploader {
            storage: Storage::open(&uri, &weir_crds::S3Spec::default())
                .await
                .unwrap(),
            layout: Layout::new("ns", "job"),
            job_id: "lineage".into(),
            generation: 1,
            sizes: StateSizes::ignored(),
        }
    }

    /// Uploads one subtask's snapshot with a write-ahead committable of `rows_bytes` bytes
    /// and completes checkpoint 1 with it, as the coordinator does.
    async fn checkpoint_with_rows(up: &Uploader, data: Vec<u8>) -> (String, CheckpointMetadata) {
        let task = TaskId {
            stage: 1,
            subtask: 0,
        };
        let b = Barrier {
            id: CheckpointId(1),
            kind: BarrierKind::Checkpoint,
        };
        let committable = SinkCommittable {
            sink: "sink-0".into(),
            checkpoint: CheckpointId(1),
            subtask: 0,
            committable: Committable::WriteAhead(WriteAhead::new(1, 0, "tok".into(), 3, data)),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        up.upload(
            task,
            b,
            Snapshot::default(),
            vec![committable],
            Duration::ZERO,
            tx,
        );
        let Some(TaskEvent::Ack(ack)) = rx.recv().await else {
            panic!("no ack");
        };
        let meta = CheckpointMetadata {
            job: "job".into(),
            job_id: "lineage".into(),
            generation: 1,
            id: CheckpointId(1),
            kind: BarrierKind::Checkpoint,
            parallelism: 1,
            max_parallelism: 8,
            completed_at_ms: 0,
            duration_ms: 0,
            state_files: vec![ack.state.unwrap()],
            committables: ack.committables,
            operators: Vec::new(),
            sources: Vec::new(),
        };
        let dir = up.layout.checkpoint_dir(&up.job_id, CheckpointId(1));
        let bytes = encode_metadata(&meta).unwrap();
        up.storage
            .put(&Layout::metadata_in(&dir), Bytes::from(bytes))
            .await
            .unwrap();
        (dir, meta)
    }

    #[tokio::test]
    async fn write_ahead_rows_travel_in_the_state_file_not_in_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let up = uploader(tmp.path()).await;
        let rows: Vec<u8> = b"{\"k\":\"marker-row\",\"v\":1}\n".repeat(4_000);
        let (dir, meta) = checkpoint_with_rows(&up, rows.clone()).await;

        let encoded = encode_metadata(&meta).unwrap();
        assert!(
            encoded.len() < 2_048,
            "_metadata is {} bytes for {} bytes of rows: the rows went into it",
            encoded.len(),
            rows.len()
        );
        assert!(!String::from_utf8_lossy(&encoded).contains("marker-row"));

        let restored = restore::load(&up.storage, &dir).await.unwrap();
        let [c] = restored.metadata.committables.as_slice() else {
            panic!("one committable expected");
        };
        let Committable::WriteAhead(w) = &c.committable else {
            panic!("write-ahead committable expected, got {c:?}");
        };
        assert_eq!(w.data.as_ref(), rows.as_slice(), "restored rows differ");
        assert_eq!((w.rows, w.token.as_str()), (3, "tok"));
    }

    #[tokio::test]
    async fn a_state_file_without_the_promised_rows_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let up = uploader(tmp.path()).await;
        let (dir, mut meta) = checkpoint_with_rows(&up, b"{\"k\":1}\n".to_vec()).await;

        // The state file is intact (its CRC matches) but lacks the rows `_metadata` promises.
        let file = &mut meta.state_files[0];
        let key = Layout::file_in(&dir, &file.file);
        let mut state = decode_state(&up.storage.get(&key).await.unwrap().unwrap()).unwrap();
        assert_eq!(
            state.write_ahead.len(),
            1,
            "the uploader did not store the rows"
        );
        state.write_ahead.clear();
        let bytes = encode_state(&state).unwrap();
        file.crc32 = crc32fast::hash(&bytes);
        file.size = bytes.len() as u64;
        up.storage.put(&key, Bytes::from(bytes)).await.unwrap();
        let meta_bytes = encode_metadata(&meta).unwrap();
        up.storage
            .put(&Layout::metadata_in(&dir), Bytes::from(meta_bytes))
            .await
            .unwrap();

        let err = restore::load(&up.storage, &dir).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("write-ahead rows of sink sink-0 for checkpoint 1 from subtask 0"),
            "{msg}"
        );

        // Rows that differ from what `_metadata` recorded are refused too.
        state.write_ahead.push(WriteAheadData {
            sink: "sink-0".into(),
            checkpoint: 1,
            data: b"{\"k\":2}\n".to_vec(),
        });
        let bytes = encode_state(&state).unwrap();
        meta.state_files[0].crc32 = crc32fast::hash(&bytes);
        meta.state_files[0].size = bytes.len() as u64;
        up.storage.put(&key, Bytes::from(bytes)).await.unwrap();
        up.storage
            .put(
                &Layout::metadata_in(&dir),
                Bytes::from(encode_metadata(&meta).unwrap()),
            )
            .await
            .unwrap();
        let msg = restore::load(&up.storage, &dir)
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains("checksum mismatch"), "{msg}");
    }
}
