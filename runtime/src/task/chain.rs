//! The operators of one task: a tree rooted at the task's input (the source's records, or
//! what the shuffles into the stage bring), each operator feeding the ones after it and the
//! outlets that leave after it. Running records and watermarks through it does no I/O: what
//! comes out is handed back per outlet, for the task to send or write.

use datafusion::arrow::array::RecordBatch;

use crate::control::metrics::Metrics;
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::operator::Capture;
use crate::operator::{Input, Operator, Output};

/// An operator and what follows it.
struct Node {
    id: String,
    op: Box<dyn Operator>,
    /// Fed by the task's input rather than by another operator.
    root: bool,
    /// How far behind the task's watermark this operator's is: what the operators before
    /// it hold back (a join whose results can lie behind its watermark).
    held: Millis,
    children: Vec<usize>,
    outlets: Vec<usize>,
}

/// What one call produced: records per outlet, and side-output records per operator (late
/// records), each in the order produced.
#[derive(Debug, Default)]
pub struct Emitted {
    /// (outlet index, records).
    pub out: Vec<(usize, RecordBatch)>,
    /// (operator index, records).
    pub side: Vec<(usize, RecordBatch)>,
}

/// An operator as a chain is given it: its id, the instance, and what it reads (operators
/// before it, or `None`: the task's input).
pub type Linked = (String, Box<dyn Operator>, Vec<Option<usize>>);

/// One task's operators.
pub struct Chain {
    nodes: Vec<Node>,
    /// Operators the task's input feeds.
    roots: Vec<usize>,
    /// Outlets the task's input feeds directly.
    root_outlets: Vec<usize>,
    /// Records waiting for each operator during one call.
    pending: Vec<Vec<RecordBatch>>,
    /// How far behind the task's watermark its output's is: the most any operator holds
    /// back, counting those before it.
    delay: Millis,
    /// The input's columns read, when known (see [`narrow`]).
    input_columns: Option<Vec<usize>>,
}

/// Tell each operator which of its output columns the operators after it read, last to
/// first, so that it may leave the others out (a filter before a `SELECT` of a few columns
/// then copies only those). What leaves the chain (an outlet) is read as `outlet_reads` says
/// (the next stage's operators and the shuffle's keys; `None`: whole). Returns the columns of
/// the task's input the operators and outlets it feeds read, when each of them says: a
/// source may leave the others out.
fn narrow(
    nodes: &mut [Node],
    roots: &[usize],
    root_outlets: &[usize],
    outlet_reads: &[Option<Vec<usize>>],
) -> Option<Vec<usize>> {
    let mut needed: Vec<Option<Vec<usize>>> = vec![None; nodes.len()];
    for i in (0..nodes.len()).rev() {
        let node = &nodes[i];
        if node.outlets.is_empty() && node.children.is_empty() {
            continue;
        }
        needed[i] = read_by(nodes, &needed, &node.children)
            .and_then(|cols| read_out(outlet_reads, &node.outlets, cols));
    }
    let input = if roots.is_empty() && root_outlets.is_empty() {
        None
    } else {
        read_by(nodes, &needed, roots).and_then(|cols| read_out(outlet_reads, root_outlets, cols))
    };
    for (node, needed) in nodes.iter_mut().zip(needed) {
        if let Some(n) = needed {
            node.op.narrow(&n);
        }
    }
    input
}

/// The columns `readers` read of what feeds them, each reading of its output what `needed`
/// says (`None`: all of it); `None` when one of them cannot say.
fn read_by(nodes: &[Node], needed: &[Option<Vec<usize>>], readers: &[usize]) -> Option<Vec<usize>> {
    let mut cols = Vec::new();
    for &r in readers {
        cols.extend(nodes[r].op.reads(needed[r].as_deref())?);
    }
    cols.sort_unstable();
    cols.dedup();
    Some(cols)
}

/// `cols` and the columns `outlets` read, per `outlet_reads`; `None` when one reads all.
fn read_out(
    outlet_reads: &[Option<Vec<usize>>],
    outlets: &[usize],
    mut cols: Vec<usize>,
) -> Option<Vec<usize>> {
    for &o in outlets {
        cols.extend(outlet_reads.get(o)?.as_deref()?);
    }
    cols.sort_unstable();
    cols.dedup();
    Some(cols)
}

