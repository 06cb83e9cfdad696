//! Shared tables (of `disk` state) no kept checkpoint refers to any more: what retention deletes
//! ([`unreferenced`], pure), and the start-up sweep of uploads no checkpoint completed ([`sweep`]).
//!
//! Only tables that a deleted checkpoint referred to are candidates. Such a table that no
//! newer completed checkpoint refers to had left its store before that checkpoint was taken,
//! and a store never takes a table back, so no checkpoint in flight can refer to it either.
//! A table uploaded by an attempt that never completed is no candidate: it may be the one the
//! next checkpoint refers to. Those are swept when a job starts ([`sweep`]), before any
//! subtask of it can upload.

use std::collections::BTreeSet;

use crate::checkpoint::metadata::CheckpointMetadata;

/// Tables referred to by `deleted` and by none of `kept`.
#[must_use]
pub fn unreferenced(
    deleted: &[CheckpointMetadata],
    kept: &[CheckpointMetadata],
) -> BTreeSet<String> {
    let shared = |m: &CheckpointMetadata| {
        m.state_files
            .iter()
            .flat_map(|f| f.shared.iter().cloned())
            .collect::<Vec<_>>()
    };
    let mut out: BTreeSet<String> = deleted.iter().flat_map(shared).collect();
    for m in kept {
        for t in shared(m) {
            out.remove(&t);
        }
    }
    out
}

/// At start, before any subtask runs: delete every table under the lineage's `shared/`
/// directory that no completed checkpoint of the lineage refers to (uploads of attempts that
/// never completed, of incarnations that died mid-checkpoint). A checkpoint whose `_metadata`
/// does not read makes the sweep stop without deleting anything: its tables are unknown.
///
/// # Errors
/// Storage errors.
pub async fn sweep(
    storage: &crate::storage::Storage,
    layout: &crate::checkpoint::layout::Layout,
    job_id: &str,
) -> crate::error::Result<usize> {
    use crate::checkpoint::layout::Layout;
    let shared_dir = layout.shared_dir(job_id);
    let stored = storage.list(&shared_dir).await?;
    if stored.is_empty() {
        return Ok(0);
    }
    let dirs = crate::checkpoint::restore::list(storage, layout, job_id).await?;
    let mut referenced = BTreeSet::new();
    for (id, _) in dirs.iter().filter(|(_, done)| **done) {
        let meta_key = Layout::metadata_in(&layout.checkpoint_dir(job_id, *id));
        let Some(meta) = storage
            .get(&meta_key)
            .await?
            .and_then(|b| crate::checkpoint::metadata::decode_metadata(&b).ok())
        else {
            return Ok(0);
        };
        referenced.extend(meta.state_files.into_iter().flat_map(|f| f.shared));
    }
    let mut deleted = 0;
    for object in stored.iter().filter(|o| !referenced.contains(*o)) {
        storage.delete_prefix(object).await?;
        deleted += 1;
    }
    if deleted > 0 {
        tracing::info!(tables = deleted, dir = %storage.uri(&shared_dir), "deleted shared state tables of checkpoints that never completed");
    }
    Ok(deleted)
}
