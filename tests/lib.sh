# Shared by the stack scripts; sourced, not run.

# terminate WHO PID: SIGTERM, wait up to 30 s for the exit, then SIGKILL and wait.
terminate() {
  local who=$1 pid=$2
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "$who (pid $pid) did not exit within 30 s of SIGTERM; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
