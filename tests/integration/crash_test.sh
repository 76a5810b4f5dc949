#!/usr/bin/env bash
# Acceptance 4: zsnap survives kill -9 at any instant. Metadata is the truth and directories
# follow it, so after a crash the store must open, Cleanup must make the disk agree with it,
# and committed content must be intact.
#
# Setup: zsnap, a private containerd using it as [proxy_plugins.zsnap], the three-layer test
# image pulled through zsnap; then a committed snapshot "crash-base" with a known tree
# (tools/snapctl seed) made directly through containerd's proxy client.
# Loop (ZSNAP_CRASH_ITERATIONS, default 20): start tools/burst (8 workers of
# Prepare/Commit/View/Remove on crash-base), wait for its first round, wait a random
# 50-500 ms, kill -9 zsnap, restart it on the same root, then check:
#   * the daemon answers List; Cleanup succeeds;
#   * the number of entries in <root>/snapshots equals the number of listed snapshots;
#   * crash-base is intact (View + read-only mount + compare with the known tree);
#   * burst saw no error other than the daemon going away (Unavailable);
#   * the burst's snapshots can all be removed, and the count still matches afterwards.
# containerd stays up throughout and must reconnect on its own: after the loop the image's
# snapshots are still listed and `ctr run --snapshotter zsnap` works.
# ZSNAP_CRASH_SEED fixes the random delays (bash $RANDOM seed) to replay a run.
#
# containerd's GC removes backend snapshots it does not know (metadata/snapshot.go
# garbageCollect), but only after it deleted a zsnap snapshot itself; nothing here deletes
# through containerd until the final `ctr run --rm`, which comes after all direct checks.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/all.sh"

