//! The `StreamJob` custom resource (`weir.dev/v1alpha1`): what a user `kubectl apply`s.
//!
//! The spec embeds the same [`Pipeline`] a local job file holds, plus what only a cluster
//! needs: image, upgrade mode, nonces, restart budget, savepoint policy, resources and Secret
//! references. Everything a schema can check is in the generated OpenAPI schema (types, enums,
//! ranges, patterns) or in the CEL rules below, so `kubectl apply` of a bad manifest fails
//! naming the field. [`StreamJobSpec::job_file`] turns a spec into the job file the runtime
//! pod reads, and [`StreamJobSpec::validate`] runs the checks only code can make.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::pipeline::{CheckpointSpec, JobFile, Pipeline, S3Spec};
use crate::state_backend::StateBackendSpec;
use crate::status::StreamJobStatus;
use crate::validate::FieldError;

/// Desired state of a `StreamJob`. `kubectl explain streamjob.spec` prints these docs.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    plural = "streamjobs",
    shortname = "sj",
    namespaced,
    status = "StreamJobStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.lifecycleState","description":"Lifecycle state"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"Whether the job runs and checkpoints as specified"}"#,
    printcolumn = r#"{"name":"Pods","type":"string","jsonPath":".status.pods","description":"Ready pods of the current incarnation / pods it runs as"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","jsonPath":".status.parallelism","description":"Subtasks per operator of the running pods"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.parallelism","description":"Subtasks per operator the spec asks for"}"#,
    printcolumn = r#"{"name":"Last Checkpoint","type":"date","jsonPath":".status.lastCheckpoint.completedAt","description":"When the newest checkpoint completed"}"#,
    printcolumn = r#"{"name":"State Bytes","type":"integer","jsonPath":".status.lastCheckpoint.sizeBytes","description":"State the newest checkpoint holds (what a restore reads)"}"#,
    printcolumn = r#"{"name":"On Disk","type":"integer","jsonPath":".status.lastCheckpoint.diskBytes","description":"With stateBackend disk: state on the pods' local disks at the newest checkpoint"}"#,
    printcolumn = r#"{"name":"In Memory","type":"integer","jsonPath":".status.lastCheckpoint.memoryBytes","description":"With stateBackend disk: state in the stores' write buffers at the newest checkpoint's barrier (which it then flushes to disk)"}"#,
    printcolumn = r#"{"name":"Restarts","type":"integer","jsonPath":".status.restarts.count","description":"Automatic restarts"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = kube::core::Rule::new("duration(self.spec.checkpoint.interval.endsWith('d') ? '0s' : self.spec.checkpoint.interval) < duration(self.spec.checkpoint.timeout.endsWith('d') ? '87600h' : self.spec.checkpoint.timeout)").message("checkpoint.timeout must be longer than checkpoint.interval").field_path(".spec.checkpoint.timeout"),
    validation = kube::core::Rule::new("self.spec.parallelism <= self.spec.maxParallelism").message("parallelism must not exceed maxParallelism").field_path(".spec.parallelism"),
    validation = kube::core::Rule::new("self.spec.pods <= self.spec.parallelism").message("pods must not exceed parallelism: every pod runs at least one subtask of each operator").field_path(".spec.pods"),
    validation = kube::core::Rule::new("self.spec.pipeline.sinks.all(s, !has(s.kafka) || has(s.kafka.transactionalIdPrefix) || (has(s.kafka.delivery) && s.kafka.delivery != 'exactly-once') || (!has(s.kafka.delivery) && !self.spec.checkpoint.exactlyOnce))").message("an exactly-once Kafka sink needs transactionalIdPrefix (unique per job)").field_path(".spec.pipeline.sinks"),
    validation = kube::core::Rule::new("duration(self.spec.restart.initialBackoff.endsWith('d') ? '0s' : self.spec.restart.initialBackoff) <= duration(self.spec.restart.maxBackoff.endsWith('d') ? '87600h' : self.spec.restart.maxBackoff)").message("restart.initialBackoff must not exceed restart.maxBackoff").field_path(".spec.restart.initialBackoff"),
    validation = kube::core::Rule::new("!has(oldSelf.spec) || self.spec.maxParallelism == oldSelf.spec.maxParallelism").message("maxParallelism is fixed for the life of the job's state; create a new StreamJob to change it").field_path(".spec.maxParallelism"),
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamJobSpec {
    /// Runtime image. When absent the operator uses its default (Helm value
    /// `runtimeImage`), recorded in `status.deployedImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Subtasks per operator. Changing it rescales through `upgradeMode`: keyed state moves
    /// by key group, so a savepoint restores at any parallelism up to `maxParallelism`.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 32768))]
    pub parallelism: u32,
    /// Pods (processes) the job runs as; each runs a contiguous slice of every operator's
    /// subtasks, so it must not exceed `parallelism`. More pods spread one job over more
    /// nodes than one pod's `resources` can hold. All pods of a start fail and restart
    /// together (from the newest checkpoint), and changing it rescales through `upgradeMode`
    /// like `parallelism`: checkpoints do not depend on the number of pods.
    // Omitted from JSON when 1, so a spec recorded in status before the field existed reads
    // back unchanged (an unchanged spec must not look like a change to a running job). That
    // keeps schemars from writing the default, so it is given here: the apiserver must fill
    // it in for the CEL rule comparing it with `parallelism`.
    #[serde(default = "default_pods", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1, max = 32768), extend("default" = 1))]
    pub pods: u32,
    /// Key groups: the unit keyed state is split into. Fixed for the life of the job's state.
    #[serde(default = "default_max_parallelism")]
    #[schemars(range(min = 1, max = 32768))]
    pub max_parallelism: u32,
    /// `running`, or `suspended`: stop with a savepoint and remove the pods; setting it back
    /// to `running` restores from that savepoint.
    #[serde(default)]
    pub state: DesiredState,
    /// How a spec change reaches the running job: `savepoint` (stop with a savepoint, start
    /// from it), `last-state` (stop, restore the newest checkpoint) or `stateless` (start
    /// empty). Never downgraded silently: when a savepoint cannot be taken the upgrade waits.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Change (e.g. increment) to restart the job from its newest completed checkpoint.
    #[serde(default)]
    pub restart_nonce: i64,
    /// Change (e.g. increment) to take a savepoint now; it is listed in `status.savepoints`.
    #[serde(default)]
    pub savepoint_trigger_nonce: i64,
    /// Savepoint or checkpoint URI the job starts from the first time it is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_savepoint_path: Option<String>,
    /// Start even when the restored state holds operators the pipeline no longer has.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Operators (state ids, as `weir-runtime explain` lists them) and sources (names) whose
    /// restored state may be dropped when it no longer fits the pipeline (a changed window,
    /// key or aggregate; another topic or file): they start empty, everything else is
    /// restored. A name whose state still fits is restored, so it is safe to leave here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub drop_state: Vec<String>,
    /// Take a final savepoint when the StreamJob is deleted. Checkpoints and savepoints are
    /// never deleted on deletion either way.
    #[serde(default)]
    pub savepoint_on_delete: bool,
    /// Checkpointing: interval, timeout, storage and how many completed checkpoints to keep.
    pub checkpoint: JobCheckpointSpec,
    /// Where operators keep keyed state: `memory` (default) or `disk`.
    #[serde(default, skip_serializing_if = "is_default_backend")]
    pub state_backend: StateBackendSpec,
    /// Periodic savepoints and how many are kept in `status.savepoints`.
    #[serde(default)]
    pub savepoint: SavepointPolicy,
    /// Automatic restarts of failed runtime pods: backoff and budget.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Deadlines and rollback for upgrades.
    #[serde(default)]
    pub upgrade: UpgradePolicy,
    /// CPU and memory of the runtime container: `cpu` and `memory` set requests and limits
    /// alike; `requests` or `limits` replace one side.
    #[serde(default)]
    pub resources: JobResources,
    /// Service account of the runtime pods (for IRSA, workload identity and the like); the
    /// namespace's `default` when absent. Its API token is mounted only if the service account
    /// or `podTemplate` asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub service_account_name: Option<String>,
    /// Secrets (of type `kubernetes.io/dockerconfigjson`) to pull the runtime image with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Log level and format of the runtime.
    #[serde(default)]
    pub logging: Logging,
    /// A Kubernetes pod template merged under what the operator owns: labels, annotations,
    /// nodeSelector, tolerations, affinity, priorityClassName, topologySpreadConstraints,
    /// volumes, sidecar and init containers, and in the container named `runtime` extra env,
    /// envFrom and volumeMounts. Root, privilege escalation, a writable root filesystem for
    /// the runtime and the fields the operator owns (image, args, ports, probes, resources)
    /// are refused, naming the field. The manifest reference lists the merge rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    pub pod_template: Option<serde_json::Value>,
    /// Environment variables taken from Secrets, e.g. the variable a sink's `passwordEnv` or a
    /// source's `security.sasl.passwordEnv` names (PEM text for `security.tls` too). Secrets never appear in the manifest itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<SecretEnv>,
    /// What the job computes: source, transforms, sinks (the same block as a local job file).
    #[schemars(with = "Pipeline")]
    pub pipeline: Pipeline,
}

