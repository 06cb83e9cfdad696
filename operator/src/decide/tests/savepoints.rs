//! Savepoints of a running job: asked for by `savepointTriggerNonce` or `savepoint.periodic`,
//! followed until the runtime reports them, and kept within `historyMaxCount`.

use weir_crds::control::SavepointState;
use weir_crds::{LifecycleState, SavepointTrigger, StartPoint};

use super::fixture::*;
use crate::decide::Action;
use crate::events::Reason;

/// Running; a manual savepoint was asked for at 10 and the runtime took it as `sp-req-1`.
fn requested() -> Fx {
    Fx::running()
        .spec(|s| s.savepoint_trigger_nonce = 1)
        .at(10)
        .then(|fx| fx.savepoint_accepted("sp-req-1"))
}

#[test]
fn a_requested_savepoint_is_followed_until_the_runtime_reports_it() {
    run(&[
        Row {
            what: "savepointTriggerNonce changed: the running pod is asked",
            given: || Fx::running().spec(|s| s.savepoint_trigger_nonce = 1),
            at: 10,
            actions: vec![trigger_savepoint(1)],
            state: LifecycleState::Running,
            events: &[Reason::SavepointTriggered],
            also: &[
                Has::Pending(Some(SavepointTrigger::Manual)),
                Has::ObservedSavepointNonce(0),
            ],
        },
        Row {
            what: "reported pending: waits",
            given: || {
                requested()
                    .then(|fx| fx.runtime_reports("sp-req-1", SavepointState::Pending, None, None))
            },
            at: 12,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Pending(Some(SavepointTrigger::Manual))],
        },
        Row {
            what: "reported completed: recorded, the nonce handled once",
            given: || {
                requested().then(|fx| {
                    let path = Some("s3://b/sp-8");
                    fx.runtime_reports("sp-req-1", SavepointState::Completed, path, None);
                })
            },
            at: 14,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[Reason::SavepointCompleted],
            also: &[
                Has::Savepoints(&[("s3://b/sp-8", SavepointTrigger::Manual)]),
                Has::Pending(None),
                Has::ObservedSavepointNonce(1),
                Has::Quiet(20),
            ],
        },
        Row {
            what: "reported failed: reported with the runtime's error, not retried",
            given: || {
                requested().then(|fx| {
                    let error = Some("storage unreachable");
                    fx.runtime_reports("sp-req-1", SavepointState::Failed, None, error);
                })
            },
            at: 12,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[Reason::SavepointFailed],
            also: &[
                Has::Says("storage unreachable"),
                Has::Savepoints(&[]),
                Has::Pending(None),
                Has::ObservedSavepointNonce(1),
                Has::Quiet(20),
            ],
        },
        Row {
            what: "no report within savepoint.timeout (1m): reported, not retried",
            given: requested,
            at: 80,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[Reason::SavepointFailed],
            also: &[
                Has::Says("not completed within 1m"),
                Has::Pending(None),
                Has::ObservedSavepointNonce(1),
                Has::Quiet(90),
            ],
        },
        Row {
            what: "periodic (1h), half an hour after the start: not due",
            given: || {
                Fx::running()
                    .spec(|s| s.savepoint.periodic = Some("1h".parse().unwrap()))
                    .then(|fx| fx.checkpoint_at(1800))
            },
            at: 1800,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Pending(None)],
        },
        Row {
            what: "periodic (1h), an hour after the start: due",
            given: || {
                Fx::running()
                    .spec(|s| s.savepoint.periodic = Some("1h".parse().unwrap()))
                    .then(|fx| fx.checkpoint_at(3600))
            },
            at: 3600,
            actions: vec![trigger_savepoint(1)],
            state: LifecycleState::Running,
            events: &[Reason::SavepointTriggered],
            also: &[Has::Pending(Some(SavepointTrigger::Periodic))],
        },
    ]);
}

/// One savepoint of each trigger from before, oldest first.
const MIXED: &[(&str, SavepointTrigger)] = &[
    ("s3://b/up-1", SavepointTrigger::Upgrade),
    ("s3://b/per-1", SavepointTrigger::Periodic),
    ("s3://b/sus-1", SavepointTrigger::Suspend),
    ("s3://b/man-1", SavepointTrigger::Manual),
];

/// `fx` is asked for a manual savepoint at 10, which the runtime reports completed at `path`;
/// the next decision records it.
fn manual_savepoint_completes(fx: Fx, path: &str) -> Fx {
    fx.spec(|s| s.savepoint_trigger_nonce = 1)
        .at(10)
        .then(|fx| {
            fx.savepoint_accepted("r");
            fx.runtime_reports("r", SavepointState::Completed, Some(path), None);
        })
}

