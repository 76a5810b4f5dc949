#!/usr/bin/env bash
# Layer-unpack benchmark: `zsnap unpack` against the tools it must beat, on the same blobs.
# See bench/README.md for the rules. Needs root (mkfs/mount, drop_caches, tar --same-owner).
#
#   sudo bench/images.sh                       # once: builds the images (cached)
#   sudo bench/unpack_bench.sh [--image NAME] [--codecs "gzip zstd zstd19"] [--reps N]
#                              [--rootfs-reps N] [--out DIR] [--modes "m1 m2"]
#
# --image: python (default), minbase or smallfiles (images.sh's layers-NAME.txt).
# --codecs: the blobs to apply, gzip (gzip -6), zstd (zstd -3), zstd19 (zstd -19);
# default "gzip zstd".
#
# Env: ZSNAP_BIN (default build-ref/plugin/zsnap, then build/plugin/zsnap), ZSNAP_BENCH_CACHE (images.sh
# output, default /var/tmp/zsnap-bench-v2), BENCH_IMG_DIR (where the ext4 image file lives;
# default /dev/shm when it has room, so the host disk is not in the measurement).
#
# Modes (each applies every layer of the image, in order):
#   gzip-tar    gzip -dc  | tar -x    all layers into one directory    (gzip blobs)
#   pigz-tar    pigz -dc  | tar -x    all layers into one directory    (gzip blobs)
#   igzip-tar   igzip -dc | tar -x    all layers into one directory    (gzip blobs, context)
#   zstd-tar    zstd -dc  | tar -x    all layers into one directory    (zstd, zstd19 blobs)
#   refapply    containerd's applier, one directory per layer          (every codec)
#   zsnap       zsnap unpack --json, one directory per layer           (every codec)
# Every run: fresh mkfs.ext4 on the loop image, mount, drop caches, run under
# /usr/bin/time -v, unmount. Modes are interleaved and their order rotates every rep.
# Output: $out/results.csv (one row per layer per run), $out/results.md (medians, ratios,
# targets, zsnap's per-stage breakdown), $out/zsnap-*.json (zsnap's timing records).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
cache=${ZSNAP_BENCH_CACHE:-/var/tmp/zsnap-bench-v2}
reps=3
rootfs_reps=1
out=$cache/results/$(date +%Y%m%d-%H%M%S)
modes="gzip-tar pigz-tar igzip-tar zstd-tar refapply zsnap"
image=python
codecs="gzip zstd"
while [[ $# -gt 0 ]]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --codecs) codecs=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rootfs-reps) rootfs_reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unpack_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { printf 'unpack_bench: %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "must run as root"; exit 1; }
[[ -x /usr/bin/time ]] || { log "/usr/bin/time missing (Debian package 'time')"; exit 1; }
layers_txt=$cache/layers-$image.txt
[[ -f $layers_txt ]] || { log "no $layers_txt: run bench/images.sh first"; exit 1; }
for codec in $codecs; do
  case $codec in
    gzip | zstd | zstd19) ;;
    *) log "unknown codec $codec (want gzip, zstd, zstd19)"; exit 2 ;;
  esac
done

zsnap=${ZSNAP_BIN:-}
for c in "$zsnap" "$src/build-ref/plugin/zsnap" "$src/build/plugin/zsnap"; do
  [[ -n $c && -x $c ]] && { zsnap=$c; break; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
"$src/tests/tools/refapply/build.sh" "$out/tools" >/dev/null
refapply=$out/tools/refapply
if [[ ! -x $zsnap ]]; then
  log "no zsnap binary (set ZSNAP_BIN); benchmarking the baselines only"
  modes=${modes/zsnap/}
fi

# Blobs are copied to tmpfs once: every mode reads the same bytes from memory, and dropping
# caches between runs cannot turn one mode's input into a disk read the others do not pay.
blobs=/dev/shm/zsnap-bench-blobs.$$
mkdir -p "$blobs"
layers=()
while read -r i diffid tar gz zst zst19; do
  for codec in $codecs; do
    case $codec in
      gzip) cp "$gz" "$blobs/layer$i.gzip" ;;
      zstd) cp "$zst" "$blobs/layer$i.zstd" ;;
      zstd19) cp "$zst19" "$blobs/layer$i.zstd19" ;;
    esac
  done
  layers+=("$i")
done <"$layers_txt"
cp "$layers_txt" "$out/layers.txt"
in_bytes=$(awk '{print $3}' "$layers_txt" | xargs cat | wc -c)
log "image $image: ${#layers[@]} layers, $((in_bytes / 1048576)) MiB of tar; codecs $codecs; zsnap=${zsnap:-none}"

img_size=$(( in_bytes * 5 / 2 + (1 << 30) ))
img_dir=${BENCH_IMG_DIR:-}
if [[ -z $img_dir ]]; then
  shm_free=$(df --output=avail -B1 /dev/shm | tail -1)
  if (( shm_free > img_size + (4 << 30) )); then img_dir=/dev/shm; else img_dir=/var/tmp; fi
