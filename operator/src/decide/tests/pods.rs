//! A job of several pods (`spec.pods`): an incarnation is all of its pods, started together,
//! running when every one runs, failed when any fails, and replaced whole once every pod of
//! it is gone. Stops, savepoints and how the job ended are pod 0's (the coordinator), and a
//! change of `pods` is a rescale through a savepoint like a change of `parallelism`.

use weir_crds::{
    DesiredState, LifecycleState, OperationKind, OperationPhase, SavepointTrigger, StopMode,
};

use super::fixture::*;
use crate::decide::{Action, PodPhase, RuntimeOutcome};
use crate::events::Reason;

const SAVEPOINT: &str = "s3://b/sp-5";
const SAVEPOINT_2: &str = "s3://b/sp-6";

/// The fixture's job (parallelism 2) as two pods, asked for at t(0) and not listed yet.
fn deployed_on_two() -> Fx {
    Fx::new().then(|fx| fx.job.spec.pods = 2).at(0)
}

/// Both pods of incarnation 1 run since t(0) and pod 0 reports running.
fn running_on_two() -> Fx {
    let mut fx = deployed_on_two();
    fx.all_run(1, 2);
    let st = fx.step(0).status;
    assert_eq!(st.lifecycle_state, LifecycleState::Running);
    assert_eq!(st.pods.as_deref(), Some("2/2"));
    fx
}

fn stop_pod_0(incarnation: u64) -> Action {
    Action::StopWithSavepoint {
        pod: format!("sales-{incarnation}-0"),
    }
}

#[test]
fn an_incarnation_starts_whole_and_runs_when_every_pod_does() {
    run(&[
        Row {
            what: "first deploy: every pod of incarnation 1 at once, after the config",
            given: || Fx::new().then(|fx| fx.job.spec.pods = 2),
            at: 0,
            actions: new_pods(1, 2),
            state: LifecycleState::Deploying,
            events: &[Reason::Deploying],
            also: &[Has::Says("on 2 pods"), Has::Pods(Some("0/2"))],
        },
        Row {
            what: "pod 0 runs and reports running, pod 1 pending: not running yet",
            given: || {
                deployed_on_two().then(|fx| {
                    fx.pod_of(1, 0, PodPhase::Running);
                    fx.pod_of(1, 1, PodPhase::Pending);
                    fx.reports_running();
                })
            },
            at: 5,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::Pods(Some("1/2")), Has::Requeue(2)],
        },
        Row {
            what: "pod 1 not listed a moment after its creation: still starting",
            given: || {
                deployed_on_two().then(|fx| {
                    fx.pod_of(1, 0, PodPhase::Running);
                    fx.reports_running();
                })
            },
            at: 5,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::Pods(Some("1/2"))],
        },
        Row {
            what: "every pod runs: Running, reported once",
            given: || deployed_on_two().then(|fx| fx.all_run(1, 2)),
            at: 5,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[Reason::Running],
            also: &[
                Has::Pods(Some("2/2")),
                Has::Condition("Ready", "True", "Running"),
                Has::Quiet(10),
            ],
        },
        Row {
            what: "a pod running but not ready counts as running, not as ready",
            given: || {
                deployed_on_two().then(|fx| {
                    fx.all_run(1, 2);
                    fx.pod_of(1, 1, PodPhase::Running).ready = false;
                })
            },
            at: 5,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[Reason::Running],
            also: &[Has::Pods(Some("1/2"))],
        },
    ]);
}

/// Running on two pods; pod 1 was OOMKilled and the first pass deleted both at t(10); now
/// pod 1 is gone and pod 0 is still terminating.
fn pod_0_still_terminating() -> Fx {
    running_on_two()
        .then(|fx| {
            let p = fx.pod_of(1, 1, PodPhase::Failed);
            p.reason = Some("OOMKilled".into());
            p.exit_code = Some(137);
        })
        .at(10)
        .then(|fx| {
            fx.obs.runtime = None;
            fx.obs.pods.retain(|p| p.index == 0);
            fx.pod_of(1, 0, PodPhase::Failed).deleting = true;
        })
}

