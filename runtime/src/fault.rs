//! Crash points for fault-injection tests.
//!
//! `WEIR_CRASH_AT=<point>:<checkpoint>` kills the process with SIGKILL when it reaches
//! `<point>` for checkpoint `>= <checkpoint>`, the moments a random `kill -9` rarely hits:
//! `during-upload` (some state files written, not all), `before-metadata` (all acks in, no
//! `_metadata`), `after-metadata` (committed, sinks not yet told). Unset in production, where
//! this costs one branch per checkpoint.

use std::sync::LazyLock;

use crate::ids::CheckpointId;

static CRASH_AT: LazyLock<Option<(String, u64)>> = LazyLock::new(|| {
    let v = std::env::var("WEIR_CRASH_AT").ok()?;
    let (p, n) = v.split_once(':')?;
    Some((p.to_string(), n.parse().ok()?))
});

/// Die here if told to.
pub fn point(name: &str, id: CheckpointId) {
    if let Some((p, n)) = CRASH_AT.as_ref()
        && p == name
        && id.0 >= *n
    {
        tracing::warn!(point = name, checkpoint = %id, "WEIR_CRASH_AT: killing this process");
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        std::process::abort();
    }
}
