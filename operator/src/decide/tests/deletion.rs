//! The finalizer: an optional final savepoint, then the pods go, then the finalizer.

use weir_crds::{LifecycleState, OperationKind, OperationPhase, SavepointTrigger, StopMode};

use super::fixture::*;
use crate::decide::Action;
use crate::events::Reason;

/// Running, then deleted.
fn deleted() -> Fx {
    Fx::running().then(|fx| fx.job.deleting = true)
}

/// Running with `savepointOnDelete`, then deleted.
fn deleted_with_final_savepoint() -> Fx {
    Fx::running()
        .spec(|s| s.savepoint_on_delete = true)
        .then(|fx| fx.job.deleting = true)
}

#[test]
fn deletion_removes_the_pods_then_the_finalizer() {
    run(&[
        Row {
            what: "deleted: the pods go first",
            given: deleted,
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Deleting,
            events: &[Reason::Deleting],
            also: &[Has::NoOperation],
        },
        Row {
            what: "deleted, pods gone: the finalizer goes",
            given: || deleted().at(10).then(|fx| fx.no_pods()),
            at: 12,
            actions: vec![Action::RemoveFinalizer],
            state: LifecycleState::Deleting,
            events: &[],
            also: &[],
        },
        Row {
            what: "deleted with savepointOnDelete: a stop with savepoint first",
            given: deleted_with_final_savepoint,
            at: 10,
            actions: vec![stop_with_savepoint(1)],
            state: LifecycleState::Deleting,
            events: &[Reason::Deleting],
            also: &[Has::Operation(
                OperationKind::Delete,
                OperationPhase::Stopping,
                StopMode::Savepoint,
            )],
        },
        Row {
            what: "final savepoint not there yet: waits",
            given: || deleted_with_final_savepoint().at(10),
            at: 12,
            actions: vec![],
            state: LifecycleState::Deleting,
            events: &[],
            also: &[],
        },
        Row {
            what: "the pod exited with the final savepoint: recorded, the pods go",
            given: || {
                deleted_with_final_savepoint()
                    .at(10)
                    .then(|fx| fx.exited_with_savepoint(1, "s3://b/sp-final"))
            },
            at: 20,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Deleting,
            events: &[Reason::SavepointCompleted],
            also: &[Has::Savepoints(&[(
                "s3://b/sp-final",
                SavepointTrigger::Delete,
            )])],
        },
        Row {
            what: "final savepoint taken, pods gone: the finalizer goes",
            given: || {
                deleted_with_final_savepoint()
                    .at(10)
                    .then(|fx| fx.exited_with_savepoint(1, "s3://b/sp-final"))
                    .at(20)
                    .then(|fx| fx.no_pods())
            },
            at: 22,
            actions: vec![Action::RemoveFinalizer],
            state: LifecycleState::Deleting,
            events: &[],
            also: &[],
        },
        Row {
            what: "no final savepoint within savepoint.timeout: deletes anyway",
            given: || deleted_with_final_savepoint().at(10),
            at: 100,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Deleting,
            events: &[Reason::SavepointFailed],
            also: &[Has::Savepoints(&[])],
        },
    ]);
}
