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

/// One row per field of the spec (and of its checkpoint block): the field, an edit of it, and
/// its class. `every_spec_field_has_a_row` holds the rows to the CRD's list of fields.
type Edit = fn(&mut StreamJobSpec);
const FIELD_ROWS: &[(&str, Edit, SpecChange)] = &[
    ("image", |s| s.image = Some("x".into()), SpecChange::Upgrade),
    ("parallelism", |s| s.parallelism = 5, SpecChange::Upgrade),
    ("pods", |s| s.pods = 2, SpecChange::Upgrade),
    (
        "maxParallelism",
        |s| s.max_parallelism = 64,
        SpecChange::Upgrade,
    ),
    (
        "state",
        |s| s.state = DesiredState::Suspended,
        SpecChange::Ignore,
    ),
    (
        "upgradeMode",
        |s| s.upgrade_mode = UpgradeMode::Stateless,
        SpecChange::Ignore,
    ),
    ("restartNonce", |s| s.restart_nonce = 3, SpecChange::Ignore),
    (
        "savepointTriggerNonce",
        |s| s.savepoint_trigger_nonce = 3,
        SpecChange::Ignore,
    ),
    (
        "initialSavepointPath",
        |s| s.initial_savepoint_path = Some("s3://b/sp".into()),
        SpecChange::Ignore,
    ),
    (
        "allowNonRestoredState",
        |s| s.allow_non_restored_state = true,
        SpecChange::Upgrade,
    ),
    (
        "dropState",
        |s| s.drop_state = vec!["totals/window-0".into()],
        SpecChange::Upgrade,
    ),
    (
        "savepointOnDelete",
        |s| s.savepoint_on_delete = true,
        SpecChange::Ignore,
    ),
    (
        "stateBackend",
        |s| s.state_backend.kind = weir_crds::state_backend::StateBackendKind::Disk,
        SpecChange::Upgrade,
    ),
    (
        "checkpoint.interval",
        |s| s.checkpoint.interval = "1m".parse().unwrap(),
        SpecChange::Restart,
    ),
    (
        "checkpoint.timeout",
        |s| s.checkpoint.timeout = "20m".parse().unwrap(),
        SpecChange::Restart,
    ),
    (
        "checkpoint.minPause",
        |s| s.checkpoint.min_pause = "5s".parse().unwrap(),
        SpecChange::Restart,
    ),
    (
        "checkpoint.storage",
        |s| s.checkpoint.storage = "s3://other/weir".into(),
        SpecChange::Upgrade,
    ),
    (
        "checkpoint.retained",
        |s| s.checkpoint.retained = 9,
        SpecChange::Restart,
    ),
    (
        "checkpoint.s3",
        |s| s.checkpoint.s3.region = Some("eu-west-1".into()),
        SpecChange::Upgrade,
    ),
    (
        "checkpoint.exactlyOnce",
        |s| s.checkpoint.exactly_once = !s.checkpoint.exactly_once,
        SpecChange::Upgrade,
    ),
    (
        "checkpoint.progressTimeout",
        |s| s.checkpoint.progress_timeout = Some("1h".parse().unwrap()),
        SpecChange::Ignore,
    ),
    (
        "checkpoint.skipUnreadable",
        |s| s.checkpoint.skip_unreadable = true,
        SpecChange::Restart,
    ),
    (
        "checkpoint.cloud",
        |s| {
            s.checkpoint.cloud = Some(weir_crds::JobCloudSpec {
                credentials_secret: Some("rotated".into()),
            })
        },
        SpecChange::Restart,
    ),
    (
        "savepoint",
        |s| s.savepoint.history_max_count = 5,
        SpecChange::Ignore,
    ),
    (
        "restart",
        |s| s.restart.max_restarts = 1,
        SpecChange::Ignore,
    ),
    ("upgrade", |s| s.upgrade.rollback = true, SpecChange::Ignore),
    (
        "resources",
        |s| s.resources.cpu = "2".into(),
        SpecChange::Restart,
    ),
    (
        "serviceAccountName",
        |s| s.service_account_name = Some("reader".into()),
        SpecChange::Restart,
    ),
    (
        "imagePullSecrets",
        |s| s.image_pull_secrets = vec!["regcred".into()],
        SpecChange::Restart,
    ),
    (
        "logging",
        |s| s.logging.level = "debug".into(),
        SpecChange::Restart,
    ),
    (
        "podTemplate",
        |s| {
            s.pod_template = Some(serde_json::json!({"spec": {"nodeSelector": {"pool": "stream"}}}))
        },
        SpecChange::Restart,
    ),
    (
        "secretEnv",
        |s| {
            s.secret_env = vec![
                serde_json::from_value(
                    serde_json::json!({"name": "PW", "secret": "db", "key": "password"}),
                )
                .unwrap(),
            ]
        },
        SpecChange::Restart,
    ),
    (
        "pipeline",
        |s| s.pipeline.transforms.clear(),
        SpecChange::Upgrade,
    ),
];

