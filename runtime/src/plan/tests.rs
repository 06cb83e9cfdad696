use weir_crds::{Transform, load_job};

use super::{Plan, Target, plan};

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

/// (operator kind, parent) per stage, and (after, target) per outlet.
type Shape = Vec<(
    Vec<(&'static str, Option<usize>)>,
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
                    let kind = match c.op.transform {
                        Transform::Filter(_) => "filter",
                        Transform::Select(_) => "select",
                        Transform::Window(_) => "window",
                        Transform::Dedup(_) => "dedup",
                    };
                    (kind, c.parent)
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
            (vec![("filter", None)], vec![(Some(0), Target::Edge(0))]),
            (
                vec![("window", None), ("select", Some(0))],
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
    assert_eq!(ids, ["t0-filter", "window-0", "t2-select"]);
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
    // One filter, feeding both the select of the first statement and the shuffle into the
    // second's window.
    assert_eq!(
        shape(&p),
        [
            (
                vec![("filter", None), ("select", Some(0))],
                vec![
                    (Some(0), Target::Edge(0)),
                    (Some(1), Target::Sinks(vec![0]))
                ]
            ),
            (
                vec![("window", None), ("select", Some(0))],
                vec![(Some(1), Target::Sinks(vec![1]))]
            ),
        ]
    );
    let big = p.sink_schema(0).expect("fed");
    assert_eq!(big.fields().len(), 1);
    assert_eq!(p.sink_schema(1).expect("fed").fields().len(), 4);
}
