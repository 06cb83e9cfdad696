//! Which checkpoints to delete. Pure; the coordinator calls it after each completed
//! checkpoint and deletes what it returns. Nothing is deleted on cancellation or stop, so
//! the checkpoints of a cancelled job stay restorable.

use std::collections::BTreeMap;

use crate::ids::CheckpointId;

/// Given every checkpoint directory in a lineage (id -> has `_metadata`), return the ids to
/// delete: completed checkpoints beyond the newest `retained`, and incomplete ones older than
/// the newest completed (abandoned attempts). Incomplete ones newer than that may still be in
/// flight and are kept.
#[must_use]
pub fn to_delete(dirs: &BTreeMap<CheckpointId, bool>, retained: usize) -> Vec<CheckpointId> {
    let completed: Vec<CheckpointId> = dirs
        .iter()
        .filter(|(_, done)| **done)
        .map(|(id, _)| *id)
        .collect();
    let Some(newest) = completed.last().copied() else {
        return Vec::new();
    };
    let keep_from = completed.len().saturating_sub(retained.max(1));
    let mut out: Vec<CheckpointId> = completed[..keep_from].to_vec();
    out.extend(
        dirs.iter()
            .filter(|(id, done)| !**done && **id < newest)
            .map(|(id, _)| *id),
    );
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_retained_and_in_flight_attempts() {
        let c = |v: &[(u64, bool)]| {
            v.iter()
                .map(|(i, d)| (CheckpointId(*i), *d))
                .collect::<BTreeMap<_, _>>()
        };
        let ids = |v: &[u64]| v.iter().map(|i| CheckpointId(*i)).collect::<Vec<_>>();
        type Case<'a> = (&'a [(u64, bool)], usize, &'a [u64]);
        let cases: &[Case<'_>] = &[
            (&[], 3, &[]),
            (&[(1, true), (2, true)], 3, &[]),
            (&[(1, true), (2, true), (3, true), (4, true)], 3, &[1]),
            (&[(1, true), (2, false), (3, true), (4, false)], 1, &[1, 2]),
            (&[(1, false), (2, false)], 1, &[]),
            (&[(1, true), (2, true)], 0, &[1]),
        ];
        for (dirs, retained, expected) in cases {
            assert_eq!(
                to_delete(&c(dirs), *retained),
                ids(expected),
                "{dirs:?} retained {retained}"
            );
        }
    }
}
