#!/usr/bin/env bash
# Cold-start benchmark driver: what `zsnap bench` runs. For every rep, image, codec and mode
# (containerd's native overlayfs, zsnap), on a freshly made ext4 holding all of containerd's
# and zsnap's state, with fresh processes and the page cache dropped: a CRI PullImage (as
# kubelet makes it, through `zsnap pull --cri-endpoint`), then `ctr -n k8s.io run` of the image
# with a command that prints a ready line. Modes alternate within a rep, and their order
# rotates from rep to rep. See bench/README.md ("Cold start") for the rules.
#
#   cold_start.sh --zsnap BIN --out DIR [--reps N] [--images "python minbase smallfiles"]
#                 [--codecs "gzip zstd zstd19"] [--modes "native zsnap"] [--cache DIR]
#                 [--rate RATE] [--img-dir DIR]
#
# Defaults: --images python, --codecs "gzip zstd". zstd19 is the same image compressed with
# zstd -19 (images.sh's oci-*-zstd19 layouts).
#
# Writes DIR/runs.jsonl (one JSON object per run, appended as runs finish), DIR/logs/ (every
# daemon log; zsnap's per-layer "remote layer" lines), DIR/env.txt. `zsnap bench` renders the
# table, CSV, JSON and chart from runs.jsonl. Progress goes to stderr.
#
# --rate RATE (e.g. 1gbit, 400mbit): the registry runs in a network namespace the script
# creates, reached over a veth pair whose both ends are shaped with `tc tbf` to RATE.
#
# Needs root (mkfs, mount, drop_caches, containerd), containerd + ctr + runc, docker-registry,
# curl, jq, and the images built by images.sh in --cache (default /var/tmp/zsnap-bench-v2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
zsnap=""
out=""
reps=3
images="python"
codecs="gzip zstd"
modes="native zsnap"
cache=${ZSNAP_BENCH_CACHE:-/var/tmp/zsnap-bench-v2}
rate=""
img_dir=${BENCH_IMG_DIR:-/dev/shm}
bin_dir=${CONTAINERD_BIN_DIR:-/usr/bin}
while [[ $# -gt 0 ]]; do
  case $1 in
    --zsnap) zsnap=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --codecs) codecs=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --img-dir) img_dir=$2; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "cold_start.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { printf 'zsnap bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (mkfs, mount, drop_caches, containerd)"
[[ -x $zsnap ]] || die "--zsnap BIN: no zsnap binary at '$zsnap'"
[[ -n $out ]] || die "--out DIR is required"
for t in "$bin_dir/containerd" "$bin_dir/ctr" /usr/bin/docker-registry; do
  [[ -x $t ]] || die "missing $t"
done
for t in curl jq mkfs.ext4 losetup; do command -v "$t" >/dev/null || die "missing $t"; done

mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
work=$out/work
sock=/run/zsnap-bench.$$            # unix socket paths must stay short
mkdir -p "$work"
runs=$out/runs.jsonl
: >"$runs"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --- images -------------------------------------------------------------------------------
# layout_of IMAGE CODEC: images.sh's OCI layout (CODEC gzip, zstd or zstd19).
layout_of() {
  case $1 in
    python) echo "$cache/oci-$2" ;;
    *) echo "$cache/oci-$1-$2" ;;
  esac
}
# smallfiles: stat every file of the tree (its count and total size, the same in every mode:
# logs/*.run.out) and read every header under include/ (5.7k files, 25 MB), as a build starts.
# Reading all 443 MB instead took ~18 s on the 2-core machine, more than the pull itself.
read -r -d '' SMALLFILES_READY <<'EOF' || true
cd /usr/src/linux-source-6.1
find . -type f -printf '%s\n' | awk '{ n++; s += $1 } END { print "files", n, "bytes", s }'
echo "include/ read: $(find include -type f -exec cat {} + | wc -c) bytes"
echo ready
EOF
# ready_cmd_of IMAGE: sets READY_CMD, the container's command; it prints "ready" last.
ready_cmd_of() {
  case $1 in
    python) READY_CMD=(python3 -c 'import numpy, scipy, pandas; print("ready")') ;;
    smallfiles) READY_CMD=(sh -ec "$SMALLFILES_READY") ;;
    *) READY_CMD=(sh -c 'echo ready') ;;
  esac
}
for image in $images; do
  for codec in $codecs; do
    l=$(layout_of "$image" "$codec")
    [[ -f $l/index.json ]] || die "no OCI layout $l: run 'zsnap bench images' (bench/images.sh) first"
  done
