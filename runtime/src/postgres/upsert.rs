//! A subtask of an `upsert` PostgreSQL sink: rows by key in a transaction that commits at
//! every barrier with the subtask's progress row (see the module above).

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::Conn;
use super::client::PgError;
use super::rows::Writer;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::sink::PlainSink;

pub(super) struct Upsert {
    conn: Conn,
    writer: std::sync::Arc<Writer>,
    progress: String,
    prefix: String,
    subtask: u32,
    client: Option<Client>,
    open: bool,
}

impl Upsert {
    pub(super) fn new(
        conn: Conn,
        writer: std::sync::Arc<Writer>,
        progress: String,
        prefix: String,
        subtask: u32,
    ) -> Self {
        Self {
            conn,
            writer,
            progress,
            prefix,
            subtask,
            client: None,
            open: false,
        }
    }

    async fn writing(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            if self.open {
                return Err(self.conn.err(format!(
                    "the connection to {} closed before the rows since the last checkpoint were committed",
                    self.conn.endpoint.display
                )));
            }
            self.client = Some(self.conn.connect().await?);
        }
        let c = self
            .client
            .as_ref()
            .ok_or_else(|| crate::error::Error::internal("no postgres connection"))?;
        if !self.open {
            c.batch_execute("BEGIN")
                .await
                .map_err(|e| self.conn.err(format!("BEGIN: {}", PgError::from(e))))?;
            self.open = true;
        }
        Ok(c)
    }
}

impl PlainSink for Upsert {
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            let writer = std::sync::Arc::clone(&self.writer);
            let writes = writer.writes(batch)?;
            let conn = self.conn.clone();
            let client = self.writing().await?;
            for w in writes {
                let params: Vec<&(dyn ToSql + Sync)> =
                    w.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                client
                    .execute(w.sql, &params)
                    .await
                    .map_err(|e| conn.err(format!("writing rows: {}", PgError::from(e))))?;
            }
            Ok(())
        })
    }

    fn flush(&mut self, checkpoint: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let sql = format!(
                "INSERT INTO {} (sink, subtask, checkpoint) VALUES ($1, $2, $3) \
                 ON CONFLICT (sink, subtask) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, written_at = now()",
                self.progress
            );
            let (prefix, subtask) = (self.prefix.clone(), self.subtask as i32);
            let id = checkpoint.0 as i64;
            let conn = self.conn.clone();
            let client = self.writing().await?;
            let done = async {
                client.execute(&sql, &[&prefix, &subtask, &id]).await?;
                client.batch_execute("COMMIT").await
            }
            .await;
            self.open = false;
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
