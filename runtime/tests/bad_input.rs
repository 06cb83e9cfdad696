//! Bad input fails before anything runs, naming the field and line; undecodable records
//! follow the configured policy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use weir_runtime::checkpoint::coordinator::Outcome;
use weir_runtime::error::Error;
use weir_runtime::job::{JobArgs, RunOptions, start};

const JOB: &str = "\
name: bad
source:
  datagen:
    count: 10
    fields:
      store_id: {key: {cardinality: 3}}
      amount: {uniform: {min: 0, max: 9}}
      ts: {eventTime: {}}
  schema:
    - {name: store_id, type: string}
    - {name: amount, type: float64}
    - {name: ts, type: timestamp}
  eventTime: {field: ts}
transforms:
  - filter: amount > 1
  - select: {store_id: store_id, doubled: amount * 2, ts: ts}
  - window:
      tumbling: 1s
      keyBy: [store_id]
      aggregates: {total: sum(doubled)}
sinks:
  - stdout: {}
";

fn plan_err(src: &str) -> weir_crds::JobErrors {
    match weir_runtime::plan_source("bad.yaml", src) {
        Err(Error::Job(e)) => e,
        Err(e) => panic!("expected a job error, got {e}"),
        Ok(_) => panic!("expected the job to be rejected"),
    }
}

#[test]
fn the_reference_job_plans() {
    weir_runtime::plan_source("bad.yaml", JOB).expect("valid");
}

#[test]
fn a_filter_naming_a_missing_column_is_rejected_with_field_and_line() {
    let e = plan_err(&JOB.replace("filter: amount > 1", "filter: amout > 1"));
    let err = &e.errors[0];
    assert_eq!(err.path, "transforms[0].filter");
    assert_eq!(err.line, Some(15), "{e}");
    assert!(err.message.contains("amout"), "{e}");
}

#[test]
fn a_select_or_aggregate_naming_a_missing_column_is_rejected() {
    let e = plan_err(&JOB.replace("doubled: amount * 2", "doubled: price * 2"));
    assert_eq!(e.errors[0].path, "transforms[1].select.doubled", "{e}");
    assert_eq!(e.errors[0].line, Some(16), "{e}");
    let e = plan_err(&JOB.replace("sum(doubled)", "sum(tripled)"));
    assert_eq!(
        e.errors[0].path, "transforms[2].window.aggregates.total",
        "{e}"
    );
    assert!(e.to_string().contains("tripled"), "{e}");
}

#[test]
fn a_non_boolean_filter_and_a_sum_of_text_are_rejected() {
    let e = plan_err(&JOB.replace("filter: amount > 1", "filter: amount + 1"));
    assert!(e.errors[0].message.contains("must be boolean"), "{e}");
    let e = plan_err(&JOB.replace("sum(doubled)", "sum(store_id)"));
    assert!(e.errors[0].message.contains("numeric"), "{e}");
}

#[test]
fn a_window_after_event_time_was_dropped_is_rejected() {
    let e = plan_err(&JOB.replace(", ts: ts}", "}"));
    assert_eq!(e.errors[0].path, "transforms[2].window", "{e}");
    assert!(e.errors[0].message.contains("transforms[1].select"), "{e}");
}

#[test]
fn a_window_key_that_does_not_exist_is_rejected_with_its_line() {
    let e = plan_err(&JOB.replace("keyBy: [store_id]", "keyBy: [shop]"));
    assert_eq!(e.errors[0].path, "transforms[2].window.keyBy[0]", "{e}");
    assert_eq!(e.errors[0].line, Some(19), "{e}");
}

fn file_job(input: &str, policy: &str, out: &str, chk: &str) -> String {
    format!(
        "name: decode
checkpoint: {{interval: 50ms, storage: \"file://{chk}\"}}
source:
  file: {{path: \"{input}\", batchSize: 3}}
  schema:
    - {{name: id, type: int64}}
    - {{name: name, type: string}}
  onDecodeError: {policy}
sinks:
  - file: {{path: \"{out}\"}}
"
    )
}

fn lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                out.push(serde_json::from_str(l).unwrap());
            }
        }
    }
    out.sort_by_key(|v| {
        v["id"]
            .as_i64()
            .or_else(|| v["source"].as_str().map(|s| s.len() as i64))
    });
    out
}

const INPUT: &str = "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": \"b\"}\n{\"id\": \"three\", \"name\": \"c\"}\nnot json at all\n{\"id\": 5, \"name\": \"e\"}\n";

async fn run_file(policy: &str) -> (Result<Outcome, Error>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, INPUT).unwrap();
    let side = tmp.path().join("dead");
    let policy = policy.replace("SIDE", &side.display().to_string());
    let src = file_job(
        &input.display().to_string(),
        &policy,
        &tmp.path().join("out").display().to_string(),
        &tmp.path().join("chk").display().to_string(),
    );
    let plan = weir_runtime::plan_source("decode.yaml", &src).unwrap();
    let r = match start(plan, RunOptions::default()).await {
        Ok(j) => j.wait().await,
        Err(e) => Err(e),
    };
    (r, tmp)
}

#[tokio::test]
async fn undecodable_record_fails_the_job_naming_file_and_line() {
    let (r, tmp) = run_file("{fail: {}}").await;
    let e = r.expect_err("policy fail must fail the job").to_string();
    assert!(e.contains("in.jsonl:3"), "{e}");
    assert!(
        lines(&tmp.path().join("out")).iter().all(|v| v["id"] != 5),
        "nothing after the bad record may be committed"
    );
}

#[tokio::test]
async fn undecodable_records_are_skipped_and_counted() {
    let (r, tmp) = run_file("{skip: {}}").await;
    assert_eq!(r.unwrap(), Outcome::Finished);
    let ids: Vec<i64> = lines(&tmp.path().join("out"))
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 5]);
}

