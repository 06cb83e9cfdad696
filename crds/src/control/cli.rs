//! `weir-runtime`'s command line. The runtime parses it with [`RuntimeCli`] and the operator
//! writes a pod's arguments with [`RuntimeCli::to_args`], so a renamed or new flag cannot
//! reach one side only; the tests parse what `to_args` writes back into the same value.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;

use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Port of the control API: the runtime's default and the port the operator calls in pods.
pub const CONTROL_PORT: u16 = 8081;

/// Where the control API listens unless told otherwise: loopback, because outside a pod the
/// API should not be reachable from the network by default.
pub const DEFAULT_CONTROL_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, CONTROL_PORT));

/// Storage namespace outside Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "local";

/// Port of the pod-to-pod exchange (Arrow Flight) in pods of a multi-pod job.
pub const EXCHANGE_PORT: u16 = 7070;

/// Environment variable holding the secret that pods of one job present to each other's
/// exchange; a multi-pod job refuses to start without it.
pub const EXCHANGE_TOKEN_ENV: &str = "WEIR_EXCHANGE_TOKEN";

/// The whole command line.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "weir-runtime",
    version,
    about = "Weir's exactly-once stream-processing runtime"
)]
pub struct RuntimeCli {
    /// What to do.
    #[command(subcommand)]
    pub command: RuntimeCommand,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WEIR_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
// Parsed once per process: boxing `Run` would only make every match on it noisier.
#[allow(clippy::large_enum_variant)]
pub enum RuntimeCommand {
    /// Run a job until its input ends, or until SIGTERM / Ctrl-C (final checkpoint, then exit 0).
    Run(RuntimeArgs),
    /// Check a job file and exit: 0 when valid, 1 with every error otherwise.
    Validate {
        /// Job file (YAML).
        file: String,
    },
    /// Print the dataflow a job file plans to (stages, shuffles, state, sinks) and exit.
    Explain {
        /// Job file (YAML).
        file: String,
        /// Subtasks per operator to show; the file's `parallelism` when absent.
        #[arg(long)]
        parallelism: Option<u32>,
    },
}

/// How the runtime logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().map(|v| v.get_name().to_string());
        f.write_str(name.as_deref().unwrap_or_default())
    }
}

/// `run`'s arguments, typed: a start point cannot lack its id, and "empty state" and "no
/// control API" are values, not magic strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeArgs {
    /// Job file (YAML).
    pub file: String,
    /// How this run starts and where its state lives.
    pub job: JobArgs,
    /// Where the control API listens; `None`: no control API.
    pub control_addr: Option<SocketAddr>,
    /// How the job is spread over pods (one pod unless told otherwise).
    pub pods: PodArgs,
}

/// How one run of a job starts and where its state lives: what the command line (or the
/// operator) sets beside the job file, and what the runtime's start-up reads. One list for
/// both, so a flag cannot be parsed and then dropped on its way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobArgs {
    /// Storage namespace (`local` for `weir-runtime run`; the Kubernetes namespace in a
    /// cluster).
    pub namespace: String,
    /// Subtasks per operator (overrides the file).
    pub parallelism: Option<u32>,
    /// Checkpoint storage URI (overrides `checkpoint.storage`).
    pub checkpoint_dir: Option<String>,
    /// Restore from this checkpoint or savepoint URI instead of the newest checkpoint.
    pub restore_from: Option<String>,
    /// Start a new lineage once (the operator's upgrades and stateless resumes).
    pub start: Option<Start>,
    /// Start even if the checkpoint holds state of operators the job no longer has.
    pub allow_non_restored_state: bool,
    /// Operators (state ids) and sources (names) whose restored state may be dropped when it
    /// no longer fits the job: a changed definition, another topic.
    pub drop_state: Vec<String>,
    /// When the newest completed checkpoint cannot be read, restore the newest older one that
    /// can. Off by default: sinks may already have committed the newest one's output, which
    /// an older checkpoint repeats, so this is the user's explicit choice.
    pub skip_unreadable_checkpoints: bool,
}

impl Default for JobArgs {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_string(),
            parallelism: None,
            checkpoint_dir: None,
            restore_from: None,
            start: None,
            allow_non_restored_state: false,
            drop_state: Vec::new(),
            skip_unreadable_checkpoints: false,
        }
    }
}

/// Where this process sits in a multi-pod job. `count` alone (no `index`) asks `run` to
/// launch the pods itself as local processes; with `index`, this process is that pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodArgs {
    /// Pods of the job.
    pub count: u32,
    /// This pod; `None` with `count > 1`: launch `count` local pods.
    pub index: Option<u32>,
    /// Exchange address (`host:port`) of every pod, in pod order.
    pub peers: Vec<String>,
    /// Where this pod's exchange listens; defaults to its own entry in `peers`.
    pub exchange_addr: Option<SocketAddr>,
    /// Names one start of all the pods; pods of another incarnation cannot connect.
    pub incarnation: Option<String>,
}

