//! A running job and one change to its spec, its status or the operator's settings: the
//! decision that follows. Upgrades and suspends, whose later steps matter as much as the
//! first, run to the end in `upgrades.rs` and `suspend.rs`.

use weir_crds::{
    DesiredState, LifecycleState, OperationKind, OperationPhase, StopMode, StreamJobSpec,
    UpgradeMode,
};

use super::fixture::*;
use crate::decide::spec_change::{SpecChange, classify};
use crate::decide::spec_json;
use crate::events::Reason;

/// A restart-class change (resources) in upgrade mode `mode`.
fn more_memory(mode: UpgradeMode) -> Fx {
    Fx::running().spec(|s| {
        s.upgrade_mode = mode;
        s.resources.memory = "4Gi".into();
    })
}

/// A status as operators wrote it before the image was part of `lastReconciledSpec`, with
/// pods that run `deployed`: upgrading the operator must not read it as an image change
/// unless the pods really run another image.
fn legacy_status(deployed: &str) -> Fx {
    Fx::running().then(|fx| {
        let st = &mut fx.job.status;
        st.last_reconciled_spec = Some(spec_json(&parse_spec()));
        st.last_stable_spec = st.last_reconciled_spec.clone();
        st.deployed_image = Some(deployed.into());
    })
}

/// A last-state job upgraded to an image of its own; then the operator's default changes,
/// which must not touch a job that never used it.
fn pinned_image() -> Fx {
    let mut fx = Fx::running()
        .spec(|s| {
            s.upgrade_mode = UpgradeMode::LastState;
            s.image = Some("weir-runtime:pinned".into());
        })
        .at(5)
        .then(|fx| fx.no_pods())
        .at(6)
        .then(|fx| fx.runs(2))
        .at(10);
    assert_eq!(
        fx.job.status.deployed_image.as_deref(),
        Some("weir-runtime:pinned")
    );
    fx.default_image("weir-runtime:2");
    fx
}

/// A restart (same spec, newest checkpoint) on its way: the old pod stops.
const RESTART: Has = Has::Operation(
    OperationKind::Restart,
    OperationPhase::Stopping,
    StopMode::Checkpoint,
);

#[test]
fn a_running_job_after_one_change() {
    run(&[
        Row {
            what: "nothing changed: steady state emits nothing",
            given: Fx::running,
            at: 5,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Condition("Ready", "True", "Running"), Has::NoOperation],
        },
        Row {
            what: "invalid update: the running spec stays",
            given: || Fx::running().spec(|s| s.parallelism = 0),
            at: 5,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[Reason::InvalidSpec],
            also: &[
                Has::ReconciledUnchanged,
                Has::Condition("Progressing", "False", "InvalidSpec"),
            ],
        },
        Row {
            what: "upgradeMode and restart policy only: recorded, nothing else",
            given: || {
                Fx::running().spec(|s| {
                    s.upgrade_mode = UpgradeMode::Stateless;
                    s.restart.max_restarts = 9;
                })
            },
            at: 10,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::NoOperation, Has::Reconciled("\"maxRestarts\":9")],
        },
        Row {
            what: "restartNonce: restart without using the budget",
            given: || Fx::running().spec(|s| s.restart_nonce = 7),
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::Restarting],
            also: &[RESTART, Has::ObservedRestartNonce(7), Has::Restarts(0)],
        },
        Row {
            what: "resources, savepoint mode: restart from the newest checkpoint",
            given: || more_memory(UpgradeMode::Savepoint),
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::UpgradeStarted],
            also: &[RESTART, Has::Says("resources")],
        },
        Row {
            what: "resources, last-state mode: the same restart",
            given: || more_memory(UpgradeMode::LastState),
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::UpgradeStarted],
            also: &[RESTART, Has::Says("resources")],
        },
        Row {
            what: "resources, stateless mode: the same restart, state kept",
            given: || more_memory(UpgradeMode::Stateless),
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::UpgradeStarted],
            also: &[RESTART, Has::Says("resources")],
        },
        Row {
            what: "status without the image in its specs, pods run the default: no change",
            given: || legacy_status("weir-runtime:test"),
            at: 10,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::NoOperation],
        },
        Row {
            what: "status without the image in its specs, pods run another: upgrade",
            given: || legacy_status("weir-runtime:1"),
            at: 10,
            actions: vec![stop_with_savepoint(1)],
            state: LifecycleState::Upgrading,
            events: &[Reason::UpgradeStarted],
            also: &[
                Has::Says("image changed from weir-runtime:1 to weir-runtime:test"),
                Has::Operation(
                    OperationKind::Upgrade,
                    OperationPhase::Stopping,
                    StopMode::Savepoint,
                ),
            ],
        },
        Row {
            what: "a job with its own image: a new operator default changes nothing",
            given: pinned_image,
            at: 20,
            actions: vec![],
            state: LifecycleState::Running,
            events: &[],
            also: &[Has::Image("weir-runtime:pinned")],
        },
    ]);
}

#[test]
fn spec_change_classes_take_the_largest_changed_field() {
    // (what changed, the edit, its class, the fields that decided it)
    type Edit = fn(&mut StreamJobSpec);
    let rows: &[(&str, Edit, SpecChange, &[&str])] = &[
        ("nothing", |_| {}, SpecChange::Ignore, &[]),
        (
            "restartNonce",
            |s| s.restart_nonce = 3,
            SpecChange::Ignore,
            &[],
        ),
        (
            "upgradeMode",
            |s| s.upgrade_mode = UpgradeMode::Stateless,
            SpecChange::Ignore,
            &[],
        ),
        (
            "state",
            |s| s.state = DesiredState::Suspended,
            SpecChange::Ignore,
            &[],
        ),
        (
            "savepoint policy",
            |s| s.savepoint.history_max_count = 5,
            SpecChange::Ignore,
            &[],
        ),
        (
            "resources",
            |s| s.resources.cpu = "2".into(),
            SpecChange::Restart,
            &["resources"],
        ),
        (
            "interval",
            |s| s.checkpoint.interval = "1m".parse().unwrap(),
            SpecChange::Restart,
            &["checkpoint.interval"],
        ),
        (
            "parallelism",
            |s| s.parallelism = 5,
            SpecChange::Upgrade,
            &["parallelism"],
        ),
        (
            "pods: a rescale, as parallelism",
            |s| s.pods = 2,
            SpecChange::Upgrade,
            &["pods"],
        ),
        (
            "image",
            |s| s.image = Some("x".into()),
            SpecChange::Upgrade,
            &["image"],
        ),
        (
            "pipeline + resources",
            |s| {
                s.resources.cpu = "2".into();
                s.pipeline.transforms.clear();
            },
            SpecChange::Upgrade,
            &["pipeline"],
        ),
    ];
    let base = parse_spec();
    for &(what, edit, class, fields) in rows {
        let mut new = base.clone();
        edit(&mut new);
        assert_eq!(classify(&base, &new), (class, fields.to_vec()), "{what}");
    }
}
