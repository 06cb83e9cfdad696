use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::{FieldError, JobFile, Transform, load_job};

use crate::plan::flow::Step;
use crate::schema::source_schema;

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
sinks:
  - file: {name: out, path: out}
";

fn job(sql: &str) -> (JobFile, SchemaRef) {
    job_with(HEAD, sql)
}

/// [`HEAD`] with a second file sink, `out2`.
fn two_sinks_head() -> String {
    HEAD.replace("sinks:\n", "sinks:\n  - file: {name: out2, path: out2}\n")
}

/// The job file `head` (everything before its `sql:`) with `sql` as its script, and its
/// source's schema: tests that change the sinks or the schema start from another head.
fn job_with(head: &str, sql: &str) -> (JobFile, SchemaRef) {
    let indented: String = sql.lines().map(|l| format!("  {l}\n")).collect();
    let src = format!("{head}sql: |\n{indented}");
    let job = load_job("t.yaml", &src).expect("valid job");
    let schema = source_schema(&job.pipeline.source.schema);
    (job, schema)
}

/// `sql` lowered as the script of the job file `head`.
fn lower_with(head: &str, sql: &str) -> Result<super::Lowered, Vec<FieldError>> {
    let (job, schema) = job_with(head, sql);
    super::lower_script(&job, std::slice::from_ref(&schema))
}

/// The source's schema, as every query here reads it.
fn orders_schema() -> SchemaRef {
    job("INSERT INTO out SELECT * FROM orders").1
}

fn lower(sql: &str) -> Result<Vec<Transform>, Vec<FieldError>> {
    lower_with(HEAD, sql).map(first)
}

/// The first statement's transforms (it has no union).
fn first(l: super::Lowered) -> Vec<Transform> {
    l.branches
        .into_iter()
        .next()
        .map(|b| transforms(b.steps))
        .unwrap_or_default()
}

fn transforms(steps: Vec<Step>) -> Vec<Transform> {
    steps
        .into_iter()
        .map(|s| match s {
            Step::Transform(t) => t,
            Step::Union(_) => panic!("a union"),
            Step::Join(..) => panic!("a join"),
            Step::TopN(..) => panic!("a top-n"),
            Step::GroupBy(..) => panic!("a group by time"),
            Step::Read(_) => panic!("another source"),
        })
        .collect()
}

fn yaml_transforms(yaml: &str) -> Vec<Transform> {
    let src = HEAD.replace("sinks:", &format!("transforms:\n{yaml}sinks:"));
    load_job("t.yaml", &src)
        .expect("valid yaml")
        .pipeline
        .transforms
}

#[test]
fn a_tumbling_window_lowers_to_the_yaml_forms_filter_window_and_naming() {
    let got = lower(
        "INSERT INTO out
SELECT store_id, window_start, window_end, count(*) AS orders, sum(amount) AS sales
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE amount > 0
GROUP BY store_id, window_start, window_end",
    )
    .expect("lowers");
    let want = yaml_transforms(
        "  - filter: amount > 0
  - window:
      tumbling: 1m
      keyBy: [store_id]
      aggregates: {__agg_0: count(*), __agg_1: sum(amount)}
  - select: {store_id: store_id, window_start: window_start, window_end: window_end, orders: __agg_0, sales: __agg_1}
",
    );
    assert_eq!(got, want);
}

#[test]
fn hop_session_distinct_having_and_expressions_lower() {
    let got = lower(
        "INSERT INTO out
SELECT window_start, count(DISTINCT store_id) AS stores, avg(amount * 2) AS a
FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE)) w
GROUP BY window_start, window_end
HAVING count(*) > 3",
    )
    .expect("lowers");
    let Transform::Window(w) = &got[0] else {
        panic!("{got:?}")
    };
    let s = w.sliding.as_ref().expect("sliding");
    assert_eq!((s.slide.get().as_secs(), s.size.get().as_secs()), (10, 60));
    assert!(w.key_by.is_empty());
    let aggs: Vec<&str> = w.aggregates.values().map(String::as_str).collect();
    assert_eq!(
        aggs,
        ["count_distinct(store_id)", "avg(amount * 2)", "count(*)"]
    );
    assert_eq!(got[1], Transform::Filter("__agg_2 > 3".into()), "{got:?}");
    let got = lower(
        "INSERT INTO out SELECT store_id, window_end, max(amount) AS m
FROM TABLE(SESSION(TABLE orders PARTITION BY store_id, DESCRIPTOR(ts), INTERVAL '30' SECOND))
GROUP BY store_id, window_start, window_end",
    )
    .expect("lowers");
    let Transform::Window(w) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(w.session.as_ref().map(|s| s.gap.get().as_secs()), Some(30));
    assert_eq!(w.key_by, ["store_id"]);
}

