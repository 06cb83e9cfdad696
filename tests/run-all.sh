#!/usr/bin/env bash
# The one test command: installs and starts what the tests need on 127.0.0.1 (a local S3
# server, a Kafka-protocol broker and a second one requiring SASL, a throwaway CA, ClickHouse
# with ZooKeeper) and the chart tools (helm,
# kubernetes-validate), checks the chart, then runs formatting, lints and every test, and
# builds and smoke-tests the two images (docker/images.sh). Stops the three servers on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s (%ss)\n' "$1" "$SECONDS"; }

# Set before the first start, so a server that did start is stopped when a later one fails.
trap 'tests/clickhouse.sh stop || true; tests/kafka-sasl.sh stop || true; tests/kafka.sh stop || true; tests/s3.sh stop || true' EXIT

step "local S3 server"
endpoint=$(tests/s3.sh start)
export WEIR_S3_ENDPOINT="$endpoint" WEIR_REQUIRE_S3=1
export AWS_ACCESS_KEY_ID=weir-test AWS_SECRET_ACCESS_KEY=weir-test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

step "local Kafka broker (nisshi)"
bootstrap=$(tests/kafka.sh start)
export WEIR_KAFKA_BOOTSTRAP="$bootstrap" WEIR_REQUIRE_KAFKA=1

step "a second broker requiring SASL (SCRAM), and a throwaway CA for TLS"
export WEIR_TLS_DIR; WEIR_TLS_DIR=$(tests/tls.sh dir)
export WEIR_KAFKA_SASL_BROKER; WEIR_KAFKA_SASL_BROKER=$(tests/kafka-sasl.sh start)

step "local ClickHouse + ZooKeeper"
clickhouse_url=$(tests/clickhouse.sh start)
export WEIR_CLICKHOUSE_URL="$clickhouse_url" WEIR_REQUIRE_CLICKHOUSE=1
export WEIR_CLICKHOUSE_HTTPS_URL=https://localhost:9402

step "Helm chart: lint --strict, render, validate offline"
helm_bin=$(tests/chart.sh check)
export WEIR_HELM="$helm_bin" WEIR_REQUIRE_HELM=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  echo "SKIPPED the three apiserver suites (operator/tests/apiserver.rs, operator/tests/newcomer.rs, runtime/tests/whole_system.rs): KUBEBUILDER_ASSETS is not set (no kube-apiserver here)"
fi
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

step "images: build with buildah (profile ${WEIR_IMAGE_PROFILE:-release}), then run each from its root filesystem"
docker/images.sh build
docker/images.sh smoke

step "done"
