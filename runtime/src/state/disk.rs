//! One operator's disk state in one subtask: its store, and what of it is already uploaded.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weir_state::{Budget, KeyGroups, LocalCheckpoint, Source, Store};
pub use weir_state::{Family, from_ordered, ordered};

use super::files::{DiskSnapshot, SharedTable};
use crate::error::Result;

/// `key` with its length before it (4 bytes, big-endian): the start of a stored key that goes
/// on after the operator's key (a window's start, a row's sequence number), so that no key's
/// entries fall within another's prefix scan.
#[must_use]
pub fn length_prefixed(key: &[u8], room: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + room);
    k.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The key [`length_prefixed`] wrote at the start of `stored`, and what follows it; `None` if
/// `stored` is cut short.
#[must_use]
pub fn split_length_prefixed(stored: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = stored.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// Where one operator of one subtask keeps its store.
#[derive(Debug, Clone)]
pub struct Place {
    /// Its local directory.
    pub dir: PathBuf,
    /// The process's memory budget.
    pub budget: Budget,
    /// Key groups the subtask owns.
    pub groups: KeyGroups,
    /// Operator (state id).
    pub operator: String,
    /// Upload the store's tables between checkpoints too (`None`: only at checkpoints).
    pub ahead: Option<Arc<super::ahead::UploadAhead>>,
}

/// The tables of a store already in storage, by file name. A store names its tables
/// uniquely only within itself, and a restored store continues numbering from its
/// checkpoint, which a newer failed attempt may have used too: so each store instance
/// uploads under its own `uid`, and only the tables it inherited from the restored checkpoint
/// (uploaded by an earlier instance) or uploaded itself are listed here.
#[derive(Debug, Default)]
pub struct Registry {
    /// Names this instance's uploads: `shared/<uid>-<file>`.
    pub uid: String,
    /// Uploaded tables by file name.
    pub uploaded: HashMap<String, SharedTable>,
    /// Tables uploaded (or being uploaded) between checkpoints, until they leave the store.
    pub ahead: HashMap<String, super::ahead::AheadTable>,
    /// Captures between linking their files and recording them in `held`: while any is, no
    /// table uploaded ahead is deleted.
    pub capturing: u32,
    /// Tables some capture holds that are still in the store, by file name. The checkpoint's
    /// own flush writes a table no round has seen, and a round may upload it before the
    /// barrier's upload gets to it (which then takes that upload): the round must not delete
    /// it when compaction removes it later, or the checkpoint would refer to a missing object.
    pub held: HashSet<String>,
    /// Bytes uploaded ahead since the last capture: that checkpoint's upload too.
    pub ahead_bytes: u64,
    /// Bytes uploaded ahead and deleted because no checkpoint came to hold them.
    pub discarded_bytes: u64,
}

impl Registry {
    /// Lock `registry`; a poisoned lock (a panic while it was held) is an internal error.
    ///
    /// # Errors
    /// The lock is poisoned.
    pub fn lock(registry: &Mutex<Self>) -> Result<std::sync::MutexGuard<'_, Self>> {
        registry
            .lock()
            .map_err(|_| crate::error::Error::internal("state upload registry poisoned"))
    }
}

/// A store's checkpoint taken on the task, for the uploader.
#[derive(Debug)]
pub struct DiskCapture {
    /// Operator (state id).
    pub operator: String,
    /// Key groups it covers.
    pub groups: KeyGroups,
    /// The hard-linked files, removed once uploaded.
    pub checkpoint: LocalCheckpoint,
    /// The registry's uid when captured: uploads are named with it, and recorded only while
    /// the registry still has it (a savepoint since may have reset it).
    pub uid: String,
    /// What the store has uploaded before.
    pub registry: Arc<Mutex<Registry>>,
    /// The store at the barrier, for metrics: (table files on disk, write buffers).
    pub local: (u64, u64),
    /// Bytes uploaded ahead since the capture before: part of this checkpoint's upload.
    pub ahead_bytes: u64,
}

/// A restored store's files on local disk, and where its tables came from.
#[derive(Debug)]
pub struct Fetched {
    /// The downloaded directory and its key groups.
    pub source: Source,
    /// Its tables' objects.
    pub tables: Vec<SharedTable>,
    /// Whether those objects belong to the lineage now checkpointing (a checkpoint of
    /// another lineage's objects could be deleted by that lineage's retention).
    pub reusable: bool,
    /// Bytes of its tables taken from the previous run's local state, not downloaded.
    pub reused_bytes: u64,
}

/// One operator's disk state in one subtask.
#[derive(Debug)]
pub struct DiskState {
    store: Store,
    place: Place,
    registry: Arc<Mutex<Registry>>,
    captures: AtomicU64,
    /// Uploads the store's tables between checkpoints, until this is dropped.
    _ahead: Option<super::ahead::Running>,
}