#[test]
fn each_spec_field_has_its_class() {
    let base = parse_spec();
    for &(field, edit, class) in FIELD_ROWS {
        let mut new = base.clone();
        edit(&mut new);
        assert_ne!(new, base, "{field}: the row's edit changes nothing");
        let want = if class == SpecChange::Ignore {
            vec![]
        } else {
            vec![field]
        };
        assert_eq!(classify(&base, &new), (class, want), "{field}");
    }
}

/// The rows name exactly the fields a user can write: the CRD's properties of `spec` and of
/// `spec.checkpoint`. A new field fails here until it has a row (and `classify` does not
/// compile until it has a class).
#[test]
fn every_spec_field_has_a_row() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(weir_crds::StreamJob::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut fields: Vec<String> = Vec::new();
    for (name, schema) in spec["properties"].as_object().unwrap() {
        if name == "checkpoint" {
            for inner in schema["properties"].as_object().unwrap().keys() {
                fields.push(format!("checkpoint.{inner}"));
            }
        } else {
            fields.push(name.clone());
        }
    }
    fields.sort();
    let mut rows: Vec<String> = FIELD_ROWS.iter().map(|r| r.0.to_string()).collect();
    rows.sort();
    assert_eq!(rows, fields);
}

#[test]
fn a_change_takes_the_largest_class_and_names_its_fields() {
    let base = parse_spec();
    let mut new = base.clone();
    new.resources.cpu = "2".into();
    new.logging.level = "debug".into();
    new.restart_nonce = 7;
    assert_eq!(
        classify(&base, &new),
        (SpecChange::Restart, vec!["resources", "logging"])
    );
    new.pipeline.transforms.clear();
    assert_eq!(
        classify(&base, &new),
        (SpecChange::Upgrade, vec!["pipeline"])
    );
}

#[test]
fn a_change_to_what_pods_are_made_of_restarts_them_naming_the_field() {
    run(&[
        Row {
            what: "podTemplate: the pods restart now, not at the next crash",
            given: || {
                Fx::running().spec(|s| {
                    s.pod_template =
                        Some(serde_json::json!({"metadata": {"labels": {"team": "a"}}}))
                })
            },
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::UpgradeStarted],
            also: &[RESTART, Has::Says("podTemplate")],
        },
        Row {
            what: "serviceAccountName and logging: one restart naming both",
            given: || {
                Fx::running().spec(|s| {
                    s.service_account_name = Some("reader".into());
                    s.logging.level = "debug".into();
                })
            },
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::UpgradeStarted],
            also: &[RESTART, Has::Says("serviceAccountName, logging")],
        },
        Row {
            what: "imagePullSecrets: the pods restart",
            given: || Fx::running().spec(|s| s.image_pull_secrets = vec!["regcred".into()]),
            at: 10,
            actions: vec![delete_pod(1)],
            state: LifecycleState::Running,
            events: &[Reason::UpgradeStarted],
            also: &[RESTART, Has::Says("imagePullSecrets")],
        },
    ]);
}
