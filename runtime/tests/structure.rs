//! The shape of the code that the checkpoint protocol depends on, held by a test: the
//! protocol lives in `src/checkpoint/` and leans on nothing that carries records, storage
//! paths are formatted in one file, and starting a job does not re-implement the restore.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, with its text minus comment lines.
fn code_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(code_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.push((path, code.join("\n")));
        }
    }
    out.sort();
    out
}

#[test]
fn the_checkpoint_protocol_depends_on_no_task_source_operator_sink_or_control_code() {
    let mut bad = Vec::new();
    for (path, code) in code_files(&src().join("checkpoint")) {
        for module in ["task", "control", "operator", "source", "sink"] {
            if code.contains(&format!("crate::{module}")) {
                bad.push(format!("{} uses crate::{module}", path.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn only_layout_formats_storage_paths() {
    // The names a storage path is made of; only layout.rs may spell them.
    let fragments = [
        "\"_metadata",
        "chk-",
        "sp-{",
        "/_generations",
        "/_probe",
        "\"_sinks_committed",
        ".state\"",
    ];
    let layout = src().join("checkpoint").join("layout.rs");
    let mut bad = Vec::new();
    for (path, code) in code_files(&src()) {
        if path == layout {
            continue;
        }
        // Test modules may name files they expect to find.
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        for f in fragments {
            if code.contains(f) {
                bad.push(format!("{} spells {f}", path.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "storage paths formatted outside layout.rs: {bad:#?}"
    );
}

#[test]
fn starting_a_job_leaves_the_restore_protocol_to_the_checkpoint_module() {
    let job = std::fs::read_to_string(src().join("job.rs")).unwrap();
    for protocol in [
        "fencing::",
        "restore::from_uri",
        "restore::newest",
        "restore::list",
        "claim(",
        "sinks_committed(",
    ] {
        assert!(
            !job.contains(protocol),
            "job.rs uses {protocol}: the start-up protocol belongs in checkpoint/startup.rs"
        );
    }
}
