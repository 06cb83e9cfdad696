#!/usr/bin/env bash
# The one test command: checks formatting and compiles every target with the lints denied
# (while the local Kafka broker compiles beside it), installs and starts what the tests need
# on 127.0.0.1 (a local S3 server, the Azure Blob Storage emulator, a Kafka-protocol broker and
# a second one requiring SASL, a throwaway CA, ClickHouse with ZooKeeper, PostgreSQL, MariaDB), the chart tools (helm, kubernetes-validate) and headless Chromium for the console's browser test,
# checks the chart, runs every test, and builds and smoke-tests the two images
# (docker/images.sh). Stops the servers on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s (%ss)\n' "$1" "$SECONDS"; }

# Set before the first start, so a server that did start is stopped when a later one fails.
nisshi_pid=
trap 'if [ -n "$nisshi_pid" ]; then kill "$nisshi_pid" 2>/dev/null || true; fi; tests/mysql.sh stop || true; tests/postgres.sh stop || true; tests/clickhouse.sh stop || true; tests/azurite.sh stop || true; tests/kafka-sasl.sh stop || true; tests/kafka.sh stop || true; tests/s3.sh stop || true' EXIT

# The broker is compiled from source on a cold machine (~20 min). It compiles beside the
# workspace: one cargo build leaves a core idle much of the time (a big crate, a link).
cache="${WEIR_CACHE:-$HOME/.cache/weir}"
mkdir -p "$cache"
step "nisshi (the local Kafka broker): install in the background, log in $cache/nisshi-install.log"
tests/kafka.sh install >"$cache/nisshi-install.log" 2>&1 &
nisshi_pid=$!

# RocksDB's Rust bindings (the disk state backend, crate weir-state) are generated at build
# time by bindgen, which loads libclang; clang++ compiles RocksDB itself (.cargo/config.toml).
step "libclang for bindgen and clang++ for RocksDB (Debian's libclang-dev, clang)"
# libclang itself (libclang-N.so), not libclang-cpp, which other packages bring along and
# bindgen cannot use: a machine with only libclang-cpp14 skipped the install and failed the
# build 30 minutes in.
if { ! compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null && ! compgen -G "/usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*" >/dev/null; } \
  || ! command -v clang++ >/dev/null; then
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev clang; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev clang
  fi
fi

# CI (.ci/run) links RocksDB from a library it compiles in four pieces, not 343, once per
# cache: about 2.5 CPU minutes instead of 24. The variables are those `librocksdb-sys`'s build
# script reads; set in one target directory and not in another, never both in one (each change
# would make that script compile RocksDB again).
if [ "${WEIR_ROCKSDB_UNITY:-}" = 1 ]; then
  step "RocksDB in four translation units (tests/rocksdb.sh), linked instead of compiled by librocksdb-sys"
  ROCKSDB_LIB_DIR=$(tests/rocksdb.sh lib)
  export ROCKSDB_LIB_DIR ROCKSDB_STATIC=1
fi

# The console's browser test drives Debian's headless Chromium through chromedriver; the
# packages (~20 s) install in the background while the workspace compiles.
step "chromium + chromedriver for the console's browser test: install in the background, log in $cache/chromium-install.log"
chromium_pid=
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  ( DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver \
    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; } ) \
    >"$cache/chromium-install.log" 2>&1 &
  chromium_pid=$!
fi

step "cargo fmt --check"
cargo fmt --all -- --check

# One build for lints and tests: clippy's driver compiles the workspace's own crates (every
# target, as `cargo clippy --workspace --all-targets -- -D warnings` would lint them) and
# emits their code too, so the dependencies are compiled once instead of once for `cargo
# clippy` (check mode) and again for the tests. A lint fails the build with the same message.
export RUSTC_WORKSPACE_WRAPPER="$PWD/tests/clippy-rustc.sh"
step "compile every target: cargo clippy -D warnings + cargo test --no-run (one build: clippy-driver compiles the workspace)"
cargo test --workspace --all-targets --locked --no-run --timings
tests/build-timings.sh 25

step "wait for the broker's install"
if ! wait "$nisshi_pid"; then
  nisshi_pid=
  echo "nisshi install failed:" >&2; tail -n 40 "$cache/nisshi-install.log" >&2; exit 1
fi
nisshi_pid=
if [ -n "$chromium_pid" ] && ! wait "$chromium_pid"; then
  echo "chromium install failed:" >&2; tail -n 40 "$cache/chromium-install.log" >&2; exit 1
fi
export WEIR_REQUIRE_BROWSER=1

step "local S3 server"
endpoint=$(tests/s3.sh start)
export WEIR_S3_ENDPOINT="$endpoint" WEIR_REQUIRE_S3=1
export AWS_ACCESS_KEY_ID=weir-test AWS_SECRET_ACCESS_KEY=weir-test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

