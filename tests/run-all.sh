#!/usr/bin/env bash
# The one test command: installs and starts what the tests need (a local S3 server on
# 127.0.0.1), then runs formatting, lints and every test. Stops the server on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s (%ss)\n' "$1" "$SECONDS"; }

step "local S3 server"
endpoint=$(tests/s3.sh start)
trap 'tests/s3.sh stop' EXIT
export WEIR_S3_ENDPOINT="$endpoint" WEIR_REQUIRE_S3=1
export AWS_ACCESS_KEY_ID=weir-test AWS_SECRET_ACCESS_KEY=weir-test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

step "done"
