//! Keyed state stored in parts: how a savepoint of state larger than memory (a `disk` store) is
//! written and read without ever being whole in memory.
//!
//! The operator encodes its key groups off the task as a stream of pieces (each a run of
//! entries of one key group, decoding on its own); [`PartWriter`] packs pieces into parts of
//! about [`PART_BYTES`] and stores each as soon as it is full, beside the subtask's state file,
//! which lists them ([`StatePart`]). A restore reads the parts holding its key groups one at a
//! time ([`read`]) and hands each to the operator, which adds it to what it has. Memory is a
//! part and its decoding, whatever the state's size; the state stays the canonical per-key-group
//! encoding either backend restores, at any parallelism.

use bytes::Bytes;
use serde_bytes::{ByteBuf, Bytes as ByteSlice};

use super::layout::Layout;
use super::metadata::verify;
use super::state::{KeyedState, StatePart};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// About how large a piece an operator makes of a key group before starting another: small
/// enough that decoding one on restore costs little memory, large enough that its header and
/// the per-piece work do not count.
pub const PIECE_BYTES: usize = 256 << 10;

/// About how large a part grows before it is stored: one object per 4 MiB keeps object counts
/// moderate (2 560 for 10 GiB) and the memory of writing, copying and reading one small.
pub const PART_BYTES: usize = 4 << 20;

/// Packs one operator's pieces into parts and stores each when full. Runs on a blocking
/// thread: a store waits on `runtime`.
pub struct PartWriter<'a> {
    storage: &'a Storage,
    runtime: tokio::runtime::Handle,
    dir: &'a str,
    state_file: &'a str,
    operator: &'a str,
    pieces: Vec<(u32, Vec<u8>)>,
    bytes: usize,
    parts: Vec<StatePart>,
}

impl<'a> PartWriter<'a> {
    /// Parts of `operator` in checkpoint directory `dir`, named after the subtask's
    /// `state_file`.
    #[must_use]
    pub fn new(
        storage: &'a Storage,
        runtime: tokio::runtime::Handle,
        dir: &'a str,
        state_file: &'a str,
        operator: &'a str,
    ) -> Self {
        Self {
            storage,
            runtime,
            dir,
            state_file,
            operator,
            pieces: Vec::new(),
            bytes: 0,
            parts: Vec::new(),
        }
    }

    /// Add a piece of key group `kg`, storing the part first if the piece would overfill it.
    ///
    /// # Errors
    /// The store of a full part fails.
    pub fn piece(&mut self, kg: u32, bytes: Vec<u8>) -> Result<()> {
        if !self.pieces.is_empty() && self.bytes + bytes.len() > PART_BYTES {
            self.store()?;
        }
        self.bytes += bytes.len();
        self.pieces.push((kg, bytes));
        Ok(())
    }

    /// Store what is left and return every part stored, in key-group order.
    ///
    /// # Errors
    /// The store of the last part fails.
    pub fn finish(mut self) -> Result<Vec<StatePart>> {
        if !self.pieces.is_empty() {
            self.store()?;
        }
        Ok(self.parts)
    }

    fn store(&mut self) -> Result<()> {
        let pieces = std::mem::take(&mut self.pieces);
        self.bytes = 0;
        let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
            return Ok(());
        };
        let (first_group, last_group) = (first.0, last.0);
        let bytes = encode(&pieces)?;
        drop(pieces);
        let file = Layout::part_file(self.state_file, self.operator, self.parts.len());
        let part = StatePart {
            operator: self.operator.to_string(),
            file,
            first_group,
            last_group,
            size: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        };
        let key = Layout::file_in(self.dir, &part.file);
        self.runtime
            .block_on(self.storage.put(&key, Bytes::from(bytes)))?;
        self.parts.push(part);
        Ok(())
    }
}

/// A part's bytes: its pieces as [`KeyedState`] is stored in a state file (each piece one byte
/// string).
fn encode(pieces: &[(u32, Vec<u8>)]) -> Result<Vec<u8>> {
    let as_bytes: Vec<(u32, &ByteSlice)> = pieces
        .iter()
        .map(|(kg, b)| (*kg, ByteSlice::new(b)))
        .collect();
    postcard::to_stdvec(&as_bytes).map_err(|e| Error::internal(format!("encoding a part: {e}")))
}

