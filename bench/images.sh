#!/usr/bin/env bash
# Builds the benchmark images from Debian packages, reproducibly (same mirror state -> same
# layers): "python", a ~1.4 GB python3 + numpy/scipy/pandas rootfs as four layers, and
# "minbase", its first layer alone. apt installs without Recommends (what slim images do).
#
#   layer 1  debootstrap --variant=minbase bookworm
#   layer 2  + python3 python3-numpy
#   layer 3  + python3-scipy python3-pandas python3-matplotlib
#   layer 4  + python3-sklearn python3-statsmodels python3-sympy build-essential python3-dev,
#            then rm -rf /usr/share/doc/* (whiteouts for lower layers' files) and
#            /usr/share/locale removed and re-created (an opaque directory)
#
# Each step after the first runs `chroot apt-get` on an overlayfs mount whose lowerdirs are
# the previous steps, so the step's upperdir is exactly its diff; tests/tools/refapply/
# dirtar.py writes it as an OCI layer (whiteouts, opaque markers, xattrs, hardlinks, ns
# mtimes clamped to SOURCE_DATE_EPOCH). Outputs, under $ZSNAP_BENCH_CACHE
# (default /var/tmp/zsnap-bench):
#
#   blobs/layerN.tar, layerN.tar.gz (gzip -n -6), layerN.tar.zst (zstd -3)
#   oci-gzip/, oci-zstd/     OCI image layouts of "python" (index.json, manifest, config)
#   oci-minbase-gzip/, oci-minbase-zstd/   the same for "minbase" (layer 1 only)
#   layers.txt               "N <diffID> <tar> <gz> <zst>" per layer, in order
#
# Each step is cached: rerunning skips finished steps. Needs root, overlayfs and the Debian
# mirror named in /etc/apt/sources.list.d/*.sources.
#   sudo bench/images.sh            # build (or reuse) the image
#   sudo bench/images.sh --clean    # remove the cache
#   sudo bench/images.sh --push HOST:PORT   # build, then push every image in gzip and zstd to a
#                                   # plain-HTTP registry as zsnap-bench/<image>:<codec>
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# dirtar.py sits next to this script when installed (/usr/share/zsnap/bench), else in tests/.
dirtar=$here/dirtar.py
[[ -f $dirtar ]] || dirtar=$here/../tests/tools/refapply/dirtar.py
cache=${ZSNAP_BENCH_CACHE:-/var/tmp/zsnap-bench-v2}
suite=bookworm
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1716163200}  # 2024-05-20T00:00:00Z

STEPS=(
  ""
  "python3 python3-numpy"
  "python3-scipy python3-pandas python3-matplotlib"
  "python3-sklearn python3-statsmodels python3-sympy build-essential python3-dev"
)
# Shell run in the chroot after the step's apt-get install (deletions -> whiteouts/opaque).
POST=(
  ""
  ""
  ""
  "rm -rf /usr/share/doc/* && rm -rf /usr/share/locale && mkdir -m 0755 /usr/share/locale && echo C.UTF-8 > /usr/share/locale/.keep"
)

log() { printf 'images.sh: %s\n' "$*" >&2; }

push=""
case ${1:-} in
  --clean) rm -rf "$cache"; exit 0 ;;
  --push) push=${2:?--push HOST:PORT}; [[ $# -eq 2 ]] || { log "usage: images.sh [--clean | --push HOST:PORT]"; exit 2; } ;;
  "") ;;
  *) log "usage: images.sh [--clean | --push HOST:PORT]"; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || { log "must run as root (debootstrap, chroot, overlayfs)"; exit 1; }

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false -o Dpkg::Use-Pty=0
          -o APT::Install-Recommends=false -o APT::Install-Suggests=false -q)

work=$cache/work
mkdir -p "$work" "$cache/blobs"
mnt=$work/merged

cleanup_mounts() {
  for m in "$mnt/dev/pts" "$mnt/dev" "$mnt/proc" "$mnt/sys" "$mnt"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  return 0
}
trap cleanup_mounts EXIT