#[test]
fn a_stateless_query_lowers_to_filter_and_select() {
    let got = lower(
        "INSERT INTO out SELECT order_id, upper(store_id) AS store, CASE WHEN amount > 100 THEN 'big' ELSE 'small' END AS size FROM orders WHERE amount <> 0",
    )
    .expect("lowers");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], Transform::Filter("amount <> 0".into()));
    let Transform::Select(s) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(s.keys().collect::<Vec<_>>(), ["order_id", "store", "size"]);
    // SELECT * over the source is no transform at all.
    assert_eq!(
        lower("INSERT INTO out SELECT * FROM orders").expect("lowers"),
        []
    );
}

fn error_of(sql: &str) -> FieldError {
    let errs = lower(sql).expect_err("refused");
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().expect("one")
}

#[test]
fn an_unknown_column_names_the_column_statement_line_and_column() {
    let e = error_of("INSERT INTO out\nSELECT order_id\nFROM orders\nWHERE amout > 0");
    assert_eq!(e.path, "sql");
    assert!(
        e.message.starts_with("statement 1 (line 4, column 7)"),
        "{e:?}"
    );
    assert!(e.message.contains("amout"), "{e:?}");
    assert!(
        !e.message.contains("backtrace") && !e.message.contains("Schema error"),
        "{e:?}"
    );
    assert_eq!(e.within, Some(4));
}

#[test]
fn what_has_no_streaming_operator_yet_is_refused_by_name() {
    for (sql, words) in [
        (
            "INSERT INTO out SELECT a.order_id FROM orders a WHERE a.order_id IN (SELECT order_id FROM orders)",
            "inner or outer join",
        ),
        (
            "INSERT INTO out SELECT * FROM orders ORDER BY ts",
            "ORDER BY",
        ),
        (
            "INSERT INTO out SELECT DISTINCT ON (store_id) store_id, amount FROM orders ORDER BY store_id, ts",
            "ROW_NUMBER",
        ),
        (
            "INSERT INTO out SELECT * FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
            "GROUP BY window_start",
        ),
        (
            "INSERT INTO out SELECT store_id, window_start, count(*) FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY store_id, window_start",
            "both window_start and window_end",
        ),
        (
            "INSERT INTO out SELECT window_start, window_end, median(amount) FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
            "median",
        ),
    ] {
        let e = error_of(sql);
        assert!(e.message.contains(words), "{sql}: {e:?}");
        assert!(e.message.starts_with("statement 1 (line 1"), "{e:?}");
    }
}

#[test]
fn each_statement_is_a_branch_of_its_own_result() {
    let q = "SELECT * FROM orders WHERE amount > 0";
    let head = two_sinks_head();
    let two_sinks = |sql: &str| lower_with(&head, sql);
    let ok = two_sinks(&format!("INSERT INTO out {q};\nINSERT INTO out2 {q};"))
        .expect("same query twice");
    let got: Vec<(Vec<Transform>, Vec<String>, usize)> = ok
        .branches
        .into_iter()
        .map(|b| (transforms(b.steps), b.sinks, b.line))
        .collect();
    let filter = vec![Transform::Filter("amount > 0".into())];
    assert_eq!(
        got,
        [
            (filter.clone(), vec!["out".to_string()], 1),
            (filter, vec!["out2".to_string()], 2)
        ]
    );
    let two = two_sinks(&format!(
        "INSERT INTO out {q};\nINSERT INTO out2 {q} AND amount < 9;"
    ))
    .expect("two queries");
    assert_ne!(two.branches[0].steps, two.branches[1].steps);
}

