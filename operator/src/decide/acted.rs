//! What carrying out an action turned out to be, and the pure step that records it.
//!
//! A decision is made before anything is done, so it cannot know whether the runtime took a
//! request or which id it gave it. [`crate::act`] reports that as an [`Acted`], and [`fold`]
//! brings it into the decided status and events. The shell then only sequences
//! (`act`, `fold`, next action), and what an outcome does to the status is a table test
//! here instead of a side effect buried in I/O code.

use weir_crds::StreamJobStatus;

use crate::events::{Event, Reason};

/// What happened when the shell carried out one [`Action`](super::Action), as far as the
/// status or the events care. API failures are not here: they stop the pass (`Err`), and
/// the next pass decides afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acted {
    /// Done as decided; nothing to record.
    Done,
    /// The stop with savepoint did not reach the runtime (no address, no answer, refused).
    StopNotSent {
        /// Pod it was meant for.
        pod: String,
        /// Why, for the operation's `waiting`.
        error: String,
    },
    /// The runtime accepted the savepoint request and named it.
    SavepointRequested {
        /// Request id the runtime returned.
        id: String,
    },
    /// The savepoint request did not reach the runtime.
    SavepointNotSent {
        /// Pod it was meant for.
        pod: String,
        /// Why.
        error: String,
    },
    /// A savepoint dropped from the history was deleted: its entry goes.
    Disposed {
        /// Savepoint URI.
        path: String,
    },
    /// A savepoint dropped from the history could not be deleted; its entry stays, marked,
    /// and a later pass deletes again.
    DisposeFailed {
        /// Savepoint URI.
        path: String,
        /// Why.
        error: String,
    },
}

/// The conditions from the status as a pass ends, after what act reported was folded in:
/// a stop that could not be sent makes the operation wait, and `Progressing` must say so in
/// the same status write (decide computed the conditions before anything was sent).
pub fn settle(status: &mut StreamJobStatus, now: jiff::Timestamp) {
    super::lifecycle::set_conditions(status, now);
}