impl Default for PodArgs {
    fn default() -> Self {
        Self {
            count: 1,
            index: None,
            peers: Vec::new(),
            exchange_addr: None,
            incarnation: None,
        }
    }
}

/// A request to start a new lineage. Unlike `--restore-from` it is safe to repeat: the first
/// run with an id starts the lineage, later runs with the same id continue it, so a pod that
/// dies right after an upgrade does not go back to the upgrade savepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Unique per start (per upgrade or resume).
    pub id: String,
    /// Checkpoint or savepoint URI; `None`: empty state.
    pub from: Option<String>,
}

impl RuntimeArgs {
    /// `run file` with every default.
    #[must_use]
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            job: JobArgs::default(),
            control_addr: Some(DEFAULT_CONTROL_ADDR),
            pods: PodArgs::default(),
        }
    }

    /// `run` and its flags. Every value is written out, defaults included, so the pod's
    /// environment (`WEIR_NAMESPACE`, `WEIR_CONTROL_ADDR`) cannot change what the operator
    /// asked for.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec!["run".to_string(), self.file.clone()];
        let mut flag = |name: &str, value: Option<String>| {
            args.push(format!("--{name}"));
            args.extend(value);
        };
        if let Some(p) = self.job.parallelism {
            flag("parallelism", Some(p.to_string()));
        }
        if let Some(d) = &self.job.checkpoint_dir {
            flag("checkpoint-dir", Some(d.clone()));
        }
        if let Some(r) = &self.job.restore_from {
            flag("restore-from", Some(r.clone()));
        }
        if let Some(s) = &self.job.start {
            match &s.from {
                Some(uri) => flag("start-from", Some(uri.clone())),
                None => flag("start-empty", None),
            }
            flag("start-id", Some(s.id.clone()));
        }
        if self.job.allow_non_restored_state {
            flag("allow-non-restored-state", None);
        }
        if !self.job.drop_state.is_empty() {
            flag("drop-state", Some(self.job.drop_state.join(",")));
        }
        if self.job.skip_unreadable_checkpoints {
            flag("skip-unreadable-checkpoints", None);
        }
        flag(
            "control-addr",
            Some(ControlAddr(self.control_addr).to_string()),
        );
        flag("namespace", Some(self.job.namespace.clone()));
        if self.pods.count != 1 {
            flag("pods", Some(self.pods.count.to_string()));
        }
        if let Some(i) = self.pods.index {
            flag("pod-index", Some(i.to_string()));
        }
        if !self.pods.peers.is_empty() {
            flag("peers", Some(self.pods.peers.join(",")));
        }
        if let Some(a) = self.pods.exchange_addr {
            flag("exchange-addr", Some(a.to_string()));
        }
        if let Some(i) = &self.pods.incarnation {
            flag("incarnation", Some(i.clone()));
        }
        args
    }
}

impl RuntimeCli {
    /// The arguments (after the program name) that parse back into `self`.
    #[must_use]
    pub fn to_args(&self) -> Vec<String> {
        let mut args = match &self.command {
            RuntimeCommand::Run(run) => run.to_args(),
            RuntimeCommand::Validate { file } => vec!["validate".to_string(), file.clone()],
            RuntimeCommand::Explain { file, parallelism } => {
                let mut a = vec!["explain".to_string(), file.clone()];
                if let Some(p) = parallelism {
                    a.extend(["--parallelism".to_string(), p.to_string()]);
                }
                a
            }
        };
        args.extend(["--log-format".to_string(), self.log_format.to_string()]);
        args
    }
}

/// `--control-addr`: `host:port`, or `none` for no control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ControlAddr(Option<SocketAddr>);

/// `--control-addr` that is neither `host:port` nor `none`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not host:port or `none`")]
struct BadControlAddr(String);

impl FromStr for ControlAddr {
    type Err = BadControlAddr;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(Self(None));
        }
        s.parse()
            .map(|a| Self(Some(a)))
            .map_err(|_| BadControlAddr(s.to_string()))
    }
}

impl fmt::Display for ControlAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("none"),
        }
    }
}

