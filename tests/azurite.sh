#!/usr/bin/env bash
# Local Azure Blob Storage for tests: Azurite (Microsoft's emulator, from the npm registry),
# installed once into the cache outside the clone, blob service only, in memory, bound to
# 127.0.0.1.
#
#   tests/azurite.sh start             install when missing, start, wait until it answers;
#                                      prints the blob endpoint (http://127.0.0.1:PORT/devstoreaccount1)
#   tests/azurite.sh container NAME    create container NAME (an existing one is left as is)
#   tests/azurite.sh stop              stop the server by PID
#   tests/azurite.sh env               print the variables a client needs for the emulator
#
# Clients use the emulator's well-known account (devstoreaccount1 and its published key):
# AZURE_STORAGE_USE_EMULATOR=true and AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:PORT.
set -euo pipefail

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
STATE="${WEIR_STACK_DIR:-$CACHE/stack}"
PREFIX="$CACHE/tools/azurite"
VERSION="3.37.0"
PORT="${WEIR_AZURITE_PORT:-9410}"
PIDFILE="$STATE/azurite.pid"
LOG="$STATE/azurite.log"
ACCOUNT=devstoreaccount1
# Azurite's published development key (not a secret: the same in every emulator).
KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
mkdir -p "$STATE"

install() {
  if [ -x "$PREFIX/node_modules/.bin/azurite-blob" ] && [ "$(cat "$PREFIX/version" 2>/dev/null)" = "$VERSION" ]; then
    return
  fi
  echo "azurite: installing azurite@$VERSION into $PREFIX" >&2
  mkdir -p "$PREFIX"
  npm install --silent --no-audit --no-fund --prefix "$PREFIX" "azurite@$VERSION" >&2
  echo "$VERSION" >"$PREFIX/version"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  install
  if running; then echo "http://127.0.0.1:$PORT/$ACCOUNT"; return; fi
  nohup "$PREFIX/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$PORT" \
    --inMemoryPersistence --skipApiVersionCheck --disableProductStyleUrl --silent \
    >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 150); do
    # Any HTTP answer (an unauthenticated request is refused with 403) means it listens.
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/$ACCOUNT?comp=list" 2>/dev/null; then
      echo "http://127.0.0.1:$PORT/$ACCOUNT"; return
    fi
    if ! running; then echo "azurite: exited; log follows" >&2; cat "$LOG" >&2; exit 1; fi
    sleep 0.2
  done
  echo "azurite: did not answer on 127.0.0.1:$PORT within 30 s; log: $LOG" >&2
  exit 1
}

# Create Blob Container, signed with the account key (Shared Key), in Python's standard
# library: no Azure client is needed for one request.
container() {
  local name=$1
  ACCOUNT="$ACCOUNT" KEY="$KEY" PORT="$PORT" NAME="$name" python3 - <<'PY'
import base64, hashlib, hmac, os, sys, urllib.request, urllib.error
from email.utils import formatdate
account, key, port, name = os.environ["ACCOUNT"], os.environ["KEY"], os.environ["PORT"], os.environ["NAME"]
date, version = formatdate(usegmt=True), "2021-08-06"
to_sign = "\n".join(["PUT", "", "", "", "", "", "", "", "", "", "", "",
                     f"x-ms-date:{date}\nx-ms-version:{version}",
                     f"/{account}/{account}/{name}\nrestype:container"])
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/{account}/{name}?restype=container", method="PUT",
                             headers={"x-ms-date": date, "x-ms-version": version,
                                      "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0"})
try:
    urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: the container exists
        sys.exit(f"azurite: creating container {name}: HTTP {e.code}: {e.read().decode(errors='replace')}")
PY
}

# Azurite closes its server on SIGTERM but its process can linger for long after; it keeps
# nothing (in memory), so it gets 3 s and then SIGKILL.
stop() {
  if running; then
    local pid; pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  container) container "${2:?usage: $0 container NAME}" ;;
  stop) stop ;;
  env) echo "export AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$PORT WEIR_AZURITE=1" ;;
  *) echo "usage: $0 start|container NAME|stop|env" >&2; exit 2 ;;
esac
