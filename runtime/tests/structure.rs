//! The shape of the code that the checkpoint protocol depends on, held by a test: the
//! protocol lives in `src/checkpoint/` and leans on nothing that carries records, storage
//! paths are formatted in one file, starting a job does not re-implement the restore, and no
//! module of `src/` imports a module that imports it (connectors are mapped from their specs
//! in `src/connectors.rs`, which no connector imports).
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
    let files = code_files(&src().join("job"));
    assert!(!files.is_empty(), "runtime/src/job/ has no code");
    let job: String = files.into_iter().map(|(_, code)| code).collect();
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
            "job/ uses {protocol}: the start-up protocol belongs in checkpoint/startup.rs"
        );
    }
}

/// The top-level modules of `src/` that the non-test code of `module` names (`crate::x`, or
/// `x` inside `use crate::{…}`).
fn imports(files: &[(PathBuf, String)]) -> std::collections::BTreeMap<String, Vec<String>> {
    let root = src();
    let mut graph: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (path, code) in files {
        let rel = path.strip_prefix(&root).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if ["lib", "main"].contains(&module.as_str()) || rel.ends_with("tests.rs") {
            continue;
        }
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        let mut named = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                named.extend(group.split(',').filter_map(|item| {
                    let head = item.trim().split("::").next()?.trim();
                    (!head.is_empty()).then(|| head.to_string())
                }));
            } else {
                let head: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                named.push(head);
            }
        }
        let edges = graph.entry(module.clone()).or_default();
        for n in named {
            if n != module && !edges.contains(&n) {
                edges.push(n);
            }
        }
    }
    graph
}

/// A cycle through `start` in `graph`, as the path of modules, if there is one.
fn cycle_through(
    graph: &std::collections::BTreeMap<String, Vec<String>>,
    start: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = std::collections::BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn runtime_modules_import_each_other_in_no_cycle() {
    let graph = imports(&code_files(&src()));
    assert!(
        graph
            .get("job")
            .is_some_and(|e| e.contains(&"checkpoint".to_string())),
        "the import scan found nothing: {graph:#?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "modules that import their importers (a connector belongs to one module, the \
         spec-to-connector mapping to src/connectors.rs): {cycles:#?}"
    );
}
