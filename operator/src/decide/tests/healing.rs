//! A deployed job that goes wrong on its own: a pod fails or vanishes, checkpoints stop, the
//! input ends, the restart budget runs out; and what brings a Failed job back.

use std::time::Duration;

use weir_crds::{LifecycleState, OperationKind, OperationPhase, StopMode};

use super::fixture::*;
use crate::decide::{PodPhase, RuntimeOutcome, restart};
use crate::events::Reason;

/// Running, then pod 1 is OOMKilled.
fn oom_killed() -> Fx {
    Fx::running().then(|fx| fx.oom_killed(1))
}

/// Deployed, never ran: pod 1 fails with the runtime's own error.
fn kafka_unreachable() -> Fx {
    Fx::deployed().then(|fx| {
        fx.fails(1).outcome = Some(RuntimeOutcome::Failed {
            error: "cannot reach Kafka at kafka:9092 within 10s".into(),
        });
    })
}

/// Running with one restart 100 s ago; then pod 1 is gone without a trace.
fn vanished_after_a_restart() -> Fx {
    Fx::running().then(|fx| {
        fx.recent_restarts(&[-100]);
        fx.no_pods();
    })
}

#[test]
fn a_failed_or_vanished_pod_is_replaced_after_its_backoff() {
    run(&[
        Row {
            what: "pod OOMKilled: deleted first (old pods go before new ones start)",
            given: oom_killed,
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::LastReason("pod sales-1 OOMKilled (exit 137)")],
        },
        Row {
            what: "OOMKilled pod gone, backoff (1 s) passed: incarnation 2, newest checkpoint",
            given: || oom_killed().at(10).then(|fx| fx.no_pods()),
            at: 12,
            actions: new_pod(2),
            state: LifecycleState::Deploying,
            events: &[Reason::Restarting],
            also: &[
                Has::Restarts(1),
                Has::Start(Start::Newest),
                Has::Condition("Degraded", "True", "Restarting"),
            ],
        },
        Row {
            what: "runtime error before any checkpoint: its own error is the reason",
            given: kafka_unreachable,
            at: 30,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::LastReason(
                "pod sales-1 failed: cannot reach Kafka at kafka:9092 within 10s",
            )],
        },
        Row {
            what: "runtime error before any checkpoint, pod gone: restarts the same way",
            given: || kafka_unreachable().at(30).then(|fx| fx.no_pods()),
            at: 32,
            actions: new_pod(2),
            state: LifecycleState::Deploying,
            events: &[Reason::Restarting],
            also: &[
                Has::Restarts(1),
                Has::LastReason("pod sales-1 failed: cannot reach Kafka at kafka:9092 within 10s"),
            ],
        },
        Row {
            what: "pod vanished, second failure in the window: waits 2 s, not 1 s",
            given: vanished_after_a_restart,
            at: 20,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::Requeue(2), Has::LastReason("pod sales-1 vanished")],
        },
        Row {
            what: "pod vanished, 1 s later: not enough",
            given: || vanished_after_a_restart().at(20),
            at: 21,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::Requeue(1)],
        },
        Row {
            what: "pod vanished, 2 s later: incarnation 2",
            given: || vanished_after_a_restart().at(20).at(21),
            at: 22,
            actions: new_pod(2),
            state: LifecycleState::Deploying,
            events: &[Reason::Restarting],
            also: &[Has::Restarts(1), Has::RecentRestarts(2)],
        },
        Row {
            what: "restart budget (3 in 1h) used up: Failed, with the reason",
            given: || {
                Fx::running().then(|fx| {
                    fx.recent_restarts(&[-300, -200, -100]);
                    fx.fails(1).reason = Some("Error".into());
                })
            },
            at: 10,
            actions: vec![],
            state: LifecycleState::Failed,
            events: &[Reason::RestartBudgetExhausted],
            also: &[Has::ConditionSays("Ready", "3 restarts within 1h")],
        },
        Row {
            what: "restarts older than the window do not count",
            given: || {
                Fx::running().then(|fx| {
                    fx.recent_restarts(&[-7200, -5000, -100]);
                    fx.fails(1);
                })
            },
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::RecentRestarts(1)],
        },
    ]);
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    // (restarts already in the window, seconds to wait) with 1 s initial, 1 min maximum.
    let rows: &[(usize, u64)] = &[(0, 1), (1, 2), (2, 4), (5, 32), (6, 60), (30, 60)];
    for &(n, secs) in rows {
        let b = restart::backoff(Duration::from_secs(1), Duration::from_secs(60), n);
        assert_eq!(b.as_secs(), secs, "restart {n}");
    }
}