#[test]
fn one_pod_failing_fails_its_incarnation_and_every_pod_is_replaced() {
    run(&[
        Row {
            what: "pod 1 OOMKilled while pod 0 runs: every pod goes, pod 1 named",
            given: || {
                running_on_two().then(|fx| {
                    let p = fx.pod_of(1, 1, PodPhase::Failed);
                    p.reason = Some("OOMKilled".into());
                    p.exit_code = Some(137);
                })
            },
            at: 10,
            actions: vec![delete_pod_of(1, 0), delete_pod_of(1, 1)],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::LastReason("pod sales-1-1 OOMKilled (exit 137)")],
        },
        Row {
            what: "pod 1 gone, pod 0 still terminating: no new incarnation yet",
            given: pod_0_still_terminating,
            at: 12,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[
                Has::Requeue(2),
                Has::Restarts(0),
                Has::LastReason("pod sales-1-1 OOMKilled (exit 137)"),
                Has::Pods(Some("0/2")),
            ],
        },
        Row {
            what: "every pod gone, backoff passed: incarnation 2, every pod, newest checkpoint",
            given: || pod_0_still_terminating().at(12).then(|fx| fx.no_pods()),
            at: 14,
            actions: new_pods(2, 2),
            state: LifecycleState::Deploying,
            events: &[Reason::Restarting],
            also: &[
                Has::Restarts(1),
                Has::Start(Start::Newest),
                Has::Says("pod sales-1-1 OOMKilled"),
            ],
        },
        Row {
            what: "pod 0 (the coordinator) fails while pod 1 runs: every pod goes",
            given: || {
                running_on_two().then(|fx| {
                    fx.obs.runtime = None;
                    fx.pod_of(1, 0, PodPhase::Failed).outcome = Some(RuntimeOutcome::Failed {
                        error: "sink unreachable".into(),
                    });
                })
            },
            at: 10,
            actions: vec![delete_pod_of(1, 1), delete_pod_of(1, 0)],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::LastReason("pod sales-1-0 failed: sink unreachable")],
        },
        Row {
            what: "both failed, pod 0 for the loss of pod 1, which was killed: pod 1 named",
            given: || {
                running_on_two().then(|fx| {
                    fx.obs.runtime = None;
                    fx.pod_of(1, 0, PodPhase::Failed).outcome = Some(RuntimeOutcome::Failed {
                        error: "lost pod 1: control link broke".into(),
                    });
                    fx.pod_of(1, 1, PodPhase::Failed).exit_code = Some(137);
                })
            },
            at: 10,
            actions: vec![delete_pod_of(1, 0), delete_pod_of(1, 1)],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::LastReason("pod sales-1-1 failed (exit 137)")],
        },
        Row {
            what: "pod 1 vanished while pod 0 runs: every pod goes",
            given: || running_on_two().then(|fx| fx.obs.pods.retain(|p| p.index == 0)),
            at: 20,
            actions: vec![delete_pod_of(1, 0)],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::LastReason("pod sales-1-1 vanished")],
        },
        Row {
            what: "every pod vanished: named by pod 0",
            given: || running_on_two().then(|fx| fx.no_pods()),
            at: 20,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::LastReason("pod sales-1-0 vanished")],
        },
        Row {
            what: "pod 1 ended well while pod 0 runs: pod 0 says how the job ends",
            given: || {
                running_on_two().then(|fx| {
                    fx.pod_of(1, 1, PodPhase::Succeeded).outcome =
                        Some(RuntimeOutcome::Stopped { savepoint: None });
                })
            },
            at: 10,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::Restarts(0), Has::NoOperation],
        },
        Row {
            what: "pod 0 finished the input (pod 1 with it): Finished, reported once",
            given: || {
                running_on_two().then(|fx| {
                    fx.obs.runtime = None;
                    for i in [0, 1] {
                        fx.pod_of(1, i, PodPhase::Succeeded).outcome =
                            Some(RuntimeOutcome::Finished);
                    }
                })
            },
            at: 10,
            actions: vec![],
            state: LifecycleState::Finished,
            events: &[Reason::Finished],
            also: &[Has::Quiet(20)],
        },
    ]);
}

#[test]
fn savepoints_and_stops_are_asked_of_pod_0() {
    run(&[
        Row {
            what: "a triggered savepoint goes to the coordinator",
            given: || running_on_two().spec(|s| s.savepoint_trigger_nonce = 1),
            at: 10,
            actions: vec![Action::TriggerSavepoint {
                pod: "sales-1-0".into(),
            }],
            state: LifecycleState::Running,
            events: &[Reason::SavepointTriggered],
            also: &[Has::Pending(Some(SavepointTrigger::Manual))],
        },
        Row {
            what: "deletion with a final savepoint: the stop goes to the coordinator",
            given: || {
                running_on_two().then(|fx| {
                    fx.job.deleting = true;
                    fx.job.spec.savepoint_on_delete = true;
                })
            },
            at: 10,
            actions: vec![stop_pod_0(1)],
            state: LifecycleState::Deleting,
            events: &[Reason::Deleting],
            also: &[],
        },
        Row {
            what: "a savepoint upgrade while pod 1 has failed: waits naming it, heals",
            given: || {
                running_on_two()
                    .then(|fx| {
                        fx.pod_of(1, 1, PodPhase::Failed).reason = Some("Error".into());
                    })
                    .spec(|s| s.image = Some("weir-runtime:2".into()))
            },
            at: 10,
            actions: vec![delete_pod_of(1, 0), delete_pod_of(1, 1)],
            state: LifecycleState::Upgrading,
            events: &[Reason::UpgradeStarted, Reason::SavepointFailed],
            also: &[
                Has::Waiting("pod sales-1-1 failed"),
                Has::LastReason("pod sales-1-1 Error"),
            ],
        },
        Row {
            what: "suspended: no pods are wanted, none are shown",
            given: || {
                running_on_two()
                    .spec(|s| s.state = DesiredState::Suspended)
                    .then(|fx| {
                        fx.job.status.lifecycle_state = LifecycleState::Suspended;
                        fx.no_pods();
                    })
            },
            at: 10,
            actions: vec![],
            state: LifecycleState::Suspended,
            events: &[],
            also: &[Has::Pods(None)],
        },
    ]);
}

