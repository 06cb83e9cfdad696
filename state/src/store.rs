//! One operator's keyed state in one subtask.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, ColumnFamilyDescriptor, DB, DBCompressionType,
    Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::budget::Budget;
use crate::checkpoint::LocalCheckpoint;
use crate::error::{Error, Result, io};
use crate::family::{Family, from_ordered};
use crate::keys::{self, KeyGroups};

/// The directory under a store's root that holds the live database; checkpoints are its
/// siblings, so that they can be hard links (same filesystem).
const DB_DIR: &str = "db";

/// Where [`Tables::link`] puts the links it hands out, beside the database.
const AHEAD_DIR: &str = "ahead";

/// A store's table files, reached without keeping the store open: once the store is dropped,
/// every call answers `None`, so a background uploader never holds a closed store's database
/// (and its lock) open.
#[derive(Debug, Clone)]
pub struct Tables {
    db: std::sync::Weak<DB>,
    dir: PathBuf,
    staging: PathBuf,
}

impl Tables {
    /// The names of the store's live table files (those its current version holds), with
    /// their sizes; `None` once the store is closed.
    ///
    /// # Errors
    /// RocksDB cannot list them.
    pub fn live(&self) -> Result<Option<Vec<(String, u64)>>> {
        let Some(db) = self.db.upgrade() else {
            return Ok(None);
        };
        let files = db.live_files().map_err(|source| Error::Db {
            dir: self.dir.clone(),
            op: "list live files",
            source,
        })?;
        Ok(Some(
            files
                .into_iter()
                .map(|f| (f.name.trim_start_matches('/').to_string(), f.size as u64))
                .collect(),
        ))
    }

    /// A hard link to table `name` that stays readable whatever compaction does to the
    /// table, removed when dropped; `None` if the table has already left the store (or the
    /// store is closed).
    ///
    /// # Errors
    /// The link cannot be made for another reason.
    pub fn link(&self, name: &str) -> Result<Option<LinkedTable>> {
        if self.db.strong_count() == 0 {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.staging).map_err(io(&self.staging, "create"))?;
        let path = self.staging.join(name);
        let _ = std::fs::remove_file(&path);
        match std::fs::hard_link(self.dir.join(name), &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, "link a table")(e)),
        }
        Ok(Some(LinkedTable { path }))
    }
}

/// A link to one table file ([`Tables::link`]), removed when dropped.
#[derive(Debug)]
pub struct LinkedTable {
    /// Where the link is.
    pub path: PathBuf,
}

impl Drop for LinkedTable {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A store: one RocksDB database with a column family per kind of state the operator keeps.
pub struct Store {
    /// Shared only weakly, with [`Tables`]: the store alone keeps the database open.
    db: Arc<DB>,
    root: PathBuf,
    families: Vec<String>,
    write: WriteOptions,
    /// Entries of expiring families whose leading time is at or below this are dead.
    horizon: Arc<AtomicI64>,
}

impl Drop for Store {
    /// Waits for a [`Tables`] call that holds the database for a moment to let go, so that the
    /// database is closed (and its lock released) once the store is dropped: a store reopened
    /// at the same place at once (a restore in place) would otherwise find it locked.
    fn drop(&mut self) {
        while Arc::strong_count(&self.db) > 1 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("families", &self.families)
            .finish_non_exhaustive()
    }
}

/// A stored entry: key group, key, value.
pub type Entry = (u32, Vec<u8>, Vec<u8>);

/// Writes applied together ([`Store::write`]).
#[derive(Default)]
pub struct Batch {
    batch: WriteBatch,
    ops: Vec<Op>,
}

enum Op {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
    /// Every stored key from the first up to the second (excluded).
    DeleteRange(usize, Vec<u8>, Vec<u8>),
}

impl Batch {
    /// Store `value` under `key` of key group `kg` in family `family` (its index in the
    /// families the store was opened with).
    pub fn put(&mut self, family: usize, kg: u32, key: &[u8], value: &[u8]) {
        self.ops
            .push(Op::Put(family, keys::stored(kg, key), value.to_vec()));
    }

    /// Remove `key` of key group `kg` from family `family`.
    pub fn delete(&mut self, family: usize, kg: u32, key: &[u8]) {
        self.ops.push(Op::Delete(family, keys::stored(kg, key)));
    }

    /// Remove every key of key group `kg` in family `family` that starts with `prefix`: one
    /// range tombstone, however many keys there are.
    pub fn delete_prefix(&mut self, family: usize, kg: u32, prefix: &[u8]) {
        let start = keys::stored(kg, prefix);
        let end =
            keys::successor(&start).unwrap_or_else(|| keys::stored(kg.saturating_add(1), &[]));
        self.ops.push(Op::DeleteRange(family, start, end));
    }