itest_init crash
itest_require_cmd go python3 skopeo jq curl unshare
iterations=${ZSNAP_CRASH_ITERATIONS:-20}
seed=${ZSNAP_CRASH_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$seed
itest_log "iterations=$iterations seed=$seed (ZSNAP_CRASH_SEED=$seed replays the delays)"

ITEST_CURRENT=build
bin=$ITEST_DIR/bin
if ! out=$(bash "$here/tools/build.sh" "$bin" 2>&1); then
  itest_die "building tests/integration/tools failed: $out"
fi
itest_pass build
export TMPDIR=$ITEST_DIR/tmp   # snapctl's temporary mounts, unmounted by the exit trap
mkdir -p "$TMPDIR"

snapctl() { "$bin/snapctl" -address "$ZSNAP_SOCKET" "$@"; }
dir_count() { find "$ZSNAP_ROOT/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# check_consistent NAME: PASS if <root>/snapshots has one entry per listed snapshot.
check_consistent() {
  local listed dirs
  if ! listed=$(snapshots_listed); then
    itest_fail "$1" "List failed"
    return 1
  fi
  dirs=$(dir_count)
  if [[ $listed == "$dirs" ]]; then
    itest_pass "$1"
  else
    itest_fail "$1" "store lists $listed snapshots but $ZSNAP_ROOT/snapshots has $dirs entries
store:
$(snapctl list 2>&1 | head -n 40)
dirs:
$(ls -la "$ZSNAP_ROOT/snapshots" 2>&1 | head -n 40)"
    return 1
  fi
}
snapshots_listed() { snapctl count; }

# --- setup ------------------------------------------------------------------------------
ITEST_CURRENT=setup
zsnap_start || itest_die "zsnap did not start (log: $ZSNAP_LOG)"
with_containerd=1
if ! containerd_start; then
  itest_fail crash.containerd-start "containerd did not start; log tail: $(tail -n 20 "$CONTAINERD_LOG")"
  with_containerd=
fi
if [[ -n $with_containerd ]]; then
  registry_start || itest_die "docker-registry did not start"
  image_build_oci "$ITEST_DIR/oci" v1 none || itest_die "could not build the test image"
  image_push "$ITEST_DIR/oci" v1 itest/crash:gz gzip >/dev/null || itest_die "skopeo push failed"
  IMAGE=$REGISTRY_ADDR/itest/crash:gz
  if itest_check crash.pull-through-zsnap itest_ctr image pull --plain-http --snapshotter zsnap "$IMAGE"; then
    image_snapshots=$(itest_ctr snapshot --snapshotter zsnap ls | awk 'NR > 1 {print $1}' | sort)
    itest_log "image snapshots in containerd: $(tr '\n' ' ' <<<"$image_snapshots")"
  else
    tail -n 20 "$ZSNAP_LOG" >&2
    with_containerd=
  fi
fi
itest_check crash.seed-base snapctl seed crash-base || itest_die "could not create crash-base"
check_consistent crash.dirs-match-store-before-loop

# --- kill loop ----------------------------------------------------------------------------
burst_ready() {
  grep -q '^ready$' "$1" 2>/dev/null && return 0
  kill -0 "$2" 2>/dev/null || return 99
  return 1
}

for ((i = 1; i <= iterations; i++)); do
  n=$(printf '%02d' "$i")
  ITEST_CURRENT=crash.$n
  out=$ITEST_DIR/burst.$n.out err=$ITEST_DIR/burst.$n.err
  "$bin/burst" -address "$ZSNAP_SOCKET" -base crash-base -prefix "burst$n" -workers 8 \
    -duration 60s >"$out" 2>"$err" &
  burst_pid=$!
  if ! itest_wait_for 30 "burst $n to start" burst_ready "$out" "$burst_pid"; then
    itest_fail "crash.$n.burst-started" "burst did not complete a round: $(cat "$err")"
    kill -KILL "$burst_pid" 2>/dev/null
    wait "$burst_pid" 2>/dev/null
    continue
  fi
  delay_ms=$((50 + RANDOM % 451))
  sleep "$(printf '0.%03d' "$delay_ms")"
  zsnap_stop KILL
  itest_log "iteration $n: killed zsnap after ${delay_ms} ms of burst"

  # The burst ends on its own once every call fails with Unavailable.
  if ! itest_wait_for 30 "burst $n to notice the crash" itest__pid_gone "$burst_pid"; then
    kill -KILL "$burst_pid" 2>/dev/null
  fi
  burst_rc=0
  wait "$burst_pid" 2>/dev/null || burst_rc=$?
  if ((burst_rc == 0)); then
    itest_pass "crash.$n.burst-only-unavailable-errors"
  else
    itest_fail "crash.$n.burst-only-unavailable-errors" "burst exit $burst_rc: $(head -n 20 "$err")"
  fi
  itest_log "iteration $n: $(tail -n 1 "$out")"

  if ! zsnap_start; then
    itest_fail "crash.$n.restart" "zsnap did not restart after kill -9; log tail:
$(tail -n 30 "$ZSNAP_LOG")"
    itest_die "zsnap cannot restart on its root after a crash; stopping the loop"
  fi
  itest_pass "crash.$n.restart"
  itest_check "crash.$n.list" snapctl ping || continue
  itest_check "crash.$n.cleanup" snapctl cleanup
  check_consistent "crash.$n.dirs-match-store"
  itest_check "crash.$n.base-intact" snapctl verify crash-base
  if itest_check "crash.$n.remove-burst-snapshots" snapctl wipe-prefix "burst$n"; then
    check_consistent "crash.$n.dirs-match-store-after-remove"
  fi
done

# --- after the loop -----------------------------------------------------------------------
ITEST_CURRENT=final
itest_check crash.final-base-intact snapctl verify crash-base
itest_check crash.final-cleanup snapctl cleanup
check_consistent crash.final-dirs-match-store
if [[ -n $with_containerd ]]; then
  # containerd dials lazily with back-off (max 3 s): wait until it reaches the new zsnap.
  itest_wait_for 30 "containerd to reach the restarted zsnap" \
    itest_ctr snapshot --snapshotter zsnap ls
  now=$(itest_ctr snapshot --snapshotter zsnap ls 2>/dev/null | awk 'NR > 1 {print $1}' | sort)
  itest_check_eq crash.containerd-still-lists-image-snapshots "$image_snapshots" "$now"
  out=$(itest_ctr run --rm --snapshotter zsnap "$IMAGE" crash-run \
    sh -c 'cat /data/hello.txt /data/layer3.txt' 2>&1)
  itest_check_eq crash.ctr-run-after-kills "$IMAGE_EXPECT_HELLO"$'\n'"$IMAGE_EXPECT_LAYER3" "$out"
fi
zsnap_running && itest_pass crash.zsnap-alive-at-end || itest_fail crash.zsnap-alive-at-end
itest_report
