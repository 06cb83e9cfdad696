//! The file connector's checks. The file sink has none: its one setting, a directory, can
//! only be judged with I/O, which validation does not do.

use super::FieldError;
use crate::pipeline::FileSourceSpec;

/// The file source's settings.
pub(super) fn check_source(f: &FileSourceSpec, errs: &mut Vec<FieldError>) {
    if f.batch_size == 0 {
        errs.push(FieldError::new(
            "source.file.batchSize",
            "must be at least 1",
        ));
    }
}
