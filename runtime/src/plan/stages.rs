//! The dataflow cut into stages: a keyed transform (window, dedup) starts a stage fed by a
//! key-group shuffle of what it reads; every other transform is chained into the stage of
//! what it reads, after it. A union of results computed in one stage is chained there too;
//! of results of different stages, it starts a stage fed by a forward edge from each (subtask
//! `i` to subtask `i`: nothing to redistribute). Sinks are outlets of the stage that
//! computes what they receive.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::{FieldError, JobFile, SinkSpec, Transform};

use super::changes;
use super::check::{self, Incoming};
use super::flow::{Flow, Upstream};
use super::{
    ChainOp, EdgePlan, OpPlan, Operation, OutletPlan, Plan, SourcePlan, StagePlan, Target,
    at_origin,
};

/// Plan `flow` over a source with `source`'s schema.
///
/// # Errors
/// Every problem found, at its transform's field or statement.
pub(super) fn cut(
    job: &JobFile,
    name: &str,
    schemas: &[SchemaRef],
    flow: &Flow,
) -> Result<Plan, Vec<FieldError>> {
    let mut errs: Vec<FieldError> = Vec::new();
    // Each source, and a stage reading it (stage `i` reads source `i`).
    let sources: Vec<SourcePlan> = std::iter::once(&job.pipeline.source)
        .chain(&job.pipeline.sources)
        .zip(schemas)
        .map(|(spec, schema)| SourcePlan {
            spec: spec.clone(),
            schema: Arc::clone(schema),
            time_col: spec
                .event_time
                .as_ref()
                .and_then(|et| schema.index_of(&et.field).ok()),
        })
        .collect();
    let source = Arc::clone(&sources[0].schema);
    let source_time_col = sources[0].time_col;
    let from_source = |i: usize| Incoming {
        schema: Arc::clone(&sources[i].schema),
        time_col: sources[i].time_col,
        time_lost_at: None,
    };
    let mut stages: Vec<StagePlan> = sources
        .iter()
        .map(|s| StagePlan {
            inputs: Vec::new(),
            input: Arc::clone(&s.schema),
            ops: Vec::new(),
            outlets: Vec::new(),
        })
        .collect();
    let mut edges: Vec<EdgePlan> = Vec::new();
    // Per node: its stage, its index in the stage's ops, and what it gives.
    let mut placed: Vec<(usize, usize, Incoming)> = Vec::new();
    for (i, n) in flow.nodes.iter().enumerate() {
        // Each input: its stage, the operator it leaves (`None`: the stage's input), and
        // what it gives.
        let ins: Vec<(usize, Option<usize>, Incoming)> = n
            .inputs
            .iter()
            .map(|u| match u {
                Upstream::Source(s) => (*s, None, from_source(*s)),
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
            .unwrap_or_else(|| (0, None, from_source(0)));
        // A changelog passes through filters and selects (which carry its change kind);
        // nothing else reads one yet.
        let operation = match changes::through(i, &n.operation, &ins) {
            Ok(op) => op,
            Err(e) => {
                errs.extend(at_origin(n.origin, vec![e]));
                placed.push((up_stage, up_after.unwrap_or(0), incoming));
                continue;
            }
        };
        // A window shuffles only the columns it reads.
        let (up_after, incoming) = match &operation {
            Operation::Transform(Transform::Window(w)) if ins.len() == 1 => {
                match prune(i, w, &incoming, source_time_col.is_some()) {
                    Some((op, out)) => {
                        let ops = &mut stages[up_stage].ops;
                        ops.push(ChainOp {
                            op,
                            parents: vec![up_after],
                        });
                        (Some(ops.len() - 1), out)
                    }
                    None => (up_after, incoming),
                }
            }
            _ => (up_after, incoming),
        };
        // What only SQL has (a join, a top-N): resolved against its inputs, then a stage of
        // its own fed by a shuffle of each input on its keys.
        let sql_keyed = match &operation {
            Operation::Join(spec) => {
                let path = format!("transforms[{i}].join");
                let resolved = match ins.as_slice() {
                    [l, r] => super::join::resolve(spec, [&l.2, &r.2], &path).map(|j| {
                        let [lk, rk] = j.keys;
                        (
                            j.out,
                            vec![(l.0, l.1, l.2.clone(), lk), (r.0, r.1, r.2.clone(), rk)],
                        )
                    }),
                    _ => Err(vec![FieldError::new(
                        &path,
                        "internal: a join needs two inputs",
                    )]),
                };
                Some((path, resolved))
            }
            Operation::TopN(spec) => {
                let path = format!("transforms[{i}].topN");
                let resolved = super::top_n::resolve(spec, &incoming, &path).map(|t| {
                    (
                        t.out,
                        vec![(up_stage, up_after, incoming.clone(), t.partition)],
                    )
                });
                Some((path, resolved))
            }
            _ => None,
        };
        // The flow names every stateful node (`Flow::line`, `Flow::of_statements`); the
        // fallback is only for a node built some other way.
        let state_id = || n.state_id.clone().unwrap_or_else(|| format!("t{i}-state"));
        if let Some((path, resolved)) = sql_keyed {
            let id = state_id();
            match resolved {
                Ok((out, feeds)) => {
                    let second = feeds.get(1).map(|f| &f.2);
                    let op = keyed_op(id, path, &operation, &feeds[0].2, second, &out);
                    let stage = open_keyed(&mut stages, &mut edges, feeds, op);
                    placed.push((stage, 0, out));
                }
                Err(e) => {
                    errs.extend(at_origin(n.origin, e));
                    // Keep numbering: later nodes still refer to this one by index.
                    placed.push((up_stage, up_after.unwrap_or(0), incoming));
                }
            }
            continue;
        }
        let mut found = Vec::new();
        let (checked, id) = match &operation {
            Operation::Transform(t) => {
                let checked = check::node(i, t, &incoming, source_time_col.is_some(), &mut found);
                let id = match t {
                    Transform::Window(_) | Transform::Dedup(_) => state_id(),
                    Transform::Filter(_) => format!("t{i}-filter"),
                    Transform::Select(_) => format!("t{i}-select"),
                };
                (checked, id)
            }
            Operation::Union => {
                let given: Vec<Incoming> = ins.iter().map(|x| x.2.clone()).collect();
                (check::union(i, &given, &mut found), format!("t{i}-union"))
            }
            Operation::GroupBy(w, _) => {
                let keys = check::columns(&w.key_by, &incoming.schema, "").unwrap_or_default();
                if check::time_key(&keys, incoming.time_col).is_some() {
                    let window = Transform::Window(w.clone());
                    let mut checked =
                        check::node(i, &window, &incoming, source_time_col.is_some(), &mut found);
                    checked.path = format!("transforms[{i}].groupBy");
                    // The result (keys first) carries its event time in that key's column.
                    checked.out.time_col = check::time_key(&keys, incoming.time_col);
                    (checked, state_id())
                } else {
                    (check::group_by(i, w, &incoming, &mut found), state_id())
                }
            }
            Operation::Join(_) | Operation::TopN(_) => continue,
        };
        errs.extend(at_origin(n.origin, found));
        let op = OpPlan {
            id,
            path: checked.path,
            operation: operation.clone(),
            input: Arc::clone(&incoming.schema),
            output: Arc::clone(&checked.out.schema),
            time_col: incoming.time_col,
            side_sink: checked.side_sink,
            second: None,
        };
        match checked.keys {
            Some(keys) => {
                let feeds = vec![(up_stage, up_after, incoming.clone(), keys)];
                let stage = open_keyed(&mut stages, &mut edges, feeds, op);
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
                let feeds = ins
                    .iter()
                    .map(|(from, after, inc)| Feed {
                        from: *from,
                        after: *after,
                        schema: Arc::clone(&inc.schema),
                        keys: Vec::new(),
                        forward: true,
                    })
                    .collect();
                let stage = open_stage(&mut stages, &mut edges, feeds, op);
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
        if let Upstream::Node(k) = up
            && crate::changelog::is_changelog(&placed[k].2.schema)
        {
            for &sink in &list {
                if let Err(m) = job.pipeline.sinks.get(sink).map_or(Ok(()), |s| {
                    changes::sink_takes(s, crate::changelog::may_delete(&placed[k].2.schema))
                }) {
                    let e = FieldError::new(format!("sinks[{sink}]"), m);
                    errs.extend(at_origin(flow.nodes[k].origin, vec![e]));
                }
            }
        }
        let (stage, after, schema) = match up {
            Upstream::Source(s) => (s, None, Arc::clone(&sources[s].schema)),
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
        sources,
        stages,
        edges,
        sinks,
        decode_side,
    })
}

/// One input of a new stage: where it leaves its stage, and how it is distributed.
struct Feed {
    from: usize,
    after: Option<usize>,
    schema: SchemaRef,
    /// Key columns of a shuffle; empty for a forward edge.
    keys: Vec<usize>,
    forward: bool,
}

/// A keyed operator that only SQL has (a join, a top-N), reading `input` (and `second`) and
/// giving `out`.
fn keyed_op(
    id: String,
    path: String,
    operation: &Operation,
    input: &Incoming,
    second: Option<&Incoming>,
    out: &Incoming,
) -> OpPlan {
    OpPlan {
        id,
        path,
        operation: operation.clone(),
        input: Arc::clone(&input.schema),
        output: Arc::clone(&out.schema),
        time_col: input.time_col,
        side_sink: None,
        second: second.map(|s| (Arc::clone(&s.schema), s.time_col)),
    }
}

/// [`open_stage`] for `op` fed by a key-group shuffle of each input: (its stage, the
/// operator it leaves, what it gives, its keys), in port order.
fn open_keyed(
    stages: &mut Vec<StagePlan>,
    edges: &mut Vec<EdgePlan>,
    inputs: Vec<(usize, Option<usize>, Incoming, Vec<usize>)>,
    op: OpPlan,
) -> usize {
    let feeds = inputs
        .into_iter()
        .map(|(from, after, inc, keys)| Feed {
            from,
            after,
            schema: Arc::clone(&inc.schema),
            keys,
            forward: false,
        })
        .collect();
    open_stage(stages, edges, feeds, op)
}

/// A new stage with `op` at its root, fed by one edge per feed (in port order), each an
/// outlet of the stage the feed leaves; returns the new stage's index.
fn open_stage(
    stages: &mut Vec<StagePlan>,
    edges: &mut Vec<EdgePlan>,
    feeds: Vec<Feed>,
    op: OpPlan,
) -> usize {
    let stage = stages.len();
    let input = feeds
        .first()
        .map_or_else(|| Arc::clone(&op.input), |f| Arc::clone(&f.schema));
    let mut inputs = Vec::new();
    for (port, f) in feeds.into_iter().enumerate() {
        let edge = edges.len();
        stages[f.from].outlets.push(OutletPlan {
            after: f.after,
            to: Target::Edge(edge),
            schema: Arc::clone(&f.schema),
        });
        edges.push(EdgePlan {
            from: f.from,
            to: stage,
            port,
            keys: f.keys,
            forward: f.forward,
            schema: f.schema,
        });
        inputs.push(edge);
    }
    stages.push(StagePlan {
        inputs,
        input,
        ops: vec![ChainOp {
            op,
            parents: vec![None],
        }],
        outlets: Vec::new(),
    });
    stage
}

/// A select of only the columns window node `i` reads (its keys, the event-time column and
/// its aggregates' arguments), when it reads fewer than it is given: so that the shuffle
/// into the window carries those. `None` when nothing would be dropped, when late records
/// go to a side output (they keep every column), or when the window has errors of its own
/// (reported by its check).
fn prune(
    i: usize,
    w: &weir_crds::WindowSpec,
    incoming: &Incoming,
    source_has_time: bool,
) -> Option<(OpPlan, Incoming)> {
    if matches!(w.late_records, weir_crds::LatePolicy::SideOutput(_)) {
        // Late records go to their side output whole.
        return None;
    }
    let schema = &incoming.schema;
    let (_, keys, aggregates) = check::window_parts(w, schema, "").ok()?;
    let mut used: Vec<usize> = keys.into_iter().chain(incoming.time_col).collect();
    for a in &aggregates {
        used.extend(a.arg.iter().flat_map(crate::expr::CompiledExpr::columns));
    }
    used.sort_unstable();
    used.dedup();
    // Names an expression reads as themselves (no quoting, no case folding) only.
    let plain = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if used.len() >= schema.fields().len() || !used.iter().all(|&c| plain(schema.field(c).name())) {
        return None;
    }
    let cols: indexmap::IndexMap<String, String> = used
        .iter()
        .map(|&c| {
            let name = schema.field(c).name().clone();
            (name.clone(), name)
        })
        .collect();
    let select = Transform::Select(cols);
    let mut errs = Vec::new();
    let checked = check::node(i, &select, incoming, source_has_time, &mut errs);
    if !errs.is_empty() {
        return None;
    }
    let op = OpPlan {
        id: format!("t{i}-prune"),
        path: checked.path,
        operation: Operation::Transform(select),
        input: Arc::clone(schema),
        output: Arc::clone(&checked.out.schema),
        time_col: incoming.time_col,
        side_sink: None,
        second: None,
    };
    Some((op, checked.out))
}
