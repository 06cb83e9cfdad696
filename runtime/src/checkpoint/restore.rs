//! Finding and loading the checkpoint to restore from.
//!
//! With no explicit path, the newest completed checkpoint of the current lineage wins: its
//! `_metadata` and every state file it names are checked against their CRCs. One that does not
//! verify is reported naming the file, and the start is refused: sinks may have committed its
//! output, which an older checkpoint would write again. Skipping to the one before is the
//! user's explicit choice (`--skip-unreadable-checkpoints`).
//! Redistribution at another parallelism is pure: source splits go to `split % parallelism`,
//! keyed state to the subtask owning each key group.

use std::collections::BTreeMap;
use std::ops::Range;

use super::layout::{Layout, SINKS_COMMITTED};
use super::metadata::{CheckpointMetadata, TaskState, decode_metadata, decode_state, verify};
use super::state::{Committable, KeyedState, SplitState, StatePart};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, TaskId};
use crate::storage::Storage;

/// A verified checkpoint, loaded.
#[derive(Debug, Clone)]
pub struct Restored {
    /// URI of its directory (what `--restore-from` takes).
    pub uri: String,
    /// Its `_metadata`.
    pub metadata: CheckpointMetadata,
    /// State per subtask that wrote it.
    pub tasks: Vec<(TaskId, TaskState)>,
    /// Where it is: the storage and directory its state parts are read from.
    pub storage: Storage,
    /// Its directory within `storage` (a prefix ending in `/`, or `""`).
    pub dir: String,
}

impl Restored {
    /// Source positions for a new source subtask: the splits it now owns.
    #[must_use]
    pub fn splits_for(&self, stage: u32, owned: &[u32]) -> Vec<SplitState> {
        let all: BTreeMap<u32, SplitState> = self
            .all_splits(stage)
            .into_iter()
            .map(|sp| (sp.split, sp))
            .collect();
        owned
            .iter()
            .map(|s| all.get(s).copied().unwrap_or_else(|| SplitState::new(*s)))
            .collect()
    }

    /// Every split position of the source stage `stage` in the checkpoint, whichever
    /// subtask held it (each source has its own splits, numbered from 0).
    #[must_use]
    pub fn all_splits(&self, stage: u32) -> Vec<SplitState> {
        self.tasks
            .iter()
            .filter(|(t, _)| t.stage == stage)
            .flat_map(|(_, s)| s.splits.iter().copied())
            .collect()
    }

    /// Keyed state of `operator` in the key groups `range`, from whichever subtasks wrote it.
    #[must_use]
    pub fn keyed_for(&self, operator: &str, range: &Range<u32>) -> KeyedState {
        self.tasks
            .iter()
            .flat_map(|(_, s)| s.operators.iter())
            .filter(|(id, _)| id == operator)
            .flat_map(|(_, groups)| groups.iter().filter(|(kg, _)| range.contains(kg)).cloned())
            .collect()
    }

    /// Parts of `operator`'s streamed state that hold key groups of `range`, to be read one at
    /// a time ([`super::parts::read`]).
    #[must_use]
    pub fn parts_for(&self, operator: &str, range: &Range<u32>) -> Vec<&StatePart> {
        self.tasks
            .iter()
            .flat_map(|(_, s)| s.parts.iter())
            .filter(|p| {
                p.operator == operator && p.first_group < range.end && p.last_group >= range.start
            })
            .collect()
    }

    /// Checkpoints of `operator`'s disk stores that hold key groups of `range`.
    #[must_use]
    pub fn disk_for(
        &self,
        operator: &str,
        range: &Range<u32>,
    ) -> Vec<&crate::state::files::DiskSnapshot> {
        self.tasks
            .iter()
            .flat_map(|(_, s)| s.disk.iter())
            .filter(|d| {
                d.operator == operator && d.first_group < range.end && d.last_group >= range.start
            })
            .collect()
    }

