//! Pipeline spec -> execution plan: a dataflow of operators (a line for a `transforms`
//! pipeline, a tree of statements over one source for `sql`), cut into stages at every
//! key-group shuffle, with every schema known. All data-dependent checks happen here, before
//! anything runs: unknown columns, non-boolean filters, aggregates over the wrong types,
//! windows after the event-time column was dropped. Each error names the field path (or the
//! statement); the caller adds lines.
//!
//! ```text
//! stage 0: source ─┬ filter ─ select ──shuffle(keyBy)──► stage 1: window ─ select ──► sink a
//!                  └ filter ─────────────────────────────────────────────────────────► sink b
//! ```
//!
//! Homes: [`flow`] (the logical dataflow, before stages), [`check`] (what each transform
//! needs of its input and gives its output), [`stages`] (chaining and cutting into stages),
//! [`definition`] (what each operator's state and each source's positions mean, as
//! checkpoints record them).

mod changes;
mod check;
mod definition;
pub mod flow;
pub mod join;
mod stages;
pub mod top_n;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::{FieldError, JobErrors, JobFile, SinkSpec, Transform};

use crate::expr::CompiledExpr;
use crate::keys::KeyCodec;
use crate::operator::group_by::{GroupBy, GroupByConfig};
use crate::operator::window::{WindowConfig, WindowOperator};
use crate::operator::{
    Operator, dedup::Dedup, filter::Filter, join::Join, select::Select, top_n::TopN, union::Union,
};

use flow::Flow;

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Job name.
    pub name: String,
    /// The job as given.
    pub job: JobFile,
    /// Source record schema (of the first source).
    pub source_schema: SchemaRef,
    /// Event-time column of the (first) source.
    pub source_time_col: Option<usize>,
    /// Every source: the pipeline's `source`, then its `sources`. Stage `i` reads source
    /// `i`.
    pub sources: Vec<SourcePlan>,
    /// Stages in order; the first `sources.len()` are the sources' stages.
    pub stages: Vec<StagePlan>,
    /// The shuffles between stages.
    pub edges: Vec<EdgePlan>,
    /// Sinks: (sink id, spec), each fed by one outlet of one stage.
    pub sinks: Vec<(String, SinkSpec)>,
    /// Side output for undecodable source records: (sink id, spec).
    pub decode_side: Option<(String, SinkSpec)>,
}

/// One source of the job.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// As the job gives it.
    pub spec: weir_crds::SourceSpec,
    /// Its records' schema.
    pub schema: SchemaRef,
    /// Its event-time column.
    pub time_col: Option<usize>,
}

impl Plan {
    /// Whether stage `stage` reads a source (rather than edges from other stages).
    #[must_use]
    pub fn is_source_stage(&self, stage: usize) -> bool {
        stage < self.sources.len()
    }

    /// Every operator of the job.
    pub fn operators(&self) -> impl Iterator<Item = &OpPlan> {
        self.stages.iter().flat_map(|s| s.ops.iter().map(|c| &c.op))
    }

    /// The schema sink `index` receives.
    #[must_use]
    pub fn sink_schema(&self, index: usize) -> Option<SchemaRef> {
        self.stages.iter().find_map(|s| {
            s.outlets.iter().find_map(|o| match &o.to {
                Target::Sinks(list) if list.contains(&index) => Some(Arc::clone(&o.schema)),
                _ => None,
            })
        })
    }
}

/// Operators chained in one task: a tree rooted at the stage's input (the source, or the
/// shuffle into the stage), each branch ending in outlets.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// The edges into the stage, by input port; none for stage 0 (the source).
    pub inputs: Vec<usize>,
    /// Schema entering the stage (for stage 0: the source schema).
    pub input: SchemaRef,
    /// Operators, each after its parent (`None`: the stage's input).
    pub ops: Vec<ChainOp>,
    /// Where results leave the stage.
    pub outlets: Vec<OutletPlan>,
}

/// An operator in a stage's chain.
#[derive(Debug, Clone)]
pub struct ChainOp {
    /// The operator.
    pub op: OpPlan,
    /// What it reads: operators before it (indices into the stage's `ops`, each smaller than
    /// its own) or `None` for the stage's input. One, but for a union of results computed in
    /// the same stage.
    pub parents: Vec<Option<usize>>,
}

/// Records leaving a stage after operator `after` (or straight from its input).
#[derive(Debug, Clone)]
pub struct OutletPlan {
    /// The operator whose output leaves (an index into the stage's `ops`), or `None` for the
    /// stage's input.
    pub after: Option<usize>,
    /// Where to.
    pub to: Target,
    /// The records' schema.
    pub schema: SchemaRef,
}

/// Where an outlet sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A shuffle into another stage (an index into [`Plan::edges`]).
    Edge(usize),
    /// Sinks (indices into [`Plan::sinks`]); each receives every record.
    Sinks(Vec<usize>),
}

