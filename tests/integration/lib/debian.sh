# Fetch other containerd (and runc) releases from newer Debian suites without installing them:
# a private apt configuration (sources, lists, cache) pointing at this machine's own Debian
# mirror, `apt-get download`, `dpkg -x` into a cache dir that later runs reuse. The system's
# containerd is never touched. Needs lib/common.sh.
#
# Cache layout: ${ZSNAP_CONTAINERD_CACHE:-${ZSNAP_BUILD_DIR:-/tmp}/containerd-versions}/
#   apt/                      private apt state, lists and archives
#   <package>_<debversion>/   dpkg -x of one .deb (binaries under usr/bin or usr/sbin)

if [[ -n ${ZSNAP_ITEST_DEBIAN_SH:-} ]]; then return 0; fi
ZSNAP_ITEST_DEBIAN_SH=1

DEBIAN_CACHE_DIR=${ZSNAP_CONTAINERD_CACHE:-${ZSNAP_BUILD_DIR:-/tmp}/containerd-versions}

# debian_mirror: print the Debian archive URI this machine's apt uses (deb822 *.sources first,
# then sources.list), e.g. http://deb.debian.org/debian. $DEBIAN_MIRROR overrides.
debian_mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return 0; fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
      /^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
  if [[ -z $uri ]]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) { print $i; exit } break } }')
  fi
  [[ -n $uri ]] || uri=http://deb.debian.org/debian
  echo "${uri%/}"
}

# debian__apt ARGS...: apt-get/apt-cache with the private configuration ($1 = apt-get|apt-cache).
debian__apt() {
  local tool=$1
  shift
  local d=$DEBIAN_CACHE_DIR/apt
  "$tool" -q -o Dir::State="$d/state" -o Dir::Cache="$d/cache" \
    -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
    -o APT::Sandbox::User=root "$@"
}

# debian_apt_update SUITE...: (re)write the private sources for SUITEs (main only) and run
# apt-get update, unless the lists for exactly these suites are younger than a day.
debian_apt_update() {
  local d=$DEBIAN_CACHE_DIR/apt mirror suite
  mirror=$(debian_mirror)
  mkdir -p "$d/state/lists/partial" "$d/cache/archives/partial"
  local want=""
  for suite in "$@"; do
    want+="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"$'\n'
  done
  if [[ -f $d/sources.list && $(cat "$d/sources.list")$'\n' == "$want" && -f $d/updated ]] &&
    [[ -n $(find "$d/updated" -mmin -1440 2>/dev/null) ]]; then
    return 0
  fi
  printf '%s' "$want" >"$d/sources.list"
  rm -f "$d/updated"
  itest_log "apt-get update ($*) from $mirror"
  debian__apt apt-get update >"$d/update.log" 2>&1 || {
    tail -n 20 "$d/update.log" >&2
    return 1
  }
  touch "$d/updated"
}

# debian_pick_version PACKAGE SUITE VERSION_PREFIX: print the newest version of PACKAGE that
# SUITE carries and that starts with VERSION_PREFIX (e.g. "1.7." or "2.1.9"), or fail.
debian_pick_version() {
  local pkg=$1 suite=$2 prefix=$3
  debian__apt apt-cache madison "$pkg" 2>/dev/null |
    awk -F'|' -v s=" $suite/" -v p="$prefix" '
      { gsub(/^ +| +$/, "", $2) }
      index($3, s) && index($2, p) == 1 { print $2; exit }'
}

