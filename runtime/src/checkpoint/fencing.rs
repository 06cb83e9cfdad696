//! Zombie fencing in storage.
//!
//! Every incarnation of a job claims the next generation number by *creating*
//! `_generations/gen-<g+1>` (conditional create; exactly one claimant wins). Before it writes
//! any `_metadata`, an incarnation checks that `gen-<mine+1>` does not exist: once a successor
//! has claimed, the older incarnation can no longer complete a checkpoint.
//!
//! Between that check and the `_metadata` write there is a short window. It is closed by
//! `_metadata` itself being a conditional create at a path both incarnations share
//! (`<jobId>/chk-<n>/_metadata`): if the zombie wins checkpoint `n`, the successor's create of
//! `n` fails, and it stops instead of diverging; the next start restores from `n`, which is
//! consistent with whatever the zombie committed. Claims use create-only objects rather than
//! `If-Match` on one object, so storage needs a single conditional primitive.
//!
//! If the successor has not reached `n` yet, the zombie's `_metadata` for `n` is created, but
//! the zombie never commits it (it checks its generation again after the write and is
//! fenced), and the successor has already aborted or cleaned up what that checkpoint's sinks
//! prepared. Such a checkpoint must never be restored. So each incarnation records, after it
//! listed the lineage and before its sinks touch anything, the first checkpoint id it will
//! use ([`record_first`]); a checkpoint at or above a generation's first id, written by an
//! older generation, is a zombie's ([`zombie`]) and restore passes over it.
//!
//! # Assumptions
//! Storage gives read-after-write consistency and atomic conditional create; this is probed at
//! start for exactly-once jobs and the job is refused when missing.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::storage::Storage;

/// Contents of a generation claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    /// The number claimed.
    pub generation: u64,
    /// Lineage this incarnation writes checkpoints into.
    pub job_id: String,
    /// Checkpoint or savepoint URI it restored from, if any.
    pub restored_from: Option<String>,
    /// Id of the `--start-from` request that began this lineage; later incarnations given
    /// the same id continue the lineage instead of starting over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_id: Option<String>,
    /// Host and pid, for humans.
    pub writer: String,
    /// Claim time, ms since epoch.
    pub claimed_at_ms: i64,
}

/// The newest existing claim, if any.
///
/// # Errors
/// Storage errors, or an unreadable claim object.
pub async fn latest(storage: &Storage, layout: &Layout) -> Result<Option<Generation>> {
    let keys = storage.list(&layout.generations()).await?;
    let Some(g) = keys
        .iter()
        .filter_map(|k| Layout::parse_generation(k))
        .max()
    else {
        return Ok(None);
    };
    read(storage, layout, g).await
}

async fn read(storage: &Storage, layout: &Layout, g: u64) -> Result<Option<Generation>> {
    let key = layout.generation(g);
    let Some(bytes) = storage.get(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Restore(format!(
            "generation claim {} is unreadable: {e}",
            storage.uri(&key)
        ))
    })
}

/// Claim the generation after the newest one. `make` fills in the claim for a number; it is
/// called again if another incarnation wins the race for that number.
///
/// # Errors
/// Storage errors.
pub async fn claim(
    storage: &Storage,
    layout: &Layout,
    make: impl Fn(u64) -> Generation,
) -> Result<Generation> {
    loop {
        let next = latest(storage, layout)
            .await?
            .map_or(1, |g| g.generation + 1);
        let claim = make(next);
        let body = serde_json::to_vec_pretty(&claim).map_err(|e| Error::internal(e.to_string()))?;
        if storage
            .put_if_absent(&layout.generation(next), Bytes::from(body))
            .await?
        {
            tracing::info!(generation = next, job_id = %claim.job_id, "claimed storage generation");
            return Ok(claim);
        }
        tracing::warn!(
            generation = next,
            "another incarnation claimed this generation first; retrying"
        );
    }
}

/// Records that generation `g` takes checkpoint ids from `first` on. Written after the lineage
/// was listed and before any sink recovers, aborts or fences anything.
///
/// # Errors
/// Storage errors.
pub async fn record_first(
    storage: &Storage,
    layout: &Layout,
    g: u64,
    first: CheckpointId,
) -> Result<()> {
    storage
        .put(&layout.generation_first(g, first), Bytes::new())
        .await?;
    Ok(())
}

/// Every generation's recorded first checkpoint id.
///
/// # Errors
/// Storage errors.
pub async fn firsts(storage: &Storage, layout: &Layout) -> Result<Vec<(u64, CheckpointId)>> {
    Ok(storage
        .list(&layout.generations())
        .await?
        .iter()
        .filter_map(|k| Layout::parse_generation_first(k))
        .collect())
}

/// The newer generation that had begun at or below checkpoint `id` when generation `by`
/// completed it: then `by` was a zombie, never committed it, and its sinks' work was undone.
#[must_use]
pub fn zombie(firsts: &[(u64, CheckpointId)], id: CheckpointId, by: u64) -> Option<u64> {
    firsts
        .iter()
        .filter(|(g, first)| *g > by && *first <= id)
        .map(|(g, _)| *g)
        .min()
}

/// Fail with [`Error::Fenced`] when a successor has claimed a newer generation.
///
/// # Errors
/// [`Error::Fenced`], or storage errors.
pub async fn ensure_current(storage: &Storage, layout: &Layout, mine: u64) -> Result<()> {
    if storage.get(&layout.generation(mine + 1)).await?.is_some() {
        let newer = latest(storage, layout)
            .await?
            .map_or(mine + 1, |g| g.generation);
        return Err(Error::Fenced { mine, newer });
    }
    Ok(())
}