#[test]
fn a_view_is_inlined_where_it_is_read() {
    let direct = lower(
        "INSERT INTO out
SELECT store_id, window_start, window_end, count(*) AS orders
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE amount > 0
GROUP BY store_id, window_start, window_end",
    )
    .expect("lowers");
    let via_view = lower(
        "CREATE TEMPORARY VIEW sales AS
SELECT store_id, window_start, window_end, count(*) AS orders
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE amount > 0
GROUP BY store_id, window_start, window_end;
INSERT INTO out SELECT * FROM sales",
    )
    .expect("lowers");
    assert_eq!(direct, via_view);
    // A view over a view, filtered after the window.
    let got = lower(
        "CREATE VIEW big AS SELECT * FROM orders WHERE amount > 100;
CREATE VIEW small_ids AS SELECT order_id FROM big WHERE order_id < 10;
INSERT INTO out SELECT order_id * 2 AS twice FROM small_ids",
    )
    .expect("lowers");
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], Transform::Filter("amount > 100".into()));
    assert_eq!(got[1], Transform::Filter("order_id < 10".into()), "{got:?}");
    // Errors in a view are reported at the view.
    let e = error_of("CREATE VIEW v AS SELECT nope FROM orders;\nINSERT INTO out SELECT * FROM v");
    assert!(e.message.starts_with("statement 1 (line 1"), "{e:?}");
}

#[test]
fn an_output_column_without_a_name_is_refused_naming_it() {
    let e = error_of(
        "INSERT INTO out SELECT window_start, window_end, count(*) FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
    );
    assert!(
        e.message
            .contains("output column 3 (`count(*)`) has no name"),
        "{e:?}"
    );
    let e = error_of("INSERT INTO out SELECT amount * 2 FROM orders");
    assert!(e.message.contains("AS <name>"), "{e:?}");
}

#[test]
fn identical_windowed_statements_for_two_sinks_are_one_result() {
    let q = "SELECT store_id, window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY store_id, window_start, window_end";
    let lowered = lower_with(
        &two_sinks_head(),
        &format!("INSERT INTO out {q};\nINSERT INTO out2 {q};"),
    )
    .expect("one result for two sinks");
    assert_eq!(lowered.branches.len(), 2);
    assert_eq!(lowered.branches[0].steps, lowered.branches[1].steps);
    assert_eq!(lowered.branches[0].steps.len(), 2, "{lowered:?}");
}

#[test]
fn the_longest_or_chain_the_script_bound_allows_lowers_compiles_and_runs_on_a_small_stack() {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
    use datafusion::arrow::compute::cast;
    // `order_id = i` 127 times: 253 operators, the deepest chain within the script's bound.
    let terms = weir_crds::sql::MAX_DEPTH / 2 - 1;
    let ors: Vec<String> = (0..terms).map(|i| format!("order_id = {i}")).collect();
    let sql = format!(
        "INSERT INTO out SELECT * FROM orders WHERE {}",
        ors.join(" OR ")
    );
    // A tokio worker's stack: a walk that recursed per operator would abort the binary here.
    let passed = weir_testkit::on_a_task_stack(move || {
        let got = lower(&sql).expect("lowers");
        let [Transform::Filter(f)] = got.as_slice() else {
            panic!("{got:?}")
        };
        let schema = orders_schema();
        let e = crate::expr::CompiledExpr::compile(f, &schema)
            .expect("compiles within the expression limits");
        // order_id 0..400; every other column zero, cast to its type.
        let cols: Vec<Arc<dyn Array>> = schema
            .fields()
            .iter()
            .map(|field| {
                let ids = Int64Array::from_iter_values(
                    (0..400).map(|i| if field.name() == "order_id" { i } else { 0 }),
                );
                cast(&ids, field.data_type()).expect("cast")
            })
            .collect();
        let batch = RecordBatch::try_new(schema, cols).expect("batch");
        let mask = e.eval(&batch).expect("evaluates");
        let mask = mask.as_boolean();
        (0..mask.len()).filter(|&i| mask.value(i)).count()
    });
    assert_eq!(passed, terms, "rows 0..{terms} pass the filter, no other");
}

