#!/usr/bin/env bash
# Differential test: `zsnap unpack` against containerd's own applier.
#
# For every layer below, the reference tree is made by tests/tools/refapply (Debian's
# containerd Go source: compression.DecompressStream + archive.Apply with
# OverlayConvertWhiteout) and the tree under test by `$ZSNAP_BIN unpack`, each into its own
# empty directory, as overlay's per-layer snapshot directories. treediff then compares them
# exhaustively (type, mode, owner, content, symlink targets, devices, all xattrs incl.
# trusted.*/security.*, ns mtimes, hardlink groups) and the diffIDs must agree (with each
# other and with `<decompressor> | sha256sum`).
#
# Layers:
#   fixtures   tars written by tests/tools/refapply/mkfixtures.py (every entry type, whiteouts,
#              opaque dirs, replacements, path escapes, bulk), each as .tar, .tar.gz, .tar.zst,
#              plus producer variants (pigz, gzip multi-member, zstd multi-frame, skippable
#              frame, trailing bytes) and layers both sides must reject (xerr-*)
#   rootfs     debootstrap --variant=minbase bookworm from this machine's Debian mirror, as a
#              GNU tar (pax, xattrs) .tar.gz and .tar.zst, cached in $ZSNAP_BUILD_DIR/cache
#   derived    an upper layer made on overlayfs over the rootfs: deletions (whiteouts), opaque
#              dirs, metadata-only changes, renames, hardlinks, xattrs, ns mtimes
#
# Prints PASS/FAIL per check and a final "N passed, N failed". Needs root (devices, owners,
# trusted.* xattrs, overlayfs); skips (exit 77) without it.
set -uo pipefail

src=${ZSNAP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${ZSNAP_BUILD_DIR:-$src/build}
zsnap=${ZSNAP_BIN:-$build/plugin/zsnap}
tools_src=$src/tests/tools/refapply
work=$build/itest/differential
cache=$build/cache
suite=bookworm

passed=0
failed=0
log() { printf '[differential %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL $1: $2"
  failed=$((failed + 1))
  if [[ -n ${3:-} && -s $3 ]]; then sed 's/^/    /' "$3" | head -n 60; fi
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit $?
}

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP differential: needs root (device nodes, owners, trusted.* xattrs, overlayfs)" >&2
  exit 77
fi
if [[ ! -x $zsnap ]]; then
  echo "FAIL setup: zsnap binary not found at $zsnap"
  failed=1
  finish
fi

mountpoint -q "$work/derived/merged" 2>/dev/null && umount "$work/derived/merged"
rm -rf "$work"
mkdir -p "$work" "$cache"
trap 'mountpoint -q "$work/derived/merged" 2>/dev/null && umount "$work/derived/merged"' EXIT
log "building refapply and treediff"
if ! "$tools_src/build.sh" "$build/difftools" >"$work/build-tools.log" 2>&1; then
  fail "setup: build refapply/treediff" "go build failed" "$work/build-tools.log"
  finish
fi
refapply=$build/difftools/refapply
treediff=$build/difftools/treediff

# stream_sha256 BLOB: sha256 of the decompressed stream, by the reference CLI tools.
stream_sha256() {
  local magic
  magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
  case $magic in
    1f8b*) gzip -dc "$1" ;;
    28b52ffd | 5?2a4d18) zstd -dcq "$1" ;;
    *) cat "$1" ;;
  esac | sha256sum | cut -d' ' -f1
}

