//! Plays the kubelet for one namespace of an envtest apiserver: every pod the operator
//! creates is bound to a pretend node and its container started with the pod's arguments
//! and environment (Secret references and the pod's IP resolved, `$(VAR)` expanded), its
//! ConfigMap volume written to a directory. Phases and container states are reported as a
//! kubelet would, including the termination message. A pod being deleted gets SIGTERM and
//! its grace period, then SIGKILL; the pod object goes once the container has exited.
//! `kill9` simulates a crash.
//!
//! Each pod gets a loopback address of its own, `127.B.x.y` (B from the process id, x.y
//! counting up, so pods of parallel tests and of parallel test processes rarely share one),
//! reported as its `podIP`. Its ports are free ports on that address: the control port
//! (reported through the `weir.dev/control-port` annotation) and, in a job of several pods,
//! the exchange port. No cluster DNS runs here, so what it would resolve is rewritten: a
//! `--peers` entry `<hostname>.<subdomain>.<namespace>.svc:7070` becomes the address and
//! exchange port of the pod with that hostname and subdomain (given out when first named,
//! by the pod itself or by a peer started before it), and `WEIR_EXCHANGE_ADDR` and
//! `--exchange-addr` become the pod's own.
//!
//! The container is a real `weir-runtime` process ([`Runner::Process`], the whole-system
//! test) or a scripted control API in the test process ([`Runner::Fake`], the operator's
//! apiserver suite).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
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

/// Where a pod is reachable: its own loopback IP and the port its exchange listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Address {
    ip: Ipv4Addr,
    exchange: u16,
}

/// The address of each pod, by the name cluster DNS would know it by
/// (`<hostname>.<subdomain>.<namespace>.svc`, or the pod's name without a subdomain).
#[derive(Clone, Default)]
struct Addresses(Arc<Mutex<HashMap<String, Address>>>);

impl Addresses {
    /// The address of `host`, given out now if it has none yet.
    fn of(&self, host: &str) -> Result<Address, String> {
        let mut all = self.0.lock().expect("lock");
        if let Some(a) = all.get(host) {
            return Ok(*a);
        }
        let ip = next_ip();
        let a = Address {
            ip,
            exchange: free_port(ip)?,
        };
        all.insert(host.to_string(), a);
        Ok(a)
    }
}

/// A loopback address no other pod of this process got: `127.B.x.y` with B from the process
/// id and x.y counting up (y in 1..=254).
fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let b = 1 + u8::try_from(std::process::id() % 254).unwrap_or(0);
    let x = u8::try_from((n / 254) % 256).unwrap_or(0);
    let y = 1 + u8::try_from(n % 254).unwrap_or(0);
    Ipv4Addr::new(127, b, x, y)
}

/// A port free on `ip` right now (released before the pod binds it, as with the local
/// launcher: another process taking it in between fails that pod, and it is restarted).
fn free_port(ip: Ipv4Addr) -> Result<u16, String> {
    std::net::TcpListener::bind(SocketAddrV4::new(ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on {ip}: {e}"))
}

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
        let task = tokio::spawn(watch(
            client,
            ns.to_string(),
            runner,
            logs,
            pods.clone(),
            Addresses::default(),
        ));
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

async fn watch(
    client: Client,
    ns: String,
    runner: Runner,
    logs: PathBuf,
    pods: Pods,
    addresses: Addresses,
) {
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
        let (client, ns, runner, logs, pods, addresses) = (
            client.clone(),
            ns.clone(),
            runner.clone(),
            logs.clone(),
            pods.clone(),
            addresses.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = run_pod(&client, &ns, &pod, &runner, &logs, &addresses, rx).await {
                eprintln!("kubelet: pod {name}: {e}");
            }
            pods.0.lock().expect("lock").remove(&name);
        });
    }
}

/// The environment of the runtime container: values as given with `$(VAR)` of variables
/// defined before them expanded (as a kubelet does), Secret keys resolved, `status.podIP`
/// the pod's address.
async fn environment(
    client: &Client,
    ns: &str,
    pod: &Pod,
    ip: Ipv4Addr,
) -> Result<Vec<(String, String)>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let container = &pod.spec.as_ref().ok_or("no spec")?.containers[0];
    let mut out: Vec<(String, String)> = Vec::new();
    for e in container.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from) {
            (Some(v), _) => expand(&v, &out),
            (None, Some(from)) => match (from.secret_key_ref, from.field_ref) {
                (Some(r), _) => {
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
                (None, Some(f)) if f.field_path == "status.podIP" => ip.to_string(),
                _ => continue,
            },
            (None, None) => String::new(),
        };
        out.push((e.name, value));
    }
    Ok(out)
}

