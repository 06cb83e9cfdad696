//! A job that never ran: what its first decisions deploy, or why they deploy nothing.

use weir_crds::{LifecycleState, Transform};

use super::fixture::*;
use crate::decide::Settings;
use crate::events::Reason;

#[test]
fn a_new_job() {
    run(&[
        Row {
            what: "first deploy: no start point, the runtime restores what storage has",
            given: Fx::new,
            at: 0,
            actions: new_pod(1),
            state: LifecycleState::Deploying,
            events: &[Reason::Deploying],
            also: &[
                Has::Start(Start::Newest),
                Has::Image("weir-runtime:test"),
                Has::Condition("Ready", "False", "Deploying"),
                Has::Condition("Progressing", "True", "Deploying"),
            ],
        },
        Row {
            what: "first deploy with initialSavepointPath",
            given: || Fx::new().spec(|s| s.initial_savepoint_path = Some("s3://b/sp-9".into())),
            at: 0,
            actions: new_pod(1),
            state: LifecycleState::Deploying,
            events: &[Reason::Deploying],
            also: &[Has::Start(Start::From("s3://b/sp-9"))],
        },
        Row {
            what: "invalid spec: nothing deployed, Ready names the field",
            given: || {
                Fx::new().spec(|s| s.pipeline.transforms[0] = Transform::Filter("amout > 0".into()))
            },
            at: 0,
            actions: vec![],
            state: LifecycleState::Created,
            events: &[Reason::InvalidSpec],
            also: &[
                Has::Condition("Ready", "False", "InvalidSpec"),
                Has::ConditionSays("Ready", "spec.pipeline.transforms[0].filter"),
            ],
        },
        Row {
            what: "a Secret the spec names does not exist",
            given: || {
                Fx::new().then(|fx| {
                    fx.obs.problems.push((
                        "spec.checkpoint.s3.credentialsSecret".into(),
                        "Secret `s3` does not exist".into(),
                    ));
                })
            },
            at: 0,
            actions: vec![],
            state: LifecycleState::Created,
            events: &[Reason::InvalidSpec],
            also: &[Has::ConditionSays("Ready", "credentialsSecret")],
        },
        Row {
            what: "pod 1 not listed yet right after creation: not a failure",
            given: Fx::deployed,
            at: 3,
            actions: vec![],
            state: LifecycleState::Deploying,
            events: &[],
            also: &[Has::Restarts(0)],
        },
    ]);
}

#[test]
fn operator_s3_defaults_fill_only_what_the_job_leaves_unset() {
    let with_defaults = Settings {
        s3_defaults: weir_crds::JobS3Spec {
            endpoint: Some("http://minio.storage:9000".into()),
            region: Some("eu-west-1".into()),
            path_style: Some(true),
            credentials_secret: Some("weir-s3".into()),
            ca_pem_env: None,
        },
        ..settings()
    };
    let mut spec = parse_spec();
    spec.checkpoint.s3.region = Some("us-east-2".into());
    spec.checkpoint.s3.path_style = Some(false);
    let s3 = with_defaults.effective(spec).checkpoint.s3;
    assert_eq!(s3.endpoint.as_deref(), Some("http://minio.storage:9000"));
    assert_eq!(
        s3.region.as_deref(),
        Some("us-east-2"),
        "the job's value wins"
    );
    assert_eq!(s3.path_style, Some(false), "an explicit false is kept");
    assert_eq!(s3.credentials_secret.as_deref(), Some("weir-s3"));
    let untouched = settings().effective(parse_spec());
    assert_eq!(
        untouched,
        parse_spec(),
        "no defaults: the spec is unchanged"
    );
}
