//! Whether a checkpoint's state still means the same thing in the job restoring it.
//!
//! A checkpoint records, beside the state, what each stateful operator's state is for (its
//! kind, keys, window, aggregates, input columns: [`OperatorRecord`]) and what each source's
//! positions are positions in (the Kafka topic, the file: [`SourceRecord`]). On restore the
//! job's own records are compared with them, before anything runs:
//! - an operator whose definition changed is refused, naming it and what changed, unless the
//!   user named it in `dropState`, which starts it empty;
//! - state of an operator the job no longer has is refused unless `allowNonRestoredState` is
//!   set or `dropState` names it;
//! - source positions follow the source by name, not by place, so adding a source keeps the
//!   others' positions; a source now reading another topic or file is refused unless
//!   `dropState` names it (it then starts where its `startingOffsets` say).
//!
//! `dropState` grants, it does not order: a named operator whose state fits is restored, so
//! leaving the name in the spec after the upgrade that needed it drops nothing later.
//! Checkpoints written before these records existed are compared only where they can be (the
//! operators' own decode checks still refuse state of another shape).
//!
//! Tested with real plans before and after each edit in `plan/definition_tests.rs` (the
//! protocol does not import the planner).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::restore::Restored;
use crate::error::{Error, Result};

/// What a stateful operator's state means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRecord {
    /// State id.
    pub id: String,
    /// Where the job defines it (a field path, or a statement's line), for messages.
    pub at: String,
    /// Aspect (`kind`, `keys`, `window`, `aggregates`, `input`, …) -> its value, in words a
    /// message can quote. Every aspect that changes what the bytes mean is here; what does
    /// not (a TTL, allowed lateness, output names) is not, so editing it keeps the state.
    pub definition: BTreeMap<String, String>,
}

/// What a source's positions are positions in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRecord {
    /// The stage that reads it (its splits are stored under this stage).
    pub stage: u32,
    /// The source's name (`source` for an unnamed first source).
    pub name: String,
    /// What it reads: `kafka topic orders`, `file /data/in.jsonl`, `datagen` (a generator: positions are counts).
    pub reads: String,
}

/// The job's side: its records and what the user allows to be dropped.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The job's stateful operators.
    pub operators: Vec<OperatorRecord>,
    /// The job's sources, stage `i` = source `i`.
    pub sources: Vec<SourceRecord>,
    /// Drop state of operators (and positions of sources) the job no longer has.
    pub allow_non_restored_state: bool,
    /// Operators and sources whose state may be dropped when it does not fit.
    pub drop_state: Vec<String>,
}

/// Check `r` against the job, then make it fit: state granted to be dropped removed, source
/// positions moved to the stages that now read those sources. Deterministic, so every pod of a
/// job applies it to its own copy and gets the same. Returns what was dropped, for the log.
///
/// # Errors
/// [`Error::Incompatible`] naming every operator or source whose state no longer fits and
/// what changed; [`Error::Restore`] for state of operators or sources the job does not have.
pub fn fit(r: &mut Restored, job: &Wanted) -> Result<Vec<String>> {
    let checkpoint = r.uri.trim_end_matches('/').to_string();
    let granted = |id: &str| job.drop_state.iter().any(|d| d == id);
    let mut changed: Vec<(String, String)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut drop_ops: Vec<String> = Vec::new();
    let recorded: BTreeMap<&str, &OperatorRecord> = r
        .metadata
        .operators
        .iter()
        .map(|o| (o.id.as_str(), o))
        .collect();
    for id in r.stateful_operators() {
        let now = job.operators.iter().find(|o| o.id == id);
        match (now, recorded.get(id.as_str())) {
            (Some(now), Some(then)) if now.definition != then.definition => {
                if granted(&id) {
                    dropped.push(format!(
                        "operator `{id}` (its definition changed; dropState)"
                    ));
                    drop_ops.push(id);
                } else {
                    changed.push((id, differences(then, now)));
                }
            }
            // Recorded the same, or recorded before records existed: the operator's decode
            // checks are what is left, unless the user asked for it to start empty.
            (Some(_), None) if granted(&id) => {
                dropped.push(format!("operator `{id}` (dropState)"));
                drop_ops.push(id);
            }
            (Some(_), _) => {}
            (None, _) if granted(&id) || job.allow_non_restored_state => {
                dropped.push(format!("operator `{id}` (not in the job)"));
                drop_ops.push(id);
            }
            (None, _) => unknown.push(format!("operator `{id}`")),
        }
    }
    let stages = source_stages(r, job, &granted, &mut changed, &mut unknown, &mut dropped);
    if !changed.is_empty() {
        let (ids, whats): (Vec<String>, Vec<String>) = changed.into_iter().unzip();
        return Err(Error::Incompatible {
            operator: ids.join(", "),
            checkpoint,
            message: whats.join("; "),
        });
    }
    if !unknown.is_empty() {
        return Err(Error::Restore(format!(
            "{checkpoint} holds state of {} that this job does not have; set allowNonRestoredState (--allow-non-restored-state) to drop it, or name each in dropState (--drop-state)",
            unknown.join(", ")
        )));
    }
    for (_, state) in &mut r.tasks {
        state.operators.retain(|(id, _)| !drop_ops.contains(id));
        state.disk.retain(|d| !drop_ops.contains(&d.operator));
        state.parts.retain(|p| !drop_ops.contains(&p.operator));
    }
    if let Some(stages) = stages {
        for (task, state) in &mut r.tasks {
            match stages.get(&task.stage) {
                Some(Some(now)) => task.stage = *now,
                Some(None) => state.splits.clear(),
                None => {}
            }
        }
    }
    Ok(dropped)
}

