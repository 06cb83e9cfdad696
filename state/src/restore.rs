//! A store rebuilt from checkpoints, possibly of other key-group ranges (a rescale).

use std::path::PathBuf;

use rocksdb::{DB, WriteBatch};

use crate::budget::Budget;
use crate::error::{Error, Result, io};
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

/// Entries copied per write batch while merging a former subtask's range.
const COPY_BATCH: usize = 4096;

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
        families: &[&str],
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

/// Copy the keys of `groups` from `source` (opened read-only) into `store`.
fn copy_range(
    store: &Store,
    families: &[&str],
    budget: &Budget,
    source: &Source,
    groups: KeyGroups,
) -> Result<()> {
    let opts = options(budget);
    let db = DB::open_cf_for_read_only(&opts, &source.dir, families.iter().copied(), false)
        .map_err(|source_err| Error::Db {
            dir: source.dir.clone(),
            op: "open a restored checkpoint",
            source: source_err,
        })?;
    for name in families {
        let (Some(from), Some(to)) = (db.cf_handle(name), store.raw().cf_handle(name)) else {
            return Err(Error::Invalid {
                dir: source.dir.clone(),
                message: format!("the checkpoint has no column family {name}"),
            });
        };
        let mut batch = WriteBatch::default();
        for entry in store::scan(&db, from, groups) {
            let (kg, key, value) = entry.map_err(|e| Error::Db {
                dir: source.dir.clone(),
                op: "read a restored checkpoint",
                source: e,
            })?;
            batch.put_cf(to, crate::keys::stored(kg, &key), value);
            if batch.len() >= COPY_BATCH {
                store.write_raw(std::mem::take(&mut batch))?;
            }
        }
        store.write_raw(batch)?;
    }
    Ok(())
}
