//! Storage paths. The only place that formats them:
//!
//! ```text
//! <root>/<namespace>/<job>/_generations/gen-<g>          generation claims (fencing)
//! <root>/<namespace>/<job>/_generations/gen-<g>.first-<n> generation g's first checkpoint
//! <root>/<namespace>/<job>/<jobId>/chk-<n>/_metadata     commit point of checkpoint n
//! <root>/<namespace>/<job>/<jobId>/chk-<n>/<task>-g<g>.state
//! <root>/<namespace>/<job>/savepoints/sp-<n>-<jobId>/    self-contained copy
//! <root>/<namespace>/<job>/_recovered/<hash of URI>       commit-phase recovery of a restored
//!                                                          checkpoint or savepoint done
//! <checkpoint or savepoint dir>/_sinks_committed          the same, as versions before 0.1
//!                                                          wrote it (read, never written)
//! <root>/<namespace>/<job>/_probe/<id>                    conditional-create probe
//! ```
//!
//! A checkpoint or savepoint given by URI is opened as its own storage root, so the names
//! inside a directory ([`Layout::metadata_in`], [`Layout::file_in`], [`SINKS_COMMITTED`]) are
//! functions of the directory alone.

use crate::ids::{CheckpointId, TaskId};

/// File name of a checkpoint's commit record.
pub const METADATA: &str = "_metadata";

/// Name of the marker earlier versions wrote into a restored checkpoint once every sink had
/// finished its commit-phase recovery; still read, so their restores are not redone. Now the
/// marker lives in the restoring job's own directory ([`Layout::recovered`]): a job started
/// from another job's savepoint must not write into that job's directory or change how that
/// job recovers.
pub const SINKS_COMMITTED: &str = "_sinks_committed";

/// Paths of one job within a storage root.
#[derive(Debug, Clone)]
pub struct Layout {
    base: String,
}

impl Layout {
    /// Layout for job `name` in `namespace`.
    #[must_use]
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            base: format!("{namespace}/{name}"),
        }
    }

    /// Prefix of generation claims.
    #[must_use]
    pub fn generations(&self) -> String {
        format!("{}/_generations/", self.base)
    }

    /// Claim object of generation `g` (zero-padded so names sort numerically).
    #[must_use]
    pub fn generation(&self, g: u64) -> String {
        format!("{}/_generations/gen-{g:020}", self.base)
    }

    /// Parse a generation number from a key under [`Self::generations`].
    #[must_use]
    pub fn parse_generation(key: &str) -> Option<u64> {
        key.rsplit('/').next()?.strip_prefix("gen-")?.parse().ok()
    }

    /// Empty marker that generation `g` takes checkpoint ids from `first` on (the number is in
    /// the name, so one listing of [`Self::generations`] reads every generation's).
    #[must_use]
    pub fn generation_first(&self, g: u64, first: CheckpointId) -> String {
        format!("{}/_generations/gen-{g:020}.first-{}", self.base, first.0)
    }

    /// `(generation, first checkpoint id)` from a key made by [`Self::generation_first`].
    #[must_use]
    pub fn parse_generation_first(key: &str) -> Option<(u64, CheckpointId)> {
        let (g, first) = key
            .rsplit('/')
            .next()?
            .strip_prefix("gen-")?
            .split_once(".first-")?;
        Some((g.parse().ok()?, CheckpointId(first.parse().ok()?)))
    }

    /// Prefix of all checkpoints of a lineage.
    #[must_use]
    pub fn checkpoints(&self, job_id: &str) -> String {
        format!("{}/{job_id}/", self.base)
    }

    /// Directory (prefix, with trailing `/`) of checkpoint `n`.
    #[must_use]
    pub fn checkpoint_dir(&self, job_id: &str, n: CheckpointId) -> String {
        format!("{}/{job_id}/chk-{}/", self.base, n.0)
    }

    /// Parse `chk-<n>` out of a key under [`Self::checkpoints`].
    #[must_use]
    pub fn parse_checkpoint(key: &str) -> Option<(CheckpointId, bool)> {
        let mut parts = key.rsplit('/');
        let file = parts.next()?;
        let dir = parts.next()?;
        let n = dir.strip_prefix("chk-")?.parse().ok()?;
        Some((CheckpointId(n), file == METADATA))
    }

    /// Directory (prefix, with trailing `/`) of the table files of `disk` state that the
    /// checkpoints of lineage `job_id` share: each uploaded once, deleted by retention when no
    /// kept checkpoint refers to it.
    #[must_use]
    pub fn shared_dir(&self, job_id: &str) -> String {
        format!("{}/{job_id}/shared/", self.base)
    }

    /// Directory of savepoint `n` of lineage `job_id`.
    #[must_use]
    pub fn savepoint_dir(&self, job_id: &str, n: CheckpointId) -> String {
        format!("{}/savepoints/sp-{}-{job_id}/", self.base, n.0)
    }

    /// State file name of `task` in generation `g`, relative to its checkpoint directory.
    #[must_use]
    pub fn state_file(task: TaskId, generation: u64) -> String {
        format!("{task}-g{generation}.state")
    }

    /// Part `n` of `operator`'s streamed state (`super::parts`) written by the subtask whose
    /// state file is `state_file`, relative to the same directory.
    #[must_use]
    pub fn part_file(state_file: &str, operator: &str, n: usize) -> String {
        format!("{state_file}.{operator}.{n:05}")
    }

    /// The `_metadata` of the checkpoint or savepoint directory `dir` (`""` for a root).
    #[must_use]
    pub fn metadata_in(dir: &str) -> String {
        Self::file_in(dir, METADATA)
    }

    /// File `name` (a state file, a marker) in directory `dir` (a prefix ending in `/`).
    #[must_use]
    pub fn file_in(dir: &str, name: &str) -> String {
        format!("{dir}{name}")
    }

    /// Marker that every sink finished commit-phase recovery of the checkpoint or savepoint
    /// at `restored_uri`. A later restore of it by this job skips that step: the
    /// transactions are committed for good, and brokers answer a repeated `EndTxn` for a
    /// transaction whose id was fenced since with an error rather than success.
    #[must_use]
    pub fn recovered(&self, restored_uri: &str) -> String {
        let uri = restored_uri.trim_end_matches('/');
        let hash = xxhash_rust::xxh3::xxh3_128(uri.as_bytes());
        format!("{}/_recovered/{hash:032x}", self.base)
    }

    /// Key of a conditional-create probe object.
    #[must_use]
    pub fn probe(&self, id: &str) -> String {
        format!("{}/_probe/{id}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_their_parsers() {
        let l = Layout::new("ns", "job");
        assert_eq!(Layout::parse_generation(&l.generation(42)), Some(42));
        let first = l.generation_first(42, CheckpointId(7));
        assert_eq!(Layout::parse_generation(&first), None);
        assert_eq!(
            Layout::parse_generation_first(&first),
            Some((42, CheckpointId(7)))
        );
        let meta = format!("{}{METADATA}", l.checkpoint_dir("abc", CheckpointId(7)));
        assert_eq!(meta, "ns/job/abc/chk-7/_metadata");
        assert_eq!(
            Layout::parse_checkpoint(&meta),
            Some((CheckpointId(7), true))
        );
        assert_eq!(
            Layout::parse_checkpoint("ns/job/abc/chk-7/s0-t0-g1.state"),
            Some((CheckpointId(7), false))
        );
        assert_eq!(Layout::parse_checkpoint("ns/job/abc/other/x"), None);
        assert_eq!(l.probe("p1"), "ns/job/_probe/p1");
        assert_eq!(Layout::metadata_in(""), METADATA);
    }
}
