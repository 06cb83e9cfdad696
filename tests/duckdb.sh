#!/usr/bin/env bash
# DuckDB (PyPI), the independent batch engine the Nexmark oracle runs queries with,
# installed once into a cached venv outside the clone.
#
#   tests/duckdb.sh python   install when missing; print the venv's python
set -euo pipefail

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
VENV="$CACHE/duckdb-venv"

installed() { "$VENV/bin/python" -c 'import duckdb, pytz' 2>/dev/null; }

install() {
  if installed; then return; fi
  # The Nexmark tests run side by side, and each asks for the oracle: on a fresh machine they
  # all find it missing at once. One installs while the others wait, then find it there.
  mkdir -p "$CACHE"
  exec 9>"$CACHE/duckdb-install.lock"
  flock 9
  if ! installed; then
    echo "duckdb: installing into $VENV" >&2
    rm -rf "$VENV" # what an interrupted install left
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'duckdb==1.*' pytz
  fi
  exec 9>&-
}

case "${1:-}" in
  python) install; echo "$VENV/bin/python" ;;
  *) echo "usage: $0 python" >&2; exit 2 ;;
esac
