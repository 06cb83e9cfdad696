//! One test per row of the "which edits keep state" table (README, "Changing a job that has state"): a checkpoint
//! of the job before the edit, recorded as the coordinator records it, restored into the
//! job after it.

use weir_crds::load_job;

use crate::checkpoint::BarrierKind;
use crate::checkpoint::compat::{Wanted, fit};
use crate::checkpoint::metadata::{CheckpointMetadata, TaskState};
use crate::checkpoint::restore::Restored;
use crate::checkpoint::state::SplitState;
use crate::error::Error;
use crate::ids::{CheckpointId, TaskId};
use crate::plan::{Plan, plan};

fn planned(src: &str) -> Plan {
    let job = load_job("t.yaml", src).unwrap_or_else(|e| panic!("{e}"));
    plan(&job, "t", "t.yaml", src).unwrap_or_else(|e| panic!("{e}"))
}

/// A checkpoint of `p`: every stateful operator holds key group 0, every source is at offset
/// 100 + its stage.
fn checkpoint_of(p: &Plan) -> Restored {
    let tasks = p
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let stage = u32::try_from(i).expect("few stages");
            let splits = if p.is_source_stage(i) {
                vec![SplitState {
                    offset: 100 + u64::from(stage),
                    ..SplitState::new(0)
                }]
            } else {
                Vec::new()
            };
            let operators = s
                .ops
                .iter()
                .filter(|c| c.op.is_stateful())
                .map(|c| (c.op.id.clone(), vec![(0, vec![1, 2, 3])]))
                .collect();
            let state = TaskState {
                splits,
                operators,
                write_ahead: Vec::new(),
                disk: Vec::new(),
                parts: Vec::new(),
            };
            (TaskId { stage, subtask: 0 }, state)
        })
        .collect();
    Restored {
        uri: "file:///chk/seven".into(),
        storage: crate::storage::Storage::File(crate::storage::FileStore::new("/chk/seven")),
        dir: String::new(),
        metadata: CheckpointMetadata {
            job: "t".into(),
            job_id: "l".into(),
            generation: 1,
            id: CheckpointId(7),
            kind: BarrierKind::Checkpoint,
            parallelism: 1,
            max_parallelism: 128,
            completed_at_ms: 0,
            duration_ms: 0,
            state_files: Vec::new(),
            committables: Vec::new(),
            operators: p.operator_records(),
            sources: p.source_records(),
        },
        tasks,
    }
}

fn restore(before: &str, after: &str, allow: bool, drop: &[&str]) -> Result<Restored, Error> {
    let mut r = checkpoint_of(&planned(before));
    let p = planned(after);
    let wanted = Wanted {
        operators: p.operator_records(),
        sources: p.source_records(),
        allow_non_restored_state: allow,
        drop_state: drop.iter().map(ToString::to_string).collect(),
    };
    fit(&mut r, &wanted).map(|_| r)
}

fn kept(r: &Restored, id: &str) -> bool {
    !r.keyed_for(id, &(0..128)).is_empty()
}

fn refusal(before: &str, after: &str) -> String {
    match restore(before, after, false, &[]) {
        Ok(_) => panic!("restored:\n{after}"),
        Err(e) => e.to_string(),
    }
}

