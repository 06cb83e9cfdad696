//! The PostgreSQL sink against the local server (`tests/postgres.sh`): what a user gets wrong
//! is refused before anything runs, naming the sink and the cause (a missing table, a column
//! of the wrong type, a wrong password, an unknown CA, upserts without a key), and a server
//! that goes away while a checkpoint commits delays the commit without losing or doubling a
//! row. The exactly-once proof under kills is `connectors_fault_injection.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::db::{batch, schema, two_phase};
use common::stack::{OwnServer, pg, pg_ca, pg_prepared, postgres, stack_script};
use common::unique;
use weir_crds::SinkSpec;
use weir_runtime::ids::CheckpointId;
use weir_runtime::sink::{Committable, SinkConnector};

/// One test at a time: one of them stops the server.
static SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn connector(spec: serde_json::Value, job: &str) -> Arc<dyn SinkConnector> {
    common::db::connector("postgres", spec, job)
}

/// Create `table (id bigint PRIMARY KEY, name text)` on the server at `url`.
fn keyed_table(rt: &tokio::runtime::Runtime, url: &str, table: &str) {
    rt.block_on(async {
        pg(url)
            .await
            .batch_execute(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, name text)"
            ))
            .await
            .unwrap();
    });
}

#[test]
fn mistakes_are_refused_before_the_job_runs_naming_the_sink_and_the_cause() {
    let Some(url) = postgres("postgres_mistakes") else {
        return;
    };
    let _one = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let (good, typed, keyless) = (
        format!("pg_ok_{u}"),
        format!("pg_typed_{u}"),
        format!("pg_nokey_{u}"),
    );
    rt.block_on(async {
        pg(&url)
            .await
            .batch_execute(&format!(
                "CREATE TABLE {good} (id bigint PRIMARY KEY, name text); \
                 CREATE TABLE {typed} (id bigint PRIMARY KEY, name integer); \
                 CREATE TABLE {keyless} (id bigint, name text, extra text NOT NULL)"
            ))
            .await
            .unwrap();
    });
    let plain = format!("{url}?sslmode=disable");
    let cases = [
        (
            serde_json::json!({"url": plain, "table": format!("nope_{u}"), "passwordEnv": "WEIR_POSTGRES_PASSWORD"}),
            format!("table public.nope_{u} does not exist"),
        ),
        (
            serde_json::json!({"url": plain, "table": typed, "passwordEnv": "WEIR_POSTGRES_PASSWORD"}),
            "column `name`: the records carry Utf8, the table's column is integer".to_string(),
        ),
        (
            serde_json::json!({"url": plain, "table": keyless, "passwordEnv": "WEIR_POSTGRES_PASSWORD"}),
            "column `extra` (text) is NOT NULL without a default".to_string(),
        ),
        (
            serde_json::json!({"url": plain, "table": good, "passwordEnv": "WEIR_TEST_SURELY_UNSET"}),
            "environment variable WEIR_TEST_SURELY_UNSET (passwordEnv) is not set".to_string(),
        ),
        (
            // A password the server refuses: refused at once, not waited for.
            serde_json::json!({"url": plain.replace("weir@", "nobody_here@"), "table": good, "passwordEnv": "WEIR_POSTGRES_PASSWORD"}),
            "password authentication failed for user \"nobody_here\"".to_string(),
        ),
        (
            // The server's certificate is signed by the test CA, which the system does not trust.
            serde_json::json!({"url": format!("{url}?sslmode=require"), "table": good, "passwordEnv": "WEIR_POSTGRES_PASSWORD"}),
            "certificate".to_string(),
        ),
        (
            serde_json::json!({"url": plain, "table": good, "passwordEnv": "WEIR_POSTGRES_PASSWORD", "mode": "upsert", "primaryKey": ["name"]}),
            "primaryKey [name] is not the columns of a unique index of the table (its unique keys: [id])".to_string(),
        ),
    ];
    for (spec, want) in cases {
        let c = connector(spec.clone(), &format!("mistakes-{u}"));
        let started = std::time::Instant::now();
        let err = rt
            .block_on(c.prepare(&schema()))
            .expect_err(&format!("{spec} should be refused"))
            .to_string();
        assert!(err.contains(&want), "{spec}: expected `{want}` in: {err}");
        assert!(err.starts_with("sink postgres public."), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{spec}: waited {:?}",
            started.elapsed()
        );
    }
    // The same table over TLS with the CA given is fine, and so is upsert mode by its key.
    let ca = pg_ca();
    let spec: SinkSpec = serde_json::from_value(serde_json::json!({"postgres": {
        "url": format!("{url}?sslmode=require"), "table": good, "passwordEnv": "WEIR_POSTGRES_PASSWORD",
        "tls": {"caPemEnv": "CA"}, "mode": "upsert"}}))
    .unwrap();
    let SinkSpec::Postgres(p) = &spec else {
        unreachable!()
    };
    weir_runtime::postgres::client::Endpoint::new(p, |v| {
        if v == "CA" {
            Some(ca.clone())
        } else {
            std::env::var(v).ok()
        }
    })
    .unwrap();
    let c = connector(
        serde_json::json!({"url": plain, "table": good, "passwordEnv": "WEIR_POSTGRES_PASSWORD", "mode": "upsert"}),
        &format!("mistakes-{u}"),
    );
    rt.block_on(c.prepare(&schema())).unwrap();
}