fn default_parallelism() -> u32 {
    1
}
fn default_pods() -> u32 {
    1
}
// serde's `skip_serializing_if` passes a reference.
fn is_one(n: &u32) -> bool {
    *n == 1
}
fn default_max_parallelism() -> u32 {
    128
}

/// Whether the job should run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredState {
    /// Pods run and process records.
    #[default]
    Running,
    /// Stopped with a savepoint; no pods.
    Suspended,
}

/// How a spec change is carried to the running job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Start the new spec with empty state (sources start at their starting offsets).
    Stateless,
    /// Stop (final checkpoint), then restore the newest completed checkpoint.
    LastState,
    /// Stop with a savepoint, then start from it. Waits, saying why, if none can be taken.
    #[default]
    Savepoint,
}

/// Checkpoint settings of a StreamJob. Storage must be shared (S3, Azure Blob Storage, Google
/// Cloud Storage): a pod's local disk does not survive the pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.cloud) || !self.storage.startsWith('s3://')",
    "message": "cloud is for az:// and gs:// storage; s3:// storage takes its settings from s3"
}]))]
pub struct JobCheckpointSpec {
    /// Time between the end of one checkpoint and the trigger of the next.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// A checkpoint not completed within this time is abandoned. Must exceed `interval`.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Least time between the completion of one checkpoint and the start of the next.
    #[serde(default = "zero")]
    pub min_pause: Duration,
    /// `s3://bucket/prefix`, `az://container/prefix` (Azure Blob Storage) or
    /// `gs://bucket/prefix` (Google Cloud Storage). Checkpoints live under
    /// `<storage>/<namespace>/<name>/`.
    #[schemars(
        regex(
            pattern = r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]|az://[a-z0-9](-?[a-z0-9]){2,62}|gs://[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9])(/.*)?$"
        ),
        length(max = 1024)
    )]
    pub storage: String,
    /// Completed checkpoints kept; older ones are deleted. All are kept when the job stops.
    #[serde(default = "default_retained")]
    #[schemars(range(min = 1, max = 1000))]
    pub retained: u32,
    /// S3 endpoint, region and the Secret holding credentials.
    #[serde(default)]
    pub s3: JobS3Spec,
    /// Credentials for `az://` and `gs://` storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<JobCloudSpec>,
    /// Refuse storage without conditional writes (needed to fence zombie pods).
    #[serde(default = "yes")]
    pub exactly_once: bool,
    /// Restart a running job whose newest checkpoint is older than this. Default: twice
    /// `timeout` plus `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_timeout: Option<Duration>,
    /// When the newest completed checkpoint cannot be read (a corrupt or missing file), restore
    /// the newest older one that can. Off by default, and then the job is `Failed` naming the
    /// checkpoint and why: sinks may already have committed that checkpoint's output, and
    /// restoring an older one writes it again (duplicates in Kafka, repeated inserts into a
    /// table that does not deduplicate). Set it to accept that, for one restart; the change
    /// restarts the job and is recorded in an event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_unreadable: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(600)
}
fn zero() -> Duration {
    Duration::from_millis(0)
}
fn default_retained() -> u32 {
    3
}
fn yes() -> bool {
    true
}

