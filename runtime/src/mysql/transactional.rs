//! A subtask of a `transactional` MySQL sink: one XA transaction per checkpoint, prepared at
//! the barrier and committed when the checkpoint completes (see the module above).
//!
//! A connection holding a prepared XA transaction cannot start another, so each prepared
//! transaction keeps its connection until its commit, which then goes on that connection and
//! frees it for a later checkpoint; the next checkpoint meanwhile writes on an idle one (in
//! the steady state, two connections take turns).
//!
//! Appends go to the server as they come. Writes by key (a changelog) wait in memory until
//! the barrier, for the reason the PostgreSQL sink gives: a prepared transaction keeps its
//! row locks until its commit, which this same task runs.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::Server;
use super::client::MyError;
use super::rows::Writer;
use crate::checkpoint::state::PreparedTransaction;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::sink::{Committable, TwoPhaseCommitSink};

pub(super) struct Transactional {
    server: Server,
    writer: std::sync::Arc<Writer>,
    subtask: u32,
    generation: u64,
    txn: CheckpointId,
    /// The connection inside the open XA transaction, when one is open.
    writing: Option<Conn>,
    /// Connections free for the next transaction.
    idle: Vec<Conn>,
    /// Each prepared transaction's connection, by id, until its commit.
    prepared: HashMap<String, Conn>,
    /// Batches of a changelog waiting for the barrier.
    held: Vec<RecordBatch>,
}

impl Transactional {
    pub(super) fn new(
        server: Server,
        writer: std::sync::Arc<Writer>,
        subtask: u32,
        generation: u64,
    ) -> Self {
        Self {
            server,
            writer,
            subtask,
            generation,
            txn: CheckpointId(0),
            writing: None,
            idle: Vec::new(),
            prepared: HashMap::new(),
            held: Vec::new(),
        }
    }

    fn transaction(&self) -> PreparedTransaction {
        PreparedTransaction::new(&self.server.prefix, self.subtask, self.txn, self.generation)
    }

    /// Write `batch` into the checkpoint's XA transaction, starting it on an idle (or new)
    /// connection with the first row.
    async fn send(&mut self, batch: &RecordBatch) -> Result<()> {
        let writes = self.writer.writes(batch).map_err(|e| match e {
            crate::error::Error::Sink { message, .. } => self.server.err(message),
            other => other,
        })?;
        if self.writing.is_none() {
            let id = self.server.xid(&self.transaction())?;
            // An idle connection may have died with a server restart unnoticed: one fresh
            // connection is tried before the checkpoint fails.
            let mut conn = match self.idle.pop() {
                Some(c) if !c.is_disconnected() => c,
                _ => self.server.connect().await?,
            };
            let started = match conn.query_drop(format!("XA START {id}")).await {
                Err(e) => {
                    let e = MyError::from(e);
                    if !e.retriable {
                        return Err(self
                            .server
                            .err(format!("XA START for checkpoint {}: {e}", self.txn)));
                    }
                    conn = self.server.connect().await?;
                    conn.query_drop(format!("XA START {id}")).await
                }
                ok => ok,
            };
            started.map_err(|e| {
                self.server.err(format!(
                    "XA START for checkpoint {}: {}",
                    self.txn,
                    MyError::from(e)
                ))
            })?;
            self.writing = Some(conn);
        }
        let Some(conn) = self.writing.as_mut() else {
            return Err(crate::error::Error::internal("no writing mysql connection"));
        };
        for w in writes {
            if let Err(e) = conn.exec_drop(w.sql, w.params).await {
                // The transaction is lost with its connection; the job restores and replays.
                self.writing = None;
                return Err(self.server.err(format!(
                    "writing rows of checkpoint {}: {}",
                    self.txn,
                    MyError::from(e)
                )));
            }
        }
        Ok(())
    }
}

impl TwoPhaseCommitSink for Transactional {
    fn begin(&mut self, txn: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // Started with the first row: a checkpoint without output prepares nothing.
            self.txn = txn;
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            if self.writer.by_key() {
                self.held.push(batch.clone());
                return Ok(());
            }
            self.send(batch).await
        })
    }

    fn pre_commit(&mut self) -> BoxFuture<'_, Result<Committable>> {
        Box::pin(async move {
            for batch in std::mem::take(&mut self.held) {
                self.send(&batch).await?;
            }
            let Some(mut conn) = self.writing.take() else {
                return Ok(Committable::Empty);
            };
            let t = self.transaction();
            let id = self.server.xid(&t)?;
            let done = async {
                conn.query_drop(format!("XA END {id}")).await?;
                conn.query_drop(format!("XA PREPARE {id}")).await
            }
            .await;
            done.map_err(|e| {
                self.server
                    .err(format!("XA PREPARE {}: {}", t.gid, MyError::from(e)))
            })?;
            // Prepared, not yet recorded by a checkpoint: a restore must roll it back.
            crate::fault::point("mysql-after-prepare", self.txn);
            self.prepared.insert(t.gid.clone(), conn);
            // Checkpoints that keep failing (a storage outage) leave their transactions
            // prepared until a later one completes: past the newest two, a transaction lets go
            // of its connection (it stays prepared and is committed from another), so a
            // subtask never holds more than three connections.
            if self.prepared.len() > 2 {
                let mut older: Vec<(CheckpointId, String)> = self
                    .prepared
                    .keys()
                    .filter(|g| **g != t.gid)
                    .map(|g| {
                        let p = PreparedTransaction { gid: g.clone() };
                        (p.checkpoint(), g.clone())
                    })
                    .collect();
                older.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
                for (_, g) in older.into_iter().skip(1) {
                    if let Some(c) = self.prepared.remove(&g) {
                        let _ = c.disconnect().await;
                    }
                }
            }
            Ok(Committable::PreparedTransaction(t))
        })
    }

    fn commit(&mut self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for c in committables {
                match c {
                    Committable::PreparedTransaction(p) => {
                        // The checkpoint recorded it and completed: a restore must commit it.
                        crate::fault::point("mysql-before-commit", p.checkpoint());
                        let mut conn = self.prepared.remove(&p.gid);
                        self.server.commit(&mut conn, &p).await?;
                        match conn {
                            Some(c) if self.idle.is_empty() => self.idle.push(c),
                            Some(c) => {
                                let _ = c.disconnect().await;
                            }
                            None => {}
                        }
                    }
                    Committable::Empty => {}
                    other => {
                        return Err(self.server.err(format!(
                            "checkpoint records a committable of another sink: {other:?}"
                        )));
                    }
                }
            }
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.held.clear();
            // An XA transaction that was not prepared ends with its connection; prepared ones
            // stay on the server for the recovery to settle, released now so it can.
            if let Some(c) = self.writing.take() {
                let _ = c.disconnect().await;
            }
            for (_, c) in self.prepared.drain() {
                let _ = c.disconnect().await;
            }
            Ok(())
        })
    }
}
