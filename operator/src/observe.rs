//! Gathering the facts a decision needs: the job's pods (a fresh list, not a cache, so a pod
//! created a moment ago is seen), the current runtime's report, and missing Secrets; and
//! what acting needs besides: pod addresses and the S3 credentials.
//!
//! Every read happens here, so acting only writes: the Secrets a job references are read
//! once per pass, and the decision and the actions work from the same reading.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::{Api, Client};
use weir_crds::control::{ControlToken, auth};
use weir_crds::{StreamJob, StreamJobSpec};

use crate::context::Context;
use crate::decide::{Observed, PodPhase, PodView, RuntimeOutcome};
use crate::error::{Error, Result};
use crate::pods::{
    CONTROL_PORT, CONTROL_PORT_ANNOTATION, INCARNATION_LABEL, JOB_LABEL, POD_INDEX_LABEL,
};
use crate::runtime_client::Endpoint;

/// What was observed, plus what only acting needs: the control API address of each pod that
/// has one, and the S3 credentials.
#[derive(Debug, Default)]
pub struct Observation {
    /// Input of the decision.
    pub observed: Observed,
    /// Pod name -> `http://<ip>:<port>`.
    pub addresses: HashMap<String, String>,
    /// The keys in `spec.checkpoint.s3.credentialsSecret`, for disposing savepoints. Here and
    /// not in [`Observed`]: decisions have no use for them, and what they read is logged.
    /// `None` when no Secret is named, or it or one of its keys is missing (which
    /// `observed.problems` reports).
    pub s3_credentials: Option<S3Credentials>,
    /// The keys of `spec.checkpoint.cloud.credentialsSecret` (`az://`, `gs://` storage), for
    /// disposing savepoints; empty when none is named or it is missing.
    pub cloud_credentials: CloudCredentials,
    /// The job's control token, from its control Secret; `None` until the operator has
    /// created that Secret (acting on `EnsureConfig` does, before the first pod).
    pub control_token: Option<ControlToken>,
}

/// An S3 access key pair from a Secret. Its `Debug` shows neither half, so an
/// [`Observation`] can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl S3Credentials {
    /// A key pair.
    #[must_use]
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// `(access key id, secret access key)`, as
    /// [`SavepointStore::dispose`](crate::dispose::SavepointStore::dispose) takes them.
    #[must_use]
    pub fn into_pair(self) -> (String, String) {
        (self.access_key_id, self.secret_access_key)
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The provider environment variables of a cloud credentials Secret, by name. Its `Debug`
/// shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CloudCredentials(pub Vec<(String, String)>);

impl fmt::Debug for CloudCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=<redacted>")))
            .finish()
    }
}

/// Observe `job` in `ns`.
///
/// # Errors
/// A failed pod list or Secret read (the runtime being unreachable is a fact, not an error).
pub async fn observe(ctx: &Context, job: &StreamJob, ns: &str, name: &str) -> Result<Observation> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={name}")))
        .await
        .map_err(|e| Error::kube(format!("list pods of {ns}/{name}"), e))?;
    let mut obs = Observation::default();
    for p in list.items {
        let Some(view) = pod_view(&p) else { continue };
        if let Some(addr) = address(&p) {
            obs.addresses.insert(view.name.clone(), addr);
        }
        obs.observed.pods.push(view);
    }
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let mut foreign = Vec::new();
    let control = read_secret(&ctx.client, ns, &auth::secret_name(name)).await?;
    obs.control_token = control.as_ref().and_then(|s| {
        if owned_by(s, &uid) {
            control_token(s)
        } else {
            foreign.push(foreign_secret(s));
            None
        }
    });
    if job.spec.pods > 1 {
        let exchange =
            read_secret(&ctx.client, ns, &crate::pods::exchange_secret_name(name)).await?;
        if let Some(s) = exchange.filter(|s| !owned_by(s, &uid)) {
            foreign.push(foreign_secret(&s));
        }
    }
    // Pod 0 of the current incarnation: in a job of several pods the coordinator, whose
    // report is the job's.
    let incarnation = job.status.as_ref().map_or(0, |s| s.incarnation);
    let current = obs
        .observed
        .pods
        .iter()
        .find(|p| p.reports_for(incarnation));
    if let Some(addr) = current.and_then(|p| obs.addresses.get(&p.name)) {
        let at = Endpoint {
            base: addr,
            token: obs.control_token.as_ref(),
        };
        match ctx.runtime.job(at).await {
            Ok(v) => obs.observed.runtime = Some(v),
            Err(e) => tracing::debug!(error = %e, "runtime status not available"),
        }
    }
    let refs = references(&job.spec);
    let secrets = read_secrets(&ctx.client, ns, &refs).await?;
    obs.observed.problems = foreign;
    obs.observed
        .problems
        .extend(missing_secrets(&refs, &secrets, ns));
    obs.s3_credentials = s3_credentials(&job.spec, &secrets);
    obs.cloud_credentials = cloud_credentials(&job.spec, &secrets);
    Ok(obs)
}

