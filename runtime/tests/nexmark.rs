//! Nexmark queries (`examples/nexmark/`) against an independent oracle: the same query,
//! written separately in DuckDB's dialect (`tests/nexmark/oracle/`), run by DuckDB as a batch
//! over the very events Weir read (dumped by a job that selects every event), compared row
//! by row (`tests/nexmark/oracle.py`; an updating result's changelog is applied first, and a
//! retraction of a row never written fails it). Each query runs at parallelism 1 and 3; q1,
//! q3, q4, q5, q9, q11, q13, q17, q19, q22, `early`, `hot`, `people` and `traders` also killed with SIGKILL at random moments and
//! restarted from their checkpoints, the last time at parallelism 3;
//! several queries in one job (`together.yaml`) each equal their own oracle the same ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{log_tail, spawn_runtime, wait_exit_within};

const EVENTS: u64 = 60_000;
const QUERIES: [&str; 24] = [
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q13", "q14", "q15", "q16", "q17",
    "q18", "q19", "q20", "q21", "q22", "early", "hot", "people", "traders",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The example's job file, with its size, parallelism, storage and output moved under `dir`.
fn job_file(query: &str, sql: Option<&str>, parallelism: u32, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(format!("examples/nexmark/{query}.yaml")))
        .expect("example");
    let mut text = text
        .replace("events: 1000000", &format!("events: {EVENTS}"))
        // A minute of event time: windows of 10 seconds close several times.
        .replace("eventsPerSecond: 10000", "eventsPerSecond: 1000")
        .replace("parallelism: 2", &format!("parallelism: {parallelism}"))
        .replace("interval: 2s", "interval: 200ms")
        .replace(
            "file://./.weir",
            &format!("file://{}", dir.join("chk").display()),
        )
        .replace(
            &format!("out/nexmark/{query}"),
            &dir.join("out").display().to_string(),
        )
        // A side table the example reads from the repository (q13).
        .replace(
            "path: examples/",
            &format!("path: {}/examples/", repo().display()),
        );
    if let Some(sql) = sql {
        let at = text.find("sql: |").expect("sql");
        text.truncate(at);
        text.push_str("sql: |\n");
        text.push_str(sql);
    }
    std::fs::create_dir_all(dir).expect("job dir");
    let file = dir.join("job.yaml");
    std::fs::write(&file, text).expect("write job");
    file
}

fn run_to_end(file: &Path, log: &Path) {
    run_to_end_with(file, log, &[]);
}

fn run_to_end_with(file: &Path, log: &Path, args: &[&str]) {
    let mut child = spawn_runtime(file, args, &[], log);
    let status = wait_exit_within(&mut child, Duration::from_secs(300)).expect("job ends");
    assert!(status.success(), "job failed\n{}", log_tail(log));
}

/// Every event, as the queries' source emits it, for the oracle to read.
fn dump_events(dir: &Path) -> PathBuf {
    let file = job_file(
        "q0",
        Some("  INSERT INTO out SELECT * FROM nexmark;\n"),
        2,
        dir,
    );
    run_to_end(&file, &dir.join("runtime.log"));
    dir.join("out")
}

fn oracle(events: &Path, query: &str, out: &Path) -> String {
    oracle_each(events, &[(query, out.to_path_buf())]).remove(0)
}

