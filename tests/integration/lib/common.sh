# Shared helpers for zsnap's integration tests: scratch space, cleanup, polling, free ports and
# a tiny PASS/FAIL report. Source lib/all.sh (which sources this file first) from a test script.
#
# Conventions
# * Every public function is prefixed `itest_`; variables it sets are upper-case `ITEST_*`.
# * Functions work under `set -euo pipefail` and return non-zero instead of exiting, except
#   itest_die / itest_skip, which end the script (and run the cleanup trap).
# * Nothing here uses fixed ports or sleeps as synchronisation: ports come from the kernel,
#   readiness is polled with a timeout.

# Guard against double sourcing.
if [[ -n ${ZSNAP_ITEST_COMMON_SH:-} ]]; then return 0; fi
ZSNAP_ITEST_COMMON_SH=1

# shellcheck disable=SC2034  # for scripts that need files beside the library
ITEST_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ITEST_PASSED=0
ITEST_FAILED=0
ITEST_CLEANUPS=()   # commands run (last registered first) by itest_cleanup

# itest_log MSG...: one line on stderr, prefixed with the test name and time.
itest_log() {
  printf '[%s %s] %s\n' "${ITEST_NAME:-itest}" "$(date +%H:%M:%S)" "$*" >&2
}

# itest_die MSG...: log MSG, count it as a failure, print the report and exit 1.
itest_die() {
  itest_log "FATAL: $*"
  echo "FAIL ${ITEST_CURRENT:-setup}: $*"
  ITEST_FAILED=$((ITEST_FAILED + 1))
  itest_report || true
  exit 1
}

# itest_skip REASON: print a loud SKIP line and exit 77 (ctest's skip code for these tests).
itest_skip() {
  echo "SKIP ${ITEST_NAME:-itest}: $*"
  itest_log "SKIPPED: $*"
  exit 77
}

# itest_require_root_overlay: skip (77) unless running as root with overlayfs available. These
# are the only reasons a test may skip.
itest_require_root_overlay() {
  if [[ $(id -u) -ne 0 ]]; then itest_skip "needs root"; fi
  if ! grep -qw overlay /proc/filesystems; then
    modprobe overlay 2>/dev/null || true
    grep -qw overlay /proc/filesystems || itest_skip "overlayfs is not available"
  fi
}

# itest_require_cmd CMD...: die unless every CMD is on PATH (missing packages are failures, not
# skips: scripts/setup.sh installs them).
itest_require_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || itest_die "required command '$c' not found (scripts/setup.sh)"
  done
}

