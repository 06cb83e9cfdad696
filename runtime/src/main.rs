//! `weir-runtime`: run a job locally (`run`), or check a job file (`validate`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_crds::control::{Outcome, TERMINATION_LOG_ENV};
use weir_runtime::checkpoint::coordinator::{self, Request};
use weir_runtime::job::{RunOptions, StartRequest, start};

#[derive(Parser)]
#[command(
    name = "weir-runtime",
    version,
    about = "Weir's exactly-once stream-processing runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: `text` or `json`.
    #[arg(long, global = true, default_value = "text", env = "WEIR_LOG_FORMAT")]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job until its input ends, or until SIGTERM / Ctrl-C (final checkpoint, then exit 0).
    Run {
        /// Job file (YAML).
        file: String,
        /// Subtasks per operator (overrides the file).
        #[arg(long, short)]
        parallelism: Option<u32>,
        /// Checkpoint storage URI (overrides `checkpoint.storage`).
        #[arg(long)]
        checkpoint_dir: Option<String>,
        /// Restore from this checkpoint or savepoint URI instead of the newest checkpoint.
        #[arg(long, conflicts_with = "start_from")]
        restore_from: Option<String>,
        /// Start a new lineage once, from this checkpoint or savepoint URI or `empty`; later
        /// runs with the same `--start-id` continue that lineage instead (used by the operator).
        #[arg(long, requires = "start_id")]
        start_from: Option<String>,
        /// Id of the `--start-from` request; unique per upgrade.
        #[arg(long, requires = "start_from")]
        start_id: Option<String>,
        /// Start even if the checkpoint holds state of operators the job no longer has.
        #[arg(long)]
        allow_non_restored_state: bool,
        /// Control API address (`none` to disable).
        #[arg(long, default_value = "127.0.0.1:8081", env = "WEIR_CONTROL_ADDR")]
        control_addr: String,
        /// Storage namespace.
        #[arg(long, default_value = "local", env = "WEIR_NAMESPACE")]
        namespace: String,
    },
    /// Check a job file and exit: 0 when valid, 1 with every error otherwise.
    Validate {
        /// Job file (YAML).
        file: String,
    },
}

fn init_logs(format: &str, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(quiet);
    if format == "json" {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One TLS provider for the whole process, installed before any client exists: rustls
    // panics at the first handshake when it cannot tell which provider to use. The workspace
    // links only aws-lc-rs (the S3 client's); `Err` means one is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Validate { file } => {
            init_logs(&cli.log_format, false);
            match weir_runtime::load_plan(&file) {
                Ok(_) => {
                    println!("{file}: valid");
                    Ok(())
                }
                Err(e) => {
                    eprint!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Run {
            file,
            parallelism,
            checkpoint_dir,
            restore_from,
            start_from,
            start_id,
            allow_non_restored_state,
            control_addr,
            namespace,
        } => {
            let start_request = start_id.map(|id| StartRequest {
                id,
                from: start_from.filter(|f| f != "empty"),
            });
            let tty = std::io::stderr().is_terminal();
            init_logs(&cli.log_format, tty);
            let plan = match weir_runtime::load_plan(&file) {
                Ok(p) => p,
                Err(e) => {
                    eprint!("{e}");
                    termination_message(&failed(&e));
                    std::process::exit(1);
                }
            };
            let control_addr: Option<SocketAddr> =
                if control_addr == "none" {
                    None
                } else {
                    Some(control_addr.parse().with_context(|| {
                        format!("--control-addr `{control_addr}` is not host:port")
                    })?)
                };
            let job = start(
                plan,
                RunOptions {
                    namespace,
                    parallelism,
                    checkpoint_dir,
                    restore_from,
                    start: start_request,
                    allow_non_restored_state,
                    control_addr,
                },
            )
            .await
            .inspect_err(|e| termination_message(&failed(e)))?;
            if let Some(a) = job.control_addr {
                tracing::info!(addr = %a, "control API listening");
            }
            let requests = job.requests.clone();
            tokio::spawn(async move {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                let mut signals = 0;
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                    signals += 1;
                    if signals > 1 {
                        eprintln!("\nsecond signal: exiting without a final checkpoint");
                        std::process::exit(130);
                    }
                    eprintln!(
                        "\nstopping: taking a final checkpoint (signal again to exit at once)"
                    );
                    let _ = requests.send(Request::Stop { savepoint: false }).await;
                }
            });
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