#[tokio::test]
async fn undecodable_records_go_to_the_side_output_with_their_error() {
    let (r, tmp) = run_file("{sideOutput: {file: {path: \"SIDE\"}}}").await;
    assert_eq!(r.unwrap(), Outcome::Finished);
    let ids: Vec<i64> = lines(&tmp.path().join("out"))
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 5]);
    let dead = lines(&tmp.path().join("dead"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    let sources: Vec<&str> = dead.iter().map(|v| v["source"].as_str().unwrap()).collect();
    assert!(
        sources.iter().any(|s| s.ends_with("in.jsonl:3")),
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.ends_with("in.jsonl:4")),
        "{sources:?}"
    );
    assert!(
        dead.iter().any(|v| v["raw"] == "not json at all"),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .all(|v| !v["error"].as_str().unwrap().is_empty())
    );
}

fn window_job(chk: &str, aggregates: &str) -> String {
    format!(
        "name: edited
checkpoint: {{interval: 100ms, storage: \"file://{chk}\"}}
source:
  datagen:
    rate: 2000
    fields:
      store_id: {{key: {{cardinality: 5}}}}
      amount: {{uniform: {{min: 0, max: 9}}}}
      ts: {{eventTime: {{}}}}
  schema:
    - {{name: store_id, type: string}}
    - {{name: amount, type: float64}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts}}
transforms:
  - window:
      tumbling: 1h
      keyBy: [store_id]
      aggregates: {aggregates}
sinks:
  - stdout: {{}}
"
    )
}

/// A job whose window aggregates were reordered between a savepoint and the restore is
/// refused at start, naming the operator, the checkpoint and what changed, as an error the
/// runtime reports as `refused` (restarting cannot help). Before, the aligned layout zipped
/// the stored accumulators with the new aggregates: the count went nowhere, the sum took the
/// count's place, and the results were silently wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_of_a_job_whose_aggregates_were_reordered_is_refused_naming_the_operator() {
    use weir_runtime::checkpoint::coordinator::Request;
    let tmp = tempfile::tempdir().unwrap();
    let chk = tmp.path().join("chk").display().to_string();
    let plan = weir_runtime::plan_source(
        "edited.yaml",
        &window_job(&chk, "{n: count(*), total: sum(amount)}"),
    )
    .unwrap();
    let running = start(plan, RunOptions::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    running
        .requests
        .send(Request::Stop { savepoint: true })
        .await
        .unwrap();
    let Outcome::Stopped {
        savepoint: Some(sp),
    } = running.wait().await.unwrap()
    else {
        panic!("no savepoint")
    };

    let restore = |aggregates: &str, drop: &[&str]| {
        let plan = weir_runtime::plan_source("edited.yaml", &window_job(&chk, aggregates)).unwrap();
        let opts = RunOptions {
            job: JobArgs {
                restore_from: Some(sp.clone()),
                drop_state: drop.iter().map(ToString::to_string).collect(),
                ..JobArgs::default()
            },
            ..RunOptions::default()
        };
        start(plan, opts)
    };
    let Err(e) = restore("{total: sum(amount), n: count(*)}", &[]).await else {
        panic!("a savepoint of the other aggregate order was restored");
    };
    assert!(matches!(e, Error::Incompatible { .. }), "{e:?}");
    let e = e.to_string();
    for want in [
        "window-0",
        sp.trim_end_matches('/'),
        "aggregates was `count(*), sum(amount)`, is `sum(amount), count(*)`",
        "dropState",
    ] {
        assert!(e.contains(want), "{want:?} missing: {e}");
    }
    // The job as it was restores from the same savepoint, and the edited one does when the
    // user names the window in dropState (it starts empty).
    for (aggregates, drop) in [
        ("{n: count(*), total: sum(amount)}", &[][..]),
        ("{total: sum(amount), n: count(*)}", &["window-0"][..]),
    ] {
        let job = restore(aggregates, drop).await.unwrap();
        job.requests
            .send(Request::Stop { savepoint: false })
            .await
            .unwrap();
        assert!(matches!(job.wait().await.unwrap(), Outcome::Stopped { .. }));
    }
}