/// S3 settings. Credentials come from a Secret with keys `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (or from the pod's service account when none is named).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobS3Spec {
    /// Custom endpoint, e.g. `http://minio.storage:9000`; AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing, which most non-AWS servers need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Environment variable (from `secretEnv`) holding the PEM CA bundle of an `https://`
    /// endpoint signed by a private CA. The runtime uses it; the operator's savepoint
    /// disposal does not yet (it trusts the system's CAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub ca_pem_env: Option<String>,
    /// Name of a Secret in the job's namespace with `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Credentials of Azure Blob Storage or Google Cloud Storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobCloudSpec {
    /// Name of a Secret in the job's namespace whose keys are the provider's environment
    /// variables: `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY` (or
    /// `AZURE_STORAGE_SAS_KEY`), or `GOOGLE_SERVICE_ACCOUNT_KEY` (the key file's JSON). The
    /// pods get every key as an environment variable; the operator uses the keys to delete
    /// disposed savepoints. Without it, pods and operator use their workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

/// Savepoint policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavepointPolicy {
    /// Take a savepoint this often while running; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic: Option<Duration>,
    /// Savepoints kept in `status.savepoints`; the oldest periodic and manual ones beyond
    /// this are disposed (deleted from storage). Upgrade and suspend savepoints are kept.
    #[serde(default = "default_history")]
    #[schemars(range(min = 1, max = 1000))]
    pub history_max_count: u32,
    /// Give up on a requested savepoint after this long (the condition says so).
    #[serde(default = "default_savepoint_timeout")]
    pub timeout: Duration,
}

