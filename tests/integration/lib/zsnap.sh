# Start and stop a private zsnap daemon for an integration test. Needs lib/common.sh.
#
# zsnap_start sets (and exports):
#   ZSNAP_ROOT    the daemon's state root (snapshots/<id>/{fs,work}, metadata)
#   ZSNAP_SOCKET  its gRPC unix socket (what containerd's [proxy_plugins.zsnap] points at)
#   ZSNAP_CONFIG  the generated TOML config
#   ZSNAP_LOG     its stdout+stderr
#   ZSNAP_PID     its pid
# The binary is $ZSNAP_BIN (set by ctest); it is started as `$ZSNAP_BIN serve --config FILE`.

if [[ -n ${ZSNAP_ITEST_ZSNAP_SH:-} ]]; then return 0; fi
ZSNAP_ITEST_ZSNAP_SH=1

# zsnap_write_config FILE ROOT SOCKET [EXTRA_TOML]: write a zsnap config. EXTRA_TOML (e.g.
# another key = value line) is appended verbatim.
zsnap_write_config() {
  local file=$1 root=$2 socket=$3 extra=${4:-}
  cat >"$file" <<EOF
root = "$root"
address = "$socket"
log_level = "${ZSNAP_LOG_LEVEL:-debug}"
log_format = "${ZSNAP_LOG_FORMAT:-text}"
$extra
EOF
}

# zsnap_start [ROOT] [EXTRA_TOML]: start zsnap with root ROOT (default $ITEST_DIR/zsnap-root, an
# existing root is reused — that is how a restart test keeps its state) and a private socket,
# wait (30 s) until the socket accepts connections, register a stop on exit. Returns 1 (with the
# log tail on stderr) if the daemon exits or the socket does not appear.
zsnap_start() {
  local root=${1:-$ITEST_DIR/zsnap-root} extra=${2:-}
  : "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
  [[ -x $ZSNAP_BIN ]] || { itest_log "ZSNAP_BIN=$ZSNAP_BIN is not executable"; return 1; }
  ZSNAP_ROOT=$root
  ZSNAP_SOCKET=$ITEST_SOCK_DIR/zsnap.sock
  ZSNAP_CONFIG=$ITEST_DIR/zsnap.toml
  ZSNAP_LOG=$ITEST_DIR/zsnap.log
  mkdir -p "$ZSNAP_ROOT"
  rm -f "$ZSNAP_SOCKET"
  zsnap_write_config "$ZSNAP_CONFIG" "$ZSNAP_ROOT" "$ZSNAP_SOCKET" "$extra"
  "$ZSNAP_BIN" serve --config "$ZSNAP_CONFIG" >>"$ZSNAP_LOG" 2>&1 &
  ZSNAP_PID=$!
  itest_track_pid "$ZSNAP_PID"
  export ZSNAP_ROOT ZSNAP_SOCKET ZSNAP_CONFIG ZSNAP_LOG ZSNAP_PID
  if [[ -z ${ZSNAP_ITEST_STOP_REGISTERED:-} ]]; then
    itest_on_exit zsnap_stop
    ZSNAP_ITEST_STOP_REGISTERED=1
  fi
  if ! itest_wait_for 30 "zsnap socket $ZSNAP_SOCKET" zsnap__ready; then
    itest_log "zsnap did not come up; log tail:"
    tail -n 30 "$ZSNAP_LOG" >&2
    return 1
  fi
  itest_log "zsnap pid $ZSNAP_PID serving $ZSNAP_SOCKET root $ZSNAP_ROOT"
}

# True once the daemon is alive and its socket accepts a connection.
zsnap__ready() {
  kill -0 "$ZSNAP_PID" 2>/dev/null || return 99
  [[ -S $ZSNAP_SOCKET ]] || return 1
  itest_socket_accepts "$ZSNAP_SOCKET"
}

# itest_socket_accepts PATH: true if a unix stream socket at PATH accepts a connection.
itest_socket_accepts() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(sys.argv[1])' "$1" 2>/dev/null
  else
    [[ -S $1 ]]
  fi
}

# zsnap_stop [SIGNAL]: stop the daemon. Default: SIGTERM, wait 15 s, then SIGKILL. With SIGNAL
# (e.g. KILL for a crash test) send just that and wait for the process to go. Safe to repeat.
zsnap_stop() {
  local sig=${1:-}
  [[ -n ${ZSNAP_PID:-} ]] || return 0
  if [[ -n $sig ]]; then
    kill -"$sig" "$ZSNAP_PID" 2>/dev/null || true
    itest_wait_for 15 "zsnap pid $ZSNAP_PID to exit" itest__pid_gone "$ZSNAP_PID" || true
    wait "$ZSNAP_PID" 2>/dev/null || true
  else
    itest_kill_pid "$ZSNAP_PID" 15
  fi
  ZSNAP_PID=
}

# zsnap_running: true if the daemon started by zsnap_start is still alive.
zsnap_running() {
  [[ -n ${ZSNAP_PID:-} ]] && kill -0 "$ZSNAP_PID" 2>/dev/null
}