fn uid() -> String {
    let mut bytes = [0u8; 8];
    // A clash only wastes an upload's uniqueness if it also meets the same file name in
    // the same lineage; the time keeps that from mattering even without randomness.
    let _ = getrandom::fill(&mut bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{now:x}{}", hex::encode(bytes))
}

impl DiskState {
    /// An empty store at `place`.
    ///
    /// # Errors
    /// The store does not open.
    pub fn create(place: Place, families: &[Family]) -> Result<Self> {
        let store = Store::create(&place.dir.join("store"), families, &place.budget)?;
        Ok(Self::new(store, place, HashMap::new()))
    }

    /// A store at `place` from the downloaded checkpoints `fetched`.
    ///
    /// # Errors
    /// A checkpoint does not open or copy.
    pub fn restore(place: Place, families: &[Family], fetched: Vec<Fetched>) -> Result<Self> {
        let sources = fetched.iter().map(|f| f.source.clone()).collect();
        let (store, base) = Store::restore(
            &place.dir.join("store"),
            families,
            &place.budget,
            place.groups,
            sources,
        )?;
        let inherited = base
            .and_then(|i| fetched.into_iter().nth(i))
            .filter(|f| f.reusable)
            .map(|f| f.tables.into_iter().map(|t| (t.name.clone(), t)).collect())
            .unwrap_or_default();
        Ok(Self::new(store, place, inherited))
    }

    fn new(store: Store, place: Place, uploaded: HashMap<String, SharedTable>) -> Self {
        let registry = Arc::new(Mutex::new(Registry {
            uid: uid(),
            uploaded,
            ..Registry::default()
        }));
        let ahead = place.ahead.clone().and_then(|to| {
            super::ahead::start(
                store.tables(),
                Arc::clone(&registry),
                to,
                place.operator.clone(),
            )
        });
        Self {
            store,
            place,
            registry,
            captures: AtomicU64::new(0),
            _ahead: ahead,
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What of it is uploaded.
    #[must_use]
    pub fn registry(&self) -> &Arc<Mutex<Registry>> {
        &self.registry
    }

    /// Where it lives.
    #[must_use]
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// Key groups this subtask owns.
    #[must_use]
    pub fn groups(&self) -> KeyGroups {
        self.place.groups
    }

    /// A checkpoint of the store for the uploader: hard links, taken on the task.
    ///
    /// # Errors
    /// The store cannot flush or link its files.
    pub fn capture(&self) -> Result<DiskCapture> {
        let n = self.captures.fetch_add(1, Ordering::Relaxed);
        // Before the checkpoint's flush empties them.
        let buffered = self.store.memory_bytes();
        // No table uploaded ahead is deleted between the link and the marks below.
        Registry::lock(&self.registry)?.capturing += 1;
        let checkpoint = self.store.checkpoint(&format!("capture-{n}"));
        let mut reg = Registry::lock(&self.registry)?;
        reg.capturing -= 1;
        let checkpoint = checkpoint?;
        for f in checkpoint.files() {
            reg.held.insert(f.name.clone());
        }
        let ahead_bytes = std::mem::take(&mut reg.ahead_bytes);
        for a in reg.ahead.values_mut() {
            a.counted |= a.done;
        }
        let uid = reg.uid.clone();
        drop(reg);
        Ok(DiskCapture {
            operator: self.place.operator.clone(),
            groups: self.place.groups,
            checkpoint,
            uid,
            registry: Arc::clone(&self.registry),
            local: (self.store.disk_bytes(), buffered),
            ahead_bytes,
        })
    }

    /// A read-only view of a fresh checkpoint of the store, for a savepoint's full copy
    /// encoded off the task: the checkpoint (kept alive) and the store opened on it.
    ///
    /// # Errors
    /// The checkpoint or its opening fails.
    pub fn frozen(&self, families: &[Family]) -> Result<(LocalCheckpoint, Store)> {
        // This checkpoint refers to none of the uploaded tables, so once it is kept, retention
        // may delete every table only older checkpoints list: the next checkpoint uploads the
        // store whole again, under a new uid (an upload under the old names could land just
        // before retention deletes them).
        {
            let mut reg = Registry::lock(&self.registry)?;
            reg.uid = uid();
            reg.uploaded.clear();
            // Tables uploaded ahead under the old uid and held by no checkpoint stay in
            // storage until the next start's sweep.
            reg.ahead.clear();
            reg.held.clear();
        }
        let n = self.captures.fetch_add(1, Ordering::Relaxed);
        let checkpoint = self.store.checkpoint(&format!("frozen-{n}"))?;
        let store = Store::open_read_only(checkpoint.dir(), families, &self.place.budget)?;
        Ok((checkpoint, store))
    }
}

impl DiskCapture {
    /// What a checkpoint records when the upload is done.
    pub(super) fn snapshot(
        &self,
        tables: Vec<SharedTable>,
        private: Vec<super::files::PrivateFile>,
    ) -> DiskSnapshot {
        DiskSnapshot {
            operator: self.operator.clone(),
            first_group: self.groups.first,
            last_group: self.groups.last,
            tables,
            private,
        }
    }
}
