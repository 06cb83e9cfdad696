//! MySQL/MariaDB sink.
//!
//! `transactional` (exactly-once, XA two-phase commit): each subtask writes a checkpoint's
//! rows in one XA transaction (`XA START`) and, at the barrier, `XA END` + `XA PREPARE`; the
//! checkpoint records the id ([`PreparedTransaction`]: gtrid = the sink's prefix, bqual =
//! `<subtask>:<checkpoint>:<generation>`), and once it completes the subtask runs `XA COMMIT`.
//! Unlike PostgreSQL, a connection with a prepared XA transaction can do nothing else until it
//! ends, so the next checkpoint writes on another connection and the two take turns. After a
//! crash, [`MysqlConnector::recover_and_commit`] commits the transactions the restored
//! checkpoint recorded and rolls back every other of the sink's gtrid that `XA RECOVER` lists,
//! so nothing is left prepared.
//!
//! `XA COMMIT` of an id the server does not know (`XAER_NOTA`) means either that it was
//! committed before, or that the id is still attached to the connection that prepared it
//! (the server has not yet noticed that connection is gone). `XA RECOVER` tells the two apart:
//! while it still lists the id, the commit is retried.
//!
//! `upsert` (idempotent): rows by key (`INSERT ... ON DUPLICATE KEY UPDATE`) in a transaction
//! that commits at every barrier together with a progress row (prefix, subtask, checkpoint)
//! in `progressTable`, as the PostgreSQL sink does.
//!
//! Both modes need a transactional engine (InnoDB): a MyISAM table would keep every row of a
//! rolled-back transaction, so it is refused at start-up.

pub mod client;
pub mod rows;
pub mod table;
mod transactional;
mod upsert;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::OnceCell;
use weir_crds::{DatabaseMode, MysqlSinkSpec};

use crate::checkpoint::state::PreparedTransaction;
use crate::error::{Error, Result};
use crate::sink::{Committable, Guarantee, SinkConnector, SinkContext, SinkEnv, SinkInstance};
use client::{Endpoint, MyError, XA_UNKNOWN, ident, xid};
use rows::Writer;

/// MySQL's limit on an XA gtrid.
const MAX_GTRID: usize = 64;

/// How long a recovery waits for a transaction of a checkpoint that never completed to be
/// released by a connection the server still thinks is alive (then it leaves it to the next
/// recovery, with a warning).
const ROLLBACK_PATIENCE: Duration = Duration::from_secs(60);

/// A configured MySQL sink.
pub struct MysqlConnector {
    spec: MysqlSinkSpec,
    /// The XA gtrid (`transactional`) and the progress table's key (`upsert`).
    prefix: String,
    target: OnceCell<Target>,
}

/// What `prepare` learned: how to connect and what to write.
struct Target {
    endpoint: Endpoint,
    writer: Arc<Writer>,
}