impl Chain {
    /// Operators `(id, instance, parents)`, each after what it reads (operators before it,
    /// or `None`: the task's input; several for a union), and outlets by the operator they
    /// leave after, each read whole.
    ///
    /// # Errors
    /// An operator or outlet after an operator not before it (a planning error).
    pub fn new(ops: Vec<Linked>, outlets_after: &[Option<usize>]) -> Result<Self> {
        Self::reading(ops, outlets_after, &[])
    }

    /// As [`Self::new`], outlet `o` taking only the columns `outlet_reads[o]` names (what the
    /// next stage reads, and the shuffle's keys): the operators before it may leave the
    /// others out (null, or a default), and so may the source. `None` or no entry: whole.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn reading(
        ops: Vec<Linked>,
        outlets_after: &[Option<usize>],
        outlet_reads: &[Option<Vec<usize>>],
    ) -> Result<Self> {
        let mut nodes: Vec<Node> = Vec::with_capacity(ops.len());
        let mut roots = Vec::new();
        for (i, (id, op, parents)) in ops.into_iter().enumerate() {
            let mut held = 0;
            for parent in &parents {
                match *parent {
                    None => roots.push(i),
                    Some(p) if p < i => {
                        nodes[p].children.push(i);
                        held =
                            held.max(nodes[p].held.saturating_add(nodes[p].op.watermark_delay()));
                    }
                    Some(p) => {
                        return Err(Error::internal(format!(
                            "operator {id} follows operator {p}, which is not before it"
                        )));
                    }
                }
            }
            nodes.push(Node {
                id,
                op,
                root: parents.contains(&None),
                held,
                children: Vec::new(),
                outlets: Vec::new(),
            });
        }
        let mut root_outlets = Vec::new();
        for (o, after) in outlets_after.iter().enumerate() {
            match after {
                None => root_outlets.push(o),
                Some(p) => nodes
                    .get_mut(*p)
                    .ok_or_else(|| Error::internal(format!("outlet {o} after no operator {p}")))?
                    .outlets
                    .push(o),
            }
        }
        let input_columns = narrow(&mut nodes, &roots, &root_outlets, outlet_reads);
        let pending = vec![Vec::new(); nodes.len()];
        let delay = nodes
            .iter()
            .map(|n| n.held.saturating_add(n.op.watermark_delay()))
            .max()
            .unwrap_or(0);
        Ok(Self {
            nodes,
            roots,
            root_outlets,
            pending,
            delay,
            input_columns,
        })
    }

    /// The columns (positions) of the task's input that its operators read, when each says
    /// and no outlet takes the input whole; `None`: all of them.
    #[must_use]
    pub fn input_columns(&self) -> Option<&[usize]> {
        self.input_columns.as_deref()
    }

    /// Records arriving on the task's input `input`.
    ///
    /// # Errors
    /// Operator errors.
    pub fn push(&mut self, input: Input, batch: RecordBatch, metrics: &Metrics) -> Result<Emitted> {
        let mut em = Emitted::default();
        let roots = self.roots.iter().map(|&r| Dest::Op(r));
        let outlets = self.root_outlets.iter().map(|&o| Dest::Out(o));
        spread(batch, roots.chain(outlets), &mut self.pending, &mut em);
        self.run(input, None, metrics, &mut em)?;
        Ok(em)
    }

    /// The task's input `input` ended: the operators reading it (the roots) hear so, and
    /// what they emit flows through the operators after them.
    ///
    /// # Errors
    /// Operator errors.
    pub fn input_end(&mut self, input: Input, metrics: &Metrics) -> Result<Emitted> {
        let mut em = Emitted::default();
        {
            let Self { nodes, pending, .. } = &mut *self;
            for (i, node) in nodes.iter_mut().enumerate().filter(|(_, n)| n.root) {
                let mut out = Output::default();
                node.op.on_input_end(input, &mut out)?;
                let rows = out.batches.iter().map(|b| b.num_rows() as u64).sum();
                metrics.records(&node.id, 0, rows);
                em.side.extend(out.side.into_iter().map(|b| (i, b)));
                for b in out.batches {
                    let children = node.children.iter().map(|&c| Dest::Op(c));
                    let outlets = node.outlets.iter().map(|&o| Dest::Out(o));
                    spread(b, children.chain(outlets), pending, &mut em);
                }
            }
        }
        self.run(input, None, metrics, &mut em)?;
        Ok(em)
    }

    /// Event time reached `wm`: every operator fires what it completes, in order, so an
    /// operator sees what the ones before it fired before it fires itself.
    ///
    /// # Errors
    /// Operator errors.
    pub fn watermark(&mut self, wm: Millis, metrics: &Metrics) -> Result<Emitted> {
        let mut em = Emitted::default();
        self.run(Input::ONLY, Some(wm), metrics, &mut em)?;
        Ok(em)
    }

    /// The watermark the task's output carries when its input's is `wm`: held back by what
    /// its operators hold back, so that their results are never behind it. The end of event
    /// time stays the end.
    #[must_use]
    pub fn output_watermark(&self, wm: Millis) -> Millis {
        held_back(wm, self.delay)
    }

    /// Capture every operator's state, by id (`portable`: for a savepoint, see
    /// [`crate::operator::Operator::capture`]).
    ///
    /// # Errors
    /// Operator capture errors.
    pub fn capture(&self, portable: bool) -> Result<Vec<(String, Capture)>> {
        self.nodes
            .iter()
            .map(|n| Ok((n.id.clone(), n.op.capture(portable)?)))
            .collect()
    }

    fn run(
        &mut self,
        input: Input,
        fire: Option<Millis>,
        metrics: &Metrics,
        em: &mut Emitted,
    ) -> Result<()> {
        let Self { nodes, pending, .. } = self;
        for i in 0..nodes.len() {
            let waiting = std::mem::take(&mut pending[i]);
            let node = &mut nodes[i];
            let port = if node.root { input } else { Input::ONLY };
            let mut produced = Vec::new();
            for b in waiting {
                let rows = b.num_rows() as u64;
                let mut out = Output::default();
                let before = node.op.counters();
                node.op.process(port, b, &mut out)?;
                let after = node.op.counters();
                metrics
                    .late_records
                    .inc_by(after.late_records - before.late_records);
                metrics
                    .duplicates
                    .inc_by(after.duplicates - before.duplicates);
                metrics.records(
                    &node.id,
                    rows,
                    out.batches.iter().map(|b| b.num_rows() as u64).sum(),
                );
                produced.extend(out.batches);
                em.side.extend(out.side.into_iter().map(|b| (i, b)));
            }
            if let Some(wm) = fire {
                let mut out = Output::default();
                node.op.on_watermark(held_back(wm, node.held), &mut out)?;
                let rows = out.batches.iter().map(|b| b.num_rows() as u64).sum();
                metrics.records(&node.id, 0, rows);
                produced.extend(out.batches);
                em.side.extend(out.side.into_iter().map(|b| (i, b)));
            }
            for b in produced {
                let children = node.children.iter().map(|&c| Dest::Op(c));
                let outlets = node.outlets.iter().map(|&o| Dest::Out(o));
                spread(b, children.chain(outlets), pending, em);
            }
        }
        Ok(())
    }
}