/// Each `(query, output)` against its oracle in one process: the events are loaded once, a
/// query named twice is run once. One report per pair, in order.
fn oracle_each(events: &Path, checks: &[(&str, PathBuf)]) -> Vec<String> {
    let python = Command::new(repo().join("tests/duckdb.sh"))
        .arg("python")
        .output()
        .expect("tests/duckdb.sh");
    assert!(
        python.status.success(),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/nexmark/oracle.py")).arg(events);
    for (query, out) in checks {
        cmd.arg(repo().join(format!("tests/nexmark/oracle/{query}.sql")))
            .arg(out);
    }
    let res = cmd.output().expect("oracle");
    let stdout = String::from_utf8_lossy(&res.stdout);
    let reports: Vec<String> = stdout.lines().map(|l| l.trim().to_string()).collect();
    let named: Vec<String> = checks
        .iter()
        .zip(&reports)
        .map(|((q, out), r)| format!("{q} ({}): {r}", out.display()))
        .collect();
    assert!(
        res.status.success() && reports.len() == checks.len(),
        "differs from the oracle:\n{}\n{}",
        named.join("\n"),
        String::from_utf8_lossy(&res.stderr)
    );
    reports
}

#[test]
fn every_query_equals_the_oracle_at_parallelism_1_and_3() {
    let tmp = tempfile::tempdir().unwrap();
    let events = dump_events(&tmp.path().join("events"));
    for query in QUERIES {
        let mut outs = Vec::new();
        for parallelism in [1, 3] {
            let dir = tmp.path().join(format!("{query}-p{parallelism}"));
            std::fs::create_dir_all(&dir).unwrap();
            let file = job_file(query, None, parallelism, &dir);
            run_to_end(&file, &dir.join("runtime.log"));
            outs.push((query, dir.join("out")));
        }
        for (report, parallelism) in oracle_each(&events, &outs).iter().zip([1, 3]) {
            println!("{query} at parallelism {parallelism}: {report}");
        }
    }
}

/// Make `file`'s source slow enough to be killed mid-stream (60k events in `1.5 * times`
/// seconds), then kill it with SIGKILL `times` times at random moments, restarting it in
/// between. A schedule whose input ran out before its kills starts again from nothing.
fn kill(file: &Path, log: &Path, rng: &mut u64, times: u32) {
    slow_down(file, times);
    let kills = common::until_every_kill_lands(log, &leftovers(file), times, || {
        common::kill_randomly(file, log, rng, times, 600..1400)
    });
    assert_eq!(
        kills,
        times,
        "{} ended before it could be killed",
        file.display()
    );
}

/// What a run of the job in `file` leaves (its checkpoints, output and disk state), removed
/// when a kill schedule starts again from nothing.
fn leftovers(file: &Path) -> Vec<PathBuf> {
    let dir = file.parent().expect("a job file in its directory");
    ["chk", "out", "state"].map(|d| dir.join(d)).to_vec()
}

/// The generator of the job in `file` at a rate that outlasts `times` kills.
fn slow_down(file: &Path, times: u32) {
    let text = std::fs::read_to_string(file).unwrap().replace(
        "splits: 8",
        &format!("splits: 8\n    rate: {}", 40_000 / times),
    );
    std::fs::write(file, text).unwrap();
}

/// As [`kill`], each kill at a random moment after its run's first checkpoint, so that every
/// run after the first restores one; at half the rate, so that a run whose first checkpoint
/// is slow does not end first.
fn kill_checkpointed(file: &Path, log: &Path, rng: &mut u64, times: u32) {
    slow_down(file, 2 * times);
    let kills = common::until_every_kill_lands(log, &leftovers(file), times, || {
        common::kill_after_a_checkpoint(file, log, rng, times, 0..600)
    });
    assert_eq!(
        kills,
        times,
        "{} ended before it could be killed",
        file.display()
    );
}

#[test]
fn a_query_killed_and_restarted_still_equals_the_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let events = dump_events(&tmp.path().join("events"));
    let mut rng = common::fault_seed();
    for query in [
        "q1", "q3", "q4", "q5", "q9", "q11", "q13", "q17", "q19", "q22", "early", "hot", "people",
        "traders",
    ] {
        let dir = tmp.path().join(query);
        std::fs::create_dir_all(&dir).unwrap();
        let file = job_file(query, None, 2, &dir);
        let log = dir.join("runtime.log");
        kill(&file, &log, &mut rng, 2);
        // The last run restores the newest checkpoint at another parallelism: keyed state
        // (windows, join rows) moves by key group.
        run_to_end_with(&file, &log, &["--parallelism", "3"]);
        let report = oracle(&events, query, &dir.join("out"));
        println!("{query} after 2 kills at parallelism 2, ended at 3: {report}");
    }
}

/// The sinks of `together.yaml` and the oracle query each is checked against.
const TOGETHER: [&str; 11] = [
    "q1", "q2", "q14", "bids", "either", "activity", "sellers", "busy", "counted", "tally",
    "leaders",
];

