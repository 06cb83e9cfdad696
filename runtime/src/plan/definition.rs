//! What each stateful operator's state means and what each source's positions are positions
//! in, as the checkpoint records them and a restore compares them (`checkpoint::compat`).
//!
//! The words here are checkpoint format: a restore after an upgrade of Weir compares them with
//! what the old version wrote, so they are spelled out by hand (never a `Debug` form, which a
//! dependency may change) and an aspect is added only with care (an added aspect makes every
//! older checkpoint of that operator look changed).

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Schema};
use weir_crds::{SourceConnector, Transform, WindowSpec};

use super::{OpPlan, Operation, Plan};
use crate::checkpoint::compat::{OperatorRecord, SourceRecord};

impl Plan {
    /// Records of every stateful operator.
    #[must_use]
    pub fn operator_records(&self) -> Vec<OperatorRecord> {
        let sql = self.job.pipeline.sql.is_some();
        self.operators()
            .filter(|o| o.is_stateful())
            .map(|o| OperatorRecord {
                id: o.id.clone(),
                at: match o.id.split_once('/') {
                    Some((sink, _)) if sql => format!("the statement writing `{sink}`"),
                    _ => o.path.clone(),
                },
                definition: definition(o),
            })
            .collect()
    }

    /// Records of every source, stage `i` reading source `i`.
    #[must_use]
    pub fn source_records(&self) -> Vec<SourceRecord> {
        self.sources
            .iter()
            .enumerate()
            .map(|(i, s)| SourceRecord {
                stage: u32::try_from(i).unwrap_or(u32::MAX),
                name: s
                    .spec
                    .name
                    .clone()
                    .unwrap_or_else(|| {
                        if i == 0 {
                            "source".into()
                        } else {
                            format!("source-{i}")
                        }
                    })
                    .to_lowercase(),
                reads: match s.spec.connector() {
                    Some(SourceConnector::Kafka(k)) => format!("kafka topic {}", k.topic),
                    Some(SourceConnector::File(f)) => format!("file {}", f.path),
                    Some(SourceConnector::Datagen(_)) => "datagen".into(),
                    Some(SourceConnector::Nexmark(_)) => "nexmark".into(),
                    None => "nothing".into(),
                },
            })
            .collect()
    }
}

/// The aspects of `op`'s state.
fn definition(op: &OpPlan) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        d.insert(k.to_string(), v);
    };
    match &op.operation {
        Operation::Transform(Transform::Window(w)) => {
            put("kind", "window".into());
            window(w, &op.input, &mut put);
        }
        Operation::GroupBy(w, _) if op.groups_at_time() => {
            put("kind", "window".into());
            window(w, &op.input, &mut put);
        }
        Operation::GroupBy(w, _) => {
            put("kind", "group-by".into());
            put("keys", typed(&w.key_by, &op.input));
            put("aggregates", aggregates(w));
            put("input", sorted_columns(&op.input));
        }
        Operation::Transform(Transform::Dedup(dd)) => {
            put("kind", "dedup".into());
            put("keys", typed(&dd.key_by, &op.input));
        }
        Operation::Join(j) => {
            use crate::operator::join::JoinKind;
            let kind = match j.kind {
                JoinKind::Inner => "inner join",
                JoinKind::Left => "left join",
                JoinKind::Right => "right join",
                JoinKind::Full => "full join",
            };
            put("kind", kind.into());
            let on: Vec<String> = j.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
            put("on", on.join(", "));
            let bounds: Vec<String> = j
                .compares
                .iter()
                .map(|c| {
                    let b =
                        |v: Option<i64>| v.map_or("unbounded".to_string(), |v| format!("{v}ms"));
                    format!("{} - {} in [{}, {}]", c.left, c.right, b(c.lo), b(c.hi))
                })
                .collect();
            put("bounds", bounds.join(", "));
            put("left", columns(&op.input));
            if let Some((right, _)) = &op.second {
                put("right", columns(right));
            }
        }
        Operation::TopN(t) => {
            put("kind", "top-n".into());
            put("partition", typed(&t.partition, &op.input));
            let order: Vec<String> = t
                .order
                .iter()
                .map(|(c, desc, _)| format!("{c} {}", if *desc { "desc" } else { "asc" }))
                .collect();
            put("order", order.join(", "));
            put("n", t.n.to_string());
            put("input", columns(&op.input));
        }
        Operation::Transform(Transform::Filter(_) | Transform::Select(_)) | Operation::Union => {}
    }
    d
}

fn window(w: &WindowSpec, input: &Schema, put: &mut dyn FnMut(&str, String)) {
    let ms = |d: weir_crds::Duration| d.get().as_millis();
    let geometry = match (&w.tumbling, &w.sliding, &w.session) {
        (Some(t), _, _) => format!("tumbling {}ms", ms(*t)),
        (_, Some(s), _) => format!("sliding {}ms every {}ms", ms(s.size), ms(s.slide)),
        (_, _, Some(s)) => format!("session gap {}ms", ms(s.gap)),
        _ => "none".into(),
    };
    put("window", geometry);
    put("keys", typed(&w.key_by, input));
    put("aggregates", aggregates(w));
    // Only the columns the window reads reach it (the shuffle is pruned), so this is what
    // its accumulators are over, not whatever else upstream carries.
    put("input", sorted_columns(input));
}

/// Aggregate functions in order (accumulators are stored by position); output names are not
/// state.
fn aggregates(w: &WindowSpec) -> String {
    let a: Vec<&str> = w.aggregates.values().map(|s| s.trim()).collect();
    a.join(", ")
}

fn typed(cols: &[String], schema: &Schema) -> String {
    let c: Vec<String> = cols
        .iter()
        .map(|c| match schema.field_with_name(c) {
            Ok(f) => format!("{c} {}", type_name(f.data_type())),
            Err(_) => c.clone(),
        })
        .collect();
    c.join(", ")
}

/// Columns in order: rows are stored by position.
fn columns(schema: &Schema) -> String {
    let c: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
        .collect();
    c.join(", ")
}

/// Columns by name: for state that reads columns by name, where their order upstream is not
/// its business.
fn sorted_columns(schema: &Schema) -> String {
    let mut c: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
        .collect();
    c.sort();
    c.join(", ")
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Int64 => "int64".into(),
        DataType::Int32 => "int32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Date32 => "date".into(),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
#[path = "definition_tests.rs"]
mod tests;