#[test]
fn columns_keep_their_case_and_tables_do_not() {
    let head = HEAD.replace("store_id", "storeId");
    let lower_camel = |sql: &str| lower_with(&head, sql).map(first);
    let got = lower_camel(
        "CREATE VIEW \"Big\" AS SELECT * FROM Orders WHERE amount > 1;\nINSERT INTO \"OUT\" SELECT storeId FROM big",
    )
    .expect("quoted and unquoted table names are one name");
    assert_eq!(got.len(), 2, "{got:?}");
    let got = lower_camel(
        "INSERT INTO out SELECT storeId, window_start, window_end, count(*) AS n FROM TABLE(SESSION(TABLE orders PARTITION BY storeId, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY storeId, window_start, window_end",
    )
    .expect("a camel-case partition column is the GROUP BY key");
    let Transform::Window(w) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(w.key_by, ["storeId"]);
}

#[test]
fn a_select_in_another_order_than_the_window_emits_is_a_projection() {
    let got = lower(
        "INSERT INTO out SELECT window_start, window_end, store_id FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, store_id",
    )
    .expect("lowers");
    let Some(Transform::Select(s)) = got.get(1) else {
        panic!("the window emits store_id first; the user's order needs a select: {got:?}")
    };
    assert_eq!(
        s.keys().collect::<Vec<_>>(),
        ["window_start", "window_end", "store_id"]
    );
    let got = lower(
        "INSERT INTO out SELECT store_id, window_start, window_end FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, store_id",
    )
    .expect("lowers");
    assert_eq!(
        got.len(),
        1,
        "the window's own order needs no select: {got:?}"
    );
}

#[test]
fn a_session_over_keys_needs_its_partition() {
    let e = error_of(
        "INSERT INTO out SELECT store_id, window_start, window_end, count(*) AS n FROM TABLE(SESSION(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY store_id, window_start, window_end",
    );
    assert!(e.message.contains("PARTITION BY store_id"), "{e:?}");
}

#[test]
fn a_cast_to_varchar_is_the_string_type_sinks_read() {
    let got =
        lower("INSERT INTO out SELECT CAST(amount AS VARCHAR) AS s FROM orders").expect("lowers");
    let [Transform::Select(s)] = got.as_slice() else {
        panic!("{got:?}")
    };
    let schema = orders_schema();
    let e = crate::expr::CompiledExpr::compile(&s["s"], &schema).expect("compiles");
    assert_eq!(e.data_type, datafusion::arrow::datatypes::DataType::Utf8);
}

#[test]
fn union_all_lowers_each_input_from_the_source() {
    let (job, schema) = job(
        "INSERT INTO out SELECT order_id, amount FROM orders WHERE amount > 10
UNION ALL SELECT order_id, amount * 2 AS twice FROM orders",
    );
    let lowered = super::lower_script(&job, std::slice::from_ref(&schema)).expect("lowers");
    let [Step::Union(chains)] = lowered.branches[0].steps.as_slice() else {
        panic!("{lowered:?}")
    };
    assert_eq!(chains.len(), 2);
    assert_eq!(
        chains[0][0],
        Step::Transform(Transform::Filter("amount > 10".into()))
    );
    // A window call feeding the union directly has no GROUP BY.
    let e = error_of(
        "INSERT INTO out SELECT order_id FROM orders UNION ALL SELECT order_id FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
    );
    assert!(e.message.contains("GROUP BY window_start"), "{e:?}");
}

