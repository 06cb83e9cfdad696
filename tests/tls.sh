#!/usr/bin/env bash
# A throwaway certificate authority for the TLS tests, made with openssl once per stack
# directory: a CA, a server certificate for localhost and 127.0.0.1, a client certificate
# (for mutual TLS), and a second CA that signed nothing (to prove a wrong CA is refused).
#
#   tests/tls.sh dir     create what is missing; print the directory holding
#                        ca.pem, server.pem, server.key, client.pem, client.key, other-ca.pem
set -euo pipefail
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
STATE="${WEIR_STACK_DIR:-$CACHE/stack}"
# WEIR_TLS_DIR: another stack directory's certificates (a test's own server uses the shared CA).
DIR="${WEIR_TLS_DIR:-$STATE/tls}"

make() {
  mkdir -p "$DIR"
  cd "$DIR"
  [ -s ca.pem ] && [ -s server.pem ] && [ -s client.pem ] && [ -s other-ca.pem ] && return
  rm -f ./*.pem ./*.key ./*.srl ./*.csr ./*.cnf
  local days=3650
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
    -subj "/CN=weir test CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
    -subj "/CN=another CA" -keyout other-ca.key -out other-ca.pem 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.cnf
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
    -extfile server.cnf -out server.pem 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.cnf
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=weir-client" \
    -keyout client.key -out client.csr 2>/dev/null
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
    -extfile client.cnf -out client.pem 2>/dev/null
  # PKCS#8, which every TLS library here reads.
  for k in server client; do
    openssl pkcs8 -topk8 -nocrypt -in $k.key -out $k.p8 && mv $k.p8 $k.key
  done
  rm -f ./*.csr ./*.srl ./*.cnf
  chmod 600 ./*.key
}

case "${1:-}" in
  dir) (make) && echo "$DIR" ;;
  *) echo "usage: $0 dir" >&2; exit 2 ;;
esac
