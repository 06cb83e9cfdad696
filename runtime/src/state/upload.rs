//! A store's checkpoint to storage: each table file once, the small files inline.

use super::disk::{DiskCapture, Registry};
use super::files::{DiskSnapshot, PrivateFile, SharedTable};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Bytes a checkpoint of a store uploaded and referred to, for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes uploaded by this checkpoint.
    pub new_bytes: u64,
    /// Bytes of the whole store it describes.
    pub total_bytes: u64,
    /// Bytes uploaded for it ahead, between the checkpoint before and its barrier.
    pub ahead_bytes: u64,
}

/// Upload what `capture` holds that storage lacks, into `shared_dir` (a prefix ending in
/// `/`), and describe the checkpoint. A table the store uploaded before (or inherited from
/// the checkpoint it was restored from, in this lineage) is referred to, not sent again; it
/// is recorded as uploaded only once its upload succeeded.
///
/// # Errors
/// A file cannot be read or stored, naming it.
pub async fn upload(
    storage: &Storage,
    shared_dir: &str,
    capture: DiskCapture,
    checkpoint: crate::ids::CheckpointId,
) -> Result<(DiskSnapshot, Uploaded)> {
    let mut tables = Vec::new();
    let mut private = Vec::new();
    let mut sent = Uploaded {
        ahead_bytes: capture.ahead_bytes,
        ..Uploaded::default()
    };
    for file in capture.checkpoint.files() {
        let unreadable = |e: std::io::Error| {
            Error::internal(format!(
                "state of {}: reading {}: {e}",
                capture.operator,
                file.path.display()
            ))
        };
        let read = || async { tokio::fs::read(&file.path).await.map_err(unreadable) };
        sent.total_bytes += file.size;
        if !file.is_table() {
            private.push(PrivateFile {
                name: file.name.clone(),
                bytes: read().await?,
            });
            continue;
        }
        let known = uploaded_before(&capture, &file.name).await?;
        if let Some((t, uncounted)) = known {
            sent.ahead_bytes += uncounted;
            tables.push(t);
            continue;
        }
        let table = describe(shared_dir, &capture.uid, &file.name, &file.path)
            .await
            .map_err(unreadable)?;
        crate::fault::point("during-state-upload", checkpoint);
        // Streamed from the hard link: a table is never read whole into memory. The link
        // keeps the bytes the checksum saw (RocksDB never rewrites a table file).
        storage.put_file(&table.object, &file.path).await?;
        sent.new_bytes += table.size;
        let mut reg = Registry::lock(&capture.registry)?;
        if reg.uid == capture.uid {
            reg.uploaded.insert(table.name.clone(), table.clone());
        }
        drop(reg);
        tables.push(table);
    }
    Ok((capture.snapshot(tables, private), sent))
}

/// Table `name` (at `path`) as a store with `uid` stores it in `shared_dir`: its object, size
/// and CRC32. Uploads at the barrier and ahead of it name a table alike, so that either finds
/// the other's upload.
///
/// # Errors
/// The file cannot be read.
pub(super) async fn describe(
    shared_dir: &str,
    uid: &str,
    name: &str,
    path: &std::path::Path,
) -> std::io::Result<SharedTable> {
    let (size, crc32) = super::files::size_and_crc32(path).await?;
    Ok(SharedTable {
        name: name.to_string(),
        object: format!("{shared_dir}{uid}-{name}"),
        size,
        crc32,
    })
}