/// One pod to two and back, in savepoint mode: each change stops the old incarnation with a
/// savepoint (asked of pod 0), waits until every old pod is gone, and starts every pod of the
/// new layout from it.
#[test]
fn changing_pods_rescales_through_a_savepoint_both_ways() {
    let upgrade = |phase| Has::Operation(OperationKind::Upgrade, phase, StopMode::Savepoint);
    let mut fx = Fx::running().spec(|s| s.pods = 2);
    fx.expect(
        "1 -> 2: stop pod 1 with a savepoint",
        10,
        &[stop_with_savepoint(1)],
        LifecycleState::Upgrading,
        &[Reason::UpgradeStarted],
        &[Has::Says("pods changed"), upgrade(OperationPhase::Stopping)],
    );
    fx.exited_with_savepoint(1, SAVEPOINT);
    fx.expect(
        "1 -> 2: savepoint taken, the old pod goes",
        20,
        &[delete_pod(1)],
        LifecycleState::Upgrading,
        &[Reason::SavepointCompleted],
        &[Has::Savepoints(&[(SAVEPOINT, SavepointTrigger::Upgrade)])],
    );
    fx.no_pods();
    fx.expect(
        "1 -> 2: the old pod gone, both new pods start from the savepoint",
        22,
        &new_pods(2, 2),
        LifecycleState::Upgrading,
        &[],
        &[
            Has::Start(Start::From(SAVEPOINT)),
            Has::Reconciled("\"pods\":2"),
            Has::Pods(Some("0/2")),
            upgrade(OperationPhase::Starting),
        ],
    );
    fx.pod_of(2, 0, PodPhase::Running);
    fx.reports_running();
    fx.expect(
        "1 -> 2: pod 1 not listed yet: not done",
        25,
        &[],
        LifecycleState::Upgrading,
        &[],
        &[upgrade(OperationPhase::Starting)],
    );
    fx.all_run(2, 2);
    fx.expect(
        "1 -> 2: every pod runs: upgraded",
        30,
        &[],
        LifecycleState::Running,
        &[Reason::UpgradeCompleted],
        &[Has::NoOperation, Has::Pods(Some("2/2")), Has::Quiet(35)],
    );

    fx = fx.spec(|s| s.pods = 1);
    fx.expect(
        "2 -> 1: the stop with a savepoint goes to pod 0",
        40,
        &[stop_pod_0(2)],
        LifecycleState::Upgrading,
        &[Reason::UpgradeStarted],
        &[Has::Says("pods changed"), upgrade(OperationPhase::Stopping)],
    );
    fx.obs.runtime = None;
    fx.pod_of(2, 0, PodPhase::Succeeded).outcome = Some(RuntimeOutcome::Stopped {
        savepoint: Some(SAVEPOINT_2.into()),
    });
    fx.expect(
        "2 -> 1: pod 0 exited with the savepoint, pod 1 still up: both go",
        50,
        &[delete_pod_of(2, 1), delete_pod_of(2, 0)],
        LifecycleState::Upgrading,
        &[Reason::SavepointCompleted],
        &[],
    );
    fx.obs.pods.retain(|p| p.index == 1);
    fx.pod_of(2, 1, PodPhase::Succeeded).deleting = true;
    fx.expect(
        "2 -> 1: pod 1 still terminating: the new pod waits",
        52,
        &[],
        LifecycleState::Upgrading,
        &[],
        &[upgrade(OperationPhase::Stopping)],
    );
    fx.no_pods();
    fx.expect(
        "2 -> 1: every old pod gone: one pod, named as before, from the savepoint",
        54,
        &new_pod(3),
        LifecycleState::Upgrading,
        &[],
        &[Has::Start(Start::From(SAVEPOINT_2)), Has::Pods(Some("0/1"))],
    );
    fx.runs(3);
    fx.expect(
        "2 -> 1: running on one pod",
        60,
        &[],
        LifecycleState::Running,
        &[Reason::UpgradeCompleted],
        &[Has::Pods(Some("1/1"))],
    );
}
