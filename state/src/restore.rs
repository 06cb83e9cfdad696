//! A store rebuilt from checkpoints, possibly of other key-group ranges (a rescale).

use std::path::PathBuf;

use rocksdb::{DB, IngestExternalFileOptions, SstFileWriter};

use crate::budget::Budget;
use crate::error::{Error, Result, io};
use crate::family::Family;
use crate::keys::KeyGroups;
use crate::store::{self, Store, options, reset_dir};

/// The files of one former subtask's checkpoint, downloaded into a directory of their own on
/// the store's filesystem, and the key groups that subtask owned.
#[derive(Debug, Clone)]
pub struct Source {
    /// The checkpoint's files, as [`crate::LocalCheckpoint`] listed them.
    pub dir: PathBuf,
    /// Key groups its state covers.
    pub groups: KeyGroups,
}

/// Bytes per table file a copy writes before it starts another (RocksDB's own target size).
const COPY_FILE_BYTES: u64 = 64 << 20;

impl Store {
    /// A store under `root` for key groups `groups`, from the checkpoints `sources` (each
    /// directory is consumed). The source that overlaps `groups` most becomes the database as
    /// it is (its table files are kept, so the next checkpoint uploads only what changed
    /// since) and loses the keys outside `groups` by range deletes; the others' keys inside
    /// `groups` are copied in. Returns the store and the index of the source kept whole.
    ///
    /// # Errors
    /// A source does not open, or copying fails.
    pub fn restore(
        root: &std::path::Path,
        families: &[Family],
        budget: &Budget,
        groups: KeyGroups,
        sources: Vec<Source>,
    ) -> Result<(Self, Option<usize>)> {
        reset_dir(root)?;
        let base = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.groups.overlap(&groups).map(|o| (i, o.len())))
            .max_by_key(|(i, len)| (*len, std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        if let Some(i) = base {
            let from = &sources[i].dir;
            let to = Store::db_dir(root);
            std::fs::rename(from, &to).map_err(io(from, "move restored state into place"))?;
        }
        let store = Store::open(root, families, budget)?;
        if let Some(i) = base
            && sources[i].groups != groups
        {
            store.clip(groups)?;
        }
        for (i, source) in sources.iter().enumerate() {
            if Some(i) == base {
                continue;
            }
            if let Some(overlap) = source.groups.overlap(&groups) {
                copy_range(&store, families, budget, source, overlap)?;
            }
            if source.dir.exists() {
                std::fs::remove_dir_all(&source.dir).map_err(io(&source.dir, "remove"))?;
            }
        }
        Ok((store, base))
    }
}

/// Copy the keys of `groups` from `source` (opened read-only) into `store`: written in key
/// order straight into table files beside the store, then ingested. Writing them through the
/// store instead puts the whole range through its write buffers, which a rescale of large
/// state fills faster than they flush (memory past the budget, and every byte compacted again).
fn copy_range(
    store: &Store,
    families: &[Family],
    budget: &Budget,
    source: &Source,
    groups: KeyGroups,
) -> Result<()> {
    let opts = options(budget);
    let opened = |op: &'static str| {
        let dir = source.dir.clone();
        move |source| Error::Db { dir, op, source }
    };
    // A family the job added since the checkpoint was taken is not in it, and starts empty.
    let held = DB::list_cf(&opts, &source.dir).map_err(opened("list a restored checkpoint"))?;
    let families: Vec<&Family> = families
        .iter()
        .filter(|f| held.iter().any(|h| h == f.name))
        .collect();
    let db = DB::open_cf_for_read_only(&opts, &source.dir, families.iter().map(|f| f.name), false)
        .map_err(opened("open a restored checkpoint"))?;
    let staging = store.root().join("copying");
    reset_dir(&staging)?;
    let failed = |dir: &std::path::Path, op: &'static str| {
        let dir = dir.to_path_buf();
        move |source| Error::Db { dir, op, source }
    };
    for Family { name, .. } in families {
        let (Some(from), Some(to)) = (db.cf_handle(name), store.raw().cf_handle(name)) else {
            return Err(Error::Invalid {
                dir: source.dir.clone(),
                message: format!("the checkpoint has no column family {name}"),
            });
        };
        let mut files = Vec::new();
        let mut writer: Option<SstFileWriter<'_>> = None;
        for entry in store::scan(&db, from, groups) {
            let (kg, key, value) =
                entry.map_err(failed(&source.dir, "read a restored checkpoint"))?;
            let w = match &mut writer {
                Some(w) => w,
                None => {
                    let path = staging.join(format!("{name}-{}.sst", files.len()));
                    let w = SstFileWriter::create(&opts);
                    w.open(&path)
                        .map_err(failed(&path, "create a table to copy into"))?;
                    files.push(path);
                    writer.insert(w)
                }
            };
            w.put(crate::keys::stored(kg, &key), value)
                .map_err(failed(&staging, "write a copied table"))?;
            if w.file_size() >= COPY_FILE_BYTES {
                w.finish()
                    .map_err(failed(&staging, "finish a copied table"))?;
                writer = None;
            }
        }
        if let Some(mut w) = writer {
            w.finish()
                .map_err(failed(&staging, "finish a copied table"))?;
        }
        if !files.is_empty() {
            let mut ingest = IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            store
                .raw()
                .ingest_external_file_cf_opts(to, &ingest, files)
                .map_err(failed(&staging, "ingest copied tables"))?;
        }
    }
    std::fs::remove_dir_all(&staging).map_err(io(&staging, "remove"))?;
    Ok(())
}
