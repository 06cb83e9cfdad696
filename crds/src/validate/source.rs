//! The source's own checks (exactly one connector, the schema, event time) and the hand-off
//! to the connector's checks, which live in the connector's file.

use super::{FieldError, datagen, file, kafka};
use crate::pipeline::{FieldType, SourceSpec};

/// The whole `source`.
pub(super) fn check(src: &SourceSpec, errs: &mut Vec<FieldError>) {
    let given: Vec<&str> = [
        ("datagen", src.datagen.is_some()),
        ("file", src.file.is_some()),
        ("kafka", src.kafka.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    if given.len() != 1 {
        errs.push(FieldError::new(
            "source",
            format!(
                "give exactly one of datagen, file, kafka; found {}",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ),
        ));
    }
    if let Some(k) = &src.kafka {
        kafka::check_source(k, src, errs);
    }
    if let Some(f) = &src.file {
        file::check_source(f, errs);
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
    }
    if let Some(d) = &src.datagen {
        datagen::check_source(d, src, errs);
    }
}

/// `fields: a, b, c`: what a message naming a missing field offers instead.
pub(super) fn field_names(src: &SourceSpec) -> String {
    let names: Vec<&str> = src.schema.iter().map(|f| f.name.as_str()).collect();
    format!("fields: {}", names.join(", "))
}
