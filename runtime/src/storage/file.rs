//! `file://` storage. Conditional create is a hard link of a fully written temporary file:
//! `link` fails when the target exists, so readers never see a partial object and exactly one
//! of two racing writers wins.
//!
//! A write is acknowledged only once it would survive a power cut: the file's data is synced
//! before it is renamed or linked into place, then every directory from its own up to the
//! root, so the new name (and a checkpoint directory made for it) is on disk too. Without the
//! directory syncs a `_metadata` acknowledged as the commit point could vanish on a crash of
//! the machine while its sinks' transactions were committed.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Result, StorageError};

/// A directory used as an object store.
#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let uri = format!("file://{}", path.display());
    move |source| StorageError::Io { op, uri, source }
}

impl FileStore {
    /// Store rooted at `path` (absolute, or relative to the working directory).
    #[must_use]
    pub fn new(path: &str) -> Self {
        Self {
            root: PathBuf::from(path),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub(super) fn uri(&self, key: &str) -> String {
        format!("file://{}", self.path(key).display())
    }

    /// A temporary name beside `key`'s path, its directory made: written, synced, then
    /// renamed or linked into place, so readers never see part of an object.
    async fn tmp_for(&self, key: &str) -> Result<PathBuf> {
        let path = self.path(key);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io("create directory", dir))?;
        }
        Ok(path.with_file_name(format!(
            ".{}.tmp-{}-{:x}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("obj"),
            std::process::id(),
            xxhash_rust::xxh3::xxh3_64(format!("{:?}", std::time::SystemTime::now()).as_bytes())
        )))
    }

    async fn write_tmp(&self, key: &str, data: &Bytes) -> Result<PathBuf> {
        let tmp = self.tmp_for(key).await?;
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io("create", &tmp))?;
        tokio::io::AsyncWriteExt::write_all(&mut file, data)
            .await
            .map_err(io("write", &tmp))?;
        file.sync_all().await.map_err(io("sync", &tmp))?;
        Ok(tmp)
    }

    pub(super) async fn put_file(&self, key: &str, source: &Path) -> Result<()> {
        let tmp = self.tmp_for(key).await?;
        tokio::fs::copy(source, &tmp)
            .await
            .map_err(io("copy", source))?;
        let file = tokio::fs::File::open(&tmp)
            .await
            .map_err(io("open", &tmp))?;
        file.sync_all().await.map_err(io("sync", &tmp))?;
        let path = self.path(key);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io("rename", &path))?;
        self.sync_dirs(&path).await
    }

    pub(super) async fn get_file(&self, key: &str, target: &Path) -> Result<bool> {
        let path = self.path(key);
        match tokio::fs::copy(&path, target).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound && !path.exists() => Ok(false),
            Err(e) => Err(io("copy", &path)(e)),
        }
    }

    pub(super) async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let tmp = self.write_tmp(key, &data).await?;
        let path = self.path(key);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io("rename", &path))?;
        self.sync_dirs(&path).await
    }

    /// Syncs each directory from `path`'s own up to the root: their entries for the new name
    /// and for directories `create_dir_all` made are then durable.
    async fn sync_dirs(&self, path: &Path) -> Result<()> {
        let mut dir = path.parent();
        while let Some(d) = dir {
            let handle = tokio::fs::File::open(d)
                .await
                .map_err(io("open directory", d))?;
            handle.sync_all().await.map_err(io("sync directory", d))?;
            if d == self.root || !d.starts_with(&self.root) {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    pub(super) async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        let tmp = self.write_tmp(key, &data).await?;
        let path = self.path(key);
        let linked = tokio::fs::hard_link(&tmp, &path).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        match linked {
            Ok(()) => {
                self.sync_dirs(&path).await?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("link", &path)(e)),
        }
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("list", &dir)(e)),
            };
            while let Some(entry) = rd.next_entry().await.map_err(io("list", &dir))? {
                let p = entry.path();
                let Ok(rel) = p.strip_prefix(&self.root) else {
                    continue;
                };
                let rel = rel.to_string_lossy().replace('\\', "/");
                let is_dir = entry.file_type().await.map_err(io("stat", &p))?.is_dir();
                if is_dir {
                    // Descend only where the prefix can still match.
                    let dir_key = format!("{rel}/");
                    if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                        stack.push(p);
                    }
                } else if rel.starts_with(prefix) && !is_tmp(&rel) {
                    out.push(rel);
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for key in self.list(prefix).await? {
            let p = self.path(&key);
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("delete", &p)(e)),
            }
        }
        // Remove the now-empty directory when the prefix names one.
        let dir = self.path(prefix.trim_end_matches('/'));
        if prefix.ends_with('/') {
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        Ok(())
    }
}

fn is_tmp(rel: &str) -> bool {
    rel.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with('.') && n.contains(".tmp-"))
}
