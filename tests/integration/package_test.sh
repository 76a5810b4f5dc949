#!/usr/bin/env bash
# Issue 6, acceptance 1 and 2: the .deb.
#
# Builds the package with `cpack -G DEB` from the build tree, checks its control data (Depends
# from dpkg-shlibdeps, conffiles, maintainer scripts) and file list, then installs it with apt
# into a clean Debian 12 root (debootstrap --variant=minbase, cached by lib/debian.sh) whose
# dependencies apt resolves from this machine's own mirror, with a policy-rc.d that forbids
# service starts, and with systemd installed but not running (as in an image build). In that root: `zsnap version`, `zsnap config check /etc/zsnap/config.toml`,
# the unit enabled by deb-systemd-helper, `systemd-analyze verify` of the installed unit; then
# reinstall, remove (config and state kept), purge --autoremove: afterwards the root holds
# exactly the packages and files it had before the install.
#
# The chroot's apt lists and downloaded .debs are kept in $ZSNAP_BUILD_DIR/cache/package-apt
# (bind-mounted), so later runs do not download them again.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/all.sh"

itest_init package
: "${ZSNAP_BUILD_DIR:?ZSNAP_BUILD_DIR must point at the build tree}"
itest_require_cmd cpack dpkg-deb dpkg-shlibdeps debootstrap chroot zstd tar flock readelf systemd-analyze

# ---- build the package -------------------------------------------------------------------
ITEST_CURRENT=cpack
out=$ITEST_DIR/cpack
if ! (cd "$ZSNAP_BUILD_DIR" && cpack -G DEB -B "$out") >"$ITEST_DIR/cpack.log" 2>&1; then
  tail -n 30 "$ITEST_DIR/cpack.log" >&2
  itest_die "cpack -G DEB failed"
fi
deb=$(ls "$out"/zsnap_*.deb 2>/dev/null | head -n1)
[[ -f $deb ]] || itest_die "cpack wrote no zsnap_*.deb (see $ITEST_DIR/cpack.log)"
itest_pass "cpack: $(basename "$deb")"
version=$(dpkg-deb -f "$deb" Version)

# ---- control data -----------------------------------------------------------------------
ITEST_CURRENT=control
depends=$(dpkg-deb -f "$deb" Depends)
itest_log "Depends: $depends"
for lib in 'libgrpc\+\+1\.51' 'libprotobuf32' 'libzstd1' 'libarchive13' 'libssl3' \
  'libsqlite3-0' 'libisal2' 'libsystemd0' 'libc6'; do
  itest_check_match "depends on $lib (dpkg-shlibdeps)" "(^|, )$lib( |,|$)" "$depends"
done
itest_check_eq "section admin" admin "$(dpkg-deb -f "$deb" Section)"
ctrl=$ITEST_DIR/control
dpkg-deb -e "$deb" "$ctrl"
itest_check_eq "conffiles lists /etc/zsnap/config.toml" /etc/zsnap/config.toml "$(cat "$ctrl/conffiles")"
for s in postinst prerm postrm; do
  itest_check "$s is an executable sh script" test -x "$ctrl/$s"
  itest_check "$s parses (sh -n)" sh -n "$ctrl/$s"
done
itest_check_match "postinst enables via deb-systemd-helper" 'deb-systemd-helper enable' "$(cat "$ctrl/postinst")"
itest_check_match "postinst starts only under systemd, via deb-systemd-invoke (policy-rc.d)" \
  'deb-systemd-invoke "\$action"' "$(grep -A4 'run/systemd/system' "$ctrl/postinst")"
itest_check_match "prerm stops via deb-systemd-invoke" 'deb-systemd-invoke stop' "$(cat "$ctrl/prerm")"
itest_check_match "postrm purges /var/lib/zsnap only on purge" 'purge\)' "$(grep -B8 'rm -rf' "$ctrl/postrm")"

