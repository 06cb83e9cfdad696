#!/usr/bin/env bash
# The operator and runtime images, built with buildah (no Docker engine needed) from binaries
# built once by cargo, as OCI archives:
#
#   docker/images.sh build    cargo build (profile $WEIR_IMAGE_PROFILE, default release), then
#                             one image per binary into $WEIR_IMAGE_DIR (default
#                             target/images): weir-operator-<version>.oci.tar and
#                             weir-runtime-<version>.oci.tar, tagged weir-operator:<version>
#                             and weir-runtime:<version> (the chart's defaults); prints sizes
#   docker/images.sh smoke    unpack each archive's root filesystem and run its entrypoint there
#                             (chroot, as uid 65532): `--version` for both, and the runtime
#                             validates examples/quickstart.yaml and carries no fault hooks
#
# Each image holds the binary, exactly the shared libraries `ldd` says it loads (glibc, libgcc,
# zlib, ...), the CA bundle, /etc/passwd with the `nonroot` user and an empty /tmp: no shell,
# no package manager. It runs as uid 65532 and is labelled with the version and the source
# revision. buildah runs as root with the vfs storage driver and keeps its storage in the
# cache outside the clone ($WEIR_CACHE/buildah); `apt-get install buildah` when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
PROFILE="${WEIR_IMAGE_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="${WEIR_IMAGE_DIR:-$TARGET/images}"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
BUILDAH=(buildah --root "$CACHE/buildah/storage" --runroot "$CACHE/buildah/run" --storage-driver vfs)
UID_GID=65532

ensure_buildah() {
  if command -v buildah >/dev/null; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "images: installing buildah (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah >/dev/null
  else
    echo "images: buildah is missing; install it (Debian/Ubuntu: apt-get install buildah)" >&2
    exit 1
  fi
}

bin_dir() {
  case "$PROFILE" in
    dev) echo "$TARGET/debug" ;;
    *) echo "$TARGET/$PROFILE" ;;
  esac
}

# NAME: a root filesystem for binary NAME under $1/NAME, with the libraries it loads.
rootfs() {
  local work=$1 name=$2 bin
  bin="$(bin_dir)/$name"
  local root="$work/$name"
  rm -rf "$root"
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
  chmod 1777 "$root/tmp"
  install -m 0755 "$bin" "$root/usr/local/bin/$name"
  # Debug symbols are not needed to run; a panic still names the function (symbol table kept).
  strip --strip-debug "$root/usr/local/bin/$name"
  # Every library the dynamic loader resolves, and the loader itself, at the same paths.
  ldd "$bin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/tmp:/sbin/nologin\n' \
    "$UID_GID" "$UID_GID" >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$UID_GID" >"$root/etc/group"
}

