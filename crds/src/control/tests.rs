#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use clap::Parser;
use serde_json::json;

use super::*;

/// The termination messages the runtime has always written, byte for byte, and back.
#[test]
fn outcomes_are_the_termination_messages() {
    for (outcome, text) in [
        (
            Outcome::Stopped {
                savepoint: Some("s3://b/sp-1".into()),
            },
            r#"{"outcome":"stopped","savepoint":"s3://b/sp-1"}"#,
        ),
        (
            Outcome::Stopped { savepoint: None },
            r#"{"outcome":"stopped","savepoint":null}"#,
        ),
        (Outcome::Finished, r#"{"outcome":"finished"}"#),
        (
            Outcome::Failed {
                error: "boom".into(),
            },
            r#"{"outcome":"failed","error":"boom"}"#,
        ),
    ] {
        assert_eq!(serde_json::to_string(&outcome).unwrap(), text);
        assert_eq!(serde_json::from_str::<Outcome>(text).unwrap(), outcome);
    }
    assert!(serde_json::from_str::<Outcome>(r#"{"outcome":"exploded"}"#).is_err());
    assert!(serde_json::from_str::<Outcome>("panicked at main.rs").is_err());
}

/// The JSON forms the operator and dashboards already read: kebab-case states, the barrier
/// kind with `stop` as an object, camelCase fields, `null` for absent values.
#[test]
fn job_report_keeps_its_json_form() {
    let report = JobReport {
        name: "sales".into(),
        job_id: "abc".into(),
        generation: 2,
        state: JobState::Running,
        parallelism: 2,
        max_parallelism: 128,
        restored_from: None,
        last_checkpoint: Some(CheckpointReport {
            id: 7,
            kind: CheckpointKind::Stop { savepoint: true },
            status: AttemptStatus::InProgress,
            triggered_at_ms: 1_800_000_000_000,
            duration_ms: None,
            size_bytes: Some(4096),
            written_bytes: Some(1024),
            disk_bytes: Some(8192),
            memory_bytes: Some(512),
            alignment_ms: None,
            path: None,
            error: None,
        }),
        checkpoints: vec![],
        savepoints: vec![SavepointReport {
            id: "sp-req-1".into(),
            status: SavepointState::Pending,
            path: None,
            checkpoint: Some(8),
            error: None,
        }],
        sinks: vec![SinkReport {
            id: "out".into(),
            name: "kafka".into(),
            guarantee: Guarantee::AtLeastOnce,
        }],
        watermarks: vec![TaskWatermark {
            task: TaskRef {
                stage: 1,
                subtask: 0,
            },
            watermark: None,
        }],
        records_in: 10,
        source_lag: vec![SourceLag {
            topic: "t".into(),
            partition: 3,
            lag: 5,
        }],
        failure: None,
    };
    let expected = json!({"name": "sales", "jobId": "abc", "generation": 2, "state": "running",
        "parallelism": 2, "maxParallelism": 128, "restoredFrom": null,
        "lastCheckpoint": {"id": 7, "kind": {"stop": {"savepoint": true}},
            "status": "in-progress", "triggeredAtMs": 1_800_000_000_000_i64, "durationMs": null,
            "sizeBytes": 4096, "writtenBytes": 1024, "diskBytes": 8192, "memoryBytes": 512,
            "alignmentMs": null, "path": null,
            "error": null},
        "checkpoints": [],
        "savepoints": [{"id": "sp-req-1", "status": "pending", "path": null, "checkpoint": 8,
            "error": null}],
        "sinks": [{"id": "out", "name": "kafka", "guarantee": "at-least-once"}],
        "watermarks": [{"task": {"stage": 1, "subtask": 0}, "watermark": null}],
        "recordsIn": 10, "sourceLag": [{"topic": "t", "partition": 3, "lag": 5}],
        "failure": null});
    assert_eq!(serde_json::to_value(&report).unwrap(), expected);
    assert_eq!(
        serde_json::from_value::<JobReport>(expected).unwrap(),
        report
    );
    for (kind, text) in [
        (CheckpointKind::Checkpoint, r#""checkpoint""#),
        (CheckpointKind::Savepoint, r#""savepoint""#),
        (CheckpointKind::Final, r#""final""#),
    ] {
        assert_eq!(serde_json::to_string(&kind).unwrap(), text);
    }
    assert_eq!(
        serde_json::to_string(&JobState::Initializing).unwrap(),
        r#""initializing""#
    );
}

#[test]
fn stop_request_body_is_optional_per_field() {
    assert_eq!(
        serde_json::from_str::<StopRequest>("{}").unwrap(),
        StopRequest { savepoint: false }
    );
    assert_eq!(
        serde_json::to_string(&StopRequest { savepoint: true }).unwrap(),
        r#"{"savepoint":true}"#
    );
    assert_eq!(
        serde_json::to_value(StopAccepted {
            stopping: true,
            savepoint: false
        })
        .unwrap(),
        json!({"stopping": true, "savepoint": false})
    );
}

fn parse(args: &[String]) -> Result<RuntimeCli, clap::Error> {
    RuntimeCli::try_parse_from(std::iter::once("weir-runtime".to_string()).chain(args.to_vec()))
}

/// Whatever the operator writes, the runtime reads back as the same value: every flag, and
/// each way to start.
#[test]
fn every_command_line_parses_back_into_itself() {
    let all_flags = RuntimeArgs {
        file: "/etc/weir/job.yaml".into(),
        job: JobArgs {
            namespace: "shop".into(),
            parallelism: Some(3),
            checkpoint_dir: Some("s3://b/w".into()),
            restore_from: None,
            start: Some(Start {
                id: "s-1".into(),
                from: Some("s3://b/sp-1".into()),
            }),
            allow_non_restored_state: true,
            drop_state: vec!["totals/window-0".into(), "orders".into()],
            skip_unreadable_checkpoints: true,
        },
        control_addr: Some("0.0.0.0:8081".parse().unwrap()),
        pods: PodArgs {
            count: 3,
            index: Some(1),
            peers: vec![
                "p-0.w:7070".into(),
                "p-1.w:7070".into(),
                "p-2.w:7070".into(),
            ],
            exchange_addr: Some("10.0.0.7:7070".parse().unwrap()),
            incarnation: Some("shop-3".into()),
        },
    };
    let variants = [
        all_flags.clone(),
        RuntimeArgs {
            job: JobArgs {
                start: Some(Start {
                    id: "s-2".into(),
                    from: None,
                }),
                ..all_flags.job.clone()
            },
            ..all_flags.clone()
        },
        RuntimeArgs {
            job: JobArgs {
                start: None,
                restore_from: Some("file:///tmp/chk-3".into()),
                ..all_flags.job.clone()
            },
            control_addr: None,
            ..all_flags.clone()
        },
        RuntimeArgs::new("job.yaml"),
    ];
    let mut clis: Vec<RuntimeCli> = variants
        .into_iter()
        .map(|run| RuntimeCli {
            command: RuntimeCommand::Run(run),
            log_format: LogFormat::Json,
        })
        .collect();
    clis.push(RuntimeCli {
        command: RuntimeCommand::Validate {
            file: "job.yaml".into(),
        },
        log_format: LogFormat::Text,
    });
    for cli in clis {
        let args = cli.to_args();
        assert_eq!(parse(&args).unwrap(), cli, "{args:?}");
    }
}

#[test]
fn start_flags_are_written_as_the_runtime_documents_them() {
    let mut run = RuntimeArgs::new("job.yaml");
    run.job.start = Some(Start {
        id: "s-1".into(),
        from: None,
    });
    let cli = RuntimeCli {
        command: RuntimeCommand::Run(run),
        log_format: LogFormat::Json,
    };
    let args = cli.to_args();
    let joined = args.join(" ");
    assert!(joined.contains("--start-empty --start-id s-1"), "{joined}");
    assert!(!args.iter().any(|a| a == "empty"), "no sentinel: {joined}");
    assert!(joined.contains("--log-format json"), "{joined}");
}

/// A start point is a pair: an id alone, a source alone, both sources, or a start combined
/// with `--restore-from` is refused before anything runs.
#[test]
fn incomplete_or_conflicting_starts_are_refused() {
    let args = |extra: &[&str]| -> Vec<String> {
        ["run", "job.yaml"]
            .iter()
            .chain(extra)
            .map(ToString::to_string)
            .collect()
    };
    for bad in [
        &["--start-id", "s"][..],
        &["--start-from", "s3://b/sp"],
        &["--start-empty"],
        &[
            "--start-empty",
            "--start-from",
            "s3://b/sp",
            "--start-id",
            "s",
        ],
        &[
            "--restore-from",
            "s3://b/c",
            "--start-empty",
            "--start-id",
            "s",
        ],
        &["--control-addr", "localhost"],
        &["--log-format", "yaml"],
    ] {
        assert!(parse(&args(bad)).is_err(), "{bad:?} was accepted");
    }
    let RuntimeCommand::Run(run) = parse(&args(&["--control-addr", "none"])).unwrap().command
    else {
        panic!("not run")
    };
    assert_eq!(run.control_addr, None);
}

#[test]
fn the_clap_definition_is_consistent() {
    use clap::CommandFactory;
    RuntimeCli::command().debug_assert();
}