#[test]
fn a_window_over_a_view_windows_what_the_view_computes() {
    let direct = lower(
        "INSERT INTO out SELECT store_id, window_start, window_end, count(*) AS n
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE amount > 0
GROUP BY store_id, window_start, window_end",
    )
    .expect("lowers");
    let via_view = lower(
        "CREATE VIEW paid AS SELECT * FROM orders WHERE amount > 0;
INSERT INTO out SELECT store_id, window_start, window_end, count(*) AS n
FROM TABLE(TUMBLE(TABLE paid, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY store_id, window_start, window_end",
    )
    .expect("lowers");
    assert_eq!(direct, via_view);
    // A view that renames: the window groups by the view's column.
    let renamed = lower(
        "CREATE VIEW shops AS SELECT store_id AS shop, amount, ts FROM orders;
INSERT INTO out SELECT shop, window_start, window_end, sum(amount) AS total
FROM TABLE(TUMBLE(TABLE shops, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY shop, window_start, window_end",
    )
    .expect("lowers");
    let Some(Transform::Window(w)) = renamed.get(1) else {
        panic!("{renamed:?}")
    };
    assert_eq!(w.key_by, ["shop"]);
}

/// A chain of `n` views, each filtering the one before, and a statement reading the last.
fn view_chain(n: usize) -> String {
    let mut sql = String::from("CREATE VIEW v0 AS SELECT * FROM orders WHERE amount > 0;\n");
    for i in 1..n {
        sql.push_str(&format!(
            "CREATE VIEW v{i} AS SELECT order_id, store_id, amount + 1 AS amount, ts FROM v{} WHERE amount > {i};\n",
            i - 1
        ));
    }
    sql.push_str(&format!("INSERT INTO out SELECT * FROM v{}", n - 1));
    sql
}

#[test]
fn views_that_double_with_every_level_are_refused_by_their_size_at_once() {
    let mut sql = String::from("CREATE VIEW v0 AS SELECT * FROM orders WHERE amount > 0;\n");
    for i in 1..40 {
        sql.push_str(&format!(
            "CREATE VIEW v{i} AS SELECT * FROM v{0} UNION ALL SELECT * FROM v{0};\n",
            i - 1
        ));
    }
    sql.push_str("INSERT INTO out SELECT * FROM v39");
    // Inlined, the last statement would be 2^40 scans: refused at the first view over the
    // bound, and the statements reading it not lowered at all.
    let errs = lower_with(HEAD, &sql).expect_err("refused");
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    let nodes = super::lower::MAX_NODES;
    assert!(
        e.message.contains(&format!("more than {nodes} plan nodes")),
        "{e:?}"
    );
    // v11 reads 2^11 scans of the source, each under a filter and a projection, with the
    // unions and projections between: over 10 000.
    assert!(e.message.starts_with("statement 12 (line 12,"), "{e:?}");
}

#[test]
fn a_chain_of_views_deeper_than_lowering_allows_is_refused_on_a_small_stack() {
    let sql = view_chain(2_000);
    // A tokio worker's stack: lowering that recursed without a bound would abort here.
    let errs = weir_testkit::on_a_task_stack(move || lower_with(HEAD, &sql).expect_err("refused"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    let nesting = super::lower::MAX_NESTING;
    assert!(
        errs[0]
            .message
            .contains(&format!("nested more than {nesting} plan nodes deep")),
        "{errs:?}"
    );
}

#[test]
fn the_longest_chain_of_views_lowering_allows_lowers_on_a_small_stack() {
    // Each view adds a scan, a filter and a projection: the longest chain within the bound.
    let n = super::lower::MAX_NESTING / 3 - 1;
    let sql = view_chain(n);
    let steps =
        weir_testkit::on_a_task_stack(move || lower_with(HEAD, &sql).map(first).expect("lowers"));
    // A filter and a select per view, the first view's `SELECT *` a filter alone.
    assert_eq!(steps.len(), 2 * n - 1, "{:?}", &steps[..4]);
    assert!(
        lower_with(HEAD, &view_chain(n + 2)).is_err(),
        "two views more are over the bound: the chain tested is the longest"
    );
}

/// A statement at the script's token bound (a `UNION ALL` of as many queries as it allows)
/// is within the lowering bound too: no statement refused there is accepted by the parser.
#[test]
fn the_longest_union_the_token_bound_allows_is_within_the_lowering_bound() {
    let queries = weir_crds::sql::MAX_DEPTH - 1;
    let sql = format!(
        "INSERT INTO out {}",
        vec!["SELECT * FROM orders WHERE amount > 0"; queries].join(" UNION ALL ")
    );
    let lowered = weir_testkit::on_a_task_stack(move || lower_with(HEAD, &sql).expect("lowers"));
    // Unions within unions, a filter at every leaf.
    fn filters(steps: &[Step]) -> usize {
        steps
            .iter()
            .map(|s| match s {
                Step::Union(inputs) => inputs.iter().map(|i| filters(i)).sum(),
                Step::Transform(Transform::Filter(_)) => 1,
                _ => 0,
            })
            .sum()
    }
    assert_eq!(filters(&lowered.branches[0].steps), queries);
}
