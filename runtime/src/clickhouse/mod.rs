//! ClickHouse sink over HTTP.
//!
//! `writeAhead` (exactly-once): the rows of checkpoint `n` travel inside checkpoint `n`
//! (in the writing subtask's state file; the committable in `_metadata` holds their size,
//! checksum and deduplication token) and are inserted only after `n` completes, split into blocks the same
//! way every time. Each block carries a deduplication identity — `insert_deduplication_token`
//! on servers that have it (22.2+), otherwise the block's own hash, which `Replicated*` tables
//! remember — so a commit replayed after a crash is dropped by the server instead of counted
//! twice. Before the job starts the sink checks that the table deduplicates, that its window
//! covers the blocks a checkpoint writes (see [`dedup`]), and that the sink's inserts are
//! synchronous (`async_insert` off) and deduplicated (`insert_deduplicate` on) despite any
//! profile defaults.
//!
//! `replacing`: rows are inserted at every barrier; a `ReplacingMergeTree` keyed on the result
//! key makes replays harmless when read with `FINAL` (the reference design from Flink).
//!
//! A changelog (a result that updates) goes into a `ReplacingMergeTree(version)` ordered by
//! its key, in either mode: each `+I`/`+U` row with a version above every earlier one of its
//! key (see [`rows::RowEncoder::encode_into`]); read with `FINAL`, the table is the result.
//!
//! A server that is down or overloaded stalls the insert with exponential backoff; the sink's
//! task stops taking records meanwhile, which backpressures the job. Nothing is dropped.

pub mod client;
pub mod dedup;
pub mod rows;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;
use weir_crds::{ClickHouseMode, ClickHouseSinkSpec};

use crate::checkpoint::state::WriteAhead;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::sink::{
    Committable, Guarantee, PlainSink, SinkConnector, SinkContext, SinkEnv, SinkInstance,
    TwoPhaseCommitSink,
};
use crate::tls::TlsPem;
use client::{ChError, Client, has_async_insert, has_dedup_token};
use rows::{RowEncoder, TableColumn};

/// What the sink learned about the server and table in `prepare`.
#[derive(Clone)]
struct Target {
    client: Client,
    encoder: RowEncoder,
    dedup_token: bool,
    /// Whether the server knows `async_insert` (21.11+), so the sink can turn it off.
    async_insert: bool,
    /// Most blocks one subtask writes per checkpoint (the table's window share).
    max_blocks: u64,
}

/// A configured ClickHouse sink.
pub struct ClickHouseConnector {
    spec: ClickHouseSinkSpec,
    parallelism: u32,
    target: OnceCell<Target>,
}

impl ClickHouseConnector {
    /// Connector for `spec`; nothing connects until [`SinkConnector::prepare`].
    #[must_use]
    pub fn new(spec: &ClickHouseSinkSpec, env: &SinkEnv) -> Self {
        Self {
            spec: spec.clone(),
            parallelism: env.parallelism,
            target: OnceCell::new(),
        }
    }

    fn table(&self) -> String {
        format!("{}.{}", self.spec.database, self.spec.table)
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Sink {
            sink: format!("clickhouse {}", self.table()),
            message: message.into(),
        }
    }

    fn target(&self) -> Result<&Target> {
        self.target
            .get()
            .ok_or_else(|| Error::internal("clickhouse sink used before prepare"))
    }

