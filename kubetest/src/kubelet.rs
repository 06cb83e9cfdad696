//! Plays the kubelet for one namespace of an envtest apiserver: every pod the operator
//! creates is bound to a pretend node and its container started with the pod's arguments
//! and environment (Secret references resolved), its ConfigMap volume written to a
//! directory, its control port mapped to a free loopback port (reported through the
//! `weir.dev/control-port` annotation and `podIP: 127.0.0.1`). Phases and container states
//! are reported as a kubelet would, including the termination message. A pod being deleted
//! gets SIGTERM and its grace period, then SIGKILL; the pod object goes once the container
//! has exited. `kill9` simulates a crash.
//!
//! The container is a real `weir-runtime` process ([`Runner::Process`], the whole-system
//! test) or a scripted control API in the test process ([`Runner::Fake`], the operator's
//! apiserver suite).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use weir_crds::control::{
    AttemptStatus, CheckpointKind, CheckpointReport, JobReport, JobState, Outcome,
    SavepointAccepted, SavepointReport, SavepointState, StopAccepted, StopRequest, routes,
};

const NODE: &str = "weir-harness";
const MOUNT_PREFIX: &str = "/etc/weir";

/// What runs a pod's container.
#[derive(Clone)]
pub enum Runner {
    /// The `weir-runtime` binary as a local process.
    Process(PathBuf),
    /// A scripted runtime control API (see [`FakeRuntime`]).
    Fake(Arc<FakeRuntime>),
}

/// How a container ended: exit code and termination message.
pub type Exit = (i32, String);

/// A started container: its end, and how to signal it.
pub struct Started {
    pub exit: tokio::sync::oneshot::Receiver<Exit>,
    pub term: Box<dyn FnMut() + Send>,
    pub kill: Box<dyn FnMut() + Send>,
}

enum Signal {
    /// The pod is being deleted: SIGTERM, grace, SIGKILL.
    Stop,
    /// Crash now.
    Kill9,
}

#[derive(Clone, Default)]
struct Pods(Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Signal>>>>);

pub struct Kubelet {
    pods: Pods,
    task: tokio::task::JoinHandle<()>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string()
}

impl Kubelet {
    /// Starts playing the node for `ns`; runtime processes run `runtime_bin`, logging into
    /// `logs/<pod>.log`.
    pub fn start(client: Client, ns: &str, runner: Runner, logs: PathBuf) -> Self {
        std::fs::create_dir_all(&logs).expect("log dir");
        let pods = Pods::default();
        let task = tokio::spawn(watch(client, ns.to_string(), runner, logs, pods.clone()));
        Self { pods, task }
    }

    /// SIGKILL the process of `pod` (as an OOM kill or a node crash would). False when the
    /// harness runs no such pod.
    pub fn kill9(&self, pod: &str) -> bool {
        let pods = self.pods.0.lock().expect("lock");
        pods.get(pod)
            .is_some_and(|tx| tx.send(Signal::Kill9).is_ok())
    }

    /// Names of the pods whose processes are running.
    pub fn running(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pods.0.lock().expect("lock").keys().cloned().collect();
        v.sort();
        v
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for tx in self.pods.0.lock().expect("lock").values() {
            let _ = tx.send(Signal::Kill9);
        }
        self.task.abort();
    }
}

async fn watch(client: Client, ns: String, runner: Runner, logs: PathBuf, pods: Pods) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    while let Some(ev) = events.next().await {
        let pod = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(watcher::Event::Delete(p)) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                if let Some(tx) = pods.0.lock().expect("lock").get(&name) {
                    let _ = tx.send(Signal::Kill9);
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                eprintln!("kubelet: watch error: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let known = pods.0.lock().expect("lock").get(&name).cloned();
        if pod.metadata.deletion_timestamp.is_some() {
            match known {
                Some(tx) => {
                    let _ = tx.send(Signal::Stop);
                }
                None => {
                    let _ = api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                }
            }
            continue;
        }
        if known.is_some() || phase == "Succeeded" || phase == "Failed" || phase == "Running" {
            continue;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        pods.0.lock().expect("lock").insert(name.clone(), tx);
        let (client, ns, runner, logs, pods) = (
            client.clone(),
            ns.clone(),
            runner.clone(),
            logs.clone(),
            pods.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = run_pod(&client, &ns, &pod, &runner, &logs, rx).await {
                eprintln!("kubelet: pod {name}: {e}");
            }
            pods.0.lock().expect("lock").remove(&name);
        });
    }
}

/// The environment of the runtime container: values as given, Secret keys resolved.
async fn environment(
    client: &Client,
    ns: &str,
    pod: &Pod,
) -> Result<Vec<(String, String)>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let container = &pod.spec.as_ref().ok_or("no spec")?.containers[0];
    let mut out = Vec::new();
    for e in container.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from) {
            (Some(v), _) => v,
            (None, Some(from)) => match from.secret_key_ref {
                Some(r) => {
                    let s = secrets
                        .get(&r.name)
                        .await
                        .map_err(|err| format!("Secret {}: {err}", r.name))?;
                    let data = s.data.unwrap_or_default();
                    let bytes = data
                        .get(&r.key)
                        .ok_or_else(|| format!("Secret {} has no key {}", r.name, r.key))?;
                    String::from_utf8_lossy(&bytes.0).into_owned()
                }
                None => continue,
            },
            (None, None) => String::new(),
        };
        out.push((e.name, value));
    }
    Ok(out)
}

