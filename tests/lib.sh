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

# once_locked LOCKFILE CHECK INSTALL: run the function INSTALL unless the function CHECK
# succeeds, one caller at a time. Tests and scripts started side by side on a fresh machine
# all find a tool missing at once: one installs while the others wait on LOCKFILE, then find
# it there. INSTALL runs in a subshell holding the lock (its variables do not come back).
once_locked() {
  local lock=$1 check=$2 install=$3
  if "$check"; then return 0; fi
  mkdir -p "$(dirname "$lock")"
  (
    flock 9
    "$check" || "$install"
  ) 9>"$lock"
}
