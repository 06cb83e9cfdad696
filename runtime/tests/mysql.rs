//! The MySQL sink against the local MariaDB (`tests/mysql.sh`): what a user gets wrong is
//! refused before anything runs, naming the sink and the cause (a missing table, a column of
//! the wrong type, a table that cannot roll back, a wrong password, an unknown CA, upserts
//! without a key), and a server that goes away while a checkpoint commits delays the commit
//! without losing or doubling a row. The exactly-once proof under kills is
//! `connectors_fault_injection.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::db::{batch, schema, two_phase};
use common::stack::{my, my_prepared, my_run, mysql, stack_script};
use common::unique;
use mysql_async::prelude::Queryable;
use weir_runtime::ids::CheckpointId;
use weir_runtime::sink::{Committable, SinkConnector};

/// One test at a time: one of them stops the server.
static SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn connector(spec: serde_json::Value, job: &str) -> Arc<dyn SinkConnector> {
    common::db::connector("mysql", spec, job)
}

async fn count(url: &str, table: &str) -> i64 {
    let mut c = my(url).await;
    let n: Option<i64> = c
        .query_first(format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    n.unwrap()
}

#[test]
fn mistakes_are_refused_before_the_job_runs_naming_the_sink_and_the_cause() {
    let Some(url) = mysql("mysql_mistakes") else {
        return;
    };
    let _one = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let (good, typed, keyless, myisam) = (
        format!("my_ok_{u}"),
        format!("my_typed_{u}"),
        format!("my_nokey_{u}"),
        format!("my_myisam_{u}"),
    );
    rt.block_on(my_run(
        &url,
        &format!(
            "CREATE TABLE {good} (id bigint PRIMARY KEY, name text); \
             CREATE TABLE {typed} (id bigint PRIMARY KEY, name int); \
             CREATE TABLE {keyless} (id bigint, name text, extra text NOT NULL); \
             CREATE TABLE {myisam} (id bigint PRIMARY KEY, name text) ENGINE = MyISAM"
        ),
    ));
    let plain = format!("{url}?sslmode=disable");
    let pw = "WEIR_MYSQL_PASSWORD";
    let cases = [
        (
            serde_json::json!({"url": plain, "table": format!("nope_{u}"), "passwordEnv": pw}),
            format!("table nope_{u} does not exist"),
        ),
        (
            serde_json::json!({"url": plain, "table": typed, "passwordEnv": pw}),
            "column `name`: the records carry Utf8, the table's column is int".to_string(),
        ),
        (
            serde_json::json!({"url": plain, "table": keyless, "passwordEnv": pw}),
            "column `extra` (text) is NOT NULL without a default".to_string(),
        ),
        (
            serde_json::json!({"url": plain, "table": myisam, "passwordEnv": pw}),
            "uses the MyISAM engine, which cannot roll back".to_string(),
        ),
        (
            serde_json::json!({"url": plain, "table": good, "passwordEnv": "WEIR_TEST_SURELY_UNSET"}),
            "environment variable WEIR_TEST_SURELY_UNSET (passwordEnv) is not set".to_string(),
        ),
        (
            // A password the server refuses: refused at once, not waited for.
            serde_json::json!({"url": plain.replace("weir@", "nobody_here@"), "table": good, "passwordEnv": pw}),
            "Access denied for user 'nobody_here'".to_string(),
        ),
        (
            // The server's certificate is signed by the test CA, which the system does not trust.
            serde_json::json!({"url": format!("{url}?sslmode=require"), "table": good, "passwordEnv": pw}),
            "TLS".to_string(),
        ),
        (
            serde_json::json!({"url": plain, "table": good, "passwordEnv": pw, "mode": "upsert", "primaryKey": ["name"]}),
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
        assert!(err.starts_with("sink mysql "), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{spec}: waited {:?}",
            started.elapsed()
        );
    }
    // Over TLS with the CA given the same server is reached (`my` insists on TLS), and the
    // table is fine for either mode.
    rt.block_on(async { my(&url).await.disconnect().await.unwrap() });
    for mode in ["transactional", "upsert"] {
        let c = connector(
            serde_json::json!({"url": plain, "table": good, "passwordEnv": pw, "mode": mode}),
            &format!("mistakes-{u}"),
        );
        rt.block_on(c.prepare(&schema())).unwrap();
    }
}

/// A checkpoint's XA transaction is prepared, the server is killed, the checkpoint completes:
/// the commit waits for the server and, once it is back, commits the rows once (the prepared
/// transaction survived the crash). A second commit of the same transaction (a restore's
/// recovery) is a no-op, and a transaction of a checkpoint that never completed is rolled
/// back by the next recovery.
#[test]
fn a_commit_waits_out_a_server_that_crashed_and_commits_once() {
    let Some(url) = mysql("mysql_commit_outage") else {
        return;
    };
    let _one = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let table = format!("my_outage_{u}");
    let job = format!("outage-{u}");
    rt.block_on(my_run(
        &url,
        &format!("CREATE TABLE {table} (id bigint PRIMARY KEY, name text)"),
    ));
    let c = connector(
        serde_json::json!({"url": format!("{url}?sslmode=disable"), "table": table,
            "passwordEnv": "WEIR_MYSQL_PASSWORD", "initialBackoff": "100ms", "maxBackoff": "500ms"}),
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
    let gtrid = format!("weir:{job}:sink-0");
    assert_eq!(
        rt.block_on(count(&url, &table)),
        0,
        "prepared rows are not visible"
    );
    assert_eq!(rt.block_on(my_prepared(&url, &gtrid)), vec!["0:1:1"]);
    stack_script("mysql.sh", "restart", &[]);
    stack_script("mysql.sh", "stop", &[]);
    let restarter = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3));
        stack_script("mysql.sh", "start", &[]);
    });
    let started = std::time::Instant::now();
    rt.block_on(s.commit(vec![committable.clone()])).unwrap();
    restarter.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the commit did not wait for the server"
    );
    assert_eq!(rt.block_on(count(&url, &table)), 1000);
    // Committed again (a restore after a crash before the checkpoint was marked committed).
    rt.block_on(c.recover_and_commit(vec![committable]))
        .unwrap();
    assert_eq!(rt.block_on(count(&url, &table)), 1000);
    assert!(rt.block_on(my_prepared(&url, &gtrid)).is_empty());
    // A checkpoint that never completed: its prepared transaction is rolled back on restore,
    // once the connection that prepared it is gone (the sink's abort lets go of it).
    let mut s = two_phase(&c, &job, 2);
    rt.block_on(async {
        s.begin(CheckpointId(2)).await.unwrap();
        s.write(&batch(1000..1500)).await.unwrap();
        s.pre_commit().await.unwrap();
        s.abort().await.unwrap();
    });
    assert_eq!(rt.block_on(my_prepared(&url, &gtrid)), vec!["0:2:2"]);
    rt.block_on(c.recover_and_commit(Vec::new())).unwrap();
    assert!(rt.block_on(my_prepared(&url, &gtrid)).is_empty());
    assert_eq!(rt.block_on(count(&url, &table)), 1000);
}

