//! PostgreSQL sink.
//!
//! `transactional` (exactly-once, two-phase commit): each subtask writes a checkpoint's rows
//! in one transaction and, at the barrier, `PREPARE TRANSACTION '<prefix>:<subtask>:<checkpoint>:<generation>'`
//! ([`PreparedTransaction`](crate::checkpoint::state::PreparedTransaction));
//! the checkpoint records that id, and once it completes the subtask runs `COMMIT PREPARED`
//! (on a second connection: the first is already writing the next checkpoint's transaction).
//! After a crash, [`PostgresConnector::recover_and_commit`] commits the prepared transactions
//! the restored checkpoint recorded and rolls back every other of the sink's prefix found in
//! `pg_prepared_xacts` (those of checkpoints that never completed), so nothing is left
//! prepared. A commit of an id that is no longer prepared was already committed (the id is
//! only ever rolled back by a recovery that did not restore it, which cannot happen once its
//! checkpoint completed). The server needs `max_prepared_transactions` > 0: checked at
//! start-up.
//!
//! `upsert` (idempotent): rows are written as they come in a transaction that commits at every
//! barrier together with a progress row (prefix, subtask, checkpoint) in `progressTable`; rows
//! go by key (`INSERT ... ON CONFLICT (key) DO UPDATE`), so a replay after a failure writes the
//! same final table, and the progress table says which checkpoint the table reflects.
//!
//! Either mode takes a changelog (an updating SQL result): `+I`/`+U` are upserts and `-D` a
//! delete by key (see [`rows`]). A server that goes away fails the writing checkpoint (the job
//! restores and replays); a commit waits for it with backoff instead, so nothing promised is
//! dropped.

pub mod client;
pub mod rows;
mod session;
pub mod table;
mod transactional;
mod upsert;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;
use tokio_postgres::Client;
use weir_crds::{DatabaseMode, PostgresSinkSpec};

use crate::error::{Error, Result};
use crate::sink::{Committable, Guarantee, SinkConnector, SinkContext, SinkEnv, SinkInstance};
use client::{Endpoint, PgError, ident, literal};
use rows::Writer;

/// SQLSTATE `undefined_object`: what `COMMIT PREPARED` answers for an id not prepared.
const NOT_PREPARED: &str = "42704";

