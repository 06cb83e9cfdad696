//! `weir-operator`: parse flags, set up logs, serve health and metrics, take the lease when
//! asked to, then run the controller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use weir_operator::context::Context;
use weir_operator::decide::Settings;
use weir_operator::dispose::StorageSavepoints;
use weir_operator::leader::{self, LeaseConfig};
use weir_operator::metrics::Metrics;
use weir_operator::network_policy::PolicySettings;
use weir_operator::runtime_client::HttpRuntime;

#[derive(Parser)]
#[command(
    name = "weir-operator",
    version,
    about = "Runs Weir StreamJobs on Kubernetes"
)]
struct Args {
    /// Runtime image for StreamJobs that do not name one.
    #[arg(long, env = "WEIR_RUNTIME_IMAGE", default_value = "weir-runtime:0.1.0")]
    runtime_image: String,
    /// Namespaces to watch, comma-separated; all when empty.
    #[arg(
        long,
        env = "WEIR_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    watch_namespaces: Vec<String>,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Reconcile only while holding the Lease (for more than one replica).
    #[arg(long, env = "WEIR_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, env = "WEIR_LEASE_NAME", default_value = "weir-operator")]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "weir-operator")]
    identity: String,
    /// S3 endpoint for jobs whose `checkpoint.s3.endpoint` is unset (AWS when empty).
    #[arg(long, env = "WEIR_DEFAULT_S3_ENDPOINT")]
    default_s3_endpoint: Option<String>,
    /// S3 region for jobs whose `checkpoint.s3.region` is unset.
    #[arg(long, env = "WEIR_DEFAULT_S3_REGION")]
    default_s3_region: Option<String>,
    /// Path-style S3 addressing for jobs whose `checkpoint.s3.pathStyle` is unset.
    #[arg(long, env = "WEIR_DEFAULT_S3_PATH_STYLE")]
    default_s3_path_style: Option<bool>,
    /// Secret (in each job's namespace) with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// for jobs whose `checkpoint.s3.credentialsSecret` is unset.
    #[arg(long, env = "WEIR_DEFAULT_S3_CREDENTIALS_SECRET")]
    default_s3_credentials_secret: Option<String>,
    /// Give every job a NetworkPolicy admitting only the operator's pods (selected by these
    /// labels, a JSON object, in the operator's namespace) and `--network-policy-metrics-from`
    /// to its control port, and only the job's own pods to its exchange port. Unset: no
    /// policy is written.
    #[arg(long, env = "WEIR_NETWORK_POLICY_OPERATOR_LABELS")]
    network_policy_operator_labels: Option<String>,
    /// More peers admitted to the control port (`/metrics`), a JSON list of
    /// NetworkPolicyPeers, e.g. Prometheus.
    #[arg(long, env = "WEIR_NETWORK_POLICY_METRICS_FROM", default_value = "")]
    network_policy_metrics_from: String,
    /// Address of the web console (`/console/`): the watched jobs, a page per job, and
    /// savepoint/suspend/resume/restart for people whose Kubernetes token may patch the job.
    /// Off when unset.
    #[arg(long, env = "WEIR_CONSOLE_ADDR")]
    console_addr: Option<SocketAddr>,
    /// Log format: `json` (one object per line, with the job's namespace and name) or `text`.
    #[arg(long, env = "WEIR_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    weir_operator::tls::install_crypto_provider();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: a file or a log collector gets plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if args.log_format == "json" {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        namespaces = ?args.watch_namespaces,
        "weir-operator starting"
    );
    let namespaces: Vec<String> = args
        .watch_namespaces
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    // Before anything listens: a bad policy flag must stop the start, not open the ports.
    let network_policy = args
        .network_policy_operator_labels
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .map(|labels| {
            PolicySettings::from_flags(
                args.lease_namespace.clone(),
                labels,
                &args.network_policy_metrics_from,
            )
        })
        .transpose()?;

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    serve(args.http_addr, metrics.clone(), ready.clone()).await?;

    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    weir_operator::controller::check_crd(&client, &namespaces)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut ctx = Context::new(
        client.clone(),
        Arc::new(HttpRuntime::new()?),
        Arc::new(StorageSavepoints),
        metrics,
        Settings {
            default_image: args.runtime_image,
            s3_defaults: weir_crds::JobS3Spec {
                endpoint: args.default_s3_endpoint.filter(|s| !s.is_empty()),
                region: args.default_s3_region.filter(|s| !s.is_empty()),
                path_style: args.default_s3_path_style,
                credentials_secret: args.default_s3_credentials_secret.filter(|s| !s.is_empty()),
                ca_pem_env: None,
            },
        },
    );
    if let Some(policy) = network_policy {
        ctx = ctx.with_network_policy(policy);
    }
    let ctx = Arc::new(ctx);
    if let Some(addr) = args.console_addr {
        let console = weir_operator::console::Console::new(ctx.clone(), &namespaces)?;
        weir_operator::console::serve(addr, console)
            .await
            .with_context(|| format!("cannot bind the console's address {addr}"))?;
    }
    ready.store(true, Ordering::Relaxed);
    if args.leader_election {
        let cfg = LeaseConfig {
            namespace: args.lease_namespace,
            name: args.lease_name,
            identity: args.identity,
        };
        leader::acquire(&client, &cfg).await;
        tokio::select! {
            () = weir_operator::controller::run(ctx, namespaces) => {}
            () = leader::hold(&client, &cfg) => {
                anyhow::bail!("lost the leader lease; exiting so that only one replica reconciles");
            }
        }
    } else {
        weir_operator::controller::run(ctx, namespaces).await;
    }
    Ok(())
}

async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            weir_operator::metrics::CONTENT_TYPE,
                        )],
                        m.encode(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    tracing::info!(%addr, "serving /healthz, /readyz, /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    /// The chart passes these exact spellings; a renamed flag must fail here, not in a cluster.
    #[test]
    fn the_charts_flags_parse() {
        let a = Args::try_parse_from([
            "weir-operator",
            "--http-addr=0.0.0.0:8080",
            "--runtime-image=weir-runtime:0.1.0",
            "--log-format=json",
            "--watch-namespaces=shop,analytics",
            "--leader-election",
            "--lease-name=weir-operator",
            "--default-s3-path-style=false",
            "--default-s3-endpoint=http://minio:9000",
            "--console-addr=0.0.0.0:8090",
        ])
        .unwrap();
        assert_eq!(a.watch_namespaces, vec!["shop", "analytics"]);
        assert!(a.leader_election);
        assert_eq!(a.default_s3_path_style, Some(false));
        assert_eq!(a.http_addr.port(), 8080);
        assert_eq!(a.console_addr.map(|a| a.port()), Some(8090));
    }
}
