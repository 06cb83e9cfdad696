//! The file connector's checks. The file sink has none: its one setting, a directory, can
//! only be judged with I/O, which validation does not do.

use super::FieldError;
use crate::pipeline::FileSourceSpec;

/// The file source's settings.
pub(super) fn check_source(f: &FileSourceSpec, errs: &mut Vec<FieldError>) {
    if f.batch_size == 0 || f.batch_size > crate::pipeline::MAX_BATCH_SIZE {
        errs.push(FieldError::new(
            "source.file.batchSize",
            format!("must be between 1 and {}", crate::pipeline::MAX_BATCH_SIZE),
        ));
    }
}