done

# --- cleanup --------------------------------------------------------------------------------
pids=()
netns=""
loopdev=""
mnt=$work/mnt
registry_store=/dev/shm/zsnap-bench-registry.$$
cleanup() {
  set +e
  ! declare -F stop_daemons >/dev/null || stop_daemons
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  ! declare -F release_fs >/dev/null || release_fs
  [[ -z $netns ]] || { ip link del zsb-h$$ 2>/dev/null; ip netns del "$netns" 2>/dev/null; }
  rm -rf "$registry_store" "$sock"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$sock"  # only now: cleanup removes it

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() {  # SECONDS WHAT CMD...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
    sleep 0.1
  done
}

# --- registry (in tmpfs: dropping the page cache does not turn its reads into disk reads) --
reg_host=127.0.0.1
run_in_ns=()
if [[ -n $rate ]]; then
  command -v tc >/dev/null && command -v ip >/dev/null || die "--rate needs iproute2 (ip, tc)"
  netns=zsnap-bench-$$
  ip netns add "$netns"
  ip link add zsb-h$$ type veth peer name zsb-n$$
  ip link set zsb-n$$ netns "$netns"
  ip addr add 10.213.$(($$ % 250)).1/30 dev zsb-h$$
  ip link set zsb-h$$ up
  ip -n "$netns" addr add 10.213.$(($$ % 250)).2/30 dev zsb-n$$
  ip -n "$netns" link set zsb-n$$ up
  ip -n "$netns" link set lo up
  # Both directions shaped: data flows registry -> host, requests host -> registry.
  tc qdisc add dev zsb-h$$ root tbf rate "$rate" burst 256kb latency 50ms
  ip netns exec "$netns" tc qdisc add dev zsb-n$$ root tbf rate "$rate" burst 256kb latency 50ms
  reg_host=10.213.$(($$ % 250)).2
  run_in_ns=(ip netns exec "$netns")
fi
port=$(free_port)
reg=$reg_host:$port
mkdir -p "$registry_store"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $registry_store
http:
  addr: $reg
EOF
env -u REGISTRY_ADDR "${run_in_ns[@]}" /usr/bin/docker-registry serve "$work/registry.yml" \
  >"$out/logs/registry.log" 2>&1 &
pids+=($!)
wait_for 30 "registry on $reg" curl -fsS --max-time 2 "http://$reg/v2/" ||
  { tail "$out/logs/registry.log" >&2; exit 1; }
hosts=$work/certs.d
mkdir -p "$hosts/$reg"
cat >"$hosts/$reg/hosts.toml" <<EOF
server = "http://$reg"

[host."http://$reg"]
  capabilities = ["pull", "resolve"]
EOF

for image in $images; do
  for codec in $codecs; do
    "$here/push.sh" "$reg" "$(layout_of "$image" "$codec")" "zsnap-bench/$image:$codec" >/dev/null
    log "pushed $reg/zsnap-bench/$image:$codec"
  done
done

# --- per-run filesystem and daemons -------------------------------------------------------
img_file=$img_dir/zsnap-bench-cold.$$.img
fs_bytes=$((16 << 30))
make_fs() {
  truncate -s "$fs_bytes" "$img_file"
  loopdev=$(losetup --find --show "$img_file")
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loopdev"
  mkdir -p "$mnt"
  mount "$loopdev" "$mnt"
}
release_fs() {
  if mountpoint -q "$mnt"; then sync; umount "$mnt" || umount -l "$mnt"; fi
  [[ -z $loopdev ]] || losetup -d "$loopdev" 2>/dev/null || true
  loopdev=""
  rm -f "$img_file"
}

ctrd_pid=""
zsnap_pid=""
ctrd_sock=$sock/containerd.sock
ctr_() { "$bin_dir/ctr" --address "$ctrd_sock" --namespace k8s.io "$@"; }
cri_ready() {
  kill -0 "$ctrd_pid" || return 99
  local p
  p=$(ctr_ plugins ls) || return 1
  grep -qE 'io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*ok' <<<"$p" || return 1
  [[ $1 != zsnap ]] || grep -qE 'io\.containerd\.snapshotter\.v1[[:space:]]+zsnap[[:space:]].*ok' <<<"$p"
}
config_version() {
  [[ $("$bin_dir/containerd" --version) =~ [[:space:]]v?1\. ]] && echo 2 || echo 3
}
cver=$(config_version)

# start_daemons MODE TAG
start_daemons() {
  local mode=$1 tag=$2 snap=overlayfs proxy=""
  mkdir -p "$mnt/containerd/root" "$mnt/containerd/state" "$work/cni" "$work/opt"
  if [[ $mode == zsnap ]]; then
    snap=zsnap
    cat >"$work/zsnap.toml" <<EOF
root = "$mnt/zsnap"
address = "$sock/zsnap.sock"
log_level = "info"

[remote]
hosts_dir = "$hosts"
EOF
    rm -f "$sock/zsnap.sock"
    "$zsnap" serve --config "$work/zsnap.toml" >"$out/logs/$tag.zsnap.log" 2>&1 &
    zsnap_pid=$!
    wait_for 30 "zsnap" test -S "$sock/zsnap.sock" || { tail "$out/logs/$tag.zsnap.log" >&2; return 1; }
    proxy="
[proxy_plugins]
  [proxy_plugins.zsnap]
    type = \"snapshot\"
    address = \"$sock/zsnap.sock\"
  [proxy_plugins.zsnap.exports]
    root = \"$mnt/zsnap\"$([[ $cver == 2 ]] || printf '\n    enable_remote_snapshot_annotations = "true"')"
  fi
  local cri
  if [[ $cver == 2 ]]; then
    cri="
[plugins.\"io.containerd.grpc.v1.cri\"]
  disable_tcp_service = true
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\"
[plugins.\"io.containerd.grpc.v1.cri\".cni]
  conf_dir = \"$work/cni\"
[plugins.\"io.containerd.grpc.v1.cri\".containerd]
  snapshotter = \"$snap\"
  disable_snapshot_annotations = false
[plugins.\"io.containerd.grpc.v1.cri\".registry]
  config_path = \"$hosts\""
  else
    cri="
[plugins.'io.containerd.cri.v1.images']
  snapshotter = \"$snap\"
  disable_snapshot_annotations = false
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = \"$hosts\"
[plugins.'io.containerd.cri.v1.runtime'.cni]
  conf_dir = \"$work/cni\"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\""
  fi
  cat >"$work/containerd.toml" <<EOF
version = $cver
root = "$mnt/containerd/root"
state = "$mnt/containerd/state"

[grpc]
  address = "$ctrd_sock"
[ttrpc]
  address = "$ctrd_sock.ttrpc"
[debug]
  address = "$ctrd_sock.debug"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$work/opt"
$cri
$proxy
EOF
  "$bin_dir/containerd" --config "$work/containerd.toml" >"$out/logs/$tag.containerd.log" 2>&1 &
  ctrd_pid=$!
  wait_for 60 "containerd" cri_ready "$mode" || { tail "$out/logs/$tag.containerd.log" >&2; return 1; }
}

kill_wait() {  # PID SECONDS
  kill "$1" 2>/dev/null || return 0
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || { kill -KILL "$1" 2>/dev/null; break; }
    sleep 0.1
  done
  wait "$1" 2>/dev/null || true
}
stop_daemons() {
  local p cmd
  for p in $(pgrep -f containerd-shim 2>/dev/null); do
    cmd=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *"-address $ctrd_sock "* ]] && kill -KILL "$p" 2>/dev/null
  done
  [[ -z $ctrd_pid ]] || kill_wait "$ctrd_pid" 20
  [[ -z $zsnap_pid ]] || kill_wait "$zsnap_pid" 20
  ctrd_pid=""
  zsnap_pid=""
  rm -rf "/run/containerd/runc/k8s.io/zsnap-bench-$$-"* 2>/dev/null || true
}

# daemon_cpu_s: CPU seconds (user + system) used so far by containerd, the children it waited
# for (unpigz, ...) and zsnap — the whole pull's CPU bill apart from the ctr client and shim.
daemon_cpu_s() {
  local p total=0 t
  for p in $ctrd_pid $zsnap_pid; do
    # /proc/PID/stat fields 14-17: utime stime cutime cstime, in clock ticks.
    t=$( { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$p/stat"; } 2>/dev/null) || t=0
    total=$((total + ${t:-0}))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# run_one REP IMAGE CODEC MODE: one cold start; appends its record to runs.jsonl, sets RESULT.
run_one() {
  local rep=$1 image=$2 codec=$3 mode=$4
  local tag=$image-$codec-$mode-r$rep ref=$reg/zsnap-bench/$image:$codec snap=overlayfs
  [[ $mode == zsnap ]] && snap=zsnap
  local ok=true err="" pull_s=0 ready_s=0 start_s=0 image_id=""
  make_fs
  start_daemons "$mode" "$tag" || { ok=false; err="daemons did not start"; }
  if $ok; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
    local t0 t1 tr="" pull_json
    t0=$(now)
    if pull_json=$("$zsnap" pull --cri-endpoint "$ctrd_sock" --timeout 30m --json "$ref" \
      2>"$out/logs/$tag.pull.err"); then
      t1=$(now)
      image_id=$(jq -r .image_ref <<<"$pull_json")
      ready_cmd_of "$image"
      rm -f "$work/ready.t"
      "$bin_dir/ctr" --address "$ctrd_sock" --namespace k8s.io run --rm --snapshotter "$snap" \
        "$ref" "zsnap-bench-$$-$tag" "${READY_CMD[@]}" 2>"$out/logs/$tag.run.err" |
        while IFS= read -r line; do
          [[ $line != ready ]] || now >"$work/ready.t"
          printf '%s\n' "$line" >>"$out/logs/$tag.run.out"
        done
      if [[ -s $work/ready.t ]]; then
        tr=$(cat "$work/ready.t")
        pull_s=$(secs "$t0" "$t1")
        ready_s=$(secs "$t0" "$tr")
        start_s=$(secs "$t1" "$tr")
      else
        ok=false
        err="no ready line: $(tail -c 300 "$out/logs/$tag.run.err" | tr '\n"' ' ')"
      fi
    else
      ok=false
      err="pull failed: $(tail -c 300 "$out/logs/$tag.pull.err" | tr '\n"' ' ')"
    fi
  fi
  local used cpu
  used=$(df --output=used -B1 "$mnt" 2>/dev/null | tail -1 || echo 0)
  cpu=$(daemon_cpu_s)
  stop_daemons
  release_fs
  jq -cn --arg image "$image" --arg codec "$codec" --arg mode "$mode" --argjson rep "$rep" \
    --argjson ok "$ok" --arg error "$err" --argjson pull_s "$pull_s" --argjson ready_s "$ready_s" \
    --argjson start_s "$start_s" --arg image_ref "$image_id" --argjson fs_used "${used:-0}" \
    --argjson cpu_s "${cpu:-0}" \
    --arg zsnap_log "$([[ $mode == zsnap ]] && echo "logs/$tag.zsnap.log")" \
    '{image:$image, codec:$codec, mode:$mode, rep:$rep, ok:$ok, error:$error, pull_s:$pull_s,
      ready_s:$ready_s, start_s:$start_s, cpu_s:$cpu_s, image_ref:$image_ref, fs_used_bytes:$fs_used,
      zsnap_log:$zsnap_log}' >>"$runs"
  if $ok; then
    RESULT=$(printf 'pull %6.2f s  ready %6.2f s' "$pull_s" "$ready_s")
  else
    RESULT="FAILED: $err"
  fi
}

read -r -a mode_list <<<"$modes"
read -r -a image_list <<<"$images"
read -r -a codec_list <<<"$codecs"
total=$((reps * ${#image_list[@]} * ${#codec_list[@]} * ${#mode_list[@]}))
{
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, kernel $(uname -r)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "containerd: $("$bin_dir/containerd" --version)"
  echo "zsnap: $("$zsnap" version | head -1) ($zsnap)"
  echo "fs: fresh ext4 ($((fs_bytes >> 30)) GiB) on a loop file in $img_dir per run; registry storage in tmpfs"
  echo "registry: $reg${rate:+ (netns, tc tbf $rate)}"
  echo "start: $(date -u +%Y-%m-%dT%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/env.txt"
log "$total runs: reps $reps x images {$images} x codecs {$codecs} x modes {$modes}; results in $out"
n=0
for ((rep = 1; rep <= reps; rep++)); do
  for image in "${image_list[@]}"; do
    for codec in "${codec_list[@]}"; do
      k=${#mode_list[@]}
      for ((m = 0; m < k; m++)); do
        mode=${mode_list[(m + rep - 1) % k]}
        n=$((n + 1))
        printf 'zsnap bench: [%d/%d] rep %d %s %s %-6s ... ' "$n" "$total" "$rep" "$image" "$codec" "$mode" >&2
        run_one "$rep" "$image" "$codec" "$mode"
        printf '%s\n' "$RESULT" >&2
      done
    done
  done
done
echo "end: $(date -u +%Y-%m-%dT%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/env.txt"
