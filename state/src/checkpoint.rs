//! A store's checkpoint on local disk, before the runtime uploads it.

use std::path::{Path, PathBuf};

use crate::error::{Result, io};

/// One file of a local checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// The file's name, which the database's manifest refers to it by.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl CheckpointFile {
    /// A table file: immutable once written and named uniquely within its database, so an
    /// upload of it can be shared by every later checkpoint that still holds it.
    #[must_use]
    pub fn is_table(&self) -> bool {
        self.name.ends_with(".sst")
    }
}

/// A directory of hard links to a store's files at one moment, removed when dropped.
#[derive(Debug)]
pub struct LocalCheckpoint {
    dir: PathBuf,
    files: Vec<CheckpointFile>,
}

impl LocalCheckpoint {
    pub(crate) fn read(dir: PathBuf) -> Result<Self> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir, "list the checkpoint"))? {
            let entry = entry.map_err(io(&dir, "list the checkpoint"))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io(&path, "stat"))?;
            if !meta.is_file() {
                continue;
            }
            files.push(CheckpointFile {
                name: entry.file_name().to_string_lossy().into_owned(),
                path,
                size: meta.len(),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { dir, files })
    }

    /// Its files, by name.
    #[must_use]
    pub fn files(&self) -> &[CheckpointFile] {
        &self.files
    }

    /// Its directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all its files.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

impl Drop for LocalCheckpoint {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a local state checkpoint");
        }
    }
}
