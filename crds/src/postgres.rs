//! Settings of the PostgreSQL sink. The password and TLS keys are read from environment
//! variables whose names the manifest gives (the operator fills them from Secret references),
//! never from the URL.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;
use crate::connectors::{
    DatabaseMode, TlsSpec, default_initial_backoff, default_max_backoff, password_and_tls_vars,
};

/// Write into a PostgreSQL table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.url.matches('^postgres(ql)?://[^/@]*:[^/@]*@')",
    "message": "the password must not be in the URL: name the variable holding it in passwordEnv"
}]))]
pub struct PostgresSinkSpec {
    /// The table name a `sql` pipeline writes to (`INSERT INTO <name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 63))]
    pub name: Option<String>,
    /// `postgres://user@host:port/database`, optionally with `?sslmode=disable|prefer|require`
    /// (default `prefer`: TLS whenever the server offers it).
    #[schemars(regex(pattern = r"^postgres(ql)?://"), length(max = 2048))]
    pub url: String,
    /// Target table; its columns are checked against the records before the job starts.
    pub table: String,
    /// Schema of the table.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Environment variable holding the password (filled from a Secret by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// TLS: the CA bundle to trust (the system's when absent) and a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// How duplicates are prevented.
    #[serde(default)]
    pub mode: DatabaseMode,
    /// Columns of the key that `upsert` mode (and a changelog in either mode) writes by;
    /// they must be the table's primary key or a unique index. The table's primary key when
    /// absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// Prefix of the prepared transactions' ids (`transactional`) and the job's key in the
    /// progress table (`upsert`): unique among the jobs writing to the database. The job's
    /// name and the sink's position when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 120))]
    pub transaction_id_prefix: Option<String>,
    /// Table (in `schema`) where `upsert` mode records, in the transaction of each write,
    /// the last checkpoint written per job and subtask; created when missing.
    #[serde(default = "default_progress_table")]
    pub progress_table: String,
    /// Rows per statement.
    #[serde(default = "default_batch_rows")]
    #[schemars(range(min = 1))]
    pub batch_rows: u32,
    /// First retry delay of a commit; doubles up to `maxBackoff`. A server that is away
    /// stalls commits (and backpressures the job) rather than dropping rows.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest retry delay.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

impl PostgresSinkSpec {
    /// `(field, variable)` of each environment variable named.
    #[must_use]
    pub fn env_vars(&self) -> Vec<(String, &str)> {
        password_and_tls_vars(self.password_env.as_deref(), self.tls.as_ref())
    }
}

fn default_schema() -> String {
    "public".to_string()
}
fn default_progress_table() -> String {
    "weir_sink_progress".to_string()
}
fn default_batch_rows() -> u32 {
    5_000
}
