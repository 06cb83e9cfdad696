//! Decision tables: one test per transition, each built from a job fixture, what is observed
//! and the time, asserting the actions, the new lifecycle state and the events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod changes;
mod deletion;
mod deploy;
mod fixture;
mod healing;
mod savepoints;
mod suspend;

use weir_crds::{
    LifecycleState, OperationKind, OperationPhase, SavepointTrigger, StopMode, UpgradeMode,
};

use super::*;
use crate::events::Reason;
use fixture::*;

#[test]
fn savepoint_upgrade_stops_with_savepoint_then_starts_from_it() {
    let mut fx = Fx::running().spec(|s| s.parallelism = 3);
    let d = fx.step(10);
    assert_eq!(
        d.actions,
        vec![Action::StopWithSavepoint {
            pod: "sales-1".into()
        }]
    );
    assert_eq!(d.status.lifecycle_state, LifecycleState::Upgrading);
    assert!(
        d.events[0].message.contains("parallelism"),
        "{:?}",
        d.events
    );
    // Still stopping: no second request within the savepoint timeout.
    assert!(fx.step(12).actions.is_empty());
    // The runtime exits 0 with the savepoint in its termination message.
    fx.exited_with_savepoint(1, "s3://bucket/weir/ns/sales/savepoints/sp-5-a");
    let d = fx.step(20);
    assert_eq!(
        d.actions,
        vec![Action::DeletePod {
            name: "sales-1".into()
        }]
    );
    assert_eq!(d.status.savepoints.len(), 1);
    assert_eq!(d.status.savepoints[0].trigger, SavepointTrigger::Upgrade);
    fx.no_pods();
    let d = fx.step(22);
    assert_eq!(
        d.actions,
        vec![Action::EnsureConfig, Action::CreatePod { incarnation: 2 }]
    );
    let start = d.status.start.clone().unwrap();
    assert_eq!(
        start.from.as_deref(),
        Some("s3://bucket/weir/ns/sales/savepoints/sp-5-a")
    );
    assert!(
        d.status
            .last_reconciled_spec
            .unwrap()
            .contains("\"parallelism\":3")
    );
    // Ready: upgrade completes.
    fx.pod(2, PodPhase::Running).runtime_running();
    let d = fx.step(30);
    assert_eq!(d.status.lifecycle_state, LifecycleState::Running);
    assert!(d.status.operation.is_none());
    assert_eq!(reasons(&d), vec![Reason::UpgradeCompleted]);
    assert_eq!(d.status.last_stable_spec, d.status.last_reconciled_spec);
}

#[test]
fn last_state_upgrade_stops_with_a_final_checkpoint_and_keeps_the_lineage() {
    let mut fx = Fx::running().spec(|s| {
        s.upgrade_mode = UpgradeMode::LastState;
        s.parallelism = 4;
    });
    let d = fx.step(10);
    assert_eq!(
        d.actions,
        vec![Action::DeletePod {
            name: "sales-1".into()
        }]
    );
    fx.no_pods();
    let d = fx.step(15);
    assert_eq!(
        d.actions.last(),
        Some(&Action::CreatePod { incarnation: 2 })
    );
    assert_eq!(
        d.status.start, None,
        "restores the newest checkpoint of the lineage"
    );
}

#[test]
fn stateless_upgrade_starts_empty() {
    let mut fx = Fx::running().spec(|s| {
        s.upgrade_mode = UpgradeMode::Stateless;
        s.image = Some("weir-runtime:2".into());
    });
    fx.step(10);
    fx.no_pods();
    let d = fx.step(15);
    let start = d.status.start.unwrap();
    assert_eq!(start.from, None, "empty state");
    assert!(!start.id.is_empty(), "a new start id: runs once");
    assert_eq!(d.status.deployed_image.as_deref(), Some("weir-runtime:2"));
}

/// The operator now defaults to `image` (its `--runtime-image` changed).
fn default_image(fx: &mut Fx, image: &str) {
    fx.settings.default_image = image.into();
}

