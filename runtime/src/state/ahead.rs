//! Uploading a store's tables between barriers, as RocksDB writes them, so that a checkpoint
//! has only the last moments' tables left to send.
//!
//! Without it, a checkpoint uploads everything the store wrote since the last one at the
//! barrier: the change, flushed, and whatever compaction rewrote meanwhile, which with keys
//! spread at random is several times the change and comes in bursts (one interval's
//! compaction can rewrite gigabytes). Flink's changelog state backend answers the same
//! problem by streaming state changes to storage continuously; here the unit is a table file,
//! which RocksDB never changes once written, so one uploaded between barriers is the same
//! object a later checkpoint would have uploaded, and the checkpoint refers to it.
//!
//! The price is uploads of tables that compaction removes before any checkpoint holds them.
//! Such a table is in no checkpoint and never will be (a store never takes a table back), so
//! it is deleted from storage at once; the bytes are reported. Whether a table was in a
//! checkpoint is decided under the registry's lock: [`DiskState::capture`] holds it while
//! RocksDB links the checkpoint's files and marks them, and a round here lists the live
//! tables under it and deletes nothing while a capture is between its link and its marks.
//! The marks are the set of every table a capture holds (`Registry::held`), not a flag on a
//! round's entry: the capture's own flush writes a table no round has seen yet, and a round
//! may upload it before the barrier's upload gets to it (the barrier then takes that upload).
//! A round deletes no table in that set.
//!
//! [`DiskState::capture`]: super::disk::DiskState::capture

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::disk::Registry;
use super::files::SharedTable;
use crate::storage::Storage;

/// How often a store looks for tables to upload: often enough that a checkpoint finds little
/// left, rarely enough that listing a store's files costs nothing measurable.
pub const EVERY: Duration = Duration::from_secs(1);

/// Where and how often a store uploads its tables ahead of its checkpoints.
#[derive(Debug, Clone)]
pub struct UploadAhead {
    /// The lineage's storage.
    pub storage: Storage,
    /// The lineage's directory of shared tables (a prefix ending in `/`).
    pub shared_dir: String,
    /// Time between two looks at the store's tables.
    pub every: Duration,
}

/// A table uploaded, or being uploaded, ahead of a checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct AheadTable {
    /// Its upload finished and it is in [`Registry::uploaded`].
    pub done: bool,
    /// Its bytes count in a checkpoint's uploaded bytes already: the first capture after its
    /// upload finished took them, or the barrier that waited for it.
    pub counted: bool,
}

/// Stops the uploader when the store goes.
#[derive(Debug)]
pub struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start uploading `tables`' files ahead, named with the registry's uid as a checkpoint's
/// upload would name them. `None` outside a Tokio runtime (a store opened by a tool).
pub fn start(
    tables: weir_state::Tables,
    registry: Arc<Mutex<Registry>>,
    to: Arc<UploadAhead>,
    operator: String,
) -> Option<Running> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(Running(handle.spawn(async move {
        loop {
            tokio::time::sleep(to.every).await;
            match round(&tables, &registry, &to).await {
                Ok(true) => {}
                Ok(false) => return,
                // The checkpoint at the barrier uploads whatever this did not.
                Err(e) => {
                    tracing::warn!(operator, error = %e, "uploading state tables ahead of the checkpoint failed; the next checkpoint uploads them");
                }
            }
        }
    })))
}

/// What a round decided under the lock.
struct Plan {
    uid: String,
    upload: Vec<String>,
    discard: Vec<(String, SharedTable)>,
}

/// One look at the store: delete the tables uploaded ahead that left it before any
/// checkpoint held them, and upload the live tables storage lacks. `false` once the store is
/// closed.
async fn round(
    tables: &weir_state::Tables,
    registry: &Mutex<Registry>,
    to: &UploadAhead,
) -> crate::error::Result<bool> {
    let Some(plan) = plan(tables, registry)? else {
        return Ok(false);
    };
    let planned = plan.upload.clone();
    let done = carry_out(plan, tables, registry, to).await;
    if done.is_err() {
        // A table left marked in flight would make the next barrier wait for it for ever.
        let mut reg = Registry::lock(registry)?;
        for name in planned {
            if reg.ahead.get(&name).is_some_and(|a| !a.done) {
                reg.ahead.remove(&name);
            }
        }
    }
    done.map(|()| true)
}