    async fn connect(&self, input: &SchemaRef) -> Result<Target> {
        let password = match &self.spec.password_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                self.err(format!(
                    "environment variable {var} (passwordEnv) is not set"
                ))
            })?),
            None => None,
        };
        let tls = match &self.spec.tls {
            Some(t) => {
                TlsPem::from_spec("tls", t, |v| std::env::var(v).ok()).map_err(|e| self.err(e))?
            }
            None => TlsPem::default(),
        };
        let client = Client::new(&self.spec.url, &self.spec.user, password, &tls)
            .map_err(|e| self.err(e.message))?;
        let version = crate::wait::until_reached(
            "ClickHouse",
            &self.spec.url,
            crate::wait::limit(),
            || async {
                client.version().await.map_err(|e| {
                    let message = format!(
                        "cannot reach ClickHouse at {}: {}",
                        self.spec.url, e.message
                    );
                    // A refused certificate will be refused again: fail now, saying so.
                    if e.retriable {
                        crate::wait::Attempt::Unreachable(message)
                    } else {
                        crate::wait::Attempt::Refused(message)
                    }
                })
            },
        )
        .await
        .map_err(|m| self.err(m))?;
        let lit = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
        let engine = client
            .execute(
                &format!(
                    "SELECT engine, engine_full FROM system.tables WHERE database = {} AND name = {} FORMAT TabSeparated",
                    lit(&self.spec.database),
                    lit(&self.spec.table)
                ),
                &[],
                None,
            )
            .await
            .map_err(|e| self.err(e.message))?;
        let Some(line) = engine.lines().next() else {
            return Err(self.err(format!(
                "table {} does not exist on {}",
                self.table(),
                self.spec.url
            )));
        };
        let (engine, engine_full) = line.split_once('\t').unwrap_or((line, ""));
        let described = client
            .execute(
                &format!(
                    "DESCRIBE TABLE `{}`.`{}` FORMAT TabSeparated",
                    self.spec.database, self.spec.table
                ),
                &[],
                None,
            )
            .await
            .map_err(|e| self.err(e.message))?;
        let columns: Vec<TableColumn> = described
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some(TableColumn {
                    name: f.next()?.to_string(),
                    data_type: f.next()?.to_string(),
                    has_default: f.next().is_some_and(|d| !d.is_empty()),
                })
            })
            .collect();
        let encoder = RowEncoder::new(input, &columns, self.spec.version_column.as_deref())
            .map_err(|m| self.err(m))?;
        if encoder.is_changelog() && !engine.contains("ReplacingMergeTree") {
            return Err(self.err(format!(
                "the records are a changelog (the statement's result updates): {} must be a \
                 ReplacingMergeTree({}) ordered by the result's key, so that a newer row of a \
                 key replaces the older; it is {engine}",
                self.table(),
                self.spec.version_column.as_deref().unwrap_or("version")
            )));
        }
        let dedup_token = has_dedup_token(version);
        let async_insert = has_async_insert(version);
        let mut max_blocks = u64::MAX;
        match self.spec.mode {
            ClickHouseMode::WriteAhead => {
                let replicated = engine.starts_with("Replicated");
                let window = engine_full.contains("non_replicated_deduplication_window");
                if replicated || dedup_token && window {
                    let window = self.window(&client, engine_full, replicated).await?;
                    max_blocks = dedup::blocks_per_subtask(window, self.parallelism)
                        .map_err(|m| self.err(format!("table {}: {m}", self.table())))?;
                    self.check_insert_settings(&client, async_insert).await?;
                } else {
                    return Err(self.err(format!(
                        "mode writeAhead needs a table that drops a replayed block: {} is {engine} on \
                         ClickHouse {}.{}; use a Replicated*MergeTree table{}, or mode: replacing \
                         with a ReplacingMergeTree table",
                        self.table(),
                        version.0,
                        version.1,
                        if dedup_token {
                            ", or set the table setting non_replicated_deduplication_window"
                        } else {
                            ""
                        }
                    )));
                }
            }
            ClickHouseMode::Replacing => {
                if !engine.contains("ReplacingMergeTree") {
                    return Err(self.err(format!(
                        "mode replacing needs a ReplacingMergeTree table ordered by the result \
                         key; {} is {engine}",
                        self.table()
                    )));
                }
            }
        }
        tracing::info!(table = %self.table(), engine, version = %format!("{}.{}", version.0, version.1), dedup_token, max_blocks, mode = ?self.spec.mode, "clickhouse sink ready");
        Ok(Target {
            client,
            encoder,
            dedup_token,
            async_insert,
            max_blocks,
        })
    }

    /// The table's deduplication window: its own setting, else the server's MergeTree default.
    async fn window(
        &self,
        client: &Client,
        engine_full: &str,
        replicated: bool,
    ) -> Result<dedup::Window> {
        let setting = |name: &'static str| async move {
            if let Some(v) = dedup::table_setting(engine_full, name) {
                return Ok(Some(v));
            }
            let text = client
                .execute(
                    &format!(
                        "SELECT value FROM system.merge_tree_settings WHERE name = '{name}' \
                         FORMAT TabSeparated"
                    ),
                    &[],
                    None,
                )
                .await
                .map_err(|e| self.err(format!("reading {name}: {}", e.message)))?;
            Ok::<_, Error>(text.trim().parse::<u64>().ok())
        };
        Ok(if replicated {
            let name = "replicated_deduplication_window";
            dedup::Window {
                setting: name,
                blocks: setting(name).await?.unwrap_or(0),
                seconds: setting("replicated_deduplication_window_seconds").await?,
            }
        } else {
            let name = "non_replicated_deduplication_window";
            dedup::Window {
                setting: name,
                blocks: setting(name).await?.unwrap_or(0),
                seconds: None,
            }
        })
    }

    /// The settings the sink's inserts rely on, as the server applies them to this user
    /// (a profile may force them, or forbid changing them).
    async fn check_insert_settings(&self, client: &Client, async_insert: bool) -> Result<()> {
        let settings = Inserter::settings(async_insert);
        let text = client
            .execute(
                "SELECT name, value FROM system.settings \
                 WHERE name IN ('insert_deduplicate', 'async_insert') FORMAT TabSeparated",
                &settings,
                None,
            )
            .await
            .map_err(|e| {
                self.err(format!(
                    "the server refuses the settings exactly-once inserts need \
                     (insert_deduplicate=1{}): {}",
                    if async_insert { ", async_insert=0" } else { "" },
                    e.message
                ))
            })?;
        for line in text.lines() {
            let (name, value) = line.split_once('\t').unwrap_or((line, ""));
            let wanted = if name == "insert_deduplicate" {
                "1"
            } else {
                "0"
            };
            if value != wanted {
                return Err(self.err(format!(
                    "{name} is {value} for user {} although the sink asks for {wanted}: \
                     deduplication of replayed blocks cannot be relied on; lift the profile's \
                     constraint on {name}",
                    self.spec.user
                )));
            }
        }
        Ok(())
    }

    fn inserter(&self) -> Result<Inserter> {
        let t = self.target()?;
        Ok(Inserter {
            client: t.client.clone(),
            table: self.table(),
            columns: t.encoder.column_list(),
            dedup_token: t.dedup_token,
            async_insert: t.async_insert,
            block_rows: self.spec.block_rows.max(1) as usize,
            initial_backoff: self.spec.initial_backoff.get(),
            max_backoff: self.spec.max_backoff.get(),
        })
    }
}

