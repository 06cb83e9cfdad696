//! A restored store's files, from storage to the local directory it will open from.

use std::path::Path;

use super::disk::Fetched;
use super::files::DiskSnapshot;
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
) -> Result<Vec<Fetched>> {
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
        for t in &snap.tables {
            let bytes = storage.get(&t.object).await?.ok_or_else(|| {
                Error::Restore(format!(
                    "state of {}: table {} is missing",
                    snap.operator,
                    storage.uri(&t.object)
                ))
            })?;
            if bytes.len() as u64 != t.size || crc32fast::hash(&bytes) != t.crc32 {
                return Err(Error::Restore(format!(
                    "state of {}: table {} differs from what the checkpoint recorded ({} bytes, crc32 {:08x}; found {} bytes)",
                    snap.operator,
                    storage.uri(&t.object),
                    t.size,
                    t.crc32,
                    bytes.len()
                )));
            }
            let path = dir.join(&t.name);
            tokio::fs::write(&path, &bytes)
                .await
                .map_err(|e| local(&path, e))?;
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
        });
    }
    Ok(out)
}

fn local(path: &Path, e: std::io::Error) -> Error {
    Error::Restore(format!("writing {}: {e}", path.display()))
}