#[test]
fn changed_default_image_upgrades_through_a_savepoint() {
    let mut fx = Fx::running();
    assert_eq!(
        fx.job.status.deployed_image.as_deref(),
        Some("weir-runtime:test")
    );
    default_image(&mut fx, "weir-runtime:2");
    let d = fx.step(10);
    assert_eq!(
        d.actions,
        vec![Action::StopWithSavepoint {
            pod: "sales-1".into()
        }]
    );
    assert_eq!(d.status.lifecycle_state, LifecycleState::Upgrading);
    assert_eq!(reasons(&d), vec![Reason::UpgradeStarted]);
    assert!(
        d.events[0]
            .message
            .contains("image changed from weir-runtime:test to weir-runtime:2"),
        "{:?}",
        d.events
    );
    fx.exited_with_savepoint(1, "s3://b/sp-img");
    fx.step(20);
    fx.no_pods();
    let d = fx.step(22);
    assert_eq!(
        d.actions,
        vec![Action::EnsureConfig, Action::CreatePod { incarnation: 2 }]
    );
    assert_eq!(d.status.deployed_image.as_deref(), Some("weir-runtime:2"));
    assert_eq!(
        d.status.start.clone().unwrap().from.as_deref(),
        Some("s3://b/sp-img")
    );
    fx.pod(2, PodPhase::Running).runtime_running();
    let d = fx.step(30);
    assert_eq!(reasons(&d), vec![Reason::UpgradeCompleted]);
    let d = fx.step(40);
    assert!(d.actions.is_empty(), "upgraded once: {:?}", d.actions);
    assert!(d.events.is_empty(), "{:?}", d.events);
}

#[test]
fn changed_default_image_follows_last_state_and_stateless_modes() {
    for (mode, start_from_empty) in [
        (UpgradeMode::LastState, false),
        (UpgradeMode::Stateless, true),
    ] {
        let mut fx = Fx::running().spec(|s| s.upgrade_mode = mode);
        fx.step(5);
        default_image(&mut fx, "weir-runtime:2");
        let d = fx.step(10);
        assert_eq!(
            d.actions,
            vec![Action::DeletePod {
                name: "sales-1".into()
            }],
            "{mode:?}"
        );
        assert_eq!(d.status.operation.unwrap().kind, OperationKind::Upgrade);
        fx.no_pods();
        let d = fx.step(15);
        assert_eq!(
            d.actions.last(),
            Some(&Action::CreatePod { incarnation: 2 })
        );
        assert_eq!(d.status.deployed_image.as_deref(), Some("weir-runtime:2"));
        assert_eq!(
            d.status.start.is_some(),
            start_from_empty,
            "{mode:?}: {:?}",
            d.status.start
        );
    }
}

#[test]
fn heal_keeps_the_deployed_image_until_the_image_upgrade_happened() {
    // The pod crashes just as the operator comes back with a new default image.
    let mut fx = Fx::running();
    default_image(&mut fx, "weir-runtime:2");
    fx.pod(1, PodPhase::Failed);
    fx.last_pod().reason = Some("OOMKilled".into());
    fx.obs.runtime = None;
    let d = fx.step(10);
    let op = d.status.operation.clone().unwrap();
    assert_eq!(
        (op.kind, op.stop),
        (OperationKind::Upgrade, StopMode::Savepoint),
        "an upgrade, waiting for its savepoint"
    );
    fx.no_pods();
    let d = fx.step(12);
    assert_eq!(
        d.actions.last(),
        Some(&Action::CreatePod { incarnation: 2 })
    );
    assert_eq!(
        d.status.deployed_image.as_deref(),
        Some("weir-runtime:test"),
        "the healed pod runs the deployed image, never the new default silently"
    );
    // Running again: now the savepoint is taken and the new image starts from it.
    fx.pod(2, PodPhase::Running).runtime_running();
    let d = fx.step(20);
    assert_eq!(
        d.actions,
        vec![Action::StopWithSavepoint {
            pod: "sales-2".into()
        }]
    );
    fx.exited_with_savepoint(2, "s3://b/sp-img");
    fx.step(25);
    fx.no_pods();
    let d = fx.step(27);
    assert_eq!(
        d.actions.last(),
        Some(&Action::CreatePod { incarnation: 3 })
    );
    assert_eq!(d.status.deployed_image.as_deref(), Some("weir-runtime:2"));
}

