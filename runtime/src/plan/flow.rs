//! The logical dataflow: transforms and what each reads, before anything is chained or cut
//! into stages. A `transforms` pipeline is a line; a `sql` pipeline is a tree over its
//! source, one branch per result, where statements that begin alike share the operators
//! they have in common (two queries over one view filter once), and a `UNION ALL` joins
//! branches again.

use weir_crds::{FieldError, SinkSpec, Transform};

use super::Operation;

/// What a node (or a sink) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Source `i`'s records (the pipeline's `source` is 0, its `sources` follow).
    Source(usize),
    /// Another node's output (an index into [`Flow::nodes`], smaller than the reader's).
    Node(usize),
}

/// One operator in the dataflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it does.
    pub operation: Operation,
    /// What it reads: one input, or several for a union.
    pub inputs: Vec<Upstream>,
    /// For a `sql` pipeline: the line in the script of the statement that first needed the
    /// node, where its planning errors are reported.
    pub origin: Option<usize>,
    /// A stateful node's state id: the transform's `id` or kind and position in a
    /// `transforms` pipeline; in a `sql` pipeline, the sink its statement writes, the kind,
    /// and its place among the statement's stateful steps (`hot_items/window-0`), so that
    /// adding, removing or reordering other statements leaves it alone.
    pub state_id: Option<String>,
}

/// The dataflow of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Nodes, each after what it reads.
    pub nodes: Vec<Node>,
    /// What each sink of the pipeline (by index) receives.
    pub sinks: Vec<Upstream>,
}

/// One step of a result's computation, as a statement lowers to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A transform of what the step before gave.
    Transform(Transform),
    /// `UNION ALL` of the results of these steps, each computed from the source; the first
    /// step of its chain.
    Union(Vec<Vec<Step>>),
    /// A join of the results of two chains of steps (left, right), each computed from the
    /// source; the first step of its chain.
    Join(super::join::JoinSpec, Box<[Vec<Step>; 2]>),
    /// The best N rows per partition of what the step before gave.
    TopN(super::top_n::TopNSpec),
    /// A `GROUP BY` without a window table function (see `sql/group_by.rs`): final at its
    /// groups' event time when a key is the event time, else updating (a changelog).
    /// With its `stateTtl`.
    GroupBy(weir_crds::WindowSpec, Option<crate::ids::Millis>),
    /// Records of source `i` (the pipeline's `source` is 0, its `sources` follow): the
    /// first step of a chain that does not start at the first source.
    Read(usize),
}

/// One result of a `sql` pipeline: the steps computing it from the source, the sinks it
/// goes to, and where its statement is.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Names of the sinks written (lowercase, as tables are named).
    pub sinks: Vec<String>,
    /// The 1-based line of the (first) statement in the script.
    pub line: usize,
}

impl Flow {
    /// A `transforms` pipeline: each transform reads the one before, every sink the last.
    #[must_use]
    pub fn line(transforms: &[Transform], sinks: usize) -> Self {
        let ids = weir_crds::state_ids(transforms);
        let nodes: Vec<Node> = transforms
            .iter()
            .zip(ids)
            .enumerate()
            .map(|(i, (t, state_id))| Node {
                operation: Operation::Transform(t.clone()),
                inputs: vec![if i == 0 {
                    Upstream::Source(0)
                } else {
                    Upstream::Node(i - 1)
                }],
                origin: None,
                state_id,
            })
            .collect();
        let last = nodes
            .len()
            .checked_sub(1)
            .map_or(Upstream::Source(0), Upstream::Node);
        Self {
            nodes,
            sinks: vec![last; sinks],
        }
    }