# compare NAME BLOB [treediff args...]: apply BLOB both ways and compare.
compare() {
  local name=$1 blob=$2
  shift 2
  local d=$work/out/$name
  rm -rf "$d"
  mkdir -p "$d"
  local ref_id got_json got_id rc_ref rc_got
  ref_id=$("$refapply" "$blob" "$d/ref" 2>"$d/ref.err")
  rc_ref=$?
  got_json=$("$zsnap" unpack "$blob" "$d/got" --json 2>"$d/got.err")
  rc_got=$?
  if [[ $name == xerr-* ]]; then
    if [[ $rc_ref -eq 0 ]]; then
      fail "$name" "containerd's applier accepted a layer the fixture expects it to reject"
    elif [[ $rc_got -eq 0 ]]; then
      echo "containerd: $(cat "$d/ref.err")" >"$d/why"
      fail "$name" "zsnap unpack succeeded where containerd's applier fails" "$d/why"
    else
      pass "$name (both reject; zsnap: $(tail -n1 "$d/got.err" | cut -c1-100))"
    fi
    return
  fi
  if [[ $rc_ref -ne 0 ]]; then
    fail "$name" "containerd's applier failed (fixture problem)" "$d/ref.err"
    return
  fi
  if [[ $rc_got -ne 0 ]]; then
    fail "$name" "zsnap unpack exited $rc_got" "$d/got.err"
    return
  fi
  got_id=$(jq -r '.diff_id // .diffID // empty' <<<"$got_json" 2>/dev/null)
  local want_id
  want_id=sha256:$(stream_sha256 "$blob")
  local problems=()
  [[ $ref_id == "$want_id" ]] || problems+=("refapply diffID $ref_id != stream sha256 $want_id")
  [[ $got_id == "$want_id" ]] || problems+=("diffID: expected $want_id, got ${got_id:-<none in --json output>}")
  "$treediff" "$@" "$d/ref" "$d/got" >"$d/treediff.txt" 2>&1
  local rc_diff=$?
  if [[ $rc_diff -ne 0 ]]; then
    problems+=("trees differ ($(tail -n1 "$d/treediff.txt"))")
  fi
  if [[ ${#problems[@]} -eq 0 ]]; then
    pass "$name ($(tail -n1 "$d/treediff.txt" | sed 's/treediff: //'), ${got_id:7:12})"
    rm -rf "$d"
  else
    local IFS='; '
    fail "$name" "${problems[*]}" "$d/treediff.txt"
  fi
}

# ---- treediff self-check: it must see what it claims to compare ------------------------------
selfcheck() {
  local d=$work/out/selfcheck
  rm -rf "$d"
  mkdir -p "$d"
  "$refapply" "$1" "$d/a" >/dev/null 2>&1 && cp -a "$d/a" "$d/b" || {
    fail "treediff self-check" "could not make the trees"
    return
  }
  python3 - "$d/b" <<'PY'
import os, sys
b = sys.argv[1]
os.utime(b + "/hello.txt", ns=(1, 1_000_000_001))            # mtime
os.setxattr(b + "/xattrs", "user.text", b"changed")           # xattr value
os.setxattr(b + "/caps", "user.extra", b"x")                  # extra xattr
os.chmod(b + "/setuid", 0o755)                                 # special bit
os.chown(b + "/nobody", 65534, 0)                              # group
os.unlink(b + "/hl-c")                                         # hardlink group
with open(b + "/hl-c", "wb") as f: f.write(b"shared content\n")
os.unlink(b + "/link-rel"); os.symlink("other", b + "/link-rel")  # symlink target
with open(b + "/random.bin", "r+b") as f: f.write(b"X")           # content
os.unlink(b + "/dev/null"); os.mknod(b + "/dev/null", 0o20666, os.makedev(1, 5))
PY
  "$treediff" "$d/a" "$d/b" >"$d/out" 2>&1
  local rc=$? missing=()
  local want
  for want in "hello.txt: mtime" "xattrs: xattr user.text" "caps: xattr user.extra" \
    "setuid: mode" "nobody: owner" "hardlink group" "link-rel: symlink target" \
    "random.bin: content" "dev/null: device"; do
    grep -q "DIFF .*$want" "$d/out" || missing+=("$want")
  done
  if [[ $rc -eq 1 && ${#missing[@]} -eq 0 ]]; then
    pass "treediff self-check (reports mtime, xattrs, mode, owner, hardlinks, symlink, content, device)"
  else
    fail "treediff self-check" "rc=$rc, not reported: ${missing[*]}" "$d/out"
  fi
}

# ---- fixtures -------------------------------------------------------------------------------
log "writing fixtures"
fx=$work/fixtures
mkdir -p "$fx"
python3 "$tools_src/mkfixtures.py" "$fx" >"$fx/implied.txt"
ignore_args() {  # fixture -> --ignore-mtime flags for the dirs containerd mkparent()s
  local p
  for p in $(awk -v f="$1" '$1 == f { $1 = ""; print }' "$fx/implied.txt"); do
    printf -- '-ignore-mtime\n%s\n' "$p"
  done
}
for t in "$fx"/*.tar; do
  gzip -n -6 -c "$t" >"$t.gz"
  zstd -q -3 -c "$t" >"$t.zst"
done
b=$fx/basic.tar
pigz -n -p 2 -c "$b" >"$fx/basic.pigz.tar.gz"
half=$(( $(stat -c %s "$b") / 2 ))
{ head -c "$half" "$b" | gzip -n -c; tail -c +$((half + 1)) "$b" | gzip -n -c; } >"$fx/basic.multimember.tar.gz"
{ head -c "$half" "$b" | zstd -q -c; tail -c +$((half + 1)) "$b" | zstd -q -c; } >"$fx/basic.multiframe.tar.zst"
# A skippable frame (magic 0x184D2A50, 8 bytes of payload) ahead of the data frame.
{ printf '\x50\x2a\x4d\x18\x08\x00\x00\x00zsnaptst'; zstd -q -c "$b"; } >"$fx/basic.skippable.tar.zst"
# Bytes after the tar's end-of-archive blocks: not entries, but part of the diffID.
{ cat "$b"; head -c 3000 /dev/urandom; } | gzip -n -c >"$fx/basic.trailing.tar.gz"
zstd -q --long=27 -9 -c "$fx/bulk.tar" >"$fx/bulk.long.tar.zst"

for t in "$fx"/*.tar; do
  n=$(basename "$t" .tar)
  mapfile -t ign < <(ignore_args "$n")
  compare "$n.tar" "$t" "${ign[@]}"
  compare "$n.tar.gz" "$t.gz" "${ign[@]}"
  compare "$n.tar.zst" "$t.zst" "${ign[@]}"
done
selfcheck "$fx/basic.tar"
mapfile -t ign < <(ignore_args basic)
for v in basic.pigz.tar.gz basic.multimember.tar.gz basic.multiframe.tar.zst \
  basic.skippable.tar.zst basic.trailing.tar.gz; do
  compare "$v" "$fx/$v" "${ign[@]}"
done
mapfile -t ign < <(ignore_args bulk)
compare bulk.long.tar.zst "$fx/bulk.long.tar.zst" "${ign[@]}"

# --diff-id / --digest are checked: a wrong diffID fails and leaves nothing behind.
wrong=sha256:$(printf '%064d' 0)
d=$work/out/verify
mkdir -p "$d"
if "$zsnap" unpack "$fx/basic.tar.gz" "$d/wrong" --diff-id "$wrong" >/dev/null 2>"$d/err"; then
  fail "verify: wrong --diff-id" "zsnap unpack accepted a wrong diffID"
elif [[ -n $(ls -A "$d/wrong" 2>/dev/null) ]]; then
  fail "verify: wrong --diff-id" "rejected, but left entries in the destination"
else
  pass "verify: wrong --diff-id rejected ($(tail -n1 "$d/err" | cut -c1-100))"
fi
right_digest=sha256:$(sha256sum "$fx/basic.tar.gz" | cut -d' ' -f1)
right_diffid=sha256:$(sha256sum "$fx/basic.tar" | cut -d' ' -f1)
if "$zsnap" unpack "$fx/basic.tar.gz" "$d/right" --digest "$right_digest" \
  --diff-id "$right_diffid" >/dev/null 2>"$d/err"; then
  pass "verify: correct --digest and --diff-id accepted"
else
  fail "verify: correct --digest and --diff-id" "zsnap unpack failed" "$d/err"
fi

# ---- rootfs: debootstrap minbase ------------------------------------------------------------
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$cache/debootstrap-minbase-$suite.tar
if [[ ! -f $rootfs.zst ]]; then
  log "debootstrap --variant=minbase $suite from $mirror (cached in $cache)"
  rm -rf "$work/debootstrap"
  if debootstrap --variant=minbase "$suite" "$work/debootstrap" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
    rm -rf "$work/debootstrap"/var/cache/apt/archives/*.deb
    tar -C "$work/debootstrap" --numeric-owner --xattrs --xattrs-include='*' --format=pax \
      --sort=name -cf "$rootfs.tmp" . &&
      gzip -n -6 -c "$rootfs.tmp" >"$rootfs.gz.tmp" &&
      zstd -q -3 -c "$rootfs.tmp" >"$rootfs.zst.tmp" &&
      mv "$rootfs.gz.tmp" "$rootfs.gz" && mv "$rootfs.zst.tmp" "$rootfs.zst"
    rm -f "$rootfs.tmp"
    rm -rf "$work/debootstrap"
  else
    tail -n 20 "$work/debootstrap.log" >"$work/debootstrap.tail"
    fail "rootfs: debootstrap" "debootstrap failed (mirror $mirror)" "$work/debootstrap.tail"
  fi
fi
if [[ -f $rootfs.zst ]]; then
  compare "rootfs.tar.gz" "$rootfs.gz"
  compare "rootfs.tar.zst" "$rootfs.zst"

  # ---- derived: an upper layer over the rootfs, made on overlayfs -----------------------------
  log "building the derived layer on overlayfs"
  dv=$work/derived
  mkdir -p "$dv/lower" "$dv/upper" "$dv/ovl-work" "$dv/merged"
  "$refapply" "$rootfs.zst" "$dv/lower" >/dev/null
  if mount -t overlay overlay -o "lowerdir=$dv/lower,upperdir=$dv/upper,workdir=$dv/ovl-work,redirect_dir=off,index=off,metacopy=off" "$dv/merged" 2>"$dv/mount.err"; then
    (
      set -e
      m=$dv/merged
      rm -rf "$m/usr/share/doc/apt" "$m/usr/share/doc/bash"            # dir whiteouts
      rm -f "$m/usr/bin/rgrep" "$m/etc/debian_version"                 # file whiteouts
      mv "$m/etc/issue.net" "$m/etc/issue.net.moved"                   # rename
      rm -rf "$m/usr/share/zoneinfo/America"                           # opaque, refilled
      mkdir -m 0750 "$m/usr/share/zoneinfo/America"
      echo "replaced" >"$m/usr/share/zoneinfo/America/Only"
      rm -rf "$m/var/lib/apt" && mkdir -p "$m/var/lib/apt/lists/partial" # nested opaque
      chmod 4755 "$m/usr/bin/env"                                      # metadata-only change
      chown 1000:1000 "$m/etc/issue"
      echo "# zsnap differential" >>"$m/etc/bash.bashrc"                # content change
      mkdir -p "$m/opt/app/bin"
      head -c 3000000 /dev/urandom >"$m/opt/app/bin/blob"
      ln "$m/opt/app/bin/blob" "$m/opt/app/blob-link1"
      ln "$m/opt/app/bin/blob" "$m/opt/app/bin/blob-link2"
      ln -s ../bin/blob "$m/opt/app/bin/blob-sym"
      mkfifo -m 0600 "$m/opt/app/fifo"
      cp -a "$m/usr/bin/ls" "$m/opt/app/bin/ls-cap"
      python3 - "$m" <<'PY'
import os, struct, sys
m = sys.argv[1]
os.setxattr(m + "/opt/app", "user.app", b"dir attr")
os.setxattr(m + "/opt/app/bin/blob", "user.bin", bytes(range(200)))
os.setxattr(m + "/opt/app/bin/ls-cap", "security.capability",
            struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0))
os.utime(m + "/opt/app/bin/blob", ns=(1700000000_123456789, 1700000000_123456789))
os.utime(m + "/opt/app", ns=(1600000000_000000001, 1600000000_000000001))
PY
      touch -h -d '2001-02-03 04:05:06.789012345' "$m/opt/app/bin/blob-sym"
    ) >"$dv/modify.log" 2>&1
    rc=$?
    umount "$dv/merged"
    if [[ $rc -ne 0 ]]; then
      fail "derived: build" "modifying the overlay failed" "$dv/modify.log"
    else
      python3 "$tools_src/dirtar.py" --overlay-upper "$dv/upper" "$dv/derived.tar"
      gzip -n -6 -c "$dv/derived.tar" >"$dv/derived.tar.gz"
      zstd -q -3 -c "$dv/derived.tar" >"$dv/derived.tar.zst"
      nwh=$(tar -tf "$dv/derived.tar" 2>/dev/null | grep -c '/\.wh\.' || true)
      log "derived layer: $(tar -tf "$dv/derived.tar" 2>/dev/null | wc -l) entries, $nwh whiteout/opaque markers"
      compare "derived.tar.gz" "$dv/derived.tar.gz"
      compare "derived.tar.zst" "$dv/derived.tar.zst"
    fi
  else
    fail "derived: overlay mount" "cannot mount overlayfs" "$dv/mount.err"
  fi
fi

finish