fn default_history() -> u32 {
    10
}
fn default_savepoint_timeout() -> Duration {
    Duration::from_secs(600)
}

impl Default for SavepointPolicy {
    fn default() -> Self {
        Self {
            periodic: None,
            history_max_count: default_history(),
            timeout: default_savepoint_timeout(),
        }
    }
}

/// Automatic restarts: exponential backoff and a budget per window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubles with every restart within `window`.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between restarts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Restarts allowed within `window`; one more and the job is `Failed` with the reason.
    #[serde(default = "default_max_restarts")]
    #[schemars(range(min = 0, max = 10000))]
    pub max_restarts: u32,
    /// The sliding window the budget counts over.
    #[serde(default = "default_window")]
    pub window: Duration,
}

fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_max_restarts() -> u32 {
    20
}
fn default_window() -> Duration {
    Duration::from_secs(3600)
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_restarts: default_max_restarts(),
            window: default_window(),
        }
    }
}

/// Upgrade deadlines and rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradePolicy {
    /// New pods must be ready within this time after an upgrade starts them.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
    /// When the upgraded job misses `readyTimeout`, go back to the last spec that ran, from
    /// the upgrade's savepoint. Without it the job is `Failed` and waits for a new spec.
    #[serde(default)]
    pub rollback: bool,
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(300)
}

impl Default for UpgradePolicy {
    fn default() -> Self {
        Self {
            ready_timeout: default_ready_timeout(),
            rollback: false,
        }
    }
}

/// Runtime container resources. By default requests equal limits, so the pod gets a
/// predictable share (Guaranteed QoS); `requests` and `limits` set the two sides apart, e.g.
/// no CPU limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobResources {
    /// CPU quantity, e.g. `"1"` or `"500m"`: request and limit, unless `requests` or
    /// `limits` is given.
    #[serde(default = "default_cpu")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: String,
    /// Memory quantity, e.g. `"2Gi"`: request and limit, unless `requests` or `limits` is
    /// given.
    #[serde(default = "default_memory")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: String,
    /// Requests, replacing `cpu` and `memory` on that side (only what is listed is
    /// requested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceQuantities>,
    /// Limits, replacing `cpu` and `memory` on that side (only what is listed is limited:
    /// `limits: {memory: 2Gi}` sets no CPU limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceQuantities>,
}

/// One side (requests or limits) of the runtime container's resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuantities {
    /// CPU quantity, e.g. `"500m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory quantity, e.g. `"2Gi"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: Option<String>,
    /// Ephemeral storage quantity (the emptyDir under `/tmp`), e.g. `"1Gi"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub ephemeral_storage: Option<String>,
}

