//! The objects a StreamJob owns: a ConfigMap with the job file, a Service for the control
//! API, a Secret with the control token, and one runtime pod per incarnation. Pure builders;
//! [`crate::act`] applies them.
//!
//! # Guarantees
//! - Every object carries an owner reference to the StreamJob (garbage-collected with it)
//!   and the labels `weir.dev/job` and, for pods, `weir.dev/incarnation`.
//! - Runtime pods run non-root with a read-only root filesystem, no privilege escalation, no
//!   capabilities and the runtime default seccomp profile; requests equal limits.
//! - Secrets reach the pod only as `secretKeyRef` environment variables, the control token
//!   among them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_crds::control::{
    self, ControlToken, LogFormat, RuntimeArgs, RuntimeCli, RuntimeCommand, Start,
    TERMINATION_LOG_ENV,
};
use weir_crds::{StartPoint, StreamJobSpec};

/// Label naming the StreamJob an object belongs to.
pub const JOB_LABEL: &str = "weir.dev/job";
/// Label with a runtime pod's incarnation number.
pub const INCARNATION_LABEL: &str = "weir.dev/incarnation";
/// Annotation overriding the control API port the operator calls (tests and local harnesses
/// that map ports); the container always listens on [`CONTROL_PORT`].
pub const CONTROL_PORT_ANNOTATION: &str = "weir.dev/control-port";
/// Port of the runtime's control API, as the pod and Service specs want it.
pub const CONTROL_PORT: i32 = control::CONTROL_PORT as i32;
/// Key of the job file in the ConfigMap, and its path in the pod.
pub const JOB_FILE: &str = "job.yaml";
const CONFIG_DIR: &str = "/etc/weir";
/// Non-root user the runtime runs as (the images' `nonroot` user).
const RUN_AS: i64 = 65_532;

/// Who owns what is built here.
#[derive(Debug, Clone)]
pub struct Owner {
    /// StreamJob name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// StreamJob uid.
    pub uid: String,
}

impl Owner {
    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "weir.dev/v1alpha1".into(),
                kind: "StreamJob".into(),
                name: self.name.clone(),
                uid: self.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (JOB_LABEL.to_string(), self.name.clone()),
            (
                "app.kubernetes.io/name".to_string(),
                "weir-runtime".to_string(),
            ),
            ("app.kubernetes.io/instance".to_string(), self.name.clone()),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "weir-operator".to_string(),
            ),
        ])
    }
}

/// Name of the ConfigMap holding the job file.
#[must_use]
pub fn config_name(job: &str) -> String {
    format!("{job}-job")
}

/// Name of the pod of `incarnation`.
#[must_use]
pub fn pod_name(job: &str, incarnation: u64) -> String {
    format!("{job}-{incarnation}")
}

/// The ConfigMap with the job file the runtime reads.
///
/// # Errors
/// YAML serialization (not expected for a decoded spec).
pub fn config_map(owner: &Owner, spec: &StreamJobSpec) -> Result<ConfigMap, serde_yaml::Error> {
    let file = serde_yaml::to_string(&spec.job_file(&owner.name))?;
    Ok(ConfigMap {
        metadata: owner.meta(config_name(&owner.name), owner.labels()),
        data: Some(BTreeMap::from([(JOB_FILE.to_string(), file)])),
        ..ConfigMap::default()
    })
}