    /// No writes yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Writes so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

pub(crate) fn options(budget: &Budget) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&budget.cache);
    // Index and filter blocks count against the budget too, kept in the cache's high-priority
    // pool so that data blocks are evicted first.
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_bloom_filter(10.0, false);
    // Index and filters split into blocks the size of data blocks, found through a small
    // pinned top level: a whole-file filter of a large table is megabytes, more than a cache
    // shard holds, and was read back from the file (and checksummed) on every lookup.
    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_manager(&budget.buffers);
    opts.set_write_buffer_size(budget.write_buffer());
    opts.set_max_write_buffer_number(3);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    opts.set_level_compaction_dynamic_level_bytes(true);
    opts.set_max_background_jobs(2);
    // Table files are few and large; an unbounded number open keeps their index blocks
    // charged to the cache, not to untracked memory.
    opts.set_max_open_files(-1);
    // A small bloom filter over each write buffer's keys: most reads of a dedup ask for a key
    // never seen, and without it each searched every write buffer's skip list, the largest
    // cost of a dedup write (each search a chain of cache misses).
    opts.set_memtable_whole_key_filtering(true);
    opts.set_memtable_prefix_bloom_ratio(0.05);
    opts
}

/// The options of one family: [`options`], and for an expiring family a compaction filter
/// that drops entries dead at `horizon`.
fn family_options(budget: &Budget, family: Family, horizon: &Arc<AtomicI64>) -> Options {
    let mut opts = options(budget);
    if family.expires {
        let horizon = Arc::clone(horizon);
        opts.set_compaction_filter("weir-expired", move |_level, _key, value: &[u8]| {
            match from_ordered(value) {
                Some(t) if t <= horizon.load(Ordering::Relaxed) => Decision::Remove,
                _ => Decision::Keep,
            }
        });
    }
    opts
}

fn names(families: &[Family]) -> Vec<String> {
    families.iter().map(|f| f.name.to_string()).collect()
}

impl Store {
    /// An empty store under `root` with column families `families` (an existing directory
    /// there is removed: state comes from checkpoints, never from a previous run's files).
    ///
    /// # Errors
    /// The directory cannot be prepared, or RocksDB does not open.
    pub fn create(root: &Path, families: &[Family], budget: &Budget) -> Result<Self> {
        reset_dir(root)?;
        Self::open(root, families, budget)
    }

