//! Where keyed operator state lives: in memory (the default, fastest while state fits) or on
//! local disk, for state larger than memory, with incremental checkpoints.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `stateBackend`: where operators keep keyed state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateBackendSpec {
    /// `memory` (default): state in the process's memory, every checkpoint writes all of it.
    /// `disk`: every keyed operator's state (dedup, windows, joins, `GROUP BY`, top-N) in an
    /// embedded RocksDB on local disk, bounded in memory by `memory`, and checkpoints upload
    /// only the files written since the previous one.
    #[serde(default, rename = "type")]
    pub kind: StateBackendKind,
    /// Local directory for `disk` state. Default `.weir/state` under the working directory:
    /// in a pod, its `/tmp` emptyDir; mount a volume from the pod template for more room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub dir: Option<String>,
    /// Memory the `disk` backend's block cache and write buffers may use in each process, as
    /// a Kubernetes quantity (`256Mi`, `1Gi`). Default: three eighths of the container's
    /// memory limit (192Mi of 512Mi), or `256Mi` without a limit. Keep it well under the
    /// limit: the runtime's own buffers, and RocksDB's blocks in use, live beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(Ki|Mi|Gi)?$"))]
    pub memory: Option<String>,
}

/// The state backend's kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackendKind {
    /// In memory.
    #[default]
    Memory,
    /// On local disk.
    Disk,
}

/// Memory of the `disk` backend where `memory` is not set and the process has no memory limit.
pub const DEFAULT_DISK_MEMORY: u64 = 256 << 20;

/// Memory of the `disk` backend where `memory` is not set, given the process's memory limit:
/// three eighths of it. A heap profile of a 100 M-id dedup found RocksDB within its budget and
/// the process about 75 MiB beside it (binary, threads, the allocator's free pages); with this
/// default a 500 M-id dedup ran in 512 MiB, the rest page cache.
#[must_use]
pub fn default_disk_memory(limit: Option<u64>) -> u64 {
    limit.map_or(DEFAULT_DISK_MEMORY, |l| (l / 8 * 3).max(MIN_DISK_MEMORY))
}

/// The least memory the `disk` backend runs with.
const MIN_DISK_MEMORY: u64 = 16 << 20;

impl StateBackendSpec {
    /// `memory` in bytes; `None` when not set (the runtime then sizes it from its memory limit,
    /// [`default_disk_memory`]).
    ///
    /// # Errors
    /// Not a quantity this field accepts, naming it.
    pub fn memory_bytes(&self) -> Result<Option<u64>, String> {
        let Some(q) = self.memory.as_deref() else {
            return Ok(None);
        };
        let (digits, unit) = match q.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => q.split_at(i),
            None => (q, ""),
        };
        let shift = match unit {
            "" => 0,
            "Ki" => 10,
            "Mi" => 20,
            "Gi" => 30,
            _ => {
                return Err(format!(
                    "stateBackend.memory: {q:?} is not a quantity like 256Mi or 1Gi"
                ));
            }
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .filter(|n| *n >= MIN_DISK_MEMORY)
            .map(Some)
            .ok_or_else(|| {
                format!("stateBackend.memory: {q:?} must be a quantity of at least 16Mi, like 256Mi or 1Gi")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_kubernetes_quantities_and_names_the_field_otherwise() {
        let spec = |m: &str| StateBackendSpec {
            memory: Some(m.into()),
            ..StateBackendSpec::default()
        };
        assert_eq!(StateBackendSpec::default().memory_bytes(), Ok(None));
        assert_eq!(spec("512Mi").memory_bytes(), Ok(Some(512 << 20)));
        assert_eq!(spec("1Gi").memory_bytes(), Ok(Some(1 << 30)));
        assert_eq!(spec("33554432").memory_bytes(), Ok(Some(32 << 20)));
        for bad in ["1Mi", "5G", "lots", "99999999999999Gi"] {
            let err = spec(bad).memory_bytes().expect_err(bad);
            assert!(err.starts_with("stateBackend.memory"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_default_memory_is_three_eighths_of_the_limit() {
        assert_eq!(default_disk_memory(None), 256 << 20);
        assert_eq!(default_disk_memory(Some(512 << 20)), 192 << 20);
        assert_eq!(default_disk_memory(Some(4 << 30)), 1536 << 20);
        assert_eq!(default_disk_memory(Some(20 << 20)), 16 << 20);
    }
}
