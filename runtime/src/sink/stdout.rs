//! `stdout` (JSON lines, at-least-once: output before a crash repeats after restore) and
//! `blackhole` (discards; for benchmarks).

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;

use super::{
    Committable, Guarantee, PlainSink, SinkConnector, SinkContext, SinkInstance, json_lines,
};
use crate::error::Result;
use crate::ids::CheckpointId;

/// Connector for `stdout` and `blackhole`.
#[derive(Debug)]
pub struct StdoutConnector {
    /// Blackhole when true.
    pub discard: bool,
}

struct Stdout {
    discard: bool,
}

impl PlainSink for Stdout {
    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if !self.discard {
                let bytes = json_lines(batch)?;
                // A closed stdout (`| head`) must not fail the job.
                let _ = std::io::stdout().lock().write_all(&bytes);
            }
            Ok(())
        })
    }

    fn flush(&mut self, _checkpoint: CheckpointId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let _ = std::io::stdout().flush();
            Ok(())
        })
    }
}

impl SinkConnector for StdoutConnector {
    fn name(&self) -> String {
        if self.discard { "blackhole" } else { "stdout" }.to_string()
    }

    fn guarantee(&self) -> Guarantee {
        if self.discard {
            Guarantee::None
        } else {
            Guarantee::AtLeastOnce
        }
    }

    fn open(&self, _: &SinkContext) -> Result<SinkInstance> {
        Ok(SinkInstance::Plain(Box::new(Stdout {
            discard: self.discard,
        })))
    }

    fn recover_and_commit(&self, _: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
