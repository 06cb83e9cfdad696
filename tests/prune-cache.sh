#!/usr/bin/env bash
# Keeps the shared cargo target dir from filling the disk: every checkout (each CI clone, each
# commit) links its own set of test binaries, about 200 MB each and 37 GB a set, and a set is
# of no use to the next run, whose workspace crates differ, so they relink anyway. Removes every
# executable in each profile's deps/ and, in incremental/, every directory but the newest of its
# crate. Libraries are kept, so nothing needs compiling again that would not anyway.
set -euo pipefail
TARGET="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
[ -d "$TARGET" ] || exit 0
python3 - "$TARGET" <<'PY'
import collections, os, shutil, sys
target = sys.argv[1]
freed = 0
for profile in ("debug", "release"):
    deps = os.path.join(target, profile, "deps")
    if os.path.isdir(deps):
        for f in os.listdir(deps):
            p = os.path.join(deps, f)
            if "." not in f and os.path.isfile(p) and os.access(p, os.X_OK):
                freed += os.path.getsize(p)
                os.remove(p)
    inc = os.path.join(target, profile, "incremental")
    if os.path.isdir(inc):
        newest = collections.defaultdict(list)
        for d in os.listdir(inc):
            newest[d.rsplit("-", 1)[0]].append((os.path.getmtime(os.path.join(inc, d)), d))
        for group in newest.values():
            for _, d in sorted(group)[:-1]:
                p = os.path.join(inc, d)
                for root, _, files in os.walk(p):
                    freed += sum(os.path.getsize(os.path.join(root, f)) for f in files)
                shutil.rmtree(p, ignore_errors=True)
# Each `--timings` build leaves a dated report beside cargo-timing.html (the latest).
timings = os.path.join(target, "cargo-timings")
if os.path.isdir(timings):
    for f in os.listdir(timings):
        if f.startswith("cargo-timing-"):
            p = os.path.join(timings, f)
            freed += os.path.getsize(p)
            os.remove(p)
free = shutil.disk_usage(target).free
print(f"prune-cache: freed {freed / 1e9:.1f} GB in {target}, {free / 1e9:.1f} GB free")
PY