/// Inserts row text in deterministic blocks, retrying until the server takes them.
#[derive(Clone)]
struct Inserter {
    client: Client,
    table: String,
    columns: String,
    dedup_token: bool,
    async_insert: bool,
    block_rows: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Inserter {
    fn err(&self, message: String) -> Error {
        Error::Sink {
            sink: format!("clickhouse {}", self.table),
            message,
        }
    }

    /// Settings of every insert (and of the start-up check that the server honours them).
    fn settings(async_insert: bool) -> Vec<(&'static str, String)> {
        let mut s = vec![("insert_deduplicate", "1".to_string())];
        if async_insert {
            // An asynchronous insert is acknowledged before it is a block of its own, and
            // its deduplication is a different mechanism: the sink's blocks must be plain.
            s.push(("async_insert", "0".to_string()));
        }
        s
    }

    /// Insert the rows a checkpoint kept, under their deduplication token, split into the
    /// blocks the token records (older checkpoints: `blockRows`).
    async fn insert_written_ahead(&self, w: &WriteAhead) -> Result<()> {
        if w.rows == 0 {
            return Ok(());
        }
        let rows = std::str::from_utf8(&w.data).map_err(|e| {
            self.err(format!(
                "rows kept by checkpoint {} (subtask {}) are not UTF-8: {e}",
                w.checkpoint, w.subtask
            ))
        })?;
        let block_rows = dedup::block_size_in_token(&w.token)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(self.block_rows);
        self.insert(rows, block_rows, Some(&w.token), w.checkpoint)
            .await
    }

    /// Insert `rows` (JSONEachRow lines) as blocks of `block_rows`; block `k` carries
    /// `token:b<k>` when the server supports tokens.
    async fn insert(
        &self,
        rows: &str,
        block_rows: usize,
        token: Option<&str>,
        checkpoint: u64,
    ) -> Result<()> {
        let block_rows = block_rows.max(1);
        let lines: Vec<&str> = rows.lines().filter(|l| !l.is_empty()).collect();
        for (k, chunk) in lines.chunks(block_rows).enumerate() {
            let mut body = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum());
            for l in chunk {
                body.extend_from_slice(l.as_bytes());
                body.push(b'\n');
            }
            let mut settings = Self::settings(self.async_insert);
            settings.extend([
                ("max_insert_block_size", block_rows.to_string()),
                ("input_format_skip_unknown_fields", "0".to_string()),
            ]);
            if let (true, Some(t)) = (self.dedup_token, token) {
                settings.push(("insert_deduplication_token", format!("{t}:b{k}")));
                settings.push(("date_time_input_format", "best_effort".to_string()));
            }
            let sql = format!(
                "INSERT INTO {} ({}) FORMAT JSONEachRow",
                self.table, self.columns
            );
            // No deadline: a server that is down stalls the insert until it is back (see the
            // module docs), so the delays never run out.
            let mut delays = crate::retry::Backoff::new(self.initial_backoff, self.max_backoff);
            loop {
                match self
                    .client
                    .execute(&sql, &settings, Some(body.clone()))
                    .await
                {
                    Ok(_) => {
                        // Inserted, not yet acknowledged to the job: a replay must be dropped.
                        crate::fault::point("clickhouse-after-insert", CheckpointId(checkpoint));
                        break;
                    }
                    Err(ChError {
                        retriable: true,
                        message,
                    }) => {
                        let Some(delay) = delays.next() else {
                            return Err(self.err(format!("insert: {message}")));
                        };
                        let attempt = delays.attempts();
                        tracing::warn!(table = %self.table, attempt, retry_in_ms = delay.as_millis() as u64, error = %message, "clickhouse insert failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => return Err(self.err(format!("insert: {}", e.message))),
                }
            }
        }
        Ok(())
    }
}

impl SinkConnector for ClickHouseConnector {
    fn name(&self) -> String {
        format!("clickhouse {}", self.table())
    }

    fn guarantee(&self) -> Guarantee {
        // Replacing mode writes each result at least once; the table's key makes the
        // repeats collapse, which is exactly-once for readers that use FINAL.
        match self.spec.mode {
            ClickHouseMode::WriteAhead => Guarantee::ExactlyOnce,
            ClickHouseMode::Replacing => Guarantee::AtLeastOnce,
        }
    }

    fn prepare<'a>(&'a self, input: &'a SchemaRef) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let t = self.connect(input).await?;
            let _ = self.target.set(t);
            Ok(())
        })
    }

    fn open(&self, ctx: &SinkContext) -> Result<SinkInstance> {
        let t = self.target()?;
        let inserter = self.inserter()?;
        Ok(match self.spec.mode {
            ClickHouseMode::WriteAhead => SinkInstance::TwoPhase(Box::new(WriteAheadWriter {
                encoder: t.encoder.clone(),
                inserter,
                token_base: format!("weir:{}:{}:t{}", ctx.job_id, self.table(), ctx.subtask),
                block_rows: u64::from(self.spec.block_rows),
                max_blocks: t.max_blocks,
                subtask: ctx.subtask,
                checkpoint: 0,
                rows: String::new(),
                count: 0,
            })),
            ClickHouseMode::Replacing => SinkInstance::Plain(Box::new(ReplacingWriter {
                encoder: t.encoder.clone(),
                inserter,
                rows: String::new(),
                next_version: 0,
            })),
        })
    }

    fn recover_and_commit(&self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if committables.is_empty() {
                return Ok(());
            }
            let inserter = self.inserter()?;
            let mut pending = Vec::with_capacity(committables.len());
            for c in committables {
                match c {
                    Committable::WriteAhead(w) => pending.push(w),
                    Committable::Empty => {}
                    other => {
                        return Err(self.err(format!(
                            "checkpoint records a committable of another sink: {other:?}"
                        )));
                    }
                }
            }
            pending.sort_by_key(|p| (p.checkpoint, p.subtask));
            for p in pending.iter().filter(|p| p.rows > 0) {
                inserter.insert_written_ahead(p).await?;
                tracing::info!(table = %self.table(), checkpoint = p.checkpoint, subtask = p.subtask, rows = p.rows, "re-inserted rows of the restored checkpoint (duplicates dropped by the server)");
            }
            Ok(())
        })
    }
}

