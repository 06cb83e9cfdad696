//! The datagen source's checks: its settings, and a generator for every schema field that
//! can produce that field's type.

use super::FieldError;
use super::source::field_names;
use crate::pipeline::{DatagenSpec, FieldGenerator, FieldType, SourceSpec};

/// The generator's settings and its `fields` against `source.schema`, both ways: every
/// schema field needs a generator, and every generator a schema field of a type it produces.
pub(super) fn check_source(d: &DatagenSpec, src: &SourceSpec, errs: &mut Vec<FieldError>) {
    use crate::pipeline::{MAX_BATCH_SIZE, MAX_SPLITS};
    if d.splits == 0 || d.splits > MAX_SPLITS {
        errs.push(FieldError::new(
            "source.datagen.splits",
            format!("must be between 1 and {MAX_SPLITS}"),
        ));
    }
    if d.batch_size == 0 || d.batch_size > MAX_BATCH_SIZE {
        errs.push(FieldError::new(
            "source.datagen.batchSize",
            format!("must be between 1 and {MAX_BATCH_SIZE}"),
        ));
    }
    if d.rate == Some(0) {
        errs.push(FieldError::new(
            "source.datagen.rate",
            "must be at least 1 (omit it for no limit)",
        ));
    }
    for f in &src.schema {
        if !d.fields.contains_key(&f.name) {
            errs.push(FieldError::new(
                "source.datagen.fields",
                format!("no generator for schema field `{}`", f.name),
            ));
        }
    }
    for (name, g) in &d.fields {
        let path = format!("source.datagen.fields.{name}");
        let Some(field) = src.schema.iter().find(|f| &f.name == name) else {
            errs.push(FieldError::new(
                path,
                format!("`{name}` is not in source.schema ({})", field_names(src)),
            ));
            continue;
        };
        if !generates(&path, g, errs, field.data_type) {
            errs.push(FieldError::new(
                path,
                format!(
                    "generator cannot produce type {:?} of field `{name}`",
                    field.data_type
                ),
            ));
        }
    }
}

/// Whether generator `g` (at `path`) can produce a value of type `t`; reports its own
/// settings that are out of range on the way.
fn generates(path: &str, g: &FieldGenerator, errs: &mut Vec<FieldError>, t: FieldType) -> bool {
    match g {
        FieldGenerator::Sequence {} => t == FieldType::Int64,
        FieldGenerator::Key { cardinality, .. } => {
            if *cardinality == 0 {
                errs.push(FieldError::new(
                    format!("{path}.key.cardinality"),
                    "must be at least 1",
                ));
            }
            t == FieldType::String
        }
        FieldGenerator::Uniform { min, max } => {
            if min > max || !min.is_finite() || !max.is_finite() {
                errs.push(FieldError::new(
                    format!("{path}.uniform"),
                    "needs finite min <= max",
                ));
            }
            matches!(t, FieldType::Int64 | FieldType::Float64)
        }
        FieldGenerator::Bernoulli { p } => {
            if !(0.0..=1.0).contains(p) {
                errs.push(FieldError::new(
                    format!("{path}.bernoulli.p"),
                    "must be within [0, 1]",
                ));
            }
            t == FieldType::Boolean
        }
        FieldGenerator::EventTime { step, .. } => {
            if step.get().is_zero() {
                errs.push(FieldError::new(
                    format!("{path}.eventTime.step"),
                    "must be greater than 0",
                ));
            }
            t == FieldType::Timestamp
        }
    }
}