/// Where each recorded source's positions go: its stage now (`None`: dropped). `None` when the
/// checkpoint did not record its sources (positions stay with the stage numbers).
fn source_stages(
    r: &Restored,
    job: &Wanted,
    granted: &dyn Fn(&str) -> bool,
    changed: &mut Vec<(String, String)>,
    unknown: &mut Vec<String>,
    dropped: &mut Vec<String>,
) -> Option<BTreeMap<u32, Option<u32>>> {
    let then = &r.metadata.sources;
    if then.is_empty() {
        return None;
    }
    let mut map = BTreeMap::new();
    for old in then {
        let by_name = job.sources.iter().find(|s| s.name == old.name);
        // The first source given a name (or renamed) while reading the same: still it.
        let first_renamed = || {
            job.sources
                .first()
                .filter(|s| old.stage == 0 && s.reads == old.reads)
                .filter(|s| !then.iter().any(|o| o.name == s.name))
        };
        let target = match by_name.or_else(first_renamed) {
            Some(now) if now.reads != old.reads => {
                if granted(&old.name) {
                    dropped.push(format!(
                        "positions of source `{}` (it read {}, now {}; dropState)",
                        old.name, old.reads, now.reads
                    ));
                    None
                } else {
                    changed.push((
                        format!("source `{}`", old.name),
                        format!(
                            "source `{}` read {} when the checkpoint was taken and reads {} now, where its positions mean nothing",
                            old.name, old.reads, now.reads
                        ),
                    ));
                    None
                }
            }
            Some(now) => Some(now.stage),
            None if granted(&old.name) || job.allow_non_restored_state => {
                dropped.push(format!(
                    "positions of source `{}` (not in the job)",
                    old.name
                ));
                None
            }
            None => {
                unknown.push(format!("source `{}` ({})", old.name, old.reads));
                None
            }
        };
        map.insert(old.stage, target);
    }
    Some(map)
}

/// What changed between two definitions of one operator, aspect by aspect.
fn differences(then: &OperatorRecord, now: &OperatorRecord) -> String {
    let aspects: std::collections::BTreeSet<&String> = then
        .definition
        .keys()
        .chain(now.definition.keys())
        .collect();
    let none = String::from("nothing");
    let what: Vec<String> = aspects
        .into_iter()
        .filter(|a| then.definition.get(*a) != now.definition.get(*a))
        .map(|a| {
            format!(
                "{a} was `{}`, is `{}`",
                then.definition.get(a).unwrap_or(&none),
                now.definition.get(a).unwrap_or(&none)
            )
        })
        .collect();
    format!(
        "operator `{}` ({}) changed since the checkpoint: {}",
        now.id,
        now.at,
        what.join(", ")
    )
}
