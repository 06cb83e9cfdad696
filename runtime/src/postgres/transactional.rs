//! A subtask of a `transactional` PostgreSQL sink: one transaction per checkpoint, prepared
//! at the barrier and committed when the checkpoint completes (see the module above).
//!
//! Appends go to the server as they come. Writes by key (a changelog) wait in memory until
//! the barrier: a prepared transaction keeps its row locks until `COMMIT PREPARED`, which this
//! same task runs when the checkpoint completes, so an update of a key that the previous,
//! still prepared, transaction wrote would wait on a lock only this task can release. By the
//! barrier the previous checkpoint has completed (one checkpoint is in flight at a time) and
//! its commit, which the task takes before any input, has run. `lock_timeout` turns any wait
//! that still cannot end into an error (the job restores) instead of a hang.

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;
use tokio_postgres::Client;

use super::Conn;
use super::client::{PgError, literal};
use super::rows::Writer;
use super::session::Session;
use crate::checkpoint::state::PreparedTransaction;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::sink::{Committable, TwoPhaseCommitSink};

pub(super) struct Transactional {
    /// The connection that writes (and prepares).
    session: Session,
    /// The sink's prefix of transaction ids.
    prefix: String,
    subtask: u32,
    generation: u64,
    /// The connection that commits: the writer's is inside the next transaction by then.
    committer: Option<Client>,
    txn: CheckpointId,
    /// Batches of a changelog waiting for the barrier.
    held: Vec<RecordBatch>,
}

/// Longest wait for a row lock: see the module docs.
const LOCK_TIMEOUT: &str = "SET lock_timeout = '30s'";

impl Transactional {
    pub(super) fn new(
        conn: Conn,
        writer: std::sync::Arc<Writer>,
        prefix: String,
        subtask: u32,
        generation: u64,
    ) -> Self {
        Self {
            session: Session::new(conn, writer, Some(LOCK_TIMEOUT)),
            prefix,
            subtask,
            generation,
            committer: None,
            txn: CheckpointId(0),
            held: Vec::new(),
        }
    }

    fn prepared(&self) -> PreparedTransaction {
        PreparedTransaction::new(&self.prefix, self.subtask, self.txn, self.generation)
    }

    fn what(&self) -> String {
        format!("checkpoint {}'s transaction", self.txn)
    }

    async fn send(&mut self, batch: &RecordBatch) -> Result<()> {
        let what = self.what();
        self.session.send(batch, &what).await
    }
}

impl TwoPhaseCommitSink for Transactional {
    fn begin(&mut self, txn: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // Opened with the first row: a checkpoint without output prepares nothing.
            self.txn = txn;
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            if self.session.writer.by_key() {
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
            if !self.session.is_open() {
                return Ok(Committable::Empty);
            }
            let prepared = self.prepared();
            let gid = prepared.gid.clone();
            let what = self.what();
            let client = self.session.transaction(&what).await?;
            let result = client
                .batch_execute(&format!("PREPARE TRANSACTION {}", literal(&gid)))
                .await;
            self.session.ended();
            result.map_err(|e| {
                self.session
                    .conn
                    .err(format!("PREPARE TRANSACTION {gid}: {}", PgError::from(e)))
            })?;
            // Prepared, not yet recorded by a checkpoint: a restore must roll it back.
            crate::fault::point("postgres-after-prepare", self.txn);
            Ok(Committable::PreparedTransaction(prepared))
        })
    }

    fn commit(&mut self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for c in committables {
                match c {
                    Committable::PreparedTransaction(p) => {
                        // The checkpoint recorded it and completed: a restore must commit it.
                        crate::fault::point("postgres-before-commit", p.checkpoint());
                        self.session
                            .conn
                            .commit_prepared(&mut self.committer, &p.gid)
                            .await?;
                    }
                    Committable::Empty => {}
                    other => {
                        return Err(self.session.conn.err(format!(
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
            if self.session.is_open() {
                self.session.ended();
                if let Some(c) = self.session.client() {
                    // Dropping the connection would roll it back too; say it.
                    let _ = c.batch_execute("ROLLBACK").await;
                }
            }
            Ok(())
        })
    }
}