/// Records `acted` in the decided `status` and `events`. Pure: no I/O, no clock.
///
/// - A stop that was not sent is not "requested": clearing `stopRequestedAt` makes the next
///   decision send it again, and `waiting` tells the user why the operation is stuck.
/// - A savepoint request's id is how later decisions find it in the runtime's report.
/// - A savepoint request that was not sent is forgotten, so the next decision requests again
///   instead of waiting for an id that does not exist.
/// - A savepoint is removed from the history only once its delete succeeded; a failed
///   delete is counted and its error kept on the entry (the next try is decided from them)
///   and becomes a warning event.
pub fn fold(status: &mut StreamJobStatus, events: &mut Vec<Event>, acted: &Acted) {
    match acted {
        Acted::Done => {}
        Acted::StopNotSent { pod: _, error } => {
            if let Some(op) = status.operation.as_mut() {
                op.stop_requested_at = None;
                op.waiting = Some(format!("stop with savepoint could not be sent: {error}"));
            }
        }
        Acted::SavepointRequested { id } => {
            if let Some(p) = status.pending_savepoint.as_mut() {
                p.request_id.clone_from(id);
            }
        }
        Acted::SavepointNotSent { .. } => status.pending_savepoint = None,
        Acted::Disposed { path } => status.savepoints.retain(|sp| &sp.path != path),
        Acted::DisposeFailed { path, error } => {
            let mut attempts = 0;
            for sp in status.savepoints.iter_mut().filter(|sp| &sp.path == path) {
                if let Some(d) = sp.disposal.as_mut() {
                    d.failed_attempts = d.failed_attempts.saturating_add(1);
                    d.last_error = Some(error.clone());
                    attempts = d.failed_attempts;
                }
            }
            events.push(Event::new(
                Reason::SavepointFailed,
                format!(
                    "could not dispose {path} (attempt {attempts}): {error}; it stays in status.savepoints and is deleted again later"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::collections::BTreeSet;

    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use weir_crds::{
        Disposal, Operation, OperationKind, OperationPhase, PendingSavepoint, SavepointStatus,
        SavepointTrigger, StopMode,
    };

    use super::*;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    /// A job in the middle of a savepoint upgrade that also has a periodic savepoint pending:
    /// every field a fold may touch is set, so a fold that touches the wrong one shows.
    fn busy() -> StreamJobStatus {
        StreamJobStatus {
            incarnation: 3,
            operation: Some(Operation {
                kind: OperationKind::Upgrade,
                phase: OperationPhase::Stopping,
                stop: StopMode::Savepoint,
                started_at: at(0),
                stop_requested_at: Some(at(1)),
                savepoint: None,
                target_spec: None,
                waiting: None,
                started_incarnation: None,
            }),
            pending_savepoint: Some(PendingSavepoint {
                request_id: String::new(),
                incarnation: 3,
                trigger: SavepointTrigger::Periodic,
                requested_at: at(1),
                nonce: 0,
            }),
            ..StreamJobStatus::default()
        }
    }

    /// Two savepoints; the first is being disposed and failed once.
    fn disposing() -> StreamJobStatus {
        let sp = |n: u32, disposal| SavepointStatus {
            path: format!("s3://b/weir/shop/sales/savepoints/sp-{n}/"),
            trigger: SavepointTrigger::Periodic,
            completed_at: at(i64::from(n)),
            disposal,
        };
        StreamJobStatus {
            savepoints: vec![
                sp(
                    1,
                    Some(Disposal {
                        failed_attempts: 1,
                        last_attempt_at: at(5),
                        last_error: Some("timeout".into()),
                    }),
                ),
                sp(2, None),
            ],
            ..busy()
        }
    }

    fn idle() -> StreamJobStatus {
        StreamJobStatus {
            incarnation: 3,
            ..StreamJobStatus::default()
        }
    }

    struct Row {
        name: &'static str,
        start: fn() -> StreamJobStatus,
        acted: Acted,
        /// What the fold changes in `start`; the rest must stay as it was.
        change: fn(&mut StreamJobStatus),
        events: Vec<Event>,
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                name: "done changes nothing",
                start: busy,
                acted: Acted::Done,
                change: |_| {},
                events: vec![],
            },
            Row {
                name: "a stop not sent is asked again and says why the operation waits",
                start: busy,
                acted: Acted::StopNotSent {
                    pod: "sales-3".into(),
                    error: "pod sales-3 has no IP".into(),
                },
                change: |s| {
                    let op = s.operation.as_mut().unwrap();
                    op.stop_requested_at = None;
                    op.waiting =
                        Some("stop with savepoint could not be sent: pod sales-3 has no IP".into());
                },
                events: vec![],
            },
            Row {
                name: "a stop not sent without an operation changes nothing",
                start: idle,
                acted: Acted::StopNotSent {
                    pod: "sales-3".into(),
                    error: "pod sales-3 has no IP".into(),
                },
                change: |_| {},
                events: vec![],
            },
            Row {
                name: "a savepoint request's id goes into the pending savepoint",
                start: busy,
                acted: Acted::SavepointRequested {
                    id: "sp-req-1".into(),
                },
                change: |s| s.pending_savepoint.as_mut().unwrap().request_id = "sp-req-1".into(),
                events: vec![],
            },
            Row {
                name: "a savepoint request's id without a pending savepoint is dropped",
                start: idle,
                acted: Acted::SavepointRequested {
                    id: "sp-req-1".into(),
                },
                change: |_| {},
                events: vec![],
            },
            Row {
                name: "a savepoint request not sent is forgotten, so it is asked again",
                start: busy,
                acted: Acted::SavepointNotSent {
                    pod: "sales-3".into(),
                    error: "runtime at http://10.0.0.7:8081 did not answer: down".into(),
                },
                change: |s| s.pending_savepoint = None,
                events: vec![],
            },
            Row {
                name: "a failed disposal is counted on its entry, kept, and a warning",
                start: disposing,
                acted: Acted::DisposeFailed {
                    path: "s3://b/weir/shop/sales/savepoints/sp-1/".into(),
                    error: "AccessDenied".into(),
                },
                change: |s| {
                    let d = s.savepoints[0].disposal.as_mut().unwrap();
                    d.failed_attempts = 2;
                    d.last_error = Some("AccessDenied".into());
                },
                events: vec![Event::new(
                    Reason::SavepointFailed,
                    "could not dispose s3://b/weir/shop/sales/savepoints/sp-1/ (attempt 2): \
                     AccessDenied; it stays in status.savepoints and is deleted again later",
                )],
            },
            Row {
                name: "a disposed savepoint leaves the history, and only it",
                start: disposing,
                acted: Acted::Disposed {
                    path: "s3://b/weir/shop/sales/savepoints/sp-1/".into(),
                },
                change: |s| {
                    s.savepoints.remove(0);
                },
                events: vec![],
            },
        ]
    }

    #[test]
    fn each_outcome_folds_into_the_status_and_events() {
        for row in rows() {
            let mut status = (row.start)();
            let mut expected = status.clone();
            (row.change)(&mut expected);
            // Events the decision already made stay first, in order.
            let decided = Event::new(Reason::Deploying, "decided");
            let mut events = vec![decided.clone()];
            fold(&mut status, &mut events, &row.acted);
            assert_eq!(status, expected, "{}: status", row.name);
            let mut want = vec![decided];
            want.extend(row.events);
            assert_eq!(events, want, "{}: events", row.name);
        }
    }

    /// Which variant, by an exhaustive match: a new variant does not compile until it is
    /// named here, and then fails [`every_outcome_has_a_row`] until a row covers it.
    fn variant(a: &Acted) -> usize {
        match a {
            Acted::Done => 0,
            Acted::StopNotSent { .. } => 1,
            Acted::SavepointRequested { .. } => 2,
            Acted::SavepointNotSent { .. } => 3,
            Acted::DisposeFailed { .. } => 4,
            Acted::Disposed { .. } => 5,
        }
    }
    const VARIANTS: usize = 6;

    #[test]
    fn every_outcome_has_a_row() {
        let covered: BTreeSet<usize> = rows().iter().map(|r| variant(&r.acted)).collect();
        assert_eq!(covered, (0..VARIANTS).collect());
    }

    #[test]
    fn a_stop_not_sent_shows_in_the_conditions_of_the_same_pass() {
        let now = Timestamp::from_second(1_800_000_100).unwrap();
        let mut st = busy();
        super::super::lifecycle::set_conditions(&mut st, now);
        let progressing = |st: &StreamJobStatus| {
            st.conditions
                .iter()
                .find(|c| c.type_ == "Progressing")
                .map(|c| (c.status.clone(), c.reason.clone()))
        };
        assert_eq!(
            progressing(&st),
            Some(("True".into(), "UpgradeInProgress".into()))
        );
        fold(
            &mut st,
            &mut Vec::new(),
            &Acted::StopNotSent {
                pod: "sales-3".into(),
                error: "connection refused".into(),
            },
        );
        settle(&mut st, now);
        assert_eq!(
            progressing(&st),
            Some(("False".into(), "UpgradeWaiting".into()))
        );
    }
}
