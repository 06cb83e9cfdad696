//! The source's own checks (exactly one connector, the schema, event time) and the one
//! `match` that hands each connector to its checks, which live in the connector's file.

use super::{FieldError, datagen, file, kafka, nexmark};
use crate::pipeline::{FieldType, SourceConnector, SourceSpec};

/// The whole `source`.
pub(super) fn check(src: &SourceSpec, errs: &mut Vec<FieldError>) {
    let given: Vec<&str> = src.connectors().map(SourceConnector::name).collect();
    if given.len() != 1 {
        errs.push(FieldError::new(
            "source",
            format!(
                "give exactly one of datagen, file, kafka, nexmark; found {}",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ),
        ));
    }
    if src.schema.is_empty() {
        errs.push(FieldError::new("source.schema", "needs at least one field"));
    }
    for (i, f) in src.schema.iter().enumerate() {
        if src.schema[..i].iter().any(|g| g.name == f.name) {
            errs.push(FieldError::new(
                format!("source.schema[{i}].name"),
                format!("duplicate field `{}`", f.name),
            ));
        }
    }
    if let Some(et) = &src.event_time {
        match src.schema.iter().find(|f| f.name == et.field) {
            None => errs.push(FieldError::new(
                "source.eventTime.field",
                format!(
                    "`{}` is not in source.schema ({})",
                    et.field,
                    field_names(src)
                ),
            )),
            Some(f) if f.data_type != FieldType::Timestamp => errs.push(FieldError::new(
                "source.eventTime.field",
                format!(
                    "`{}` has type {:?}; event time needs a timestamp field",
                    et.field, f.data_type
                ),
            )),
            Some(_) => {}
        }
        if et.idle_timeout.is_some_and(|t| t.get().is_zero()) {
            errs.push(FieldError::new(
                "source.eventTime.idleTimeout",
                "must be greater than 0 (leave it out to let a silent partition hold the watermark)",
            ));
        }
    }
    // After the schema's own checks, because most connector checks are against the schema.
    // Every connector given is checked, even several, so one edit cycle fixes them all.
    for connector in src.connectors() {
        match connector {
            SourceConnector::Datagen(d) => datagen::check_source(d, src, errs),
            SourceConnector::File(f) => file::check_source(f, errs),
            SourceConnector::Kafka(k) => kafka::check_source(k, src, errs),
            SourceConnector::Nexmark(n) => nexmark::check_source(n, src, errs),
        }
    }
}

/// `fields: a, b, c`: what a message naming a missing field offers instead.
pub(super) fn field_names(src: &SourceSpec) -> String {
    let names: Vec<&str> = src.schema.iter().map(|f| f.name.as_str()).collect();
    format!("fields: {}", names.join(", "))
}

/// `source.schema` must be exactly `want`, in order: for a connector whose records have a
/// fixed schema (Kafka `format: raw`, Nexmark), which the job still writes out so that a
/// reader of the manifest sees every column. `who` names the connector in the message.
pub(super) fn fixed_schema(
    src: &SourceSpec,
    want: &[(&str, FieldType)],
    who: &str,
    errs: &mut Vec<FieldError>,
) {
    let got: Vec<(&str, FieldType)> = src
        .schema
        .iter()
        .map(|f| (f.name.as_str(), f.data_type))
        .collect();
    if got != want {
        errs.push(FieldError::new(
            "source.schema",
            format!(
                "{who} needs exactly these fields in order: {}",
                want.iter()
                    .map(|(n, t)| format!("{{name: {n}, type: {}}}", type_word(*t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
}

/// A type as `source.schema` spells it.
fn type_word(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "string",
        FieldType::Int64 => "int64",
        FieldType::Float64 => "float64",
        FieldType::Boolean => "boolean",
        FieldType::Timestamp => "timestamp",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_of_several_connectors_is_still_checked() {
        let src = "\
source:
  file: {path: in.jsonl, batchSize: 0}
  kafka: {bootstrapServers: k:9092, topic: ' '}
  schema: [{name: a, type: int64}]
sinks: [{stdout: {}}]
";
        let e = crate::load_job("job.yaml", src).expect_err("two connectors");
        let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"source.file.batchSize"), "{e}");
        assert!(paths.contains(&"source.kafka.topic"), "{e}");
        assert!(e.to_string().contains("found file, kafka"), "{e}");
    }
}