# Layer 1: the base rootfs.
if [[ ! -f $work/l1.done ]]; then
  rm -rf "$work/l1"
  log "debootstrap --variant=minbase $suite from $mirror"
  debootstrap --variant=minbase "$suite" "$work/l1" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  rm -rf "$work/l1"/var/cache/apt/archives/*.deb "$work/l1"/var/lib/apt/lists/* \
    "$work/l1"/var/log/*.log "$work/l1"/var/cache/apt/*.bin
  touch "$work/l1.done"
fi

lowers="$work/l1"
for ((i = 2; i <= ${#STEPS[@]}; i++)); do
  up=$work/u$i
  if [[ ! -f $work/u$i.done ]]; then
    rm -rf "$up" "$work/w$i"
    mkdir -p "$up" "$work/w$i" "$mnt"
    mount -t overlay overlay \
      -o "lowerdir=$lowers,upperdir=$up,workdir=$work/w$i,redirect_dir=off,index=off,metacopy=off" "$mnt"
    mount --bind /dev "$mnt/dev"
    mount -t proc proc "$mnt/proc"
    mount -t sysfs sys "$mnt/sys"
    cp /etc/resolv.conf "$work/resolv.conf.host"
    log "layer $i: apt-get install ${STEPS[i-1]}"
    # policy-rc.d keeps services from starting; removed again so it is not in the layer.
    printf '#!/bin/sh\nexit 101\n' >"$mnt/usr/sbin/policy-rc.d"
    chmod 755 "$mnt/usr/sbin/policy-rc.d"
    chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
      LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" sh -euc "
        apt-get ${APT_OPTS[*]} update
        apt-get ${APT_OPTS[*]} install -y ${STEPS[i-1]}
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
        ${POST[i-1]:-true}
      " >"$work/step$i.log" 2>&1 || { tail -30 "$work/step$i.log"; exit 1; }
    rm -f "$mnt/usr/sbin/policy-rc.d"
    # Python byte-code caches are written at install time; keep them (real images have them).
    cleanup_mounts
    touch "$work/u$i.done"
  fi
  lowers="$up:$lowers"
done

# Layer tars and compressed blobs.
n=${#STEPS[@]}
: >"$cache/layers.txt.tmp"
for ((i = 1; i <= n; i++)); do
  b=$cache/blobs/layer$i
  if [[ ! -f $b.tar.zst ]]; then
    log "layer $i: writing tar"
    if [[ $i -eq 1 ]]; then
      python3 "$dirtar" --clamp-mtime "$SOURCE_DATE_EPOCH" "$work/l1" "$b.tar.tmp"
    else
      python3 "$dirtar" --overlay-upper --clamp-mtime "$SOURCE_DATE_EPOCH" "$work/u$i" "$b.tar.tmp"
    fi
    mv "$b.tar.tmp" "$b.tar"
    log "layer $i: gzip -n -6 and zstd -3 ($(du -h "$b.tar" | cut -f1))"
    gzip -n -6 -c "$b.tar" >"$b.tar.gz.tmp" && mv "$b.tar.gz.tmp" "$b.tar.gz"
    zstd -q -3 -T0 -f "$b.tar" -o "$b.tar.zst.tmp" && mv "$b.tar.zst.tmp" "$b.tar.zst"
  fi
  diffid=sha256:$(sha256sum "$b.tar" | cut -d' ' -f1)
  echo "$i $diffid $b.tar $b.tar.gz $b.tar.zst" >>"$cache/layers.txt.tmp"
done
mv "$cache/layers.txt.tmp" "$cache/layers.txt"

# OCI layouts (blobs hardlinked, not copied).
write_oci() {  # codec ext mediatype-suffix [image-name max-layers]
  local codec=$1 ext=$2 mt=$3 name=${4:-python} max=${5:-99} dir=$cache/oci-$1
  [[ $name == python ]] || dir=$cache/oci-$name-$1
  rm -rf "$dir"
  mkdir -p "$dir/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  local layers_json="" diffids_json="" history_json=""
  while read -r i diffid tar gz zst; do
    ((i <= max)) || continue
    local f
    f=$([[ $ext == gz ]] && echo "$gz" || echo "$zst")
    local d size
    d=$(sha256sum "$f" | cut -d' ' -f1)
    size=$(stat -c %s "$f")
    ln -f "$f" "$dir/blobs/sha256/$d"
    layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+$mt\",\"digest\":\"sha256:$d\",\"size\":$size}"
    diffids_json+="${diffids_json:+,}\"$diffid\""
    history_json+="${history_json:+,}{\"created\":\"2024-05-20T00:00:00Z\",\"created_by\":\"zsnap bench/images.sh layer $i\"}"
  done <"$cache/layers.txt"
  local cfg="{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2024-05-20T00:00:00Z\",\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"python3\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diffids_json]},\"history\":[$history_json]}"
  local cd cs
  printf '%s' "$cfg" >"$dir/config.tmp"
  cd=$(sha256sum "$dir/config.tmp" | cut -d' ' -f1); cs=$(stat -c %s "$dir/config.tmp")
  mv "$dir/config.tmp" "$dir/blobs/sha256/$cd"
  local man="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cd\",\"size\":$cs},\"layers\":[$layers_json]}"
  printf '%s' "$man" >"$dir/man.tmp"
  local md ms
  md=$(sha256sum "$dir/man.tmp" | cut -d' ' -f1); ms=$(stat -c %s "$dir/man.tmp")
  mv "$dir/man.tmp" "$dir/blobs/sha256/$md"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"zsnap-bench-%s:%s"}}]}\n' \
    "$md" "$ms" "$name" "$codec" >"$dir/index.json"
}
write_oci gzip gz gzip
write_oci zstd zst zstd
write_oci gzip gz gzip minbase 1
write_oci zstd zst zstd minbase 1

if [[ -n $push ]]; then
  for name in python minbase; do
    for codec in gzip zstd; do
      layout=$cache/oci-$codec
      [[ $name == python ]] || layout=$cache/oci-$name-$codec
      log "push $push/zsnap-bench/$name:$codec: $("$here/push.sh" "$push" "$layout" "zsnap-bench/$name:$codec")"
    done
  done
fi

log "done: $cache/layers.txt"
awk '{print "  layer " $1 " " $2}' "$cache/layers.txt" >&2
du -sh "$cache/blobs"/*.tar* >&2
