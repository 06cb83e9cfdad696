#!/usr/bin/env bash
# RocksDB for CI's test build, compiled as a few large translation units ("unity" files, as
# RocksDB's own Makefile target `unity.a` does) instead of 343.
#
#   tests/rocksdb.sh lib    prints the directory holding librocksdb.a, building it once
#
# `librocksdb-sys` compiles each of RocksDB's 343 sources on its own; unoptimised, most of that
# is parsing the same headers and instantiating the same templates 343 times, about 21 CPU
# minutes of a cold CI run on two cores. This script compiles the same sources of the same
# crate version, with the defines its build script uses (x86_64 Linux, lz4 and zstd, the two
# compression features Weir enables; the crates' own lz4 and zstd headers), into a static
# library cached outside the clone; `tests/run-all.sh`, when `.ci/run` sets
# `WEIR_ROCKSDB_UNITY=1`, hands it to the crate's build script through the variables that
# script reads (`ROCKSDB_LIB_DIR`, `ROCKSDB_STATIC`), which then links it instead of compiling.
# Only CI does this: a developer's `cargo test` and every release build compile RocksDB the
# crate's way (release builds optimised), and CI's target directory is its own, under the cache.
# Measured on this 2-core machine: 81 s, 2.5 CPU minutes (the crate's way: 24).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/lib.sh
source tests/lib.sh
cache="${WEIR_CACHE:-$HOME/.cache/weir}/rocksdb"
# Four pieces: two run at a time on CI's two cores, and a piece's headers are parsed once.
pieces=4

[ "${1:-}" = lib ] || { echo "usage: tests/rocksdb.sh lib" >&2; exit 2; }

# The sources of the crate versions Cargo.lock names (cargo fetches them if missing).
read -r rocksdb lz4 zstd < <(cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu | python3 -c '
import json, os, sys
found = {p["name"]: os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"]
         if p["name"] in ("librocksdb-sys", "lz4-sys", "zstd-sys")}
print(found["librocksdb-sys"], found["lz4-sys"], found["zstd-sys"])')
for dir in "$rocksdb/rocksdb" "$lz4/liblz4/lib" "$zstd/zstd/lib"; do
  [ -d "$dir" ] || { echo "tests/rocksdb.sh: $dir is missing" >&2; exit 1; }
done

# What `librocksdb-sys`'s build script defines and passes for x86_64 Linux (its build.rs), at
# the dev profile's opt-level 0 for this crate (Cargo.toml), without debug information.
flags=(-O0 -fPIC -m64 -ffunction-sections -fdata-sections -msse2 -std=c++20 -include cstdint -w
  -DNDEBUG=1 -DHAVE_ALIGNED_NEW -DHAVE_UINT128_EXTENSION -DOS_LINUX -DROCKSDB_PLATFORM_POSIX
  -DROCKSDB_LIB_IO_POSIX -DROCKSDB_SCHED_GETCPU_PRESENT -DROCKSDB_AUXV_GETAUXVAL_PRESENT
  -DROCKSDB_FALLOCATE_PRESENT -DROCKSDB_RANGESYNC_PRESENT -DLZ4=1 -DZSTD=1
  -I"$rocksdb/rocksdb/include" -I"$rocksdb/rocksdb" -I"$rocksdb"
  -I"$rocksdb/rocksdb/third-party/gtest-1.8.1/fused-src" -I"$lz4/liblz4/lib" -I"$zstd/zstd/lib")
cxx=clang++
# A new crate version, compiler, flag or piece count is a new library, in its own directory.
key=$( { basename "$rocksdb"; basename "$lz4"; basename "$zstd"; "$cxx" --version | head -n 1
  echo "${flags[*]}" "$pieces"; } | sha256sum | cut -c1-16)
out="$cache/$key"
built() { [ -f "$out/librocksdb.a" ]; }

build() {
  local work="$cache/$key.tmp" start=$SECONDS per i src
  rm -rf "$work"
  mkdir -p "$work"
  # The crate's source list, less the version file it replaces with its own (as its build.rs).
  mapfile -t sources < <(grep -v '^util/build_version.cc$' "$rocksdb/rocksdb_lib_sources.txt" | sed '/^\s*$/d')
  per=$(( (${#sources[@]} + pieces - 1) / pieces ))
  for ((i = 0; i < pieces; i++)); do
    for src in "${sources[@]:i*per:per}"; do
      printf '#include "%s/rocksdb/%s"\n' "$rocksdb" "$src"
    done >"$work/unity$i.cc"
  done
  printf '#include "%s/build_version.cc"\n' "$rocksdb" >"$work/version.cc"
  # Two at a time, one per core; a failure names its piece and keeps its log.
  ls "$work"/*.cc | xargs -P 2 -I{} sh -c \
    "$cxx $(printf '%q ' "${flags[@]}") -c {} -o {}.o >{}.log 2>&1 || { echo 'tests/rocksdb.sh: compiling {} failed:' >&2; tail -n 30 {}.log >&2; exit 255; }"
  ar rcs "$work/librocksdb.a" "$work"/*.o
  rm -f "$work"/*.o
  mv "$work" "$out"
  echo "tests/rocksdb.sh: built $out/librocksdb.a in $((SECONDS - start)) s (${#sources[@]} sources in $pieces pieces)" >&2
}

once_locked "$cache/build.lock" built build
echo "$out"