/// A configured PostgreSQL sink.
pub struct PostgresConnector {
    spec: PostgresSinkSpec,
    parallelism: u32,
    /// Prefix of the prepared transactions' ids and the progress table's key.
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
struct Conn {
    endpoint: Endpoint,
    sink: String,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Conn {
    fn err(&self, message: impl Into<String>) -> Error {
        Error::Sink {
            sink: self.sink.clone(),
            message: message.into(),
        }
    }

    async fn connect(&self) -> Result<Client> {
        self.endpoint
            .connect()
            .await
            .map_err(|e| self.err(format!("cannot connect to {}: {e}", self.endpoint.display)))
    }

    /// `COMMIT PREPARED gid`, retried through a server that is away (no deadline: a commit
    /// the checkpoint promised must happen); an id no longer prepared was committed before.
    async fn commit_prepared(&self, client: &mut Option<Client>, gid: &str) -> Result<()> {
        let mut delays = crate::retry::Backoff::new(self.initial_backoff, self.max_backoff);
        loop {
            let attempt = async {
                if client.as_ref().is_none_or(Client::is_closed) {
                    *client = Some(self.endpoint.connect().await?);
                }
                let c = client.as_ref().ok_or_else(|| PgError {
                    message: "no connection".into(),
                    code: None,
                    retriable: true,
                })?;
                c.batch_execute(&format!("COMMIT PREPARED {}", literal(gid)))
                    .await
                    .map_err(PgError::from)
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if e.code.as_deref() == Some(NOT_PREPARED) => {
                    tracing::info!(sink = %self.sink, gid, "prepared transaction already committed");
                    return Ok(());
                }
                Err(e) if e.retriable => {
                    *client = None;
                    let delay = delays.next().unwrap_or(self.max_backoff);
                    tracing::warn!(sink = %self.sink, gid, attempt = delays.attempts(), retry_in_ms = delay.as_millis() as u64, error = %e, "postgres commit failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(self.err(format!("COMMIT PREPARED {gid}: {e}"))),
            }
        }
    }
}

impl PostgresConnector {
    /// Connector for `spec`; nothing connects until [`SinkConnector::prepare`].
    #[must_use]
    pub fn new(spec: &PostgresSinkSpec, env: &SinkEnv) -> Self {
        let prefix = spec
            .transaction_id_prefix
            .clone()
            .unwrap_or_else(|| format!("weir:{}:{}", env.job_name, env.sink));
        Self {
            spec: spec.clone(),
            parallelism: env.parallelism,
            prefix,
            target: OnceCell::new(),
        }
    }

    fn table(&self) -> String {
        format!("{}.{}", self.spec.schema, self.spec.table)
    }

    fn quoted_table(&self) -> String {
        format!("{}.{}", ident(&self.spec.schema), ident(&self.spec.table))
    }

    fn progress_table(&self) -> String {
        format!(
            "{}.{}",
            ident(&self.spec.schema),
            ident(&self.spec.progress_table)
        )
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Sink {
            sink: self.name(),
            message: message.into(),
        }
    }

    fn conn(&self) -> Result<Conn> {
        let t = self
            .target
            .get()
            .ok_or_else(|| Error::internal("postgres sink used before prepare"))?;
        Ok(Conn {
            endpoint: t.endpoint.clone(),
            sink: self.name(),
            initial_backoff: self.spec.initial_backoff.get(),
            max_backoff: self.spec.max_backoff.get(),
        })
    }

    /// Connect, waiting for a server that is not up yet; a refused password or certificate
    /// fails at once.
    async fn reach(&self, endpoint: &Endpoint) -> Result<Client> {
        crate::wait::until_reached(
            "PostgreSQL",
            &endpoint.display,
            crate::wait::limit(),
            || async {
                endpoint.connect().await.map_err(|e| {
                    let message = format!("cannot connect to {}: {e}", endpoint.display);
                    crate::wait::Attempt::sorted(e.retriable, message)
                })
            },
        )
        .await
        .map_err(|m| self.err(m))
    }

    async fn connect(&self, input: &SchemaRef) -> Result<Target> {
        let endpoint =
            Endpoint::new(&self.spec, |v| std::env::var(v).ok()).map_err(|e| self.err(e))?;
        let client = self.reach(&endpoint).await?;
        let q = |e: tokio_postgres::Error| self.err(PgError::from(e).message);
        let table = table::describe(&client, &self.spec.schema, &self.spec.table)
            .await
            .map_err(|e| self.err(e.message))?
            .ok_or_else(|| {
                self.err(format!(
                    "table {} does not exist on {} (or the user may not see it)",
                    self.table(),
                    endpoint.display
                ))
            })?;
        let crate::sink::table::Fit { targets, key } = table
            .fit(input, self.spec.mode, &self.spec.primary_key, table::takes)
            .map_err(|m| self.err(format!("table {}: {m}", self.table())))?;
        let writer = Writer::new(
            input,
            &self.quoted_table(),
            &targets,
            &key,
            self.spec.batch_rows,
        )
        .map_err(|m| self.err(format!("table {}: {m}", self.table())))?;
        match self.spec.mode {
            DatabaseMode::Transactional => {
                let row = client
                    .query_one(
                        "SELECT current_setting('max_prepared_transactions')::int",
                        &[],
                    )
                    .await
                    .map_err(q)?;
                let max: i32 = row.get(0);
                // Each subtask holds up to two prepared transactions (one committing while the
                // next checkpoint's is prepared), besides other jobs'.
                let wanted = i64::from(self.parallelism) * 2;
                if max == 0 {
                    return Err(self.err(format!(
                        "the server's max_prepared_transactions is 0, and mode transactional \
                         prepares a transaction per subtask and checkpoint: set it to at least \
                         {wanted} in postgresql.conf and restart the server, or use mode: upsert"
                    )));
                }
                if i64::from(max) < wanted {
                    tracing::warn!(sink = %self.name(), max_prepared_transactions = max, wanted, "max_prepared_transactions is low for this parallelism; a PREPARE may be refused");
                }
            }
            DatabaseMode::Upsert => {
                client
                    .batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {} (sink text NOT NULL, subtask integer NOT NULL, \
                         checkpoint bigint NOT NULL, written_at timestamptz NOT NULL DEFAULT now(), \
                         PRIMARY KEY (sink, subtask))",
                        self.progress_table()
                    ))
                    .await
                    .map_err(|e| {
                        self.err(format!(
                            "progress table {}.{} (mode upsert records its progress there): {}",
                            self.spec.schema,
                            self.spec.progress_table,
                            PgError::from(e)
                        ))
                    })?;
            }
        }
        tracing::info!(sink = %self.name(), server = %endpoint.display, mode = ?self.spec.mode, key = ?key, changelog = writer.is_changelog(), "postgres sink ready");
        Ok(Target {
            endpoint,
            writer: Arc::new(writer),
        })
    }

    /// The sink's prepared transactions still on the server.
    async fn prepared(&self, client: &Client) -> Result<Vec<String>> {
        let prefix = format!("{}:", self.prefix);
        let rows = client
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() \
                 AND left(gid, length($1)) = $1 ORDER BY gid",
                &[&prefix],
            )
            .await
            .map_err(|e| self.err(format!("reading pg_prepared_xacts: {}", PgError::from(e))))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

impl SinkConnector for PostgresConnector {
    fn name(&self) -> String {
        format!("postgres {}", self.table())
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
            .ok_or_else(|| Error::internal("postgres sink opened before prepare"))?;
        let conn = self.conn()?;
        Ok(match self.spec.mode {
            DatabaseMode::Transactional => {
                SinkInstance::TwoPhase(Box::new(transactional::Transactional::new(
                    conn,
                    Arc::clone(&t.writer),
                    self.prefix.clone(),
                    ctx.subtask,
                    ctx.generation,
                )))
            }
            DatabaseMode::Upsert => SinkInstance::Plain(Box::new(upsert::Upsert::new(
                conn,
                Arc::clone(&t.writer),
                &self.progress_table(),
                self.prefix.clone(),
                ctx.subtask,
            ))),
        })
    }

    fn recover_and_commit(&self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let t = self
                .target
                .get()
                .ok_or_else(|| Error::internal("postgres sink recovered before prepare"))?;
            let client = self.reach(&t.endpoint).await?;
            if self.spec.mode == DatabaseMode::Upsert {
                let rows = client
                    .query(
                        &format!(
                            "SELECT subtask, checkpoint FROM {} WHERE sink = $1 ORDER BY subtask",
                            self.progress_table()
                        ),
                        &[&self.prefix],
                    )
                    .await
                    .map_err(|e| self.err(PgError::from(e).message))?;
                for r in rows {
                    let (subtask, checkpoint): (i32, i64) = (r.get(0), r.get(1));
                    tracing::info!(sink = %self.name(), subtask, checkpoint, "the table holds the writes up to this checkpoint; later ones are replayed as upserts");
                }
                return Ok(());
            }
            let conn = self.conn()?;
            let mut committer = Some(client);
            let mut committed = BTreeSet::new();
            let own = format!("{}:", self.prefix);
            for c in committables {
                match c {
                    Committable::Empty => {}
                    Committable::PreparedTransaction(p) if p.gid.starts_with(&own) => {
                        conn.commit_prepared(&mut committer, &p.gid).await?;
                        tracing::info!(sink = %self.name(), gid = %p.gid, "recovery committed a prepared transaction");
                        committed.insert(p.gid);
                    }
                    other => {
                        return Err(self.err(format!(
                            "checkpoint records a committable of another sink: {other:?}"
                        )));
                    }
                }
            }
            let client = match committer {
                Some(c) if !c.is_closed() => c,
                _ => self.reach(&t.endpoint).await?,
            };
            for gid in self.prepared(&client).await? {
                if committed.contains(&gid) {
                    continue;
                }
                client
                    .batch_execute(&format!("ROLLBACK PREPARED {}", literal(&gid)))
                    .await
                    .or_else(|e| {
                        let e = PgError::from(e);
                        // Another recovery (a pod of the same job) got there first.
                        if e.code.as_deref() == Some(NOT_PREPARED) {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| self.err(format!("ROLLBACK PREPARED {gid}: {e}")))?;
                tracing::info!(sink = %self.name(), gid = %gid, "recovery rolled back a transaction of a checkpoint that did not complete");
            }
            Ok(())
        })
    }
}
