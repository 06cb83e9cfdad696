//! A subtask of an `upsert` MySQL sink: rows by key in a transaction that commits at every
//! barrier with the subtask's progress row (see the module above).

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::Server;
use super::client::MyError;
use super::rows::Writer;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::sink::PlainSink;

pub(super) struct Upsert {
    server: Server,
    writer: std::sync::Arc<Writer>,
    /// The statement that records the subtask's progress (built once).
    progress_sql: String,
    subtask: u32,
    conn: Option<Conn>,
    /// A transaction is open on `conn`.
    open: bool,
}

impl Upsert {
    /// A subtask recording its progress in `progress` (quoted).
    pub(super) fn new(
        server: Server,
        writer: std::sync::Arc<Writer>,
        progress: &str,
        subtask: u32,
    ) -> Self {
        Self {
            server,
            writer,
            progress_sql: format!(
                "INSERT INTO {progress} (sink, subtask, checkpoint) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE checkpoint = VALUES(checkpoint), written_at = CURRENT_TIMESTAMP(3)"
            ),
            subtask,
            conn: None,
            open: false,
        }
    }

    /// The connection inside the open transaction, opening both as needed. A connection
    /// lost inside a transaction is an error (its rows are gone with it; the job restores
    /// and replays them), never a silent reconnect.
    async fn transaction(&mut self) -> Result<&mut Conn> {
        if self.conn.as_ref().is_none_or(Conn::is_disconnected) {
            if self.open {
                return Err(self.server.err(format!(
                    "the connection to {} closed inside the transaction of the rows since the last checkpoint",
                    self.server.endpoint.display
                )));
            }
            self.conn = Some(self.server.connect().await?);
        }
        let server = self.server.clone();
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| crate::error::Error::internal("no mysql connection"))?;
        if !self.open {
            // Nothing is lost with a connection outside a transaction: one that the server
            // closed while idle is replaced once before the write fails.
            if let Err(e) = conn.query_drop("START TRANSACTION").await {
                let e = MyError::from(e);
                if !e.retriable {
                    return Err(server.err(format!("START TRANSACTION: {e}")));
                }
                *conn = server.connect().await?;
                conn.query_drop("START TRANSACTION")
                    .await
                    .map_err(|e| server.err(format!("START TRANSACTION: {}", MyError::from(e))))?;
            }
            self.open = true;
        }
        Ok(conn)
    }

    /// Forget the connection and its transaction (the server rolls it back).
    fn lost(&mut self) {
        self.conn = None;
        self.open = false;
    }
}

impl PlainSink for Upsert {
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            let writes = self.writer.writes(batch).map_err(|e| match e {
                crate::error::Error::Sink { message, .. } => self.server.err(message),
                other => other,
            })?;
            let conn = self.transaction().await?;
            let mut failed = None;
            for w in writes {
                if let Err(e) = conn.exec_drop(w.sql, w.params).await {
                    failed = Some(MyError::from(e));
                    break;
                }
            }
            if let Some(e) = failed {
                self.lost();
                return Err(self.server.err(format!("writing rows: {e}")));
            }
            Ok(())
        })
    }

    fn flush(&mut self, checkpoint: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let sql = self.progress_sql.clone();
            let params = (self.server.prefix.clone(), self.subtask, checkpoint.0);
            let conn = self.transaction().await?;
            let done = async {
                conn.exec_drop(sql, params).await?;
                conn.query_drop("COMMIT").await
            }
            .await;
            self.open = false;
            if let Err(e) = done {
                self.lost();
                return Err(self.server.err(format!(
                    "committing checkpoint {checkpoint}'s rows: {}",
                    MyError::from(e)
                )));
            }
            Ok(())
        })
    }
}
