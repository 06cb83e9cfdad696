//! The objects a StreamJob owns: a ConfigMap with the job file, a Service for the control
//! API, a Secret with the control token, and the runtime pods of each incarnation (one, or
//! `spec.pods`). Pure builders; [`crate::act`] applies them.
//!
//! A job of several pods also owns a headless Service, `<job>-peers`, through which each pod
//! resolves the others (`<pod>.<job>-peers.<namespace>.svc`), and a Secret with the token the
//! pods present to each other's exchange. Its pods are `<job>-<incarnation>-<index>`, each
//! with that name as its hostname, so a pod of one incarnation is never mistaken for one of
//! another, even by a DNS cache. Pod 0 coordinates checkpoints: the control Service and the
//! operator talk to it.
//!
//! ```text
//!   <job>-3-0 ◄──── exchange :7070 ────► <job>-3-1     (found through <job>-peers)
//!     ▲ control :8081
//!   operator, Service <job>
//! ```
//!
//! # Guarantees
//! - Every object carries an owner reference to the StreamJob (garbage-collected with it)
//!   and the labels `weir.dev/job` and, for pods, `weir.dev/incarnation` (and
//!   `weir.dev/pod-index` in a job of several pods).
//! - A job of one pod gets exactly the pod, arguments and objects it got before jobs of
//!   several pods existed.
//! - Runtime pods run non-root with a read-only root filesystem, no privilege escalation, no
//!   capabilities and the runtime default seccomp profile, whatever `spec.podTemplate` says
//!   (see [`pod`] for how a template is merged).
//! - Secrets reach the pod only as `secretKeyRef` environment variables, the control token
//!   among them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference, ObjectFieldSelector,
    Pod, Probe, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecretKeySelector,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_crds::control::{
    self, ControlToken, JobArgs, LogFormat, PodArgs, RuntimeArgs, RuntimeCli, RuntimeCommand,
    Start, TERMINATION_LOG_ENV,
};
use weir_crds::pod_template::{OWNED_VOLUMES, RUNTIME_CONTAINER};
use weir_crds::{LogFormatSpec, StartPoint, StreamJobSpec};

/// Label naming the StreamJob an object belongs to.
pub const JOB_LABEL: &str = "weir.dev/job";
/// Label with a runtime pod's incarnation number.
pub const INCARNATION_LABEL: &str = "weir.dev/incarnation";
/// Label with a pod's index in a job of several pods (0 coordinates checkpoints); a pod
/// without it is pod 0 of a job of one pod.
pub const POD_INDEX_LABEL: &str = "weir.dev/pod-index";
/// Key of the token in the exchange Secret.
pub const EXCHANGE_TOKEN_KEY: &str = "token";
/// Port of the pod-to-pod exchange, as the pod and Service specs want it.
pub const EXCHANGE_PORT: i32 = control::EXCHANGE_PORT as i32;
/// Environment variable with the pod's IP (downward API), which the exchange address uses.
const POD_IP_ENV: &str = "POD_IP";
/// Environment variable the runtime reads the exchange's listening address from.
const EXCHANGE_ADDR_ENV: &str = "WEIR_EXCHANGE_ADDR";
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
    pub(crate) fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
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

    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
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

/// Name of pod `index` of `incarnation` in a job of `pods` pods: `<job>-<incarnation>` for a
/// job of one pod (as before jobs of several pods existed), `<job>-<incarnation>-<index>`
/// otherwise.
#[must_use]
pub fn pod_name(job: &str, incarnation: u64, index: u32, pods: u32) -> String {
    if pods > 1 {
        format!("{job}-{incarnation}-{index}")
    } else {
        format!("{job}-{incarnation}")
    }
}

/// Name of the headless Service the pods of a job of several pods find each other through.
#[must_use]
pub fn peers_service_name(job: &str) -> String {
    format!("{job}-peers")
}

/// Name of the Secret with the token the pods of a job present to each other's exchange.
#[must_use]
pub fn exchange_secret_name(job: &str) -> String {
    format!("{job}-exchange")
}

/// Hostname of pod `index` of `incarnation` in a job of several pods: its name, which DNS
/// takes as a label of at most 63 characters, so a long job name is cut (the incarnation
/// and index, which make it unique under `<job>-peers`, are kept).
#[must_use]
pub fn hostname(job: &str, incarnation: u64, index: u32) -> String {
    let suffix = format!("-{incarnation}-{index}");
    let room = 63usize.saturating_sub(suffix.len());
    let cut = job.char_indices().nth(room).map_or(job.len(), |(i, _)| i);
    let prefix = job[..cut].trim_end_matches(['-', '.']);
    format!("{prefix}{suffix}")
}

