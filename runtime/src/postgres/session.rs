//! A sink subtask's writing connection and its open transaction, shared by both modes:
//! connected on first use, `BEGIN` with the first row, and a connection that closes inside a
//! transaction is an error (its rows are gone with it; the job restores and replays them)
//! rather than a silent reconnect.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::Conn;
use super::client::PgError;
use super::rows::Writer;
use crate::error::{Error, Result};

pub(super) struct Session {
    pub(super) conn: Conn,
    /// How the subtask's records become statements.
    pub(super) writer: Arc<Writer>,
    /// Run once on every new connection (a session setting).
    setup: Option<&'static str>,
    client: Option<Client>,
    open: bool,
}

impl Session {
    pub(super) fn new(conn: Conn, writer: Arc<Writer>, setup: Option<&'static str>) -> Self {
        Self {
            conn,
            writer,
            setup,
            client: None,
            open: false,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// The transaction ended (committed, prepared or rolled back) or is to be forgotten.
    pub(super) fn ended(&mut self) {
        self.open = false;
    }

    /// The connection, if any (to roll back on abort).
    pub(super) fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// The connection inside an open transaction, opening both as needed; `what` names the
    /// transaction for the error when its connection closed.
    pub(super) async fn transaction(&mut self, what: &str) -> Result<&Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            if self.open {
                return Err(self.conn.err(format!(
                    "the connection to {} closed inside {what}",
                    self.conn.endpoint.display
                )));
            }
            let c = self.conn.connect().await?;
            if let Some(setup) = self.setup {
                c.batch_execute(setup)
                    .await
                    .map_err(|e| self.conn.err(format!("{setup}: {}", PgError::from(e))))?;
            }
            self.client = Some(c);
        }
        let c = self
            .client
            .as_ref()
            .ok_or_else(|| Error::internal("no postgres connection"))?;
        if !self.open {
            c.batch_execute("BEGIN")
                .await
                .map_err(|e| self.conn.err(format!("BEGIN: {}", PgError::from(e))))?;
            self.open = true;
        }
        Ok(c)
    }

    /// Write `batch` into the open transaction (opening it).
    pub(super) async fn send(&mut self, batch: &RecordBatch, what: &str) -> Result<()> {
        let writer = Arc::clone(&self.writer);
        let writes = writer.writes(batch)?;
        let conn = self.conn.clone();
        let client = self.transaction(what).await?;
        for w in writes {
            let params: Vec<&(dyn ToSql + Sync)> =
                w.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client
                .execute(w.sql, &params)
                .await
                .map_err(|e| conn.err(format!("writing rows: {}", PgError::from(e))))?;
        }
        Ok(())
    }
}
