#!/usr/bin/env bash
# Local Kafka-protocol broker for tests: nisshi (a Kafka-compatible broker written in Rust),
# installed once with `cargo install` into the cache outside the clone, bound to 127.0.0.1.
#
#   tests/kafka.sh start     install when missing, start, wait until it answers an ApiVersions
#                            request; prints the bootstrap address (host:port)
#   tests/kafka.sh install   only install (tests/run-all.sh does it while the workspace compiles)
#   tests/kafka.sh stop      stop the broker by PID and wait for it to exit
#   tests/kafka.sh restart   stop + start on the same port and storage (for fault tests)
#   tests/kafka.sh status    exit 0 when the broker runs and answers (prints PID and storage)
#   tests/kafka.sh env       print `export WEIR_KAFKA_BOOTSTRAP=...` for a running broker
#   tests/kafka.sh topic NAME [PARTITIONS]
#                            create topic NAME (default 3 partitions) on the running broker;
#                            a topic that exists already is left as it is
#
# Storage (WEIR_KAFKA_STORAGE; when it is unset, `restart` reuses what the broker ran with):
#   memory (default)  in-memory; everything is lost when the broker stops or restarts
#   sqlite            $STATE/kafka/kafka.db (kept until deleted by hand); topics, records,
#                     committed and aborted transactions and committed group offsets survive
#                     a restart or kill -9. But with this engine read_committed consumers also
#                     see records of still-open transactions: use it only for tests that
#                     restart the broker.
# Both engines (nisshi 0.7.0-pre.2) let read_committed consumers see aborted records when
# two transactions interleave on one partition, and a new producer's InitProducerId makes a
# fenced producer's open transaction visible instead of aborting it. See DEVELOPERS.md.
#   any URL           passed to --storage-engine as is (relative sqlite:// paths resolve
#                     against $STATE/kafka)
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
STATE="${WEIR_STACK_DIR:-$CACHE/stack}"
TOOLS="$CACHE/tools"
BIN="$TOOLS/bin/nisshi"
NISSHI_VERSION="0.7.0-pre.2"
# How it is built. Its 448 crates at the release default (opt-level 3) were the largest item
# of a cold run after the workspace's own build, beside which it compiles. An opt-level 1
# build of all of it was tried once, and its sqlite storage read a backlog so slowly after a
# restart that fetches timed out for minutes. So the broker's own crates and SQLite (the C
# library and its bindings: the storage a restart reads back) stay at opt-level 3, and the
# rest (the runtime, TLS, HTTP, the command line, telemetry, the scripting engine) at 1.
OPTIMISED=(nisshi nisshi-broker nisshi-storage nisshi-sans-io nisshi-service nisshi-model
  nisshi-schema nisshi-topic libsql libsql-ffi libsql-sys)
PROFILE=(--config 'profile.release.opt-level=1')
for p in "${OPTIMISED[@]}"; do PROFILE+=(--config "profile.release.package.$p.opt-level=3"); done
# What the cached binary was built as: a cache holding another build is rebuilt.
BUILD_STAMP="nisshi $NISSHI_VERSION features=libsql,dynostore opt-level=1 except ${OPTIMISED[*]} at 3"
PORT="${WEIR_KAFKA_PORT:-9392}"
ADDR="127.0.0.1:$PORT"
# A second broker (tests/kafka-sasl.sh) runs under another name, may advertise another
# address (a TLS proxy in front of it) and may require SASL authentication.
NAME="${WEIR_KAFKA_NAME:-kafka}"
ADVERTISED="${WEIR_KAFKA_ADVERTISED:-$ADDR}"
DIR="$STATE/$NAME"
PIDFILE="$STATE/$NAME.pid"
STORAGEFILE="$STATE/$NAME.storage"
LOG="$STATE/$NAME.log"
mkdir -p "$STATE"

installed() { [ -x "$BIN" ] && [ "$(cat "$TOOLS/nisshi.build" 2>/dev/null)" = "$BUILD_STAMP" ]; }

install() { once_locked "$CACHE/nisshi-install.lock" installed build; }

build() {
  # Wait for an install started by hand (the same command) rather than compiling a second
  # copy into the same target dir.
  local waited=0
  while pgrep -f "cargo install nisshi" >/dev/null; do
    if [ "$waited" -eq 0 ]; then echo "kafka: waiting for a running 'cargo install nisshi' to finish" >&2; fi
    waited=$((waited + 1))
    sleep 5
  done
  if installed; then return; fi
  echo "kafka: installing nisshi $NISSHI_VERSION into $TOOLS (takes ~20 min the first time)" >&2
  cargo install nisshi --version "$NISSHI_VERSION" --locked --features libsql,dynostore \
    "${PROFILE[@]}" --force --root "$TOOLS" --target-dir "$CACHE/nisshi-build" >&2
  echo "$BUILD_STAMP" >"$TOOLS/nisshi.build"
}

running() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "nisshi broker"
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; }

# A real Kafka round trip: ApiVersions v0 (api key 18, correlation id 42, client id "weir").
# The reply must start with size(4) correlation_id(4)=42 error_code(2)=0.
api_versions_ok() {
  local reply
  reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT \
    && printf '\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x04weir' >&3 \
    && head -c 10 <&3" 2>/dev/null | od -An -tx1 | tr -d ' \n') || return 1
  [ "${reply:8:12}" = "0000002a0000" ]
}

storage_url() {
  case "${WEIR_KAFKA_STORAGE:-memory}" in
    memory) echo "memory://weir/" ;;
    sqlite) echo "sqlite://kafka.db" ;; # relative to the working directory, $DIR
    *://*) echo "$WEIR_KAFKA_STORAGE" ;;
    *) echo "kafka: WEIR_KAFKA_STORAGE must be memory, sqlite or a storage URL" >&2; exit 2 ;;
  esac
}

fail() {
  echo "kafka: $1" >&2
  if [ -s "$LOG" ]; then echo "--- last lines of $LOG:" >&2; tail -n 40 "$LOG" >&2; fi
  exit 1
}

start() { # start STORAGE_URL: the log is kept across restarts and truncated by `start`
  install
  local storage="$1"
  if running; then
    if [ "$(cat "$STORAGEFILE" 2>/dev/null)" != "$storage" ]; then
      echo "kafka: already running with storage $(cat "$STORAGEFILE" 2>/dev/null), not $storage; restart it to change" >&2
    fi
    echo "$ADDR"
    return
  fi
  if port_open; then fail "port $ADDR is already in use by another process"; fi
  mkdir -p "$DIR"
  echo "$storage" >"$STORAGEFILE"
  echo "=== $(date -u +%FT%TZ) starting nisshi broker on $ADDR, storage $storage" >>"$LOG"
  # nisshi also reads its flags from these variables (and a .env file): clear the ones a
  # developer's shell might carry so the broker only sees what we pass. Its log level is
  # RUST_LOG, which the tests' own RUST_LOG must not change: WEIR_KAFKA_LOG sets it.
  (cd "$DIR" && exec nohup env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
    -u STORAGE_ENGINE -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
    RUST_LOG="${WEIR_KAFKA_LOG:-warn}" NO_COLOR=1 \
    "$BIN" broker --listener-url "tcp://$ADDR" --advertised-listener-url "tcp://$ADVERTISED" \
    --storage-engine "$storage" ${WEIR_KAFKA_AUTH:+--authentication} >>"$LOG" 2>&1 </dev/null) &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 600); do
    if api_versions_ok; then echo "$ADDR"; return; fi
    # kill -0, not `running`: until the subshell has exec'd, its command line is bash's.
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then fail "nisshi broker exited"; fi
    sleep 0.1
  done
  fail "nisshi broker did not answer ApiVersions on $ADDR within 60 s"
}

stop() {
  if running; then
    terminate "kafka: nisshi" "$(cat "$PIDFILE")"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start)
    storage=$(storage_url)
    if ! running; then : >"$LOG"; fi
    start "$storage"
    ;;
  install) install ;;
  stop) stop ;;
  restart)
    # Same storage as the broker ran with, unless WEIR_KAFKA_STORAGE says otherwise.
    if [ -z "${WEIR_KAFKA_STORAGE:-}" ] && [ -f "$STORAGEFILE" ]; then
      storage=$(cat "$STORAGEFILE")
    else
      storage=$(storage_url)
    fi
    stop
    start "$storage"
    ;;
  status)
    if running && api_versions_ok; then
      echo "kafka: running, pid $(cat "$PIDFILE"), $ADDR, storage $(cat "$STORAGEFILE")"
    else
      echo "kafka: not running on $ADDR" >&2; exit 1
    fi
    ;;
  env) echo "export WEIR_KAFKA_BOOTSTRAP=$ADDR" ;;
  topic)
    name=${2:?usage: $0 topic NAME [PARTITIONS]}
    if ! out=$("$BIN" topic create --broker "tcp://$ADDR" --partitions "${3:-3}" "$name" 2>&1); then
      if printf '%s' "$out" | grep -q "already exists"; then
        echo "kafka: topic $name exists already" >&2
      else
        echo "kafka: cannot create topic $name on $ADDR: $out" >&2; exit 1
      fi
    fi
    ;;
  *) echo "usage: $0 start|stop|restart|status|env|topic NAME [PARTITIONS]" >&2; exit 2 ;;
esac
