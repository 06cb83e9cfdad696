#!/usr/bin/env bash
# Local S3 API server for tests: moto from PyPI, installed once into a cached venv
# outside the clone, bound to 127.0.0.1 only.
#
#   tests/s3.sh start   install when missing, start, wait until it answers; prints the endpoint
#   tests/s3.sh stop    stop the server by PID
#   tests/s3.sh env     print `export WEIR_S3_ENDPOINT=...` for a running server
set -euo pipefail

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
STATE="${WEIR_STACK_DIR:-$CACHE/stack}"
VENV="$CACHE/moto-venv"
PORT="${WEIR_S3_PORT:-9390}"
PIDFILE="$STATE/s3.pid"
LOG="$STATE/s3.log"
mkdir -p "$STATE"

install() {
  if [ -x "$VENV/bin/moto_server" ]; then return; fi
  echo "s3: installing moto into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[s3]==5.1.*' flask flask-cors
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  install
  if running; then echo "http://127.0.0.1:$PORT"; return; fi
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/moto-api/" 2>/dev/null; then
      echo "http://127.0.0.1:$PORT"; return
    fi
    if ! running; then echo "s3: moto_server exited; log follows" >&2; cat "$LOG" >&2; exit 1; fi
    sleep 0.2
  done
  echo "s3: moto_server did not answer on 127.0.0.1:$PORT within 20 s; log: $LOG" >&2
  exit 1
}

stop() {
  if running; then kill "$(cat "$PIDFILE")"; fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export WEIR_S3_ENDPOINT=http://127.0.0.1:$PORT" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
