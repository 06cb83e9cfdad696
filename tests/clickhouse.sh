#!/usr/bin/env bash
# Local ClickHouse for tests: Debian's clickhouse-server (18.16) plus a ZooKeeper for
# Replicated*MergeTree tables, both run as our own processes (never the system services)
# from generated configs, with all data under the stack dir outside the clone, bound to
# 127.0.0.1 only. Data survives stop/start and restart; delete "$STATE/clickhouse" and
# "$STATE/zookeeper" (with the stack stopped) to start empty.
#
#   tests/clickhouse.sh start          install when missing, start ZooKeeper then ClickHouse,
#                                      wait until both answer; prints the HTTP URL
#   tests/clickhouse.sh stop           stop ClickHouse then ZooKeeper by PID
#   tests/clickhouse.sh restart        restart clickhouse-server only (ZooKeeper and data stay)
#   tests/clickhouse.sh status         exit 0 when ZooKeeper and ClickHouse run and answer
#   tests/clickhouse.sh env            print `export WEIR_CLICKHOUSE_URL=... WEIR_CLICKHOUSE_HTTPS_URL=...`
#                                      for a running server (HTTPS on 9402, tests/tls.sh's CA)
#   tests/clickhouse.sh client QUERY   run QUERY over HTTP and print the result
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
STATE="${WEIR_STACK_DIR:-$CACHE/stack}"
HTTP_PORT="${WEIR_CLICKHOUSE_HTTP_PORT:-9393}"
TCP_PORT="${WEIR_CLICKHOUSE_TCP_PORT:-9394}"
INTERSERVER_PORT="${WEIR_CLICKHOUSE_INTERSERVER_PORT:-9395}"
# HTTPS with the throwaway CA of tests/tls.sh (server certificate for localhost, 127.0.0.1).
HTTPS_PORT="${WEIR_CLICKHOUSE_HTTPS_PORT:-9402}"
ZK_PORT="${WEIR_ZOOKEEPER_PORT:-9396}"
URL="http://127.0.0.1:$HTTP_PORT"

CH_DIR="$STATE/clickhouse"
CH_PIDFILE="$STATE/clickhouse.pid"
CH_OUT="$STATE/clickhouse.out"
CH_LOG="$CH_DIR/log/clickhouse-server.log"
CH_ERRLOG="$CH_DIR/log/clickhouse-server.err.log"
ZK_DIR="$STATE/zookeeper"
ZK_PIDFILE="$STATE/zookeeper.pid"
ZK_LOG="$STATE/zookeeper.log"
# zookeeper.jar's manifest lists its dependencies; slf4j-simple makes it log (to stderr).
ZK_CLASSPATH="/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
mkdir -p "$STATE"

install() {
  if [ -x /usr/sbin/clickhouse-server ] && [ -x /usr/bin/clickhouse-client ] \
    && [ -f /usr/share/java/zookeeper.jar ] && [ -f /usr/share/java/slf4j-simple.jar ]; then
    return
  fi
  echo "clickhouse: installing clickhouse-server clickhouse-client zookeeper with apt-get" >&2
  # The Debian packages do not start their services here (policy-rc.d / no init); even if
  # they did, those would use the default ports, not ours.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    clickhouse-server clickhouse-client zookeeper libslf4j-java >&2; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clickhouse-server clickhouse-client zookeeper libslf4j-java >&2
  fi
}