/// A key-group shuffle from one stage into an input port of a later one.
#[derive(Debug, Clone)]
pub struct EdgePlan {
    /// Upstream stage.
    pub from: usize,
    /// Downstream stage.
    pub to: usize,
    /// The input port of `to`.
    pub port: usize,
    /// Key columns, indices into `schema`; empty for a forward edge.
    pub keys: Vec<usize>,
    /// Subtask `i` sends to subtask `i` only (a union of results of different stages): the
    /// records are not redistributed, and the channel never leaves the pod.
    pub forward: bool,
    /// The records' schema.
    pub schema: SchemaRef,
}

/// What an operator does: a transform of the YAML form, or what only SQL says.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `filter`, `select`, `window`, `dedup`.
    Transform(Transform),
    /// `UNION ALL` of the operator's inputs.
    Union,
    /// A join of its two inputs.
    Join(join::JoinSpec),
    /// The best N rows of each partition of its input.
    TopN(top_n::TopNSpec),
    /// A `GROUP BY` without a window table function. When a key is the input's event time
    /// ([`check::time_key`]) every group is final at that time: a one-millisecond window keyed
    /// by every group key. Otherwise its result updates as rows arrive: a changelog
    /// ([`crate::operator::group_by`]).
    /// Its `stateTtl` (milliseconds of event time), for the updating form.
    GroupBy(weir_crds::WindowSpec, Option<crate::ids::Millis>),
}

/// One operator, ready to instantiate per subtask.
#[derive(Debug, Clone)]
pub struct OpPlan {
    /// Stable id used for state: `window-0`, `dedup-1`; stateless ops `t<i>-filter`.
    pub id: String,
    /// Field path of the transform, for messages.
    pub path: String,
    /// What it does.
    pub operation: Operation,
    /// Input schema.
    pub input: SchemaRef,
    /// Output schema.
    pub output: SchemaRef,
    /// Event-time column in the input.
    pub time_col: Option<usize>,
    /// Late-record side output: (sink id, spec).
    pub side_sink: Option<(String, SinkSpec)>,
    /// A two-input operator's second input: its schema and event-time column.
    pub second: Option<(SchemaRef, Option<usize>)>,
}

impl OpPlan {
    /// Whether the operator keeps keyed state.
    #[must_use]
    pub fn is_stateful(&self) -> bool {
        matches!(
            self.operation,
            Operation::Transform(Transform::Window(_) | Transform::Dedup(_))
                | Operation::Join(_)
                | Operation::TopN(_)
                | Operation::GroupBy(..)
        )
    }

    /// A fresh instance for one subtask. Re-compiles expressions: they were checked when
    /// planning, so this fails only on internal errors.
    ///
    /// # Errors
    /// [`crate::error::Error::Internal`] if planning and instantiation disagree.
    pub fn instantiate(&self, max_parallelism: u32) -> crate::error::Result<Box<dyn Operator>> {
        self.instantiate_in(max_parallelism, None)
    }

    /// Whether the operator can keep its state on disk (the `disk` backend): every keyed
    /// one.
    #[must_use]
    pub fn keeps_disk_state(&self) -> bool {
        matches!(
            &self.operation,
            Operation::Transform(Transform::Dedup(_) | Transform::Window(_))
                | Operation::Join(_)
                | Operation::GroupBy(..)
                | Operation::TopN(_)
        )
    }

    /// [`Self::instantiate`], with its state on disk at `place` when it has one and
    /// [`Self::keeps_disk_state`].
    ///
    /// # Errors
    /// As [`Self::instantiate`]; the disk store does not open.
    pub fn instantiate_in(
        &self,
        max_parallelism: u32,
        place: Option<crate::state::disk::Place>,
    ) -> crate::error::Result<Box<dyn Operator>> {
        let ie = |e: String| crate::error::Error::internal(format!("{}: {e}", self.path));
        let t = match &self.operation {
            Operation::Union => return Ok(Box::new(Union::new(Arc::clone(&self.output)))),
            Operation::Join(spec) => {
                let (input, second) = self.inputs();
                let second = second.ok_or_else(|| ie("a join with one input".into()))?;
                let cfg = join::config(spec, [&input, &second], &self.path, max_parallelism)
                    .map_err(ie)?;
                return Ok(Box::new(Join::new(cfg, place)?));
            }
            Operation::TopN(spec) => {
                let (input, _) = self.inputs();
                let cfg = top_n::config(spec, &input, &self.path, max_parallelism).map_err(ie)?;
                return Ok(Box::new(TopN::new(cfg, place)?));
            }
            Operation::GroupBy(w, ttl) => return self.group_by(w, *ttl, max_parallelism, place),
            Operation::Transform(t) => t,
        };
        Ok(match t {
            Transform::Filter(sql) => Box::new(Filter::new(
                CompiledExpr::compile(sql, &self.input).map_err(ie)?,
                Arc::clone(&self.input),
            )),
            Transform::Select(cols) => Box::new(Select::new(
                cols.values()
                    .map(|sql| CompiledExpr::compile(sql, &self.input))
                    .collect::<Result<_, _>>()
                    .map_err(ie)?,
                Arc::clone(&self.output),
            )),
            Transform::Window(w) => return self.window(w, max_parallelism, place),
            Transform::Dedup(d) => {
                let keys = check::columns(&d.key_by, &self.input, &format!("{}.keyBy", self.path))
                    .map_err(|e| ie(format!("{e:?}")))?;
                Box::new(Dedup::new(
                    KeyCodec::new(&self.input, keys)?,
                    self.time_col.ok_or_else(|| ie("no time column".into()))?,
                    d.ttl.as_millis_i64(),
                    max_parallelism,
                    place,
                )?)
            }
        })
    }
}