/// Where the console reaches the job's report and pages: pod 0 of the current incarnation
/// (the coordinator of a job of several pods) once it runs, and the job's control token if
/// the job owns its Secret. `None` while no such pod runs.
///
/// # Errors
/// Listing the pods or reading the Secret failed.
pub async fn coordinator(
    client: &Client,
    job: &StreamJob,
    ns: &str,
    name: &str,
) -> Result<Option<(String, Option<ControlToken>)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={name}")))
        .await
        .map_err(|e| Error::kube(format!("list pods of {ns}/{name}"), e))?;
    let incarnation = job.status.as_ref().map_or(0, |s| s.incarnation);
    let Some(base) = list.items.iter().find_map(|p| {
        let v = pod_view(p)?;
        v.reports_for(incarnation).then(|| address(p)).flatten()
    }) else {
        return Ok(None);
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let token = read_secret(client, ns, &auth::secret_name(name))
        .await?
        .filter(|s| owned_by(s, &uid))
        .and_then(|s| control_token(&s));
    Ok(Some((base, token)))
}

/// A pod as decisions see it; `None` for a pod without our incarnation label (or with an
/// index label that is not a number). A pod without an index label is pod 0: pods of a
/// job of one pod have none.
#[must_use]
pub fn pod_view(p: &Pod) -> Option<PodView> {
    let name = p.metadata.name.clone()?;
    let labels = p.metadata.labels.as_ref()?;
    let incarnation = labels.get(INCARNATION_LABEL)?.parse().ok()?;
    let index = match labels.get(POD_INDEX_LABEL) {
        Some(i) => i.parse().ok()?,
        None => 0,
    };
    let status = p.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Unknown") => PodPhase::Unknown,
        _ => PodPhase::Pending,
    };
    // The runtime container's status: the kubelet lists containers by name, so a sidecar
    // may come first.
    let statuses = status.and_then(|s| s.container_statuses.as_deref());
    let container = statuses.and_then(|cs| {
        cs.iter()
            .find(|c| c.name == weir_crds::pod_template::RUNTIME_CONTAINER)
            .or_else(|| cs.first())
    });
    let state = container.and_then(|c| c.state.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let waiting_reason = state
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    Some(PodView {
        name,
        incarnation,
        index,
        ready: container.is_some_and(|c| c.ready),
        phase,
        deleting: p.metadata.deletion_timestamp.is_some(),
        reason: terminated
            .and_then(|t| t.reason.clone())
            .or(waiting_reason)
            .or_else(|| status.and_then(|s| s.reason.clone())),
        exit_code: terminated.map(|t| t.exit_code),
        outcome: terminated
            .and_then(|t| t.message.as_deref())
            .and_then(parse_outcome),
    })
}

/// The runtime's termination message (`WEIR_TERMINATION_LOG`); `None` for anything else the
/// container left there (a panic's log tail).
#[must_use]
pub fn parse_outcome(message: &str) -> Option<RuntimeOutcome> {
    serde_json::from_str(message.trim()).ok()
}

fn address(p: &Pod) -> Option<String> {
    let ip = p.status.as_ref()?.pod_ip.clone()?;
    let port = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTROL_PORT_ANNOTATION))
        .and_then(|v| v.parse::<u16>().ok())
        .map_or(CONTROL_PORT, i32::from);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    Some(format!("http://{host}:{port}"))
}

