//! JSON-lines file source: one split (the file), position = byte offset of the next line.
//!
//! Lines decode in batches through arrow-json; when a batch fails, its lines are decoded one
//! by one so that the bad line is named (`path:line`) and handled by the job's policy while
//! the good lines around it go through.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::decode_errors::{OnError, decode_errors_batch};
use super::json::JsonDecoder;
use super::{Poll, SourceReader, SplitState};
use crate::error::{Error, Result};

/// Reader of one JSON-lines file.
#[derive(Debug)]
pub struct FileReader {
    path: String,
    schema: SchemaRef,
    time_col: Option<usize>,
    batch_size: usize,
    on_error: OnError,
    state: Option<SplitState>,
    decoder: JsonDecoder,
    /// Lines dropped under `skip` (and sent under `sideOutput`).
    pub decode_errors: u64,
}

impl FileReader {
    /// Reader that resumes at `state` (split 0); `None` when another subtask owns the file.
    #[must_use]
    pub fn new(
        path: String,
        schema: SchemaRef,
        time_col: Option<usize>,
        batch_size: u32,
        on_error: OnError,
        state: Option<SplitState>,
    ) -> Self {
        Self {
            path,
            decoder: JsonDecoder::new(schema.clone()),
            schema,
            time_col,
            batch_size: batch_size.max(1) as usize,
            on_error,
            state,
            decode_errors: 0,
        }
    }

    fn source_err(&self, message: String) -> Error {
        Error::Source {
            source_name: format!("file {}", self.path),
            message,
        }
    }
}

impl SourceReader for FileReader {
    fn poll(&mut self) -> Result<Poll> {
        let Some(state) = self.state else {
            return Ok(Poll::Finished);
        };
        if state.finished {
            return Ok(Poll::Finished);
        }
        let file = File::open(&self.path).map_err(|e| self.source_err(format!("open: {e}")))?;
        let mut r = BufReader::new(file);
        r.seek(SeekFrom::Start(state.offset))
            .map_err(|e| self.source_err(format!("seek: {e}")))?;
        let mut lines: Vec<(u64, String)> = Vec::with_capacity(self.batch_size);
        let (mut offset, mut line_no) = (state.offset, state.records);
        while lines.len() < self.batch_size {
            let mut line = String::new();
            let n = r
                .read_line(&mut line)
                .map_err(|e| self.source_err(format!("read line {}: {e}", line_no + 1)))?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            line_no += 1;
            if !line.trim().is_empty() {
                lines.push((line_no, line));
            }
        }
        let finished = lines.is_empty();
        let mut side = None;
        let data = if lines.is_empty() {
            RecordBatch::new_empty(self.schema.clone())
        } else {
            let texts: Vec<&[u8]> = lines.iter().map(|(_, l)| l.as_bytes()).collect();
            let decoded = self.decoder.decode(&texts)?;
            let (mut srcs, mut raws, mut errs) = (Vec::new(), Vec::new(), Vec::new());
            for (i, e) in decoded.bad {
                let (no, l) = &lines[i];
                let location = format!("{}:{no}", self.path);
                match self.on_error {
                    OnError::Fail => {
                        return Err(Error::Decode {
                            location,
                            message: e,
                        });
                    }
                    OnError::Skip => {}
                    OnError::SideOutput => {
                        srcs.push(location);
                        raws.push(l.trim_end().to_string());
                        errs.push(e);
                    }
                }
                self.decode_errors += 1;
                tracing::warn!(file = %self.path, line = no, "undecodable record");
            }
            side = decode_errors_batch(srcs, raws, errs)?;
            decoded.data
        };
        let mut max_ts = state.max_event_time;
        if let Some(tc) = self.time_col
            && let Some(ts) = data
                .column(tc)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::TimestampMillisecondArray>()
            && let Some(m) = datafusion::arrow::compute::max(ts)
        {
            max_ts = max_ts.max(m);
        }
        self.state = Some(SplitState {
            offset,
            records: line_no,
            max_event_time: max_ts,
            finished,
            ..state
        });
        if finished && side.is_none() {
            return Ok(Poll::Finished);
        }
        Ok(Poll::Batch { data, side })
    }

    fn snapshot(&self) -> Vec<SplitState> {
        self.state.into_iter().collect()
    }
}
