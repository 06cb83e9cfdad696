//! The start-up half of the checkpoint protocol: which checkpoint a new incarnation restores,
//! which lineage it writes, the generation it claims, and the sink transactions it must
//! finish before anything writes.
//!
//! # Expected flow
//! 1. [`begin`]: for exactly-once jobs, probe that storage honours conditional creates.
//! 2. Choose: `--restore-from`, else a new lineage the operator asked for once
//!    ([`Start`]), else the newest valid checkpoint of the newest generation's lineage,
//!    else what that generation restored from, else nothing. Check that the state fits the job.
//! 3. Claim the next generation (fencing the previous incarnation).
//! 4. Re-read the lineage: a predecessor may have completed a newer checkpoint between the
//!    choice and the claim; it cannot complete another now, so the newest one seen after the
//!    claim is final.
//! 5. The caller runs each sink's commit-phase recovery with [`Startup::committables_for`],
//!    then [`Startup::sinks_recovered`] records that in this job's own directory, so a later
//!    restore of the same checkpoint skips it. Nothing is ever written into the restored
//!    checkpoint, which may be another job's.
//!
//! Sinks are the caller's: this module owns the protocol, not the connectors.

use super::compat::{self, Wanted};
use super::fencing::{self, Generation};
use super::layout::Layout;
use super::restore::{self, Restored};
use super::state::Committable;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::storage::Storage;

/// A one-time start of a new lineage (`--start-from`, `--start-empty`), as the operator asks
/// for after an upgrade. Unlike `--restore-from`, repeating it is safe: when the newest
/// generation was begun by the same `id`, the incarnation continues that lineage (its newest
/// checkpoint), so a pod that dies after the upgrade never goes back to the savepoint and
/// replays output its sinks already committed.
pub use weir_crds::control::Start;

/// What start-up needs to know about the job and how it was asked to start.
#[derive(Debug)]
pub struct StartupInput<'a> {
    /// Storage root as given (named in errors).
    pub storage_uri: &'a str,
    /// S3 settings for restore URIs.
    pub s3: &'a weir_crds::S3Spec,
    /// Whether the job promises exactly-once (needs conditional creates for fencing).
    pub exactly_once: bool,
    /// Key groups; a checkpoint taken with another number cannot be restored.
    pub max_parallelism: u32,
    /// What the job's state means, and what the user allows to be dropped.
    pub wanted: &'a Wanted,
    /// When the newest completed checkpoint cannot be read, restore an older one.
    pub skip_unreadable_checkpoints: bool,
    /// `--restore-from`.
    pub restore_from: Option<&'a str>,
    /// `--start-from/--start-id`.
    pub start: Option<&'a Start>,
}

/// A claimed incarnation and the checkpoint it restores.
#[derive(Debug)]
pub struct Startup {
    /// The restored checkpoint, if any.
    pub restored: Option<Restored>,
    /// Lineage this incarnation writes.
    pub job_id: String,
    /// The generation claimed.
    pub generation: u64,
    /// Id of the first checkpoint this incarnation takes (above every one of the lineage).
    pub first_checkpoint: CheckpointId,
    /// Whether the restored checkpoint's sink transactions were already finished by an
    /// earlier incarnation.
    sinks_done: bool,
    /// Key (in this job's storage) of the marker recording that they are.
    recovered_marker: Option<String>,
}

impl Startup {
    /// URI of the restored checkpoint, without a trailing `/`.
    #[must_use]
    pub fn restored_uri(&self) -> Option<String> {
        self.restored.as_ref().map(dir_uri)
    }