# itest_init NAME: start a test script. Checks root/overlayfs (skip 77 otherwise), creates the
# scratch dir ITEST_DIR=${ZSNAP_BUILD_DIR:-/tmp}/itest/NAME.XXXXXX and a short socket dir
# ITEST_SOCK_DIR (unix socket paths are limited to 107 bytes, build trees can be deep), and
# installs an EXIT/INT/TERM trap running itest_cleanup. Set ITEST_KEEP=1 to keep the scratch dir.
itest_init() {
  ITEST_NAME=$1
  itest_require_root_overlay
  local base=${ZSNAP_BUILD_DIR:-/tmp}/itest
  mkdir -p "$base"
  ITEST_DIR=$(mktemp -d "$base/$ITEST_NAME.XXXXXX")
  if ((${#ITEST_DIR} <= 60)); then
    ITEST_SOCK_DIR=$ITEST_DIR/sock
    mkdir -p "$ITEST_SOCK_DIR"
  else
    ITEST_SOCK_DIR=$(mktemp -d /tmp/zsit.XXXXXX)
  fi
  export ITEST_NAME ITEST_DIR ITEST_SOCK_DIR
  itest_reap_stale "$base"
  printf '%s %s %s\n' "$$" "$(itest_pid_start_time $$)" "$ITEST_SOCK_DIR" >"$ITEST_DIR/.owner"
  trap 'itest_cleanup' EXIT
  trap 'itest_log "interrupted"; exit 130' INT
  trap 'itest_log "terminated"; exit 143' TERM
  itest_log "scratch dir $ITEST_DIR"
}

# itest_pid_start_time PID: the process start time (jiffies since boot) from /proc; together
# with the pid it identifies one process even after pid reuse.
itest_pid_start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # fields after "(comm)"; start time is field 22 of the whole line
  awk '{print $20}' <<<"$stat"
}

# itest_track_pid PID: note a daemon PID this test started in $ITEST_DIR/.pids, so that a later
# run can stop it if this test is killed before its cleanup trap runs (itest_reap_stale).
itest_track_pid() {
  printf '%s %s\n' "$1" "$(itest_pid_start_time "$1")" >>"$ITEST_DIR/.pids"
}

# itest_reap_stale BASE: clean up after earlier runs that died without cleanup (SIGKILL, CI
# timeout): for each BASE/*/ whose .owner process is gone, SIGKILL the daemons it tracked (only
# if pid and start time still match), unmount everything below it and remove it and its socket
# dir. Scratch dirs of live runs are left alone.
itest_reap_stale() {
  local base=$1 dir owner start sockdir pid pstart
  for dir in "$base"/*/; do
    dir=${dir%/}
    [[ -f $dir/.owner && $dir != "${ITEST_DIR:-}" ]] || continue
    read -r owner start sockdir <"$dir/.owner" || continue
    if [[ -n $owner && $(itest_pid_start_time "$owner") == "$start" ]]; then continue; fi
    itest_log "reaping stale scratch dir $dir (owner pid $owner is gone)"
    if [[ -f $dir/.pids ]]; then
      while read -r pid pstart; do
        if [[ -n $pid && $(itest_pid_start_time "$pid") == "$pstart" ]]; then
          kill -KILL "$pid" 2>/dev/null || true
        fi
      done <"$dir/.pids"
    fi
    # Shims of its containerd outlive it; they name its socket (in sockdir) in -address.
    local cmd c
    for pid in $(pgrep -f containerd-shim 2>/dev/null); do
      cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
      [[ -n $sockdir && $cmd == *"-address $sockdir/"* ]] || continue
      for c in $(itest_descendants "$pid") "$pid"; do kill -KILL "$c" 2>/dev/null || true; done
    done
    itest_unmount_below "$dir"
    # runc state of its namespaces (containerd.sh names them itest-<owner pid>[-suffix]).
    rm -rf "/run/containerd/runc/itest-$owner" "/run/containerd/runc/itest-$owner"-*
    rm -rf --one-file-system "$dir"
    [[ -z $sockdir || $sockdir == "$dir"/* || ! -d $sockdir ]] || rm -rf "$sockdir"
  done
}

# itest_on_exit CMD...: register a cleanup command; itest_cleanup runs them in reverse order.
# The command is stored as one string and run with eval, so quote arguments (printf %q).
itest_on_exit() {
  ITEST_CLEANUPS+=("$*")
}

# itest_cleanup: run registered cleanups (newest first, each failure logged, none fatal),
# unmount everything below ITEST_DIR, remove the scratch and socket dirs. Idempotent; it is the
# EXIT trap installed by itest_init, so tests normally never call it.
itest_cleanup() {
  local rc=$?
  trap - EXIT
  set +e
  local i
  for ((i = ${#ITEST_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${ITEST_CLEANUPS[i]}" || itest_log "cleanup step failed: ${ITEST_CLEANUPS[i]}"
  done
  ITEST_CLEANUPS=()
  # A script that died early (set -e, itest_die) still ends with the summary line.
  if [[ -z ${ITEST_REPORTED:-} ]] && ((rc != 0 && rc != 77)); then
    ((ITEST_FAILED > 0)) || itest_fail "${ITEST_CURRENT:-script} (exit status $rc)"
    itest_report || true
  fi
  if [[ -n ${ITEST_DIR:-} && -d $ITEST_DIR ]]; then
    itest_unmount_below "$ITEST_DIR"
    if [[ -n ${ITEST_KEEP:-} ]]; then
      itest_log "keeping $ITEST_DIR (ITEST_KEEP set)"
    else
      rm -rf --one-file-system "$ITEST_DIR" || itest_log "could not remove $ITEST_DIR"
    fi
  fi
  if [[ -n ${ITEST_SOCK_DIR:-} && -d $ITEST_SOCK_DIR && $ITEST_SOCK_DIR != "${ITEST_DIR:-}"/* ]]; then
    rm -rf "$ITEST_SOCK_DIR"
  fi
  return $rc
}

# itest_unmount_below DIR: unmount every mount point at or below DIR, deepest first (lazy
# unmount as a last resort). Safe to call when nothing is mounted.
itest_unmount_below() {
  local dir mp
  dir=$(readlink -f "$1")
  local _
  for _ in 1 2 3; do
    # mountinfo field 5 is the mount point, with space/tab/newline/backslash octal-escaped.
    local -a mps=()
    while IFS= read -r mp; do
      mp=$(printf '%b' "$mp")
      if [[ $mp == "$dir" || $mp == "$dir"/* ]]; then mps+=("$mp"); fi
    done < <(awk '{print $5}' /proc/self/mountinfo)
    ((${#mps[@]} == 0)) && return 0
    while IFS= read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null ||
        itest_log "could not unmount $mp"
    done < <(printf '%s\n' "${mps[@]}" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
  done
}

# itest_wait_for TIMEOUT_S DESCRIPTION CMD...: poll CMD (every 0.1 s) until it succeeds; return 1
# and log DESCRIPTION if it has not succeeded within TIMEOUT_S seconds. If CMD exits 99 the
# wait is hopeless (e.g. the daemon died) and it returns 1 at once.
itest_wait_for() {
  local timeout=$1 desc=$2 rc
  shift 2
  local deadline=$((SECONDS + timeout))
  while true; do
    rc=0
    "$@" >/dev/null 2>&1 || rc=$?
    ((rc == 0)) && return 0
    if ((rc == 99)); then
      itest_log "gave up waiting for $desc"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      itest_log "timed out after ${timeout}s waiting for $desc"
      return 1
    fi
    sleep 0.1
  done
}

# itest_descendants PID: print the pids of all descendants of PID (children first, then theirs).
itest_descendants() {
  local -a queue=("$1")
  local p c
  while ((${#queue[@]})); do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
      echo "$c"
      queue+=("$c")
    done
  done
}

# itest_free_port: print a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks
# it; bind to it promptly). Uses python3 when present, else scans the ephemeral range with ss.
itest_free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local lo hi p
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
  for _ in $(seq 1 200); do
    p=$((lo + RANDOM % (hi - lo)))
    if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
  done
  return 1
}

# itest_kill_pid PID [TIMEOUT_S]: SIGTERM PID, wait up to TIMEOUT_S (default 10) for it to go,
# then SIGKILL. Only for processes this test started. Returns 0 if PID is gone.
itest_kill_pid() {
  local pid=$1 timeout=${2:-10}
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! itest_wait_for "$timeout" "pid $pid to exit" itest__pid_gone "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    itest_wait_for 5 "pid $pid to die" itest__pid_gone "$pid" || return 1
  fi
  wait "$pid" 2>/dev/null || true
  return 0
}
itest__pid_gone() { ! kill -0 "$1" 2>/dev/null || [[ $(ps -o stat= -p "$1" 2>/dev/null) == Z* ]]; }

# --- assertions and report ---------------------------------------------------------------

# All itest_check* functions print `PASS NAME` or `FAIL NAME` (the reason on stderr) and
# return non-zero on failure, so a caller can skip dependent checks (`itest_check ... || return`).
# Scripts should not run under `set -e` at top level, or the first FAIL ends them (the EXIT
# trap still prints the summary).

# itest_pass NAME / itest_fail NAME [WHY]: record one check result.
itest_pass() {
  ITEST_PASSED=$((ITEST_PASSED + 1))
  echo "PASS $1"
}
itest_fail() {
  ITEST_FAILED=$((ITEST_FAILED + 1))
  echo "FAIL $1"
  [[ -z ${2:-} ]] || itest_log "  $1: $2"
}

# itest_check NAME CMD...: run CMD; PASS if it exits 0, else FAIL with its output.
itest_check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then itest_pass "$name"; else itest_fail "$name" "command failed: $* :: ${out:0:2000}"; return 1; fi
}

# itest_check_fails NAME CMD...: PASS if CMD exits non-zero (an expected refusal).
itest_check_fails() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then itest_fail "$name" "command unexpectedly succeeded: $* :: ${out:0:2000}"; return 1; else itest_pass "$name"; fi
}

# itest_check_eq NAME EXPECTED ACTUAL: PASS if the strings are equal.
itest_check_eq() {
  if [[ $2 == "$3" ]]; then itest_pass "$1"; else itest_fail "$1" "expected [$2] got [$3]"; return 1; fi
}

# itest_check_match NAME REGEX ACTUAL: PASS if ACTUAL matches the extended REGEX (grep -E).
itest_check_match() {
  if grep -qE -- "$2" <<<"$3"; then itest_pass "$1"; else itest_fail "$1" "[$3] does not match /$2/"; return 1; fi
}

# itest_report: print `N passed, N failed` and return 1 if anything failed or nothing ran.
itest_report() {
  ITEST_REPORTED=1
  echo "$ITEST_PASSED passed, $ITEST_FAILED failed"
  ((ITEST_FAILED == 0 && ITEST_PASSED > 0))
}
