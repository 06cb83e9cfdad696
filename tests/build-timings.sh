#!/usr/bin/env bash
# Prints where the last `cargo ... --timings` build spent its time: the slowest units and the
# sum per package, from the report cargo writes into the target dir. CI prints it after the
# compile step, so a cold run's log says which dependency to look at when it grows.
set -euo pipefail
TARGET="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
report="$TARGET/cargo-timings/cargo-timing.html"
[ -f "$report" ] || { echo "no timing report at $report"; exit 0; }
python3 - "$report" "${1:-15}" <<'PY'
import collections, json, re, sys
html, top = open(sys.argv[1]).read(), int(sys.argv[2])
m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S)
if not m:
    print("the timing report has no unit data (a newer cargo changed its format?)")
    sys.exit(0)
units = json.loads(m.group(1))
total = sum(u["duration"] for u in units)
print(f"{len(units)} units compiled, {total / 60:.1f} min of compile time (summed over parallel jobs)")
per = collections.Counter()
for u in units:
    per[u["name"]] += u["duration"]
print(f"slowest {top} packages (all their units, build scripts included):")
for name, s in per.most_common(top):
    print(f"  {s:7.1f} s  {name}")
PY
