#!/usr/bin/env bash
# Builds the benchmark images from Debian packages, reproducibly (same mirror state -> same
# layers). apt installs without Recommends (what slim images do).
#
#   python      ~1.4 GB, python3 + numpy/scipy/pandas, four layers:
#     layer 1  debootstrap --variant=minbase bookworm
#     layer 2  + python3 python3-numpy
#     layer 3  + python3-scipy python3-pandas python3-matplotlib
#     layer 4  + python3-sklearn python3-statsmodels python3-sympy build-essential python3-dev,
#              then rm -rf /usr/share/doc/* (whiteouts for lower layers' files) and
#              /usr/share/locale removed and re-created (an opaque directory)
#   minbase     layer 1 alone
#   smallfiles  layer 1 + the Linux 6.1 source tree of Debian's linux-source-6.1 package in
#               /usr/src/linux-source-6.1, without its files over 32 KiB (~72k files, median
#               ~3 KB: unpacking is per-file work, not bytes), as two layers:
#     layer 2  the tree without drivers/
#     layer 3  drivers/
#
# python's steps after the first run `chroot apt-get` on an overlayfs mount whose lowerdirs are
# the previous steps, so the step's upperdir is exactly its diff. smallfiles' package is
# fetched by `apt-get download` in a throwaway overlay on layer 1 (the same mirror and suite)
# and its source tarball unpacked by the host's tar. tests/tools/refapply/dirtar.py writes
# every layer as an OCI layer tar (whiteouts, opaque markers, xattrs, hardlinks, ns mtimes
# clamped to SOURCE_DATE_EPOCH). Outputs, under $ZSNAP_BENCH_CACHE (default
# /var/tmp/zsnap-bench-v2):
#
#   blobs/layerN.tar              python's layers (layer1 is also minbase's and smallfiles')
#   blobs/smallfiles-layerN.tar   smallfiles' own layers
#   blobs/*.tar.gz (gzip -n -6), *.tar.zst (zstd -3), *.tar.zst19 (zstd -19), next to each tar
#   oci-<codec>/, oci-<image>-<codec>/   OCI image layouts of python and of the other images,
#                                 codec gzip, zstd or zstd19 (index.json, manifest, config;
#                                 blobs hardlinked)
#   layers-<image>.txt            "N <diffID> <tar> <gz> <zst> <zst19>" per layer, in order
#   layers.txt                    python's layers as "N <diffID> <tar> <gz> <zst>" (the format
#                                 scripts before zstd19 read)
#
# Each step, tar and compressed blob is cached: rerunning skips what is there. Needs root,
# overlayfs, xz and the Debian mirror named in /etc/apt/sources.list.d/*.sources.
#   sudo bench/images.sh            # build (or reuse) the images
#   sudo bench/images.sh --clean    # remove the cache
#   sudo bench/images.sh --push HOST:PORT   # build, then push every image in gzip, zstd and
#                                   # zstd19 to a plain-HTTP registry as zsnap-bench/<image>:<codec>
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
# smallfiles: the package whose source tarball is the tree, and the largest file kept.
SMALL_PKG=linux-source-6.1
SMALL_MAX_KIB=32

IMAGES=(python minbase smallfiles)
CODECS=(gzip zstd zstd19)

log() { printf 'images.sh: %s\n' "$*" >&2; }

push=""
case ${1:-} in
  --clean) rm -rf "$cache"; exit 0 ;;
  --push) push=${2:?--push HOST:PORT}; [[ $# -eq 2 ]] || { log "usage: images.sh [--clean | --push HOST:PORT]"; exit 2; } ;;
  "") ;;
  *) log "usage: images.sh [--clean | --push HOST:PORT]"; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || { log "must run as root (debootstrap, chroot, overlayfs)"; exit 1; }
command -v xz >/dev/null || { log "missing xz (Debian package xz-utils)"; exit 1; }

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

# chroot_mount LOWERS UPPER WORKDIR: an overlayfs at $mnt with /dev, /proc and /sys in it.
chroot_mount() {
  mkdir -p "$2" "$3" "$mnt"
  mount -t overlay overlay \
    -o "lowerdir=$1,upperdir=$2,workdir=$3,redirect_dir=off,index=off,metacopy=off" "$mnt"
  mount --bind /dev "$mnt/dev"
  mount -t proc proc "$mnt/proc"
  mount -t sysfs sys "$mnt/sys"
}
# chroot_sh LOG SCRIPT: SCRIPT under `sh -euc` in the chroot at $mnt, with a clean environment.
chroot_sh() {
  chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" sh -euc "$2" >"$1" 2>&1 ||
    { tail -30 "$1"; return 1; }
}

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