    pub(crate) fn open(root: &Path, families: &[Family], budget: &Budget) -> Result<Self> {
        let opts = options(budget);
        let dir = root.join(DB_DIR);
        let horizon = Arc::new(AtomicI64::new(i64::MIN));
        let descriptors = families
            .iter()
            .map(|f| ColumnFamilyDescriptor::new(f.name, family_options(budget, *f, &horizon)));
        let db = DB::open_cf_descriptors(&opts, &dir, descriptors).map_err(|source| Error::Db {
            dir: dir.clone(),
            op: "open",
            source,
        })?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Self {
            db: Arc::new(db),
            root: root.to_path_buf(),
            families: names(families),
            write,
            horizon,
        })
    }

    /// A store's checkpoint opened read-only at `dir` (to read a consistent copy of the
    /// state while the live store goes on).
    ///
    /// # Errors
    /// RocksDB does not open it.
    pub fn open_read_only(dir: &Path, families: &[Family], budget: &Budget) -> Result<Self> {
        let opts = options(budget);
        let db =
            DB::open_cf_for_read_only(&opts, dir, names(families), false).map_err(|source| {
                Error::Db {
                    dir: dir.to_path_buf(),
                    op: "open read-only",
                    source,
                }
            })?;
        Ok(Self {
            db: Arc::new(db),
            root: dir.to_path_buf(),
            families: names(families),
            write: WriteOptions::default(),
            horizon: Arc::new(AtomicI64::new(i64::MIN)),
        })
    }

    pub(crate) fn db_dir(root: &Path) -> PathBuf {
        root.join(DB_DIR)
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rocksdb::Error) -> Error + '_ {
        move |source| Error::Db {
            dir: self.root.clone(),
            op,
            source,
        }
    }

    fn family(&self, family: usize) -> Result<&rocksdb::ColumnFamily> {
        self.families
            .get(family)
            .and_then(|name| self.db.cf_handle(name))
            .ok_or_else(|| Error::Invalid {
                dir: self.root.clone(),
                message: format!("no column family {family}"),
            })
    }

    /// Let compactions drop the entries of expiring families whose leading time is at or
    /// below `time` (never lowered: a smaller `time` than before changes nothing).
    pub fn expire_through(&self, time: i64) {
        self.horizon.fetch_max(time, Ordering::Relaxed);
    }

    /// The value of `key` in key group `kg` of `family`.
    ///
    /// # Errors
    /// RocksDB read errors.
    pub fn get(&self, family: usize, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.family(family)?;
        self.db
            .get_pinned_cf(cf, keys::stored(kg, key))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(self.err("read"))
    }

    /// The values of many keys of `family` at once, in the order given: one batched read
    /// (RocksDB's `MultiGet`, which sorts the keys and probes each table once per block),
    /// faster than as many single reads.
    ///
    /// # Errors
    /// The family is unknown; RocksDB read errors.
    pub fn get_many(&self, family: usize, keys: &[(u32, &[u8])]) -> Result<Vec<Option<Vec<u8>>>> {
        let cf = self.family(family)?;
        let stored: Vec<Vec<u8>> = keys.iter().map(|(kg, k)| keys::stored(*kg, k)).collect();
        self.db
            .batched_multi_get_cf(cf, &stored, false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|v| v.to_vec())).map_err(self.err("read")))
            .collect()
    }

    /// Apply `batch`.
    ///
    /// # Errors
    /// RocksDB write errors.
    pub fn write(&self, batch: Batch) -> Result<()> {
        let Batch { mut batch, ops } = batch;
        for op in ops {
            match op {
                Op::Put(f, k, v) => batch.put_cf(self.family(f)?, k, v),
                Op::Delete(f, k) => batch.delete_cf(self.family(f)?, k),
                Op::DeleteRange(f, from, to) => batch.delete_range_cf(self.family(f)?, from, to),
            }
        }
        self.write_raw(batch)
    }

    /// Apply a RocksDB batch built against this store's column families (a restore's copy).
    pub(crate) fn write_raw(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.db
            .write_opt(batch, &self.write)
            .map_err(self.err("write"))
    }

    /// Every entry of `family` in key groups `groups`, in key order: `(key group, key, value)`.
    ///
    /// # Errors
    /// The family is unknown; RocksDB's read errors come with each item.
    pub fn scan(
        &self,
        family: usize,
        groups: KeyGroups,
    ) -> Result<impl Iterator<Item = Result<Entry>> + '_> {
        let cf = self.family(family)?;
        Ok(scan(&self.db, cf, groups).map(|r| r.map_err(self.err("scan"))))
    }

    /// Entries of `family` in key group `kg` from `from` on, in key order.
    ///
    /// # Errors
    /// The family is unknown; RocksDB's read errors come with each item.
    pub fn scan_from(
        &self,
        family: usize,
        kg: u32,
        from: &[u8],
    ) -> Result<impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_> {
        self.scan_between(
            family,
            keys::stored(kg, from),
            keys::stored(kg.saturating_add(1), &[]),
        )
    }

    /// Entries of `family` in key group `kg` whose key starts with `prefix`, in key order:
    /// the iterator stops at the prefix's end, not the key group's.
    ///
    /// # Errors
    /// The family is unknown; RocksDB's read errors come with each item.
    pub fn scan_prefix(
        &self,
        family: usize,
        kg: u32,
        prefix: &[u8],
    ) -> Result<impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_> {
        let start = keys::stored(kg, prefix);
        let end =
            keys::successor(&start).unwrap_or_else(|| keys::stored(kg.saturating_add(1), &[]));
        self.scan_between(family, start, end)
    }

    /// The greatest key of key group `kg` in `family` that starts with `prefix`, with its
    /// value: the end of a prefix scan without reading the rest.
    ///
    /// # Errors
    /// The family is unknown; RocksDB read errors.
    pub fn last_in_prefix(
        &self,
        family: usize,
        kg: u32,
        prefix: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let cf = self.family(family)?;
        let start = keys::stored(kg, prefix);
        let end =
            keys::successor(&start).unwrap_or_else(|| keys::stored(kg.saturating_add(1), &[]));
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(start);
        read.set_iterate_upper_bound(end);
        let last = self.db.iterator_cf_opt(cf, read, IteratorMode::End).next();
        last.transpose()
            .map_err(self.err("scan"))?
            .map(|(k, v)| {
                let (_, key) = keys::split(&k).ok_or_else(|| self.short_key())?;
                Ok((key.to_vec(), v.to_vec()))
            })
            .transpose()
    }

    /// Entries of `family` from stored key `start` up to `end` (excluded), without their key
    /// group.
    fn scan_between(
        &self,
        family: usize,
        start: Vec<u8>,
        end: Vec<u8>,
    ) -> Result<impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_> {
        let cf = self.family(family)?;
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(end);
        let it = self
            .db
            .iterator_cf_opt(cf, read, IteratorMode::From(&start, Direction::Forward));
        Ok(it.map(move |r| {
            r.map_err(self.err("scan")).and_then(|(k, v)| {
                let (_, key) = keys::split(&k).ok_or_else(|| self.short_key())?;
                Ok((key.to_vec(), v.to_vec()))
            })
        }))
    }

    fn short_key(&self) -> Error {
        Error::Invalid {
            dir: self.root.clone(),
            message: "a stored key without its key group".into(),
        }
    }

    /// Write this store's state to a directory beside it, as hard links to its files after
    /// flushing the write buffers, so the checkpoint holds every write so far. Cheap: no table
    /// is copied.
    ///
    /// # Errors
    /// The flush or the links fail.
    pub fn checkpoint(&self, name: &str) -> Result<LocalCheckpoint> {
        let dir = self.root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir, "remove an old checkpoint"))?;
        }
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(self.err("checkpoint"))?;
        cp.create_checkpoint(&dir).map_err(self.err("checkpoint"))?;
        LocalCheckpoint::read(dir)
    }

    /// Write the write buffers out as table files now (a checkpoint does it anyway).
    ///
    /// # Errors
    /// The flush fails.
    pub fn flush(&self) -> Result<()> {
        for f in 0..self.families.len() {
            self.db
                .flush_cf(self.family(f)?)
                .map_err(self.err("flush"))?;
        }
        Ok(())
    }

    /// Compact every family's whole key range into as few tables as compaction makes, now:
    /// every table the store held before is replaced.
    ///
    /// # Errors
    /// A family is missing.
    pub fn compact(&self) -> Result<()> {
        for f in 0..self.families.len() {
            self.db
                .compact_range_cf(self.family(f)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// A handle on the store's table files that does not keep it open, for uploading tables
    /// between checkpoints ([`Tables`]).
    #[must_use]
    pub fn tables(&self) -> Tables {
        Tables {
            db: Arc::downgrade(&self.db),
            dir: Self::db_dir(&self.root),
            staging: self.root.join(AHEAD_DIR),
        }
    }

    /// Bytes of table files on disk (live and awaiting deletion).
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.sum_property(c"rocksdb.total-sst-files-size")
    }

    /// Bytes the write buffers of this store hold.
    #[must_use]
    pub fn memory_bytes(&self) -> u64 {
        self.sum_property(c"rocksdb.cur-size-all-mem-tables")
    }

    fn sum_property(&self, name: &std::ffi::CStr) -> u64 {
        self.families
            .iter()
            .filter_map(|f| self.db.cf_handle(f))
            .filter_map(|cf| self.db.property_int_value_cf(cf, name).ok().flatten())
            .sum()
    }

    /// Remove every key outside `groups` (after a restore from a wider range).
    pub(crate) fn clip(&self, groups: KeyGroups) -> Result<()> {
        for f in 0..self.families.len() {
            let cf = self.family(f)?;
            let lower = groups.lower();
            if groups.first > 0 {
                self.db
                    .delete_range_cf_opt(cf, [0u8; keys::PREFIX], lower, &self.write)
                    .map_err(self.err("clip"))?;
            }
            if let Some(upper) = groups.upper() {
                self.db
                    .delete_range_cf_opt(
                        cf,
                        upper.to_vec(),
                        vec![0xFF; keys::PREFIX + 1],
                        &self.write,
                    )
                    .map_err(self.err("clip"))?;
            }
        }
        Ok(())
    }

    /// The store's root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn raw(&self) -> &DB {
        &self.db
    }
}

/// Entries of `cf` in `groups`, split into key group and key.
pub(crate) fn scan<'a>(
    db: &'a DB,
    cf: &rocksdb::ColumnFamily,
    groups: KeyGroups,
) -> impl Iterator<Item = std::result::Result<Entry, rocksdb::Error>> + 'a {
    let mut read = ReadOptions::default();
    if let Some(upper) = groups.upper() {
        read.set_iterate_upper_bound(upper.to_vec());
    }
    let lower = groups.lower();
    let it = db.iterator_cf_opt(cf, read, IteratorMode::From(&lower, Direction::Forward));
    it.filter_map(|r| match r {
        Err(e) => Some(Err(e)),
        Ok((k, v)) => keys::split(&k).map(|(kg, key)| Ok((kg, key.to_vec(), v.to_vec()))),
    })
}

pub(crate) fn reset_dir(root: &Path) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(io(root, "remove old state"))?;
    }
    std::fs::create_dir_all(root).map_err(io(root, "create"))
}
