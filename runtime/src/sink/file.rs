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

/// Rename `.pending/<file>` into place, in the directory it was staged in (see
/// [`StagedFile::dir`]); succeed when that already happened.
fn commit_one(own: &Path, c: &StagedFile) -> Result<()> {
    let dir = c.dir.as_deref().map_or(own, Path::new);
    if dir != own {
        tracing::info!(file = %c.file, staged_in = %dir.display(), sink = %own.display(), "committing a file of the restored checkpoint where it was staged");
    }
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
            Ok(Committable::StagedFile(StagedFile {
                file: name,
                dir: Some(self.dir.display().to_string()),
            }))
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
                if c.dir.as_deref().is_none_or(|d| Path::new(d) == self.dir) {
                    keep.push(c.file);
                }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    /// A job started from another job's checkpoint commits that checkpoint's files where they
    /// were staged. (Before the directory was recorded, the restoring sink looked in its own
    /// directory and failed the start: seen as a flaky `checkpoints` test whenever the other
    /// job's newest checkpoint had output.)
    #[test]
    fn a_file_staged_by_another_sink_is_committed_where_it_was_staged() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(a.join(PENDING)).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join(PENDING).join("part-c3.jsonl"), "{}\n").unwrap();
        let staged = StagedFile {
            file: "part-c3.jsonl".into(),
            dir: Some(a.display().to_string()),
        };
        commit_one(&b, &staged).unwrap();
        assert!(a.join("part-c3.jsonl").exists());
        assert!(!b.join("part-c3.jsonl").exists());
        // Idempotent, as a second restore would do it.
        commit_one(&b, &staged).unwrap();
        // A committable without a directory (older checkpoints) is the restoring sink's own.
        let old = StagedFile {
            file: "part-c3.jsonl".into(),
            dir: None,
        };
        let e = commit_one(&b, &old).unwrap_err().to_string();
        assert!(e.contains("part-c3.jsonl"), "{e}");
    }
}
