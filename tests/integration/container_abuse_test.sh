#!/usr/bin/env bash
# A hostile container through the Snapshots API (issue 11): an active snapshot whose rw dir
# holds a 40,000-deep directory chain and 100k files, then Usage (what CRI calls periodically),
# Remove (default fd limit: the recursion depth is the threat), then a zsnap restart with
# RLIMIT_NOFILE lowered to 256 (prlimit) and Usage + Remove again (fd exhaustion).
# zsnap must survive every call (pid alive, answers a Prepare) and Remove must leave nothing.
# Needs: ZSNAP_BIN, root, overlayfs; containerd, python3, prlimit.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"
itest_init container_abuse
itest_require_cmd python3 prlimit timeout
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"

ITEST_CURRENT=setup
zsnap_start || itest_die "zsnap did not start"
containerd_start || itest_die "containerd did not start"
sn() { timeout 120 "${CONTAINERD_BIN_DIR:-/usr/bin}/ctr" --address "$CONTAINERD_ADDRESS" \
  --namespace "$CTR_NAMESPACE" snapshot --snapshotter zsnap "$@"; }
# alive NAME: zsnap's pid is alive and it answers a Prepare (then the probe is removed).
alive() {
  local key=probe-$RANDOM
  if zsnap_running && sn prepare "$key" >/dev/null 2>&1 && sn rm "$key" >/dev/null 2>&1; then
    itest_pass "$1"
  else
    itest_fail "$1" "zsnap dead or not answering; log tail: $(tail -n 5 "$ZSNAP_LOG")"
  fi
}
dirs_count() { find "$ZSNAP_ROOT/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# containerd removes a backend snapshot in its GC after `ctr snapshot rm` (metadata first):
# wait for the directory to go instead of reading the count once.
no_dirs() { (($(dirs_count) == 0)); }
check_no_dirs() {
  if itest_wait_for 60 "zsnap's snapshot dirs to go" no_dirs; then itest_pass "$1"; else
    itest_fail "$1" "$(dirs_count) snapshot dirs left"; fi
}

ITEST_CURRENT=deep
KEY=abuse-$$
MOUNTS=$(sn prepare --mounts "$KEY") || itest_die "prepare failed"
UPPER=$(grep -oE 'upperdir=[^,]+' <<<"$MOUNTS" | head -n1 | cut -d= -f2)
[[ -d $UPPER ]] || UPPER=$(grep -oE '/[^ ]*/fs' <<<"$MOUNTS" | head -n1)
[[ -d $UPPER ]] || itest_die "no rw dir in mounts: $MOUNTS"
# What a container can do in its rw layer: a chain deeper than PATH_MAX and 100k files.
python3 - "$UPPER" <<'PY' || itest_die "could not build the hostile tree"
import os, sys
os.chdir(sys.argv[1])
os.mkdir("many")
fd = os.open("many", os.O_RDONLY)
for i in range(100000):
    os.close(os.open("f%d" % i, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
os.close(fd)
os.mkdir("deep"); os.chdir("deep")
for _ in range(40000):
    os.mkdir("d"); os.chdir("d")
PY
OUT=$(sn usage "$KEY" 2>&1)
itest_check_match deep-usage-answers "$KEY" "$OUT"
alive deep-alive-after-usage
itest_check deep-remove sn rm "$KEY"
alive deep-alive-after-remove
check_no_dirs deep-remove-leaves-nothing

ITEST_CURRENT=restart
alive_wait() { local k=p-$RANDOM; sn prepare "$k" >/dev/null 2>&1 && sn rm "$k" >/dev/null 2>&1; }
# If the deep phase killed zsnap (today's recursive walk), bring it back for the next phase.
if ! zsnap_running; then
  zsnap_start "$ZSNAP_ROOT" || itest_die "zsnap did not restart after the deep phase"
  itest_wait_for 60 "containerd to reach the restarted zsnap" alive_wait || itest_die "no reconnect"
fi
KEY2=abuse2-$$
MOUNTS=$(sn prepare --mounts "$KEY2") || itest_die "prepare 2 failed"
UPPER=$(grep -oE 'upperdir=[^,]+' <<<"$MOUNTS" | head -n1 | cut -d= -f2)
[[ -d $UPPER ]] || UPPER=$(grep -oE '/[^ ]*/fs' <<<"$MOUNTS" | head -n1)
python3 -c 'import os,sys
os.chdir(sys.argv[1])
for _ in range(40000): os.mkdir("d"); os.chdir("d")' "$UPPER" || itest_die "deep tree 2"
zsnap_stop
zsnap_start "$ZSNAP_ROOT" || itest_die "zsnap did not restart"
prlimit --pid "$ZSNAP_PID" --nofile=256:256 || itest_die "prlimit failed"
itest_wait_for 60 "containerd to reach the restarted zsnap" alive_wait || itest_fail restart-reconnect
itest_check_match restart-usage-answers "$KEY2" "$(sn usage "$KEY2" 2>&1)"
alive restart-alive-after-usage
itest_check restart-remove sn rm "$KEY2"
check_no_dirs restart-remove-leaves-nothing
alive restart-alive-at-end
itest_report