fi
img=$img_dir/zsnap-bench-ext4.img
mnt=$out/mnt
rootdir=/var/tmp/zsnap-bench-rootfs-run
mkdir -p "$mnt"
loopdev=""
cleanup() {
  mountpoint -q "$mnt" && umount "$mnt"
  [[ -n $loopdev ]] && losetup -d "$loopdev" 2>/dev/null
  rm -f "$img"
  rm -rf "$rootdir" "$blobs"
}
trap cleanup EXIT

TAR_X=(tar -x --same-owner --same-permissions --numeric-owner --xattrs --xattrs-include='*')

# layer_cmd MODE CODEC LAYER DEST: the shell command applying one layer.
layer_cmd() {
  local mode=$1 codec=$2 i=$3 dest=$4 blob
  blob=$blobs/layer$i.$codec
  case $mode in
    gzip-tar) echo "gzip -dc '$blob' | ${TAR_X[*]} -C '$dest'" ;;
    pigz-tar) echo "pigz -dc '$blob' | ${TAR_X[*]} -C '$dest'" ;;
    igzip-tar) echo "igzip -dc '$blob' | ${TAR_X[*]} -C '$dest'" ;;
    zstd-tar) echo "zstd -dcq '$blob' | ${TAR_X[*]} -C '$dest'" ;;
    refapply) echo "'$refapply' '$blob' '$dest/layer$i' >/dev/null" ;;
    zsnap) echo "'$zsnap' unpack '$blob' '$dest/layer$i' --json >\"$out/zsnap-$codec-$i-\$BENCH_TAG.json\"" ;;
  esac
}

modes_for() {  # codec -> applicable modes
  local m r=()
  for m in $modes; do
    case $m in
      gzip-tar | pigz-tar | igzip-tar) [[ $1 == gzip ]] && r+=("$m") ;;
      zstd-tar) [[ $1 == zstd* ]] && r+=("$m") ;;
      *) r+=("$m") ;;
    esac
  done
  echo "${r[@]}"
}

csv=$out/results.csv
echo "fs,rep,codec,mode,layer,wall_s,user_s,sys_s,maxrss_kb" >"$csv"

# run_one FS REP CODEC MODE: one whole-image run.
run_one() {
  local fs=$1 rep=$2 codec=$3 mode=$4 dest
  if [[ $fs == ext4 ]]; then
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loopdev"
    mount "$loopdev" "$mnt"
    dest=$mnt/rootfs
  else
    rm -rf "$rootdir"
    dest=$rootdir
  fi
  mkdir -p "$dest"
  sync
  echo 3 >/proc/sys/vm/drop_caches
  local i t=$out/time.txt
  for i in "${layers[@]}"; do
    local cmd
    cmd=$(layer_cmd "$mode" "$codec" "$i" "$dest")
    BENCH_TAG="$fs-$rep" /usr/bin/time -v -o "$t" bash -c "$cmd" ||
      { log "FAILED: $fs rep $rep $codec $mode layer $i"; cat "$t" >&2; }
    awk -v fs="$fs" -v rep="$rep" -v codec="$codec" -v mode="$mode" -v layer="$i" '
      /Elapsed \(wall clock\)/ { n = split($NF, p, ":"); w = (n == 3) ? p[1]*3600 + p[2]*60 + p[3] : p[1]*60 + p[2] }
      /User time/ { u = $NF } /System time/ { s = $NF } /Maximum resident/ { r = $NF }
      END { printf "%s,%s,%s,%s,%s,%.3f,%.2f,%.2f,%d\n", fs, rep, codec, mode, layer, w, u, s, r }' \
      "$t" >>"$csv"
  done
  sync
  if [[ $fs == ext4 ]]; then umount "$mnt"; else rm -rf "$rootdir"; fi
  log "$fs rep $rep $codec $mode: $(awk -F, -v f="$fs" -v r="$rep" -v c="$codec" -v m="$mode" \
    '$1==f && $2==r && $3==c && $4==m { w += $6 } END { printf "%.2f s", w }' "$csv")"
}

truncate -s "$img_size" "$img"
loopdev=$(losetup --find --show "$img")
log "ext4 image: $img ($((img_size >> 20)) MiB) on $loopdev; results in $out"

for ((rep = 1; rep <= reps; rep++)); do
  for codec in $codecs; do
    read -r -a ms <<<"$(modes_for "$codec")"
    n=${#ms[@]}
    for ((k = 0; k < n; k++)); do
      run_one ext4 "$rep" "$codec" "${ms[(k + rep - 1) % n]}"
    done
  done
done
for ((rep = 1; rep <= rootfs_reps; rep++)); do
  for codec in $codecs; do
    read -r -a ms <<<"$(modes_for "$codec")"
    for m in "${ms[@]}"; do run_one rootfs "$rep" "$codec" "$m"; done
  done
done

{
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r);" \
    "ext4 image in $img_dir; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "zsnap: $zsnap ($(cd "$src" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "image: $image ($layers_txt); codecs: $codecs"
  echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/env.txt"
python3 "$here/report.py" "$out" >"$out/results.md"
cat "$out/results.md"