    /// The transactions sink `id` must commit before it writes (none when an earlier
    /// incarnation already did, or when nothing was restored).
    #[must_use]
    pub fn committables_for(&self, id: &str) -> Vec<Committable> {
        match &self.restored {
            Some(r) if !self.sinks_done => r
                .metadata
                .committables
                .iter()
                .filter(|x| x.sink == id)
                .map(|x| x.committable.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Records that every sink finished its commit-phase recovery for the restored checkpoint.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn sinks_recovered(&self, storage: &Storage) -> Result<()> {
        match &self.recovered_marker {
            Some(key) if !self.sinks_done => {
                storage
                    .put(key, bytes::Bytes::from(writer().into_bytes()))
                    .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The start of a pod that is not the coordinator of a multi-pod job: the coordinator ran
/// steps 1–5 for the whole job and names the checkpoint it restored; this pod loads the same
/// one (verified like any restore) to take its own subtasks' state from it.
///
/// # Errors
/// The checkpoint is missing or corrupt.
/// It makes the state fit the job as pod 0 did (the same deterministic [`compat::fit`]).
pub async fn join(
    restored: Option<&str>,
    s3: &weir_crds::S3Spec,
    wanted: &Wanted,
) -> Result<Option<Restored>> {
    match restored {
        Some(uri) => {
            tracing::info!(from = %uri, "restoring this pod's subtasks");
            let mut r = restore::from_uri(uri, s3).await?;
            compat::fit(&mut r, wanted)?;
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

/// Steps 1–4 of the flow above.
///
/// # Errors
/// Storage refused or unreachable, storage without conditional creates for an exactly-once
/// job, no usable restore point, or state that does not fit the job.
pub async fn begin(
    storage: &Storage,
    layout: &Layout,
    input: &StartupInput<'_>,
) -> Result<Startup> {
    if input.exactly_once
        && !storage
            .probe_conditional_writes(&layout.probe(&new_job_id()))
            .await?
    {
        return Err(Error::Restore(format!(
            "checkpoint storage {} does not honour conditional writes (If-None-Match: *); exactly-once jobs need them to fence a zombie incarnation. Use storage that has them (AWS S3, MinIO, moto, file://) or set checkpoint.exactlyOnce: false to give up that guarantee",
            input.storage_uri
        )));
    }
    let mut choice = choose(storage, layout, input).await?;
    if let Some(r) = &mut choice.restored {
        check_fits(r, input)?;
        tracing::info!(from = %r.uri, checkpoint = %r.metadata.id, taken_at_parallelism = r.metadata.parallelism, "restoring");
    }
    let restored_from = choice.restored.as_ref().map(dir_uri);
    let claimed = fencing::claim(storage, layout, |g| Generation {
        generation: g,
        job_id: choice.job_id.clone(),
        restored_from: restored_from.clone(),
        start_id: choice.start_id.clone(),
        writer: writer(),
        claimed_at_ms: 0,
    })
    .await?;
    // A predecessor that is still running may have completed a checkpoint between the choice
    // above and the claim. It cannot complete or commit another one now (it checks the
    // generation again after writing `_metadata`), so the newest checkpoint of the lineage
    // seen after the claim is final: restore that one, or output it committed would repeat.
    let highest_completed = restore::list(storage, layout, &choice.job_id)
        .await?
        .into_iter()
        .filter(|(_, done)| *done)
        .map(|(id, _)| id.0)
        .max()
        .unwrap_or(0);
    let chosen = choice.restored.as_ref().map_or(0, |r| r.metadata.id.0);
    let restored = match choice.restored {
        _ if choice.continuing && highest_completed > chosen => {
            let newer = restore::newest(
                storage,
                layout,
                &choice.job_id,
                input.skip_unreadable_checkpoints,
            )
            .await?;
            let mut newer = newer;
            if let Some(n) = &mut newer {
                tracing::warn!(checkpoint = %n.metadata.id, "a predecessor completed a newer checkpoint before this incarnation claimed its generation; restoring that one");
                check_fits(n, input)?;
            }
            newer
        }
        r => r,
    };
    let first_checkpoint = CheckpointId(
        restored
            .as_ref()
            .map_or(0, |r| r.metadata.id.0)
            .max(highest_completed)
            + 1,
    );
    // From here on, a checkpoint an older generation completes at or above `first_checkpoint`
    // is a zombie's: say so before any sink undoes what such a checkpoint prepared.
    fencing::record_first(storage, layout, claimed.generation, first_checkpoint).await?;
    let recovered_marker = restored.as_ref().map(|r| layout.recovered(&r.uri));
    let sinks_done = match (&restored, &recovered_marker) {
        (Some(r), Some(marker)) => {
            storage.get(marker).await?.is_some()
                || restore::sinks_committed_by_an_older_version(&r.uri, input.s3).await?
        }
        _ => false,
    };
    if sinks_done {
        tracing::info!("sinks of the restored checkpoint were committed by an earlier restore");
    }
    Ok(Startup {
        restored,
        job_id: choice.job_id,
        generation: claimed.generation,
        first_checkpoint,
        sinks_done,
        recovered_marker,
    })
}

/// Where a new incarnation starts: the restored checkpoint, the lineage it writes, and the
/// start id it records.
struct Choice {
    restored: Option<Restored>,
    job_id: String,
    start_id: Option<String>,
    /// Continues the previous generation's lineage (which a predecessor may still write).
    continuing: bool,
}

async fn choose(storage: &Storage, layout: &Layout, input: &StartupInput<'_>) -> Result<Choice> {
    let fresh = |restored, start_id| Choice {
        restored,
        job_id: new_job_id(),
        start_id,
        continuing: false,
    };
    if let Some(uri) = input.restore_from {
        let r = restore::from_uri(uri, input.s3).await?;
        return Ok(fresh(Some(r), None));
    }
    let prev = fencing::latest(storage, layout).await?;
    if let Some(start) = input.start {
        let continuing = prev
            .as_ref()
            .is_some_and(|p| p.start_id.as_deref() == Some(start.id.as_str()));
        if !continuing {
            let id = Some(start.id.clone());
            return match &start.from {
                Some(uri) => {
                    tracing::info!(from = %uri, start_id = %start.id, "starting a new lineage");
                    Ok(fresh(Some(restore::from_uri(uri, input.s3).await?), id))
                }
                None => {
                    tracing::info!(start_id = %start.id, "starting a new lineage with empty state");
                    Ok(fresh(None, id))
                }
            };
        }
    }
    let Some(prev) = prev else {
        return Ok(fresh(None, None));
    };
    let continue_with = |restored| Choice {
        restored,
        job_id: prev.job_id.clone(),
        start_id: prev.start_id.clone(),
        continuing: true,
    };
    if let Some(r) = restore::newest(
        storage,
        layout,
        &prev.job_id,
        input.skip_unreadable_checkpoints,
    )
    .await?
    {
        return Ok(continue_with(Some(r)));
    }
    if let Some(uri) = &prev.restored_from {
        tracing::info!(from = %uri, "no completed checkpoint in the current lineage; restoring what it started from");
        let r = restore::from_uri(uri, input.s3).await?;
        return Ok(continue_with(Some(r)));
    }
    Ok(continue_with(None))
}

/// Key groups must match; the state must mean what it meant ([`compat::fit`], which also
/// drops what the user allowed and moves source positions to their sources' stages).
pub(crate) fn check_fits(r: &mut Restored, input: &StartupInput<'_>) -> Result<()> {
    if r.metadata.max_parallelism != input.max_parallelism {
        return Err(Error::Restore(format!(
            "{} was taken with maxParallelism {}, the job has {}; key groups cannot be remapped",
            r.uri, r.metadata.max_parallelism, input.max_parallelism
        )));
    }
    for d in compat::fit(r, input.wanted)? {
        tracing::warn!(from = %r.uri, "not restoring the state of {d}");
    }
    Ok(())
}

/// The URI of a restored checkpoint as it is recorded and shown: without a trailing `/`.
fn dir_uri(r: &Restored) -> String {
    r.uri.trim_end_matches('/').to_string()
}

/// A new lineage id: unique per start, never derived from the job's content.
fn new_job_id() -> String {
    let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

/// Who claims a generation or finishes a recovery: host and process, for the record.
fn writer() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}/{}", std::process::id())
}
