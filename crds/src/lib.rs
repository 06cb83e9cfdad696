//! Weir's API types.
//!
//! A job is a [`Pipeline`] (one source, ordered transforms, sinks) plus execution settings
//! ([`JobFile`]). `weir-runtime run job.yaml` reads a [`JobFile`]; the StreamJob CRD embeds the
//! same [`Pipeline`]. [`load_job`] parses YAML and runs every check that needs no data, so a
//! bad file fails before anything runs, with errors that name the field and its line:
//!
//! ```
//! let err = weir_crds::load_job("job.yaml", "bogus: 1\n").unwrap_err();
//! assert!(err.to_string().contains("bogus"));
//! ```

pub mod connectors;
pub mod duration;
pub mod locate;
pub mod pipeline;
pub mod validate;

pub use connectors::*;
pub use duration::Duration;
pub use pipeline::*;
pub use validate::{
    AggregateFn, FieldError, JobErrors, KAFKA_RAW_COLUMNS, load_job, parse_aggregate,
    parse_timestamp_ms, validate,
};

#[cfg(test)]
mod tests;