#[test]
fn savepoint_failure_during_upgrade_waits_and_never_falls_back() {
    let mut fx = Fx::running().spec(|s| s.parallelism = 3);
    fx.step(10);
    // The pod dies while stopping: no savepoint.
    fx.pod(1, PodPhase::Failed);
    fx.last_pod().reason = Some("Error".into());
    fx.obs.runtime = None;
    let d = fx.step(20);
    let op = d.status.operation.clone().unwrap();
    assert_eq!(op.phase, OperationPhase::Stopping);
    assert_eq!(op.stop, StopMode::Savepoint, "no silent downgrade");
    assert!(
        op.waiting
            .unwrap()
            .contains("a savepoint needs a running job")
    );
    assert!(reasons(&d).contains(&Reason::SavepointFailed));
    let p = condition(&d, "Progressing");
    assert_eq!(p.status, "False");
    assert!(
        p.message.contains("upgradeMode: last-state"),
        "{}",
        p.message
    );
    // The old spec is healed so the savepoint can be retried.
    fx.no_pods();
    let d = fx.step(25);
    assert_eq!(
        d.actions.last(),
        Some(&Action::CreatePod { incarnation: 2 })
    );
    assert!(
        d.status
            .last_reconciled_spec
            .unwrap()
            .contains("\"parallelism\":2")
    );
    fx.pod(2, PodPhase::Running).runtime_running();
    let d = fx.step(30);
    assert_eq!(
        d.actions,
        vec![Action::StopWithSavepoint {
            pod: "sales-2".into()
        }]
    );
    // The user decides to go on without a savepoint.
    let mut fx = fx.spec(|s| s.upgrade_mode = UpgradeMode::LastState);
    let d = fx.step(40);
    assert_eq!(d.status.operation.unwrap().stop, StopMode::Checkpoint);
    assert_eq!(
        d.actions,
        vec![Action::DeletePod {
            name: "sales-2".into()
        }]
    );
}

#[test]
fn savepoint_timeout_asks_again_and_says_so() {
    let mut fx = Fx::running().spec(|s| s.parallelism = 3);
    fx.step(10);
    let d = fx.step(100);
    assert_eq!(
        d.actions,
        vec![Action::StopWithSavepoint {
            pod: "sales-1".into()
        }]
    );
    assert!(
        d.status
            .operation
            .unwrap()
            .waiting
            .unwrap()
            .contains("no savepoint within 1m")
    );
}

fn upgraded_but_not_ready(rollback: bool) -> (Fx, Decision) {
    let mut fx = Fx::running().spec(|s| {
        s.parallelism = 3;
        s.upgrade.rollback = rollback;
    });
    fx.step(10);
    fx.exited_with_savepoint(1, "s3://b/sp-5");
    fx.step(20);
    fx.no_pods();
    fx.step(22);
    fx.pod(2, PodPhase::Pending);
    assert!(fx.step(100).actions.is_empty(), "within readyTimeout: wait");
    let d = fx.step(400);
    (fx, d)
}

#[test]
fn upgrade_not_ready_rolls_back_from_the_upgrade_savepoint() {
    let (mut fx, d) = upgraded_but_not_ready(true);
    assert_eq!(reasons(&d), vec![Reason::RollingBack]);
    let op = d.status.operation.clone().unwrap();
    assert_eq!(op.kind, OperationKind::Rollback);
    assert_eq!(
        d.actions,
        vec![Action::DeletePod {
            name: "sales-2".into()
        }]
    );
    fx.no_pods();
    let d = fx.step(405);
    assert_eq!(
        d.actions.last(),
        Some(&Action::CreatePod { incarnation: 3 })
    );
    assert_eq!(
        d.status.start.clone().unwrap().from.as_deref(),
        Some("s3://b/sp-5")
    );
    assert!(
        d.status
            .last_reconciled_spec
            .unwrap()
            .contains("\"parallelism\":2")
    );
    fx.pod(3, PodPhase::Running).runtime_running();
    let d = fx.step(410);
    assert_eq!(d.status.lifecycle_state, LifecycleState::Running);
    // The failed spec is not retried until it changes.
    let d = fx.step(420);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

#[test]
fn upgrade_not_ready_without_rollback_fails() {
    let (_, d) = upgraded_but_not_ready(false);
    assert_eq!(d.status.lifecycle_state, LifecycleState::Failed);
    assert_eq!(reasons(&d), vec![Reason::UpgradeFailed]);
    assert_eq!(
        d.actions,
        vec![Action::DeletePod {
            name: "sales-2".into()
        }]
    );
}

#[test]
fn invalid_spec_during_an_upgrade_lets_the_upgrade_finish() {
    let mut fx = Fx::running().spec(|s| s.parallelism = 3);
    fx.step(10);
    let mut fx = fx.spec(|s| s.parallelism = 0);
    fx.exited_with_savepoint(1, "s3://b/sp-5");
    let d = fx.step(20);
    assert_eq!(
        d.actions,
        vec![Action::DeletePod {
            name: "sales-1".into()
        }]
    );
    fx.no_pods();
    let d = fx.step(22);
    assert_eq!(
        d.actions.last(),
        Some(&Action::CreatePod { incarnation: 2 })
    );
    assert!(
        d.status
            .last_reconciled_spec
            .unwrap()
            .contains("\"parallelism\":3")
    );
}
