//! A restored store's files, from storage to the local directory it will open from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::disk::Fetched;
use super::files::{DiskSnapshot, SharedTable};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Download each of `snapshots` (the checkpoints of the former subtasks whose key groups this
/// subtask now owns) into a directory of its own under `into`, checking every table against
/// the size and CRC32 the checkpoint recorded. `shared_dir` is the running lineage's: only
/// tables stored there may be referred to by its next checkpoints.
///
/// # Errors
/// A table is missing or differs from what the checkpoint recorded, naming it.
pub async fn fetch(
    storage: &Storage,
    snapshots: &[&DiskSnapshot],
    into: &Path,
    shared_dir: &str,
    previous: Option<&Path>,
) -> Result<Vec<Fetched>> {
    let on_disk = previous.map(local_tables).unwrap_or_default();
    let (mut all_reused, mut downloaded) = (0u64, 0u64);
    let mut out = Vec::new();
    for (i, snap) in snapshots.iter().enumerate() {
        let dir = into.join(format!("fetched-{i}"));
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir)
                .await
                .map_err(|e| local(&dir, e))?;
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| local(&dir, e))?;
        let names = snap
            .tables
            .iter()
            .map(|t| &t.name)
            .chain(snap.private.iter().map(|p| &p.name));
        if let Some(bad) = names
            .into_iter()
            .find(|n| n.is_empty() || n.contains('/') || n.starts_with('.'))
        {
            return Err(Error::Restore(format!(
                "state of {}: the checkpoint names a file {bad:?}, which is no file of a store",
                snap.operator
            )));
        }
        let mut reused = 0;
        for t in &snap.tables {
            let path = dir.join(&t.name);
            if reuse(&on_disk, t, &path).await {
                reused += t.size;
                continue;
            }
            // Streamed to disk, then checked there: a table is never held whole in memory.
            downloaded += t.size;
            if !storage.get_file(&t.object, &path).await? {
                return Err(Error::Restore(format!(
                    "state of {}: table {} is missing",
                    snap.operator,
                    storage.uri(&t.object)
                )));
            }
            let (size, crc32) = super::files::size_and_crc32(&path)
                .await
                .map_err(|e| local(&path, e))?;
            if size != t.size || crc32 != t.crc32 {
                return Err(Error::Restore(format!(
                    "state of {}: table {} differs from what the checkpoint recorded ({} bytes, crc32 {:08x}; found {size} bytes, crc32 {crc32:08x})",
                    snap.operator,
                    storage.uri(&t.object),
                    t.size,
                    t.crc32,
                )));
            }
        }
        for p in &snap.private {
            let path = dir.join(&p.name);
            tokio::fs::write(&path, &p.bytes)
                .await
                .map_err(|e| local(&path, e))?;
        }
        out.push(Fetched {
            source: weir_state::Source {
                dir,
                groups: snap.groups(),
            },
            tables: snap.tables.clone(),
            reusable: snap.tables.iter().all(|t| t.object.starts_with(shared_dir)),
            reused_bytes: reused,
        });
        all_reused += reused;
    }
    if all_reused > 0 {
        tracing::info!(
            reused_bytes = all_reused,
            downloaded_bytes = downloaded,
            "restore took tables from the previous run's local state"
        );
    }
    Ok(out)
}

/// The table files under `dir` (the previous run's store of the same operator and subtask,
/// with its local checkpoints), by file name.
fn local_tables(dir: &Path) -> HashMap<String, Vec<PathBuf>> {
    let mut found: HashMap<String, Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str())
                && name.ends_with(".sst")
            {
                found.entry(name.to_string()).or_default().push(p);
            }
        }
    }
    found
}

/// Link a local file with `t`'s bytes to `path`, if there is one: same name, size and CRC32.
/// A store numbers its tables anew after a restore, so a name alone proves nothing.
async fn reuse(local: &HashMap<String, Vec<PathBuf>>, t: &SharedTable, path: &Path) -> bool {
    for candidate in local.get(&t.name).into_iter().flatten() {
        let same_size = tokio::fs::metadata(candidate)
            .await
            .is_ok_and(|m| m.len() == t.size);
        if !same_size
            || !matches!(super::files::size_and_crc32(candidate).await, Ok((s, c)) if s == t.size && c == t.crc32)
        {
            continue;
        }
        let _ = tokio::fs::remove_file(path).await;
        if tokio::fs::hard_link(candidate, path).await.is_ok()
            || tokio::fs::copy(candidate, path).await.is_ok()
        {
            return true;
        }
    }
    false
}

fn local(path: &Path, e: std::io::Error) -> Error {
    Error::Restore(format!("writing {}: {e}", path.display()))
}
