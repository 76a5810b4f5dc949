#!/usr/bin/env bash
# Soak (issue 11): 50 concurrent CRI pulls of 10 images through zsnap while zsnap's view of the
# registry breaks at random (hostile/fault_proxy.py between zsnap and a real docker-registry:
# connection resets, 5xx, stalls, truncated and corrupted bodies; containerd reaches the
# registry directly, as it would a healthy mirror). Two rounds: a fixed seed, then a random one
# (printed; ZSNAP_SOAK_SEED=N repeats it). Each round: every pull succeeds (zsnap falls back
# where it must), every image's container sees its own files, zsnap never dies; afterwards its
# peak RSS is under 256 MiB, nothing is left in staging, its threads and fds are back near the
# idle count.
# Needs: ZSNAP_BIN, root, overlayfs; containerd, runc, docker-registry, python3, jq, curl.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/all.sh"

itest_init soak
itest_require_cmd python3 jq curl gzip zstd
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
IMAGES=10
PULLS=50
SEEDS=(1 "${ZSNAP_SOAK_SEED:-$(( $(date +%s) % 100000 ))}")
itest_log "seeds ${SEEDS[*]} (ZSNAP_SOAK_SEED=${SEEDS[1]} repeats the second round)"

ITEST_CURRENT=setup
export CONTAINERD_WITH_CRI=1
export CONTAINERD_CRI_REGISTRY_CONFIG_PATH=$ITEST_DIR/containerd-certs.d
ZSNAP_HOSTS=$ITEST_DIR/zsnap-certs.d
mkdir -p "$ZSNAP_HOSTS"
registry_start || itest_die "docker-registry did not start"
containerd_cri_registry_http "$REGISTRY_ADDR" || itest_die "cannot write hosts.toml"
comps=(gzip zstd mixed)
for ((i = 0; i < IMAGES; i++)); do
  IMAGE_LAYER3_TEXT="soak image $i" image_build_oci "$ITEST_DIR/oci-$i" v1 "${comps[i % 3]}" ||
    itest_die "could not build image $i"
  image_push_raw "$ITEST_DIR/oci-$i" v1 "soak/img$i:v1" >/dev/null || itest_die "push of image $i failed"
done

zsnap_start "" "[remote]
hosts_dir = \"$ZSNAP_HOSTS\"
max_attempts = 2
connect_timeout_s = 5" || itest_die "zsnap did not start (log: $ZSNAP_LOG)"
containerd_start || itest_die "containerd with CRI did not start (log: $CONTAINERD_LOG)"

