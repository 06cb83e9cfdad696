//! The dataflow cut into stages: a keyed transform (window, dedup) starts a stage fed by a
//! key-group shuffle of what it reads; every other transform is chained into the stage of
//! what it reads, after it. A union of results computed in one stage is chained there too;
//! of results of different stages, it starts a stage fed by a forward edge from each (subtask
//! `i` to subtask `i`: nothing to redistribute). Sinks are outlets of the stage that
//! computes what they receive.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::{FieldError, JobFile, SinkSpec, Transform};

use super::check::{self, Incoming};
use super::flow::{Flow, Upstream};
use super::{ChainOp, EdgePlan, OpPlan, Operation, OutletPlan, Plan, StagePlan, Target, at_origin};

/// Plan `flow` over a source with `source`'s schema.
///
/// # Errors
/// Every problem found, at its transform's field or statement.
pub(super) fn cut(
    job: &JobFile,
    name: &str,
    source: SchemaRef,
    flow: &Flow,
) -> Result<Plan, Vec<FieldError>> {
    let mut errs: Vec<FieldError> = Vec::new();
    let source_time_col = job
        .pipeline
        .source
        .event_time
        .as_ref()
        .and_then(|et| source.index_of(&et.field).ok());
    let from_source = Incoming {
        schema: Arc::clone(&source),
        time_col: source_time_col,
        time_lost_at: None,
    };
    let mut stages = vec![StagePlan {
        inputs: Vec::new(),
        input: Arc::clone(&source),
        ops: Vec::new(),
        outlets: Vec::new(),
    }];
    let mut edges: Vec<EdgePlan> = Vec::new();
    // Per node: its stage, its index in the stage's ops, and what it gives.
    let mut placed: Vec<(usize, usize, Incoming)> = Vec::new();
    let mut stateful = 0usize;
    for (i, n) in flow.nodes.iter().enumerate() {
        // Each input: its stage, the operator it leaves (`None`: the stage's input), and
        // what it gives.
        let ins: Vec<(usize, Option<usize>, Incoming)> = n
            .inputs
            .iter()
            .map(|u| match u {
                Upstream::Source => (0, None, from_source.clone()),
                Upstream::Node(k) => {
                    let (s, o, inc) = &placed[*k];
                    (*s, Some(*o), inc.clone())
                }
            })
            .collect();
        // Every node reads something (the flow is built so); the source is the fallback.
        let (up_stage, up_after, incoming) = ins
            .first()
            .cloned()
            .unwrap_or_else(|| (0, None, from_source.clone()));
        let mut found = Vec::new();
        let (checked, id) = match &n.operation {
            Operation::Transform(t) => {
                let checked = check::node(i, t, &incoming, source_time_col.is_some(), &mut found);
                let id = match t {
                    Transform::Window(_) | Transform::Dedup(_) => {
                        let kind = if matches!(t, Transform::Window(_)) {
                            "window"
                        } else {
                            "dedup"
                        };
                        stateful += 1;
                        format!("{kind}-{}", stateful - 1)
                    }
                    Transform::Filter(_) => format!("t{i}-filter"),
                    Transform::Select(_) => format!("t{i}-select"),
                };
                (checked, id)
            }
            Operation::Union => {
                let given: Vec<Incoming> = ins.iter().map(|x| x.2.clone()).collect();
                (check::union(i, &given, &mut found), format!("t{i}-union"))
            }
        };
        errs.extend(at_origin(n.origin, found));
        let op = OpPlan {
            id,
            path: checked.path,
            operation: n.operation.clone(),
            input: Arc::clone(&incoming.schema),
            output: Arc::clone(&checked.out.schema),
            time_col: incoming.time_col,
            side_sink: checked.side_sink,
        };
        let input_schema = Arc::clone(&incoming.schema);
        match checked.keys {
            Some(keys) => {
                let (stage, edge) = (stages.len(), edges.len());
                edges.push(EdgePlan {
                    from: up_stage,
                    to: stage,
                    port: 0,
                    keys,
                    forward: false,
                    schema: Arc::clone(&input_schema),
                });
                stages[up_stage].outlets.push(OutletPlan {
                    after: up_after,
                    to: Target::Edge(edge),
                    schema: Arc::clone(&input_schema),
                });
                stages.push(StagePlan {
                    inputs: vec![edge],
                    input: input_schema,
                    ops: vec![ChainOp {
                        op,
                        parents: vec![None],
                    }],
                    outlets: Vec::new(),
                });
                placed.push((stage, 0, checked.out));
            }
            None if ins.iter().all(|x| x.0 == up_stage) => {
                let ops = &mut stages[up_stage].ops;
                ops.push(ChainOp {
                    op,
                    parents: ins.iter().map(|x| x.1).collect(),
                });
                placed.push((up_stage, ops.len() - 1, checked.out));
            }
            None => {
                let stage = stages.len();
                let mut inputs = Vec::new();
                for (port, (from, after, inc)) in ins.iter().enumerate() {
                    let edge = edges.len();
                    edges.push(EdgePlan {
                        from: *from,
                        to: stage,
                        port,
                        keys: Vec::new(),
                        forward: true,
                        schema: Arc::clone(&inc.schema),
                    });
                    stages[*from].outlets.push(OutletPlan {
                        after: *after,
                        to: Target::Edge(edge),
                        schema: Arc::clone(&inc.schema),
                    });
                    inputs.push(edge);
                }
                stages.push(StagePlan {
                    inputs,
                    input: input_schema,
                    ops: vec![ChainOp {
                        op,
                        parents: vec![None],
                    }],
                    outlets: Vec::new(),
                });
                placed.push((stage, 0, checked.out));
            }
        }
    }
    // Sinks reading the same result share an outlet.
    let mut feeds: Vec<(Upstream, Vec<usize>)> = Vec::new();
    for (i, up) in flow.sinks.iter().enumerate() {
        match feeds.iter_mut().find(|(u, _)| u == up) {
            Some((_, list)) => list.push(i),
            None => feeds.push((*up, vec![i])),
        }
    }
    for (up, list) in feeds {
        let (stage, after, schema) = match up {
            Upstream::Source => (0, None, Arc::clone(&source)),
            Upstream::Node(k) => {
                let (s, o, inc) = &placed[k];
                (*s, Some(*o), Arc::clone(&inc.schema))
            }
        };
        stages[stage].outlets.push(OutletPlan {
            after,
            to: Target::Sinks(list),
            schema,
        });
    }
    let sinks: Vec<(String, SinkSpec)> = job
        .pipeline
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("sink-{i}"), s.clone()))
        .collect();
    for (i, s) in job.pipeline.sinks.iter().enumerate() {
        if let SinkSpec::File(f) = s
            && f.path.trim().is_empty()
        {
            errs.push(FieldError::new(
                format!("sinks[{i}].file.path"),
                "must not be empty",
            ));
        }
    }
    let decode_side = match &job.pipeline.source.on_decode_error {
        weir_crds::DecodeErrorPolicy::SideOutput(s) => {
            Some(("decode-errors".to_string(), (**s).clone()))
        }
        _ => None,
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Plan {
        name: name.to_string(),
        job: job.clone(),
        source_schema: source,
        source_time_col,
        stages,
        edges,
        sinks,
        decode_side,
    })
}