/// `$(NAME)` in `value` replaced by the value of `NAME` among `defined`; unknown names stay.
fn expand(value: &str, defined: &[(String, String)]) -> String {
    defined.iter().fold(value.to_string(), |v, (name, val)| {
        v.replace(&format!("$({name})"), val)
    })
}

/// The name cluster DNS knows `pod` by: `<hostname>.<subdomain>.<namespace>.svc` for a pod
/// with both (a pod of a job of several pods), else its name.
fn dns_name(pod: &Pod, ns: &str) -> String {
    let spec = pod.spec.as_ref();
    match (
        spec.and_then(|s| s.hostname.as_deref()),
        spec.and_then(|s| s.subdomain.as_deref()),
    ) {
        (Some(h), Some(d)) => format!("{h}.{d}.{ns}.svc"),
        _ => pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// `--peers` entries (`host:port`) with a cluster DNS name rewritten to the address and
/// exchange port that pod has (or will have) here.
fn local_peers(peers: &str, addresses: &Addresses) -> Result<String, String> {
    peers
        .split(',')
        .map(|entry| match entry.rsplit_once(':') {
            Some((host, _)) if host.ends_with(".svc") => {
                let a = addresses.of(host)?;
                Ok(SocketAddrV4::new(a.ip, a.exchange).to_string())
            }
            _ => Ok(entry.to_string()),
        })
        .collect::<Result<Vec<_>, String>>()
        .map(|v| v.join(","))
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
    addresses: &Addresses,
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
    let own = addresses.of(&dns_name(pod, ns))?;
    let ip = own.ip;
    let exchange = SocketAddrV4::new(ip, own.exchange).to_string();
    let mut env = environment(client, ns, pod, ip).await?;
    for (k, v) in &mut env {
        match k.as_str() {
            "WEIR_TERMINATION_LOG" => *v = termination.display().to_string(),
            "WEIR_EXCHANGE_ADDR" => v.clone_from(&exchange),
            _ => {}
        }
    }
    let port = free_port(ip)?;
    let container = &pod.spec.as_ref().ok_or("no spec")?.containers[0];
    let mut args: Vec<String> = Vec::new();
    for a in container.args.clone().unwrap_or_default() {
        let a = match args.last().map(String::as_str) {
            Some("--peers") => local_peers(&a, addresses)?,
            Some("--exchange-addr") => exchange.clone(),
            _ => a.replace("0.0.0.0:8081", &format!("{ip}:{port}")),
        };
        args.push(mounts.iter().fold(a, |a, (mount, local)| {
            a.replace(mount.as_str(), &local.display().to_string())
        }));
    }
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
            let control = SocketAddr::from((ip, port));
            fake.start(&name, control, &args, token).await
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
        json!({"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
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
///
/// Pods started with the same `--incarnation` (the pods of one start of a job of several
/// pods) end together, as the runtime's do once their links break: [`CASCADE`] after one
/// ends, the others end too, with exit 0 and no savepoint when it stopped well (pod 0 tells
/// the others how the job ended), with exit 1 and a failure naming it otherwise.
#[derive(Default)]
pub struct FakeRuntime {
    /// Answer savepoint requests and stops-with-savepoint with a failure.
    pub fail_savepoints: std::sync::atomic::AtomicBool,
    /// Every control call, as `"<pod> <METHOD> <path>"`.
    pub calls: Mutex<Vec<String>>,
    /// Arguments each pod was started with.
    pub started: Mutex<Vec<(String, Vec<String>)>>,
    next: std::sync::atomic::AtomicU64,
    /// The pods of each incarnation of a job of several pods.
    incarnations: Mutex<HashMap<String, Vec<Weak<FakePod>>>>,
}

/// How long the other pods of an incarnation outlive the first to end.
pub const CASCADE: Duration = Duration::from_millis(500);

struct FakePod {
    name: String,
    script: Arc<FakeRuntime>,
    /// `--incarnation`, for a pod of a job of several pods.
    incarnation: Option<String>,
    checkpoint: std::sync::atomic::AtomicU64,
    savepoints: Mutex<Vec<SavepointReport>>,
    exit: Mutex<Option<tokio::sync::oneshot::Sender<Exit>>>,
    server: Mutex<Option<tokio::task::AbortHandle>>,
}

impl FakePod {
    /// The container ends: report `exit`, close the control API once the answer in flight
    /// (to a stop) has gone out, and end the other pods of its incarnation after
    /// [`CASCADE`]. Ending twice does nothing.
    fn end(&self, exit: Exit) {
        let Some(tx) = self.exit.lock().expect("lock").take() else {
            return;
        };
        let well = exit.0 == 0;
        let _ = tx.send(exit);
        if let Some(server) = self.server.lock().expect("lock").take() {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                server.abort();
            });
        }
        let Some(incarnation) = &self.incarnation else {
            return;
        };
        let peers: Vec<Arc<FakePod>> = self
            .script
            .incarnations
            .lock()
            .expect("lock")
            .get(incarnation)
            .into_iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .filter(|p| p.name != self.name)
            .collect();
        let outcome = if well {
            (0, Outcome::Stopped { savepoint: None })
        } else {
            (
                1,
                Outcome::Failed {
                    error: format!("lost pod {}: its link broke", self.name),
                },
            )
        };
        let message = serde_json::to_string(&outcome.1).expect("encode");
        tokio::spawn(async move {
            tokio::time::sleep(CASCADE).await;
            for p in peers {
                p.end((outcome.0, message.clone()));
            }
        });
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
    /// Serves the control API of `pod` on `addr` until the container ends; with `token`
    /// (the pod's `WEIR_CONTROL_TOKEN`), only to callers that send it.
    pub async fn start(
        self: &Arc<Self>,
        pod: &str,
        addr: SocketAddr,
        args: &[String],
        token: Option<String>,
    ) -> Started {
        use axum::routing::{get, post};
        self.started
            .lock()
            .expect("lock")
            .push((pod.to_string(), args.to_vec()));
        let (tx, exit) = tokio::sync::oneshot::channel();
        let incarnation = args
            .iter()
            .position(|a| a == "--incarnation")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let p = Arc::new(FakePod {
            name: pod.to_string(),
            script: self.clone(),
            incarnation: incarnation.clone(),
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
                        written_bytes: Some(100),
                        disk_bytes: Some(300),
                        memory_bytes: Some(20),
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
        if let Some(i) = incarnation {
            self.incarnations
                .lock()
                .expect("lock")
                .entry(i)
                .or_default()
                .push(Arc::downgrade(&p));
        }
        let listener = tokio::net::TcpListener::bind(addr)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What cluster DNS would resolve is rewritten to the addresses given out here: a peer
    /// named before it starts keeps the address it was given, each pod has its own, and an
    /// entry that is not a cluster name is left alone.
    #[test]
    fn peers_resolve_to_the_addresses_their_pods_get() {
        let addresses = Addresses::default();
        let peers = "a-3-0.a-peers.ns.svc:7070,a-3-1.a-peers.ns.svc:7070,10.0.0.9:7070";
        let local = local_peers(peers, &addresses).expect("rewritten");
        let entries: Vec<&str> = local.split(',').collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2], "10.0.0.9:7070");
        let pod_1 = addresses.of("a-3-1.a-peers.ns.svc").expect("address");
        assert_eq!(
            entries[1],
            SocketAddrV4::new(pod_1.ip, pod_1.exchange).to_string()
        );
        assert_ne!(entries[0], entries[1]);
        let first = addresses.of("a-3-0.a-peers.ns.svc").expect("address");
        assert_ne!(first.ip, pod_1.ip, "each pod has its own address");
        assert!(first.ip.is_loopback() && pod_1.ip.is_loopback());
        assert_eq!(local_peers(peers, &addresses).expect("again"), local);
    }

    #[test]
    fn variables_expand_from_those_defined_before() {
        let defined = vec![("POD_IP".to_string(), "127.9.0.1".to_string())];
        assert_eq!(expand("$(POD_IP):7070", &defined), "127.9.0.1:7070");
        assert_eq!(expand("$(OTHER):1", &defined), "$(OTHER):1");
    }
}
