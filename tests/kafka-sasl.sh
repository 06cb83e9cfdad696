#!/usr/bin/env bash
# A second local broker that requires SASL (SCRAM) authentication, for the TLS and SASL
# tests (runtime/tests/kafka_security.rs). nisshi 0.7.0-pre.2 offers SCRAM-SHA-256 and
# SCRAM-SHA-512 only (its PLAIN is not built in, OAUTHBEARER never succeeds) and cannot serve
# TLS itself (--cert/--key are accepted but never used), so it listens on 127.0.0.1:9400 and
# advertises 127.0.0.1:9401, where each test puts what the client should meet: a plain TCP
# forwarder (SASL_PLAINTEXT) or a TLS terminator with a throwaway CA (SASL_SSL).
#
#   tests/kafka-sasl.sh start   fresh sqlite storage; users created while authentication is
#                               off (nisshi's own CLI cannot authenticate), then restarted with
#                               --authentication; prints the broker's own address
#   tests/kafka-sasl.sh stop
#   tests/kafka-sasl.sh env     the variables the tests read
#
# Users: weir-256 / weir-256-secret (SCRAM-SHA-256), weir-512 / weir-512-secret (SCRAM-SHA-512).
set -euo pipefail
HERE="$(dirname "${BASH_SOURCE[0]}")"
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
STATE="${WEIR_STACK_DIR:-$CACHE/stack}"
BIN="$CACHE/tools/bin/nisshi"
export WEIR_KAFKA_PORT=9400 WEIR_KAFKA_NAME=kafka-sasl WEIR_KAFKA_STORAGE=sqlite \
  WEIR_KAFKA_ADVERTISED=127.0.0.1:9401
BROKER=127.0.0.1:9400

case "${1:-}" in
  start)
    "$HERE/kafka.sh" stop
    rm -f "$STATE/kafka-sasl/kafka.db"*
    "$HERE/kafka.sh" start >/dev/null
    "$BIN" user create --broker "tcp://$BROKER" --mechanism scram256 weir-256 weir-256-secret >&2
    "$BIN" user create --broker "tcp://$BROKER" --mechanism scram512 weir-512 weir-512-secret >&2
    "$HERE/kafka.sh" stop
    WEIR_KAFKA_AUTH=1 "$HERE/kafka.sh" start >/dev/null
    echo "$BROKER"
    ;;
  stop) "$HERE/kafka.sh" stop ;;
  env)
    echo "export WEIR_KAFKA_SASL_BROKER=$BROKER WEIR_KAFKA_SASL_BOOTSTRAP=$WEIR_KAFKA_ADVERTISED"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