/// One Secret the spec references: the field naming it, the Secret, the keys it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    field: String,
    secret: String,
    keys: Vec<String>,
}

/// Every Secret reference in `spec`, the S3 credentials first.
fn references(spec: &StreamJobSpec) -> Vec<Reference> {
    let mut refs = Vec::new();
    if let Some(s) = &spec.checkpoint.s3.credentials_secret {
        refs.push(Reference {
            field: "spec.checkpoint.s3.credentialsSecret".into(),
            secret: s.clone(),
            keys: vec![ACCESS_KEY_ID.into(), SECRET_ACCESS_KEY.into()],
        });
    }
    if let Some(s) = spec
        .checkpoint
        .cloud
        .as_ref()
        .and_then(|c| c.credentials_secret.as_ref())
    {
        // Which keys depends on the provider and the kind of credential: only the Secret's
        // presence is checked here; the storage client names what it misses.
        refs.push(Reference {
            field: "spec.checkpoint.cloud.credentialsSecret".into(),
            secret: s.clone(),
            keys: Vec::new(),
        });
    }
    for (i, e) in spec.secret_env.iter().enumerate() {
        refs.push(Reference {
            field: format!("spec.secretEnv[{i}]"),
            secret: e.secret.clone(),
            keys: vec![e.key.clone()],
        });
    }
    refs
}

/// Keys of `spec.checkpoint.s3.credentialsSecret` (the names the AWS SDKs read from the
/// environment, so the same Secret also serves the runtime).
const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// One Secret, `None` when it does not exist.
async fn read_secret(client: &Client, ns: &str, name: &str) -> Result<Option<Secret>> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("read Secret {ns}/{name}"), e))
}

/// The token in the job's control Secret; `None` when its key is missing or blank.
fn control_token(secret: &Secret) -> Option<ControlToken> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(auth::TOKEN_KEY).cloned())
        .and_then(|b| String::from_utf8(b.0).ok())
        .and_then(|t| ControlToken::new(&t))
}

/// Whether the job with `uid` controls `secret`. The operator creates the token Secrets with
/// that owner; one named like them but made by someone else is a token its maker knows.
#[must_use]
pub fn owned_by(secret: &Secret, uid: &str) -> bool {
    !uid.is_empty()
        && secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid && r.controller == Some(true))
}

fn foreign_secret(secret: &Secret) -> (String, String) {
    (
        format!(
            "Secret {}",
            secret.metadata.name.clone().unwrap_or_default()
        ),
        "exists but is not owned by this StreamJob: whoever made it knows the token the job \
         would trust; delete it (the operator makes a fresh one) or rename the job"
            .to_string(),
    )
}

/// Each referenced Secret, read once however many fields name it; `None` for one that does
/// not exist.
async fn read_secrets(
    client: &Client,
    ns: &str,
    refs: &[Reference],
) -> Result<HashMap<String, Option<Secret>>> {
    let names: BTreeSet<&String> = refs.iter().map(|r| &r.secret).collect();
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut found = HashMap::new();
    for n in names {
        let s = api
            .get_opt(n)
            .await
            .map_err(|e| Error::kube(format!("read Secret {ns}/{n}"), e))?;
        found.insert(n.clone(), s);
    }
    Ok(found)
}

/// `(field, message)` for each referenced Secret or key that does not exist.
fn missing_secrets(
    refs: &[Reference],
    found: &HashMap<String, Option<Secret>>,
    ns: &str,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for r in refs {
        let keys: Option<BTreeSet<&String>> =
            found.get(&r.secret).and_then(Option::as_ref).map(|s| {
                s.data
                    .iter()
                    .flat_map(|d| d.keys())
                    .chain(s.string_data.iter().flat_map(|d| d.keys()))
                    .collect()
            });
        match keys {
            None => problems.push((
                r.field.clone(),
                format!("Secret `{}` does not exist in namespace {ns}", r.secret),
            )),
            Some(have) => {
                for k in r.keys.iter().filter(|k| !have.contains(k)) {
                    problems.push((
                        r.field.clone(),
                        format!("Secret `{}` has no key `{k}`", r.secret),
                    ));
                }
            }
        }
    }
    problems
}