async fn carry_out(
    plan: Plan,
    tables: &weir_state::Tables,
    registry: &Mutex<Registry>,
    to: &UploadAhead,
) -> crate::error::Result<()> {
    for (name, table) in plan.discard {
        to.storage.delete_prefix(&table.object).await?;
        let mut reg = Registry::lock(registry)?;
        reg.discarded_bytes += table.size;
        tracing::debug!(
            table = name,
            bytes = table.size,
            "deleted a table uploaded ahead that compaction removed before any checkpoint held it"
        );
    }
    for name in plan.upload {
        let sent = send(tables, &name, &plan.uid, to).await;
        let mut reg = Registry::lock(registry)?;
        let current = reg.uid == plan.uid;
        let entry = reg.ahead.get(&name).copied();
        match (sent, entry) {
            (Ok(Some(table)), Some(a)) if current => {
                reg.ahead_bytes += table.size;
                reg.uploaded.insert(name.clone(), table);
                reg.ahead.insert(name, AheadTable { done: true, ..a });
            }
            // Gone from the store before its link, or a savepoint reset the registry (what
            // was sent is an orphan the next start's sweep deletes).
            (Ok(_), _) => {
                if current {
                    reg.ahead.remove(&name);
                }
            }
            (Err(e), _) => return Err(e),
        }
    }
    Ok(())
}

fn plan(
    tables: &weir_state::Tables,
    registry: &Mutex<Registry>,
) -> crate::error::Result<Option<Plan>> {
    let mut reg = Registry::lock(registry)?;
    // Listed under the lock: a capture that begins after this cannot hold a table this
    // listing lacks, and one that began before has not released `capturing` yet.
    let Some(live) = tables.live()? else {
        return Ok(None);
    };
    let live: HashSet<String> = live.into_iter().map(|(name, _)| name).collect();
    let mut discard = Vec::new();
    if reg.capturing == 0 {
        let gone: Vec<String> = reg
            .ahead
            .iter()
            .filter(|(name, a)| a.done && !live.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            reg.ahead.remove(&name);
            // A table a checkpoint holds is an ordinary shared table: retention alone deletes it.
            if let Some(t) = reg.uploaded.remove(&name)
                && !reg.held.contains(&name)
            {
                discard.push((name, t));
            }
        }
        // A table that left the store never comes back to be uploaded again.
        reg.held.retain(|name| live.contains(name));
    }
    let mut upload: Vec<String> = live
        .into_iter()
        .filter(|n| !reg.uploaded.contains_key(n) && !reg.ahead.contains_key(n))
        .collect();
    // Oldest first: the lower-numbered tables are the likelier to be in the next checkpoint.
    upload.sort();
    for name in &upload {
        reg.ahead.insert(name.clone(), AheadTable::default());
    }
    Ok(Some(Plan {
        uid: reg.uid.clone(),
        upload,
        discard,
    }))
}