/// Watermark `wm` held back `by`; the end of event time stays the end.
fn held_back(wm: Millis, by: Millis) -> Millis {
    if wm == Millis::MAX {
        wm
    } else {
        wm.saturating_sub(by)
    }
}

#[derive(Clone, Copy)]
enum Dest {
    Op(usize),
    Out(usize),
}

/// Give `batch` to every destination: shared (a batch's columns are reference-counted), the
/// last one without a copy of the column list.
fn spread(
    batch: RecordBatch,
    dests: impl Iterator<Item = Dest>,
    pending: &mut [Vec<RecordBatch>],
    em: &mut Emitted,
) {
    let mut dests = dests.peekable();
    let mut batch = Some(batch);
    while let Some(d) = dests.next() {
        let b = if dests.peek().is_some() {
            batch.clone()
        } else {
            batch.take()
        };
        let Some(b) = b else { return };
        match d {
            Dest::Op(i) => pending[i].push(b),
            Dest::Out(o) => em.out.push((o, b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::Chain;
    use crate::control::metrics::Metrics;
    use crate::error::Result;
    use crate::operator::{Input, Operator, Output};

    /// Keeps rows whose value is divisible by `by`; on a watermark emits one row holding it.
    struct Every {
        by: i64,
    }

    impl Operator for Every {
        fn process(&mut self, _: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
            let col = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64");
            let kept: Int64Array = col
                .iter()
                .flatten()
                .filter(|v| v % self.by == 0)
                .map(Some)
                .collect();
            out.batches.push(batch_of(kept.values()));
            Ok(())
        }

        fn on_watermark(&mut self, wm: crate::ids::Millis, out: &mut Output) -> Result<()> {
            out.batches.push(batch_of(&[wm * self.by]));
            Ok(())
        }
    }

    fn batch_of(v: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(v.to_vec()))]).expect("batch")
    }

    fn values(em: &super::Emitted, outlet: usize) -> Vec<i64> {
        em.out
            .iter()
            .filter(|(o, _)| *o == outlet)
            .flat_map(|(_, b)| {
                let a = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("int64");
                a.values().to_vec()
            })
            .collect()
    }

    #[test]
    fn a_tree_feeds_each_branch_and_fires_parents_first() {
        // input ─┬ every 2 ─┬ every 3 ─────────► outlet 0
        //        │          ├──────────────────► outlet 1
        //        │          └ every 1 (union) ─► outlet 4
        //        ├ every 5 ─┴──────────────────► outlet 2
        //        └─────────────────────────────► outlet 3
        let mut chain = Chain::new(
            vec![
                ("two".into(), Box::new(Every { by: 2 }), vec![None]),
                ("three".into(), Box::new(Every { by: 3 }), vec![Some(0)]),
                ("five".into(), Box::new(Every { by: 5 }), vec![None]),
                (
                    "both".into(),
                    Box::new(Every { by: 1 }),
                    vec![Some(0), Some(2)],
                ),
            ],
            &[Some(1), Some(0), Some(2), None, Some(3)],
        )
        .expect("a chain");
        let metrics = Metrics::new(vec!["t".into()]);
        let em = chain
            .push(
                Input::ONLY,
                batch_of(&(1..=12).collect::<Vec<_>>()),
                &metrics,
            )
            .expect("push");
        assert_eq!(values(&em, 0), [6, 12]);
        assert_eq!(values(&em, 1), [2, 4, 6, 8, 10, 12]);
        assert_eq!(values(&em, 2), [5, 10]);
        assert_eq!(values(&em, 3), (1..=12).collect::<Vec<_>>());
        assert_eq!(values(&em, 4), [2, 4, 6, 8, 10, 12, 5, 10]);
        let em = chain.watermark(3, &metrics).expect("watermark");
        // `three` first filters what `two` fired (6: kept), then fires 9.
        assert_eq!(values(&em, 0), [6, 9]);
        assert_eq!(values(&em, 1), [6]);
        assert_eq!(values(&em, 2), [15]);
        assert!(values(&em, 3).is_empty());
        // The union sees both inputs' firings before it fires.
        assert_eq!(values(&em, 4), [6, 15, 3]);
        assert!(
            Chain::new(
                vec![("x".into(), Box::new(Every { by: 1 }), vec![Some(0)])],
                &[]
            )
            .is_err()
        );
    }

    /// Three columns, `k` never null, `a` and `b` nullable strings.
    fn three() -> (Arc<Schema>, RecordBatch) {
        use datafusion::arrow::array::StringArray;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec!["a1", "a2", "a3", "a4"])),
                Arc::new(StringArray::from(vec!["b1", "b2", "b3", "b4"])),
            ],
        )
        .expect("batch");
        (schema, batch)
    }

    /// Records what reaches it; reads column `a` only.
    struct ReadsA(Arc<std::sync::Mutex<Vec<RecordBatch>>>);

    impl Operator for ReadsA {
        fn process(&mut self, _: Input, batch: RecordBatch, out: &mut Output) -> Result<()> {
            self.0.lock().expect("lock").push(batch.clone());
            out.batches.push(batch);
            Ok(())
        }

        fn reads(&self, _: Option<&[usize]>) -> Option<Vec<usize>> {
            Some(vec![1])
        }
    }

    #[test]
    fn a_filter_moves_only_the_columns_read_after_it_and_all_of_what_leaves() {
        use crate::expr::CompiledExpr;
        use crate::operator::filter::Filter;
        use crate::operator::select::Select;
        use datafusion::arrow::array::{Array, AsArray};
        let (schema, batch) = three();
        let filter = || {
            Box::new(Filter::new(
                CompiledExpr::compile("k % 2 = 0", &schema).expect("predicate"),
                Arc::clone(&schema),
            ))
        };
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        // input ─ filter ─ reads a ─► outlets
        let filter_then_a = |outlets: &[Option<usize>]| {
            Chain::new(
                vec![
                    ("filter".into(), filter(), vec![None]),
                    (
                        "reads".into(),
                        Box::new(ReadsA(Arc::clone(&seen))),
                        vec![Some(0)],
                    ),
                ],
                outlets,
            )
            .expect("a chain")
        };
        let mut chain = filter_then_a(&[Some(1)]);
        // The source need make `k` (the predicate's) and `a` only.
        assert_eq!(chain.input_columns(), Some(&[0, 1][..]));
        let metrics = Metrics::new(vec!["t".into()]);
        chain
            .push(Input::ONLY, batch.clone(), &metrics)
            .expect("push");
        let got = seen.lock().expect("lock").pop().expect("a batch");
        assert_eq!(got.num_rows(), 2);
        let a = got.column(1).as_string::<i32>();
        assert_eq!((a.value(0), a.value(1)), ("a2", "a4"));
        // `b`: nothing after the filter reads it, so it is null; nor `k`, which may not be
        // null: it is zero (the predicate read it all the same).
        assert_eq!(got.column(2).null_count(), 2);
        assert_eq!(got.column(0).null_count(), 0);
        assert_eq!(
            got.column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .values(),
            &[0, 0]
        );

        // An outlet after the filter that reads `a` only (the next stage's operators say
        // so): still only `a` is moved, and the source need make `k` and `a`.
        let mut chain = Chain::reading(
            vec![("filter".into(), filter(), vec![None])],
            &[Some(0)],
            &[Some(vec![1])],
        )
        .expect("a chain");
        assert_eq!(chain.input_columns(), Some(&[0, 1][..]));
        let em = chain
            .push(Input::ONLY, batch.clone(), &metrics)
            .expect("push");
        let (_, sent) = em.out.first().expect("outlet 0");
        let a = sent.column(1).as_string::<i32>();
        assert_eq!((a.value(0), a.value(1)), ("a2", "a4"));
        assert_eq!(sent.column(2).null_count(), 2);
        // The input leaving straight to such an outlet: the source need make `a` only.
        let straight = Chain::reading(Vec::new(), &[None], &[Some(vec![1])]).expect("a chain");
        assert_eq!(straight.input_columns(), Some(&[1][..]));
        // With a second outlet after the filter that reads everything, it moves everything.
        let both = Chain::reading(
            vec![("filter".into(), filter(), vec![None])],
            &[Some(0), Some(0)],
            &[Some(vec![1]), None],
        )
        .expect("a chain");
        assert_eq!(both.input_columns(), None);

        // The same filter with an outlet right after it: everything is moved.
        let mut chain = filter_then_a(&[Some(1), Some(0)]);
        assert_eq!(chain.input_columns(), None);
        // Nor when the input itself leaves whole.
        assert_eq!(filter_then_a(&[Some(1), None]).input_columns(), None);
        let em = chain
            .push(Input::ONLY, batch.clone(), &metrics)
            .expect("push");
        let (_, whole) = em.out.iter().find(|(o, _)| *o == 1).expect("outlet 1");
        assert_eq!(whole.column(2).null_count(), 0);
        assert_eq!(whole.column(2).as_string::<i32>().value(1), "b4");

        // A select of `b` after a select that renames all three: the filter moves `b` only
        // (and reads `k` for its predicate); the output is the same as without narrowing.
        let out_schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("x", DataType::Utf8, true),
            Field::new("y", DataType::Utf8, true),
        ]));
        let rename = Select::new(
            ["k", "a", "b"]
                .iter()
                .map(|c| CompiledExpr::compile(c, &schema).expect("column"))
                .collect(),
            Arc::clone(&out_schema),
        );
        let last_schema = Arc::new(Schema::new(vec![Field::new("y", DataType::Utf8, true)]));
        let last = Select::new(
            vec![CompiledExpr::compile("y", &out_schema).expect("y")],
            Arc::clone(&last_schema),
        );
        assert_eq!(rename.reads(Some(&[2])), Some(vec![2]));
        assert_eq!(last.reads(None), Some(vec![2]));
        let mut chain = Chain::new(
            vec![
                ("filter".into(), filter(), vec![None]),
                ("rename".into(), Box::new(rename), vec![Some(0)]),
                ("last".into(), Box::new(last), vec![Some(1)]),
            ],
            &[Some(2)],
        )
        .expect("a chain");
        assert_eq!(chain.input_columns(), Some(&[0, 2][..]));
        let em = chain.push(Input::ONLY, batch, &metrics).expect("push");
        let ys: Vec<&str> = em.out[0]
            .1
            .column(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ys, ["b2", "b4"]);
    }
}
