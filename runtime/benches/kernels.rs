//! Micro-benchmarks of the kernels on the reference workload's hot path, one 8,192-row batch
//! at a time: generating it, filtering it, routing it to key groups, and adding it to a
//! tumbling window over 100,000 live integer keys.
//!
//! `cargo bench -p weir-runtime --bench kernels`
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark: a panic is the report

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::RecordBatch;
use weir_runtime::keys::{KeyCodec, partition};
use weir_runtime::operator::{Input, Operator, Output};
use weir_runtime::plan::Plan;
use weir_runtime::source::datagen::Generator;

const ROWS: u64 = 8192;

/// The reference pipeline (see `benches/reference.rs`) with a key type of choice.
fn plan(key_type: &str, key: &str) -> Plan {
    let yaml = format!(
        "name: kernels
source:
  datagen:
    seed: 1
    fields:
      store_id: {key}
      amount: {{uniform: {{min: -100, max: 900}}}}
      ts: {{eventTime: {{step: 1ms}}}}
  schema:
    - {{name: store_id, type: {key_type}}}
    - {{name: amount, type: float64}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts}}
transforms:
  - filter: amount > 0
  - window: {{tumbling: 2h, keyBy: [store_id], aggregates: {{orders: count(*), sales: sum(amount)}}}}
sinks:
  - blackhole: {{}}
"
    );
    weir_runtime::plan_source("kernels.yaml", &yaml).unwrap()
}

fn int_plan() -> Plan {
    plan("int64", "{uniform: {min: 0, max: 99999}}")
}

/// The workload over 100,000 keys, as int64 and as strings (the `key` generator).
fn both_key_types() -> [(&'static str, Plan); 2] {
    [
        ("100k int64 keys", int_plan()),
        (
            "100k string keys",
            plan("string", "{key: {cardinality: 100000, prefix: store-}}"),
        ),
    ]
}

fn generator(p: &Plan) -> Generator {
    let spec = p.job.pipeline.source.datagen.as_ref().unwrap();
    Generator::new(spec, p.source_schema.clone()).unwrap()
}

/// Batch `n` of the stream, as one subtask reading every split would see it.
fn batch(g: &Generator, n: u64) -> RecordBatch {
    let ids: Vec<u64> = (n * ROWS..(n + 1) * ROWS).collect();
    g.batch(&ids).unwrap()
}

fn datagen(c: &mut Criterion) {
    let mut group = c.benchmark_group("datagen");
    group.throughput(Throughput::Elements(ROWS));
    for (name, p) in both_key_types() {
        let g = generator(&p);
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                batch(&g, n)
            });
        });
    }
    group.finish();
}

/// One batch through `op`, with what it emitted.
fn run(op: &mut dyn Operator, input: RecordBatch) -> Output {
    let mut out = Output::default();
    op.process(Input::ONLY, input, &mut out).unwrap();
    out
}

fn filter(c: &mut Criterion) {
    let p = int_plan();
    let input = batch(&generator(&p), 0);
    let mut op = p.stages[0].ops[0].op.instantiate(128).unwrap();
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("amount > 0", |b| {
        b.iter_batched(
            || input.clone(),
            |input| run(op.as_mut(), input),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn key_groups(c: &mut Criterion) {
    let p = int_plan();
    let input = batch(&generator(&p), 0);
    let keys = KeyCodec::new(&p.stages[1].input, vec![0]).unwrap();
    let mut group = c.benchmark_group("partition");
    group.throughput(Throughput::Elements(ROWS));
    for targets in [2u32, 8] {
        group.bench_function(format!("int64 key to {targets} subtasks"), |b| {
            b.iter(|| partition(&input, &keys, targets, 128).unwrap());
        });
    }
    group.finish();
}

fn window(c: &mut Criterion) {
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(ROWS));
    for (keys, p) in both_key_types() {
        let name = format!("tumbling, {keys}");
        let g = generator(&p);
        let mut op = p.stages[1].ops[0].op.instantiate(128).unwrap();
        // Warm: every key already has its group in the open window, as in steady state.
        for n in 0..100 {
            run(op.as_mut(), batch(&g, n));
        }
        let inputs: Vec<RecordBatch> = (100..164).map(|n| batch(&g, n)).collect();
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    i = (i + 1) % inputs.len();
                    inputs[i].clone()
                },
                |input| run(op.as_mut(), input),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(kernels, datagen, filter, key_groups, window);
criterion_main!(kernels);
