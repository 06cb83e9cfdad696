//! Exactly-once JSON-lines files.
//!
//! Each subtask writes the records of one checkpoint interval to
//! `<dir>/.pending/part-c<n>-t<subtask>-g<generation>.jsonl`; the checkpoint's committable
//! names that file; commit renames it to `<dir>/part-c<n>-t<subtask>-g<generation>.jsonl`.
//! Readers list `part-*.jsonl` and never see uncommitted data. A rename is atomic, and a
//! missing pending file with its final file present means "already committed", which makes
//! commit idempotent.

use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;

use super::{
    Committable, Guarantee, SinkConnector, SinkContext, SinkInstance, TwoPhaseCommitSink,
    json_lines,
};
use crate::checkpoint::state::StagedFile;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;

const PENDING: &str = ".pending";

/// Connector for one `file` sink directory.
#[derive(Debug)]
pub struct FileSinkConnector {
    dir: PathBuf,
}

impl FileSinkConnector {
    /// Sink writing into `dir`.
    #[must_use]
    pub fn new(dir: &str) -> Self {
        Self {
            dir: PathBuf::from(dir),
        }
    }
}

/// The staged files among `committables` (others are empty transactions), refusing a
/// committable of another kind: it would mean the checkpoint's sink ids were mixed up.
fn parse(dir: &Path, committables: Vec<Committable>) -> Result<Vec<StagedFile>> {
    committables
        .into_iter()
        .filter_map(|c| match c {
            Committable::Empty => None,
            Committable::StagedFile(f) => Some(Ok(f)),
            other => Some(Err(err(
                dir,
                format!("checkpoint records a committable of another sink: {other:?}"),
            ))),
        })
        .collect()
}

fn err(dir: &Path, message: String) -> Error {
    Error::Sink {
        sink: format!("file {}", dir.display()),
        message,
    }
}

/// Rename `.pending/<file>` into place; succeed when that already happened.
fn commit_one(dir: &Path, c: &StagedFile) -> Result<()> {
    let pending = dir.join(PENDING).join(&c.file);
    let target = dir.join(&c.file);
    match std::fs::rename(&pending, &target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && target.exists() => Ok(()),
        Err(e) => Err(err(dir, format!("commit {}: {e}", pending.display()))),
    }
}

struct FileSink {
    dir: PathBuf,
    ctx: SinkContext,
    txn: Option<CheckpointId>,
    file: Option<(String, std::io::BufWriter<std::fs::File>)>,
}

impl TwoPhaseCommitSink for FileSink {
    fn begin(&mut self, txn: CheckpointId) -> BoxFuture<'_, Result<()>> {
        self.txn = Some(txn);
        Box::pin(async { Ok(()) })
    }

    fn write<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            if self.file.is_none() {
                let txn = self
                    .txn
                    .ok_or_else(|| Error::internal("file sink write outside a transaction"))?;
                let name = format!(
                    "part-c{:010}-t{:03}-g{}.jsonl",
                    txn.0, self.ctx.subtask, self.ctx.generation
                );
                let path = self.dir.join(PENDING).join(&name);
                let f = std::fs::File::create(&path)
                    .map_err(|e| err(&self.dir, format!("create {}: {e}", path.display())))?;
                self.file = Some((name, std::io::BufWriter::new(f)));
            }
            let bytes = json_lines(batch)?;
            if let Some((name, w)) = &mut self.file {
                w.write_all(&bytes)
                    .map_err(|e| err(&self.dir, format!("write {name}: {e}")))?;
            }
            Ok(())
        })
    }

    fn pre_commit(&mut self) -> BoxFuture<'_, Result<Committable>> {
        Box::pin(async move {
            let Some((name, mut w)) = self.file.take() else {
                return Ok(Committable::Empty);
            };
            w.flush()
                .map_err(|e| err(&self.dir, format!("flush {name}: {e}")))?;
            let f = w
                .into_inner()
                .map_err(|e| err(&self.dir, format!("flush {name}: {e}")))?;
            f.sync_all()
                .map_err(|e| err(&self.dir, format!("sync {name}: {e}")))?;
            Ok(Committable::StagedFile(StagedFile { file: name }))
        })
    }

    fn commit(&mut self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for c in parse(&self.dir, committables)? {
                commit_one(&self.dir, &c)?;
            }
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some((name, _)) = self.file.take() {
                let _ = std::fs::remove_file(self.dir.join(PENDING).join(name));
            }
            Ok(())
        })
    }
}

impl SinkConnector for FileSinkConnector {
    fn name(&self) -> String {
        format!("file {}", self.dir.display())
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<SinkInstance> {
        let pending = self.dir.join(PENDING);
        std::fs::create_dir_all(&pending)
            .map_err(|e| err(&self.dir, format!("create {}: {e}", pending.display())))?;
        Ok(SinkInstance::TwoPhase(Box::new(FileSink {
            dir: self.dir.clone(),
            ctx: ctx.clone(),
            txn: None,
            file: None,
        })))
    }

    fn recover_and_commit(&self, committables: Vec<Committable>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut keep = Vec::new();
            for c in parse(&self.dir, committables)? {
                commit_one(&self.dir, &c)?;
                keep.push(c.file);
            }
            // Anything still pending belongs to a checkpoint that never completed: abort it.
            let pending = self.dir.join(PENDING);
            if let Ok(rd) = std::fs::read_dir(&pending) {
                for entry in rd.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if !keep.contains(&name) {
                        tracing::info!(file = %entry.path().display(), "aborting pending output of an incomplete checkpoint");
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            Ok(())
        })
    }
}
