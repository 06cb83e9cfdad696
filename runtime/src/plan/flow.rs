//! The logical dataflow: transforms and what each reads, before anything is chained or cut
//! into stages. A `transforms` pipeline is a line; a `sql` pipeline is a tree over its
//! source, one branch per result, where statements that begin alike share the operators
//! they have in common (two queries over one view filter once).

use weir_crds::{FieldError, SinkSpec, Transform};

/// What a node (or a sink) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The source's records.
    Source,
    /// Another node's output (an index into [`Flow::nodes`], smaller than the reader's).
    Node(usize),
}

/// One transform in the dataflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it does.
    pub transform: Transform,
    /// What it reads.
    pub input: Upstream,
    /// For a `sql` pipeline: the line in the script of the statement that first needed the
    /// node, where its planning errors are reported.
    pub origin: Option<usize>,
}

/// The dataflow of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Nodes, each after what it reads.
    pub nodes: Vec<Node>,
    /// What each sink of the pipeline (by index) receives.
    pub sinks: Vec<Upstream>,
}

/// One result of a `sql` pipeline: the transforms computing it from the source, the sinks
/// it goes to, and where its statement is.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// The transforms, in order.
    pub transforms: Vec<Transform>,
    /// Names of the sinks written (lowercase, as tables are named).
    pub sinks: Vec<String>,
    /// The 1-based line of the (first) statement in the script.
    pub line: usize,
}

impl Flow {
    /// A `transforms` pipeline: each transform reads the one before, every sink the last.
    #[must_use]
    pub fn line(transforms: &[Transform], sinks: usize) -> Self {
        let nodes: Vec<Node> = transforms
            .iter()
            .enumerate()
            .map(|(i, t)| Node {
                transform: t.clone(),
                input: if i == 0 {
                    Upstream::Source
                } else {
                    Upstream::Node(i - 1)
                },
                origin: None,
            })
            .collect();
        let last = nodes
            .len()
            .checked_sub(1)
            .map_or(Upstream::Source, Upstream::Node);
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
        let mut nodes: Vec<Node> = Vec::new();
        let mut fed: Vec<Option<Upstream>> = vec![None; sinks.len()];
        let mut errs = Vec::new();
        for b in branches {
            let mut cur = Upstream::Source;
            for t in &b.transforms {
                cur = match nodes
                    .iter()
                    .position(|n| n.input == cur && n.transform == *t)
                {
                    Some(i) => Upstream::Node(i),
                    None => {
                        nodes.push(Node {
                            transform: t.clone(),
                            input: cur,
                            origin: Some(b.line),
                        });
                        Upstream::Node(nodes.len() - 1)
                    }
                };
            }
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
        Ok(Self {
            nodes,
            sinks: fed.into_iter().flatten().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Branch, Flow, Upstream};
    use weir_crds::{FileSinkSpec, SinkSpec, Transform};

    fn sink(name: &str) -> SinkSpec {
        SinkSpec::File(FileSinkSpec {
            name: Some(name.into()),
            path: name.into(),
        })
    }

    fn filter(s: &str) -> Transform {
        Transform::Filter(s.into())
    }

    #[test]
    fn statements_share_what_they_begin_with_and_fork_where_they_differ() {
        let branches = [
            Branch {
                transforms: vec![filter("a > 1"), filter("b > 2")],
                sinks: vec!["x".into()],
                line: 1,
            },
            Branch {
                transforms: vec![filter("a > 1"), filter("c > 3")],
                sinks: vec!["y".into()],
                line: 2,
            },
            Branch {
                transforms: vec![filter("b > 2")],
                sinks: vec!["z".into()],
                line: 3,
            },
        ];
        let flow =
            Flow::of_statements(&branches, &[sink("z"), sink("x"), sink("Y")]).expect("a flow");
        let shape: Vec<(Upstream, Option<usize>)> =
            flow.nodes.iter().map(|n| (n.input, n.origin)).collect();
        assert_eq!(
            shape,
            [
                (Upstream::Source, Some(1)),
                (Upstream::Node(0), Some(1)),
                (Upstream::Node(0), Some(2)),
                // Same transform as node 1, but over the source: not the same result.
                (Upstream::Source, Some(3)),
            ]
        );
        assert_eq!(
            flow.sinks,
            [Upstream::Node(3), Upstream::Node(1), Upstream::Node(2)]
        );
        let e = Flow::of_statements(&branches[..1], &[sink("x"), sink("w")])
            .expect_err("w is not written");
        assert_eq!(e[0].path, "sinks[1]");
    }

    #[test]
    fn a_line_feeds_every_sink_from_its_last_transform() {
        let flow = Flow::line(&[filter("a > 1"), filter("b > 1")], 2);
        assert_eq!(flow.nodes[1].input, Upstream::Node(0));
        assert_eq!(flow.sinks, [Upstream::Node(1), Upstream::Node(1)]);
        assert_eq!(Flow::line(&[], 1).sinks, [Upstream::Source]);
    }
}