/// Exchange address (`host:port`) of every pod of `incarnation`, in pod order, by the names
/// the headless Service gives them.
#[must_use]
pub fn peers(owner: &Owner, incarnation: u64, pods: u32) -> Vec<String> {
    (0..pods)
        .map(|i| {
            format!(
                "{}.{}.{}.svc:{EXCHANGE_PORT}",
                hostname(&owner.name, incarnation, i),
                peers_service_name(&owner.name),
                owner.namespace
            )
        })
        .collect()
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
/// In a job of several pods it selects pod 0 only: the coordinator's report is the job's,
/// and a savepoint request's id is only known to the pod that took it.
#[must_use]
pub fn service(owner: &Owner, pods: u32) -> Service {
    let mut selector = BTreeMap::from([(JOB_LABEL.to_string(), owner.name.clone())]);
    if pods > 1 {
        selector.insert(POD_INDEX_LABEL.to_string(), "0".to_string());
    }
    Service {
        metadata: owner.meta(owner.name.clone(), owner.labels()),
        spec: Some(ServiceSpec {
            selector: Some(selector),
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

/// The headless Service of a job of several pods: a DNS name per pod
/// (`<hostname>.<job>-peers.<namespace>.svc`) and no virtual IP. It publishes pods before
/// they are ready, because a pod becomes ready only once every other pod has reached it.
#[must_use]
pub fn peers_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(peers_service_name(&owner.name), owner.labels()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(BTreeMap::from([(
                JOB_LABEL.to_string(),
                owner.name.clone(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("exchange".into()),
                port: EXCHANGE_PORT,
                target_port: Some(IntOrString::Int(EXCHANGE_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Secret with the token the pods of a job of several pods present to each other's
/// exchange (the runtime's `WEIR_EXCHANGE_TOKEN`). Only the pods read it; the operator
/// creates it and never reads it back. Immutable, like the control Secret.
#[must_use]
pub fn exchange_secret(owner: &Owner, token: &str) -> Secret {
    Secret {
        metadata: owner.meta(exchange_secret_name(&owner.name), owner.labels()),
        immutable: Some(true),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            EXCHANGE_TOKEN_KEY.to_string(),
            token.to_string(),
        )])),
        ..Secret::default()
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

/// The runtime's command line for pod `index` of `incarnation`, written by the contract's
/// own [`RuntimeCli`] so it is what `weir-runtime` parses. A job of several pods adds where
/// the pod sits (`--pods`, `--pod-index`, `--peers`) and the incarnation's name, which
/// keeps pods of different incarnations from linking up; a job of one pod gets none of it.
#[must_use]
pub fn runtime_args(
    owner: &Owner,
    spec: &StreamJobSpec,
    start: Option<&StartPoint>,
    incarnation: u64,
    index: u32,
) -> Vec<String> {
    let pods = if spec.pods > 1 {
        PodArgs {
            count: spec.pods,
            index: Some(index),
            peers: peers(owner, incarnation, spec.pods),
            exchange_addr: None,
            incarnation: Some(format!("{}-{incarnation}", owner.name)),
        }
    } else {
        PodArgs::default()
    };
    let run = RuntimeArgs {
        pods,
        job: JobArgs {
            namespace: owner.namespace.clone(),
            start: start.map(|s| Start {
                id: s.id.clone(),
                from: s.from.clone(),
            }),
            allow_non_restored_state: spec.allow_non_restored_state,
            drop_state: spec.drop_state.clone(),
            skip_unreadable_checkpoints: spec.checkpoint.skip_unreadable,
            ..JobArgs::default()
        },
        control_addr: Some(SocketAddr::from((
            Ipv4Addr::UNSPECIFIED,
            control::CONTROL_PORT,
        ))),
        ..RuntimeArgs::new(format!("{CONFIG_DIR}/{JOB_FILE}"))
    };
    RuntimeCli {
        command: RuntimeCommand::Run(run),
        log_format: match spec.logging.format {
            LogFormatSpec::Json => LogFormat::Json,
            LogFormatSpec::Text => LogFormat::Text,
        },
    }
    .to_args()
}

/// Runtime pod `index` of `incarnation` (of `spec.pods`): the operator's pod, merged over
/// `spec.podTemplate` by the rules of [`weir_crds::pod_template::MERGE_RULES`] (the manifest
/// reference prints them).
///
/// What the template may not do is refused before this by `weir_crds::pod_template::check`;
/// the floors here hold even for a template that was never checked.
#[must_use]
pub fn pod(
    owner: &Owner,
    spec: &StreamJobSpec,
    start: Option<&StartPoint>,
    incarnation: u64,
    index: u32,
    image: &str,
) -> Pod {
    let template = spec
        .pod_template
        .as_ref()
        .and_then(|t| weir_crds::pod_template::decode(t).ok())
        .unwrap_or_default();
    let user_meta = template.metadata.unwrap_or_default();
    let mut ps = template.spec.unwrap_or_default();
    let user_runtime = ps
        .containers
        .iter()
        .position(|c| c.name == RUNTIME_CONTAINER)
        .map(|i| ps.containers.remove(i));

    let mut labels = user_meta.labels.unwrap_or_default();
    labels.extend(owner.labels());
    labels.insert(INCARNATION_LABEL.to_string(), incarnation.to_string());
    let several = spec.pods > 1;
    if several {
        labels.insert(POD_INDEX_LABEL.to_string(), index.to_string());
    }
    let name = pod_name(&owner.name, incarnation, index, spec.pods);
    let mut metadata = owner.meta(name, labels);
    metadata.annotations = user_meta.annotations;

    let mut runtime = runtime_container(owner, spec, start, incarnation, index, image);
    if let Some(user) = user_runtime {
        let ours: Vec<String> = runtime
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        let theirs = user
            .env
            .into_iter()
            .flatten()
            .filter(|e| !ours.contains(&e.name));
        runtime.env.get_or_insert_with(Vec::new).extend(theirs);
        runtime
            .env_from
            .get_or_insert_with(Vec::new)
            .extend(user.env_from.into_iter().flatten());
        runtime
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .extend(user.volume_mounts.into_iter().flatten());
        runtime.lifecycle = user.lifecycle;
        runtime.image_pull_policy = user.image_pull_policy;
    }
    let sidecars = std::mem::take(&mut ps.containers);
    ps.containers = std::iter::once(runtime)
        .chain(sidecars.into_iter().map(with_security_floor))
        .collect();
    ps.init_containers = ps
        .init_containers
        .map(|cs| cs.into_iter().map(with_security_floor).collect());

    // SIGTERM makes the runtime take a final checkpoint; give it the checkpoint timeout.
    let grace = i64::try_from(spec.checkpoint.timeout.get().as_secs())
        .unwrap_or(600)
        .saturating_add(30);
    ps.termination_grace_period_seconds = Some(
        ps.termination_grace_period_seconds
            .map_or(grace, |g| g.max(grace)),
    );
    ps.restart_policy = Some("Never".into());
    if several {
        // `<hostname>.<job>-peers.<namespace>.svc` is how the other pods reach this one.
        ps.hostname = Some(hostname(&owner.name, incarnation, index));
        ps.subdomain = Some(peers_service_name(&owner.name));
    }
    ps.automount_service_account_token = ps.automount_service_account_token.or(Some(false));
    ps.enable_service_links = ps.enable_service_links.or(Some(false));
    ps.host_network = None;
    ps.host_pid = None;
    ps.host_ipc = None;
    ps.host_users = None;
    if let Some(sa) = &spec.service_account_name {
        ps.service_account_name = Some(sa.clone());
    }
    let mut pull = ps.image_pull_secrets.take().unwrap_or_default();
    for name in &spec.image_pull_secrets {
        if !pull.iter().any(|r| &r.name == name) {
            pull.push(LocalObjectReference { name: name.clone() });
        }
    }
    ps.image_pull_secrets = (!pull.is_empty()).then_some(pull);
    let mut sc = ps.security_context.take().unwrap_or_default();
    sc.run_as_non_root = Some(true);
    sc.run_as_user = Some(sc.run_as_user.filter(|u| *u != 0).unwrap_or(RUN_AS));
    sc.run_as_group = Some(sc.run_as_group.unwrap_or(RUN_AS));
    sc.fs_group = Some(sc.fs_group.unwrap_or(RUN_AS));
    if sc
        .seccomp_profile
        .as_ref()
        .is_none_or(|p| p.type_ == "Unconfined")
    {
        sc.seccomp_profile = Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        });
    }
    ps.security_context = Some(sc);
    let mut volumes = vec![
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
    ];
    volumes.extend(
        ps.volumes
            .take()
            .into_iter()
            .flatten()
            .filter(|v| v.host_path.is_none() && !OWNED_VOLUMES.contains(&v.name.as_str())),
    );
    ps.volumes = Some(volumes);
    Pod {
        metadata,
        spec: Some(ps),
        ..Pod::default()
    }
}

/// The operator's own runtime container.
fn runtime_container(
    owner: &Owner,
    spec: &StreamJobSpec,
    start: Option<&StartPoint>,
    incarnation: u64,
    index: u32,
    image: &str,
) -> Container {
    let mut env_vars = vec![
        env(TERMINATION_LOG_ENV, "/dev/termination-log"),
        env("WEIR_LOG", &spec.logging.level),
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
    let mut ports = vec![ContainerPort {
        name: Some("control".into()),
        container_port: CONTROL_PORT,
        ..ContainerPort::default()
    }];
    if spec.pods > 1 {
        env_vars.push(secret_env(
            control::EXCHANGE_TOKEN_ENV,
            &exchange_secret_name(&owner.name),
            EXCHANGE_TOKEN_KEY,
        ));
        // The exchange listens on the pod's own IP, which the pod cannot name in its
        // arguments (they are written before it has one) and need not look up in DNS.
        env_vars.push(EnvVar {
            name: POD_IP_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
        env_vars.push(env(
            EXCHANGE_ADDR_ENV,
            &format!("$({POD_IP_ENV}):{EXCHANGE_PORT}"),
        ));
        ports.push(ContainerPort {
            name: Some("exchange".into()),
            container_port: EXCHANGE_PORT,
            ..ContainerPort::default()
        });
    }
    let (requests, limits) = spec.resources.sides();
    let quantities = |side: Vec<(&str, String)>| {
        (!side.is_empty()).then(|| {
            side.into_iter()
                .map(|(k, v)| (k.to_string(), Quantity(v)))
                .collect::<BTreeMap<_, _>>()
        })
    };
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
    Container {
        name: RUNTIME_CONTAINER.into(),
        image: Some(image.to_string()),
        args: Some(runtime_args(owner, spec, start, incarnation, index)),
        env: Some(env_vars),
        // `az://`/`gs://` credentials: every key of the Secret is one of the provider's
        // environment variables, which the storage client reads as its own tools do.
        env_from: spec
            .checkpoint
            .cloud
            .as_ref()
            .and_then(|c| c.credentials_secret.as_ref())
            .map(|name| {
                vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: name.clone(),
                        optional: Some(false),
                    }),
                    ..EnvFromSource::default()
                }]
            }),
        ports: Some(ports),
        resources: Some(ResourceRequirements {
            requests: quantities(requests),
            limits: quantities(limits),
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
    }
}

/// A user's sidecar or init container with the restricted floor: whatever it asked for, it
/// is not privileged, cannot escalate, runs as non-root (not uid 0) and keeps at most
/// `NET_BIND_SERVICE`; its root filesystem is read-only unless it says otherwise.
fn with_security_floor(mut c: Container) -> Container {
    let mut sc = c.security_context.take().unwrap_or_default();
    sc.privileged = Some(false);
    sc.allow_privilege_escalation = Some(false);
    sc.run_as_non_root = Some(true);
    sc.run_as_user = sc.run_as_user.filter(|u| *u != 0);
    sc.read_only_root_filesystem = Some(sc.read_only_root_filesystem.unwrap_or(true));
    let added: Vec<String> = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c == "NET_BIND_SERVICE")
        .collect();
    sc.capabilities = Some(Capabilities {
        drop: Some(vec!["ALL".into()]),
        add: (!added.is_empty()).then_some(added),
    });
    if sc
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        sc.seccomp_profile = None;
    }
    c.security_context = Some(sc);
    c
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
        let p = pod(&owner(), &spec(), None, 3, 0, "weir-runtime:1");
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
        let p = pod(&owner(), &spec(), None, 1, 0, "img");
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
    fn cloud_storage_credentials_arrive_as_the_whole_secret_and_the_templates_sources_stay() {
        let mut spec = spec();
        spec.checkpoint.storage = "az://checkpoints/w".into();
        spec.checkpoint.s3 = weir_crds::JobS3Spec::default();
        spec.checkpoint.cloud = Some(weir_crds::JobCloudSpec {
            credentials_secret: Some("azure-creds".into()),
        });
        let p = pod(&owner(), &spec, None, 1, 0, "img");
        let c = &p.spec.unwrap().containers[0];
        let from = c.env_from.clone().unwrap();
        assert_eq!(from.len(), 1);
        let r = from[0].secret_ref.as_ref().unwrap();
        assert_eq!((r.name.as_str(), r.optional), ("azure-creds", Some(false)));
        let env = c.env.clone().unwrap();
        assert!(
            !env.iter().any(|e| e.name.starts_with("AWS_ACCESS")),
            "{env:?}"
        );
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
        let args = runtime_args(&owner(), &spec(), Some(&start), 1, 0);
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
            runtime_args(&owner(), &spec(), Some(&empty), 1, 0)
                .join(" ")
                .contains("--start-empty --start-id s-2")
        );
        assert!(
            !runtime_args(&owner(), &spec(), None, 1, 0)
                .join(" ")
                .contains("--start")
        );
    }

    fn with(extra: serde_json::Value) -> StreamJobSpec {
        let mut v = serde_json::to_value(spec()).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn runtime(p: &Pod) -> &Container {
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.name, "runtime");
        c
    }

    #[test]
    fn a_pod_template_is_merged_under_what_the_operator_owns() {
        let s = with(serde_json::json!({
            "serviceAccountName": "weir-jobs",
            "imagePullSecrets": ["registry"],
            "podTemplate": {
                "metadata": {"labels": {"team": "data", "weir.dev/job": "other"},
                             "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "serviceAccountName": "ignored-for-spec",
                    "nodeSelector": {"pool": "stream"},
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": [{"matchExpressions":
                            [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
                    "priorityClassName": "high",
                    "imagePullSecrets": [{"name": "mirror"}],
                    "securityContext": {"runAsUser": 1000, "supplementalGroups": [5]},
                    "terminationGracePeriodSeconds": 5,
                    "volumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
                    "containers": [
                        {"name": "runtime",
                         "env": [{"name": "SSL_CERT_DIR", "value": "/etc/ca"},
                                 {"name": "WEIR_LOG", "value": "trace"}],
                         "envFrom": [{"configMapRef": {"name": "settings"}}],
                         "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}]},
                        {"name": "agent", "image": "agent:1"}
                    ],
                    "initContainers": [{"name": "wait", "image": "busybox:1"}]
                }
            }
        }));
        let p = pod(&owner(), &s, None, 2, 0, "weir-runtime:1");
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "data", "user labels kept");
        assert_eq!(labels[JOB_LABEL], "sales", "the operator's labels win");
        assert_eq!(labels[INCARNATION_LABEL], "2");
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()["sidecar.istio.io/inject"],
            "false"
        );
        let ps = p.spec.as_ref().unwrap();
        assert_eq!(ps.service_account_name.as_deref(), Some("weir-jobs"));
        assert_eq!(ps.node_selector.as_ref().unwrap()["pool"], "stream");
        assert_eq!(ps.tolerations.as_ref().unwrap().len(), 1);
        assert!(ps.affinity.as_ref().unwrap().node_affinity.is_some());
        assert_eq!(ps.priority_class_name.as_deref(), Some("high"));
        let pulls: Vec<&str> = ps
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(pulls, ["mirror", "registry"]);
        let psc = ps.security_context.as_ref().unwrap();
        assert_eq!(
            psc.run_as_user,
            Some(1000),
            "a non-root uid of the user's is kept"
        );
        assert_eq!(psc.supplemental_groups.as_deref(), Some(&[5][..]));
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.fs_group, Some(65_532));
        assert!(
            ps.termination_grace_period_seconds.unwrap() > 5,
            "a shorter grace period would cut the final checkpoint"
        );
        let volumes: Vec<&str> = ps
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["job", "tmp", "ca"]);
        let c = runtime(&p);
        assert_eq!(c.image.as_deref(), Some("weir-runtime:1"));
        let env = c.env.as_ref().unwrap();
        let value = |n: &str| {
            env.iter()
                .filter(|e| e.name == n)
                .map(|e| e.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(value("SSL_CERT_DIR"), [Some("/etc/ca".to_string())]);
        assert_eq!(value("WEIR_LOG"), [Some("info".to_string())], "ours win");
        assert_eq!(c.env_from.as_ref().unwrap().len(), 1);
        let mounts: Vec<&str> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/etc/weir", "/tmp", "/etc/ca"]);
        let names: Vec<&str> = ps.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["runtime", "agent"]);
        let agent = ps.containers[1].security_context.as_ref().unwrap();
        assert_eq!(agent.allow_privilege_escalation, Some(false));
        assert_eq!(agent.read_only_root_filesystem, Some(true));
        let init = &ps.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            init.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
    }

    /// The floor holds even for a template `pod_template::check` never saw: each row tries
    /// one unsafe override and must find the safe value in the pod.
    #[test]
    fn unsafe_overrides_never_reach_the_pod() {
        type Probe = fn(&Pod) -> bool;
        let rows: [(&str, serde_json::Value, Probe); 8] = [
            (
                "root uid",
                serde_json::json!({"securityContext": {"runAsUser": 0}}),
                |p| {
                    p.spec
                        .as_ref()
                        .unwrap()
                        .security_context
                        .as_ref()
                        .unwrap()
                        .run_as_user
                        == Some(65_532)
                },
            ),
            (
                "runAsNonRoot false",
                serde_json::json!({"securityContext": {"runAsNonRoot": false}}),
                |p| {
                    p.spec
                        .as_ref()
                        .unwrap()
                        .security_context
                        .as_ref()
                        .unwrap()
                        .run_as_non_root
                        == Some(true)
                },
            ),
            (
                "host network",
                serde_json::json!({"hostNetwork": true, "hostPID": true}),
                |p| {
                    p.spec.as_ref().unwrap().host_network.is_none()
                        && p.spec.as_ref().unwrap().host_pid.is_none()
                },
            ),
            (
                "restart in place",
                serde_json::json!({"restartPolicy": "Always"}),
                |p| p.spec.as_ref().unwrap().restart_policy.as_deref() == Some("Never"),
            ),
            (
                "another image and a writable root",
                serde_json::json!({"containers": [{"name": "runtime",
                 "image": "evil:1", "args": ["x"],
                 "securityContext": {"readOnlyRootFilesystem": false, "privileged": true}}]}),
                |p| {
                    let c = runtime(p);
                    let sc = c.security_context.as_ref().unwrap();
                    c.image.as_deref() == Some("weir-runtime:1")
                        && c.args.as_ref().unwrap()[0] == "run"
                        && sc.read_only_root_filesystem == Some(true)
                        && sc.privileged == Some(false)
                },
            ),
            (
                "a privileged, escalating sidecar with SYS_ADMIN",
                serde_json::json!({"containers": [{"name": "side",
                 "securityContext": {"privileged": true, "allowPrivilegeEscalation": true,
                                     "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]}}}]}),
                |p| {
                    let sc = p.spec.as_ref().unwrap().containers[1]
                        .security_context
                        .clone()
                        .unwrap();
                    sc.privileged == Some(false)
                        && sc.allow_privilege_escalation == Some(false)
                        && sc.run_as_user.is_none()
                        && sc.capabilities.unwrap().add
                            == Some(vec!["NET_BIND_SERVICE".to_string()])
                },
            ),
            (
                "unconfined seccomp",
                serde_json::json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
                |p| {
                    p.spec
                        .as_ref()
                        .unwrap()
                        .security_context
                        .as_ref()
                        .unwrap()
                        .seccomp_profile
                        .as_ref()
                        .unwrap()
                        .type_
                        == "RuntimeDefault"
                },
            ),
            (
                "a hostPath volume and a volume named like the operator's",
                serde_json::json!({"volumes": [
                 {"name": "root", "hostPath": {"path": "/"}}, {"name": "job", "emptyDir": {}}]}),
                |p| {
                    let v = p.spec.as_ref().unwrap().volumes.clone().unwrap();
                    v.len() == 2
                        && v.iter().all(|v| v.host_path.is_none())
                        && v[0].config_map.is_some()
                },
            ),
        ];
        for (name, template_spec, safe) in rows {
            let s = with(serde_json::json!({"podTemplate": {"spec": template_spec}}));
            let p = pod(&owner(), &s, None, 1, 0, "weir-runtime:1");
            assert!(safe(&p), "{name}: {:#?}", p.spec);
        }
    }

    #[test]
    fn requests_limits_and_logging_come_from_the_spec() {
        let s = with(serde_json::json!({
            "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
            "logging": {"level": "info,weir_runtime::checkpoint=debug", "format": "text"}
        }));
        let p = pod(&owner(), &s, None, 1, 0, "img");
        let c = runtime(&p);
        let r = c.resources.as_ref().unwrap();
        let q = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
            m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
        };
        assert_eq!(q(&r.requests, "cpu").as_deref(), Some("250m"));
        assert_eq!(q(&r.requests, "memory").as_deref(), Some("1Gi"));
        assert_eq!(q(&r.limits, "memory").as_deref(), Some("1Gi"));
        assert_eq!(q(&r.limits, "cpu"), None, "no CPU limit");
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "WEIR_LOG"
            && e.value.as_deref() == Some("info,weir_runtime::checkpoint=debug")));
        let args = c.args.as_ref().unwrap().join(" ");
        assert!(args.contains("--log-format text"), "{args}");
        // Defaults: requests equal limits (Guaranteed), JSON logs.
        let p = pod(&owner(), &spec(), None, 1, 0, "img");
        let r = runtime(&p).resources.clone().unwrap();
        assert_eq!(r.requests, r.limits);
        assert!(
            runtime(&p)
                .args
                .as_ref()
                .unwrap()
                .join(" ")
                .contains("--log-format json")
        );
    }

    /// The runtime's command line as the runtime parses it.
    fn parsed(args: &[String]) -> RuntimeArgs {
        use clap::Parser;
        let cli = RuntimeCli::try_parse_from(
            std::iter::once("weir-runtime".to_string()).chain(args.iter().cloned()),
        )
        .unwrap();
        match cli.command {
            RuntimeCommand::Run(run) => run,
            other => panic!("not `run`: {other:?}"),
        }
    }

    fn env_of<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
        c.env.iter().flatten().find(|e| e.name == name)
    }

    /// `pods: 1` (the default) is the pod jobs always had: its name, arguments, ports and
    /// environment have nothing of a job of several pods, and the control Service selects
    /// by the job alone.
    #[test]
    fn a_job_of_one_pod_has_none_of_the_multi_pod_wiring() {
        let p = pod(&owner(), &spec(), None, 3, 0, "img");
        assert_eq!(p.metadata.name.as_deref(), Some("sales-3"));
        assert!(
            !p.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(POD_INDEX_LABEL)
        );
        let ps = p.spec.as_ref().unwrap();
        assert_eq!((ps.hostname.as_ref(), ps.subdomain.as_ref()), (None, None));
        let c = runtime(&p);
        let args = c.args.clone().unwrap();
        assert_eq!(
            args,
            [
                "run",
                "/etc/weir/job.yaml",
                "--control-addr",
                "0.0.0.0:8081",
                "--namespace",
                "shop",
                "--log-format",
                "json"
            ]
        );
        assert_eq!(parsed(&args).pods, PodArgs::default());
        for name in ["WEIR_EXCHANGE_TOKEN", "POD_IP", "WEIR_EXCHANGE_ADDR"] {
            assert!(env_of(c, name).is_none(), "{name}");
        }
        let ports: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
        assert_eq!(ports, [8081]);
        let selector = service(&owner(), 1).spec.unwrap().selector.unwrap();
        assert_eq!(
            selector,
            BTreeMap::from([(JOB_LABEL.to_string(), "sales".to_string())])
        );
    }

    fn two_pods() -> StreamJobSpec {
        with(serde_json::json!({"parallelism": 4, "pods": 2}))
    }

    /// Pod 1 of incarnation 3 of a job of two pods: its own name and hostname under the
    /// headless Service, where it sits on its command line (as the runtime parses it), the
    /// exchange token only by reference, and its exchange on the pod's IP.
    #[test]
    fn each_pod_of_a_job_of_several_pods_knows_its_place_and_its_peers() {
        let p = pod(&owner(), &two_pods(), None, 3, 1, "img");
        assert_eq!(p.metadata.name.as_deref(), Some("sales-3-1"));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (
                labels[INCARNATION_LABEL].as_str(),
                labels[POD_INDEX_LABEL].as_str()
            ),
            ("3", "1")
        );
        let ps = p.spec.as_ref().unwrap();
        assert_eq!(ps.hostname.as_deref(), Some("sales-3-1"));
        assert_eq!(ps.subdomain.as_deref(), Some("sales-peers"));
        let c = runtime(&p);
        let run = parsed(c.args.as_ref().unwrap());
        assert_eq!(
            run.pods,
            PodArgs {
                count: 2,
                index: Some(1),
                peers: vec![
                    "sales-3-0.sales-peers.shop.svc:7070".into(),
                    "sales-3-1.sales-peers.shop.svc:7070".into(),
                ],
                exchange_addr: None,
                incarnation: Some("sales-3".into()),
            }
        );
        let token = env_of(c, "WEIR_EXCHANGE_TOKEN").unwrap();
        assert_eq!(token.value, None, "no literal token");
        let r = token.value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (r.name.as_str(), r.key.as_str()),
            ("sales-exchange", "token")
        );
        let ip = env_of(c, "POD_IP").unwrap().value_from.clone().unwrap();
        assert_eq!(ip.field_ref.unwrap().field_path, "status.podIP");
        let names: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(
            at("POD_IP") < at("WEIR_EXCHANGE_ADDR"),
            "$(POD_IP) expands only from a variable defined before it"
        );
        assert_eq!(
            env_of(c, "WEIR_EXCHANGE_ADDR").unwrap().value.as_deref(),
            Some("$(POD_IP):7070")
        );
        let ports: Vec<(Option<&str>, i32)> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert_eq!(ports, [(Some("control"), 8081), (Some("exchange"), 7070)]);
        // Pod 0 has the same peers and incarnation: they must agree to link up.
        let p0 = pod(&owner(), &two_pods(), None, 3, 0, "img");
        let run0 = parsed(runtime(&p0).args.as_ref().unwrap());
        assert_eq!(
            (run0.pods.index, &run0.pods.peers, &run0.pods.incarnation),
            (Some(0), &run.pods.peers, &run.pods.incarnation)
        );
        assert_eq!(p0.metadata.name.as_deref(), Some("sales-3-0"));
    }

    #[test]
    fn the_pods_of_a_job_find_each_other_through_a_headless_service() {
        let s = peers_service(&owner());
        assert_eq!(s.metadata.name.as_deref(), Some("sales-peers"));
        let o = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((o.kind.as_str(), o.uid.as_str()), ("StreamJob", "u-1"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            spec.publish_not_ready_addresses,
            Some(true),
            "a pod is ready only once its peers reached it"
        );
        assert_eq!(
            spec.selector.unwrap(),
            BTreeMap::from([(JOB_LABEL.to_string(), "sales".to_string())])
        );
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("exchange"), 7070));
        // The control Service selects the coordinator only.
        let control = service(&owner(), 2).spec.unwrap().selector.unwrap();
        assert_eq!(control[POD_INDEX_LABEL], "0");
        assert_eq!(control[JOB_LABEL], "sales");
    }

    #[test]
    fn the_exchange_secret_is_owned_and_immutable() {
        let s = exchange_secret(&owner(), "0123456789abcdef0123");
        assert_eq!(s.metadata.name.as_deref(), Some("sales-exchange"));
        assert_eq!(s.immutable, Some(true));
        assert_eq!(
            s.string_data.as_ref().unwrap()[EXCHANGE_TOKEN_KEY],
            "0123456789abcdef0123"
        );
        let o = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((o.kind.as_str(), o.controller), ("StreamJob", Some(true)));
    }

    /// A hostname is a DNS label (at most 63 characters): a long job name is cut, and the
    /// incarnation and index that keep hostnames apart stay whole.
    #[test]
    fn hostnames_are_dns_labels_that_keep_incarnation_and_index() {
        assert_eq!(hostname("sales", 3, 1), "sales-3-1");
        let long = "a".repeat(57);
        for (inc, index) in [(1, 0), (12_345, 7), (u64::MAX, u32::MAX)] {
            let h = hostname(&long, inc, index);
            assert!(h.len() <= 63, "{h}");
            assert!(h.ends_with(&format!("-{inc}-{index}")), "{h}");
            assert!(h.starts_with('a'), "{h}");
        }
        assert_ne!(hostname(&long, 12_345, 1), hostname(&long, 12_345, 2));
        // A cut never leaves a dash before the suffix's own.
        let dashed = format!("{}-{}", "b".repeat(50), "c".repeat(20));
        let h = hostname(&dashed, 123_456_789, 0);
        assert!(!h.contains("--") && h.len() <= 63, "{h}");
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