/// A checkpoint's transaction is prepared, the server stops, the checkpoint completes: the
/// commit waits for the server (it must not be dropped, nor fail the job into a replay that
/// would need it) and, once the server is back, commits the rows once. A second commit of the
/// same transaction (a restore's recovery after a crash right after the first) is a no-op.
#[test]
fn a_commit_waits_out_a_server_that_went_away_and_commits_once() {
    let Some(url) = postgres("postgres_commit_outage") else {
        return;
    };
    let _one = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let table = format!("pg_outage_{u}");
    let job = format!("outage-{u}");
    keyed_table(&rt, &url, &table);
    let c = connector(
        serde_json::json!({"url": format!("{url}?sslmode=disable"), "table": table,
            "passwordEnv": "WEIR_POSTGRES_PASSWORD", "initialBackoff": "100ms", "maxBackoff": "500ms"}),
        &job,
    );
    rt.block_on(c.prepare(&schema())).unwrap();
    rt.block_on(c.recover_and_commit(Vec::new())).unwrap();
    let mut s = two_phase(&c, &job, 1);
    let committable: Committable = rt.block_on(async {
        s.begin(CheckpointId(1)).await.unwrap();
        s.write(&batch(0..1000)).await.unwrap();
        s.pre_commit().await.unwrap()
    });
    assert!(
        matches!(committable, Committable::PreparedTransaction(_)),
        "{committable:?}"
    );
    let count = |rt: &tokio::runtime::Runtime| -> i64 {
        rt.block_on(async {
            pg(&url)
                .await
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0)
        })
    };
    assert_eq!(count(&rt), 0, "prepared rows are not visible");
    stack_script("postgres.sh", "stop", &[]);
    let restarter = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3));
        stack_script("postgres.sh", "start", &[]);
    });
    let started = std::time::Instant::now();
    rt.block_on(s.commit(vec![committable.clone()])).unwrap();
    restarter.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the commit did not wait for the server"
    );
    assert_eq!(count(&rt), 1000);
    // Committed again (a restore after a crash before the checkpoint was marked committed).
    rt.block_on(c.recover_and_commit(vec![committable]))
        .unwrap();
    assert_eq!(count(&rt), 1000);
    assert!(
        rt.block_on(pg_prepared(&url, &format!("weir:{job}:")))
            .is_empty()
    );
    // A checkpoint that never completed: its prepared transaction is rolled back on restore.
    let mut s = two_phase(&c, &job, 2);
    rt.block_on(async {
        s.begin(CheckpointId(2)).await.unwrap();
        s.write(&batch(1000..1500)).await.unwrap();
        s.pre_commit().await.unwrap();
    });
    assert_eq!(
        rt.block_on(pg_prepared(&url, &format!("weir:{job}:")))
            .len(),
        1
    );
    rt.block_on(c.recover_and_commit(Vec::new())).unwrap();
    assert!(
        rt.block_on(pg_prepared(&url, &format!("weir:{job}:")))
            .is_empty()
    );
    assert_eq!(count(&rt), 1000);
}

