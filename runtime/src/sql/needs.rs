//! Which columns of each join's output the statement reads above it, so that the join keeps
//! and moves only those (`sql::join` narrows each input to them, and to its condition's
//! columns). A join keeps its rows whole; an auction kept for its expiry with its name,
//! description and `extra` strings costs several times one kept with the four columns a
//! query reads.
//!
//! Worked out top-down over DataFusion's plan before it is lowered: each node says what it
//! reads of its input, through the few nodes whose reads are plain (a `SELECT` list, an
//! aggregate, a `WHERE`, an alias). Any other node (a window function, a union, a view's
//! inlined query) reads everything, which is always right: a join under it is not narrowed.
//! What the narrowing changes is visible: the join's input columns are part of its state's
//! definition, so a checkpoint of the wider join is refused by name, not misread.

use std::collections::HashMap;

use datafusion::common::Column;
use datafusion::logical_expr::{Expr, Join, LogicalPlan};

use super::lower::same_column as same;

/// Each join (by address in the plan being lowered) -> the columns of its output read
/// above it.
#[derive(Debug, Default)]
pub struct JoinNeeds(HashMap<usize, Vec<Column>>);

impl JoinNeeds {
    /// The needs of every join of `plan`, whose own output is read whole.
    #[must_use]
    pub fn of(plan: &LogicalPlan) -> Self {
        let mut needs = Self::default();
        needs.walk(plan, None);
        needs
    }

    /// The columns of `join`'s output read above it, if known (`None`: all of them).
    #[must_use]
    pub fn of_join(&self, join: &Join) -> Option<&[Column]> {
        self.0.get(&key(join)).map(Vec::as_slice)
    }

    /// `needed`: the columns of `plan`'s output read above it (`None`: all).
    fn walk(&mut self, plan: &LogicalPlan, needed: Option<Vec<Column>>) {
        match plan {
            LogicalPlan::Projection(p) => self.walk(&p.input, Some(refs(&p.expr))),
            LogicalPlan::Aggregate(a) => {
                let exprs: Vec<Expr> = a.group_expr.iter().chain(&a.aggr_expr).cloned().collect();
                self.walk(&a.input, Some(refs(&exprs)));
            }
            LogicalPlan::Filter(f) => {
                let needed = needed.map(|mut n| {
                    n.extend(refs(std::slice::from_ref(&f.predicate)));
                    n
                });
                self.walk(&f.input, needed);
            }
            LogicalPlan::SubqueryAlias(a) => {
                // The same columns, by position, under the input's names.
                let needed = needed.map(|n| {
                    a.schema
                        .columns()
                        .into_iter()
                        .zip(a.input.schema().columns())
                        .filter(|(out, _)| n.iter().any(|c| same(out, c)))
                        .map(|(_, inner)| inner)
                        .collect()
                });
                self.walk(&a.input, needed);
            }
            LogicalPlan::Join(j) => {
                let needed = needed.map(|mut n| {
                    let on: Vec<Expr> =
                        j.on.iter()
                            .flat_map(|(l, r)| [l.clone(), r.clone()])
                            .chain(j.filter.clone())
                            .collect();
                    n.extend(refs(&on));
                    n
                });
                if let Some(n) = &needed {
                    self.0.insert(key(j), n.clone());
                }
                for side in [&j.left, &j.right] {
                    let of_side = needed.as_ref().map(|n| {
                        side.schema()
                            .columns()
                            .into_iter()
                            .filter(|c| n.iter().any(|x| same(c, x)))
                            .collect()
                    });
                    self.walk(side, of_side);
                }
            }
            other => {
                for input in other.inputs() {
                    self.walk(input, None);
                }
            }
        }
    }
}

fn key(join: &Join) -> usize {
    std::ptr::from_ref(join) as usize
}

/// Every column `exprs` read.
fn refs(exprs: &[Expr]) -> Vec<Column> {
    exprs
        .iter()
        .flat_map(|e| e.column_refs().into_iter().cloned())
        .collect()
}