/// Writes the pod's ConfigMap volumes under `dir`; the container's mount path for each.
async fn volumes(
    client: &Client,
    ns: &str,
    pod: &Pod,
    dir: &Path,
) -> Result<Vec<(String, PathBuf)>, String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let spec = pod.spec.as_ref().ok_or("no spec")?;
    let mut mounts = Vec::new();
    for v in spec.volumes.clone().unwrap_or_default() {
        let Some(cm) = v.config_map else { continue };
        let m = cms
            .get(&cm.name)
            .await
            .map_err(|e| format!("ConfigMap {}: {e}", cm.name))?;
        let vdir = dir.join(&v.name);
        std::fs::create_dir_all(&vdir).map_err(|e| e.to_string())?;
        for (k, text) in m.data.unwrap_or_default() {
            std::fs::write(vdir.join(k), text).map_err(|e| e.to_string())?;
        }
        for c in &spec.containers {
            for vm in c.volume_mounts.clone().unwrap_or_default() {
                if vm.name == v.name {
                    mounts.push((vm.mount_path, vdir.clone()));
                }
            }
        }
    }
    Ok(mounts)
}

async fn patch_status(api: &Api<Pod>, name: &str, status: Value) {
    if let Err(e) = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    {
        eprintln!("kubelet: status of {name}: {e}");
    }
}

/// Starts `bin` with `args` and `env` (and nothing of the test's environment but `PATH`).
fn start_process(
    bin: &Path,
    args: &[String],
    env: Vec<(String, String)>,
    log: &Path,
    termination: PathBuf,
) -> Result<Started, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let pid = child.id().unwrap_or_default().to_string();
    let (tx, exit) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use std::os::unix::process::ExitStatusExt;
        let code = match child.wait().await {
            Ok(s) => s.code().unwrap_or(128 + s.signal().unwrap_or(9)),
            Err(_) => 137,
        };
        let _ = tx.send((
            code,
            std::fs::read_to_string(&termination).unwrap_or_default(),
        ));
    });
    let signal = |sig: &'static str, pid: String| {
        move || {
            let _ = std::process::Command::new("kill")
                .arg(sig)
                .arg(&pid)
                .status();
        }
    };
    Ok(Started {
        exit,
        term: Box::new(signal("-TERM", pid.clone())),
        kill: Box::new(signal("-KILL", pid)),
    })
}

