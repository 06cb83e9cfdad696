//! Upgrades: the old pod stops as `upgradeMode` says, the new spec starts from what the stop
//! left, and what happens when the savepoint cannot be taken or the new spec never gets
//! ready.

use weir_crds::{
    LifecycleState, OperationKind, OperationPhase, SavepointTrigger, StopMode, UpgradeMode,
};

use super::fixture::*;
use crate::decide::PodPhase;
use crate::events::Reason;

const SAVEPOINT: &str = "s3://b/sp-5";

/// An upgrade on its way, stopping with a savepoint.
const UPGRADE_STOPPING: Has = Has::Operation(
    OperationKind::Upgrade,
    OperationPhase::Stopping,
    StopMode::Savepoint,
);

/// One upgrade, from the change to the new spec running.
struct Upgrade {
    what: &'static str,
    /// A running job and the change, not yet decided on.
    given: fn() -> Fx,
    stop: StopMode,
    /// In the `UpgradeStarted` event.
    says: &'static str,
    start: Start,
    image: &'static str,
    /// In the reconciled spec once the new pod is created.
    reconciled: &'static str,
}

/// Running in `mode`; then the operator's default image changes. The mode change is decided
/// first, so the image is the only change the upgrade sees.
fn default_image_in(mode: UpgradeMode) -> Fx {
    Fx::running()
        .spec(|s| s.upgrade_mode = mode)
        .at(5)
        .then(|fx| fx.default_image("weir-runtime:2"))
}

#[test]
fn each_upgrade_mode_stops_then_starts_from_what_the_stop_left() {
    let rows = [
        Upgrade {
            what: "parallelism, savepoint mode",
            given: || Fx::running().spec(|s| s.parallelism = 3),
            stop: StopMode::Savepoint,
            says: "parallelism",
            start: Start::From(SAVEPOINT),
            image: "weir-runtime:test",
            reconciled: "\"parallelism\":3",
        },
        Upgrade {
            what: "parallelism, last-state mode",
            given: || {
                Fx::running().spec(|s| {
                    s.upgrade_mode = UpgradeMode::LastState;
                    s.parallelism = 4;
                })
            },
            stop: StopMode::Checkpoint,
            says: "parallelism",
            start: Start::Newest,
            image: "weir-runtime:test",
            reconciled: "\"parallelism\":4",
        },
        Upgrade {
            what: "image, stateless mode",
            given: || {
                Fx::running().spec(|s| {
                    s.upgrade_mode = UpgradeMode::Stateless;
                    s.image = Some("weir-runtime:2".into());
                })
            },
            stop: StopMode::Stateless,
            says: "image changed from weir-runtime:test to weir-runtime:2",
            start: Start::Empty,
            image: "weir-runtime:2",
            reconciled: "\"image\":\"weir-runtime:2\"",
        },
        Upgrade {
            what: "operator's default image, savepoint mode",
            given: || Fx::running().then(|fx| fx.default_image("weir-runtime:2")),
            stop: StopMode::Savepoint,
            says: "image changed from weir-runtime:test to weir-runtime:2",
            start: Start::From(SAVEPOINT),
            image: "weir-runtime:2",
            reconciled: "\"image\":\"weir-runtime:2\"",
        },
        Upgrade {
            what: "operator's default image, last-state mode",
            given: || default_image_in(UpgradeMode::LastState),
            stop: StopMode::Checkpoint,
            says: "image changed from weir-runtime:test to weir-runtime:2",
            start: Start::Newest,
            image: "weir-runtime:2",
            reconciled: "\"image\":\"weir-runtime:2\"",
        },
        Upgrade {
            what: "operator's default image, stateless mode",
            given: || default_image_in(UpgradeMode::Stateless),
            stop: StopMode::Stateless,
            says: "image changed from weir-runtime:test to weir-runtime:2",
            start: Start::Empty,
            image: "weir-runtime:2",
            reconciled: "\"image\":\"weir-runtime:2\"",
        },
    ];
    for r in rows {
        let step = |s: &str| format!("{}: {s}", r.what);
        let mut fx = (r.given)();
        let (stop, kept): (_, &[_]) = match r.stop {
            StopMode::Savepoint => (
                stop_with_savepoint(1),
                &[(SAVEPOINT, SavepointTrigger::Upgrade)],
            ),
            _ => (delete_pod(1), &[]),
        };
        let operation = |phase| Has::Operation(OperationKind::Upgrade, phase, r.stop);
        fx.expect(
            &step("stop"),
            10,
            &[stop],
            LifecycleState::Upgrading,
            &[Reason::UpgradeStarted],
            &[Has::Says(r.says), operation(OperationPhase::Stopping)],
        );
        if r.stop == StopMode::Savepoint {
            // The runtime exits 0 with the savepoint in its termination message.
            fx.exited_with_savepoint(1, SAVEPOINT);
            fx.expect(
                &step("savepoint taken"),
                20,
                &[delete_pod(1)],
                LifecycleState::Upgrading,
                &[Reason::SavepointCompleted],
                &[Has::Savepoints(&[(SAVEPOINT, SavepointTrigger::Upgrade)])],
            );
        }
        fx.no_pods();
        fx.expect(
            &step("old pod gone: the new spec starts"),
            22,
            &new_pod(2),
            LifecycleState::Upgrading,
            &[],
            &[
                Has::Start(r.start),
                Has::Image(r.image),
                Has::Reconciled(r.reconciled),
                Has::Savepoints(kept),
                operation(OperationPhase::Starting),
            ],
        );
        fx.runs(2);
        fx.expect(
            &step("new pod running: upgraded, once"),
            30,
            &[],
            LifecycleState::Running,
            &[Reason::UpgradeCompleted],
            &[Has::NoOperation, Has::StableIsReconciled, Has::Quiet(40)],
        );
    }
}