/// `run`'s flags as clap sees them. Kept private: the one-of-two start flags and the `none`
/// address only exist on the command line; [`RuntimeArgs`] is what both sides handle.
#[derive(Args)]
struct RunFlags {
    /// Job file (YAML).
    file: String,
    /// Subtasks per operator (overrides the file).
    #[arg(long, short)]
    parallelism: Option<u32>,
    /// Checkpoint storage URI (overrides `checkpoint.storage`).
    #[arg(long)]
    checkpoint_dir: Option<String>,
    /// Restore from this checkpoint or savepoint URI instead of the newest checkpoint.
    #[arg(long, conflicts_with = "start_point")]
    restore_from: Option<String>,
    /// Start a new lineage once, from this checkpoint or savepoint URI; later runs with the
    /// same `--start-id` continue that lineage instead (used by the operator).
    #[arg(long, group = "start_point", requires = "start_id")]
    start_from: Option<String>,
    /// Like `--start-from`, with empty state.
    #[arg(long, group = "start_point", requires = "start_id")]
    start_empty: bool,
    /// Id of the `--start-from` or `--start-empty` request; unique per upgrade.
    #[arg(long, requires = "start_point")]
    start_id: Option<String>,
    /// Start even if the checkpoint holds state of operators the job no longer has.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Operators (state ids, as `explain` lists them) and sources (names) whose restored
    /// state may be dropped when it no longer fits the job (a changed definition, another
    /// topic): they start empty, everything else is restored. Comma-separated.
    #[arg(long, value_delimiter = ',')]
    drop_state: Vec<String>,
    /// When the newest completed checkpoint cannot be read (corrupt or missing files), restore
    /// the newest older one that can. Without it the runtime refuses to start, naming the
    /// checkpoint: sinks may have committed its output already, and an older checkpoint
    /// writes that output again.
    #[arg(long)]
    skip_unreadable_checkpoints: bool,
    /// Control API address (`none` to disable).
    #[arg(long, default_value_t = ControlAddr(Some(DEFAULT_CONTROL_ADDR)), env = "WEIR_CONTROL_ADDR")]
    control_addr: ControlAddr,
    /// Storage namespace.
    #[arg(long, default_value = DEFAULT_NAMESPACE, env = "WEIR_NAMESPACE")]
    namespace: String,
    /// Run the job as this many pods (processes). Without `--pod-index`, `run` starts them
    /// itself on 127.0.0.x and restarts them all from the newest checkpoint when one fails.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pods: u32,
    /// This process is pod INDEX of `--pods` (set by the operator or the local launcher).
    #[arg(long, requires = "peers")]
    pod_index: Option<u32>,
    /// Exchange address (`host:port`) of every pod, comma-separated, in pod order.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Where this pod's exchange listens (default: its own entry in `--peers`).
    #[arg(long, env = "WEIR_EXCHANGE_ADDR")]
    exchange_addr: Option<SocketAddr>,
    /// Names one start of all pods of the job; pods of another incarnation cannot connect.
    #[arg(long)]
    incarnation: Option<String>,
}

impl From<RunFlags> for RuntimeArgs {
    fn from(f: RunFlags) -> Self {
        Self {
            file: f.file,
            job: JobArgs {
                namespace: f.namespace,
                parallelism: f.parallelism,
                checkpoint_dir: f.checkpoint_dir,
                restore_from: f.restore_from,
                // clap has checked that an id comes with exactly one of the two start flags.
                start: f.start_id.map(|id| Start {
                    id,
                    from: f.start_from,
                }),
                allow_non_restored_state: f.allow_non_restored_state,
                drop_state: f.drop_state,
                skip_unreadable_checkpoints: f.skip_unreadable_checkpoints,
            },
            control_addr: f.control_addr.0,
            pods: PodArgs {
                count: f.pods,
                index: f.pod_index,
                peers: f.peers,
                exchange_addr: f.exchange_addr,
                incarnation: f.incarnation,
            },
        }
    }
}

impl From<RuntimeArgs> for RunFlags {
    fn from(a: RuntimeArgs) -> Self {
        let RuntimeArgs {
            file,
            job,
            control_addr,
            pods,
        } = a;
        let (start_id, start_from, start_empty) = match job.start {
            Some(s) => (Some(s.id), s.from.clone(), s.from.is_none()),
            None => (None, None, false),
        };
        Self {
            file,
            parallelism: job.parallelism,
            checkpoint_dir: job.checkpoint_dir,
            restore_from: job.restore_from,
            start_from,
            start_empty,
            start_id,
            allow_non_restored_state: job.allow_non_restored_state,
            drop_state: job.drop_state,
            skip_unreadable_checkpoints: job.skip_unreadable_checkpoints,
            control_addr: ControlAddr(control_addr),
            namespace: job.namespace,
            pods: pods.count,
            pod_index: pods.index,
            peers: pods.peers,
            exchange_addr: pods.exchange_addr,
            incarnation: pods.incarnation,
        }
    }
}

impl FromArgMatches for RuntimeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        RunFlags::from_arg_matches(matches).map(Self::from)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        let mut flags = RunFlags::from(self.clone());
        flags.update_from_arg_matches(matches)?;
        *self = flags.into();
        Ok(())
    }
}

impl Args for RuntimeArgs {
    fn group_id() -> Option<clap::Id> {
        RunFlags::group_id()
    }

    fn augment_args(cmd: clap::Command) -> clap::Command {
        RunFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        RunFlags::augment_args_for_update(cmd)
    }
}