# python: layers 2..4, each an apt-get install on top of the ones before.
lowers="$work/l1"
for ((i = 2; i <= ${#STEPS[@]}; i++)); do
  up=$work/u$i
  if [[ ! -f $work/u$i.done ]]; then
    rm -rf "$up" "$work/w$i"
    chroot_mount "$lowers" "$up" "$work/w$i"
    log "layer $i: apt-get install ${STEPS[i-1]}"
    # policy-rc.d keeps services from starting; removed again so it is not in the layer.
    printf '#!/bin/sh\nexit 101\n' >"$mnt/usr/sbin/policy-rc.d"
    chmod 755 "$mnt/usr/sbin/policy-rc.d"
    chroot_sh "$work/step$i.log" "
        apt-get ${APT_OPTS[*]} update
        apt-get ${APT_OPTS[*]} install -y ${STEPS[i-1]}
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
        ${POST[i-1]:-true}
      "
    rm -f "$mnt/usr/sbin/policy-rc.d"
    # Python byte-code caches are written at install time; keep them (real images have them).
    cleanup_mounts
    touch "$work/u$i.done"
  fi
  lowers="$up:$lowers"
done

# smallfiles: the package, fetched with layer 1's apt (its mirror and suite); the throwaway
# overlay's upperdir (apt lists, the .deb) is deleted, only the .deb is kept.
small_deb=$work/$SMALL_PKG.deb
if [[ ! -f $small_deb ]]; then
  rm -rf "$work/fetch"
  chroot_mount "$work/l1" "$work/fetch/up" "$work/fetch/w"
  log "smallfiles: apt-get download $SMALL_PKG"
  chroot_sh "$work/fetch.log" "
      apt-get ${APT_OPTS[*]} update
      cd /tmp && apt-get ${APT_OPTS[*]} download $SMALL_PKG
    "
  cp "$mnt"/tmp/"${SMALL_PKG}"_*.deb "$small_deb.tmp"
  cleanup_mounts
  rm -rf "$work/fetch"
  mv "$small_deb.tmp" "$small_deb"
fi
# Its tree, split into the two layer directories s2 (all but drivers/) and s3 (drivers/).
if [[ ! -f $work/s.done ]]; then
  log "smallfiles: unpacking $SMALL_PKG $(dpkg-deb -f "$small_deb" Version), without files over $SMALL_MAX_KIB KiB"
  rm -rf "$work/s2" "$work/s3" "$work/s.tmp"
  (
    umask 022
    src=usr/src/$SMALL_PKG
    mkdir -p "$work/s.tmp/s2/usr/src" "$work/s.tmp/s3/$src"
    dpkg-deb --fsys-tarfile "$small_deb" | tar -xO "./usr/src/$SMALL_PKG.tar.xz" | xz -dc |
      tar -x --numeric-owner -C "$work/s.tmp/s2/usr/src"
    [[ -d $work/s.tmp/s2/$src/drivers ]] || { log "no $src/drivers in $small_deb"; exit 1; }
    find "$work/s.tmp/s2" -type f -size +"$SMALL_MAX_KIB"k -delete
    mv "$work/s.tmp/s2/$src/drivers" "$work/s.tmp/s3/$src/drivers"
  )
  mv "$work/s.tmp/s2" "$work/s2"
  mv "$work/s.tmp/s3" "$work/s3"
  rmdir "$work/s.tmp"
  touch "$work/s.done"
fi

# blob BASE SRC [--overlay-upper]: BASE.tar written from SRC, then BASE.tar.{gz,zst,zst19}.
# Each file is written under a temporary name and renamed, so an existing one is complete.
blob() {
  local b=$1 src=$2
  shift 2
  if [[ ! -f $b.tar ]]; then
    log "${b##*/}: writing tar"
    python3 "$dirtar" "$@" --clamp-mtime "$SOURCE_DATE_EPOCH" "$src" "$b.tar.tmp"
    mv "$b.tar.tmp" "$b.tar"
  fi
  if [[ ! -f $b.tar.gz ]]; then
    log "${b##*/}: gzip -n -6 ($(du -h "$b.tar" | cut -f1))"
    gzip -n -6 -c "$b.tar" >"$b.tar.gz.tmp" && mv "$b.tar.gz.tmp" "$b.tar.gz"
  fi
  if [[ ! -f $b.tar.zst ]]; then
    log "${b##*/}: zstd -3"
    zstd -q -3 -T0 -f "$b.tar" -o "$b.tar.zst.tmp" && mv "$b.tar.zst.tmp" "$b.tar.zst"
  fi
  if [[ ! -f $b.tar.zst19 ]]; then
    log "${b##*/}: zstd -19 ($(du -h "$b.tar" | cut -f1); slow)"
    zstd -q -19 -T0 -f "$b.tar" -o "$b.tar.zst19.tmp" && mv "$b.tar.zst19.tmp" "$b.tar.zst19"
  fi
}
# layer_line N BASE: the line of layers-<image>.txt for the layer whose blobs are BASE.*.
layer_line() {
  echo "$1 sha256:$(sha256sum "$2.tar" | cut -d' ' -f1) $2.tar $2.tar.gz $2.tar.zst $2.tar.zst19"
}

b=$cache/blobs
blob "$b/layer1" "$work/l1"
blob "$b/smallfiles-layer2" "$work/s2"
blob "$b/smallfiles-layer3" "$work/s3"
for ((i = 2; i <= ${#STEPS[@]}; i++)); do blob "$b/layer$i" "$work/u$i" --overlay-upper; done

{
  for ((i = 1; i <= ${#STEPS[@]}; i++)); do layer_line "$i" "$b/layer$i"; done
} >"$cache/layers-python.txt.tmp"
head -1 "$cache/layers-python.txt.tmp" >"$cache/layers-minbase.txt.tmp"
{
  layer_line 1 "$b/layer1"
  layer_line 2 "$b/smallfiles-layer2"
  layer_line 3 "$b/smallfiles-layer3"
} >"$cache/layers-smallfiles.txt.tmp"
cut -d' ' -f1-5 "$cache/layers-python.txt.tmp" >"$cache/layers.txt.tmp"
for f in layers-python layers-minbase layers-smallfiles layers; do
  mv "$cache/$f.txt.tmp" "$cache/$f.txt"
done

layout_dir() {  # IMAGE CODEC
  if [[ $1 == python ]]; then echo "$cache/oci-$2"; else echo "$cache/oci-$1-$2"; fi
}

# write_oci IMAGE CODEC CMD_JSON: the OCI layout of IMAGE with CODEC's blobs (hardlinked, not
# copied). Built beside the old one and swapped in only when it differs, so a layout a
# running benchmark is pushing is never half-written.
write_oci() {
  local name=$1 codec=$2 cmd=$3 dir tmp col
  dir=$(layout_dir "$name" "$codec")
  tmp=$dir.tmp
  case $codec in gzip) col=4 ;; zstd) col=5 ;; zstd19) col=6 ;; esac
  local mt=${codec%19}
  rm -rf "$tmp"
  mkdir -p "$tmp/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci-layout"
  local layers_json="" diffids_json="" history_json="" i diffid f d size
  while read -r -a fields; do
    i=${fields[0]} diffid=${fields[1]} f=${fields[col - 1]}
    d=$(sha256sum "$f" | cut -d' ' -f1)
    size=$(stat -c %s "$f")
    ln -f "$f" "$tmp/blobs/sha256/$d"
    layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+$mt\",\"digest\":\"sha256:$d\",\"size\":$size}"
    diffids_json+="${diffids_json:+,}\"$diffid\""
    history_json+="${history_json:+,}{\"created\":\"2024-05-20T00:00:00Z\",\"created_by\":\"zsnap bench/images.sh layer $i\"}"
  done <"$cache/layers-$name.txt"
  local cfg="{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2024-05-20T00:00:00Z\",\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":$cmd},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diffids_json]},\"history\":[$history_json]}"
  local cd cs
  printf '%s' "$cfg" >"$tmp/config.tmp"
  cd=$(sha256sum "$tmp/config.tmp" | cut -d' ' -f1); cs=$(stat -c %s "$tmp/config.tmp")
  mv "$tmp/config.tmp" "$tmp/blobs/sha256/$cd"
  local man="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cd\",\"size\":$cs},\"layers\":[$layers_json]}"
  printf '%s' "$man" >"$tmp/man.tmp"
  local md ms
  md=$(sha256sum "$tmp/man.tmp" | cut -d' ' -f1); ms=$(stat -c %s "$tmp/man.tmp")
  mv "$tmp/man.tmp" "$tmp/blobs/sha256/$md"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"zsnap-bench-%s:%s"}}]}\n' \
    "$md" "$ms" "$name" "$codec" >"$tmp/index.json"
  # index.json names the manifest, which names every other blob: equal index, equal layout.
  if cmp -s "$tmp/index.json" "$dir/index.json"; then
    rm -rf "$tmp"
  else
    rm -rf "$dir.old"
    [[ ! -e $dir ]] || mv "$dir" "$dir.old"
    mv "$tmp" "$dir"
    rm -rf "$dir.old"
  fi
}
# python and minbase keep the python3 Cmd they always had (their digests stay the same).
for codec in "${CODECS[@]}"; do
  write_oci python "$codec" '["python3"]'
  write_oci minbase "$codec" '["python3"]'
  write_oci smallfiles "$codec" '["sh"]'
done

if [[ -n $push ]]; then
  for name in "${IMAGES[@]}"; do
    for codec in "${CODECS[@]}"; do
      log "push $push/zsnap-bench/$name:$codec: $("$here/push.sh" "$push" "$(layout_dir "$name" "$codec")" "zsnap-bench/$name:$codec")"
    done
  done
fi

for name in "${IMAGES[@]}"; do
  log "$name: $cache/layers-$name.txt"
  awk '{print "  layer " $1 " " $2}' "$cache/layers-$name.txt" >&2
done
du -sh "$b"/*.tar* >&2
