//! The state backend: where keyed operator state lives between checkpoints.
//!
//! `memory` (the default) keeps each operator's state in its own maps and checkpoints all of
//! it, encoded per key group ([`crate::operator::encode_keyed`]). `disk` keeps an operator's
//! state in a RocksDB store per subtask (the `weir-state` crate) and checkpoints it
//! incrementally: a table file is uploaded once, to the lineage's `shared/` directory, and
//! every later checkpoint that still holds it refers to it by name ([`upload`]). A savepoint
//! is always written in the memory backend's format, so it restores into either backend and
//! any parallelism.
//!
//! | module | what it does |
//! |---|---|
//! | [`disk`] | one operator's store in one subtask, with the record of what it uploaded |
//! | [`files`] | what a checkpoint records of a store: its tables by object, its small files inline |
//! | [`upload`] | a store's checkpoint to storage, uploading only tables not yet there |
//! | [`fetch`] | a restored store's files from storage to local disk |
//! | [`gc`] | which shared tables no retained checkpoint refers to any more |

pub mod disk;
pub mod fetch;
pub mod files;
pub mod gc;
pub mod upload;

use std::path::PathBuf;

use crate::ids::TaskId;

/// Where a job's operators keep state.
#[derive(Debug, Clone, Default)]
pub enum Backend {
    /// In memory.
    #[default]
    Memory,
    /// On local disk.
    Disk(DiskBackend),
}

/// The `disk` backend of one process.
#[derive(Debug, Clone)]
pub struct DiskBackend {
    /// Directory under which each subtask's operators have their own.
    pub root: PathBuf,
    /// Memory every store of the process shares.
    pub budget: weir_state::Budget,
}

impl Backend {
    /// The backend `spec` names, its local directory under `<dir>/<job>`.
    ///
    /// # Errors
    /// `memory` is not a quantity (validation refused it already).
    pub fn new(
        spec: &weir_crds::state_backend::StateBackendSpec,
        job: &str,
    ) -> crate::error::Result<Self> {
        use weir_crds::state_backend::StateBackendKind;
        match spec.kind {
            StateBackendKind::Memory => Ok(Self::Memory),
            StateBackendKind::Disk => {
                let bytes = spec.memory_bytes().map_err(crate::error::Error::internal)?;
                let dir = spec.dir.as_deref().unwrap_or(".weir/state");
                Ok(Self::Disk(DiskBackend {
                    root: PathBuf::from(dir).join(job),
                    budget: weir_state::Budget::new(usize::try_from(bytes).unwrap_or(usize::MAX)),
                }))
            }
        }
    }

    /// Where operator `operator` of subtask `task` keeps disk state, if the backend is `disk`.
    #[must_use]
    pub fn place(
        &self,
        task: TaskId,
        operator: &str,
        groups: weir_state::KeyGroups,
    ) -> Option<disk::Place> {
        match self {
            Self::Memory => None,
            Self::Disk(d) => Some(disk::Place {
                dir: d
                    .root
                    .join(format!("{}-{}", task.stage, task.subtask))
                    .join(operator),
                budget: d.budget.clone(),
                groups,
                operator: operator.to_string(),
            }),
        }
    }
}
