//! `weir-runtime run --pods N`: the job as N local processes, wired as the operator wires
//! pods. Each pod listens on its own loopback address (127.0.0.1, .2, ...), all share a token
//! made for this start, and the launcher restarts all of them from the newest completed
//! checkpoint when one fails, as the operator does in a cluster.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weir_crds::control::{
    EXCHANGE_TOKEN_ENV, LogFormat, PodArgs, RuntimeArgs, RuntimeCli, RuntimeCommand, Start,
    TERMINATION_LOG_ENV,
};

use crate::error::{Error, Result};

/// Failed incarnations restarted before the launcher gives up.
pub const RESTARTS: u32 = 10;

/// How long pods get to stop by themselves once one of them failed.
const GRACE: Duration = Duration::from_secs(3);

/// Run `args` (whose `pods.count` is above 1 and `pods.index` unset) as local pods until the
/// job ends; returns the exit code for the launcher.
///
/// # Errors
/// The executable cannot be found or a pod cannot be started.
pub async fn run(args: RuntimeArgs, log_format: LogFormat) -> Result<i32> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find this executable: {e}")))?;
    let count = args.pods.count;
    let launch_id = random_hex(6)?;
    // A restart must not go back to a `--restore-from` point: it continues the lineage that
    // start began, exactly as the operator's start requests do.
    let mut args = args;
    if let Some(from) = args.job.restore_from.take() {
        args.job.start = Some(Start {
            id: format!("launch-{launch_id}"),
            from: Some(from),
        });
    }
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate())
                .map_err(|e| Error::internal(format!("cannot listen for SIGTERM: {e}")))?,
            signal(SignalKind::interrupt())
                .map_err(|e| Error::internal(format!("cannot listen for SIGINT: {e}")))?,
        )
    };
    let mut stopping = false;
    let mut restarts = 0;
    loop {
        let incarnation = format!("local-{launch_id}-{restarts}");
        let mut pods = start_pods(&exe, &args, log_format, count, &incarnation).await?;
        eprintln!("started {count} pods ({incarnation})");
        let failed: Option<(u32, ExitStatus)> = loop {
            tokio::select! {
                _ = term.recv() => stopping = signal_pods(&pods, stopping),
                _ = int.recv() => stopping = signal_pods(&pods, stopping),
                (i, status) = first_exit(&mut pods) => {
                    if status.success() && i == 0 {
                        break None;
                    }
                    if !status.success() {
                        break Some((i, status));
                    }
                }
            }
        };
        stop_all(&mut pods).await;
        match failed {
            None => return Ok(0),
            Some((i, status)) => {
                eprintln!("pod {i} failed ({status}); stopped the other pods");
                if stopping || restarts >= RESTARTS {
                    return Ok(status.code().unwrap_or(1).max(1));
                }
                restarts += 1;
                eprintln!(
                    "restarting all {count} pods from the newest checkpoint ({restarts} of {RESTARTS})"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A running pod: its process, or its exit status once it ended.
struct Pod {
    child: Child,
    status: Option<ExitStatus>,
}

async fn start_pods(
    exe: &std::path::Path,
    args: &RuntimeArgs,
    log_format: LogFormat,
    count: u32,
    incarnation: &str,
) -> Result<Vec<Pod>> {
    let token = random_hex(32)?;
    let peers: Vec<String> = (0..count)
        .map(|i| free_address(i).map(|a| a.to_string()))
        .collect::<Result<_>>()?;
    let mut pods = Vec::new();
    for i in 0..count {
        let pod_args = RuntimeArgs {
            control_addr: if i == 0 { args.control_addr } else { None },
            pods: PodArgs {
                count,
                index: Some(i),
                peers: peers.clone(),
                exchange_addr: None,
                incarnation: Some(incarnation.to_string()),
            },
            ..args.clone()
        };
        let cli = RuntimeCli {
            command: RuntimeCommand::Run(pod_args),
            log_format,
        };
        let mut cmd = Command::new(exe);
        cmd.args(cli.to_args())
            .env(EXCHANGE_TOKEN_ENV, &token)
            .env_remove(TERMINATION_LOG_ENV)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches the launcher only, which
            // decides how the pods stop.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::internal(format!("cannot start pod {i}: {e}")))?;
        if let Some(err) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    eprintln!("[pod {i}] {l}");
                }
            });
        }
        pods.push(Pod {
            child,
            status: None,
        });
    }
    Ok(pods)
}

/// The first pod to exit that had not yet.
async fn first_exit(pods: &mut [Pod]) -> (u32, ExitStatus) {
    loop {
        for (i, p) in pods.iter_mut().enumerate() {
            if p.status.is_none()
                && let Ok(Some(s)) = p.child.try_wait()
            {
                p.status = Some(s);
                return (i as u32, s);
            }
        }
        if pods.iter().all(|p| p.status.is_some()) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// First signal: ask pod 0 (the coordinator) to stop with a final checkpoint; the others
/// stop when it tells them. Second: kill every pod.
fn signal_pods(pods: &[Pod], stopping: bool) -> bool {
    let signal = if stopping { Signal::KILL } else { Signal::TERM };
    let targets: &[Pod] = if stopping { pods } else { &pods[..1] };
    for p in targets {
        if let Some(pid) = p.child.id().and_then(|id| Pid::from_raw(id as i32)) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
    if stopping {
        eprintln!("second signal: killing every pod");
    } else {
        eprintln!("stopping: pod 0 takes a final checkpoint (signal again to kill every pod)");
    }
    true
}

/// Give the pods still running [`GRACE`] to stop by themselves (a pod that lost a peer
/// does), then kill them.
async fn stop_all(pods: &mut [Pod]) {
    let deadline = tokio::time::Instant::now() + GRACE;
    for p in pods.iter_mut() {
        if p.status.is_some() {
            continue;
        }
        match tokio::time::timeout_at(deadline, p.child.wait()).await {
            Ok(Ok(s)) => p.status = Some(s),
            _ => {
                let _ = p.child.kill().await;
                p.status = p.child.wait().await.ok();
            }
        }
    }
}

/// A free port on pod `i`'s loopback address 127.0.0.(i+1). The port is released before the
/// pod binds it; another process taking it in between makes that pod fail, and the launcher
/// start again on new ports.
fn free_address(i: u32) -> Result<SocketAddr> {
    let octet = u8::try_from(i + 1)
        .map_err(|_| Error::internal(format!("at most 254 local pods, not {}", i + 1)))?;
    let ip = Ipv4Addr::new(127, 0, 0, octet);
    let l = std::net::TcpListener::bind(SocketAddrV4::new(ip, 0))
        .map_err(|e| Error::internal(format!("cannot bind {ip} for pod {i}: {e}")))?;
    l.local_addr()
        .map_err(|e| Error::internal(format!("no local address for pod {i}: {e}")))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}