impl OpPlan {
    /// What the operator reads, as planning checked it: its input and a two-input
    /// operator's second.
    fn inputs(&self) -> (check::Incoming, Option<check::Incoming>) {
        let incoming = |schema: &SchemaRef, time_col| check::Incoming {
            schema: Arc::clone(schema),
            time_col,
            time_lost_at: None,
        };
        (
            incoming(&self.input, self.time_col),
            self.second.as_ref().map(|(s, t)| incoming(s, *t)),
        )
    }

    /// Whether this is a `GROUP BY` whose keys hold its input's event time, so that each group
    /// is final at that time (it runs as a window); otherwise a `GROUP BY` updates.
    #[must_use]
    pub fn groups_at_time(&self) -> bool {
        let Operation::GroupBy(w, _) = &self.operation else {
            return false;
        };
        let keys = check::columns(&w.key_by, &self.input, "").unwrap_or_default();
        check::time_key(&keys, self.time_col).is_some()
    }

    /// A `GROUP BY`: a window when a key is the event time, else updating (as planned).
    fn group_by(
        &self,
        w: &weir_crds::WindowSpec,
        ttl: Option<crate::ids::Millis>,
        max_parallelism: u32,
        place: Option<crate::state::disk::Place>,
    ) -> crate::error::Result<Box<dyn Operator>> {
        let ie = |e: String| crate::error::Error::internal(format!("{}: {e}", self.path));
        let (_, keys, aggregates) =
            check::window_parts(w, &self.input, &self.path).map_err(|e| ie(format!("{e:?}")))?;
        if self.groups_at_time() {
            return self.window(w, max_parallelism, place);
        }
        Ok(Box::new(GroupBy::new(
            GroupByConfig {
                keys: KeyCodec::new(&self.input, keys)?,
                aggregates,
                output: Arc::clone(&self.output),
                max_parallelism,
                retracting: crate::changelog::is_changelog(&self.input),
                ttl: ttl.zip(self.time_col).map(|(t, c)| (c, t)),
            },
            place,
        )?))
    }

    fn window(
        &self,
        w: &weir_crds::WindowSpec,
        max_parallelism: u32,
        place: Option<crate::state::disk::Place>,
    ) -> crate::error::Result<Box<dyn Operator>> {
        let ie = |e: String| crate::error::Error::internal(format!("{}: {e}", self.path));
        let (assigner, keys, aggs) =
            check::window_parts(w, &self.input, &self.path).map_err(|e| ie(format!("{e:?}")))?;
        Ok(Box::new(WindowOperator::new_in(
            WindowConfig {
                assigner,
                keys: KeyCodec::new(&self.input, keys)?,
                time_col: self.time_col.ok_or_else(|| ie("no time column".into()))?,
                aggregates: aggs,
                output: Arc::clone(&self.output),
                side_output: self.side_sink.is_some(),
                max_parallelism,
            },
            place,
        )?))
    }
}

/// Plan a job. `file` and `src` are only used to locate errors.
///
/// # Errors
/// Every problem found, each naming its field (or statement) and line.
pub fn plan(job: &JobFile, name: &str, file: &str, src: &str) -> Result<Plan, JobErrors> {
    let schemas: Vec<SchemaRef> = std::iter::once(&job.pipeline.source)
        .chain(&job.pipeline.sources)
        .map(crate::connectors::source_schema)
        .collect();
    let flow = if job.pipeline.sql.is_some() {
        let lowered =
            crate::sql::lower_script(job, &schemas).map_err(|e| JobErrors::locate(file, src, e))?;
        Flow::of_statements(&lowered.branches, &job.pipeline.sinks)
            .map_err(|e| JobErrors::locate(file, src, e))?
    } else {
        Flow::line(&job.pipeline.transforms, job.pipeline.sinks.len())
    };
    stages::cut(job, name, &schemas, &flow).map_err(|e| JobErrors::locate(file, src, e))
}

/// Errors found planning a node, reported where the user wrote it: at the transform's field,
/// or at the statement of a `sql` pipeline (the user never wrote the transforms it lowered
/// to).
fn at_origin(origin: Option<usize>, errs: Vec<FieldError>) -> Vec<FieldError> {
    match origin {
        None => errs,
        Some(line) => errs
            .into_iter()
            .map(|f| FieldError::within("sql", line, f.message))
            .collect(),
    }
}