image() {
  local work=$1 name=$2 port=$3 description=$4
  rootfs "$work" "$name"
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" copy --quiet "$ctr" "$work/$name/" / >/dev/null
  local config=(--user "$UID_GID:$UID_GID" --workingdir /tmp
    --entrypoint "[\"/usr/local/bin/$name\"]" --cmd '[]'
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    --label "org.opencontainers.image.title=$name"
    --label "org.opencontainers.image.description=$description"
    --label "org.opencontainers.image.version=$VERSION"
    --label "org.opencontainers.image.revision=$REVISION"
    --label "org.opencontainers.image.licenses=Apache-2.0"
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
  if [ -n "$port" ]; then config+=(--port "$port/tcp"); fi
  "${BUILDAH[@]}" config "${config[@]}" "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm --format oci "$ctr" "localhost/$name:$VERSION" >/dev/null
  local archive="$OUT/$name-$VERSION.oci.tar"
  rm -f "$archive"
  "${BUILDAH[@]}" push --quiet "localhost/$name:$VERSION" "oci-archive:$archive:$name:$VERSION"
  "${BUILDAH[@]}" rmi "localhost/$name:$VERSION" >/dev/null
  printf '%s:%s  %s  binary %s, image %s (compressed archive %s)\n' "$name" "$VERSION" "$archive" \
    "$(du -h "$work/$name/usr/local/bin/$name" | cut -f1)" "$(du -sh "$work/$name" | cut -f1)" \
    "$(du -h "$archive" | cut -f1)"
}

build() {
  ensure_buildah
  local cargo_profile=(--profile "$PROFILE")
  # WEIR_IMAGE_FEATURES: CI sets `ci-image` (see runtime/Cargo.toml) to reuse the tests' build.
  cargo build --locked "${cargo_profile[@]}" ${WEIR_IMAGE_FEATURES:+--features "$WEIR_IMAGE_FEATURES"} \
    -p weir-operator -p weir-runtime >&2
  mkdir -p "$OUT"
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  image "$work" weir-operator 8080 "Weir's Kubernetes operator for StreamJobs"
  image "$work" weir-runtime 8081 "Weir's stream-processing runtime (one per StreamJob pod)"
}

# ARCHIVE DIR: the image's root filesystem (its layers in order) under DIR; prints the
# entrypoint from the image config.
unpack() {
  local archive=$1 dir=$2
  local oci="$dir.oci"
  rm -rf "$dir" "$oci"
  mkdir -p "$dir" "$oci"
  tar -xf "$archive" -C "$oci"
  python3 - "$oci" "$dir" <<'EOF'
import json, sys, tarfile
oci, root = sys.argv[1], sys.argv[2]
blob = lambda d: f"{oci}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{oci}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"])) as t:
        t.extractall(root, filter="fully_trusted")
c = config["config"]
assert c.get("User") == "65532:65532", f"image user is {c.get('User')!r}, not 65532"
print(" ".join(c["Entrypoint"]))
EOF
  rm -rf "$oci"
}

smoke() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  for name in weir-operator weir-runtime; do
    local archive="$OUT/$name-$VERSION.oci.tar"
    [ -f "$archive" ] || { echo "images: $archive is missing; run docker/images.sh build" >&2; exit 1; }
    local root="$work/$name" entry
    entry=$(unpack "$archive" "$root")
    if [ -e "$root/bin/sh" ] || [ -e "$root/usr/bin/sh" ]; then
      echo "images: $name has a shell" >&2; exit 1
    fi
    local run=(chroot --userspec=65532:65532 "$root")
    [ "$(id -u)" = 0 ] || run=(unshare -r chroot "$root")
    local version
    version=$("${run[@]}" $entry --version)
    echo "images: $name answers --version: $version"
    [ "$version" = "$name $VERSION" ] || { echo "images: expected '$name $VERSION'" >&2; exit 1; }
    if [ "$name" = weir-runtime ]; then
      cp examples/quickstart.yaml "$root/tmp/quickstart.yaml"
      "${run[@]}" $entry validate /tmp/quickstart.yaml
      echo "images: weir-runtime in its image validates examples/quickstart.yaml"
      # A broken file must fail inside the image too, naming the file.
      printf 'pipeline: {source: {}}\n' >"$root/tmp/broken.yaml"
      if out=$("${run[@]}" $entry validate /tmp/broken.yaml 2>&1); then
        echo "images: a broken job file validated" >&2; exit 1
      fi
      grep -q broken.yaml <<<"$out" || { echo "images: error does not name the file: $out" >&2; exit 1; }
      # Fault-injection points are for tests only: the shipped binary must not know them.
      if grep -q -a -e WEIR_CRASH_AT -e WEIR_PAUSE_AT "$root/${entry%% *}"; then
        echo "images: weir-runtime was built with its fault hooks (WEIR_CRASH_AT)" >&2; exit 1
      fi
      echo "images: weir-runtime has no fault hooks"
    fi
  done
}

case "${1:-}" in
  build) build ;;
  smoke) smoke ;;
  *) echo "usage: $0 build|smoke" >&2; exit 2 ;;
esac
