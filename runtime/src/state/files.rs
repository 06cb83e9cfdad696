//! What a checkpoint records of one operator's store in one subtask (in that subtask's state
//! file): the table files by the shared object each was uploaded to, and the store's few
//! small files (manifest, options, `CURRENT`) inline, since they change every time.

use serde::{Deserialize, Serialize};

/// One store's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSnapshot {
    /// Operator (state id).
    pub operator: String,
    /// First key group the subtask owned.
    pub first_group: u32,
    /// Last key group the subtask owned.
    pub last_group: u32,
    /// Table files, each an object under the lineage's `shared/` directory.
    pub tables: Vec<SharedTable>,
    /// The other files, with their bytes.
    pub private: Vec<PrivateFile>,
}

/// A table file and where it was uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTable {
    /// File name in the store (`000123.sst`).
    pub name: String,
    /// Storage key of its upload.
    pub object: String,
    /// Bytes.
    pub size: u64,
    /// CRC32 of its bytes, checked when it is downloaded.
    pub crc32: u32,
}

/// A small file kept in the state file itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateFile {
    /// File name in the store.
    pub name: String,
    /// Its bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl DiskSnapshot {
    /// The key groups it covers.
    #[must_use]
    pub fn groups(&self) -> weir_state::KeyGroups {
        weir_state::KeyGroups::new(self.first_group..=self.last_group)
    }

    /// Bytes of the store it describes (tables and small files).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.size).sum::<u64>()
            + self
                .private
                .iter()
                .map(|p| p.bytes.len() as u64)
                .sum::<u64>()
    }
}

/// Size and CRC32 of the local file at `path`, read a megabyte at a time: what a table's
/// upload records and its download is checked against, without the table in memory.
///
/// # Errors
/// The file cannot be read.
pub(super) async fn size_and_crc32(path: &std::path::Path) -> std::io::Result<(u64, u32)> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok((size, hasher.finalize()));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}