# running PIDFILE PATTERN: the PID in PIDFILE is alive and its command line matches PATTERN
# (guards against a stale PID file whose PID was reused).
running() {
  [ -f "$1" ] || return 1
  local pid
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# alive PIDFILE: the process we just started still exists. While starting, its command line
# may still be the forking shell's (before exec), so `running` would call it gone.
alive() { kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# stop_pid PIDFILE PATTERN NAME: stop the process the PID file names (see tests/lib.sh).
stop_pid() {
  if running "$1" "$2"; then
    terminate "clickhouse: $3" "$(cat "$1")"
  fi
  rm -f "$1"
}

fail() { # fail MESSAGE LOGFILE...
  echo "clickhouse: $1" >&2
  shift
  local f
  for f in "$@"; do
    if [ -s "$f" ]; then echo "--- last lines of $f:" >&2; tail -n 40 "$f" >&2; fi
  done
  exit 1
}

zk_cmd() { # four-letter-word command; prints the reply
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ZK_PORT && printf %s '$1' >&3 && cat <&3" 2>/dev/null
}

start_zookeeper() {
  if running "$ZK_PIDFILE" QuorumPeerMain; then return; fi
  if port_open "$ZK_PORT"; then fail "port 127.0.0.1:$ZK_PORT is already in use by another process"; fi
  mkdir -p "$ZK_DIR/data"
  cat >"$ZK_DIR/zoo.cfg" <<EOF
tickTime=2000
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr
autopurge.purgeInterval=1
EOF
  nohup java -Xmx256m -Dzookeeper.jmx.log4j.disable=true -cp "$ZK_CLASSPATH" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_DIR/zoo.cfg" >"$ZK_LOG" 2>&1 </dev/null &
  echo $! >"$ZK_PIDFILE"
  for _ in $(seq 1 300); do
    if zk_cmd srvr | grep -q '^Mode: standalone'; then return; fi
    if ! alive "$ZK_PIDFILE"; then fail "ZooKeeper exited" "$ZK_LOG"; fi
    sleep 0.1
  done
  fail "ZooKeeper did not serve on 127.0.0.1:$ZK_PORT within 30 s" "$ZK_LOG"
}

write_clickhouse_config() {
  local TLS_DIR
  TLS_DIR=$("$(dirname "${BASH_SOURCE[0]}")/tls.sh" dir)
  mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$CH_DIR/log"
  cat >"$CH_DIR/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by tests/clickhouse.sh; rewritten on every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOG</log>
        <errorlog>$CH_ERRLOG</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$HTTP_PORT</http_port>
    <https_port>$HTTPS_PORT</https_port>
    <openSSL>
        <server>
            <certificateFile>$TLS_DIR/server.pem</certificateFile>
            <privateKeyFile>$TLS_DIR/server.key</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
    <tcp_port>$TCP_PORT</tcp_port>
    <interserver_http_port>$INTERSERVER_PORT</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <zookeeper>
        <node index="1">
            <host>127.0.0.1</host>
            <port>$ZK_PORT</port>
        </node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>
    <macros>
        <shard>01</shard>
        <replica>r1</replica>
    </macros>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
</yandex>
EOF
  cat >"$CH_DIR/users.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by tests/clickhouse.sh; rewritten on every start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

query() { # query SQL: POST it, print the result; fails (with the server's message) on error
  curl -sS --fail-with-body --data-binary "$1" "$URL/"
}

start_clickhouse() {
  if running "$CH_PIDFILE" clickhouse-server; then return; fi
  for p in "$HTTP_PORT" "$TCP_PORT" "$INTERSERVER_PORT" "$HTTPS_PORT"; do
    if port_open "$p"; then fail "port 127.0.0.1:$p is already in use by another process"; fi
  done
  write_clickhouse_config
  # Run from the data dir: 18.16 writes config-preprocessed.xml files next to the configs
  # and may write other files relative to the working directory.
  (cd "$CH_DIR" && exec nohup clickhouse-server --config-file="$CH_DIR/config.xml" >"$CH_OUT" 2>&1 </dev/null) &
  echo $! >"$CH_PIDFILE"
  for _ in $(seq 1 600); do
    if [ "$(curl -fsS "$URL/ping" 2>/dev/null)" = "Ok." ] && [ "$(query 'SELECT 1' 2>/dev/null)" = 1 ] \
      && query "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null 2>&1; then
      return
    fi
    if ! alive "$CH_PIDFILE"; then
      fail "clickhouse-server exited" "$CH_OUT" "$CH_ERRLOG"
    fi
    sleep 0.1
  done
  fail "clickhouse-server did not answer SELECT 1 (with ZooKeeper) on $URL within 60 s" "$CH_OUT" "$CH_ERRLOG"
}

stop_clickhouse() { stop_pid "$CH_PIDFILE" clickhouse-server clickhouse-server; }
stop_zookeeper() { stop_pid "$ZK_PIDFILE" QuorumPeerMain ZooKeeper; }

case "${1:-}" in
  start) install; start_zookeeper; start_clickhouse; echo "$URL" ;;
  stop) stop_clickhouse; stop_zookeeper ;;
  restart) stop_clickhouse; start_zookeeper; start_clickhouse; echo "$URL" ;;
  status)
    if running "$ZK_PIDFILE" QuorumPeerMain && zk_cmd srvr | grep -q '^Mode: standalone' \
      && running "$CH_PIDFILE" clickhouse-server && [ "$(query 'SELECT 1' 2>/dev/null)" = 1 ]; then
      echo "clickhouse: running, pid $(cat "$CH_PIDFILE"), $URL; zookeeper pid $(cat "$ZK_PIDFILE"), 127.0.0.1:$ZK_PORT"
    else
      echo "clickhouse: not running (or not answering) on $URL / ZooKeeper 127.0.0.1:$ZK_PORT" >&2; exit 1
    fi
    ;;
  env) echo "export WEIR_CLICKHOUSE_URL=$URL WEIR_CLICKHOUSE_HTTPS_URL=https://localhost:$HTTPS_PORT" ;;
  client)
    shift
    if [ $# -eq 0 ]; then echo "usage: $0 client QUERY" >&2; exit 2; fi
    query "$*"
    ;;
  *) echo "usage: $0 start|stop|restart|status|env|client QUERY" >&2; exit 2 ;;
esac