    /// Operator ids that carry state in this checkpoint.
    #[must_use]
    pub fn stateful_operators(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks
            .iter()
            .flat_map(|(_, s)| {
                s.operators
                    .iter()
                    .filter(|(_, g)| !g.is_empty())
                    .map(|(id, _)| id.clone())
                    .chain(s.disk.iter().map(|d| d.operator.clone()))
                    .chain(s.parts.iter().map(|p| p.operator.clone()))
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Load and verify the checkpoint whose directory is `dir` (a prefix ending in `/`).
///
/// # Errors
/// [`Error::Restore`] naming the missing or corrupt file.
pub async fn load(storage: &Storage, dir: &str) -> Result<Restored> {
    let r = load_files(storage, dir).await?;
    check_shared_tables(storage, &r.tasks).await?;
    Ok(r)
}

/// [`load`] but for the shared tables of disk state, which live beside the checkpoints of the
/// job that wrote them, not in the checkpoint's directory.
async fn load_files(storage: &Storage, dir: &str) -> Result<Restored> {
    let meta_key = Layout::metadata_in(dir);
    let bytes = storage.get(&meta_key).await?.ok_or_else(|| {
        Error::Restore(format!(
            "{} does not exist (not a completed checkpoint or savepoint)",
            storage.uri(&meta_key)
        ))
    })?;
    let metadata = decode_metadata(&bytes)
        .map_err(|e| Error::Restore(format!("corrupt {}: {e}", storage.uri(&meta_key))))?;
    let mut tasks = Vec::with_capacity(metadata.state_files.len());
    for f in &metadata.state_files {
        let key = Layout::file_in(dir, &f.file);
        let bytes = storage.get(&key).await?.ok_or_else(|| {
            Error::Restore(format!("state file {} is missing", storage.uri(&key)))
        })?;
        verify(&bytes, f.crc32, f.size).map_err(|e| {
            Error::Restore(format!("corrupt state file {}: {e}", storage.uri(&key)))
        })?;
        let state = decode_state(&bytes).map_err(|e| {
            Error::Restore(format!("corrupt state file {}: {e}", storage.uri(&key)))
        })?;
        tasks.push((f.task, state));
    }
    // Parts are read one at a time while restoring; one missing is found before anything is.
    if tasks.iter().any(|(_, s)| !s.parts.is_empty()) {
        let listed = storage.list(dir).await?.into_iter().collect();
        let parts = tasks.iter().flat_map(|(_, s)| s.parts.iter());
        let missing = super::parts::missing(storage, dir, parts, &listed);
        if let Some(first) = missing.first() {
            return Err(Error::Restore(format!(
                "state part {first} is missing ({} of the parts its state files list)",
                missing.len()
            )));
        }
    }
    let mut metadata = metadata;
    attach_write_ahead(&mut metadata, &mut tasks)
        .map_err(|m| Error::Restore(format!("checkpoint {}: {m}", storage.uri(dir))))?;
    Ok(Restored {
        uri: storage.uri(dir),
        metadata,
        tasks,
        storage: storage.clone(),
        dir: dir.to_string(),
    })
}

/// Every table file the checkpoint's disk state refers to is in storage (listed once per
/// directory; their bytes are checked against the recorded CRC when a subtask downloads them),
/// so that a checkpoint missing one counts as unreadable before anything is restored.
async fn check_shared_tables(storage: &Storage, tasks: &[(TaskId, TaskState)]) -> Result<()> {
    let mut by_dir: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (_, s) in tasks {
        for d in &s.disk {
            for t in &d.tables {
                let dir = t.object.rfind('/').map_or("", |i| &t.object[..=i]);
                by_dir
                    .entry(dir)
                    .or_default()
                    .push((t.object.as_str(), d.operator.as_str()));
            }
        }
    }
    for (dir, tables) in by_dir {
        let present: std::collections::BTreeSet<String> =
            storage.list(dir).await?.into_iter().collect();
        if let Some((object, operator)) = tables.iter().find(|(o, _)| !present.contains(*o)) {
            return Err(Error::Restore(format!(
                "table {} of {operator}'s state on disk is missing",
                storage.uri(object)
            )));
        }
    }
    Ok(())
}

/// Puts the rows of every write-ahead committable back, from the state file of the subtask
/// that wrote them, and checks them against the size and CRC `_metadata` recorded: a restore
/// must commit exactly the rows the checkpoint promised or refuse the checkpoint.
fn attach_write_ahead(
    meta: &mut CheckpointMetadata,
    tasks: &mut [(TaskId, TaskState)],
) -> std::result::Result<(), String> {
    let mut stored: BTreeMap<(String, u64, u32), Vec<u8>> = BTreeMap::new();
    for (task, state) in tasks.iter_mut() {
        for d in std::mem::take(&mut state.write_ahead) {
            stored.insert((d.sink, d.checkpoint, task.subtask), d.data);
        }
    }
    for c in &mut meta.committables {
        let Committable::WriteAhead(w) = &mut c.committable else {
            continue;
        };
        let what = || {
            format!(
                "the write-ahead rows of sink {} for checkpoint {} from subtask {}",
                c.sink, w.checkpoint, c.subtask
            )
        };
        let data = stored
            .remove(&(c.sink.clone(), w.checkpoint, c.subtask))
            .ok_or_else(|| format!("{} are in no state file", what()))?;
        verify(&data, w.crc32, w.bytes).map_err(|e| format!("{}: {e}", what()))?;
        w.data = bytes::Bytes::from(data);
    }
    Ok(())
}

/// Completed and incomplete checkpoint directories of a lineage.
///
/// # Errors
/// Storage errors.
pub async fn list(
    storage: &Storage,
    layout: &Layout,
    job_id: &str,
) -> Result<BTreeMap<CheckpointId, bool>> {
    let mut dirs = BTreeMap::new();
    for key in storage.list(&layout.checkpoints(job_id)).await? {
        if let Some((id, is_meta)) = Layout::parse_checkpoint(&key) {
            *dirs.entry(id).or_insert(false) |= is_meta;
        }
    }
    Ok(dirs)
}

/// The newest completed checkpoint of `job_id`; `Ok(None)` when the lineage has none.
///
/// A completed checkpoint may have had its output committed by the sinks already, so when the
/// newest one cannot be read, an older one is restored only when `skip_unreadable` (the
/// user's explicit choice); each one skipped is logged naming the file and why.
///
/// # Errors
/// Storage errors; [`Error::Unreadable`] when the newest completed checkpoint cannot be read
/// and `skip_unreadable` is off, naming the checkpoint, the reason and the choice; and
/// [`Error::Restore`] when every completed checkpoint is unreadable: starting empty then
/// would replay input whose results sinks already committed.
pub async fn newest(
    storage: &Storage,
    layout: &Layout,
    job_id: &str,
    skip_unreadable: bool,
) -> Result<Option<Restored>> {
    let dirs = list(storage, layout, job_id).await?;
    let completed: Vec<CheckpointId> = dirs
        .iter()
        .rev()
        .filter(|(_, done)| **done)
        .map(|(id, _)| *id)
        .collect();
    let firsts = super::fencing::firsts(storage, layout).await?;
    let mut skipped_unreadable = false;
    for id in &completed {
        match load(storage, &layout.checkpoint_dir(job_id, *id)).await {
            Ok(r) => {
                if let Some(newer) = super::fencing::zombie(&firsts, *id, r.metadata.generation) {
                    tracing::warn!(checkpoint = %id, generation = r.metadata.generation, newer_generation = newer, "passing over a checkpoint a fenced incarnation completed after its successor began: it was never committed, and its sinks' work was undone");
                    continue;
                }
                if skipped_unreadable {
                    tracing::warn!(checkpoint = %id, "restoring an older checkpoint than the newest, as --skip-unreadable-checkpoints allows: output committed after it may be written again");
                }
                return Ok(Some(r));
            }
            Err(Error::Restore(msg)) if skip_unreadable => {
                skipped_unreadable = true;
                tracing::error!(checkpoint = %id, "{msg}; trying the previous checkpoint (--skip-unreadable-checkpoints)");
            }
            Err(Error::Restore(msg)) => {
                return Err(Error::Unreadable(format!(
                    "the newest completed checkpoint, {id} ({}), cannot be read: {msg}. Its output may already be committed by the sinks, so restoring an older checkpoint could write it again; not restoring one without your say. Repair the file, or allow the older checkpoint with --skip-unreadable-checkpoints (StreamJob: spec.checkpoint.skipUnreadable: true)",
                    storage.uri(&layout.checkpoint_dir(job_id, *id))
                )));
            }
            Err(e) => return Err(e),
        }
    }
    if completed.is_empty() {
        return Ok(None);
    }
    Err(Error::Restore(format!(
        "all {} completed checkpoints under {} failed verification (errors above); refusing to start from nothing, which would repeat committed output. Start with --restore-from <checkpoint or savepoint URI>",
        completed.len(),
        storage.uri(&layout.checkpoints(job_id))
    )))
}

/// Load from a checkpoint or savepoint URI (`file://…/chk-7`, `s3://…/sp-7-abc`).
///
/// # Errors
/// [`Error::Restore`] naming the URI or the corrupt file.
pub async fn from_uri(uri: &str, s3: &weir_crds::S3Spec) -> Result<Restored> {
    let trimmed = uri.trim_end_matches('/');
    let storage = Storage::open(trimmed, s3).await?;
    let r = load_files(&storage, "").await?;
    if let Some(op) = r
        .tasks
        .iter()
        .flat_map(|(_, s)| &s.disk)
        .map(|d| &d.operator)
        .next()
    {
        return Err(Error::Restore(format!(
            "{trimmed} is a checkpoint of state on disk ({op}, stateBackend type disk), whose table files the checkpoints of its job share: it restores only as that job's own newest checkpoint. Start from a savepoint instead (a savepoint holds all state itself, for either backend)"
        )));
    }
    Ok(r)
}

/// Whether commit-phase recovery of the checkpoint at `uri` completed under a version that
/// recorded it inside the checkpoint (now it is recorded in the restoring job's directory,
/// `Layout::recovered`). Only read.
///
/// # Errors
/// Storage errors.
pub async fn sinks_committed_by_an_older_version(
    uri: &str,
    s3: &weir_crds::S3Spec,
) -> Result<bool> {
    let storage = Storage::open(uri.trim_end_matches('/'), s3).await?;
    Ok(storage.get(SINKS_COMMITTED).await?.is_some())
}