const SOURCE: &str = "name: t
checkpoint: {interval: 1s, storage: file:///chk}
source:
  kafka: {bootstrapServers: 'k:9092', topic: orders}
  schema:
    - {name: store_id, type: string}
    - {name: user_id, type: string}
    - {name: amount, type: int64}
    - {name: ts, type: timestamp}
  eventTime: {field: ts}
sinks: [{stdout: {}}]
transforms:
";

fn job(transforms: &str) -> String {
    format!("{SOURCE}{transforms}")
}

const WINDOW: &str = "  - window: {tumbling: 1m, keyBy: [store_id], aggregates: {n: count(*), total: sum(amount)}}\n";

#[test]
fn a_stateless_transform_added_or_removed_keeps_state() {
    let before = job(WINDOW);
    let after = job(&format!(
        "  - filter: amount > 0\n{WINDOW}  - select: {{store_id: store_id, n: n}}\n"
    ));
    let r = restore(&before, &after, false, &[]).expect("restores");
    assert!(kept(&r, "window-0"));
    assert_eq!(r.all_splits(0)[0].offset, 100);
}

#[test]
fn output_names_and_a_dedup_ttl_are_not_state() {
    let dedup = |ttl: &str| format!("  - dedup: {{keyBy: [user_id], ttl: {ttl}}}\n");
    let before = job(&format!("{}{WINDOW}", dedup("1h")));
    let renamed = WINDOW.replace("n: count(*), total:", "orders: count(*), sales:");
    let after = job(&format!("{}{renamed}", dedup("2h")));
    let r = restore(&before, &after, false, &[]).expect("restores");
    assert!(kept(&r, "dedup-0") && kept(&r, "window-1"));
}

#[test]
fn reordered_aggregates_are_refused_naming_the_operator_and_the_change() {
    let after = job(&WINDOW.replace(
        "n: count(*), total: sum(amount)",
        "total: sum(amount), n: count(*)",
    ));
    let e = refusal(&job(WINDOW), &after);
    for want in [
        "restore of window-0 from file:///chk/seven",
        "operator `window-0` (transforms[0].window) changed",
        "aggregates was `count(*), sum(amount)`, is `sum(amount), count(*)`",
        "dropState",
    ] {
        assert!(e.contains(want), "{want:?} missing: {e}");
    }
}

#[test]
fn another_window_size_or_key_is_refused_unless_dropped() {
    let bigger = job(&WINDOW.replace("tumbling: 1m", "tumbling: 5m"));
    let e = refusal(&job(WINDOW), &bigger);
    assert!(
        e.contains("window was `tumbling 60000ms`, is `tumbling 300000ms`"),
        "{e}"
    );
    let rekeyed = job(&WINDOW.replace("keyBy: [store_id]", "keyBy: [user_id]"));
    let e = refusal(&job(WINDOW), &rekeyed);
    assert!(
        e.contains("keys was `store_id string`, is `user_id string`"),
        "{e}"
    );
    // Named in dropState: restored without it; the source keeps its position.
    let r = restore(&job(WINDOW), &bigger, false, &["window-0"]).expect("restores");
    assert!(!kept(&r, "window-0"));
    assert_eq!(r.all_splits(0)[0].offset, 100);
    // allowNonRestoredState does not drop a changed operator: only what the user named.
    assert!(restore(&job(WINDOW), &bigger, true, &[]).is_err());
    // A name in dropState whose state fits drops nothing.
    let r = restore(&job(WINDOW), &job(WINDOW), false, &["window-0"]).expect("restores");
    assert!(kept(&r, "window-0"));
}

#[test]
fn a_stateful_transform_inserted_before_another_needs_ids() {
    let dedup = "  - dedup: {keyBy: [user_id], ttl: 1h}\n";
    // Without ids the window's default id moves from window-0 to window-1.
    let e = refusal(&job(WINDOW), &job(&format!("{dedup}{WINDOW}")));
    assert!(e.contains("operator `window-0`"), "{e}");
    assert!(e.contains("allowNonRestoredState"), "{e}");
    // Pinned to the id it had (as `explain` shows it), it keeps its state.
    let pinned = WINDOW.replace("{tumbling", "{id: window-0, tumbling");
    let r = restore(&job(WINDOW), &job(&format!("{dedup}{pinned}")), false, &[]).expect("restores");
    assert!(kept(&r, "window-0"));
}

#[test]
fn a_removed_operator_needs_allow_non_restored_state_or_its_name() {
    let before = job(&format!(
        "{WINDOW}  - dedup: {{keyBy: [store_id], ttl: 1h}}\n"
    ));
    let e = refusal(&before, &job(WINDOW));
    assert!(e.contains("operator `dedup-1`"), "{e}");
    let r = restore(&before, &job(WINDOW), true, &[]).expect("restores");
    assert!(kept(&r, "window-0") && !kept(&r, "dedup-1"));
    let r = restore(&before, &job(WINDOW), false, &["dedup-1"]).expect("restores");
    assert!(!kept(&r, "dedup-1"));
}

#[test]
fn another_topic_is_refused_unless_the_source_is_named() {
    let moved = job(WINDOW).replace("topic: orders", "topic: orders-v2");
    let e = refusal(&job(WINDOW), &moved);
    assert!(
        e.contains("source `source` read kafka topic orders when the checkpoint was taken and reads kafka topic orders-v2 now"),
        "{e}"
    );
    let r = restore(&job(WINDOW), &moved, false, &["source"]).expect("restores");
    assert!(
        r.all_splits(0).is_empty(),
        "positions of the old topic kept"
    );
    assert!(kept(&r, "window-0"));
    // Another broker with the same topic (a migration) keeps positions.
    let r = restore(
        &job(WINDOW),
        &job(WINDOW).replace("k:9092", "k2:9092"),
        false,
        &[],
    )
    .expect("restores");
    assert_eq!(r.all_splits(0)[0].offset, 100);
}

const SQL: &str = "name: t
checkpoint: {interval: 1s, storage: file:///chk}
source:
  name: orders
  file: {path: orders.jsonl}
  schema:
    - {name: store_id, type: string}
    - {name: amount, type: int64}
    - {name: ts, type: timestamp}
  eventTime: {field: ts}
";

const CLICKS: &str = "sources:
  - name: clicks
    file: {path: clicks.jsonl}
    schema:
      - {name: store_id, type: string}
      - {name: ts, type: timestamp}
    eventTime: {field: ts}
";

const TOTALS: &str = "  INSERT INTO totals SELECT store_id, count(*) AS n, window_start, window_end
    FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY store_id, window_start, window_end;
";

fn sql(sources: &str, sinks: &[&str], statements: &str) -> String {
    let sinks: String = sinks
        .iter()
        .map(|s| format!("  - file: {{name: {s}, path: {s}}}\n"))
        .collect();
    format!("{SQL}{sources}sinks:\n{sinks}sql: |\n{statements}")
}

#[test]
fn sql_state_is_named_by_statement_so_other_statements_and_sources_can_come_and_go() {
    let before = sql("", &["totals"], TOTALS);
    let p = planned(&before);
    let ids: Vec<String> = p.operator_records().into_iter().map(|o| o.id).collect();
    assert_eq!(ids, ["totals/window-0"]);
    // A new source listed before... (sources follow the first) and a statement over it
    // written first: the window keeps its id and state, orders its position.
    let clicks = "  INSERT INTO per_store SELECT store_id, count(*) AS n, window_start, window_end
    FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY store_id, window_start, window_end;
";
    let after = sql(
        CLICKS,
        &["per_store", "totals"],
        &format!("{clicks}{TOTALS}"),
    );
    let r = restore(&before, &after, false, &[]).expect("restores");
    assert!(kept(&r, "totals/window-0"));
    assert_eq!(r.all_splits(0)[0].offset, 100);
    assert!(
        r.all_splits(1).is_empty(),
        "clicks starts from its beginning"
    );
    // The other way round: clicks dropped, its positions refused until allowed.
    let e = refusal(&after, &before);
    assert!(e.contains("source `clicks` (file clicks.jsonl)"), "{e}");
    assert!(e.contains("operator `per_store/window-0`"), "{e}");
    let r = restore(&after, &before, true, &[]).expect("restores");
    assert_eq!(r.all_splits(0)[0].offset, 100);
    assert!(kept(&r, "totals/window-0"));
}

#[test]
fn sources_follow_their_names_when_reordered() {
    let first = "  INSERT INTO a SELECT store_id FROM orders;\n  INSERT INTO b SELECT store_id FROM clicks;\n";
    let before = sql(CLICKS, &["a", "b"], first);
    // The same two sources, clicks now first.
    let swapped = format!(
        "name: t
checkpoint: {{interval: 1s, storage: file:///chk}}
source:
  name: clicks
  file: {{path: clicks.jsonl}}
  schema:
    - {{name: store_id, type: string}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts}}
sources:
  - name: orders
    file: {{path: orders.jsonl}}
    schema:
      - {{name: store_id, type: string}}
      - {{name: amount, type: int64}}
      - {{name: ts, type: timestamp}}
    eventTime: {{field: ts}}
sinks:
  - file: {{name: a, path: a}}
  - file: {{name: b, path: b}}
sql: |
{first}"
    );
    let r = restore(&before, &swapped, false, &[]).expect("restores");
    assert_eq!(r.all_splits(0)[0].offset, 101, "clicks was stage 1");
    assert_eq!(r.all_splits(1)[0].offset, 100, "orders was stage 0");
}

#[test]
fn a_checkpoint_without_records_restores_by_id_and_place_as_before() {
    let mut r = checkpoint_of(&planned(&job(WINDOW)));
    r.metadata.operators.clear();
    r.metadata.sources.clear();
    let p = planned(&job(&WINDOW.replace("tumbling: 1m", "tumbling: 5m")));
    let wanted = Wanted {
        operators: p.operator_records(),
        sources: p.source_records(),
        ..Wanted::default()
    };
    fit(&mut r, &wanted).expect("nothing to compare with");
    assert!(kept(&r, "window-0"));
    assert_eq!(r.all_splits(0)[0].offset, 100);
}

#[test]
fn another_max_parallelism_is_refused() {
    let p = planned(&job(WINDOW));
    let mut r = checkpoint_of(&p);
    let wanted = Wanted::default();
    let input = crate::checkpoint::startup::StartupInput {
        storage_uri: "file:///chk",
        s3: &weir_crds::S3Spec::default(),
        exactly_once: true,
        max_parallelism: 64,
        wanted: &wanted,
        skip_unreadable_checkpoints: false,
        restore_from: None,
        start: None,
    };
    let e = crate::checkpoint::startup::check_fits(&mut r, &input)
        .expect_err("64 key groups cannot take 128")
        .to_string();
    assert!(e.contains("maxParallelism 128, the job has 64"), "{e}");
}

/// A SQL join keeps of each input only the columns its statement reads, so a statement that
/// reads another column of it keeps other rows than its checkpoint holds: refused, naming the
/// join, unless dropped. Reading a column the join already keeps (its condition's) changes
/// nothing.
#[test]
fn a_join_whose_statement_reads_other_columns_is_refused_unless_dropped() {
    let join = |select: &str| {
        sql(
            "",
            &["pairs"],
            &format!(
                "  INSERT INTO pairs SELECT {select} FROM orders a JOIN orders b
    ON a.store_id = b.store_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' MINUTE;\n"
            ),
        )
    };
    let before = join("a.store_id, b.amount");
    let e = refusal(&before, &join("a.store_id, a.amount AS paid, b.amount"));
    assert!(e.contains("operator `pairs/join-0`"), "{e}");
    assert!(e.contains("amount"), "{e}");
    let r = restore(
        &before,
        &join("a.store_id, a.amount AS paid, b.amount"),
        false,
        &["pairs/join-0"],
    )
    .expect("dropped");
    assert!(!kept(&r, "pairs/join-0"));
    let r = restore(
        &before,
        &join("a.store_id, b.store_id AS other, b.amount"),
        false,
        &[],
    )
    .expect("store_id was kept already");
    assert!(kept(&r, "pairs/join-0"));
}