/// The key pair in `spec.checkpoint.s3.credentialsSecret`, trimmed (a Secret made with
/// `echo` ends in a newline); `None` unless the Secret has both keys in its data.
fn s3_credentials(
    spec: &StreamJobSpec,
    found: &HashMap<String, Option<Secret>>,
) -> Option<S3Credentials> {
    let name = spec.checkpoint.s3.credentials_secret.as_ref()?;
    let data = found.get(name)?.as_ref()?.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
    };
    Some(S3Credentials::new(
        get(ACCESS_KEY_ID)?,
        get(SECRET_ACCESS_KEY)?,
    ))
}

/// Every key of `spec.checkpoint.cloud.credentialsSecret`, trimmed like the S3 pair.
fn cloud_credentials(
    spec: &StreamJobSpec,
    found: &HashMap<String, Option<Secret>>,
) -> CloudCredentials {
    let data = spec
        .checkpoint
        .cloud
        .as_ref()
        .and_then(|c| c.credentials_secret.as_ref())
        .and_then(|name| found.get(name)?.as_ref()?.data.as_ref());
    CloudCredentials(
        data.into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).trim().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use http::{Request, Response};
    use k8s_openapi::ByteString;
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;

    /// A spec naming `credentials_secret` for S3 and `secret_env` for the pods.
    fn spec(credentials_secret: Option<&str>, secret_env: Value) -> StreamJobSpec {
        serde_json::from_value(json!({
            "checkpoint": {"interval": "30s", "timeout": "2m", "storage": "s3://bucket/weir",
                           "s3": {"credentialsSecret": credentials_secret}},
            "secretEnv": secret_env,
            "pipeline": {
                "source": {"kafka": {"bootstrapServers": "kafka:9092", "topic": "orders"},
                           "schema": [{"name": "amount", "type": "int64"}]},
                "sinks": [{"kafka": {"bootstrapServers": "kafka:9092", "topic": "out",
                                     "transactionalIdPrefix": "out"}}]
            }
        }))
        .unwrap()
    }

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    const ID: &str = "AKIDEXAMPLE";
    const KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn s3_credentials_and_missing_secrets_come_from_the_same_reading() {
        struct Row {
            name: &'static str,
            credentials_secret: Option<&'static str>,
            secrets: Vec<Secret>,
            credentials: Option<S3Credentials>,
            problems: Vec<&'static str>,
        }
        let with_string_data = {
            let mut s = Secret::default();
            s.metadata.name = Some("s3".into());
            s.string_data = Some(BTreeMap::from([
                (ACCESS_KEY_ID.to_string(), ID.to_string()),
                (SECRET_ACCESS_KEY.to_string(), KEY.to_string()),
            ]));
            s
        };
        let rows = [
            Row {
                name: "no credentialsSecret: the default chain, nothing to read",
                credentials_secret: None,
                secrets: vec![],
                credentials: None,
                problems: vec![],
            },
            Row {
                name: "both keys, trimmed of the newline `echo` leaves",
                credentials_secret: Some("s3"),
                secrets: vec![secret(
                    "s3",
                    &[(ACCESS_KEY_ID, "AKIDEXAMPLE\n"), (SECRET_ACCESS_KEY, KEY)],
                )],
                credentials: Some(S3Credentials::new(ID, KEY)),
                problems: vec![],
            },
            Row {
                name: "a Secret that does not exist is a problem, and no credentials",
                credentials_secret: Some("s3"),
                secrets: vec![],
                credentials: None,
                problems: vec!["Secret `s3` does not exist in namespace shop"],
            },
            Row {
                name: "a missing key is a problem, and no credentials",
                credentials_secret: Some("s3"),
                secrets: vec![secret("s3", &[(ACCESS_KEY_ID, ID)])],
                credentials: None,
                problems: vec!["Secret `s3` has no key `AWS_SECRET_ACCESS_KEY`"],
            },
            Row {
                // As before the credentials moved here: `stringData` (write-only, so never
                // returned by the API) counts as present but is not read.
                name: "keys only in stringData",
                credentials_secret: Some("s3"),
                secrets: vec![with_string_data],
                credentials: None,
                problems: vec![],
            },
        ];
        for row in rows {
            let spec = spec(row.credentials_secret, json!([]));
            // As `read_secrets` answers: every referenced name, `None` for one that is absent.
            let mut found: HashMap<String, Option<Secret>> = row
                .credentials_secret
                .map(|n| (n.to_string(), None))
                .into_iter()
                .collect();
            for s in row.secrets {
                found.insert(s.metadata.name.clone().unwrap(), Some(s));
            }
            assert_eq!(
                s3_credentials(&spec, &found),
                row.credentials,
                "{}: credentials",
                row.name
            );
            let problems = missing_secrets(&references(&spec), &found, "shop");
            let want: Vec<(String, String)> = row
                .problems
                .iter()
                .map(|m| {
                    (
                        "spec.checkpoint.s3.credentialsSecret".to_string(),
                        m.to_string(),
                    )
                })
                .collect();
            assert_eq!(problems, want, "{}: problems", row.name);
        }
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let obs = Observation {
            s3_credentials: Some(S3Credentials::new(ID, KEY)),
            control_token: ControlToken::new("c0ntr0l"),
            ..Observation::default()
        };
        let printed = format!("{obs:?} {obs:#?}");
        assert!(
            !printed.contains(ID) && !printed.contains(KEY) && !printed.contains("c0ntr0l"),
            "{printed}"
        );
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    /// `observe` against a mocked API: the Secret named by both the S3 credentials and a
    /// `secretEnv` entry is read once, its keys land in the observation (not in `observed`),
    /// and what is missing lands in `observed.problems`.
    /// Runs `observe` for `sales` (uid `uid-sales`, pods `pods`) against a mocked API whose
    /// control Secret is owned by the job with `control_owner`; returns the observation
    /// and the calls made.
    async fn observe_mocked(control_owner: &'static str, pods: u32) -> (Observation, Vec<String>) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let path = req.uri().path().to_string();
                seen.push(format!("{} {path}", req.method()));
                let (code, body) = if path.ends_with("/pods") {
                    (
                        200,
                        json!({"apiVersion": "v1", "kind": "PodList",
                                 "metadata": {}, "items": []}),
                    )
                } else if path.ends_with("/secrets/sales-control") {
                    let mut s = secret("sales-control", &[("token", "c0ntr0l\n")]);
                    s.metadata.owner_references = Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                            api_version: "weir.dev/v1alpha1".into(),
                            kind: "StreamJob".into(),
                            name: "sales".into(),
                            uid: control_owner.into(),
                            controller: Some(true),
                            block_owner_deletion: Some(true),
                        },
                    ]);
                    (200, serde_json::to_value(s).unwrap())
                } else if path.ends_with("/secrets/s3") {
                    let s = secret(
                        "s3",
                        &[
                            (ACCESS_KEY_ID, ID),
                            (
                                SECRET_ACCESS_KEY,
                                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
                            ),
                        ],
                    );
                    (200, serde_json::to_value(s).unwrap())
                } else {
                    (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404, "message": "not found"}),
                    )
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
            seen
        });
        let ctx = Context::new(
            kube::Client::new(svc, "default"),
            Arc::new(crate::runtime_client::HttpRuntime::new().unwrap()),
            Arc::new(crate::dispose::StorageSavepoints),
            Arc::new(crate::metrics::Metrics::new()),
            crate::decide::Settings::default(),
        );
        let mut job = StreamJob::new(
            "sales",
            spec(
                Some("s3"),
                json!([{"name": "EXTRA", "secret": "s3", "key": "extra"},
                       {"name": "DB_PASSWORD", "secret": "db", "key": "pw"}]),
            ),
        );
        job.metadata.namespace = Some("shop".into());
        job.metadata.uid = Some("uid-sales".into());
        job.spec.pods = pods;
        job.spec.parallelism = pods;
        let obs = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            observe(&ctx, &job, "shop", "sales"),
        )
        .await
        .expect("observe made a call nobody answers (or hung)")
        .unwrap();
        drop(ctx);
        (obs, server.await.unwrap())
    }

    #[tokio::test]
    async fn observe_reads_each_secret_once_and_keeps_the_s3_keys_for_acting() {
        let (obs, seen) = observe_mocked("uid-sales", 1).await;
        assert_eq!(
            seen,
            [
                "GET /api/v1/namespaces/shop/pods",
                "GET /api/v1/namespaces/shop/secrets/sales-control",
                "GET /api/v1/namespaces/shop/secrets/db",
                "GET /api/v1/namespaces/shop/secrets/s3",
            ]
        );
        assert_eq!(obs.s3_credentials, Some(S3Credentials::new(ID, KEY)));
        assert_eq!(obs.control_token, ControlToken::new("c0ntr0l"));
        assert_eq!(
            obs.observed.problems,
            [
                (
                    "spec.secretEnv[0]".to_string(),
                    "Secret `s3` has no key `extra`".to_string()
                ),
                (
                    "spec.secretEnv[1]".to_string(),
                    "Secret `db` does not exist in namespace shop".to_string()
                ),
            ]
        );
    }

    /// A token Secret named for the job but not owned by it is somebody else's token: it is
    /// not used, and it is a problem that names it (so nothing is deployed, with an event).
    /// Mutation: drop the ownership check and the foreign token is used.
    #[tokio::test]
    async fn token_secrets_the_job_does_not_own_are_refused() {
        let (obs, seen) = observe_mocked("uid-someone-else", 2).await;
        assert_eq!(obs.control_token, None);
        assert!(seen.contains(&"GET /api/v1/namespaces/shop/secrets/sales-exchange".to_string()));
        let named: Vec<&str> = obs.observed.problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            named[0], "Secret sales-control",
            "{:?}",
            obs.observed.problems
        );
        assert!(
            obs.observed.problems[0]
                .1
                .contains("not owned by this StreamJob")
        );
    }

    #[test]
    fn termination_messages_become_outcomes() {
        assert_eq!(
            parse_outcome(r#"{"outcome":"stopped","savepoint":"s3://b/sp-1"}"#),
            Some(RuntimeOutcome::Stopped {
                savepoint: Some("s3://b/sp-1".into())
            })
        );
        assert_eq!(
            parse_outcome(r#"{"outcome":"stopped","savepoint":null}"#),
            Some(RuntimeOutcome::Stopped { savepoint: None })
        );
        assert_eq!(
            parse_outcome(r#"{"outcome":"failed","error":"boom"}"#),
            Some(RuntimeOutcome::Failed {
                error: "boom".into()
            })
        );
        assert_eq!(
            parse_outcome("panicked at main.rs"),
            None,
            "log tail, not ours"
        );
    }

    #[test]
    fn pod_view_reads_labels_phase_and_termination() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sales-4", "labels": {"weir.dev/incarnation": "4"},
                         "annotations": {"weir.dev/control-port": "18081"}},
            "status": {"phase": "Failed", "podIP": "10.0.0.7", "containerStatuses": [{
                "name": "runtime", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }))
        .unwrap();
        let v = pod_view(&p).unwrap();
        assert_eq!(
            (v.incarnation, v.phase, v.exit_code),
            (4, PodPhase::Failed, Some(137))
        );
        assert_eq!(v.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(address(&p).as_deref(), Some("http://10.0.0.7:18081"));
        assert_eq!((v.index, v.ready), (0, false), "no index label: pod 0");
    }

    /// A pod of a job of several pods carries its index; readiness and the termination are
    /// the runtime container's, wherever the kubelet lists it among sidecars; an index that
    /// is not a number makes the pod not one of ours rather than pod 0.
    #[test]
    fn pod_view_reads_the_index_and_the_runtime_containers_status() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sales-4-1",
                         "labels": {"weir.dev/incarnation": "4", "weir.dev/pod-index": "1"}},
            "status": {"phase": "Running", "podIP": "10.0.0.8", "containerStatuses": [
                {"name": "agent", "image": "a", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"name": "runtime", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {}}}]}
        }))
        .unwrap();
        let v = pod_view(&p).unwrap();
        assert_eq!((v.incarnation, v.index, v.ready), (4, 1, true));
        assert_eq!(v.reason, None, "the sidecar's state is not the runtime's");
        let mut bad = p;
        bad.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_INDEX_LABEL.into(), "one".into());
        assert_eq!(pod_view(&bad), None);
    }
}