/// Running; parallelism 3 in savepoint mode was asked for at 10: the old pod is stopping.
fn stopping() -> Fx {
    Fx::running().spec(|s| s.parallelism = 3).at(10)
}

/// Stopping, and the pod dies before it took a savepoint.
fn died_while_stopping() -> Fx {
    stopping().then(|fx| fx.fails(1).reason = Some("Error".into()))
}

#[test]
fn an_upgrade_waiting_for_its_savepoint() {
    run(&[
        Row {
            what: "no savepoint yet: no second request within savepoint.timeout",
            given: stopping,
            at: 12,
            actions: vec![],
            state: LifecycleState::Upgrading,
            events: &[],
            also: &[UPGRADE_STOPPING],
        },
        Row {
            what: "no savepoint within savepoint.timeout (1m): asks again and says so",
            given: stopping,
            at: 100,
            actions: vec![stop_with_savepoint(1)],
            state: LifecycleState::Upgrading,
            events: &[Reason::SavepointFailed],
            also: &[UPGRADE_STOPPING, Has::Waiting("no savepoint within 1m")],
        },
        Row {
            what: "the pod exited with the savepoint: recorded, the old pod goes",
            given: || stopping().then(|fx| fx.exited_with_savepoint(1, SAVEPOINT)),
            at: 20,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Upgrading,
            events: &[Reason::SavepointCompleted],
            also: &[
                UPGRADE_STOPPING,
                Has::Savepoints(&[(SAVEPOINT, SavepointTrigger::Upgrade)]),
            ],
        },
        Row {
            what: "the pod died without a savepoint: waits, never falls back",
            given: died_while_stopping,
            at: 20,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Upgrading,
            events: &[Reason::SavepointFailed],
            also: &[
                UPGRADE_STOPPING,
                Has::Waiting("a savepoint needs a running job"),
                Has::Condition("Progressing", "False", "UpgradeWaiting"),
                Has::ConditionSays("Progressing", "upgradeMode: last-state"),
            ],
        },
        Row {
            what: "the user switches to last-state: stops through a final checkpoint",
            given: || stopping().spec(|s| s.upgrade_mode = UpgradeMode::LastState),
            at: 20,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Upgrading,
            events: &[],
            also: &[Has::Operation(
                OperationKind::Upgrade,
                OperationPhase::Stopping,
                StopMode::Checkpoint,
            )],
        },
        Row {
            what: "the spec turns invalid, then the savepoint comes: the upgrade goes on",
            given: || {
                stopping()
                    .spec(|s| s.parallelism = 0)
                    .then(|fx| fx.exited_with_savepoint(1, SAVEPOINT))
            },
            at: 20,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Upgrading,
            events: &[Reason::InvalidSpec, Reason::SavepointCompleted],
            also: &[UPGRADE_STOPPING],
        },
        Row {
            what: "the spec turned invalid, old pod gone: the upgrade's spec starts",
            given: || {
                stopping()
                    .spec(|s| s.parallelism = 0)
                    .then(|fx| fx.exited_with_savepoint(1, SAVEPOINT))
                    .at(20)
                    .then(|fx| fx.no_pods())
            },
            at: 22,
            actions: new_pod(2),
            state: LifecycleState::Upgrading,
            events: &[],
            also: &[Has::Reconciled("\"parallelism\":3")],
        },
    ]);
}