/// `(resource name, quantity)` pairs of one side, as a pod's `requests` or `limits` has them.
pub type Quantities = Vec<(&'static str, String)>;

impl JobResources {
    /// `(requests, limits)`.
    #[must_use]
    pub fn sides(&self) -> (Quantities, Quantities) {
        let both = ResourceQuantities {
            cpu: Some(self.cpu.clone()),
            memory: Some(self.memory.clone()),
            ephemeral_storage: None,
        };
        let pairs = |q: &ResourceQuantities| {
            [
                ("cpu", &q.cpu),
                ("memory", &q.memory),
                ("ephemeral-storage", &q.ephemeral_storage),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect::<Vec<_>>()
        };
        (
            pairs(self.requests.as_ref().unwrap_or(&both)),
            pairs(self.limits.as_ref().unwrap_or(&both)),
        )
    }
}

/// How the runtime logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a filter of `target=level`
    /// pairs, e.g. `info,weir_runtime::checkpoint=debug`.
    #[serde(default = "default_log_level")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_:=,\-]+$"))]
    pub level: String,
    /// `json` (one object per line, for log collectors) or `text`.
    #[serde(default)]
    pub format: LogFormatSpec,
}

fn default_log_level() -> String {
    "info".to_string()
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormatSpec::default(),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormatSpec {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// `spec.podTemplate` in the CRD: an object whose fields the apiserver keeps as given. The
/// operator checks it (`pod_template::check`) and the apiserver validates the merged pod.
fn pod_template_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn default_cpu() -> String {
    "1".to_string()
}
fn default_memory() -> String {
    "2Gi".to_string()
}

impl Default for JobResources {
    fn default() -> Self {
        Self {
            cpu: default_cpu(),
            memory: default_memory(),
            requests: None,
            limits: None,
        }
    }
}

/// One environment variable of the runtime pod, read from a Secret key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretEnv {
    /// Variable name, e.g. `CLICKHOUSE_PASSWORD`.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Secret in the job's namespace.
    pub secret: String,
    /// Key within the Secret.
    pub key: String,
}

fn is_default_backend(b: &StateBackendSpec) -> bool {
    *b == StateBackendSpec::default()
}

/// Longest name of a job with `pods` above 1: the operator names the headless Service its
/// pods find each other through `<name>-peers`, and a Service name is a DNS label (63).
pub const MAX_MULTI_POD_NAME: usize = 63 - "-peers".len();

impl StreamJobSpec {
    /// The job file the runtime pod runs: pipeline, parallelism and checkpointing of this
    /// spec under the StreamJob's name (which names the storage directory).
    #[must_use]
    pub fn job_file(&self, name: &str) -> JobFile {
        let c = &self.checkpoint;
        JobFile {
            name: Some(name.to_string()),
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            checkpoint: CheckpointSpec {
                interval: c.interval,
                timeout: c.timeout,
                min_pause: c.min_pause,
                storage: c.storage.clone(),
                retained: c.retained,
                s3: S3Spec {
                    endpoint: c.s3.endpoint.clone(),
                    region: c.s3.region.clone(),
                    path_style: c.s3.path_style,
                    ca_pem_env: c.s3.ca_pem_env.clone(),
                },
                exactly_once: c.exactly_once,
            },
            state_backend: self.state_backend.clone(),
            pipeline: self.pipeline.clone(),
        }
    }

    /// How long a running job may go without a completed checkpoint before it is restarted.
    #[must_use]
    pub fn progress_timeout(&self) -> std::time::Duration {
        let c = &self.checkpoint;
        c.progress_timeout
            .map(Duration::get)
            .unwrap_or_else(|| c.timeout.get() * 2 + c.interval.get())
    }

    /// The checks only code can make, with paths relative to the manifest (`spec.…`):
    /// the pipeline's own checks (columns referenced by transforms and sinks, window and
    /// event-time rules) plus the environment variables the connectors name. Performs no I/O;
    /// Secrets are checked by the operator, which can read them.
    #[must_use]
    pub fn validate(&self, name: &str) -> Vec<FieldError> {
        let job = self.job_file(name);
        let mut errs: Vec<FieldError> =
            crate::validate::validate_with(&job, self.restart.max_backoff.get())
                .into_iter()
                .chain(crate::columns::check_columns(&job))
                .map(|e| {
                    let path = match e.path.as_str() {
                        p if p.starts_with("source")
                            || p.starts_with("transforms")
                            || p.starts_with("sql")
                            || p.starts_with("sinks") =>
                        {
                            format!("spec.pipeline.{p}")
                        }
                        p => format!("spec.{p}"),
                    };
                    FieldError { path, ..e }
                })
                .collect();
        if let Some(t) = &self.pod_template {
            errs.extend(crate::pod_template::check(t));
        }
        if self.pods > 1 && name.len() > MAX_MULTI_POD_NAME {
            errs.push(FieldError::new(
                "spec.pods",
                format!(
                    "a job of several pods needs a name of at most {MAX_MULTI_POD_NAME} characters \
                     (`{name}` has {}): its pods find each other through the Service `{name}-peers`, \
                     and a Service name has at most 63",
                    name.len()
                ),
            ));
        }
        for (path, var) in self.env_references() {
            if !self.secret_env.iter().any(|s| s.name == var) {
                errs.push(FieldError::new(
                    path,
                    format!(
                        "names environment variable `{var}`, but spec.secretEnv does not define it"
                    ),
                ));
            }
        }
        errs
    }

    /// `(field path, variable)` for every environment variable a connector reads.
    fn env_references(&self) -> Vec<(String, String)> {
        let mut refs = Vec::new();
        if let Some(v) = &self.checkpoint.s3.ca_pem_env {
            refs.push(("spec.checkpoint.s3.caPemEnv".to_string(), v.clone()));
        }
        if let Some(k) = &self.pipeline.source.kafka {
            for (f, v) in k.env_vars() {
                refs.push((format!("spec.pipeline.source.kafka.{f}"), v.to_string()));
            }
        }
        for (i, s) in self.pipeline.sources.iter().enumerate() {
            for (f, v) in s.kafka.iter().flat_map(|k| k.env_vars()) {
                refs.push((
                    format!("spec.pipeline.sources[{i}].kafka.{f}"),
                    v.to_string(),
                ));
            }
        }
        for (i, s) in self.pipeline.sinks.iter().enumerate() {
            sink_references(&format!("spec.pipeline.sinks[{i}]"), s, &mut refs);
        }
        // Side outputs are sinks too; their variables are checked the same way.
        let sources = std::iter::once(("spec.pipeline.source".to_string(), &self.pipeline.source))
            .chain(
                self.pipeline
                    .sources
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("spec.pipeline.sources[{i}]"), s)),
            );
        for (at, src) in sources {
            if let crate::pipeline::DecodeErrorPolicy::SideOutput(sink) = &src.on_decode_error {
                sink_references(
                    &format!("{at}.onDecodeError.sideOutput"),
                    sink.as_ref(),
                    &mut refs,
                );
            }
        }
        for (i, t) in self.pipeline.transforms.iter().enumerate() {
            if let crate::pipeline::Transform::Window(w) = t
                && let crate::pipeline::LatePolicy::SideOutput(sink) = &w.late_records
            {
                sink_references(
                    &format!("spec.pipeline.transforms[{i}].window.lateRecords.sideOutput"),
                    sink.as_ref(),
                    &mut refs,
                );
            }
        }
        refs
    }
}

/// The environment variables sink `s` at `at` reads, as `(field path, variable)`.
fn sink_references(at: &str, s: &crate::pipeline::SinkSpec, refs: &mut Vec<(String, String)>) {
    use crate::connectors::TlsSpec;
    use crate::pipeline::SinkSpec;
    match s {
        SinkSpec::Kafka(k) => {
            for (f, v) in k.env_vars() {
                refs.push((format!("{at}.kafka.{f}"), v.to_string()));
            }
        }
        SinkSpec::ClickHouse(c) => {
            if let Some(v) = &c.password_env {
                refs.push((format!("{at}.clickhouse.passwordEnv"), v.clone()));
            }
            for (f, v) in c.tls.iter().flat_map(TlsSpec::env_vars) {
                refs.push((format!("{at}.clickhouse.tls.{f}"), v.to_string()));
            }
        }
        SinkSpec::Postgres(p) => {
            for (f, v) in p.env_vars() {
                refs.push((format!("{at}.postgres.{f}"), v.to_string()));
            }
        }
        SinkSpec::Mysql(m) => {
            for (f, v) in m.env_vars() {
                refs.push((format!("{at}.mysql.{f}"), v.to_string()));
            }
        }
        _ => {}
    }
}