# debian_fetch PACKAGE VERSION: download PACKAGE=VERSION with the private apt and unpack it
# (dpkg -x) into $DEBIAN_CACHE_DIR/PACKAGE_VERSION, reusing an earlier unpack. Prints the dir.
debian_fetch() {
  local pkg=$1 ver=$2
  local dest=$DEBIAN_CACHE_DIR/${pkg}_${ver}
  if [[ -f $dest/.complete ]]; then echo "$dest"; return 0; fi
  local dl=$DEBIAN_CACHE_DIR/apt/download
  rm -rf "$dl" "$dest.tmp"
  mkdir -p "$dl"
  (cd "$dl" && debian__apt apt-get download "$pkg=$ver") >"$DEBIAN_CACHE_DIR/apt/download.log" 2>&1 || {
    tail -n 20 "$DEBIAN_CACHE_DIR/apt/download.log" >&2
    return 1
  }
  local deb
  deb=$(ls "$dl"/*.deb) || return 1
  dpkg -x "$deb" "$dest.tmp" || return 1
  touch "$dest.tmp/.complete"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  rm -rf "$dl"
  echo "$dest"
}

# debian_fetch_containerd SUITE VERSION_PREFIX: make containerd VERSION_PREFIX* from SUITE (e.g.
# trixie 1.7.) available and print its bin dir (holding containerd, ctr and
# containerd-shim-runc-v2), for CONTAINERD_BIN_DIR. Serialised with a lock on the cache dir.
debian_fetch_containerd() {
  local suite=$1 prefix=$2 ver dir
  mkdir -p "$DEBIAN_CACHE_DIR"
  (
    flock 9
    # Reuse an unpack from an earlier run without touching the network.
    for dir in "$DEBIAN_CACHE_DIR"/containerd_"$prefix"*; do
      if [[ -f $dir/.complete && -f $dir/.suite-$suite ]]; then echo "$dir/usr/bin"; exit 0; fi
    done
    debian_apt_update trixie sid || exit 1
    ver=$(debian_pick_version containerd "$suite" "$prefix")
    [[ -n $ver ]] || { itest_log "Debian $suite has no containerd $prefix*"; exit 1; }
    dir=$(debian_fetch containerd "$ver") || exit 1
    touch "$dir/.suite-$suite"
    echo "$dir/usr/bin"
  ) 9>"$DEBIAN_CACHE_DIR/.lock"
}

# debian_fetch_runc SUITE: like debian_fetch_containerd for runc (the newest SUITE carries);
# prints the dir holding runc. Note: trixie/sid runc needs glibc >= 2.38, newer than Debian
# 12's, so it does not run on the Debian 12 host; containerd_versions_test uses the system runc.
debian_fetch_runc() {
  local suite=$1 ver dir
  mkdir -p "$DEBIAN_CACHE_DIR"
  (
    flock 9
    debian_apt_update trixie sid || exit 1
    ver=$(debian_pick_version runc "$suite" "")
    [[ -n $ver ]] || exit 1
    dir=$(debian_fetch runc "$ver") || exit 1
    echo "$dir/usr/sbin"
  ) 9>"$DEBIAN_CACHE_DIR/.lock"
}

# debian_minbase_rootfs: print the path of a `debootstrap --variant=minbase bookworm` root from
# this machine's Debian mirror as a pax tar (numeric owners, xattrs), zstd-compressed, cached as
# ${ZSNAP_BUILD_DIR}/cache/debootstrap-minbase-bookworm.tar.zst (plus the .tar.gz twin that
# differential_test.sh also reads; same names and recipe, so either test reuses the other's).
# debootstraps only when the cache is missing. Serialised with a lock in the cache dir.
debian_minbase_rootfs() {
  local cache=${ZSNAP_BUILD_DIR:-/tmp}/cache suite=bookworm
  local rootfs=$cache/debootstrap-minbase-$suite.tar
  mkdir -p "$cache"
  (
    flock 9
    if [[ -f $rootfs.zst ]]; then echo "$rootfs.zst"; exit 0; fi
    local mirror work
    mirror=$(debian_mirror)
    work=$(mktemp -d "$cache/debootstrap.XXXXXX")
    itest_log "debootstrap --variant=minbase $suite from $mirror (cached in $cache)"
    if ! debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/log" 2>&1; then
      tail -n 20 "$work/log" >&2
      rm -rf "$work"
      exit 1
    fi
    rm -rf "$work"/root/var/cache/apt/archives/*.deb
    tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='*' --format=pax \
      --sort=name -cf "$rootfs.tmp" . &&
      gzip -n -6 -c "$rootfs.tmp" >"$rootfs.gz.tmp" &&
      zstd -q -3 -c "$rootfs.tmp" >"$rootfs.zst.tmp" &&
      mv "$rootfs.gz.tmp" "$rootfs.gz" && mv "$rootfs.zst.tmp" "$rootfs.zst"
    local rc=$?
    rm -rf "$rootfs.tmp" "$work"
    ((rc == 0)) || exit 1
    echo "$rootfs.zst"
  ) 9>"$cache/.debootstrap.lock"
}