/// Exactly-once writer: buffers a checkpoint's rows and inserts them after it completes.
struct WriteAheadWriter {
    encoder: RowEncoder,
    inserter: Inserter,
    token_base: String,
    block_rows: u64,
    max_blocks: u64,
    subtask: u32,
    checkpoint: u64,
    rows: String,
    count: u64,
}

impl TwoPhaseCommitSink for WriteAheadWriter {
    fn begin(&mut self, txn: CheckpointId) -> BoxFuture<'_, Result<()>> {
        self.checkpoint = txn.0;
        self.rows.clear();
        self.count = 0;
        Box::pin(async { Ok(()) })
    }

    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // A changelog's versions: the checkpoint in the high bits, the row within it in
            // the low ones, so a later checkpoint's row of a key (after a rescale, written by
            // another subtask) is newer still.
            let version = if self.encoder.is_changelog() {
                (self.checkpoint << 32) + self.count
            } else {
                0
            };
            self.count += self.encoder.encode_into(batch, version, &mut self.rows)? as u64;
            Ok(())
        })
    }

    fn pre_commit(&mut self) -> BoxFuture<'_, Result<Committable>> {
        Box::pin(async move {
            let rows = std::mem::take(&mut self.rows);
            let count = std::mem::take(&mut self.count);
            if count == 0 {
                return Ok(Committable::Empty);
            }
            let per_block = dedup::rows_per_block(count, self.block_rows, self.max_blocks);
            Ok(Committable::WriteAhead(WriteAhead::new(
                self.checkpoint,
                self.subtask,
                dedup::token_with_block_size(
                    &format!("{}:c{}", self.token_base, self.checkpoint),
                    per_block,
                ),
                count,
                rows.into_bytes(),
            )))
        })
    }

    fn commit(&mut self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for c in committables {
                match c {
                    Committable::WriteAhead(w) => self.inserter.insert_written_ahead(&w).await?,
                    Committable::Empty => {}
                    other => {
                        return Err(Error::internal(format!(
                            "clickhouse sink asked to commit {other:?}"
                        )));
                    }
                }
            }
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        self.rows.clear();
        self.count = 0;
        Box::pin(async { Ok(()) })
    }
}

/// Idempotent-table writer: inserts at every barrier.
struct ReplacingWriter {
    encoder: RowEncoder,
    inserter: Inserter,
    rows: String,
    /// The next version of a changelog row: never below the clock's milliseconds (shifted
    /// to leave room for a million rows each) nor below the last one given plus one.
    next_version: u64,
}

impl PlainSink for ReplacingWriter {
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let version = if self.encoder.is_changelog() {
                self.next_version.max(millis << 20)
            } else {
                millis
            };
            let n = self.encoder.encode_into(batch, version, &mut self.rows)?;
            self.next_version = version + n as u64;
            Ok(())
        })
    }

    fn flush(&mut self, _checkpoint: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if !self.rows.is_empty() {
                let rows = std::mem::take(&mut self.rows);
                self.inserter
                    .insert(&rows, self.inserter.block_rows, None, 0)
                    .await?;
            }
            Ok(())
        })
    }
}