/// The upload of table `name` this store made before, waiting for one in flight ahead of the
/// checkpoint ([`super::ahead`]) rather than sending the same file twice; with the bytes of an
/// upload ahead that finished after the capture, which this checkpoint counts as its own
/// (taken from what the next capture would have counted).
async fn uploaded_before(capture: &DiskCapture, name: &str) -> Result<Option<(SharedTable, u64)>> {
    loop {
        {
            let mut reg = Registry::lock(&capture.registry)?;
            if reg.uid != capture.uid {
                return Ok(None);
            }
            let in_flight = reg.ahead.get(name).is_some_and(|a| !a.done);
            if !in_flight {
                let Some(table) = reg.uploaded.get(name).cloned() else {
                    return Ok(None);
                };
                let mut uncounted = 0;
                if let Some(a) = reg.ahead.get_mut(name)
                    && !a.counted
                {
                    a.counted = true;
                    uncounted = table.size;
                    reg.ahead_bytes = reg.ahead_bytes.saturating_sub(table.size);
                }
                return Ok(Some((table, uncounted)));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;
    use crate::ids::CheckpointId;
    use crate::state::disk::{DiskState, Place};

    async fn local_storage(tmp: &std::path::Path) -> Storage {
        Storage::open(
            &format!("file://{}", tmp.join("chk").display()),
            &weir_crds::S3Spec::default(),
        )
        .await
        .unwrap()
    }

    fn place_at(dir: std::path::PathBuf) -> Place {
        Place {
            dir,
            budget: weir_state::Budget::new(16 << 20),
            groups: weir_state::KeyGroups::new(0..=7),
            operator: "dedup-0".into(),
            ahead: None,
        }
    }

    #[tokio::test]
    async fn a_checkpoint_uploads_only_the_tables_storage_lacks() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = local_storage(tmp.path()).await;
        let place = place_at(tmp.path().join("state"));
        let state = DiskState::create(place, &[weir_state::Family::kept("f")]).unwrap();
        let write = |range: std::ops::Range<u32>| {
            let mut b = weir_state::Batch::default();
            for i in range {
                b.put(0, i % 8, format!("key-{i:08}").as_bytes(), &[7; 64]);
            }
            state.store().write(b).unwrap();
        };
        write(0..20_000);
        let (first, sent1) = upload(
            &storage,
            "lineage/shared/",
            state.capture().unwrap(),
            CheckpointId(1),
        )
        .await
        .unwrap();
        assert_eq!(
            sent1.new_bytes,
            first.tables.iter().map(|t| t.size).sum::<u64>()
        );
        write(20_000..20_010);
        let (second, sent2) = upload(
            &storage,
            "lineage/shared/",
            state.capture().unwrap(),
            CheckpointId(2),
        )
        .await
        .unwrap();
        assert!(
            sent2.new_bytes * 20 < sent1.new_bytes,
            "the second checkpoint uploaded {} bytes after the first's {}",
            sent2.new_bytes,
            sent1.new_bytes
        );
        assert!(sent2.total_bytes > sent1.total_bytes);
        for t in &first.tables {
            assert!(second.tables.contains(t), "table {} not shared", t.name);
            let stored = storage.get(&t.object).await.unwrap().expect("uploaded");
            assert_eq!(crc32fast::hash(&stored), t.crc32);
        }
        assert!(second.tables.len() > first.tables.len());
        assert!(second.private.iter().any(|p| p.name == "CURRENT"));

        // A savepoint's capture refers to no table: retention may then delete those of the
        // checkpoints before it, so the next checkpoint must not refer to them.
        // A capture taken before the savepoint and uploaded after it (an attempt that timed
        // out) must not put its tables back into the registry.
        let stale = state.capture().unwrap();
        let (frozen, view) = state.frozen(&[weir_state::Family::kept("f")]).unwrap();
        drop(view);
        drop(frozen);
        let (stale, _) = upload(&storage, "lineage/shared/", stale, CheckpointId(3))
            .await
            .unwrap();
        let (third, sent3) = upload(
            &storage,
            "lineage/shared/",
            state.capture().unwrap(),
            CheckpointId(4),
        )
        .await
        .unwrap();
        assert_eq!(
            sent3.new_bytes,
            sent3.total_bytes
                - third
                    .private
                    .iter()
                    .map(|p| p.bytes.len() as u64)
                    .sum::<u64>()
        );
        for t in &third.tables {
            assert!(
                !second
                    .tables
                    .iter()
                    .chain(&stale.tables)
                    .any(|s| s.object == t.object),
                "after a savepoint, table {} still refers to {}",
                t.name,
                t.object
            );
        }
    }

    /// A restart on the same volume takes the tables from local disk; a local file with the
    /// same name and size but other bytes (a store numbers anew after a restore) is not taken.
    #[tokio::test]
    async fn a_restore_reuses_local_tables_only_when_their_bytes_match() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = local_storage(tmp.path()).await;
        let place = place_at(tmp.path().join("before"));
        let state = DiskState::create(place.clone(), &[weir_state::Family::kept("f")]).unwrap();
        let mut b = weir_state::Batch::default();
        for i in 0..20_000u32 {
            b.put(0, i % 8, format!("key-{i:08}").as_bytes(), &i.to_le_bytes());
        }
        state.store().write(b).unwrap();
        let (snap, _) = upload(&storage, "s/", state.capture().unwrap(), CheckpointId(1))
            .await
            .unwrap();
        drop(state);
        let total: u64 = snap.tables.iter().map(|t| t.size).sum();
        assert!(total > 0);

        let restore = |name: &str, previous: Option<std::path::PathBuf>| {
            let (storage, snap, tmp) = (storage.clone(), snap.clone(), tmp.path().to_path_buf());
            let name = name.to_string();
            async move {
                let into = tmp.join(&name);
                std::fs::create_dir_all(&into).unwrap();
                let fetched = crate::state::fetch::fetch(
                    &storage,
                    &[&snap],
                    &into,
                    "s/",
                    previous.as_deref(),
                )
                .await
                .unwrap();
                let reused = fetched.iter().map(|f| f.reused_bytes).sum::<u64>();
                let place = place_at(into);
                let restored =
                    DiskState::restore(place, &[weir_state::Family::kept("f")], fetched).unwrap();
                let found = restored
                    .store()
                    .get(0, 3, b"key-00000003")
                    .unwrap()
                    .expect("restored key");
                assert_eq!(found, 3u32.to_le_bytes());
                let keys = restored
                    .store()
                    .scan(0, weir_state::KeyGroups::new(0..=7))
                    .unwrap()
                    .count();
                assert_eq!(keys, 20_000);
                reused
            }
        };
        assert_eq!(restore("fresh", None).await, 0);
        assert_eq!(restore("same-volume", Some(place.dir.clone())).await, total);

        // Same names and sizes, other bytes: downloaded, not taken.
        let spoiled = tmp.path().join("spoiled");
        std::fs::create_dir_all(&spoiled).unwrap();
        for t in &snap.tables {
            std::fs::write(spoiled.join(&t.name), vec![0x5a; t.size as usize]).unwrap();
        }
        assert_eq!(restore("after-spoiled", Some(spoiled)).await, 0);
    }
}
