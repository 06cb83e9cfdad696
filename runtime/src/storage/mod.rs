//! Object storage for checkpoints and savepoints: `file://`, `s3://`, `az://` (Azure Blob
//! Storage) and `gs://` (Google Cloud Storage) behind one type.
//!
//! The checkpoint protocol needs four things from storage, and every backend must give them:
//! - **conditional create** ([`Storage::put_if_absent`]): exactly one writer succeeds; this is
//!   what fences a zombie incarnation (see `checkpoint::fencing`);
//! - **read-after-write**: an object is visible to `get` and `list` once `put` returns;
//! - **listing by prefix**, to find completed checkpoints;
//! - **delete**, for retention.
//!
//! Keys are `/`-separated and relative to the storage root given by the URI.

mod cloud;
mod file;
mod s3;

use bytes::Bytes;
use weir_crds::S3Spec;

pub use cloud::{CloudStore, Provider};
pub use file::FileStore;
pub use s3::S3Store;

/// Storage errors carry the full URI of the object involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The URI is none of `file://`, `s3://bucket/...`, `az://container/...`, `gs://bucket/...`.
    #[error(
        "unsupported storage URI `{0}`: expected file:///path, file://./relative, s3://bucket/prefix, az://container/prefix or gs://bucket/prefix"
    )]
    BadUri(String),
    /// A filesystem operation failed.
    #[error("{op} {uri}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The object.
        uri: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The S3 endpoint did not answer (connection refused, DNS, timeout).
    #[error("{op} {uri}: the S3 endpoint does not answer: {message}")]
    Unreachable {
        /// What was attempted.
        op: &'static str,
        /// The object.
        uri: String,
        /// The client's account.
        message: String,
    },
    /// An Azure or GCS request failed, or their credentials are missing.
    #[error("{op} {uri}: {message}")]
    Cloud {
        /// What was attempted.
        op: &'static str,
        /// The object.
        uri: String,
        /// The service's or the client's answer.
        message: String,
    },
    /// An S3 request failed.
    #[error("{op} {uri}: {message}")]
    S3 {
        /// What was attempted.
        op: &'static str,
        /// The object.
        uri: String,
        /// The service's answer.
        message: String,
    },
}