#[test]
fn a_job_without_checkpoints_restarts_through_a_final_checkpoint() {
    // The progress timeout is 2 × checkpoint.timeout (2m) + interval (30s) = 270 s after the
    // last checkpoint, at t(0).
    run(&[
        Row {
            what: "200 s without a checkpoint: within the progress timeout",
            given: Fx::running,
            at: 200,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Restarts(0)],
        },
        Row {
            what: "300 s without a checkpoint: restart, counted",
            given: Fx::running,
            at: 300,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::NoProgress],
            also: &[
                Has::Operation(
                    OperationKind::Restart,
                    OperationPhase::Stopping,
                    StopMode::Checkpoint,
                ),
                Has::Restarts(1),
            ],
        },
        Row {
            what: "300 s without a checkpoint, pod gone: incarnation 2",
            given: || Fx::running().at(300).then(|fx| fx.no_pods()),
            at: 305,
            actions: new_pod(2),
            state: LifecycleState::Upgrading,
            events: &[],
            also: &[Has::Operation(
                OperationKind::Restart,
                OperationPhase::Starting,
                StopMode::Checkpoint,
            )],
        },
    ]);
}

/// Running until `state` (after three restarts); no pods are left.
fn ended(state: LifecycleState) -> Fx {
    Fx::running().then(|fx| {
        fx.job.status.lifecycle_state = state;
        fx.recent_restarts(&[-300, -200, -100]);
        fx.no_pods();
    })
}

#[test]
fn a_failed_or_finished_job_waits_for_the_user() {
    run(&[
        Row {
            what: "bounded input read to its end: Finished, reported once",
            given: || {
                Fx::running().then(|fx| {
                    fx.pod(1, PodPhase::Succeeded).outcome = Some(RuntimeOutcome::Finished);
                })
            },
            at: 10,
            actions: vec![],
            state: LifecycleState::Finished,
            events: &[Reason::Finished],
            also: &[Has::Quiet(20)],
        },
        Row {
            what: "Failed, nothing changed",
            given: || ended(LifecycleState::Failed),
            at: 10,
            actions: vec![],
            state: LifecycleState::Failed,
            events: &[],
            also: &[],
        },
        Row {
            what: "Failed, the operator's default image changed",
            given: || ended(LifecycleState::Failed).then(|fx| fx.default_image("weir-runtime:2")),
            at: 10,
            actions: vec![],
            state: LifecycleState::Failed,
            events: &[],
            also: &[],
        },
        Row {
            what: "Finished, the operator's default image changed",
            given: || ended(LifecycleState::Finished).then(|fx| fx.default_image("weir-runtime:2")),
            at: 10,
            actions: vec![],
            state: LifecycleState::Finished,
            events: &[],
            also: &[],
        },
        Row {
            what: "Failed, restartNonce changed: redeploys, the budget starts over",
            given: || ended(LifecycleState::Failed).spec(|s| s.restart_nonce = 1),
            at: 10,
            actions: new_pod(2),
            state: LifecycleState::Deploying,
            events: &[Reason::Deploying],
            also: &[Has::RecentRestarts(0)],
        },
        Row {
            what: "Failed, spec changed: redeploys the new spec",
            given: || ended(LifecycleState::Failed).spec(|s| s.parallelism = 3),
            at: 10,
            actions: new_pod(2),
            state: LifecycleState::Deploying,
            events: &[Reason::Deploying],
            also: &[Has::RecentRestarts(0), Has::Reconciled("\"parallelism\":3")],
        },
        Row {
            what: "Finished, restartNonce changed: runs again",
            given: || ended(LifecycleState::Finished).spec(|s| s.restart_nonce = 1),
            at: 10,
            actions: new_pod(2),
            state: LifecycleState::Deploying,
            events: &[Reason::Deploying],
            also: &[],
        },
    ]);
}

/// Running; then pod 1 refuses to start again: its newest checkpoint cannot be read.
fn unreadable_checkpoint() -> Fx {
    Fx::running().then(|fx| {
        fx.fails(1).outcome = Some(RuntimeOutcome::Refused {
            error: "the newest completed checkpoint, 7 (s3://b/w/chk-7), cannot be read".into(),
        });
    })
}

/// A start the runtime refused is not retried (it would be refused again, and an older
/// checkpoint is not restored behind the user's back): the job is `Failed` naming the
/// checkpoint, until the user allows the older one. Mutation: treat `Refused` like `Failed`
/// and the first row restarts the pod.
#[test]
fn a_refused_start_waits_for_the_users_decision() {
    run(&[
        Row {
            what: "newest checkpoint unreadable: Failed at once, no restart, the reason named",
            given: unreadable_checkpoint,
            at: 10,
            actions: vec![],
            state: LifecycleState::Failed,
            events: &[Reason::NeedsDecision],
            also: &[
                Has::Restarts(0),
                Has::LastReason(
                    "pod sales-1 refused to start: the newest completed checkpoint, 7 (s3://b/w/chk-7), cannot be read",
                ),
                Has::Condition("Ready", "False", "Failed"),
            ],
        },
        Row {
            what: "the user allows an older checkpoint: redeployed, the event records the choice",
            given: || {
                unreadable_checkpoint()
                    .at(10)
                    .spec(|s| s.checkpoint.skip_unreadable = true)
                    .then(|fx| fx.no_pods())
            },
            at: 20,
            actions: new_pod(2),
            state: LifecycleState::Deploying,
            events: &[Reason::Deploying],
            also: &[Has::Says("checkpoint.skipUnreadable is set")],
        },
    ]);
}
