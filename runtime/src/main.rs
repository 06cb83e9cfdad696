//! `weir-runtime`: run a job locally (`run`), or check a job file (`validate`).

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use weir_crds::control::{
    ControlToken, EXCHANGE_TOKEN_ENV, LogFormat, Outcome, PodArgs, RuntimeCli, RuntimeCommand,
    TERMINATION_LOG_ENV, auth,
};
use weir_runtime::checkpoint::coordinator::{self, Request};
use weir_runtime::cluster::Pods;
use weir_runtime::job::{RunOptions, start};

/// jemalloc, not glibc's malloc: the disk backend's block cache is filled by RocksDB's
/// background threads and emptied by the task's, and glibc's per-thread arenas keep what they
/// free. The memory budget is a promise about RSS, so the allocator must give pages back.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logs(format: LogFormat, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a file or a log collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == LogFormat::Json {
        b.json().init();
    } else {
        b.init();
    }
}

/// Writes how the process ended to `$WEIR_TERMINATION_LOG` (in a pod: the container's
/// termination message file), so the operator reads a stop's savepoint path or a failure's
/// reason from the Pod object even after the process is gone.
fn termination_message(outcome: &Outcome) {
    let Ok(path) = std::env::var(TERMINATION_LOG_ENV) else {
        return;
    };
    let written = serde_json::to_string(outcome)
        .map_err(std::io::Error::other)
        .and_then(|text| std::fs::write(&path, text));
    if let Err(e) = written {
        tracing::warn!(path = %path, error = %e, "cannot write the termination message");
    }
}

fn failed(e: &impl ToString) -> Outcome {
    Outcome::Failed {
        error: e.to_string(),
    }
}

/// How a start that did not get going ended: refused when only the user can unblock it (a
/// restart would fail the same way), failed otherwise.
fn start_failed(e: &weir_runtime::error::Error) -> Outcome {
    match e {
        weir_runtime::error::Error::Unreadable(_)
        | weir_runtime::error::Error::Restore(_)
        | weir_runtime::error::Error::Unconfirmed { .. }
        | weir_runtime::error::Error::Incompatible { .. } => Outcome::Refused {
            error: e.to_string(),
        },
        _ => failed(e),
    }
}

/// The plan of `file`, or every error in it on standard error and exit status 1.
fn plan_or_exit(file: &str) -> weir_runtime::plan::Plan {
    weir_runtime::load_plan(file).unwrap_or_else(|e| {
        eprint!("{e}");
        std::process::exit(1);
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = RuntimeCli::parse();
    // One TLS provider for the whole process, installed before any client exists: rustls
    // panics at the first handshake when it cannot tell which provider to use. The workspace
    // links only aws-lc-rs (the S3 client's); `Err` means one is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        RuntimeCommand::Validate { file } => {
            init_logs(cli.log_format, false);
            plan_or_exit(&file);
            println!("{file}: valid");
            Ok(())
        }
        RuntimeCommand::Explain { file, parallelism } => {
            init_logs(cli.log_format, false);
            let plan = plan_or_exit(&file);
            let p = parallelism.unwrap_or(plan.job.parallelism);
            print!("{}", weir_runtime::explain::explain(&plan, p));
            Ok(())
        }
        RuntimeCommand::Run(args) => {
            let tty = std::io::stderr().is_terminal();
            init_logs(cli.log_format, tty);
            let plan = match weir_runtime::load_plan(&args.file) {
                Ok(p) => p,
                Err(e) => {
                    eprint!("{e}");
                    // A job file that does not plan (bad SQL, an unknown column) plans no
                    // better after a restart: refused, so the operator waits for an edit. A
                    // file that cannot be read (a volume not mounted yet) may be there next
                    // time: failed, and retried.
                    let outcome = match e {
                        weir_runtime::error::Error::Job(_) => Outcome::Refused {
                            error: e.to_string(),
                        },
                        _ => failed(&e),
                    };
                    termination_message(&outcome);
                    std::process::exit(1);
                }
            };
            let parallelism = args.job.parallelism.unwrap_or(plan.job.parallelism);
            if args.pods.count > parallelism {
                eprintln!(
                    "--pods {} exceeds the parallelism {parallelism}: every pod runs at least one subtask of each operator",
                    args.pods.count
                );
                std::process::exit(2);
            }
            if args.pods.count > 1 && args.pods.index.is_none() {
                let code = weir_runtime::cluster::launcher::run(args, cli.log_format).await?;
                std::process::exit(code);
            }
            let pods = match pods(&args.pods).await {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    termination_message(&failed(&e));
                    std::process::exit(1);
                }
            };
            // Listen for SIGTERM and SIGINT before starting: a stop that arrives while the
            // job restores or waits for a broker is acted on once it runs, instead of killing
            // the process (the default action) mid-start.
            let (requests_tx, requests_rx) = tokio::sync::oneshot::channel();
            {
                use tokio::signal::unix::{SignalKind, signal};
                if let (Ok(term), Ok(int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    tokio::spawn(stop_on_signals(term, int, requests_rx));
                }
            }
            let job = start(
                plan,
                RunOptions {
                    job: args.job,
                    control_addr: args.control_addr,
                    control_token: control_token()
                        .inspect_err(|e| termination_message(&failed(e)))?,
                    pods,
                },
            )
            .await
            .inspect_err(|e| termination_message(&start_failed(e)))?;
            if let Some(a) = job.control_addr {
                tracing::info!(addr = %a, "control API listening");
                if !a.ip().is_loopback() && std::env::var_os(auth::TOKEN_ENV).is_none() {
                    tracing::warn!(
                        addr = %a,
                        "control API reachable beyond this host without a control token: \
                         anyone who can connect may stop the job (set {})",
                        auth::TOKEN_ENV
                    );
                }
            }
            let _ = requests_tx.send(job.requests.clone());
            if tty {
                let status = job.status.clone();
                let metrics = job.metrics.clone();
                tokio::spawn(async move {
                    let mut last = 0u64;
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let n = metrics.records_out("source");
                        let chk = status
                            .read()
                            .ok()
                            .and_then(|s| s.last_checkpoint.clone())
                            .map_or_else(
                                || "none yet".to_string(),
                                |c| {
                                    format!(
                                        "#{} ({} ms, {} B)",
                                        c.id,
                                        c.duration_ms.unwrap_or(0),
                                        c.size_bytes.unwrap_or(0)
                                    )
                                },
                            );
                        eprint!(
                            "\r\x1b[2K{:>9} records/s | {n} records | last checkpoint {chk}",
                            n - last
                        );
                        last = n;
                    }
                });
            }
            match job.wait().await {
                Ok(coordinator::Outcome::Finished) => {
                    tracing::info!("input exhausted; final checkpoint committed");
                    termination_message(&Outcome::Finished);
                    Ok(())
                }
                Ok(coordinator::Outcome::Stopped { savepoint }) => {
                    termination_message(&Outcome::Stopped {
                        savepoint: savepoint.clone(),
                    });
                    match savepoint {
                        Some(p) => eprintln!("\nstopped with savepoint {p}"),
                        None => {
                            eprintln!("\nstopped after a final checkpoint; run again to resume")
                        }
                    }
                    Ok(())
                }
                Err(e) => {
                    eprintln!("\njob failed: {e}");
                    termination_message(&failed(&e));
                    std::process::exit(1);
                }
            }
        }
    }
}

