use weir_crds::{Transform, load_job};

use super::{Operation, Plan, Target, plan};

const HEAD: &str = "name: t
source:
  name: orders
  file: {path: in.jsonl}
  schema:
    - {name: order_id, type: int64}
    - {name: store_id, type: string}
    - {name: amount, type: int64}
    - {name: ts, type: timestamp}
  eventTime: {field: ts, maxOutOfOrderness: 1s}
";

fn planned(rest: &str) -> Plan {
    let src = format!("{HEAD}{rest}");
    let job = load_job("t.yaml", &src).expect("valid job");
    plan(&job, "t", "t.yaml", &src).expect("plans")
}

/// (operator kind, parents) per stage, and (after, target) per outlet.
type Shape = Vec<(
    Vec<(&'static str, Vec<Option<usize>>)>,
    Vec<(Option<usize>, Target)>,
)>;

fn shape(p: &Plan) -> Shape {
    p.stages
        .iter()
        .map(|s| {
            let ops = s
                .ops
                .iter()
                .map(|c| {
                    let kind = match &c.op.operation {
                        Operation::Transform(Transform::Filter(_)) => "filter",
                        Operation::Transform(Transform::Select(_)) => "select",
                        Operation::Transform(Transform::Window(_)) => "window",
                        Operation::Transform(Transform::Dedup(_)) => "dedup",
                        Operation::Union => "union",
                        Operation::Join(_) => "join",
                        Operation::TopN(_) => "top-n",
                        Operation::GroupBy(..) => "group-by",
                    };
                    (kind, c.parents.clone())
                })
                .collect();
            let outlets = s.outlets.iter().map(|o| (o.after, o.to.clone())).collect();
            (ops, outlets)
        })
        .collect()
}

#[test]
fn a_line_of_transforms_is_a_chain_per_stage_cut_at_each_shuffle() {
    let p = planned(
        "transforms:
  - filter: amount > 0
  - window: {tumbling: 1m, keyBy: [store_id], aggregates: {n: count(*)}}
  - select: {store_id: store_id, n: n}
sinks:
  - file: {path: a}
  - stdout: {}
",
    );
    assert_eq!(
        shape(&p),
        [
            // The window reads store_id and ts: only those are shuffled.
            (
                vec![("filter", vec![None]), ("select", vec![Some(0)])],
                vec![(Some(1), Target::Edge(0))]
            ),
            (
                vec![("window", vec![None]), ("select", vec![Some(0)])],
                vec![(Some(1), Target::Sinks(vec![0, 1]))]
            ),
        ]
    );
    assert_eq!((p.edges[0].from, p.edges[0].to, p.edges[0].port), (0, 1, 0));
    assert_eq!(
        p.edges[0].schema.field(p.edges[0].keys[0]).name(),
        "store_id"
    );
    let ids: Vec<&str> = p.operators().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["t0-filter", "t1-prune", "window-0", "t2-select"]);
    let shuffled: Vec<&str> = p.edges[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(shuffled, ["store_id", "ts"]);
    assert_eq!(p.sink_schema(1).expect("fed").fields().len(), 2);
}

#[test]
fn sql_statements_share_their_common_start_and_fork_into_stages_and_sinks() {
    let p = planned(
        "sinks:
  - file: {name: big, path: a}
  - file: {name: counts, path: b}
sql: |
  INSERT INTO big SELECT order_id FROM orders WHERE amount > 100;
  INSERT INTO counts
    SELECT store_id, window_start, window_end, count(*) AS n
    FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    WHERE amount > 100
    GROUP BY store_id, window_start, window_end;
",
    );
    // One filter, feeding both the select of the first statement and (through the window's
    // column pruning) the shuffle into the second's window.
    assert_eq!(
        shape(&p),
        [
            (
                vec![
                    ("filter", vec![None]),
                    ("select", vec![Some(0)]),
                    ("select", vec![Some(0)])
                ],
                vec![
                    (Some(2), Target::Edge(0)),
                    (Some(1), Target::Sinks(vec![0]))
                ]
            ),
            (
                vec![("window", vec![None]), ("select", vec![Some(0)])],
                vec![(Some(1), Target::Sinks(vec![1]))]
            ),
        ]
    );
    let big = p.sink_schema(0).expect("fed");
    assert_eq!(big.fields().len(), 1);
    assert_eq!(p.sink_schema(1).expect("fed").fields().len(), 4);
}

#[test]
fn a_union_within_a_stage_is_chained_and_across_stages_is_fed_by_forward_edges() {
    let p = planned(
        "sinks:
  - file: {name: ids, path: a}
  - file: {name: counts, path: b}
sql: |
  INSERT INTO ids SELECT order_id FROM orders WHERE amount > 100
    UNION ALL SELECT order_id FROM orders WHERE amount < 5;
  INSERT INTO counts
    SELECT store_id, window_start, window_end, count(*) AS n
    FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY store_id, window_start, window_end
    UNION ALL
    SELECT store_id, window_start, window_end, count(*) AS n
    FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' HOUR))
    GROUP BY store_id, window_start, window_end;
",
    );
    assert_eq!(
        shape(&p),
        [
            (
                vec![
                    ("filter", vec![None]),
                    ("select", vec![Some(0)]),
                    ("filter", vec![None]),
                    ("select", vec![Some(2)]),
                    ("union", vec![Some(1), Some(3)]),
                    ("select", vec![None]),
                    ("select", vec![None]),
                ],
                vec![
                    (Some(5), Target::Edge(0)),
                    (Some(6), Target::Edge(1)),
                    (Some(4), Target::Sinks(vec![0])),
                ]
            ),
            (
                vec![("window", vec![None]), ("select", vec![Some(0)])],
                vec![(Some(1), Target::Edge(2))]
            ),
            (
                vec![("window", vec![None]), ("select", vec![Some(0)])],
                vec![(Some(1), Target::Edge(3))]
            ),
            (
                vec![("union", vec![None])],
                vec![(Some(0), Target::Sinks(vec![1]))]
            ),
        ]
    );
    let forward: Vec<(usize, usize, usize, bool)> = p
        .edges
        .iter()
        .map(|e| (e.from, e.to, e.port, e.forward))
        .collect();
    assert_eq!(
        forward,
        [
            (0, 1, 0, false),
            (0, 2, 0, false),
            (1, 3, 0, true),
            (2, 3, 1, true)
        ]
    );
    assert_eq!(p.stages[3].inputs, [2, 3]);
    // Event time survives the union: both inputs carry it (window_end) in one column.
    let union = &p.stages[3].ops[0].op;
    assert_eq!(union.output.fields().len(), 4);
}

#[test]
fn a_union_of_different_column_types_is_refused_naming_the_column() {
    let src = format!(
        "{HEAD}sinks:
  - file: {{name: a, path: a}}
sql: |
  INSERT INTO a SELECT order_id AS x FROM orders UNION ALL SELECT store_id AS x FROM orders;
"
    );
    let job = load_job("t.yaml", &src).expect("valid job");
    let text = plan(&job, "t", "t.yaml", &src)
        .expect_err("int64 and string")
        .to_string();
    assert!(text.contains("column 1 (`x`)"), "{text}");
}

#[test]
fn a_window_whose_late_records_go_to_a_side_output_shuffles_every_column() {
    let p = planned(
        "transforms:
  - window:
      tumbling: 1m
      keyBy: [store_id]
      aggregates: {n: count(*)}
      lateRecords: {sideOutput: {file: {path: late}}}
sinks:
  - file: {path: a}
",
    );
    assert!(p.stages[0].ops.is_empty(), "{:?}", shape(&p));
    assert_eq!(p.edges[0].schema.fields().len(), 4);
}

fn plan_errors(rest: &str) -> Vec<weir_crds::FieldError> {
    let src = format!("{HEAD}{rest}");
    let job = load_job("t.yaml", &src).expect("valid job");
    plan(&job, "t", "t.yaml", &src).expect_err("refused").errors
}

const JOIN_SINKS: &str = "sinks:\n  - file: {name: out, path: out}\nsql: |\n";

#[test]
fn a_join_is_a_stage_fed_by_a_shuffle_of_each_input_by_its_keys() {
    let p = planned(&format!(
        "{JOIN_SINKS}  INSERT INTO out SELECT a.order_id, b.amount AS later
    FROM orders a JOIN orders b
    ON a.store_id = b.store_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' MINUTE
    WHERE a.amount > 10 AND a.amount < b.amount;\n"
    ));
    let s = shape(&p);
    // The source stage filters the left input before it is shuffled (the one-input part
    // of the WHERE), narrows the right one to what the statement reads of it (not its
    // order_id), and shuffles both.
    assert_eq!(s[0].0, [("filter", vec![None]), ("select", vec![None])]);
    let columns = |e: usize| -> Vec<String> {
        p.edges[e]
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    assert_eq!(columns(0), ["order_id", "store_id", "amount", "ts"]);
    assert_eq!(columns(1), ["store_id", "amount", "ts"]);
    assert_eq!(s[1].0, [("join", vec![None]), ("select", vec![Some(0)])]);
    assert_eq!(p.stages[1].inputs, [0, 1]);
    for (e, port) in p.edges.iter().zip([0, 1]) {
        assert_eq!((e.to, e.port, e.forward), (1, port, false));
        let keys: Vec<&str> = e
            .keys
            .iter()
            .map(|&k| e.schema.field(k).name().as_str())
            .collect();
        assert_eq!(keys, ["store_id"]);
    }
    let Operation::Join(j) = &p.stages[1].ops[0].op.operation else {
        panic!("not a join")
    };
    assert_eq!(j.on, [("store_id".to_string(), "store_id".to_string())]);
    // b.ts BETWEEN a.ts AND a.ts + 1 min: a.ts - b.ts in [-60 s, 0]; a.amount < b.amount
    // compares columns too (not event time: checked pair by pair).
    let bounds: Vec<_> = j
        .compares
        .iter()
        .map(|c| (c.left.as_str(), c.lo, c.hi))
        .collect();
    for b in [
        ("ts", Some(-60_000), None),
        ("ts", None, Some(0)),
        ("amount", None, Some(-1)),
    ] {
        assert!(bounds.contains(&b), "{b:?} in {bounds:?}");
    }
    assert_eq!(j.filter, None);
    // Interval joins keep the left input's event time; the join holds its watermark back.
    let op = &p.stages[1].ops[0].op;
    assert_eq!(op.output.field(3).name(), "ts");
    assert_eq!(
        op.instantiate(128).expect("a join").watermark_delay(),
        60_000
    );
}

/// A join keeps of each input only what the statement reads of it above the join, its
/// condition's columns and its timestamps; under a node whose reads are not worked out (a
/// `ROW_NUMBER()` top-N) it keeps every column.
#[test]
fn a_join_keeps_only_the_columns_read_above_it() {
    let into_join = |sql: &str| {
        let p = planned(&format!("{JOIN_SINKS}  INSERT INTO out {sql};\n"));
        let join = p
            .stages
            .iter()
            .position(|s| {
                s.ops
                    .first()
                    .is_some_and(|o| matches!(o.op.operation, Operation::Join(_)))
            })
            .expect("a join stage");
        p.edges
            .iter()
            .filter(|e| e.to == join)
            .map(|e| {
                e.schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let on = "ON a.store_id = b.store_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' MINUTE";
    assert_eq!(
        into_join(&format!(
            "SELECT a.store_id, max(b.amount) AS top FROM orders a JOIN orders b {on} GROUP BY a.store_id"
        )),
        [vec!["store_id", "ts"], vec!["store_id", "amount", "ts"]]
    );
    let all = vec!["order_id", "store_id", "amount", "ts"];
    assert_eq!(
        into_join(&format!(
            "SELECT order_id, amount FROM (SELECT a.order_id, b.amount, ROW_NUMBER() OVER (PARTITION BY a.order_id ORDER BY b.amount DESC) AS rn FROM orders a JOIN orders b {on}) WHERE rn <= 1"
        )),
        [all.clone(), all]
    );
}

/// `b.ts BETWEEN a.ts AND a.until`: bounded one way by event time, the other by a column of
/// the left rows, so left rows go as the watermark passes their `until` and right rows as it
/// passes their time. Without `until`'s bound, or in an outer join, a regular join as before.
#[test]
fn a_join_bounded_by_a_column_of_its_rows_drops_them_as_the_watermark_passes_it() {
    let join = |kind: &str, cond: &str| {
        let p = planned(&format!(
            "{JOIN_SINKS}  INSERT INTO out SELECT a.order_id, b.amount
    FROM (SELECT *, ts + INTERVAL '1' HOUR AS until FROM orders) a {kind} orders b
    ON a.store_id = b.store_id AND {cond};\n"
        ));
        let op = p.stages[1].ops[0].op.clone();
        (
            super::join::retention(&op),
            op.instantiate(128).expect("a join"),
        )
    };
    let (words, op) = join("JOIN", "b.ts BETWEEN a.ts AND a.until");
    assert!(
        words.contains("a left row until the watermark passes its `until` (the latest `ts`")
            && words.contains("a right row until the watermark passes its event time;"),
        "{words}"
    );
    // A pair may come any time before `until`: no event time to hold the watermark for.
    assert_eq!(op.watermark_delay(), 0);
    let (words, _) = join(
        "JOIN",
        "b.ts >= a.ts AND b.ts <= a.until + INTERVAL '5' SECOND",
    );
    assert!(words.contains("its `until` + 5000 ms"), "{words}");
    for (kind, cond) in [
        ("JOIN", "b.ts >= a.ts"),
        ("JOIN", "b.ts <= a.until"),
        ("LEFT JOIN", "b.ts BETWEEN a.ts AND a.until"),
    ] {
        let (words, _) = join(kind, cond);
        assert!(words.contains("regular join"), "{kind} {cond}: {words}");
    }
}

#[test]
fn joins_that_cannot_run_on_a_stream_are_refused_saying_why() {
    for (sql, words) in [
        (
            "SELECT a.order_id FROM orders a JOIN orders b ON a.ts = b.ts + INTERVAL '1' SECOND",
            "needs an equality",
        ),
        (
            "SELECT a.order_id FROM orders a JOIN orders b ON a.order_id = b.store_id",
            "different types",
        ),
        (
            "SELECT a.order_id FROM orders a JOIN orders b ON a.order_id = b.order_id AND a.ts BETWEEN b.ts + INTERVAL '1' SECOND AND b.ts",
            "nothing satisfies",
        ),
    ] {
        let errs = plan_errors(&format!("{JOIN_SINKS}  INSERT INTO out {sql};\n"));
        assert_eq!(errs.len(), 1, "{sql}: {errs:?}");
        assert!(errs[0].message.contains(words), "{sql}: {errs:?}");
        assert_eq!((errs[0].path.as_str(), errs[0].within), ("sql", Some(1)));
    }
    // A regular outer join plans as a changelog that may delete (its padded rows).
    let p = planned(&format!(
        "{JOIN_SINKS}  INSERT INTO out SELECT a.order_id FROM orders a LEFT JOIN orders b ON a.store_id = b.store_id;\n"
    ));
    assert!(crate::changelog::may_delete(
        &p.sink_schema(0).expect("a sink schema")
    ));
    // A regular inner join plans: both inputs kept (for ever without a TTL).
    let p = planned(&format!(
        "{JOIN_SINKS}  INSERT INTO out SELECT a.order_id, b.amount FROM orders a, orders b WHERE a.order_id = b.order_id;\n"
    ));
    assert_eq!(p.stages.len(), 2);
    // With stateTtl its rows expire.
    let p = planned(&format!(
        "stateTtl: 10m\n{JOIN_SINKS}  INSERT INTO out SELECT a.order_id, b.amount FROM orders a JOIN orders b USING (order_id);\n"
    ));
    let Operation::Join(j) = &p.stages[1].ops[0].op.operation else {
        panic!("not a join")
    };
    assert_eq!(j.ttl, Some(600_000));
    assert!(super::join::retention(&p.stages[1].ops[0].op).contains("600000 ms"));
}

#[test]
fn a_row_number_top_n_over_a_window_is_a_keyed_stage_and_over_all_time_updates() {
    let p = planned(&format!(
        "{JOIN_SINKS}  INSERT INTO out SELECT store_id, n, rownum FROM (
    SELECT store_id, n, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY n DESC) AS rownum
    FROM (SELECT store_id, count(*) AS n, window_start, window_end
      FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
      GROUP BY store_id, window_start, window_end)) WHERE rownum <= 3;\n"
    ));
    let s = shape(&p);
    assert_eq!(s[2].0[0].0, "top-n");
    let Operation::TopN(t) = &p.stages[2].ops[0].op.operation else {
        panic!("not a top-n")
    };
    assert_eq!(t.n, 3);
    assert_eq!(t.partition, ["window_start", "window_end"]);
    // Descending; nulls order as the largest values (the planner's setting), so first.
    assert_eq!(t.order, [("n".to_string(), true, true)]);
    let keys: Vec<&str> = p.edges[1]
        .keys
        .iter()
        .map(|&k| p.edges[1].schema.field(k).name().as_str())
        .collect();
    assert_eq!(keys, ["window_start", "window_end"]);
    // The sink gets the rank under the name the query gave it.
    let out = p.sink_schema(0).expect("a sink schema");
    assert_eq!(out.field(2).name(), "rownum");

    // Partitioned without event time, the top changes for ever: a changelog.
    let p = planned(&format!(
        "{JOIN_SINKS}  INSERT INTO out SELECT order_id FROM (SELECT order_id, ROW_NUMBER() OVER (PARTITION BY store_id ORDER BY amount) AS r FROM orders) WHERE r = 1;\n"
    ));
    let out = p.sink_schema(0).expect("a sink schema");
    assert!(crate::changelog::is_changelog(&out), "{out:?}");
    assert_eq!(out.fields().len(), 2);
}

#[test]
fn a_group_by_on_event_time_is_final_at_its_time_and_any_other_updates() {
    // The windows' results carry event time in window_end: grouping by it again (Nexmark q5's
    // maximum per window) is a one-millisecond window per group, and keeps event time.
    let p = planned(&format!(
        "{JOIN_SINKS}  INSERT INTO out SELECT window_end, max(n) AS top FROM (
    SELECT store_id, count(*) AS n, window_start, window_end
    FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY store_id, window_start, window_end) GROUP BY window_end;\n"
    ));
    let op = &p.stages[2].ops[0].op;
    let Operation::GroupBy(w, _) = &op.operation else {
        panic!("not a group by time")
    };
    assert_eq!(w.key_by, ["window_end"]);
    // Named by its statement (the sink it writes) and its place among the statement's
    // stateful steps: the window, then this.
    assert_eq!(op.id, "out/group-by-1");
    assert!(op.groups_at_time());
    // A GROUP BY without event time among its keys updates for ever: a keyed stage whose
    // result is a changelog, the change kind carried through the select after it to the
    // file sink.
    for sql in [
        "SELECT store_id, count(*) AS n FROM orders GROUP BY store_id",
        "SELECT n, count(*) AS c FROM (SELECT store_id, count(*) AS n, window_start, window_end FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY store_id, window_start, window_end) GROUP BY n",
        "SELECT upper(store_id) AS c, count(*) FILTER (WHERE amount > 10) AS big FROM orders GROUP BY upper(store_id)",
    ] {
        let p = planned(&format!("{JOIN_SINKS}  INSERT INTO out {sql};\n"));
        let op = &p.stages.last().expect("stages").ops[0].op;
        assert!(!op.groups_at_time(), "{sql}");
        assert!(op.id.starts_with("out/group-by-"), "{sql}: {}", op.id);
        let out = p.sink_schema(0).expect("a sink schema");
        assert!(crate::changelog::is_changelog(&out), "{sql}: {out:?}");
        assert_eq!(out.fields().len(), 3, "{sql}: {out:?}");
    }
    // stateTtl reaches the updating GROUP BY and top-N (event time to count it by).
    let ttl = |sql: &str| {
        let p = planned(&format!(
            "stateTtl: 1m\n{JOIN_SINKS}  INSERT INTO out {sql};\n"
        ));
        let op = p.stages.last().expect("stages").ops[0].op.clone();
        (op.operation, op.time_col)
    };
    let (op, time) = ttl("SELECT store_id, count(*) AS n FROM orders GROUP BY store_id");
    assert!(matches!(op, Operation::GroupBy(_, Some(60_000))), "{op:?}");
    assert_eq!(time, Some(3));
    let (op, _) = ttl(
        "SELECT order_id FROM (SELECT order_id, ROW_NUMBER() OVER (PARTITION BY store_id ORDER BY amount) AS r FROM orders) WHERE r = 1",
    );
    assert!(
        matches!(op, Operation::TopN(ref t) if t.ttl == Some(60_000)),
        "{op:?}"
    );
    // SELECT DISTINCT only inserts, so an append-only sink takes it.
    let p = planned(
        "sinks:\n  - kafka: {name: out, topic: t, bootstrapServers: 'localhost:9092', transactionalIdPrefix: t}\nsql: |\n  INSERT INTO out SELECT DISTINCT store_id, order_id FROM orders;\n",
    );
    let out = p.sink_schema(0).expect("a sink schema");
    assert!(!crate::changelog::is_changelog(&out), "{out:?}");
    assert_eq!(out.fields().len(), 2);
}

#[test]
fn a_changelog_is_refused_by_what_cannot_take_it_naming_the_sink_or_the_operator() {
    let updating = "SELECT store_id, count(*) AS n FROM orders GROUP BY store_id";
    let kafka = |extra: &str| {
        format!(
            "sinks:\n  - kafka: {{name: out, topic: t, bootstrapServers: 'localhost:9092', transactionalIdPrefix: t{extra}}}\nsql: |\n  INSERT INTO out {updating};\n"
        )
    };
    let errs = plan_errors(&kafka(""));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].message.contains("sink `out` (kafka) has no keyBy"),
        "{errs:?}"
    );
    assert_eq!((errs[0].path.as_str(), errs[0].within), ("sql", Some(1)));
    planned(&kafka(", keyBy: [store_id]"));
    // A regular join and UNION ALL read it: a join retracts the pairs of a row taken back
    // (its result may delete); a union passes each input's changes on.
    for (sql, deletes) in [
        (
            format!(
                "SELECT u.store_id, o.order_id FROM ({updating}) u JOIN orders o ON u.store_id = o.store_id"
            ),
            true,
        ),
        (
            format!(
                "SELECT store_id, n FROM ({updating}) UNION ALL SELECT store_id, 1 AS n FROM orders"
            ),
            false,
        ),
    ] {
        let p = planned(&format!("{JOIN_SINKS}  INSERT INTO out {sql};\n"));
        let out = p.sink_schema(0).expect("a sink schema");
        assert_eq!(out.fields().len(), 3, "{sql}: {out:?}");
        assert!(crate::changelog::is_changelog(&out), "{sql}: {out:?}");
        assert_eq!(
            crate::changelog::may_delete(&out),
            deletes,
            "{sql}: {out:?}"
        );
    }
    // A top-N over it keeps every row, so its ranks may empty: it may delete.
    let top = format!(
        "SELECT store_id, n FROM (SELECT store_id, n, ROW_NUMBER() OVER (PARTITION BY store_id ORDER BY n DESC) AS r FROM ({updating})) WHERE r <= 3"
    );
    let p = planned(&format!("{JOIN_SINKS}  INSERT INTO out {top};\n"));
    assert!(crate::changelog::may_delete(
        &p.sink_schema(0).expect("a sink schema")
    ));
    // ClickHouse takes it as upserts when it has a version column, and only then.
    let ch = |extra: &str| {
        format!(
            "sinks:\n  - clickhouse: {{name: out, url: 'http://ch:8123', table: t{extra}}}\nsql: |\n  INSERT INTO out {updating};\n"
        )
    };
    let errs = plan_errors(&ch(""));
    assert!(errs[0].message.contains("versionColumn"), "{errs:?}");
    let p = planned(&ch(", versionColumn: v"));
    assert!(crate::changelog::is_changelog(
        &p.sink_schema(0).expect("a sink schema")
    ));
    // A GROUP BY over it takes rows back; a group can lose every row, so its result may
    // delete, which a ClickHouse sink cannot write.
    let regroup = format!("SELECT n, count(*) AS c FROM ({updating}) GROUP BY n");
    let p = planned(&format!("{JOIN_SINKS}  INSERT INTO out {regroup};\n"));
    assert!(crate::changelog::may_delete(
        &p.sink_schema(0).expect("a sink schema")
    ));
    let errs = plan_errors(&format!(
        "sinks:\n  - clickhouse: {{name: out, url: 'http://ch:8123', table: t, versionColumn: v}}\nsql: |\n  INSERT INTO out {regroup};\n"
    ));
    assert!(errs[0].message.contains("cannot delete"), "{errs:?}");
    // Filters and selects read it row by row.
    let p = planned(&format!(
        "{JOIN_SINKS}  INSERT INTO out SELECT store_id FROM ({updating}) WHERE n > 2;\n"
    ));
    let out = p.sink_schema(0).expect("a sink schema");
    assert_eq!(out.field(1).name(), crate::changelog::CHANGE);
}