step "local Azure Blob Storage (Azurite)"
tests/azurite.sh start >/dev/null
tests/azurite.sh container weir
eval "$(tests/azurite.sh env)"
export WEIR_AZURE_CONTAINER=weir WEIR_REQUIRE_AZURITE=1

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

step "local PostgreSQL (TLS, password authentication, max_prepared_transactions)"
tests/postgres.sh start >/dev/null
eval "$(tests/postgres.sh env)"
export WEIR_POSTGRES_URL WEIR_POSTGRES_PASSWORD WEIR_REQUIRE_POSTGRES=1

step "local MariaDB (TLS, password authentication, XA)"
tests/mysql.sh start >/dev/null
eval "$(tests/mysql.sh env)"
export WEIR_MYSQL_URL WEIR_MYSQL_PASSWORD WEIR_REQUIRE_MYSQL=1

step "Helm chart: lint --strict, render, validate offline"
helm_bin=$(tests/chart.sh check)
export WEIR_HELM="$helm_bin" WEIR_REQUIRE_HELM=1

step "cargo test"
if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  echo "SKIPPED the four apiserver suites (operator/tests/apiserver.rs, operator/tests/newcomer.rs, runtime/tests/whole_system.rs, runtime/tests/operator_console.rs): KUBEBUILDER_ASSETS is not set (no kube-apiserver here)"
fi
if [ -z "${WEIR_SCHEMA_REGISTRY_URL:-}" ]; then
  echo "SKIPPED the schema registry suite (runtime/tests/schema_registry.rs): WEIR_SCHEMA_REGISTRY_URL is not set (no Confluent-compatible registry installs from this project's package registries; see DEVELOPERS.md)"
fi
# Two lanes. The suites spend much of their time waiting (on a killed process's restart, a
# checkpoint interval, a server), which left the two cores about half idle, so the three
# longest fault-injection suites run beside the rest: `cargo test` runs one test binary at a
# time. Both lanes together are every target `--all-targets` names; the lane beside prints
# its output when both are done, and either failing fails the run.
beside=(connectors_fault_injection disk_state pods)
beside_args=() rest_args=()
for t in "${beside[@]}"; do beside_args+=(--test "$t"); done
mapfile -t suites < <(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
print("\n".join(sorted({t["name"] for p in json.load(sys.stdin)["packages"]
                        for t in p["targets"] if "test" in t["kind"]})))')
for t in "${beside[@]}"; do
  [[ " ${suites[*]} " == *" $t "* ]] || { echo "run-all.sh: no test suite named $t" >&2; exit 1; }
done
for t in "${suites[@]}"; do
  [[ " ${beside[*]} " == *" $t "* ]] || rest_args+=(--test "$t")
done
# A fault-injection test whose kills came after its input ended starts again from nothing
# (`until_every_kill_lands` in runtime/tests/common); each such attempt is listed at the end.
export WEIR_TEST_RETRIES="$cache/test-retries.log"
: >"$WEIR_TEST_RETRIES"
cargo test --workspace --locked "${beside_args[@]}" >"$cache/tests-beside.log" 2>&1 &
beside_pid=$!
rest_status=0
cargo test --workspace --locked --lib --bins --benches --examples "${rest_args[@]}" || rest_status=$?
beside_status=0
wait "$beside_pid" || beside_status=$?
step "the suites run beside the others: ${beside[*]}"
cat "$cache/tests-beside.log"
# Listed before a failure ends the run too: retries matter most when a run fails.
if [ -s "$WEIR_TEST_RETRIES" ]; then
  echo "tests that needed another attempt ($(wc -l <"$WEIR_TEST_RETRIES")):"
  cat "$WEIR_TEST_RETRIES"
else
  echo "no fault-injection test needed another attempt"
fi
if [ "$rest_status" -ne 0 ] || [ "$beside_status" -ne 0 ]; then
  echo "cargo test failed (the other suites: exit $rest_status; ${beside[*]}: exit $beside_status)" >&2
  exit 1
fi
cargo test --workspace --doc --locked

# CI checks that the images build, hold what they should (no fault hooks) and start; it
# builds them in the dev profile, whose dependencies are those the tests compiled. A release
# build compiles every dependency again at opt-level 3, the largest step of a cold run after
# the tests' build. `make images` (what ships) stays release; WEIR_IMAGE_PROFILE=release here
# checks that build too.
export WEIR_IMAGE_PROFILE="${WEIR_IMAGE_PROFILE:-dev}"
# `ci-image` asks for the features the tests' build resolved for shared dependencies (through
# dev-dependencies), so only Weir's own crates compile again (without the fault hooks).
export WEIR_IMAGE_FEATURES="${WEIR_IMAGE_FEATURES-ci-image}"
step "images: build with buildah (profile $WEIR_IMAGE_PROFILE), then run each from its root filesystem"
docker/images.sh build
docker/images.sh smoke

step "done"