fn dispose(path: &str) -> Action {
    Action::DisposeSavepoint { path: path.into() }
}

#[test]
fn the_history_keeps_history_max_count_periodic_and_manual_savepoints() {
    use SavepointTrigger::{Manual, Periodic, Suspend, Upgrade};
    run(&[
        Row {
            what: "beyond historyMaxCount (2): the oldest goes, not the lineage's start",
            given: || {
                let fx = Fx::running().then(|fx| {
                    fx.history(&[("s3://b/sp-1", Periodic), ("s3://b/sp-2", Periodic)]);
                    fx.job.status.start = Some(StartPoint {
                        id: "x".into(),
                        from: Some("s3://b/sp-1".into()),
                    });
                });
                manual_savepoint_completes(fx, "s3://b/sp-3")
            },
            at: 12,
            actions: vec![dispose("s3://b/sp-2")],
            state: LifecycleState::Running,
            events: &[Reason::SavepointCompleted, Reason::SavepointDisposed],
            also: &[
                Has::Savepoints(&[("s3://b/sp-1", Periodic), ("s3://b/sp-3", Manual)]),
                // Listed until its delete succeeded.
                Has::Disposing(&[("s3://b/sp-2", 0)]),
            ],
        },
        Row {
            what: "only periodic and manual ones count: a third makes the oldest go",
            given: || {
                manual_savepoint_completes(
                    Fx::running().then(|fx| fx.history(MIXED)),
                    "s3://b/man-2",
                )
            },
            at: 12,
            actions: vec![dispose("s3://b/per-1")],
            state: LifecycleState::Running,
            events: &[Reason::SavepointCompleted, Reason::SavepointDisposed],
            also: &[Has::Savepoints(&[
                ("s3://b/up-1", Upgrade),
                ("s3://b/sus-1", Suspend),
                ("s3://b/man-1", Manual),
                ("s3://b/man-2", Manual),
            ])],
        },
        Row {
            what: "an upgrade savepoint neither counts nor pushes a periodic one out",
            given: || {
                Fx::running()
                    .spec(|s| s.parallelism = 3)
                    .then(|fx| fx.history(MIXED))
                    .at(10)
                    .then(|fx| fx.exited_with_savepoint(1, "s3://b/up-2"))
            },
            at: 20,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Upgrading,
            events: &[Reason::SavepointCompleted],
            also: &[Has::Savepoints(&[
                ("s3://b/up-1", Upgrade),
                ("s3://b/per-1", Periodic),
                ("s3://b/sus-1", Suspend),
                ("s3://b/man-1", Manual),
                ("s3://b/up-2", Upgrade),
            ])],
        },
    ]);
}

/// A delete that failed is tried again, 30 s after the failure and doubling, while the entry
/// stays in the status; the history limit does not count it.
#[test]
fn a_failed_disposal_is_retried_with_a_growing_pause() {
    use SavepointTrigger::Periodic;
    fn history(failed: u32) -> Fx {
        Fx::running().then(move |fx| {
            fx.history(&[
                ("s3://b/sp-1", SavepointTrigger::Periodic),
                ("s3://b/sp-2", SavepointTrigger::Periodic),
            ]);
            fx.disposing("s3://b/sp-1", failed, 0);
        })
    }
    run(&[
        Row {
            what: "failed once, 25 s ago: waits the rest of 30 s",
            given: || history(1),
            at: 25,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Disposing(&[("s3://b/sp-1", 1)]), Has::Requeue(5)],
        },
        Row {
            what: "failed once, 30 s ago: deletes again",
            given: || history(1),
            at: 30,
            actions: vec![dispose("s3://b/sp-1")],
            state: LifecycleState::Running,
            events: &[],
            also: &[
                Has::Disposing(&[("s3://b/sp-1", 1)]),
                Has::Savepoints(&[("s3://b/sp-2", Periodic)]),
            ],
        },
        Row {
            what: "failed three times: waits 120 s",
            given: || history(3),
            at: 115,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Requeue(5)],
        },
        Row {
            what: "failed three times, 120 s ago: deletes again",
            given: || history(3),
            at: 120,
            actions: vec![dispose("s3://b/sp-1")],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Disposing(&[("s3://b/sp-1", 3)])],
        },
        Row {
            what: "a delete whose outcome was lost (the operator restarted): sent again",
            given: || history(0),
            at: 30,
            actions: vec![dispose("s3://b/sp-1")],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Disposing(&[("s3://b/sp-1", 0)])],
        },
    ]);
}
