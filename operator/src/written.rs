//! The status this replica last wrote, per StreamJob.
//!
//! A reconcile is handed the object from the controller's cache, which lags the apiserver:
//! the pass that the previous pass's own writes trigger (the ConfigMap it applied, the pod it
//! created) often still sees the status from before that pass's status write. Deciding from
//! that status repeats the previous decision: on a real apiserver a new job recorded its
//! "first deploy" event twice, and a healed pod could be counted as a second restart.
//!
//! The operator is the only writer of `status` (users have no reason to write the
//! subresource, and one replica at a time holds the lease; a replica that loses it exits), so
//! the status this process last wrote is the newest one there is. Keeping it costs a map
//! entry per job instead of a GET per reconcile.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use weir_crds::StreamJobStatus;

/// Statuses written by this process, by object UID (a deleted and recreated job is new).
#[derive(Default)]
pub struct Written(Mutex<HashMap<String, StreamJobStatus>>);

impl Written {
    /// The status a pass starts from: the last one written here, else the cached one.
    #[must_use]
    pub fn latest(&self, uid: &str, cached: Option<&StreamJobStatus>) -> StreamJobStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .or(cached)
            .cloned()
            .unwrap_or_default()
    }

    /// Remembers a status the apiserver accepted.
    pub fn record(&self, uid: &str, status: &StreamJobStatus) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uid.to_string(), status.clone());
    }

    /// Forgets a job: it is gone, or a write failed and what the apiserver holds is unknown
    /// (the cache catches up with whichever it was).
    pub fn forget(&self, uid: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_written_status_wins_over_the_cache_until_forgotten() {
        let w = Written::default();
        let cached = StreamJobStatus {
            incarnation: 1,
            ..StreamJobStatus::default()
        };
        assert_eq!(w.latest("u", Some(&cached)).incarnation, 1);
        assert_eq!(w.latest("u", None), StreamJobStatus::default());
        let newer = StreamJobStatus {
            incarnation: 2,
            ..StreamJobStatus::default()
        };
        w.record("u", &newer);
        assert_eq!(w.latest("u", Some(&cached)).incarnation, 2);
        assert_eq!(w.latest("other", Some(&cached)).incarnation, 1);
        w.forget("u");
        assert_eq!(w.latest("u", Some(&cached)).incarnation, 1);
    }
}