/// Eleven statements with eleven results in one job: one source, the `bid` view's filter and
/// projection shared, forks into sinks and shuffles into windows, a union within the source
/// stage and a union of two windows' results (a stage fed by two forward edges, aligning
/// barriers and taking the lower watermark of the two), a `SELECT DISTINCT`, a filtered
/// changelog, a join of inserts with a changelog, a union of a changelog with inserts and a
/// top-N over a changelog. Each sink equals its own oracle at
/// parallelism 3 and after SIGKILLs.
#[test]
fn several_queries_in_one_job_each_equal_their_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let events = dump_events(&tmp.path().join("events"));
    let mut rng = common::fault_seed();
    for killed in [false, true] {
        let dir = tmp.path().join(if killed { "killed" } else { "p3" });
        std::fs::create_dir_all(&dir).unwrap();
        let file = job_file("together", None, if killed { 2 } else { 3 }, &dir);
        let log = dir.join("runtime.log");
        if killed {
            kill(&file, &log, &mut rng, 4);
        }
        run_to_end(&file, &log);
        let outs: Vec<(&str, PathBuf)> = TOGETHER
            .iter()
            .map(|sink| (*sink, dir.join("out").join(sink)))
            .collect();
        for (report, sink) in oracle_each(&events, &outs).iter().zip(TOGETHER) {
            println!("together, {sink}, killed {killed}: {report}");
        }
    }
}

/// Joins, updating `GROUP BY`s and top-Ns with their state on disk (`stateBackend: disk`, a
/// 32 MiB budget): a regular inner join (q3), a window join (q8), a join with a bounded side
/// table (q13), an interval outer join (`early`), a regular outer join (`people`), a full join
/// of two updating counts (`traders`), a join feeding two updating aggregations (q4), updating
/// aggregations with `count(DISTINCT)` and `FILTER` (q15, q16, q17), a window top-N (`hot`)
/// and updating top-Ns (q9 over a join, q18, q19), each killed twice with
/// SIGKILL at parallelism 2 and run to its end at 3 (restoring the stores' files by key
/// group), equal the oracle. The killed runs' stores are on disk: the state was there, not in
/// memory.
#[test]
fn sql_operators_on_the_disk_backend_killed_and_rescaled_still_equal_the_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let events = dump_events(&tmp.path().join("events"));
    let mut rng = common::fault_seed();
    for (query, operator) in [
        ("q3", "join"),
        ("q8", "join"),
        ("q13", "join"),
        ("early", "join"),
        ("people", "join"),
        ("traders", "join"),
        ("q4", "group"),
        ("q15", "group"),
        ("q16", "group"),
        ("q17", "group"),
        ("hot", "top-n"),
        ("q9", "top-n"),
        ("q18", "top-n"),
        ("q19", "top-n"),
    ] {
        let dir = tmp.path().join(query);
        std::fs::create_dir_all(&dir).unwrap();
        let file = job_file(query, None, 2, &dir);
        let state = dir.join("state");
        let text = std::fs::read_to_string(&file).unwrap().replace(
            "\nsource:",
            &format!(
                "\nstateBackend:\n  type: disk\n  dir: \"{}\"\n  memory: 32Mi\nsource:",
                state.display()
            ),
        );
        std::fs::write(&file, text).unwrap();
        let log = dir.join("runtime.log");
        kill_checkpointed(&file, &log, &mut rng, 2);
        let killed = common::stores(&state);
        assert!(
            killed.iter().any(|s| s.contains(operator)),
            "{query}: no {operator} kept a store under {}: {killed:?}",
            state.display()
        );
        run_to_end_with(&file, &log, &["--parallelism", "3"]);
        // The second and last runs restored the store from a checkpoint, not from nothing.
        let restores = std::fs::read_to_string(&log)
            .unwrap()
            .matches(" restoring ")
            .count();
        assert!(
            restores >= 2,
            "{query}: {restores} restores\n{}",
            log_tail(&log)
        );
        let report = oracle(&events, query, &dir.join("out"));
        println!(
            "{query} on disk, stores {killed:?}, after 2 kills at parallelism 2, ended at 3: {report}"
        );
    }
}
