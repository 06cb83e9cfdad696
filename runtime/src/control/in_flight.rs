//! Sink transactions pre-committed at a checkpoint and not yet committed: what a person asks
//! when output is late or a checkpoint is slow ("what is each sink holding?"). The tasks keep
//! the committables themselves (and the checkpoint records them); this is a description of
//! each, for the console, replaced whenever a sink's pending set changes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::checkpoint::state::Committable;
use crate::ids::CheckpointId;

/// One pre-committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Txn {
    /// Sink id in the plan.
    pub sink: String,
    /// Sink subtask.
    pub subtask: u32,
    /// Checkpoint whose completion commits it.
    pub checkpoint: u64,
    /// The commit mechanism.
    pub kind: &'static str,
    /// What identifies it at the target (a transactional id, a prepared id, a file) and its
    /// size.
    pub detail: String,
}

/// Every sink subtask's pre-committed transactions.
#[derive(Debug, Default)]
pub struct InFlight {
    by_sink: Mutex<BTreeMap<(String, u32), Vec<Txn>>>,
}

impl InFlight {
    /// Sink `sink`'s subtask `subtask` now holds `pending` (empty transactions left out).
    pub fn set(&self, sink: &str, subtask: u32, pending: &BTreeMap<CheckpointId, Committable>) {
        let txns: Vec<Txn> = pending
            .iter()
            .filter_map(|(id, c)| {
                let (kind, detail) = describe(c)?;
                Some(Txn {
                    sink: sink.to_string(),
                    subtask,
                    checkpoint: id.0,
                    kind,
                    detail,
                })
            })
            .collect();
        if let Ok(mut m) = self.by_sink.lock() {
            if txns.is_empty() {
                m.remove(&(sink.to_string(), subtask));
            } else {
                m.insert((sink.to_string(), subtask), txns);
            }
        }
    }

    /// All of them, by sink, subtask and checkpoint.
    #[must_use]
    pub fn all(&self) -> Vec<Txn> {
        self.by_sink
            .lock()
            .map(|m| m.values().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

fn describe(c: &Committable) -> Option<(&'static str, String)> {
    Some(match c {
        Committable::Empty => return None,
        Committable::StagedFile(f) => ("staged file", f.file.clone()),
        Committable::KafkaTransaction(t) => (
            "Kafka transaction",
            format!(
                "transactional.id {} (producer {} epoch {}), {} records",
                t.transactional_id, t.producer_id, t.producer_epoch, t.records
            ),
        ),
        Committable::WriteAhead(w) => (
            "write-ahead rows",
            format!("{} rows, {} bytes, token {}", w.rows, w.bytes, w.token),
        ),
        Committable::PreparedTransaction(p) => ("prepared transaction", p.gid.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::state::{PreparedTransaction, StagedFile};

    #[test]
    fn a_sinks_set_is_replaced_and_empty_transactions_are_left_out() {
        let f = InFlight::default();
        let mut pending = BTreeMap::new();
        pending.insert(CheckpointId(4), Committable::Empty);
        pending.insert(
            CheckpointId(5),
            Committable::PreparedTransaction(PreparedTransaction::new(
                "weir:j:pg",
                1,
                CheckpointId(5),
                0,
            )),
        );
        f.set("pg", 1, &pending);
        f.set(
            "files",
            0,
            &BTreeMap::from([(
                CheckpointId(5),
                Committable::StagedFile(StagedFile {
                    file: "part-c5-t0.jsonl".into(),
                    dir: None,
                }),
            )]),
        );
        let all = f.all();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].sink, "files");
        assert_eq!(all[1].detail, "weir:j:pg:1:5:0");
        assert_eq!(all[1].checkpoint, 5);
        // Committed: the sink's set is now empty and it drops out.
        f.set("pg", 1, &BTreeMap::new());
        assert_eq!(f.all().len(), 1);
    }
}