# ---- file list --------------------------------------------------------------------------
ITEST_CURRENT=contents
files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sort)
expected=$(sort <<'EOF'
./etc/zsnap/config.toml
./lib/systemd/system/zsnap.service
./usr/bin/zsnap
./usr/share/doc/zsnap/copyright
./usr/share/man/man8/zsnap.8.gz
./usr/share/zsnap/bench/cold_start.sh
./usr/share/zsnap/bench/dirtar.py
./usr/share/zsnap/bench/images.sh
./usr/share/zsnap/bench/push.sh
./usr/share/zsnap/containerd/config-v2.toml
./usr/share/zsnap/containerd/config-v3.toml
EOF
)
itest_check_eq "package file list" "$expected" "$files"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/zsnap >"$ITEST_DIR/zsnap.bin"
itest_check_eq "binary is stripped (no .debug_info)" 0 \
  "$(readelf -S "$ITEST_DIR/zsnap.bin" | grep -c '\.debug_info')"

# ---- a clean Debian 12 root ---------------------------------------------------------------
ITEST_CURRENT=rootfs
tarball=$(debian_minbase_rootfs) || itest_die "no debootstrap minbase root (see the log above)"
root=$ITEST_DIR/root
mkdir -p "$root"
zstd -dcq "$tarball" | tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xf - ||
  itest_die "unpacking $tarball failed"
# This machine's apt sources and resolver; service starts forbidden (policy-rc.d exit 101).
rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || true
[[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\n# package_test: no service starts in this chroot\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
apt_cache=$ZSNAP_BUILD_DIR/cache/package-apt
mkdir -p "$apt_cache/lists/partial" "$apt_cache/archives/partial"
mount --bind "$apt_cache/lists" "$root/var/lib/apt/lists" || itest_die "bind mount apt lists"
mount --bind "$apt_cache/archives" "$root/var/cache/apt/archives" || itest_die "bind mount apt archives"
mount -t proc proc "$root/proc" || itest_die "mount proc in the chroot"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
apt_get() { in_root apt-get -q -y -o Acquire::Retries=3 -o APT::Keep-Downloaded-Packages=true "$@"; }

# Everything a later purge must restore: the package set and the files outside apt/dpkg state.
snapshot() {
  in_root dpkg-query -W -f '${Package} ${Status}\n' | awk '$4 == "installed" {print $1}' | sort >"$1.pkgs"
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./tmp -o -path ./var/lib/apt \
    -o -path ./var/cache -o -path ./var/log -o -path ./var/lib/dpkg -o -path ./run \) -prune \
    -o -print | grep -vx -e './etc/ld.so.cache' -e './var/lib/systemd/deb-systemd-helper-enabled' \
    -e './var/lib/systemd/deb-systemd-helper-masked' | sort) >"$1.files"
}

ITEST_CURRENT=apt-update
if ! apt_get update >"$ITEST_DIR/apt-update.log" 2>&1; then
  tail -n 20 "$ITEST_DIR/apt-update.log" >&2
  itest_die "apt-get update in the chroot failed (mirror $(debian_mirror))"
fi
# A node has systemd: its units let `systemd-analyze verify` check ours in this root. It is not
# running here (no /run/systemd/system), as in an image build.
if ! apt_get install --no-install-recommends systemd >"$ITEST_DIR/systemd-install.log" 2>&1; then
  tail -n 20 "$ITEST_DIR/systemd-install.log" >&2
  itest_die "apt-get install systemd in the chroot failed"
fi
snapshot "$ITEST_DIR/before"

# ---- install ------------------------------------------------------------------------------
ITEST_CURRENT=install
cp "$deb" "$root/tmp/"
debname=/tmp/$(basename "$deb")
if apt_get install --no-install-recommends "$debname" >"$ITEST_DIR/install.log" 2>&1; then
  itest_pass "apt-get install $(basename "$deb") into a debootstrapped bookworm (deps from the mirror)"