k8s_ctr() { CTR_NAMESPACE=k8s.io itest_ctr "$@"; }
snapshots_in() { k8s_ctr snapshot --snapshotter "$1" ls 2>/dev/null | awk 'NR > 1 {print $1}' | sort; }
proc_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
zsnap_threads() { proc_field "$ZSNAP_PID" Threads; }
zsnap_fds() { find "/proc/$ZSNAP_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
staging_entries() { find "$ZSNAP_ROOT/staging" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
IDLE_THREADS=$(zsnap_threads)
IDLE_FDS=$(zsnap_fds)

for round in 0 1; do
  seed=${SEEDS[round]}
  ITEST_CURRENT=round-$round
  # zsnap's hosts.toml names this round's fault proxy; containerd keeps the registry itself.
  rm -f "$ITEST_DIR/proxy-$round.port"
  python3 "$here/hostile/fault_proxy.py" --upstream "$REGISTRY_ADDR" --seed "$seed" \
    --port-file "$ITEST_DIR/proxy-$round.port" --log "$ITEST_DIR/proxy-$round.jsonl" --stall-s 40 \
    >"$ITEST_DIR/proxy-$round.out" 2>&1 &
  proxy_pid=$!
  itest_track_pid "$proxy_pid"
  itest_on_exit "kill $proxy_pid 2>/dev/null || true"
  itest_wait_for 30 "fault proxy" test -s "$ITEST_DIR/proxy-$round.port" || itest_die "fault proxy did not start"
  proxy=127.0.0.1:$(cat "$ITEST_DIR/proxy-$round.port")
  rm -rf "${ZSNAP_HOSTS:?}"/*
  mkdir -p "$ZSNAP_HOSTS/$REGISTRY_ADDR"
  printf 'server = "http://%s"\n' "$proxy" >"$ZSNAP_HOSTS/$REGISTRY_ADDR/hosts.toml"

  mark=$(wc -l <"$ZSNAP_LOG")
  pids=()
  for ((p = 0; p < PULLS; p++)); do
    img=$REGISTRY_ADDR/soak/img$((p % IMAGES)):v1
    "$ZSNAP_BIN" pull --cri-endpoint "$CONTAINERD_ADDRESS" --timeout 5m "$img" \
      >"$ITEST_DIR/pull-$round-$p.out" 2>&1 &
    pids+=($!)
  done
  failed=0
  for p in "${!pids[@]}"; do
    wait "${pids[p]}" || { failed=$((failed + 1)); itest_log "pull $p: $(tail -n 2 "$ITEST_DIR/pull-$round-$p.out")"; }
  done
  faults=$(jq -r 'select(.fault != null) | .fault' "$ITEST_DIR/proxy-$round.jsonl" | sort | uniq -c | tr '\n' ' ')
  itest_log "round $round (seed $seed): faults injected: $faults"
  itest_check_eq "round-$round-all-$PULLS-pulls-succeed" 0 "$failed"
  itest_check "round-$round-faults-were-injected" test -n "$faults"
  # The faults must not have pushed everything onto containerd: zsnap still provides layers.
  provided=$(tail -n +"$((mark + 1))" "$ZSNAP_LOG" | grep -c 'remote op=prepare .*committed=true')
  fellback=$(tail -n +"$((mark + 1))" "$ZSNAP_LOG" | grep -c 'remote op=fallback')
  itest_log "round $round: zsnap provided $provided layer prepares, fell back on $fellback"
  itest_check "round-$round-zsnap-provides-layers" test "$provided" -gt 0
  itest_check "round-$round-zsnap-alive" zsnap_running
  for ((i = 0; i < IMAGES; i++)); do
    got=$(k8s_ctr run --rm --runc-root "$ITEST_DIR/runc" --snapshotter zsnap \
      "$REGISTRY_ADDR/soak/img$i:v1" "soak-$$-$round-$i" cat /data/layer3.txt 2>&1)
    itest_check_eq "round-$round-image-$i-content" "soak image $i" "$got"
  done
  for ((i = 0; i < IMAGES; i++)); do
    "$ZSNAP_BIN" rmi --cri-endpoint "$CONTAINERD_ADDRESS" "$REGISTRY_ADDR/soak/img$i:v1" >/dev/null 2>&1
  done
  gone() { [[ -z $(snapshots_in zsnap) ]]; }
  itest_wait_for 120 "GC of the soak images" gone || itest_fail "round-$round-gc" "left: $(snapshots_in zsnap | wc -l) snapshots"
  kill "$proxy_pid" 2>/dev/null
done

ITEST_CURRENT=after
itest_check after-zsnap-never-died zsnap_running
hwm=$(proc_field "$ZSNAP_PID" VmHWM)
itest_log "zsnap peak RSS ${hwm} kB; idle threads $IDLE_THREADS fds $IDLE_FDS"
itest_check "after-peak-rss-under-256MiB(${hwm}kB)" test "${hwm:-999999999}" -lt 262144
settled() {
  (($(staging_entries) == 0 && $(zsnap_threads) <= IDLE_THREADS + 8 && $(zsnap_fds) <= IDLE_FDS + 8))
}
if itest_wait_for 90 "zsnap to settle" settled; then
  itest_pass after-staging-threads-fds-settle
else
  itest_fail after-staging-threads-fds-settle \
    "staging $(staging_entries), threads $(zsnap_threads) (idle $IDLE_THREADS), fds $(zsnap_fds) (idle $IDLE_FDS)"
fi
itest_check_eq after-no-crash-lines 0 "$(grep -ciE 'terminate called|segmentation|AddressSanitizer|abort' "$ZSNAP_LOG")"
itest_report