    /// A `sql` pipeline's results as one dataflow. A branch reuses the nodes of an earlier
    /// one for as long as it does the same (same transform over the same input), and forks
    /// from there.
    ///
    /// # Errors
    /// A sink no branch writes, or a branch writing a sink the pipeline does not have (both
    /// refused by validation before; reported rather than assumed).
    pub fn of_statements(branches: &[Branch], sinks: &[SinkSpec]) -> Result<Self, Vec<FieldError>> {
        let mut flow = Self {
            nodes: Vec::new(),
            sinks: Vec::new(),
        };
        let mut fed: Vec<Option<Upstream>> = vec![None; sinks.len()];
        let mut errs = Vec::new();
        for b in branches {
            let statement = b.sinks.first().map_or("sql", String::as_str);
            let cur = flow.add(&b.steps, b.line, statement, &mut 0);
            for name in &b.sinks {
                match sinks
                    .iter()
                    .position(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                {
                    Some(i) => fed[i] = Some(cur),
                    None => errs.push(FieldError::within(
                        "sql",
                        b.line,
                        format!("no sink is named `{name}`"),
                    )),
                }
            }
        }
        for (i, f) in fed.iter().enumerate() {
            if f.is_none() {
                errs.push(FieldError::new(
                    format!("sinks[{i}]"),
                    "no statement writes this sink",
                ));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        flow.sinks = fed.into_iter().flatten().collect();
        Ok(flow)
    }

    /// Add `steps`, computed from the source, reusing nodes that compute the same; returns
    /// the last. `stateful` counts the statement's stateful steps so far, reused or not.
    fn add(
        &mut self,
        steps: &[Step],
        line: usize,
        statement: &str,
        stateful: &mut usize,
    ) -> Upstream {
        let mut cur = Upstream::Source(0);
        for s in steps {
            if let Step::Read(i) = s {
                cur = Upstream::Source(*i);
                continue;
            }
            let (operation, inputs) = match s {
                Step::Transform(t) => (Operation::Transform(t.clone()), vec![cur]),
                Step::Union(chains) => (
                    Operation::Union,
                    chains
                        .iter()
                        .map(|c| self.add(c, line, statement, stateful))
                        .collect(),
                ),
                Step::TopN(spec) => (Operation::TopN(spec.clone()), vec![cur]),
                Step::GroupBy(spec, ttl) => (Operation::GroupBy(spec.clone(), *ttl), vec![cur]),
                Step::Read(_) => continue,
                Step::Join(spec, sides) => (
                    Operation::Join(spec.clone()),
                    sides
                        .iter()
                        .map(|c| self.add(c, line, statement, stateful))
                        .collect(),
                ),
            };
            let kind = match s {
                Step::Transform(Transform::Window(_)) => Some("window"),
                Step::Transform(Transform::Dedup(_)) => Some("dedup"),
                Step::GroupBy(..) => Some("group-by"),
                Step::TopN(_) => Some("top-n"),
                Step::Join(..) => Some("join"),
                _ => None,
            };
            let state_id = kind.map(|k| {
                *stateful += 1;
                format!("{statement}/{k}-{}", *stateful - 1)
            });
            cur = match self
                .nodes
                .iter()
                .position(|n| n.inputs == inputs && n.operation == operation)
            {
                Some(i) => Upstream::Node(i),
                None => {
                    self.nodes.push(Node {
                        operation,
                        inputs,
                        origin: Some(line),
                        state_id,
                    });
                    Upstream::Node(self.nodes.len() - 1)
                }
            };
        }
        cur
    }
}

#[cfg(test)]
mod tests {
    use super::{Branch, Flow, Step, Upstream};
    use weir_crds::{FileSinkSpec, SinkSpec, Transform};

    fn sink(name: &str) -> SinkSpec {
        SinkSpec::File(FileSinkSpec {
            name: Some(name.into()),
            path: name.into(),
        })
    }

    fn filter(s: &str) -> Step {
        Step::Transform(Transform::Filter(s.into()))
    }

    #[test]
    fn statements_share_what_they_begin_with_and_fork_where_they_differ() {
        let branches = [
            Branch {
                steps: vec![filter("a > 1"), filter("b > 2")],
                sinks: vec!["x".into()],
                line: 1,
            },
            Branch {
                steps: vec![filter("a > 1"), filter("c > 3")],
                sinks: vec!["y".into()],
                line: 2,
            },
            Branch {
                steps: vec![filter("b > 2")],
                sinks: vec!["z".into()],
                line: 3,
            },
            // (a > 1 UNION ALL b > 2) then c > 3: both inputs exist already.
            Branch {
                steps: vec![
                    Step::Union(vec![vec![filter("a > 1")], vec![filter("b > 2")]]),
                    filter("c > 3"),
                ],
                sinks: vec!["u".into()],
                line: 4,
            },
        ];
        let flow = Flow::of_statements(&branches, &[sink("z"), sink("x"), sink("Y"), sink("u")])
            .expect("a flow");
        let shape: Vec<(Vec<Upstream>, Option<usize>)> = flow
            .nodes
            .iter()
            .map(|n| (n.inputs.clone(), n.origin))
            .collect();
        assert_eq!(
            shape,
            [
                (vec![Upstream::Source(0)], Some(1)),
                (vec![Upstream::Node(0)], Some(1)),
                (vec![Upstream::Node(0)], Some(2)),
                // Same transform as node 1, but over the source: not the same result.
                (vec![Upstream::Source(0)], Some(3)),
                (vec![Upstream::Node(0), Upstream::Node(3)], Some(4)),
                (vec![Upstream::Node(4)], Some(4)),
            ]
        );
        assert_eq!(
            flow.sinks,
            [
                Upstream::Node(3),
                Upstream::Node(1),
                Upstream::Node(2),
                Upstream::Node(5)
            ]
        );
        let e = Flow::of_statements(&branches[..1], &[sink("x"), sink("w")])
            .expect_err("w is not written");
        assert_eq!(e[0].path, "sinks[1]");
    }

    #[test]
    fn a_line_feeds_every_sink_from_its_last_transform() {
        let t = |s: &str| Transform::Filter(s.into());
        let flow = Flow::line(&[t("a > 1"), t("b > 1")], 2);
        assert_eq!(flow.nodes[1].inputs, [Upstream::Node(0)]);
        assert_eq!(flow.sinks, [Upstream::Node(1), Upstream::Node(1)]);
        assert_eq!(Flow::line(&[], 1).sinks, [Upstream::Source(0)]);
    }
}
