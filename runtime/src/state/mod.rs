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
//! | [`memory_limit`] | the process's cgroup memory limit, which the default budget is sized from |
//!
//! Which shared tables no kept checkpoint refers to any more is the checkpoint protocol's
//! business (`checkpoint/shared_tables.rs`), as is `Capture`, what an operator hands over at
//! a barrier.

pub mod ahead;
pub mod disk;
pub mod fetch;
pub mod files;
pub mod memory_limit;
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
    /// The local state the process's previous run left (moved aside at start): a restore
    /// takes a table from here instead of downloading it when the bytes are the same, as
    /// when a pod restarts on the same volume.
    pub previous: PathBuf,
}

impl Backend {
    /// The backend `spec` names, its local directory `<dir>/<job>` (`/pod-<i>` when the job
    /// runs as several pods, which may share a machine). What that directory holds is moved
    /// aside (`<dir>/<job>.previous`), for restores to reuse its tables, and removed once the
    /// tasks are restored ([`Backend::forget_previous`]): state comes from checkpoints, and
    /// stores of subtasks this process no longer runs (after a rescale) would otherwise stay
    /// on disk.
    ///
    /// # Errors
    /// `memory` is not a quantity (validation refused it already); the old directory cannot be
    /// moved.
    pub fn new(
        spec: &weir_crds::state_backend::StateBackendSpec,
        job: &str,
        pod: Option<u32>,
    ) -> crate::error::Result<Self> {
        use weir_crds::state_backend::StateBackendKind;
        match spec.kind {
            StateBackendKind::Memory => Ok(Self::Memory),
            StateBackendKind::Disk => {
                let bytes = match spec.memory_bytes().map_err(crate::error::Error::internal)? {
                    Some(bytes) => bytes,
                    None => {
                        let limit = memory_limit::memory_limit();
                        let bytes = weir_crds::state_backend::default_disk_memory(limit);
                        tracing::info!(
                            budget_mib = bytes >> 20,
                            limit_mib = limit.map(|l| l >> 20),
                            "disk state memory sized from the memory limit (stateBackend.memory not set)"
                        );
                        bytes
                    }
                };
                let dir = spec.dir.as_deref().unwrap_or(".weir/state");
                let mut root = PathBuf::from(dir).join(job);
                if let Some(i) = pod {
                    root = root.join(format!("pod-{i}"));
                }
                let mut name = root.file_name().unwrap_or_default().to_os_string();
                name.push(".previous");
                let previous = root.with_file_name(name);
                let failed = |e: std::io::Error, what: &str| {
                    crate::error::Error::Restore(format!("{what} {}: {e}", root.display()))
                };
                match std::fs::rename(&root, &previous) {
                    // Nothing new since a run that stopped before its stores existed: what
                    // is aside stays (every table reused is checked byte for byte anyway).
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => {
                        // The last run's leftovers are in the way: they are older still.
                        remove_dir(&previous)
                            .map_err(|e| failed(e, "removing the state before"))?;
                        std::fs::rename(&root, &previous)
                            .map_err(|e| failed(e, "moving aside old local state"))?;
                    }
                }
                Ok(Self::Disk(DiskBackend {
                    root,
                    budget: weir_state::Budget::new(usize::try_from(bytes).unwrap_or(usize::MAX)),
                    previous,
                }))
            }
        }
    }

    /// Where the previous run kept the store of `operator` in subtask `task`, if it did.
    #[must_use]
    pub fn previous(&self, task: TaskId, operator: &str) -> Option<PathBuf> {
        match self {
            Self::Memory => None,
            Self::Disk(d) => Some(store_dir(&d.previous, task, operator)).filter(|p| p.is_dir()),
        }
    }

    /// Remove what the previous run left, once every task is restored: what was reused is
    /// linked into the new stores.
    pub fn forget_previous(&self) {
        if let Self::Disk(d) = self
            && let Err(e) = remove_dir(&d.previous)
        {
            tracing::warn!(dir = %d.previous.display(), error = %e, "could not remove the previous run's local state");
        }
    }

    /// The process's memory budget for stores, if the backend is `disk`.
    #[must_use]
    pub fn budget(&self) -> Option<&weir_state::Budget> {
        match self {
            Self::Memory => None,
            Self::Disk(d) => Some(&d.budget),
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
                dir: store_dir(&d.root, task, operator),
                budget: d.budget.clone(),
                groups,
                operator: operator.to_string(),
                ahead: None,
            }),
        }
    }
}

/// Where operator `operator` of subtask `task` keeps its store under a run's `root`: the
/// same place in every run, so a restart finds what the last one left.
fn store_dir(root: &std::path::Path, task: TaskId, operator: &str) -> PathBuf {
    root.join(format!("{}-{}", task.stage, task.subtask))
        .join(operator)
}

/// Remove `dir` and everything in it; a directory that is not there is no error.
fn remove_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