async fn run_pod(
    client: &Client,
    ns: &str,
    pod: &Pod,
    runner: &Runner,
    logs: &Path,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
    api.create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &binding)
        .await
        .map_err(|e| format!("bind: {e}"))?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mounts = volumes(client, ns, pod, dir.path()).await?;
    let termination = dir.path().join("termination-log");
    let mut env = environment(client, ns, pod).await?;
    for (k, v) in &mut env {
        if k == "WEIR_TERMINATION_LOG" {
            *v = termination.display().to_string();
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let container = &pod.spec.as_ref().ok_or("no spec")?.containers[0];
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let a = a.replace("0.0.0.0:8081", &format!("127.0.0.1:{port}"));
            mounts.iter().fold(a, |a, (mount, local)| {
                a.replace(mount.as_str(), &local.display().to_string())
            })
        })
        .collect();
    assert!(
        args.iter().all(|a| !a.starts_with(MOUNT_PREFIX)),
        "unmapped path in {args:?}"
    );
    let mut started = match runner {
        Runner::Process(bin) => start_process(
            bin,
            &args,
            env,
            &logs.join(format!("{name}.log")),
            termination,
        )?,
        Runner::Fake(fake) => {
            let token = env
                .iter()
                .find(|(k, _)| k == weir_crds::control::auth::TOKEN_ENV)
                .map(|(_, v)| v.clone());
            fake.start(&name, port, &args, token).await
        }
    };
    let started_at = now();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"weir.dev/control-port": port.to_string()}}}),
        ),
    )
    .await
    .map_err(|e| format!("annotate: {e}"))?;
    patch_status(
        &api,
        &name,
        json!({"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
               "hostIP": "127.0.0.1", "startTime": started_at,
               "containerStatuses": [{"name": "runtime", "image": container.image, "imageID": "",
                   "ready": true, "started": true, "restartCount": 0,
                   "state": {"running": {"startedAt": started_at}}}]}),
    )
    .await;

    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let mut deleting = false;
    let (code, message) = loop {
        tokio::select! {
            e = &mut started.exit => break e.unwrap_or((137, String::new())),
            sig = signals.recv() => match sig {
                Some(Signal::Kill9) | None => (started.kill)(),
                Some(Signal::Stop) => {
                    deleting = true;
                    (started.term)();
                    let limit = Duration::from_secs(u64::try_from(grace).unwrap_or(30));
                    match tokio::time::timeout(limit, &mut started.exit).await {
                        Ok(e) => break e.unwrap_or((137, String::new())),
                        Err(_) => (started.kill)(),
                    }
                }
            }
        }
    };
    patch_status(
        &api,
        &name,
        json!({"phase": if code == 0 { "Succeeded" } else { "Failed" },
               "containerStatuses": [{"name": "runtime", "image": container.image, "imageID": "",
                   "ready": false, "started": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": code,
                       "reason": if code == 0 { "Completed" } else { "Error" },
                       "message": message, "startedAt": started_at, "finishedAt": now()}}}]}),
    )
    .await;
    // A terminal pod stays until someone deletes it, as with a real kubelet.
    if !deleting {
        // Stop (deletion requested) or Kill9 (the object is already gone, or teardown).
        let _ = signals.recv().await;
    }
    let _ = api
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
    Ok(())
}

/// A scripted runtime control API, one per pod, all sharing this script. It serves the
/// contract's `GET /v1/job` report (a lineage id, state, a checkpoint that advances on every
/// call, savepoint requests) and acts on `POST /v1/savepoints` and `POST /v1/stop` like the
/// runtime: a stop with a savepoint ends the "container" with exit 0 and the termination
/// message naming it. Like the runtime, it refuses `/v1` calls without the pod's control
/// token (`401`, recorded as `"<pod> REFUSED <METHOD> <path>"`).
#[derive(Default)]
pub struct FakeRuntime {
    /// Answer savepoint requests and stops-with-savepoint with a failure.
    pub fail_savepoints: std::sync::atomic::AtomicBool,
    /// Every control call, as `"<pod> <METHOD> <path>"`.
    pub calls: Mutex<Vec<String>>,
    /// Arguments each pod was started with.
    pub started: Mutex<Vec<(String, Vec<String>)>>,
    next: std::sync::atomic::AtomicU64,
}

struct FakePod {
    name: String,
    script: Arc<FakeRuntime>,
    checkpoint: std::sync::atomic::AtomicU64,
    savepoints: Mutex<Vec<SavepointReport>>,
    exit: Mutex<Option<tokio::sync::oneshot::Sender<Exit>>>,
    server: Mutex<Option<tokio::task::AbortHandle>>,
}

impl FakePod {
    /// The container ends: report `exit`, and close the control API once the answer in
    /// flight (to a stop) has gone out.
    fn end(&self, exit: Exit) {
        if let Some(tx) = self.exit.lock().expect("lock").take() {
            let _ = tx.send(exit);
        }
        if let Some(server) = self.server.lock().expect("lock").take() {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                server.abort();
            });
        }
    }
    fn record(&self, call: &str) {
        self.script
            .calls
            .lock()
            .expect("lock")
            .push(format!("{} {call}", self.name));
    }
    fn savepoint_path(&self) -> String {
        let n = self
            .script
            .next
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        format!("s3://weir-test/ckpt/{}/savepoints/sp-{n}-fake", self.name)
    }
}

