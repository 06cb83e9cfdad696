//! `weir-runtime explain`: the dataflow a job file plans to, as a person reads it: stages
//! with their parallelism, what is chained in each (a tree where results fork), where records
//! are shuffled and by which keys, which operators keep state (and under which id checkpoints
//! store it), the schema leaving each branch, and the sinks.

use std::fmt::Write;

use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::{SinkSpec, Transform};

use crate::connectors;
use crate::plan::{OpPlan, Operation, Plan, StagePlan, Target};
use crate::sink::SinkEnv;

/// The plan as text. `parallelism` is the one the job runs at (the file's unless overridden).
#[must_use]
pub fn explain(plan: &Plan, parallelism: u32) -> String {
    let mut s = String::new();
    let job = &plan.job;
    let form = if job.pipeline.sql.is_some() {
        "sql"
    } else {
        "transforms"
    };
    let _ = writeln!(
        s,
        "job {} ({form}): parallelism {parallelism}, {} key groups",
        plan.name, job.max_parallelism
    );
    for sp in &plan.sources {
        let connector = sp
            .spec
            .connector()
            .map_or("?", weir_crds::SourceConnector::name);
        let time = sp
            .time_col
            .map(|c| format!(", event time `{}`", sp.schema.field(c).name()))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "source {} ({connector}){time}: {}",
            sp.spec.name.as_deref().unwrap_or("(unnamed)"),
            columns(&sp.schema)
        );
    }
    for (i, stage) in plan.stages.iter().enumerate() {
        let from: Vec<String> = stage
            .inputs
            .iter()
            .filter_map(|e| plan.edges.get(*e))
            .map(|e| format!("stage {}", e.from))
            .collect();
        let from = if from.is_empty() {
            String::new()
        } else {
            format!(", from {}", from.join(" and "))
        };
        let _ = writeln!(s, "stage {i} (x{parallelism}){from}:");
        if let Some(sp) = plan.sources.get(i) {
            let _ = writeln!(
                s,
                "  source {}",
                sp.spec.name.as_deref().unwrap_or("(unnamed)")
            );
        }
        branch(&mut s, plan, stage, None, 1);
    }
    let _ = writeln!(s, "sinks:");
    for (id, spec) in &plan.sinks {
        let env = SinkEnv {
            sink: id.clone(),
            job_name: plan.name.clone(),
            parallelism,
            exactly_once: job.checkpoint.exactly_once,
        };
        // The guarantee is the connector's own answer, as `GET /v1/job` reports it.
        let guarantee = serde_json::to_value(connectors::sink(spec, &env).guarantee())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {} ({id}, {}{}, {guarantee})",
            spec.name().unwrap_or("(unnamed)"),
            spec.kind(),
            sink_target(spec)
        );
    }
    s
}

/// The operators and outlets after `parent` in `stage`, indented `depth` levels.
fn branch(s: &mut String, plan: &Plan, stage: &StagePlan, parent: Option<usize>, depth: usize) {
    let pad = "  ".repeat(depth);
    for (i, c) in stage.ops.iter().enumerate() {
        // A union is shown under its first input; its other inputs point to it.
        if c.parents.first() == Some(&parent) {
            let _ = writeln!(s, "{pad}{}", operator(&c.op));
            branch(s, plan, stage, Some(i), depth + 1);
        } else if c.parents.contains(&parent) {
            let _ = writeln!(s, "{pad}─► {} (above)", c.op.id);
        }
    }
    for o in stage.outlets.iter().filter(|o| o.after == parent) {
        let to = match &o.to {
            Target::Edge(e) => plan.edges.get(*e).map_or_else(String::new, |edge| {
                if edge.forward {
                    return format!("forward into stage {} (input {})", edge.to, edge.port + 1);
                }
                let names: Vec<&str> = edge
                    .keys
                    .iter()
                    .map(|k| edge.schema.field(*k).name().as_str())
                    .collect();
                let by = if names.is_empty() {
                    "one key group (no keys)".to_string()
                } else {
                    format!("key groups of [{}]", names.join(", "))
                };
                format!("shuffle by {by} into stage {}", edge.to)
            }),
            Target::Sinks(list) => {
                let names: Vec<String> = list
                    .iter()
                    .filter_map(|i| plan.sinks.get(*i))
                    .map(|(id, spec)| spec.name().unwrap_or(id).to_string())
                    .collect();
                format!("to {}", names.join(", "))
            }
        };
        let _ = writeln!(s, "{pad}─► {to}: {}", columns(&o.schema));
    }
}