/// Two checkpoints in flight on one subtask: checkpoint 2 writes while checkpoint 1 is
/// prepared (on another connection: a connection holding a prepared XA transaction can do
/// nothing else), and a changelog update of a key checkpoint 1 still holds does not wait on
/// its lock (held until the barrier, by which checkpoint 1 has committed).
#[test]
fn the_next_checkpoint_writes_while_the_last_is_prepared_and_a_changelog_does_not_wait() {
    use weir_runtime::changelog::Kind;
    let Some(url) = mysql("mysql_overlap") else {
        return;
    };
    let _one = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let u = unique();
    let (appends, keyed) = (format!("my_overlap_{u}"), format!("my_locks_{u}"));
    rt.block_on(my_run(
        &url,
        &format!(
            "CREATE TABLE {appends} (id bigint, name text); \
             CREATE TABLE {keyed} (id bigint PRIMARY KEY, name text)"
        ),
    ));
    let job = format!("overlap-{u}");
    let c = connector(
        serde_json::json!({"url": format!("{url}?sslmode=disable"), "table": appends,
            "passwordEnv": "WEIR_MYSQL_PASSWORD"}),
        &job,
    );
    rt.block_on(c.prepare(&schema())).unwrap();
    let mut s = two_phase(&c, &job, 1);
    rt.block_on(async {
        let mut pending = Vec::new();
        for n in 1..=4_i64 {
            s.begin(CheckpointId(n as u64)).await.unwrap();
            s.write(&batch(n * 100..n * 100 + 100)).await.unwrap();
            // The previous checkpoint commits only now, after this one wrote.
            if let Some(p) = pending.pop() {
                s.commit(vec![p]).await.unwrap();
            }
            pending.push(s.pre_commit().await.unwrap());
        }
        s.commit(pending).await.unwrap();
        // Checkpoints that fail to complete (a storage outage): their transactions stay
        // prepared until a later one completes, but the subtask holds at most three
        // connections meanwhile (the others let go and are committed from another).
        let mut pending = Vec::new();
        for n in 5..=10_i64 {
            s.begin(CheckpointId(n as u64)).await.unwrap();
            s.write(&batch(n * 100..n * 100 + 100)).await.unwrap();
            pending.push(s.pre_commit().await.unwrap());
        }
        let mut c = my(&url).await;
        let held: Option<i64> = c
            .query_first(
                "SELECT count(*) - 1 FROM information_schema.PROCESSLIST WHERE USER = 'weir'",
            )
            .await
            .unwrap();
        c.disconnect().await.unwrap();
        assert!(held.unwrap() <= 3, "the subtask holds {held:?} connections");
        s.commit(pending).await.unwrap();
    });
    assert_eq!(rt.block_on(count(&url, &appends)), 1000);

    let log = common::db::changelog_schema();
    let change = common::db::changes_of_key_7;
    let c = connector(
        serde_json::json!({"url": format!("{url}?sslmode=disable"), "table": keyed,
            "passwordEnv": "WEIR_MYSQL_PASSWORD"}),
        &format!("locks-{u}"),
    );
    rt.block_on(c.prepare(&log)).unwrap();
    let mut s = two_phase(&c, "locks", 1);
    rt.block_on(async {
        s.begin(CheckpointId(1)).await.unwrap();
        s.write(&change("first", &[Kind::Insert])).await.unwrap();
        let first = s.pre_commit().await.unwrap();
        s.begin(CheckpointId(2)).await.unwrap();
        let update = change("second", &[Kind::UpdateBefore, Kind::UpdateAfter]);
        tokio::time::timeout(Duration::from_secs(10), s.write(&update))
            .await
            .expect("the write of checkpoint 2 waited on checkpoint 1's lock")
            .unwrap();
        s.commit(vec![first]).await.unwrap();
        let second = s.pre_commit().await.unwrap();
        s.commit(vec![second]).await.unwrap();
        let mut conn = my(&url).await;
        let name: Option<String> = conn
            .query_first(format!("SELECT name FROM {keyed} WHERE id = 7"))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("second"));
    });
}
