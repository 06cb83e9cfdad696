//! Whether a ClickHouse table will really drop a replayed block, and how a checkpoint's rows
//! are split into blocks so that it does.
//!
//! A table remembers the identities (hashes or tokens) of only its last `window` inserted
//! blocks, and on `Replicated*` tables only for `window_seconds`. A replay after a crash
//! re-inserts the blocks of the checkpoints being committed; between a block's first insert
//! and its replay, at most the blocks of those checkpoints from every subtask were inserted
//! (a later checkpoint cannot have committed, or the restore would have picked it). So each
//! subtask writes at most `window / parallelism` blocks per checkpoint: when a checkpoint
//! holds more rows than that many blocks of `blockRows`, its blocks grow. The block size a
//! checkpoint used is recorded in its deduplication token, so that a replay splits the rows
//! the same way whatever the job's parallelism or `blockRows` are by then.

/// Shortest `replicated_deduplication_window_seconds` the sink accepts: a replay comes after a
/// restart (backoff, image pull, S3 and broker waits), and one that comes after the window
/// would be counted twice.
pub const MIN_WINDOW_SECONDS: u64 = 3600;

/// What a table remembers of inserted blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Setting the count came from (named in errors).
    pub setting: &'static str,
    /// Blocks remembered; 0 means deduplication is off.
    pub blocks: u64,
    /// Seconds remembered (`Replicated*` tables only).
    pub seconds: Option<u64>,
}

/// A `name = value` setting in the `SETTINGS` part of `system.tables.engine_full`, which is
/// where a table's own override of a MergeTree setting shows.
#[must_use]
pub fn table_setting(engine_full: &str, name: &str) -> Option<u64> {
    let (_, settings) = engine_full.split_once(" SETTINGS ")?;
    settings.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('\'').parse().ok())?
    })
}

/// The most blocks one subtask may write per checkpoint, or why the table cannot deduplicate
/// a replay of the job at this parallelism.
///
/// # Errors
/// Deduplication is off, the window holds fewer blocks than the job has subtasks, or the
/// time window is shorter than [`MIN_WINDOW_SECONDS`].
pub fn blocks_per_subtask(window: Window, parallelism: u32) -> Result<u64, String> {
    let parallelism = u64::from(parallelism.max(1));
    if window.blocks == 0 {
        return Err(format!(
            "{} is 0: the table does not deduplicate inserted blocks, so a commit replayed \
             after a crash would be counted twice",
            window.setting
        ));
    }
    if window.blocks < parallelism {
        return Err(format!(
            "{} is {}, fewer blocks than the sink's {parallelism} subtasks write in one \
             checkpoint (at least one each): raise it to at least {parallelism} (the table \
             setting), or lower the parallelism",
            window.setting, window.blocks
        ));
    }
    if let Some(seconds) = window.seconds
        && seconds < MIN_WINDOW_SECONDS
    {
        return Err(format!(
            "replicated_deduplication_window_seconds is {seconds}: a commit replayed after a \
             restart longer than that would be counted twice; raise it to at least \
             {MIN_WINDOW_SECONDS}"
        ));
    }
    Ok(window.blocks / parallelism)
}

/// Rows per block for a checkpoint of `rows` rows: `block_rows`, or more when that would make
/// more than `max_blocks` blocks.
#[must_use]
pub fn rows_per_block(rows: u64, block_rows: u64, max_blocks: u64) -> u64 {
    let block_rows = block_rows.max(1);
    let max_blocks = max_blocks.max(1);
    if rows.div_ceil(block_rows) <= max_blocks {
        block_rows
    } else {
        rows.div_ceil(max_blocks)
    }
}

/// A checkpoint's deduplication token with the block size it was split by.
#[must_use]
pub fn token_with_block_size(token: &str, rows_per_block: u64) -> String {
    format!("{token}:r{rows_per_block}")
}

/// The block size recorded in `token`; `None` for tokens of checkpoints written before sizes
/// were recorded (they were split by `blockRows`).
#[must_use]
pub fn block_size_in_token(token: &str) -> Option<u64> {
    let (_, last) = token.rsplit_once(':')?;
    last.strip_prefix('r')?.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    const REPLICATED: &str = "ReplicatedMergeTree('/clickhouse/tables/t', 'r1') ORDER BY k \
                              SETTINGS index_granularity = 8192, replicated_deduplication_window = 3";

    #[test]
    fn a_table_override_is_read_from_engine_full() {
        assert_eq!(
            table_setting(REPLICATED, "replicated_deduplication_window"),
            Some(3)
        );
        assert_eq!(table_setting(REPLICATED, "index_granularity"), Some(8192));
        assert_eq!(
            table_setting(REPLICATED, "non_replicated_deduplication_window"),
            None
        );
        assert_eq!(
            table_setting("MergeTree ORDER BY k", "index_granularity"),
            None
        );
    }

    #[test]
    fn the_window_is_shared_by_the_subtasks() {
        let w = |blocks, seconds| Window {
            setting: "replicated_deduplication_window",
            blocks,
            seconds,
        };
        assert_eq!(blocks_per_subtask(w(100, Some(604_800)), 3), Ok(33));
        assert_eq!(blocks_per_subtask(w(3, Some(604_800)), 3), Ok(1));
        let few = blocks_per_subtask(w(2, Some(604_800)), 3).unwrap_err();
        assert!(few.contains("replicated_deduplication_window is 2") && few.contains("at least 3"));
        let off = blocks_per_subtask(w(0, None), 1).unwrap_err();
        assert!(off.contains("is 0"), "{off}");
        let short = blocks_per_subtask(w(100, Some(60)), 1).unwrap_err();
        assert!(short.contains("_seconds is 60"), "{short}");
    }

    #[test]
    fn blocks_grow_only_when_a_checkpoint_would_overflow_its_share() {
        assert_eq!(rows_per_block(10, 4, 33), 4);
        assert_eq!(rows_per_block(10, 1, 10), 1);
        assert_eq!(rows_per_block(10, 1, 4), 3);
        assert_eq!(10u64.div_ceil(rows_per_block(10, 1, 4)), 4);
        assert!(1_000_001u64.div_ceil(rows_per_block(1_000_001, 7, 33)) <= 33);
        assert_eq!(rows_per_block(0, 1, 4), 1);
    }

    #[test]
    fn the_block_size_travels_in_the_token() {
        let t = token_with_block_size("weir:job:db.t:t0:c7", 3);
        assert_eq!(t, "weir:job:db.t:t0:c7:r3");
        assert_eq!(block_size_in_token(&t), Some(3));
        assert_eq!(block_size_in_token("weir:job:db.t:t0:c7"), None);
        assert_eq!(block_size_in_token("weir:job:db.r:t0:c7"), None);
    }
}
