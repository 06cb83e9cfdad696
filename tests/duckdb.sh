#!/usr/bin/env bash
# DuckDB (PyPI), the independent batch engine the Nexmark oracle runs queries with,
# installed once into a cached venv outside the clone.
#
#   tests/duckdb.sh python   install when missing; print the venv's python
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
VENV="$CACHE/duckdb-venv"

installed() { "$VENV/bin/python" -c 'import duckdb, pytz' 2>/dev/null; }

install_venv() {
  echo "duckdb: installing into $VENV" >&2
  rm -rf "$VENV" # what an interrupted install left
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'duckdb==1.*' pytz
}

case "${1:-}" in
  # The Nexmark tests run side by side, and each asks for the oracle.
  python) once_locked "$CACHE/duckdb-install.lock" installed install_venv; echo "$VENV/bin/python" ;;
  *) echo "usage: $0 python" >&2; exit 2 ;;
esac
