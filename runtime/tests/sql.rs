//! The SQL front end end to end: the orders job written as SQL writes exactly what its
//! transforms form writes and what the oracle (the generator re-implemented in plain Rust)
//! says, also when killed with `kill -9` and restored; bad SQL is reported by `validate`
//! with the statement, its line and column, and the file's line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{OrdersJob, assert_matches_oracle, log_tail, spawn_runtime, wait_exit_within};

/// Every committed output line of a file sink, sorted: the result whatever files the
/// checkpoints cut it into.
fn lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            out.extend(
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    out.sort();
    out
}

/// `weir-runtime <args> <file>`, to its end.
fn runtime(args: &[&str], file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir-runtime"))
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

fn run_to_end(job: &OrdersJob, dir: &Path) {
    let file = job.write(dir);
    let log = dir.join(format!("{}.log", job.name));
    let mut child = spawn_runtime(&file, &[], &[], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(120)).expect("job ends");
    assert!(status.success(), "{} failed\n{}", job.name, log_tail(&log));
}

#[test]
fn the_sql_form_writes_byte_for_byte_what_the_transforms_form_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = |n: &str| format!("file://{}/{n}", tmp.path().display());
    let yaml = OrdersJob::new("yaml", storage("chk-yaml"), tmp.path().join("out-yaml"));
    let mut sql = OrdersJob::new("sql", storage("chk-sql"), tmp.path().join("out-sql"));
    sql.sql = true;
    run_to_end(&yaml, tmp.path());
    run_to_end(&sql, tmp.path());
    assert_matches_oracle(&yaml, "transforms form");
    assert_matches_oracle(&sql, "sql form");
    let (a, b) = (lines(&yaml.out_dir), lines(&sql.out_dir));
    assert!(!a.is_empty());
    assert_eq!(a, b, "the two forms wrote different bytes");
}

#[test]
fn the_sql_form_restored_after_kill_dash_nine_equals_the_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new(
        "sql-kills",
        format!("file://{}/chk", tmp.path().display()),
        tmp.path().join("out"),
    );
    job.sql = true;
    job.count = 120_000;
    job.rate = Some(20_000);
    let file = job.write(tmp.path());
    let log = tmp.path().join("runtime.log");
    let mut rng = common::fault_seed();
    let leftovers = [tmp.path().join("chk"), tmp.path().join("out")];
    let kills = common::until_every_kill_lands(&log, &leftovers, 4, || {
        common::kill_randomly(&file, &log, &mut rng, 4, 700..1600)
    });
    assert_eq!(
        kills,
        4,
        "the job ended before it could be killed\n{}",
        log_tail(&log)
    );
    let mut child = spawn_runtime(&file, &[], &[], &log);
    let status = wait_exit_within(&mut child, Duration::from_secs(120)).expect("final run ends");
    assert!(status.success(), "final run failed\n{}", log_tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.matches("restoring").count() >= 3, "{}", log_tail(&log));
    assert_matches_oracle(&job, "sql form after 4 kills");
}

#[test]
fn bad_sql_is_reported_with_statement_line_column_and_file_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new("bad", "file://./chk".into(), tmp.path().join("out"));
    job.sql = true;
    let text = job.yaml().replace("WHERE amount > 0", "WHERE amout > 0");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, &text).unwrap();
    let out = runtime(&["validate"], &file);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file_line = text.lines().position(|l| l.contains("amout")).unwrap() + 1;
    let want = format!("sql (line {file_line}): statement 1 (line 5, column 7)");
    assert!(stderr.contains(&want), "want `{want}` in:\n{stderr}");
    assert!(stderr.contains("amout"), "{stderr}");
    // `run` ends as refused: a restart would plan the same script the same way.
    let termination = tmp.path().join("termination");
    let out = Command::new(env!("CARGO_BIN_EXE_weir-runtime"))
        .args(["run", "--control-addr", "none"])
        .arg(&file)
        .env("WEIR_TERMINATION_LOG", &termination)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let outcome = common::read_outcome(&termination);
    assert!(
        matches!(&outcome, weir_crds::control::Outcome::Refused { error } if error.contains("amout")),
        "{outcome:?}"
    );
    // The table name is checked before DataFusion sees the statement.
    let text = job.yaml().replace("TABLE orders", "TABLE order");
    std::fs::write(&file, &text).unwrap();
    let out = runtime(&["validate"], &file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("table `order` not found; the tables are the sources and the views defined before: orders"),
        "{stderr}"
    );
}

/// `explain` shows the SQL job's stages: the filter chained to the source, the shuffle by the
/// GROUP BY key, the window with its state id, and the sink by its name.
#[test]
fn explain_prints_the_dataflow_of_a_sql_job() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = OrdersJob::new("explained", "file://./chk".into(), tmp.path().join("out"));
    job.sql = true;
    let file = job.write(tmp.path());
    let out = runtime(&["explain", "--parallelism", "3"], &file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing from:\n{text}"))
    };
    let order = [
        at("job explained (sql): parallelism 3"),
        at("stage 0 (x3)"),
        at("filter amount > 0"),
        at("shuffle by key groups of [store_id]"),
        at("stage 1 (x3)"),
        at("window tumbling"),
        at("[state `windows/window-0`"),
        at("windows (sink-0, file"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{text}"
    );
}