/// The Service in front of the control API (status, savepoints, `/metrics` for scraping).
#[must_use]
pub fn service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(owner.name.clone(), owner.labels()),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                JOB_LABEL.to_string(),
                owner.name.clone(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("control".into()),
                port: CONTROL_PORT,
                target_port: Some(IntOrString::Int(CONTROL_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Secret with the job's control token, which the runtime pods get as
/// [`control::auth::TOKEN_ENV`] and the operator sends on every control call. Immutable: a
/// token is never rewritten under a running pod.
#[must_use]
pub fn control_secret(owner: &Owner, token: &ControlToken) -> Secret {
    Secret {
        metadata: owner.meta(control::auth::secret_name(&owner.name), owner.labels()),
        immutable: Some(true),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            control::auth::TOKEN_KEY.to_string(),
            token.expose().to_string(),
        )])),
        ..Secret::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

/// The runtime's command line for a pod, written by the contract's own [`RuntimeCli`] so it
/// is what `weir-runtime` parses.
#[must_use]
pub fn runtime_args(
    owner: &Owner,
    spec: &StreamJobSpec,
    start: Option<&StartPoint>,
) -> Vec<String> {
    let run = RuntimeArgs {
        start: start.map(|s| Start {
            id: s.id.clone(),
            from: s.from.clone(),
        }),
        allow_non_restored_state: spec.allow_non_restored_state,
        control_addr: Some(SocketAddr::from((
            Ipv4Addr::UNSPECIFIED,
            control::CONTROL_PORT,
        ))),
        namespace: owner.namespace.clone(),
        ..RuntimeArgs::new(format!("{CONFIG_DIR}/{JOB_FILE}"))
    };
    RuntimeCli {
        command: RuntimeCommand::Run(run),
        log_format: LogFormat::Json,
    }
    .to_args()
}

/// The runtime pod of `incarnation`.
#[must_use]
pub fn pod(
    owner: &Owner,
    spec: &StreamJobSpec,
    start: Option<&StartPoint>,
    incarnation: u64,
    image: &str,
) -> Pod {
    let mut labels = owner.labels();
    labels.insert(INCARNATION_LABEL.to_string(), incarnation.to_string());
    let mut env_vars = vec![
        env(TERMINATION_LOG_ENV, "/dev/termination-log"),
        env("WEIR_LOG", "info"),
        env("AWS_EC2_METADATA_DISABLED", "true"),
        secret_env(
            control::auth::TOKEN_ENV,
            &control::auth::secret_name(&owner.name),
            control::auth::TOKEN_KEY,
        ),
    ];
    let s3 = &spec.checkpoint.s3;
    if let Some(region) = &s3.region {
        env_vars.push(env("AWS_REGION", region));
    }
    if let Some(secret) = &s3.credentials_secret {
        env_vars.push(secret_env("AWS_ACCESS_KEY_ID", secret, "AWS_ACCESS_KEY_ID"));
        env_vars.push(secret_env(
            "AWS_SECRET_ACCESS_KEY",
            secret,
            "AWS_SECRET_ACCESS_KEY",
        ));
    }
    for e in &spec.secret_env {
        env_vars.push(secret_env(&e.name, &e.secret, &e.key));
    }
    let quantities = BTreeMap::from([
        ("cpu".to_string(), Quantity(spec.resources.cpu.clone())),
        (
            "memory".to_string(),
            Quantity(spec.resources.memory.clone()),
        ),
    ]);
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(CONTROL_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    // SIGTERM makes the runtime take a final checkpoint; give it the checkpoint timeout.
    let grace = i64::try_from(spec.checkpoint.timeout.get().as_secs())
        .unwrap_or(600)
        .saturating_add(30);
    Pod {
        metadata: owner.meta(pod_name(&owner.name, incarnation), labels),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(grace),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "runtime".into(),
                image: Some(image.to_string()),
                args: Some(runtime_args(owner, spec, start)),
                env: Some(env_vars),
                ports: Some(vec![ContainerPort {
                    name: Some("control".into()),
                    container_port: CONTROL_PORT,
                    ..ContainerPort::default()
                }]),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities.clone()),
                    limits: Some(quantities),
                    ..ResourceRequirements::default()
                }),
                readiness_probe: Some(probe("/readyz", 5)),
                liveness_probe: Some(probe("/healthz", 10)),
                termination_message_path: Some("/dev/termination-log".into()),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    run_as_non_root: Some(true),
                    privileged: Some(false),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Capabilities::default()
                    }),
                    ..SecurityContext::default()
                }),
                volume_mounts: Some(vec![
                    VolumeMount {
                        name: "job".into(),
                        mount_path: CONFIG_DIR.into(),
                        read_only: Some(true),
                        ..VolumeMount::default()
                    },
                    VolumeMount {
                        name: "tmp".into(),
                        mount_path: "/tmp".into(),
                        ..VolumeMount::default()
                    },
                ]),
                working_dir: Some("/tmp".into()),
                ..Container::default()
            }],
            volumes: Some(vec![
                Volume {
                    name: "job".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: config_name(&owner.name),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    fn spec() -> StreamJobSpec {
        let v: serde_json::Value = serde_yaml::from_str(
            r#"
checkpoint: {storage: "s3://b/w", s3: {region: eu-west-1, credentialsSecret: s3-creds}}
secretEnv: [{name: CLICKHOUSE_PASSWORD, secret: ch, key: password}]
resources: {cpu: 500m, memory: 1Gi}
pipeline:
  source: {kafka: {bootstrapServers: "k:9092", topic: t}, schema: [{name: a, type: int64}]}
  sinks: [{clickhouse: {url: "http://ch:8123", table: t, passwordEnv: CLICKHOUSE_PASSWORD}}]
"#,
        )
        .unwrap();
        serde_json::from_value(v).unwrap()
    }

    fn owner() -> Owner {
        Owner {
            name: "sales".into(),
            namespace: "shop".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn pod_is_locked_down_and_owned() {
        let p = pod(&owner(), &spec(), None, 3, "weir-runtime:1");
        assert_eq!(p.metadata.name.as_deref(), Some("sales-3"));
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.controller),
            ("StreamJob", "u-1", Some(true))
        );
        let ps = p.spec.unwrap();
        assert_eq!(ps.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            ps.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        let c = &ps.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let r = c.resources.as_ref().unwrap();
        assert_eq!(r.limits, r.requests);
        assert_eq!(r.limits.as_ref().unwrap()["memory"].0, "1Gi");
    }

    #[test]
    fn secrets_arrive_only_as_secret_references() {
        let p = pod(&owner(), &spec(), None, 1, "img");
        let env = p.spec.unwrap().containers[0].env.clone().unwrap();
        let by_name = |n: &str| env.iter().find(|e| e.name == n).unwrap().clone();
        for (var, secret, key) in [
            ("AWS_ACCESS_KEY_ID", "s3-creds", "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "s3-creds", "AWS_SECRET_ACCESS_KEY"),
            ("CLICKHOUSE_PASSWORD", "ch", "password"),
            ("WEIR_CONTROL_TOKEN", "sales-control", "token"),
        ] {
            let e = by_name(var);
            assert_eq!(e.value, None, "{var} has no literal value");
            let r = e.value_from.unwrap().secret_key_ref.unwrap();
            assert_eq!((r.name.as_str(), r.key.as_str()), (secret, key));
        }
    }

    #[test]
    fn the_control_secret_is_owned_immutable_and_hides_its_token_from_debug() {
        let token = ControlToken::new("t0k3n").unwrap();
        let s = control_secret(&owner(), &token);
        assert_eq!(s.metadata.name.as_deref(), Some("sales-control"));
        assert_eq!(s.immutable, Some(true));
        assert_eq!(s.string_data.as_ref().unwrap()["token"], "t0k3n");
        let o = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((o.kind.as_str(), o.uid.as_str()), ("StreamJob", "u-1"));
        assert!(!format!("{token:?}").contains("t0k3n"));
    }

    #[test]
    fn start_point_becomes_start_from_and_start_id() {
        let start = StartPoint {
            id: "s-1".into(),
            from: Some("s3://b/sp-1".into()),
        };
        let args = runtime_args(&owner(), &spec(), Some(&start));
        let joined = args.join(" ");
        assert!(
            joined.contains("--start-from s3://b/sp-1 --start-id s-1"),
            "{joined}"
        );
        assert!(joined.contains("--namespace shop"), "{joined}");
        let empty = StartPoint {
            id: "s-2".into(),
            from: None,
        };
        assert!(
            runtime_args(&owner(), &spec(), Some(&empty))
                .join(" ")
                .contains("--start-empty --start-id s-2")
        );
        assert!(
            !runtime_args(&owner(), &spec(), None)
                .join(" ")
                .contains("--start")
        );
    }

    #[test]
    fn config_map_holds_a_job_file_the_runtime_accepts() {
        let cm = config_map(&owner(), &spec()).unwrap();
        let file = &cm.data.unwrap()[JOB_FILE];
        let job = weir_crds::load_job("job.yaml", file).expect("runtime's loader accepts it");
        assert_eq!(job.name.as_deref(), Some("sales"));
        assert_eq!(job.checkpoint.storage, "s3://b/w");
        assert_eq!(job.checkpoint.s3.region.as_deref(), Some("eu-west-1"));
    }
}