/// How a sink instance reaches the server and reports errors; shared by its connections.
#[derive(Clone)]
struct Server {
    endpoint: Endpoint,
    sink: String,
    prefix: String,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Server {
    fn err(&self, message: impl Into<String>) -> Error {
        Error::Sink {
            sink: self.sink.clone(),
            message: message.into(),
        }
    }

    async fn connect(&self) -> Result<Conn> {
        self.endpoint
            .connect()
            .await
            .map_err(|e| self.err(format!("cannot connect to {}: {e}", self.endpoint.display)))
    }

    /// The XA id of `t` (the gtrid is the sink's prefix).
    fn xid(&self, t: &PreparedTransaction) -> Result<String> {
        match t.split() {
            Some((prefix, rest)) if prefix == self.prefix => Ok(xid(prefix, rest)),
            _ => Err(self.err(format!(
                "checkpoint records transaction {} of another sink",
                t.gid
            ))),
        }
    }

    /// The bquals of the sink's prepared XA transactions (`XA RECOVER`).
    async fn prepared(&self, conn: &mut Conn) -> std::result::Result<Vec<String>, MyError> {
        let rows: Vec<(i64, i64, i64, Vec<u8>)> = conn.query("XA RECOVER").await?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, gtrid_len, _, data)| {
                let split = usize::try_from(gtrid_len).ok()?;
                let (gtrid, bqual) = (data.get(..split)?, data.get(split..)?);
                (gtrid == self.prefix.as_bytes())
                    .then(|| String::from_utf8_lossy(bqual).into_owned())
            })
            .collect())
    }

    /// `XA COMMIT` of `t` on `conn` (a new connection when `None` or broken), retried through a
    /// server that is away and while the id is still attached to the connection that prepared
    /// it; no deadline: a commit the checkpoint promised must happen.
    async fn commit(&self, conn: &mut Option<Conn>, t: &PreparedTransaction) -> Result<()> {
        let id = self.xid(t)?;
        let bqual = t.split().map(|(_, b)| b.to_string()).unwrap_or_default();
        let mut delays = crate::retry::Backoff::new(self.initial_backoff, self.max_backoff);
        loop {
            let attempt = async {
                if conn.as_ref().is_none_or(Conn::is_disconnected) {
                    *conn = Some(self.endpoint.connect().await?);
                }
                let c = conn.as_mut().ok_or_else(|| MyError {
                    message: "no connection".into(),
                    code: None,
                    retriable: true,
                })?;
                match c.query_drop(format!("XA COMMIT {id}")).await {
                    Err(mysql_async::Error::Server(s)) if s.code == XA_UNKNOWN => {
                        if self.prepared(c).await?.contains(&bqual) {
                            Err(MyError {
                                message: "still attached to the connection that prepared it".into(),
                                code: Some(XA_UNKNOWN),
                                retriable: true,
                            })
                        } else {
                            tracing::info!(sink = %self.sink, gid = %t.gid, "XA transaction already committed");
                            Ok(())
                        }
                    }
                    other => Ok(other?),
                }
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if e.retriable => {
                    if e.code != Some(XA_UNKNOWN) {
                        *conn = None;
                    }
                    let delay = delays.next().unwrap_or(self.max_backoff);
                    tracing::warn!(sink = %self.sink, gid = %t.gid, attempt = delays.attempts(), retry_in_ms = delay.as_millis() as u64, error = %e, "mysql XA COMMIT failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(self.err(format!("XA COMMIT {}: {e}", t.gid))),
            }
        }
    }
}

impl MysqlConnector {
    /// Connector for `spec`; nothing connects until [`SinkConnector::prepare`].
    #[must_use]
    pub fn new(spec: &MysqlSinkSpec, env: &SinkEnv) -> Self {
        let prefix = spec
            .transaction_id_prefix
            .clone()
            .unwrap_or_else(|| default_prefix(&env.job_name, &env.sink));
        Self {
            spec: spec.clone(),
            prefix,
            target: OnceCell::new(),
        }
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Sink {
            sink: self.name(),
            message: message.into(),
        }
    }

    fn server(&self) -> Result<Server> {
        let t = self
            .target
            .get()
            .ok_or_else(|| Error::internal("mysql sink used before prepare"))?;
        Ok(Server {
            endpoint: t.endpoint.clone(),
            sink: self.name(),
            prefix: self.prefix.clone(),
            initial_backoff: self.spec.initial_backoff.get(),
            max_backoff: self.spec.max_backoff.get(),
        })
    }

    /// Connect, waiting for a server that is not up yet; a refused password or certificate
    /// fails at once.
    async fn reach(&self, endpoint: &Endpoint) -> Result<Conn> {
        crate::wait::until_reached("MySQL", &endpoint.display, crate::wait::limit(), || async {
            endpoint.connect().await.map_err(|e| {
                let message = format!("cannot connect to {}: {e}", endpoint.display);
                crate::wait::Attempt::sorted(e.retriable, message)
            })
        })
        .await
        .map_err(|m| self.err(m))
    }

    async fn connect(&self, input: &SchemaRef) -> Result<Target> {
        let endpoint =
            Endpoint::new(&self.spec, |v| std::env::var(v).ok()).map_err(|e| self.err(e))?;
        let mut conn = self.reach(&endpoint).await?;
        let table::Described {
            table,
            engine,
            loose,
        } = table::describe(&mut conn, &self.spec.table)
            .await
            .map_err(|e| self.err(e.message))?
            .ok_or_else(|| {
                self.err(format!(
                    "table {} does not exist in {} (or the user may not see it)",
                    self.spec.table, endpoint.display
                ))
            })?;
        if engine == table::VIEW {
            return Err(self.err(format!(
                "{} is a view: the sink writes into an InnoDB table (a view's rows could not be rolled back with its transactions)",
                self.spec.table
            )));
        }
        if !engine.eq_ignore_ascii_case("InnoDB") {
            return Err(self.err(format!(
                "table {} uses the {engine} engine, which cannot roll back: a failed checkpoint's rows would stay. Use InnoDB (ALTER TABLE {} ENGINE = InnoDB)",
                self.spec.table, self.spec.table
            )));
        }
        let crate::sink::table::Fit { targets, key } = table
            .fit(input, self.spec.mode, &self.spec.primary_key, table::takes)
            .map_err(|m| self.err(format!("table {}: {m}", self.spec.table)))?;
        // Batches keep a key's last change byte by byte; a case- or accent-insensitive
        // collation makes the server see one key where the records have two.
        let loose: Vec<_> = loose.into_iter().filter(|(c, _)| key.contains(c)).collect();
        if !loose.is_empty() {
            tracing::warn!(sink = %self.name(), columns = ?loose, "key columns compare case-insensitively on the server: records whose keys differ only in case or accents land in one row (give the key columns a _bin collation to keep them apart)");
        }
        if !key.is_empty() && table.unique.len() > 1 {
            // ON DUPLICATE KEY fires on whichever unique index a row collides with, which may
            // update another row than the key's.
            tracing::warn!(sink = %self.name(), key = ?key, unique_indexes = ?table.unique, "the table has unique indexes besides the key: a row that collides on another one updates that row (MySQL's ON DUPLICATE KEY UPDATE)");
        }
        let writer = Writer::new(
            input,
            &ident(&self.spec.table),
            &targets,
            &key,
            self.spec.batch_rows,
        )
        .map_err(|m| self.err(format!("table {}: {m}", self.spec.table)))?;
        match self.spec.mode {
            DatabaseMode::Transactional => {
                // Recovery reads XA RECOVER: find out now if the user may not.
                let rows: std::result::Result<Vec<mysql_async::Row>, _> =
                    conn.query("XA RECOVER").await;
                rows.map_err(|e| {
                    self.err(format!(
                        "XA RECOVER (mode transactional lists its prepared transactions with it after a failure): {}",
                        MyError::from(e)
                    ))
                })?;
            }
            DatabaseMode::Upsert => {
                conn.query_drop(format!(
                    "CREATE TABLE IF NOT EXISTS {} (sink VARCHAR(255) NOT NULL, subtask INT NOT NULL, \
                     checkpoint BIGINT NOT NULL, written_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
                     PRIMARY KEY (sink, subtask)) ENGINE = InnoDB",
                    ident(&self.spec.progress_table)
                ))
                .await
                .map_err(|e| {
                    self.err(format!(
                        "progress table {} (mode upsert records its progress there): {}",
                        self.spec.progress_table,
                        MyError::from(e)
                    ))
                })?;
            }
        }
        tracing::info!(sink = %self.name(), server = %endpoint.display, mode = ?self.spec.mode, key = ?key, changelog = writer.is_changelog(), "mysql sink ready");
        let _ = conn.disconnect().await;
        Ok(Target {
            endpoint,
            writer: Arc::new(writer),
        })
    }

    /// Roll back `bqual` of the sink's gtrid, waiting (a while) for a connection the server
    /// still thinks is alive to let go of it.
    async fn roll_back(
        &self,
        conn: &mut Conn,
        server: &Server,
        bqual: &str,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        let id = xid(&self.prefix, bqual);
        let mut delays = crate::retry::Backoff::new(server.initial_backoff, server.max_backoff);
        loop {
            match conn.query_drop(format!("XA ROLLBACK {id}")).await {
                Ok(()) => return Ok(()),
                Err(mysql_async::Error::Server(s)) if s.code == XA_UNKNOWN => {
                    let listed = server
                        .prepared(conn)
                        .await
                        .map_err(|e| self.err(format!("XA RECOVER: {e}")))?;
                    if !listed.iter().any(|b| b == bqual) {
                        // Another recovery (a pod of the same job) got there first.
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        tracing::warn!(sink = %self.name(), bqual, "a prepared XA transaction of a checkpoint that did not complete is still held by another connection; the next recovery rolls it back");
                        return Ok(());
                    }
                    let delay = delays.next().unwrap_or(server.max_backoff);
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    return Err(self.err(format!(
                        "XA ROLLBACK {}:{bqual}: {}",
                        self.prefix,
                        MyError::from(e)
                    )));
                }
            }
        }
    }
}

