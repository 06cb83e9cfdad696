#!/usr/bin/env bash
# RUSTC_WORKSPACE_WRAPPER for tests/run-all.sh: compile a workspace crate with clippy's driver
# (lints and code in one pass) and deny warnings, as `cargo clippy -- -D warnings` does.
# Cargo calls it as `clippy-rustc.sh <path to rustc> <rustc args...>`; clippy-driver knows
# that form. Dependencies never come here (cargo wraps only workspace members).
exec clippy-driver "$@" -D warnings