/// A server with `max_prepared_transactions = 0` (PostgreSQL's default) is refused by the
/// transactional mode before anything runs, saying what to set; upsert mode does not need it.
#[test]
fn transactional_mode_refuses_a_server_without_prepared_transactions() {
    let Some(url) = postgres("postgres_no_prepared") else {
        return;
    };
    let _one = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let own = OwnServer::postgres_with_max_prepared(9407, 0);
    let other = own.address.clone();
    assert!(other.contains("9407"), "{other}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let table = format!("pg_noprep_{u}");
    let other_plain = format!("{other}?sslmode=disable");
    let spec = |mode: &str| {
        serde_json::json!({"url": other_plain, "table": table,
            "passwordEnv": "WEIR_POSTGRES_PASSWORD", "mode": mode})
    };
    let result = rt.block_on(async {
        let c = common::stack::pg(&other).await;
        c.batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name text)"
        ))
        .await
        .unwrap();
        let refused = connector(spec("transactional"), &format!("noprep-{u}"))
            .prepare(&schema())
            .await;
        let upsert = connector(spec("upsert"), &format!("noprep-{u}"))
            .prepare(&schema())
            .await;
        (refused, upsert)
    });
    drop(own);
    let _ = url;
    let err = result
        .0
        .expect_err("a server without prepared transactions")
        .to_string();
    assert!(
        err.contains("max_prepared_transactions is 0") && err.contains("set it to at least 2"),
        "{err}"
    );
    result.1.unwrap();
}

/// A changelog in transactional mode: checkpoint 1 upserts a key and is prepared; before its
/// commit, checkpoint 2 updates the same key. The prepared transaction holds the row's lock
/// until `COMMIT PREPARED`, which the same subtask runs later, so writing the update at once
/// would wait for ever: the sink holds a changelog's rows until the barrier instead.
#[test]
fn a_changelog_update_of_a_key_still_prepared_does_not_wait_on_its_lock() {
    use weir_runtime::changelog::Kind;
    let Some(url) = postgres("postgres_changelog_locks") else {
        return;
    };
    let _one = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let table = format!("pg_locks_{u}");
    keyed_table(&rt, &url, &table);
    let log = common::db::changelog_schema();
    let change = common::db::changes_of_key_7;
    let c = connector(
        serde_json::json!({"url": format!("{url}?sslmode=disable"), "table": table,
            "passwordEnv": "WEIR_POSTGRES_PASSWORD"}),
        &format!("locks-{u}"),
    );
    rt.block_on(c.prepare(&log)).unwrap();
    let mut s = two_phase(&c, "locks", 1);
    rt.block_on(async {
        s.begin(CheckpointId(1)).await.unwrap();
        s.write(&change("first", &[Kind::Insert])).await.unwrap();
        let first = s.pre_commit().await.unwrap();
        s.begin(CheckpointId(2)).await.unwrap();
        // Checkpoint 1 has not committed yet: its prepared transaction holds id 7's lock.
        let update = change("second", &[Kind::UpdateBefore, Kind::UpdateAfter]);
        tokio::time::timeout(Duration::from_secs(10), s.write(&update))
            .await
            .expect("the write of checkpoint 2 waited on checkpoint 1's lock")
            .unwrap();
        s.commit(vec![first]).await.unwrap();
        let second = s.pre_commit().await.unwrap();
        s.commit(vec![second]).await.unwrap();
        let name: String = pg(&url)
            .await
            .query_one(&format!("SELECT name FROM {table} WHERE id = 7"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(name, "second");
    });
}