impl FakeRuntime {
    /// Serves the control API of `pod` on `port` until the container ends; with `token`
    /// (the pod's `WEIR_CONTROL_TOKEN`), only to callers that send it.
    pub async fn start(
        self: &Arc<Self>,
        pod: &str,
        port: u16,
        args: &[String],
        token: Option<String>,
    ) -> Started {
        use axum::routing::{get, post};
        self.started
            .lock()
            .expect("lock")
            .push((pod.to_string(), args.to_vec()));
        let (tx, exit) = tokio::sync::oneshot::channel();
        let p = Arc::new(FakePod {
            name: pod.to_string(),
            script: self.clone(),
            checkpoint: std::sync::atomic::AtomicU64::new(0),
            savepoints: Mutex::new(Vec::new()),
            exit: Mutex::new(Some(tx)),
            server: Mutex::new(None),
        });
        let job = {
            let p = p.clone();
            move || async move {
                p.record("GET /v1/job");
                let id = p
                    .checkpoint
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                let ms = jiff::Timestamp::now().as_millisecond();
                axum::Json(JobReport {
                    name: p.name.clone(),
                    job_id: format!("lineage-{}", p.name),
                    generation: 1,
                    state: JobState::Running,
                    parallelism: 1,
                    max_parallelism: 128,
                    restored_from: None,
                    last_checkpoint: Some(CheckpointReport {
                        id,
                        kind: CheckpointKind::Checkpoint,
                        status: AttemptStatus::Completed,
                        triggered_at_ms: ms,
                        duration_ms: Some(5),
                        size_bytes: Some(100),
                        alignment_ms: None,
                        path: Some(format!("s3://weir-test/ckpt/{}/chk-{id}", p.name)),
                        error: None,
                    }),
                    checkpoints: Vec::new(),
                    savepoints: p.savepoints.lock().expect("lock").clone(),
                    sinks: Vec::new(),
                    watermarks: Vec::new(),
                    records_in: 0,
                    source_lag: Vec::new(),
                    failure: None,
                })
            }
        };
        let trigger = {
            let p = p.clone();
            move || async move {
                p.record("POST /v1/savepoints");
                let id = format!("req-{}", p.savepoints.lock().expect("lock").len() + 1);
                let entry = if p
                    .script
                    .fail_savepoints
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    SavepointReport {
                        id: id.clone(),
                        status: SavepointState::Failed,
                        path: None,
                        checkpoint: None,
                        error: Some("injected failure".into()),
                    }
                } else {
                    SavepointReport {
                        id: id.clone(),
                        status: SavepointState::Completed,
                        path: Some(p.savepoint_path()),
                        checkpoint: None,
                        error: None,
                    }
                };
                p.savepoints.lock().expect("lock").push(entry);
                (
                    axum::http::StatusCode::ACCEPTED,
                    axum::Json(SavepointAccepted { id }),
                )
            }
        };
        let stop = {
            let p = p.clone();
            move |body: Option<axum::Json<StopRequest>>| async move {
                p.record("POST /v1/stop");
                let StopRequest { savepoint } = body.map(|b| b.0).unwrap_or_default();
                if savepoint
                    && p.script
                        .fail_savepoints
                        .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "savepoint failed".to_string(),
                    );
                }
                let outcome = Outcome::Stopped {
                    savepoint: savepoint.then(|| p.savepoint_path()),
                };
                p.end((0, serde_json::to_string(&outcome).expect("encode")));
                let accepted = StopAccepted {
                    stopping: true,
                    savepoint,
                };
                (
                    axum::http::StatusCode::ACCEPTED,
                    serde_json::to_string(&accepted).expect("encode"),
                )
            }
        };
        let guard = {
            let p = p.clone();
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let p = p.clone();
                let token = token.clone();
                async move {
                    let offered = req
                        .headers()
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "));
                    if token.is_none() || offered == token.as_deref() {
                        return next.run(req).await;
                    }
                    p.record(&format!("REFUSED {} {}", req.method(), req.uri().path()));
                    axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::UNAUTHORIZED,
                        "wrong or missing control token",
                    ))
                }
            }
        };
        let app = axum::Router::new()
            .route(routes::JOB, get(job))
            .route(routes::SAVEPOINTS, post(trigger))
            .route(routes::STOP, post(stop))
            .route_layer(axum::middleware::from_fn(guard));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the fake control API");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *p.server.lock().expect("lock") = Some(server.abort_handle());
        let (term_pod, kill_pod) = (p.clone(), p);
        Started {
            exit,
            // SIGTERM: a final checkpoint, then exit 0 without a savepoint.
            term: Box::new(move || {
                let stopped = Outcome::Stopped { savepoint: None };
                term_pod.end((0, serde_json::to_string(&stopped).expect("encode")));
            }),
            kill: Box::new(move || kill_pod.end((137, String::new()))),
        }
    }
}
