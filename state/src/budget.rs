//! One memory limit for every store of a process.

use rocksdb::{Cache, WriteBufferManager};

/// The memory all stores of a process may use: a block cache, with the write buffers
/// (memtables) charged to it, so reads and writes share one limit. RocksDB's limit is soft (a
/// write stalls until a flush frees memory rather than failing), so the runtime's own memory
/// must stay beside it.
#[derive(Clone)]
pub struct Budget {
    pub(crate) cache: Cache,
    pub(crate) buffers: WriteBufferManager,
    bytes: usize,
}

impl Budget {
    /// A budget of `bytes`: half may hold write buffers, as Flink's default
    /// (`state.backend.rocksdb.memory.write-buffer-ratio: 0.5`).
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.max(8 << 20);
        let cache = Cache::new_lru_cache(bytes);
        let buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(bytes / 2, true, cache.clone());
        Self {
            cache,
            buffers,
            bytes,
        }
    }

    /// The limit, in bytes.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes the block cache and write buffers hold now.
    #[must_use]
    pub fn used(&self) -> usize {
        self.cache.get_usage()
    }

    /// The size of one write buffer: several per store fit in the budget's half, and a
    /// flush writes a table of about this size.
    pub(crate) fn write_buffer(&self) -> usize {
        (self.bytes / 8).clamp(1 << 20, 64 << 20)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("bytes", &self.bytes)
            .finish()
    }
}
