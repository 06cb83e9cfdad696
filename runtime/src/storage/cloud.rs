//! `az://` (Azure Blob Storage) and `gs://` (Google Cloud Storage) through the `object_store`
//! crate. Conditional create is its `PutMode::Create` (`If-None-Match: *` on Azure,
//! `ifGenerationMatch=0` on GCS), and like every backend it is probed before an exactly-once
//! job trusts it ([`super::Storage::probe_conditional_writes`]).
//!
//! Credentials come from the environment as the providers' own tools read them: on Azure
//! `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY`, a SAS token, or workload
//! identity (`AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`); on GCS
//! `GOOGLE_APPLICATION_CREDENTIALS` or the metadata server (workload identity). The Azurite
//! emulator is `AZURE_STORAGE_USE_EMULATOR=true` (and `AZURITE_BLOB_STORAGE_URL`).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{Result, StorageError};

/// A container (Azure) or bucket (GCS) and key prefix.
#[derive(Clone, Debug)]
pub struct CloudStore {
    store: Arc<dyn ObjectStore>,
    /// `az://container` or `gs://bucket`, for URIs.
    root: String,
    prefix: String,
}

/// Which provider a URI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// `az://container/prefix`.
    Azure,
    /// `gs://bucket/prefix`.
    Gcs,
}

impl CloudStore {
    /// The store for `bucket` (an Azure container or a GCS bucket) from the environment.
    ///
    /// # Errors
    /// Missing or malformed credentials in the environment, named.
    pub fn new(provider: Provider, bucket: &str, prefix: &str) -> Result<Self> {
        let (scheme, built) = match provider {
            Provider::Azure => (
                "az",
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .build()
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            ),
            Provider::Gcs => (
                "gs",
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            ),
        };
        let root = format!("{scheme}://{bucket}");
        let store = built.map_err(|e| StorageError::Cloud {
            op: "configure",
            uri: root.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            store,
            root,
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn key(&self, key: &str) -> String {
        super::prefixed(&self.prefix, key)
    }

    pub(super) fn uri(&self, key: &str) -> String {
        format!("{}/{}", self.root, self.key(key))
    }

    fn err(&self, op: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> StorageError {
        let uri = self.uri(key);
        move |e| {
            let message = e.to_string();
            // No answer (connection refused, DNS, timeout): waiting may help. A refusal or a
            // certificate the client does not trust will not change.
            let lower = message.to_lowercase();
            let unanswered = matches!(e, object_store::Error::Generic { .. })
                && (lower.contains("error sending request") || lower.contains("connect"))
                && !lower.contains("certificate");
            if unanswered {
                StorageError::Unreachable { op, uri, message }
            } else {
                StorageError::Cloud { op, uri, message }
            }
        }
    }

    pub(super) async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(self.key(key)), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(self.err("put", key))
    }

    pub(super) async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<()> {
        let local = |source| StorageError::Io {
            op: "read",
            uri: format!("file://{}", path.display()),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(local)?;
        // Buffers up to a part (10 MiB) and sends a multipart upload past that.
        let mut upload = object_store::buffered::BufWriter::new(
            Arc::clone(&self.store),
            Path::from(self.key(key)),
        );
        let sent = tokio::io::copy(&mut file, &mut upload).await;
        let finished = match sent {
            Ok(_) => tokio::io::AsyncWriteExt::shutdown(&mut upload).await,
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        };
        finished.map_err(|e| StorageError::Cloud {
            op: "put",
            uri: self.uri(key),
            message: e.to_string(),
        })
    }

    pub(super) async fn get_file(&self, key: &str, path: &std::path::Path) -> Result<bool> {
        let got = match self.store.get(&Path::from(self.key(key))).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.err("get", key)(e)),
        };
        let local = |source| StorageError::Io {
            op: "write",
            uri: format!("file://{}", path.display()),
            source,
        };
        let mut file = tokio::fs::File::create(path).await.map_err(local)?;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.try_next().await.map_err(self.err("get", key))? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(local)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(local)?;
        Ok(true)
    }

    pub(super) async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&Path::from(self.key(key)), PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err("create", key)(e)),
        }
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&Path::from(self.key(key))).await {
            Ok(r) => r.bytes().await.map(Some).map_err(self.err("get", key)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("get", key)(e)),
        }
    }

    /// Keys (relative to the root prefix) that start with `prefix` as a string, as S3 lists:
    /// `object_store` lists by whole path segments, so this lists the enclosing directory and
    /// keeps the matches (a checkpoint directory, a probe object, `sp-3` of `sp-3-…`).
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.key(prefix);
        let dir = full.rsplit_once('/').map_or("", |(d, _)| d);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let under = (!dir.is_empty()).then(|| Path::from(dir));
        let metas: Vec<_> = self
            .store
            .list(under.as_ref())
            .try_collect()
            .await
            .map_err(self.err("list", prefix))?;
        Ok(metas
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|k| k.starts_with(&full))
            .filter_map(|k| k.get(strip..).map(str::to_string))
            .collect())
    }

    pub(super) async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for key in self.list(prefix).await? {
            match self.store.delete(&Path::from(self.key(&key))).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", &key)(e)),
            }
        }
        Ok(())
    }
}
