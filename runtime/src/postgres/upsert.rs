//! A subtask of an `upsert` PostgreSQL sink: rows by key in a transaction that commits at
//! every barrier with the subtask's progress row (see the module above).

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;

use super::Conn;
use super::client::PgError;
use super::rows::Writer;
use super::session::Session;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::sink::PlainSink;

/// The open transaction, for the error when its connection closes.
const WHAT: &str = "the transaction of the rows since the last checkpoint";

pub(super) struct Upsert {
    session: Session,
    /// The statement that records the subtask's progress (built once).
    progress_sql: String,
    prefix: String,
    subtask: u32,
}

impl Upsert {
    /// A subtask recording its progress in `progress` (quoted) under `prefix`.
    pub(super) fn new(
        conn: Conn,
        writer: std::sync::Arc<Writer>,
        progress: &str,
        prefix: String,
        subtask: u32,
    ) -> Self {
        Self {
            session: Session::new(conn, writer, None),
            progress_sql: format!(
                "INSERT INTO {progress} (sink, subtask, checkpoint) VALUES ($1, $2, $3) \
                 ON CONFLICT (sink, subtask) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, written_at = now()"
            ),
            prefix,
            subtask,
        }
    }
}

impl PlainSink for Upsert {
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            self.session.send(batch, WHAT).await
        })
    }

    fn flush(&mut self, checkpoint: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let sql = self.progress_sql.clone();
            let (prefix, subtask) = (self.prefix.clone(), self.subtask as i32);
            let id = checkpoint.0 as i64;
            let conn = self.session.conn.clone();
            let client = self.session.transaction(WHAT).await?;
            let done = async {
                client.execute(&sql, &[&prefix, &subtask, &id]).await?;
                client.batch_execute("COMMIT").await
            }
            .await;
            self.session.ended();
            done.map_err(|e| {
                conn.err(format!(
                    "committing checkpoint {checkpoint}'s rows: {}",
                    PgError::from(e)
                ))
            })?;
            Ok(())
        })
    }
}
