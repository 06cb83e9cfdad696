//! Crash points for fault-injection tests.
//!
//! `WEIR_CRASH_AT=<point>:<checkpoint>` kills the process with SIGKILL when it reaches
//! `<point>` for checkpoint `>= <checkpoint>`, the moments a random `kill -9` rarely hits:
//! `during-upload` (some state files written, not all), `before-metadata` (all acks in, no
//! `_metadata`), `metadata-write` (generation checked, `_metadata` not yet written),
//! `after-metadata` (committed, sinks not yet told), `after-sink-commit` (a sink subtask
//! committed, the checkpoint not yet marked as committed), `during-state-upload` (a disk store's
//! tables partly uploaded), `during-retention` (some shared tables deleted, their checkpoints
//! not yet). `WEIR_PAUSE_AT` (same
//! form) stops the process there with SIGSTOP instead, once: a partitioned zombie that goes on
//! when the test sends SIGCONT.
//!
//! Compiled only with the `fault-hooks` feature, which this crate's tests turn on: in any
//! other build [`point`] is empty, so no environment variable can make a production process
//! kill itself halfway through a commit.

/// Die (or stop) here if told to. Without the `fault-hooks` feature: nothing.
#[cfg(not(feature = "fault-hooks"))]
#[inline(always)]
pub fn point(_name: &str, _id: crate::ids::CheckpointId) {}

#[cfg(feature = "fault-hooks")]
pub use hooks::point;

#[cfg(feature = "fault-hooks")]
mod hooks {
    use std::sync::LazyLock;

    use crate::ids::CheckpointId;

    static CRASH_AT: LazyLock<Option<(String, u64)>> = LazyLock::new(|| parse("WEIR_CRASH_AT"));
    static PAUSE_AT: LazyLock<Option<(String, u64)>> = LazyLock::new(|| parse("WEIR_PAUSE_AT"));
    static PAUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    fn parse(var: &str) -> Option<(String, u64)> {
        let v = std::env::var(var).ok()?;
        let (p, n) = v.split_once(':')?;
        Some((p.to_string(), n.parse().ok()?))
    }

    /// Die (or stop) here if told to.
    pub fn point(name: &str, id: CheckpointId) {
        if let Some((p, n)) = PAUSE_AT.as_ref()
            && p == name
            && id.0 >= *n
            && !PAUSED.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!(point = name, checkpoint = %id, "WEIR_PAUSE_AT: stopping this process until SIGCONT");
            if let Some(me) = rustix::process::Pid::from_raw(std::process::id() as i32) {
                let _ = rustix::process::kill_process(me, rustix::process::Signal::STOP);
            }
            // The stop reaches the process asynchronously; stay here until it has.
            std::thread::sleep(std::time::Duration::from_millis(200));
            tracing::warn!(point = name, checkpoint = %id, "WEIR_PAUSE_AT: continued");
        }
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
}