/// Read part `part` of the checkpoint or savepoint in `dir`, checked against its size and
/// CRC, keeping the pieces of key groups in `range`.
///
/// # Errors
/// [`Error::Restore`] naming the part when it is missing, corrupt or does not decode.
pub async fn read(
    storage: &Storage,
    dir: &str,
    part: &StatePart,
    range: &std::ops::Range<u32>,
) -> Result<KeyedState> {
    let key = Layout::file_in(dir, &part.file);
    let bytes = storage
        .get(&key)
        .await?
        .ok_or_else(|| Error::Restore(format!("state part {} is missing", storage.uri(&key))))?;
    verify(&bytes, part.crc32, part.size)
        .map_err(|e| Error::Restore(format!("corrupt state part {}: {e}", storage.uri(&key))))?;
    let pieces: Vec<(u32, ByteBuf)> = postcard::from_bytes(&bytes)
        .map_err(|e| Error::Restore(format!("corrupt state part {}: {e}", storage.uri(&key))))?;
    Ok(pieces
        .into_iter()
        .filter(|(kg, _)| range.contains(kg))
        .map(|(kg, b)| (kg, b.into_vec()))
        .collect())
}

/// The parts of `parts` missing from storage, given every key under their directory
/// (`listed`), by URI: a restore refuses a checkpoint missing one before restoring anything.
#[must_use]
pub fn missing<'p>(
    storage: &Storage,
    dir: &str,
    parts: impl Iterator<Item = &'p StatePart>,
    listed: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    parts
        .map(|p| Layout::file_in(dir, &p.file))
        .filter(|k| !listed.contains(k))
        .map(|k| storage.uri(&k))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pieces_make_parts_of_bounded_size_read_back_by_range_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", tmp.path().display());
        let storage = Storage::open(&uri, &weir_crds::S3Spec::default())
            .await
            .unwrap();
        // 40 pieces of 300 KiB over 8 key groups: about 12 MiB, so at least three parts.
        let pieces: Vec<(u32, Vec<u8>)> = (0..40u32)
            .map(|i| (i / 5, vec![u8::try_from(i).unwrap(); 300 << 10]))
            .collect();
        let (s, p) = (storage.clone(), pieces.clone());
        let parts = tokio::task::spawn_blocking(move || {
            let handle = tokio::runtime::Handle::current();
            let mut w = PartWriter::new(&s, handle, "chk-1/", "s1-t0-g1.state", "dedup-1");
            for (kg, b) in p {
                w.piece(kg, b).unwrap();
            }
            w.finish().unwrap()
        })
        .await
        .unwrap();
        assert!(parts.len() >= 3, "{parts:?}");
        assert!(parts.iter().all(|p| p.size <= (PART_BYTES + 1024) as u64));
        assert!(
            parts
                .windows(2)
                .all(|w| w[0].last_group <= w[1].first_group)
        );
        let mut back = Vec::new();
        for p in &parts {
            back.extend(read(&storage, "chk-1/", p, &(0..8)).await.unwrap());
        }
        assert_eq!(back, pieces);
        let mut some = Vec::new();
        for p in &parts {
            some.extend(read(&storage, "chk-1/", p, &(2..4)).await.unwrap());
        }
        assert_eq!(some, pieces[10..20]);

        // A changed byte is reported naming the part; so is a part that is gone.
        let key = Layout::file_in("chk-1/", &parts[1].file);
        let mut bytes = storage.get(&key).await.unwrap().unwrap().to_vec();
        bytes[100] ^= 1;
        storage.put(&key, Bytes::from(bytes)).await.unwrap();
        let err = read(&storage, "chk-1/", &parts[1], &(0..8))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&parts[1].file), "{err}");
        let listed = storage.list("chk-1/").await.unwrap().into_iter().collect();
        assert!(missing(&storage, "chk-1/", parts.iter(), &listed).is_empty());
        storage.delete_prefix(&key).await.unwrap();
        let listed = storage.list("chk-1/").await.unwrap().into_iter().collect();
        let gone = missing(&storage, "chk-1/", parts.iter(), &listed);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].ends_with(&parts[1].file), "{gone:?}");
    }
}