/// This process's place in a multi-pod job, from `--pod-index`, `--peers` and the token in
/// the environment; `None` for a job that runs whole here.
async fn pods(args: &PodArgs) -> anyhow::Result<Option<Pods>> {
    let Some(index) = args.index else {
        return Ok(None);
    };
    let own = args
        .peers
        .get(index as usize)
        .ok_or_else(|| anyhow::anyhow!("--peers has no entry for --pod-index {index}"))?;
    let listen = match args.exchange_addr {
        Some(a) => a,
        None => tokio::net::lookup_host(own)
            .await
            .map_err(|e| anyhow::anyhow!("cannot resolve this pod's address {own}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{own} resolves to no address"))?,
    };
    let token = std::env::var(EXCHANGE_TOKEN_ENV)
        .map_err(|_| {
            anyhow::anyhow!("{EXCHANGE_TOKEN_ENV} must hold the job's exchange secret: pods of a multi-pod job authenticate each other with it")
        })?
        .trim()
        .to_string();
    Ok(Some(Pods {
        index,
        count: args.count,
        peers: args.peers.clone(),
        listen,
        token,
        incarnation: args.incarnation.clone().unwrap_or_default(),
    }))
}

/// The control token from the environment. Set but blank (a Secret key left empty, a
/// template that rendered nothing) is refused: read as "no token", it would leave the
/// control API open to anyone who can reach it.
fn control_token() -> anyhow::Result<Option<ControlToken>> {
    match std::env::var(auth::TOKEN_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{} is not valid UTF-8", auth::TOKEN_ENV)
        }
        Ok(t) => ControlToken::new(&t).map(Some).ok_or_else(|| {
            anyhow::anyhow!(
                "{} is set but blank; refusing to serve the control API without a token (unset it for a local run)",
                auth::TOKEN_ENV
            )
        }),
    }
}

/// Stop the job on SIGTERM or SIGINT: the first signal asks for a stop with a final checkpoint
/// (at once if the job runs, as soon as it does if it is still starting), the second exits
/// without one.
async fn stop_on_signals(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    mut started: tokio::sync::oneshot::Receiver<tokio::sync::mpsc::Sender<Request>>,
) {
    let mut requests: Option<tokio::sync::mpsc::Sender<Request>> = None;
    let mut asked = false;
    loop {
        tokio::select! {
            r = &mut started, if requests.is_none() => {
                // An error means the job never started: the process is exiting anyway.
                let Ok(tx) = r else { return };
                if asked {
                    let _ = tx.send(Request::Stop { savepoint: false }).await;
                }
                requests = Some(tx);
                continue;
            }
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if asked {
            eprintln!("\nsecond signal: exiting without a final checkpoint");
            std::process::exit(130);
        }
        asked = true;
        match &requests {
            Some(tx) => {
                eprintln!("\nstopping: taking a final checkpoint (signal again to exit at once)");
                let _ = tx.send(Request::Stop { savepoint: false }).await;
            }
            None => eprintln!(
                "\nstopping once the job has started, with a final checkpoint (signal again to exit at once)"
            ),
        }
    }
}