else
  tail -n 30 "$ITEST_DIR/install.log" >&2
  itest_die "apt-get install of the .deb failed"
fi
itest_check_match "dpkg: zsnap $version installed" "^install ok installed $version\$" \
  "$(in_root dpkg-query -W -f '${Status} ${Version}' zsnap)"
vout=$(in_root zsnap version 2>&1)
itest_check_match "zsnap version in the chroot" "^zsnap $version\$" "$(head -n1 <<<"$vout")"
itest_check_match "zsnap version lists the linked libraries" 'grpc +1\.51' "$vout"
itest_check "zsnap config check /etc/zsnap/config.toml" in_root zsnap config check /etc/zsnap/config.toml
itest_check "zsnap config containerd prints a snippet" in_root zsnap config containerd --containerd-version 1.7
itest_check "man page installed" test -s "$root/usr/share/man/man8/zsnap.8.gz"
itest_check_eq "/var/lib/zsnap made by postinst, 0700" 700 "$(stat -c %a "$root/var/lib/zsnap" 2>/dev/null)"
itest_check "unit enabled (multi-user.target.wants)" test -L "$root/etc/systemd/system/multi-user.target.wants/zsnap.service"
itest_check "unit enabled (containerd.service.wants)" test -L "$root/etc/systemd/system/containerd.service.wants/zsnap.service"
started=""
for pid in $(pgrep -x zsnap 2>/dev/null); do
  [[ $(readlink "/proc/$pid/root") == "$root" ]] && started=$pid
done
itest_check_eq "no zsnap started in the chroot (policy-rc.d, no systemd)" "" "$started"
verify_rc=0
verify_out=$(systemd-analyze verify --root="$root" /lib/systemd/system/zsnap.service 2>&1) || verify_rc=$?
itest_check_eq "systemd-analyze verify of the installed unit: clean (no output, exit 0)" \
  "0:" "$verify_rc:$verify_out"

ITEST_CURRENT=reinstall
itest_check "reinstall (postinst configure with a previous version)" \
  apt_get install --reinstall --no-install-recommends "$debname"

# ---- remove keeps config and state, purge removes everything ------------------------------
ITEST_CURRENT=remove
echo "# local edit" >>"$root/etc/zsnap/config.toml"
mkdir -p "$root/var/lib/zsnap/snapshots/1/fs"
itest_check "apt-get remove zsnap" apt_get remove zsnap
itest_check "remove: /usr/bin/zsnap gone" test ! -e "$root/usr/bin/zsnap"
itest_check "remove: edited conffile kept" grep -q '# local edit' "$root/etc/zsnap/config.toml"
itest_check "remove: state kept" test -d "$root/var/lib/zsnap/snapshots/1/fs"

ITEST_CURRENT=purge
itest_check "apt-get purge --autoremove zsnap" apt_get purge --autoremove zsnap
for p in /etc/zsnap /var/lib/zsnap /usr/bin/zsnap /lib/systemd/system/zsnap.service \
  /usr/share/zsnap /usr/share/doc/zsnap /etc/systemd/system/multi-user.target.wants/zsnap.service \
  /etc/systemd/system/containerd.service.wants/zsnap.service; do
  itest_check "purge: $p gone" test ! -e "$root$p" -a ! -L "$root$p"
done
itest_check_eq "purge: zsnap unknown to dpkg" "" \
  "$(in_root dpkg-query -W -f '${Status}' zsnap 2>/dev/null | grep -v 'not-installed')"
snapshot "$ITEST_DIR/after"
itest_check_eq "purge: same packages as before the install" "" \
  "$(diff "$ITEST_DIR/before.pkgs" "$ITEST_DIR/after.pkgs")"
itest_check_eq "purge: same files as before the install" "" \
  "$(diff "$ITEST_DIR/before.files" "$ITEST_DIR/after.files")"

itest_report