#[test]
fn a_savepoint_that_cannot_be_taken_heals_the_old_spec_and_waits_for_the_user() {
    // Goes on from the row "the pod died without a savepoint" above.
    let mut fx = died_while_stopping().at(20).then(|fx| fx.no_pods());
    fx.expect(
        "the old spec is healed, so the savepoint can be retried",
        25,
        &new_pod(2),
        LifecycleState::Upgrading,
        &[Reason::SavepointFailed, Reason::Restarting],
        &[UPGRADE_STOPPING, Has::Reconciled("\"parallelism\":2")],
    );
    fx.runs(2);
    fx.expect(
        "running again: the savepoint is asked for again",
        30,
        &[stop_with_savepoint(2)],
        LifecycleState::Upgrading,
        &[],
        &[UPGRADE_STOPPING, Has::NotWaiting],
    );
    let mut fx = fx.spec(|s| s.upgrade_mode = UpgradeMode::LastState);
    fx.expect(
        "the user goes on without a savepoint",
        40,
        &[delete_pod(2)],
        LifecycleState::Upgrading,
        &[],
        &[Has::Operation(
            OperationKind::Upgrade,
            OperationPhase::Stopping,
            StopMode::Checkpoint,
        )],
    );
}

#[test]
fn a_heal_keeps_the_deployed_image_until_the_image_upgrade_happened() {
    // The pod crashes just as the operator comes back with a new default image.
    let mut fx = Fx::running().then(|fx| {
        fx.default_image("weir-runtime:2");
        fx.oom_killed(1);
    });
    fx.expect(
        "crashed: an upgrade, waiting for its savepoint",
        10,
        &[delete_pod(1)],
        LifecycleState::Upgrading,
        &[Reason::UpgradeStarted, Reason::SavepointFailed],
        &[UPGRADE_STOPPING],
    );
    fx.no_pods();
    fx.expect(
        "healed with the deployed image, never the new default silently",
        12,
        &new_pod(2),
        LifecycleState::Upgrading,
        &[Reason::SavepointFailed, Reason::Restarting],
        &[Has::Image("weir-runtime:test")],
    );
    fx.runs(2);
    fx.expect(
        "running again: the savepoint is taken now",
        20,
        &[stop_with_savepoint(2)],
        LifecycleState::Upgrading,
        &[],
        &[UPGRADE_STOPPING],
    );
    let d = fx.exits_with_savepoint_and_restarts(2, "s3://b/sp-img", 25);
    assert_eq!(d.actions, new_pod(3), "the new image starts");
    assert_eq!(d.status.deployed_image.as_deref(), Some("weir-runtime:2"));
}

/// Upgraded to parallelism 3 through a savepoint; pod 2 stays pending from 22 on, so only
/// upgrade.readyTimeout decides what happens next.
fn not_ready(rollback: bool) -> Fx {
    let mut fx = Fx::running().spec(|s| {
        s.parallelism = 3;
        s.upgrade.rollback = rollback;
    });
    fx.step(10);
    fx.exits_with_savepoint_and_restarts(1, SAVEPOINT, 20);
    fx.pod(2, PodPhase::Pending);
    fx
}

#[test]
fn a_new_spec_that_does_not_become_ready() {
    run(&[
        Row {
            what: "rollback on, within upgrade.readyTimeout (5m): waits",
            given: || not_ready(true),
            at: 100,
            actions: vec![],
            state: LifecycleState::Upgrading,
            events: &[],
            also: &[],
        },
        Row {
            what: "rollback off, within upgrade.readyTimeout (5m): waits",
            given: || not_ready(false),
            at: 100,
            actions: vec![],
            state: LifecycleState::Upgrading,
            events: &[],
            also: &[],
        },
        Row {
            what: "rollback on, past upgrade.readyTimeout: back to the stable spec",
            given: || not_ready(true).at(100),
            at: 400,
            actions: vec![delete_pod(2)],
            state: LifecycleState::Upgrading,
            events: &[Reason::RollingBack],
            also: &[
                Has::Operation(
                    OperationKind::Rollback,
                    OperationPhase::Stopping,
                    StopMode::Savepoint,
                ),
                Has::Condition("Degraded", "True", "RollingBack"),
            ],
        },
        Row {
            what: "rollback off, past upgrade.readyTimeout: Failed",
            given: || not_ready(false).at(100),
            at: 400,
            actions: vec![delete_pod(2)],
            state: LifecycleState::Failed,
            events: &[Reason::UpgradeFailed],
            also: &[Has::NoOperation],
        },
    ]);
}

#[test]
fn a_rollback_starts_the_stable_spec_from_the_upgrade_savepoint() {
    // Goes on from the row "rollback on, past upgrade.readyTimeout" above.
    let mut fx = not_ready(true).at(100).at(400).then(|fx| fx.no_pods());
    fx.expect(
        "pods gone: the stable spec starts from the upgrade's savepoint",
        405,
        &new_pod(3),
        LifecycleState::Upgrading,
        &[],
        &[
            Has::Start(Start::From(SAVEPOINT)),
            Has::Reconciled("\"parallelism\":2"),
        ],
    );
    fx.runs(3);
    fx.expect(
        "running: the failed spec is not retried until it changes",
        410,
        &[],
        LifecycleState::Running,
        &[Reason::UpgradeCompleted],
        &[Has::NoOperation, Has::Quiet(420)],
    );
}