/// Upload table `name` as a checkpoint would; `None` if it left the store first.
async fn send(
    tables: &weir_state::Tables,
    name: &str,
    uid: &str,
    to: &UploadAhead,
) -> crate::error::Result<Option<SharedTable>> {
    let Some(linked) = tables.link(name)? else {
        return Ok(None);
    };
    let path = &linked.path;
    let table = super::upload::describe(&to.shared_dir, uid, name, path)
        .await
        .map_err(|e| crate::error::Error::internal(format!("reading {}: {e}", path.display())))?;
    to.storage.put_file(&table.object, path).await?;
    Ok(Some(table))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;
    use crate::ids::CheckpointId;
    use crate::state::disk::{DiskState, Place};

    const FAMILIES: &[weir_state::Family] = &[weir_state::Family::kept("f")];

    async fn state_uploading_ahead(tmp: &std::path::Path) -> (DiskState, Storage) {
        let storage = Storage::open(
            &format!("file://{}", tmp.join("chk").display()),
            &weir_crds::S3Spec::default(),
        )
        .await
        .unwrap();
        let place = Place {
            dir: tmp.join("state"),
            budget: weir_state::Budget::new(16 << 20),
            groups: weir_state::KeyGroups::new(0..=7),
            operator: "dedup-0".into(),
            ahead: Some(Arc::new(UploadAhead {
                storage: storage.clone(),
                shared_dir: "shared/".into(),
                every: Duration::from_millis(20),
            })),
        };
        (DiskState::create(place, FAMILIES).unwrap(), storage)
    }

    fn write(state: &DiskState, range: std::ops::Range<u32>) {
        let mut b = weir_state::Batch::default();
        for i in range {
            b.put(0, i % 8, format!("key-{i:08}").as_bytes(), &[7; 64]);
        }
        state.store().write(b).unwrap();
        state.store().flush().unwrap();
    }

    async fn checkpoint(
        state: &DiskState,
        storage: &Storage,
        n: u64,
    ) -> (
        super::super::files::DiskSnapshot,
        crate::state::upload::Uploaded,
    ) {
        let capture = state.capture().unwrap();
        crate::state::upload::upload(storage, "shared/", capture, CheckpointId(n))
            .await
            .unwrap()
    }

    /// Waits until every live table of `state` is uploaded and the round that found the
    /// last one is over; returns the stored objects.
    async fn settled(state: &DiskState, storage: &Storage) -> Vec<String> {
        let tables = state.store().tables();
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let live = tables.live().unwrap().unwrap();
            let done = {
                let reg = Registry::lock(state.registry()).unwrap();
                let idle = reg.ahead.values().all(|a| a.done);
                let uploaded = live.iter().all(|(n, _)| reg.uploaded.contains_key(n));
                let gone = reg.ahead.keys().all(|n| live.iter().any(|(l, _)| l == n));
                idle && uploaded && gone
            };
            if done {
                return storage.list("shared/").await.unwrap();
            }
        }
        panic!("the tables were never all uploaded ahead");
    }

    /// Tables written between barriers are in storage before the next barrier, which then
    /// uploads none of them again, and counts them as this checkpoint's upload.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tables_written_between_barriers_are_uploaded_before_the_barrier() {
        let tmp = tempfile::tempdir().unwrap();
        let (state, storage) = state_uploading_ahead(tmp.path()).await;
        write(&state, 0..20_000);
        let stored = settled(&state, &storage).await;
        assert!(!stored.is_empty(), "nothing uploaded ahead");
        let (snap, sent) = checkpoint(&state, &storage, 1).await;
        assert_eq!(sent.new_bytes, 0, "the barrier sent tables again");
        assert_eq!(
            sent.ahead_bytes,
            snap.tables.iter().map(|t| t.size).sum::<u64>()
        );
        for t in &snap.tables {
            let bytes = storage.get(&t.object).await.unwrap().expect("uploaded");
            assert_eq!(crc32fast::hash(&bytes), t.crc32, "{}", t.name);
        }
    }

    /// An upload ahead that fails leaves its tables to the barrier, which uploads them
    /// instead of waiting for an upload that will never finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_upload_ahead_leaves_its_tables_to_the_barrier() {
        let tmp = tempfile::tempdir().unwrap();
        // A file where storage's `shared/` directory would go: every upload fails.
        let blocked = tmp.path().join("chk").join("shared");
        std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
        std::fs::write(&blocked, b"in the way").unwrap();
        let (state, storage) = state_uploading_ahead(tmp.path()).await;
        write(&state, 0..20_000);
        // Until a round has linked a table to send (its staging directory exists) and given
        // up on it.
        let staging = tmp.path().join("state").join("store").join("ahead");
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let idle = {
                let reg = Registry::lock(state.registry()).unwrap();
                reg.uploaded.is_empty() && reg.ahead.is_empty()
            };
            if staging.is_dir() && idle {
                break;
            }
        }
        assert!(staging.is_dir(), "no round tried to upload ahead");
        std::fs::remove_file(&blocked).unwrap();
        let (snap, sent) =
            tokio::time::timeout(Duration::from_secs(20), checkpoint(&state, &storage, 1))
                .await
                .expect("the barrier waited for an upload ahead that had failed");
        assert!(!snap.tables.is_empty());
        assert_eq!(
            sent.new_bytes + sent.ahead_bytes,
            snap.tables.iter().map(|t| t.size).sum::<u64>()
        );
        for t in &snap.tables {
            let bytes = storage.get(&t.object).await.unwrap().expect("uploaded");
            assert_eq!(crc32fast::hash(&bytes), t.crc32, "{}", t.name);
        }
    }

    /// A table the checkpoint's own flush wrote, which a round uploads after the capture and
    /// the barrier then takes from that upload, stays in storage for that checkpoint when
    /// compaction later removes it from the store (it was deleted as held by none).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_uploaded_ahead_after_its_capture_stays_with_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let (state, storage) = state_uploading_ahead(tmp.path()).await;
        write(&state, 0..20_000);
        settled(&state, &storage).await;
        // The tables before the write, not those no round has uploaded yet: a round every
        // 20 ms can upload the capture's table before the test reads the registry (seen
        // with other suites loading the machine).
        let before: Vec<String> = (state.store().tables().live().unwrap().unwrap())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        // In the write buffer only: the capture's flush makes it a new table.
        let mut b = weir_state::Batch::default();
        for i in 20_000..40_000u32 {
            b.put(0, i % 8, format!("key-{i:08}").as_bytes(), &[9; 64]);
        }
        state.store().write(b).unwrap();
        let capture = state.capture().unwrap();
        let flushed: Vec<String> = capture
            .checkpoint
            .files()
            .iter()
            .filter(|f| f.name.ends_with(".sst") && !before.contains(&f.name))
            .map(|f| f.name.clone())
            .collect();
        assert!(!flushed.is_empty(), "the capture flushed no new table");
        // A round uploads it before the barrier's upload starts, which then takes that upload.
        settled(&state, &storage).await;
        let (snap, sent) =
            crate::state::upload::upload(&storage, "shared/", capture, CheckpointId(1))
                .await
                .unwrap();
        assert_eq!(sent.new_bytes, 0, "the barrier uploaded what a round had");
        state.store().compact().unwrap();
        let after = settled(&state, &storage).await;
        for t in &snap.tables {
            assert!(
                after.contains(&t.object),
                "{} was deleted though checkpoint 1 holds it (flushed by its capture: {flushed:?})",
                t.object
            );
        }
    }

    /// A table uploaded ahead that compaction removes before any checkpoint holds it is
    /// deleted from storage; one a checkpoint holds is kept, for that checkpoint.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tables_no_checkpoint_held_are_deleted_once_compacted_away() {
        let tmp = tempfile::tempdir().unwrap();
        let (state, storage) = state_uploading_ahead(tmp.path()).await;
        write(&state, 0..20_000);
        settled(&state, &storage).await;
        let (held, _) = checkpoint(&state, &storage, 1).await;
        write(&state, 20_000..40_000);
        let before = settled(&state, &storage).await;
        let unheld: Vec<&String> = before
            .iter()
            .filter(|o| !held.tables.iter().any(|t| &&t.object == o))
            .collect();
        assert!(
            !unheld.is_empty(),
            "the second write uploaded nothing ahead"
        );
        state.store().compact().unwrap();
        let after = settled(&state, &storage).await;
        for t in &held.tables {
            assert!(
                after.contains(&t.object),
                "{} was deleted though checkpoint 1 holds it",
                t.object
            );
        }
        for o in unheld {
            assert!(
                !after.contains(o),
                "{o} stayed in storage though no checkpoint held it"
            );
        }
        let discarded = Registry::lock(state.registry()).unwrap().discarded_bytes;
        assert!(discarded > 0);
        // What compaction wrote is uploaded ahead too: the next barrier sends nothing.
        let (snap, sent) = checkpoint(&state, &storage, 2).await;
        assert_eq!(sent.new_bytes, 0);
        assert!(snap.tables.iter().all(|t| after.contains(&t.object)));
    }
}
