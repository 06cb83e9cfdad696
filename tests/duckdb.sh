#!/usr/bin/env bash
# DuckDB (PyPI), the independent batch engine the Nexmark oracle runs queries with,
# installed once into a cached venv outside the clone.
#
#   tests/duckdb.sh python   install when missing; print the venv's python
set -euo pipefail

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
VENV="$CACHE/duckdb-venv"

install() {
  if "$VENV/bin/python" -c 'import duckdb, pytz' 2>/dev/null; then return; fi
  echo "duckdb: installing into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'duckdb==1.*' pytz
}

case "${1:-}" in
  python) install; echo "$VENV/bin/python" ;;
  *) echo "usage: $0 python" >&2; exit 2 ;;
esac
