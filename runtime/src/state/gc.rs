//! Shared tables no retained checkpoint refers to any more. Pure; retention deletes what it
//! returns after the checkpoints themselves.
//!
//! Only tables that a deleted checkpoint referred to are candidates. Such a table that no
//! newer completed checkpoint refers to had left its store before that checkpoint was taken,
//! and a store never takes a table back, so no checkpoint in flight can refer to it either.
//! A table uploaded by an attempt that never completed is no candidate: it may be the one the
//! next checkpoint refers to.

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
