//! Storage paths. The only place that formats them:
//!
//! ```text
//! <root>/<namespace>/<job>/_generations/gen-<g>          generation claims (fencing)
//! <root>/<namespace>/<job>/<jobId>/chk-<n>/_metadata     commit point of checkpoint n
//! <root>/<namespace>/<job>/<jobId>/chk-<n>/<task>-g<g>.state
//! <root>/<namespace>/<job>/savepoints/sp-<n>-<jobId>/    self-contained copy
//! <checkpoint or savepoint dir>/_sinks_committed          commit-phase recovery done
//! <root>/<namespace>/<job>/_probe/<id>                    conditional-create probe
//! ```
//!
//! A checkpoint or savepoint given by URI is opened as its own storage root, so the names
//! inside a directory ([`Layout::metadata_in`], [`Layout::file_in`], [`SINKS_COMMITTED`]) are
//! functions of the directory alone.

use crate::ids::{CheckpointId, TaskId};

/// File name of a checkpoint's commit record.
pub const METADATA: &str = "_metadata";

/// Name of the marker written into a restored checkpoint once every sink has finished its
/// commit-phase recovery. A later restore from the same checkpoint skips that step: the
/// transactions are committed for good, and brokers answer a repeated `EndTxn` for a
/// transaction whose id was fenced since with an error (or, the local test broker, by
/// closing the connection) rather than success.
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