/// `weir:<job>:<sink>`, shortened to fit a gtrid: its start and a hash of the whole, which
/// is always kept, so two jobs or sinks never share it.
fn default_prefix(job: &str, sink: &str) -> String {
    let full = format!("weir:{job}:{sink}");
    if full.len() <= MAX_GTRID {
        return full;
    }
    let hash = xxhash_rust::xxh3::xxh3_64(full.as_bytes());
    // 16 hex digits and a colon; the head in whole characters within the rest.
    let mut head = String::new();
    for c in full.chars() {
        if head.len() + c.len_utf8() > MAX_GTRID - 17 {
            break;
        }
        head.push(c);
    }
    format!("{head}:{hash:016x}")
}

impl SinkConnector for MysqlConnector {
    fn name(&self) -> String {
        format!("mysql {}", self.spec.table)
    }

    fn guarantee(&self) -> Guarantee {
        self.spec.mode.guarantee()
    }

    fn prepare<'a>(&'a self, input: &'a SchemaRef) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let t = self.connect(input).await?;
            let _ = self.target.set(t);
            Ok(())
        })
    }

    fn open(&self, ctx: &SinkContext) -> Result<SinkInstance> {
        let t = self
            .target
            .get()
            .ok_or_else(|| Error::internal("mysql sink opened before prepare"))?;
        let server = self.server()?;
        Ok(match self.spec.mode {
            DatabaseMode::Transactional => {
                SinkInstance::TwoPhase(Box::new(transactional::Transactional::new(
                    server,
                    Arc::clone(&t.writer),
                    ctx.subtask,
                    ctx.generation,
                )))
            }
            DatabaseMode::Upsert => SinkInstance::Plain(Box::new(upsert::Upsert::new(
                server,
                Arc::clone(&t.writer),
                &ident(&self.spec.progress_table),
                ctx.subtask,
            ))),
        })
    }

    fn recover_and_commit(&self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let t = self
                .target
                .get()
                .ok_or_else(|| Error::internal("mysql sink recovered before prepare"))?;
            let mut conn = self.reach(&t.endpoint).await?;
            if self.spec.mode == DatabaseMode::Upsert {
                let rows: Vec<(i32, i64)> = conn
                    .exec(
                        format!(
                            "SELECT subtask, checkpoint FROM {} WHERE sink = ? ORDER BY subtask",
                            ident(&self.spec.progress_table)
                        ),
                        (&self.prefix,),
                    )
                    .await
                    .map_err(|e| {
                        self.err(format!(
                            "progress table {}: {}",
                            self.spec.progress_table,
                            MyError::from(e)
                        ))
                    })?;
                for (subtask, checkpoint) in rows {
                    tracing::info!(sink = %self.name(), subtask, checkpoint, "the table holds the writes up to this checkpoint; later ones are replayed as upserts");
                }
                return Ok(());
            }
            let server = self.server()?;
            let mut committer = Some(conn);
            let mut committed = BTreeSet::new();
            for c in committables {
                match c {
                    Committable::Empty => {}
                    Committable::PreparedTransaction(p) => {
                        server.commit(&mut committer, &p).await?;
                        tracing::info!(sink = %self.name(), gid = %p.gid, "recovery committed an XA transaction");
                        if let Some((_, bqual)) = p.split() {
                            committed.insert(bqual.to_string());
                        }
                    }
                    other => {
                        return Err(self.err(format!(
                            "checkpoint records a committable of another sink: {other:?}"
                        )));
                    }
                }
            }
            let mut conn = match committer {
                Some(c) if !c.is_disconnected() => c,
                _ => self.reach(&t.endpoint).await?,
            };
            let listed = server
                .prepared(&mut conn)
                .await
                .map_err(|e| self.err(format!("XA RECOVER: {e}")))?;
            // One wait for all of them: k transactions held elsewhere delay the start by at
            // most the patience, not k times it.
            let deadline = tokio::time::Instant::now() + ROLLBACK_PATIENCE;
            for bqual in listed {
                if committed.contains(&bqual) {
                    continue;
                }
                self.roll_back(&mut conn, &server, &bqual, deadline).await?;
                tracing::info!(sink = %self.name(), gtrid = %self.prefix, bqual = %bqual, "recovery rolled back an XA transaction of a checkpoint that did not complete");
            }
            let _ = conn.disconnect().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_prefix_fits_a_gtrid_and_stays_unique() {
        assert_eq!(default_prefix("shop", "sink-0"), "weir:shop:sink-0");
        let long = "a".repeat(60);
        let a = default_prefix(&long, "sink-0");
        let b = default_prefix(&format!("{long}b"), "sink-0");
        assert!(a.len() <= MAX_GTRID && b.len() <= MAX_GTRID, "{a} {b}");
        assert_ne!(a, b);
        // Long sink names differing at their end: the hash still tells them apart.
        let job = "orders-enrichment-eu-west";
        let (x, y) = (
            default_prefix(job, &format!("{}x", "s".repeat(59))),
            default_prefix(job, &format!("{}y", "s".repeat(59))),
        );
        assert!(x.len() <= MAX_GTRID && y.len() <= MAX_GTRID, "{x} {y}");
        assert_ne!(x, y);
        assert!(default_prefix(&"é".repeat(40), "sink-0").len() <= MAX_GTRID);
    }
}
