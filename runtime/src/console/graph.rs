//! The dataflow as the console draws it: stages with their chained operators, the shuffles
//! between them and the sinks each stage feeds. Built once from the plan; the live counts are
//! joined to it by operator id in the browser, so the stream carries numbers, not structure.

use serde::Serialize;

use crate::explain;
use crate::plan::{Plan, Target};

/// The job's dataflow.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    /// Job name.
    pub name: String,
    /// Subtasks per stage.
    pub parallelism: u32,
    /// Key groups (the most the job can rescale to).
    pub max_parallelism: u32,
    /// Checkpoints kept after newer ones complete (the newest this many completed ones).
    pub retained: u32,
    /// `transforms` or `sql`.
    pub form: &'static str,
    /// Stages in plan order; the first ones read the sources.
    pub stages: Vec<Stage>,
    /// Shuffles between stages.
    pub edges: Vec<Edge>,
    /// Where results go.
    pub sinks: Vec<Sink>,
}

/// A stage: one task per subtask, its operators chained in it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Index in the plan (`s<index>` in task names).
    pub index: usize,
    /// The source it reads (`name (connector)`, or the connector of an unnamed one), for
    /// source stages.
    pub source: Option<String>,
    /// Operators in chain order.
    pub operators: Vec<Op>,
}

/// An operator in a stage.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Op {
    /// The id its metrics and state are kept under.
    pub id: String,
    /// What it does, as `weir-runtime explain` says it.
    pub text: String,
    /// Keeps keyed state.
    pub stateful: bool,
}

/// A shuffle from one stage into another.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    /// Upstream stage.
    pub from: usize,
    /// Downstream stage.
    pub to: usize,
    /// `key groups of [a, b]`, `forward`, or `one key group`.
    pub how: String,
}

/// A sink and the stage that feeds it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sink {
    /// Sink id (`sink-0`), as `GET /v1/job` names it.
    pub id: String,
    /// `name (kind target)`, or `kind target` for an unnamed sink.
    pub text: String,
    /// The stage whose outlet writes it.
    pub from: Option<usize>,
}

impl Graph {
    /// The dataflow of `plan` at `parallelism`.
    #[must_use]
    pub fn of(plan: &Plan, parallelism: u32) -> Self {
        let stages = plan
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| Stage {
                index,
                source: plan.sources.get(index).map(|sp| {
                    let connector = sp
                        .spec
                        .connector()
                        .map_or("?", weir_crds::SourceConnector::name);
                    sp.spec
                        .name
                        .as_deref()
                        .map_or_else(|| connector.to_string(), |n| format!("{n} ({connector})"))
                }),
                operators: stage
                    .ops
                    .iter()
                    .map(|c| Op {
                        id: c.op.id.clone(),
                        text: explain::operator(&c.op),
                        stateful: c.op.is_stateful(),
                    })
                    .collect(),
            })
            .collect();
        let edges = plan
            .edges
            .iter()
            .map(|e| {
                let how = if e.forward {
                    "forward".to_string()
                } else if e.keys.is_empty() {
                    "one key group".to_string()
                } else {
                    let names: Vec<&str> = e
                        .keys
                        .iter()
                        .map(|k| e.schema.field(*k).name().as_str())
                        .collect();
                    format!("key groups of [{}]", names.join(", "))
                };
                Edge {
                    from: e.from,
                    to: e.to,
                    how,
                }
            })
            .collect();
        let sinks = plan
            .sinks
            .iter()
            .enumerate()
            .map(|(i, (id, spec))| Sink {
                id: id.clone(),
                text: {
                    let what = format!("{}{}", spec.kind(), explain::sink_target(spec));
                    spec.name()
                        .map_or(what.clone(), |n| format!("{n} ({what})"))
                },
                from: plan.stages.iter().position(|s| {
                    s.outlets
                        .iter()
                        .any(|o| matches!(&o.to, Target::Sinks(l) if l.contains(&i)))
                }),
            })
            .collect();
        Self {
            name: plan.name.clone(),
            parallelism,
            max_parallelism: plan.job.max_parallelism,
            retained: plan.job.checkpoint.retained,
            form: if plan.job.pipeline.sql.is_some() {
                "sql"
            } else {
                "transforms"
            },
            stages,
            edges,
            sinks,
        }
    }

    /// Every operator id, in stage order.
    pub fn operator_ids(&self) -> impl Iterator<Item = &str> {
        self.stages
            .iter()
            .flat_map(|s| s.operators.iter().map(|o| o.id.as_str()))
    }
}
