//! What can go wrong with state on disk.

use std::path::PathBuf;

/// A state store error, naming the directory it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB refused an operation.
    #[error("state store {dir}: {op}: {source}")]
    Db {
        /// The store's directory.
        dir: PathBuf,
        /// What was being done.
        op: &'static str,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A file operation failed.
    #[error("state store {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The store was opened with a column family it does not know, or a key without its key
    /// group: the operator and its state disagree.
    #[error("state store {dir}: {message}")]
    Invalid {
        /// The store's directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(path: &std::path::Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, op, source }
}