/// `key` under a bucket's or container's `prefix` (given without slashes at either end).
fn prefixed(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

/// Result alias for storage calls.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One storage root: a local directory or an S3 bucket and prefix.
#[derive(Clone, Debug)]
pub enum Storage {
    /// `file://` storage.
    File(FileStore),
    /// `s3://` storage.
    S3(S3Store),
    /// `az://` and `gs://` storage.
    Cloud(CloudStore),
}

impl Storage {
    /// Open the storage root named by `uri`.
    ///
    /// # Errors
    /// [`StorageError::BadUri`] for anything but `file://`, `s3://bucket[/prefix]`,
    /// `az://container[/prefix]` and `gs://bucket[/prefix]`; missing cloud credentials.
    pub async fn open(uri: &str, s3: &S3Spec) -> Result<Self> {
        if let Some(path) = uri.strip_prefix("file://") {
            Ok(Self::File(FileStore::new(path)))
        } else if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::BadUri(uri.to_string()));
            }
            Ok(Self::S3(S3Store::new(bucket, prefix, s3).await?))
        } else if let Some((provider, rest)) = uri
            .strip_prefix("az://")
            .map(|r| (Provider::Azure, r))
            .or_else(|| uri.strip_prefix("gs://").map(|r| (Provider::Gcs, r)))
        {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::BadUri(uri.to_string()));
            }
            Ok(Self::Cloud(CloudStore::new(provider, bucket, prefix)?))
        } else {
            Err(StorageError::BadUri(uri.to_string()))
        }
    }

    /// The full URI of `key`, for messages and for `--restore-from`.
    #[must_use]
    pub fn uri(&self, key: &str) -> String {
        match self {
            Self::File(s) => s.uri(key),
            Self::S3(s) => s.uri(key),
            Self::Cloud(s) => s.uri(key),
        }
    }

    /// Write `data` at `key`, replacing what is there.
    ///
    /// # Errors
    /// The backend's failure, naming the object.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        match self {
            Self::File(s) => s.put(key, data).await,
            Self::S3(s) => s.put(key, data).await,
            Self::Cloud(s) => s.put(key, data).await,
        }
    }

    /// Write the local file at `path` to `key`, replacing what is there, without holding it
    /// in memory: state tables are tens of megabytes each and a pod's memory is a budget.
    ///
    /// # Errors
    /// The file cannot be read, or the backend's failure, naming the object.
    pub async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<()> {
        match self {
            Self::File(s) => s.put_file(key, path).await,
            Self::S3(s) => s.put_file(key, path).await,
            Self::Cloud(s) => s.put_file(key, path).await,
        }
    }

    /// Write `key` to the local file at `path` (replacing it) as it arrives, without holding
    /// it in memory; `Ok(false)` when there is no such object.
    ///
    /// # Errors
    /// The backend's failure, naming the object, or the file cannot be written.
    pub async fn get_file(&self, key: &str, path: &std::path::Path) -> Result<bool> {
        match self {
            Self::File(s) => s.get_file(key, path).await,
            Self::S3(s) => s.get_file(key, path).await,
            Self::Cloud(s) => s.get_file(key, path).await,
        }
    }

    /// Create `key` only if it does not exist; `Ok(false)` when it already did. Atomic: of
    /// concurrent callers exactly one gets `Ok(true)`.
    ///
    /// # Errors
    /// The backend's failure, naming the object.
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        match self {
            Self::File(s) => s.put_if_absent(key, data).await,
            Self::S3(s) => s.put_if_absent(key, data).await,
            Self::Cloud(s) => s.put_if_absent(key, data).await,
        }
    }

    /// Read `key`; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// The backend's failure, naming the object.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self {
            Self::File(s) => s.get(key).await,
            Self::S3(s) => s.get(key).await,
            Self::Cloud(s) => s.get(key).await,
        }
    }

    /// Every key under `prefix` (recursively), sorted.
    ///
    /// # Errors
    /// The backend's failure, naming the prefix.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = match self {
            Self::File(s) => s.list(prefix).await?,
            Self::S3(s) => s.list(prefix).await?,
            Self::Cloud(s) => s.list(prefix).await?,
        };
        keys.sort();
        Ok(keys)
    }

    /// Delete every key under `prefix`. Deleting nothing is not an error.
    ///
    /// # Errors
    /// The backend's failure, naming the prefix.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        match self {
            Self::File(s) => s.delete_prefix(prefix).await,
            Self::S3(s) => s.delete_prefix(prefix).await,
            Self::Cloud(s) => s.delete_prefix(prefix).await,
        }
    }

    /// Wait (out loud, see [`crate::wait`]) until the store answers a listing, so a storage
    /// server that is still starting delays the job instead of failing it; refusals (no such
    /// bucket, access denied) fail at once.
    ///
    /// # Errors
    /// A refusal, or no answer within `limit` (start-up passes [`crate::wait::limit`]).
    pub async fn wait_until_reachable(&self, limit: std::time::Duration) -> Result<()> {
        let address = self.uri("");
        let what = match self {
            Self::Cloud(_) => "object storage",
            _ => "S3",
        };
        crate::wait::until_reached(what, &address, limit, || async {
            match self.list("_weir-reachable/").await {
                Ok(_) => Ok(()),
                Err(e @ StorageError::Unreachable { .. }) => {
                    Err(crate::wait::Attempt::Unreachable(e.to_string()))
                }
                Err(e) => Err(crate::wait::Attempt::Refused(e.to_string())),
            }
        })
        .await
        .map_err(|message| StorageError::S3 {
            op: "reach",
            uri: address.clone(),
            message,
        })
    }

    /// Whether conditional create really excludes a second writer here. Probed with a real
    /// object under `probe_key` rather than trusted from configuration, because S3-compatible
    /// servers differ and some silently ignore `If-None-Match`.
    ///
    /// # Errors
    /// The backend's failure, naming the object.
    pub async fn probe_conditional_writes(&self, probe_key: &str) -> Result<bool> {
        let nonce = Bytes::from(format!("{}", std::process::id()));
        self.delete_prefix(probe_key).await?;
        let first = self.put_if_absent(probe_key, nonce.clone()).await?;
        let second = self.put_if_absent(probe_key, nonce).await?;
        self.delete_prefix(probe_key).await?;
        Ok(first && !second)
    }
}