/// One operator as `explain` prints it (the console shows the same words).
pub(crate) fn operator(op: &OpPlan) -> String {
    let t = match &op.operation {
        Operation::Union => return format!("union all ({})", op.id),
        Operation::Join(j) => return join(op, j),
        Operation::GroupBy(w, ttl) => {
            let aggs: Vec<String> = w
                .aggregates
                .iter()
                .map(|(n, e)| format!("{n} = {e}"))
                .collect();
            let how = if op.groups_at_time() {
                "at their event time (a 1 ms window)"
            } else if crate::changelog::may_delete(&op.output) {
                "over a changelog, retracted rows taken back: each group's new row (+I, -U/+U), -D when its last row leaves"
            } else if crate::changelog::is_changelog(&op.output) {
                "updating: a changelog of each group's new row (+I, -U/+U)"
            } else {
                "distinct: each group once, when first seen"
            };
            let kept = match (op.groups_at_time(), ttl, op.time_col) {
                (true, _, _) => "per key group".to_string(),
                (false, Some(ms), Some(_)) => format!(
                    "per key group, a group kept until {ms} ms of event time pass without a row (stateTtl)"
                ),
                (false, Some(_), None) => "per key group, every group kept for ever (stateTtl counts event time, which this input does not carry)".to_string(),
                (false, None, _) => "per key group, every group kept for ever (no stateTtl)".to_string(),
            };
            return format!(
                "group by [{}] {how}: {}   [state `{}`, {kept}]",
                w.key_by.join(", "),
                aggs.join(", "),
                op.id
            );
        }
        Operation::TopN(t) => {
            let order: Vec<String> = t
                .order
                .iter()
                .map(|(c, desc, _)| format!("{c}{}", if *desc { " desc" } else { "" }))
                .collect();
            let (how, kept) = if crate::changelog::is_changelog(&op.output) {
                (
                    "updating: a changelog of the ranks that change (-U/+U per rank, +I for a new one)",
                    match (t.ttl, op.time_col) {
                        (Some(ms), Some(_)) => format!(
                            "per partition, a partition kept until {ms} ms of event time pass without a row (stateTtl)"
                        ),
                        (Some(_), None) => "per partition, every partition kept for ever (stateTtl counts event time, which this input does not carry)".to_string(),
                        (None, _) => "per partition, every partition kept for ever (no stateTtl)".to_string(),
                    },
                )
            } else {
                (
                    "at the partition's event time",
                    "per open partition".to_string(),
                )
            };
            return format!(
                "top {} per [{}] by {} as {}, {how}   [state `{}`, per key group: {} rows {kept}]",
                t.n,
                t.partition.join(", "),
                order.join(", "),
                t.rownum,
                op.id,
                t.n
            );
        }
        Operation::Transform(t) => t,
    };
    match t {
        Transform::Filter(sql) => format!("filter {sql}"),
        Transform::Select(cols) => {
            let parts: Vec<String> = cols
                .iter()
                .map(|(n, e)| {
                    if n == e {
                        n.clone()
                    } else {
                        format!("{n} = {e}")
                    }
                })
                .collect();
            format!("select {}", parts.join(", "))
        }
        Transform::Window(w) => {
            let kind = if let Some(t) = w.tumbling {
                format!("tumbling {t}")
            } else if let Some(sl) = &w.sliding {
                format!("sliding {} every {}", sl.size, sl.slide)
            } else if let Some(se) = &w.session {
                format!("session gap {}", se.gap)
            } else {
                "window".into()
            };
            let aggs: Vec<String> = w
                .aggregates
                .iter()
                .map(|(n, a)| format!("{n} = {a}"))
                .collect();
            format!(
                "window {kind} by [{}]: {}  [state `{}`, per key group]",
                w.key_by.join(", "),
                aggs.join(", "),
                op.id
            )
        }
        Transform::Dedup(d) => format!(
            "dedup by [{}] for {}  [state `{}`, per key group]",
            d.key_by.join(", "),
            d.ttl,
            op.id
        ),
    }
}

fn columns(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a sink writes, when it writes somewhere named.
pub(crate) fn sink_target(s: &SinkSpec) -> String {
    match s {
        SinkSpec::Stdout { .. } | SinkSpec::Blackhole { .. } => String::new(),
        SinkSpec::File(f) => format!(" {}", f.path),
        SinkSpec::Kafka(k) => format!(" topic {}", k.topic),
        SinkSpec::ClickHouse(c) => format!(" table {}", c.table),
        SinkSpec::Postgres(p) => format!(" table {}.{}", p.schema, p.table),
        SinkSpec::Mysql(m) => format!(" table {}", m.table),
    }
}

fn join(op: &OpPlan, j: &crate::plan::join::JoinSpec) -> String {
    let kind = match j.kind {
        crate::operator::join::JoinKind::Inner => "join",
        crate::operator::join::JoinKind::Left => "left join",
        crate::operator::join::JoinKind::Right => "right join",
        crate::operator::join::JoinKind::Full => "full join",
    };
    let on: Vec<String> = j.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
    let mut s = format!("{kind} on {}", on.join(" and "));
    for c in &j.compares {
        s.push_str(&format!(" and {}", c.sql));
    }
    if let Some(f) = &j.filter {
        s.push_str(&format!(" and {f}"));
    }
    if crate::changelog::is_changelog(&op.output) {
        s.push_str(
            ", a changelog: a row without a partner emitted padded at once (+I), retracted (-D) when one arrives",
        );
    }
    format!(
        "{s}   [state `{}`, per key group: both inputs' rows; {}]",
        op.id,
        crate::plan::join::retention(op)
    )
}
