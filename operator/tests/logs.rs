//! The operator's logs as a file or a log collector receives them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::{Command, Stdio};

/// `--log-format text` into a file (not a terminal) is plain text: no ANSI colour codes.
/// Without a Kubernetes configuration the operator stops after its first lines.
#[test]
fn text_logs_into_a_file_carry_no_colour_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-operator"))
        .args(["--log-format", "text", "--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/weir-kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("WEIR_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("weir-operator starting"),
        "no start line in: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences in a file: {text:?}"
    );
    assert!(
        !out.status.success(),
        "it ran without a Kubernetes configuration"
    );
}
