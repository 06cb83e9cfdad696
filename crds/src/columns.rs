//! Which columns each step of a pipeline can see, and whether every reference names one.
//!
//! The runtime's planner type-checks expressions with DataFusion; the operator cannot link
//! it, yet must refuse a manifest that names an unknown column before deploying anything.
//! This module follows the column names through the transforms (a `select` replaces them, a
//! `window` yields its keys, `window_start`, `window_end` and its aggregates) and parses each
//! SQL expression just far enough to list the identifiers it reads. Types stay the planner's
//! job. Performs no I/O.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, visit_expressions};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::pipeline::{JobFile, SinkSpec, Transform};
use crate::validate::{FieldError, parse_aggregate};

/// Every reference to a column that the step it appears in cannot see, and every expression
/// that does not parse. Paths are relative to the job file (`transforms[1].filter`).
#[must_use]
pub fn check_columns(job: &JobFile) -> Vec<FieldError> {
    let p = &job.pipeline;
    let mut errs = Vec::new();
    let mut cols: Vec<String> = p.source.schema.iter().map(|f| f.name.clone()).collect();
    for (i, t) in p.transforms.iter().enumerate() {
        let base = format!("transforms[{i}]");
        match t {
            Transform::Filter(e) => expr_refs(&format!("{base}.filter"), e, &cols, &mut errs),
            Transform::Select(map) => {
                for (name, e) in map {
                    expr_refs(&format!("{base}.select.{name}"), e, &cols, &mut errs);
                }
                cols = map.keys().cloned().collect();
            }
            Transform::Dedup(d) => {
                names_exist(&format!("{base}.dedup.keyBy"), &d.key_by, &cols, &mut errs);
            }
            Transform::Window(w) => {
                names_exist(&format!("{base}.window.keyBy"), &w.key_by, &cols, &mut errs);
                for (name, agg) in &w.aggregates {
                    if let Ok((_, Some(arg))) = parse_aggregate(agg) {
                        expr_refs(
                            &format!("{base}.window.aggregates.{name}"),
                            &arg,
                            &cols,
                            &mut errs,
                        );
                    }
                }
                let mut next = w.key_by.clone();
                next.push("window_start".to_string());
                next.push("window_end".to_string());
                next.extend(w.aggregates.keys().cloned());
                cols = next;
            }
        }
    }
    for (i, s) in p.sinks.iter().enumerate() {
        if let SinkSpec::Kafka(k) = s {
            let base = format!("sinks[{i}].kafka");
            names_exist(&format!("{base}.keyBy"), &k.key_by, &cols, &mut errs);
            names_exist(
                &format!("{base}.headerFields"),
                &k.header_fields,
                &cols,
                &mut errs,
            );
            for (field, v) in [
                ("partitionBy", &k.partition_by),
                ("valueField", &k.value_field),
            ] {
                if let Some(v) = v {
                    names_exist(
                        &format!("{base}.{field}"),
                        std::slice::from_ref(v),
                        &cols,
                        &mut errs,
                    );
                }
            }
        }
    }
    errs
}

fn names_exist(path: &str, names: &[String], cols: &[String], errs: &mut Vec<FieldError>) {
    for n in names {
        if !cols.iter().any(|c| c == n) {
            errs.push(FieldError::new(path, unknown(n, cols)));
        }
    }
}

fn unknown(name: &str, cols: &[String]) -> String {
    format!(
        "unknown column `{name}`; columns here: {}",
        if cols.is_empty() {
            "none".to_string()
        } else {
            cols.join(", ")
        }
    )
}

/// Adds an error for every identifier in `sql` that is not in `cols` (unquoted identifiers
/// compare lower-cased, as DataFusion resolves them), or one parse error.
fn expr_refs(path: &str, sql: &str, cols: &[String], errs: &mut Vec<FieldError>) {
    if let Err(e) = crate::validate::expr_limits::check(path, sql) {
        errs.push(e);
        return;
    }
    let parsed = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr());
    let expr = match parsed {
        Ok(e) => e,
        Err(e) => {
            errs.push(FieldError::new(
                path,
                format!("`{sql}` is not a SQL expression: {e}"),
            ));
            return;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    let _ = visit_expressions(&expr, |e| {
        let ident = match e {
            Expr::Identifier(id) => Some(id),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if let Some(id) = ident {
            let name = if id.quote_style.is_some() {
                id.value.clone()
            } else {
                id.value.to_lowercase()
            };
            let known = cols.iter().any(|c| *c == name || c.to_lowercase() == name);
            if !known && !seen.contains(&name) {
                seen.push(name.clone());
                errs.push(FieldError::new(path, unknown(&name, cols)));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_job;

    const JOB: &str = "\
source:
  datagen: {count: 10, fields: {store_id: {key: {cardinality: 5}}, amount: {uniform: {min: 0, max: 9}}, ts: {eventTime: {}}}}
  schema: [{name: store_id, type: string}, {name: amount, type: int64}, {name: ts, type: timestamp}]
  eventTime: {field: ts}
transforms:
  - filter: amount > 0 AND store_id <> 'x'
  - select: {store_id: store_id, doubled: \"amount * 2\", ts: ts}
  - window: {tumbling: 1m, keyBy: [store_id], aggregates: {n: count(*), s: sum(doubled)}}
  - filter: s > 10 AND window_end > window_start
sinks:
  - kafka: {bootstrapServers: k:9092, topic: t, transactionalIdPrefix: p, keyBy: [store_id], headerFields: [n]}
";

    fn check(src: &str) -> Vec<(String, String)> {
        let job = load_job("job.yaml", src).expect("job parses");
        check_columns(&job)
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    #[test]
    fn columns_follow_select_and_window_through_the_pipeline() {
        assert_eq!(check(JOB), vec![]);
    }

    #[test]
    fn each_unknown_column_is_named_at_the_step_that_reads_it() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "amount > 0 AND",
                "amout > 0 AND",
                "transforms[0].filter",
                "`amout`",
            ),
            (
                "\"amount * 2\"",
                "\"amount * qty\"",
                "transforms[1].select.doubled",
                "`qty`",
            ),
            (
                "sum(doubled)",
                "sum(amount)",
                "transforms[2].window.aggregates.s",
                "`amount`",
            ),
            (
                "keyBy: [store_id], agg",
                "keyBy: [store], agg",
                "transforms[2].window.keyBy",
                "`store`",
            ),
            (
                "headerFields: [n]",
                "headerFields: [ts]",
                "sinks[0].kafka.headerFields",
                "`ts`",
            ),
        ];
        for (from, to, path, name) in cases {
            // A wrong window key also hides the key from later steps; the first error is
            // the one at the step that reads it.
            let errs = check(&JOB.replace(from, to));
            assert!(!errs.is_empty(), "{to}: no error");
            assert_eq!(errs[0].0, *path, "{to}: {errs:?}");
            assert!(errs[0].1.contains(name), "{to}: {}", errs[0].1);
            assert_eq!(
                errs.iter().filter(|e| e.0 == *path).count(),
                1,
                "{to}: {errs:?}"
            );
        }
    }

    #[test]
    fn unparsable_expression_is_reported_with_its_text() {
        let errs = check(&JOB.replace("amount > 0 AND", "amount > > 0 AND"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].1.contains("is not a SQL expression"), "{errs:?}");
    }
}
