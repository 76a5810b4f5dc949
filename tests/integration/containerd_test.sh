#!/usr/bin/env bash
# Acceptance 3: a real containerd uses zsnap as [proxy_plugins.zsnap].
#
# For one containerd (CONTAINERD_BIN_DIR, default /usr/bin = Debian 12's 1.6.20; config version
# CONTAINERD_CONFIG_VERSION, default 2 for 1.x and 3 for 2.x):
#   * the three-layer test image (lib/image.sh) is pushed to a private registry with skopeo as
#     gzip and as zstd, and each variant is pulled with `ctr image pull --snapshotter zsnap`
#     in its own namespace (so each unpack really goes through zsnap);
#   * `ctr run --snapshotter zsnap` sees the files, whiteouts, opaque dir, hard link, symlink;
#   * `ctr snapshot --snapshotter zsnap ls|info|usage|prepare|mounts|rm` behave, including
#     refusing to remove a snapshot that has children;
#   * after `ctr image rm --sync` GC removes zsnap's snapshots, and its snapshots/ dir empties.
# Check names get the prefix $ITEST_PREFIX (containerd_versions_test sets it per version).
# Needs: ZSNAP_BIN, root, overlayfs; containerd, runc, docker-registry, skopeo, jq, curl, zstd.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"

itest_init "containerd_test${ITEST_PREFIX:+.${ITEST_PREFIX//[^A-Za-z0-9.]/_}}"
itest_require_cmd skopeo jq curl zstd gzip tar sha256sum unshare
P=${ITEST_PREFIX:+$ITEST_PREFIX/}
CONTAINERD_BIN_DIR=${CONTAINERD_BIN_DIR:-/usr/bin}
[[ -x $CONTAINERD_BIN_DIR/containerd ]] || itest_die "no containerd in $CONTAINERD_BIN_DIR"
itest_log "containerd $(containerd_version) from $CONTAINERD_BIN_DIR, zsnap $ZSNAP_BIN"

ITEST_CURRENT=${P}setup
zsnap_start || itest_die "zsnap did not start (log: $ZSNAP_LOG)"
containerd_start || itest_die "containerd did not start (log: $CONTAINERD_LOG)"
itest_pass "${P}containerd-loads-zsnap-proxy-plugin"
registry_start || itest_die "docker-registry did not start"

LAYOUT=$ITEST_DIR/oci
image_build_oci "$LAYOUT" v1 none || itest_die "could not build the test image"
mapfile -t CHAIN < <(image_chain_ids "$LAYOUT" v1)
((${#CHAIN[@]} == 3)) || itest_die "expected 3 chain ids, got ${#CHAIN[@]}"

NS_BASE=$CTR_NAMESPACE
declare -A REF
for v in gzip zstd; do
  ITEST_CURRENT=${P}push-$v
  image_push "$LAYOUT" v1 "itest/busy:$v" "$v" >/dev/null || itest_die "skopeo push ($v) failed"
  REF[$v]=$REGISTRY_ADDR/itest/busy:$v
  itest_check_eq "${P}registry-has-$v-layers" "tar+$v tar+$v tar+$v" \
    "$(image_layer_media_types "itest/busy:$v" | sed 's/.*\.//' | tr '\n' ' ' | sed 's/ $//')"
done

# The in-container probe: one `key=value` line per property of the image's /data tree.
# shellcheck disable=SC2016  # expanded by the container's shell
PROBE='
echo hello=$(cat /data/hello.txt)
echo over=$(cat /data/over.txt)
test -e /data/removed.txt && echo removed=present || echo removed=absent
test -e /data/gone-dir && echo gone_dir=present || echo gone_dir=absent
echo opaque=$(ls -A /data/opaque)
echo data_ls=$(ls -A /data)
echo hardlink_nlink=$(stat -c %h /data/hard1)
test "$(stat -c %i /data/hard1)" = "$(stat -c %i /data/hard2)" && echo hardlink=same-inode || echo hardlink=different
echo hard2=$(cat /data/hard2)
echo symlink=$(readlink /data/sym)
echo via_symlink=$(cat /data/sym)
echo deep=$(cat /data/deep/a/b/c.txt)
echo layer3=$(cat /data/layer3.txt)
echo written > /data/new-file && echo rw=$(cat /data/new-file)
'

# probe_value OUTPUT KEY: the value of KEY in the probe output.
probe_value() { sed -n "s/^$2=//p" <<<"$1" | head -n1; }

# snapshots_of NS: the zsnap snapshot names containerd lists in namespace NS (sorted).
snapshots_of() {
  CTR_NAMESPACE=$1 itest_ctr snapshot --snapshotter zsnap ls 2>/dev/null | awk 'NR > 1 {print $1}' | sort
}

zsnap_dir_count() {
  find "$ZSNAP_ROOT/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

for v in gzip zstd; do
  CTR_NAMESPACE=$NS_BASE-$v
  ITEST_CURRENT=${P}pull-$v
  if ! itest_check "${P}pull-$v" itest_ctr image pull --plain-http --snapshotter zsnap "${REF[$v]}"; then
    tail -n 20 "$ZSNAP_LOG" >&2
    continue
  fi
  ITEST_CURRENT=${P}run-$v
  out=$(itest_ctr run --rm --snapshotter zsnap "${REF[$v]}" "cat-$v" cat /data/hello.txt 2>&1)
  itest_check_eq "${P}run-$v-cat-file" "$IMAGE_EXPECT_HELLO" "$out"

  out=$(itest_ctr run --rm --snapshotter zsnap "${REF[$v]}" "probe-$v" sh -c "$PROBE" 2>&1)
  itest_log "probe ($v):"$'\n'"$out"
  itest_check_eq "${P}$v-overwritten-file" "$IMAGE_EXPECT_OVER" "$(probe_value "$out" over)"
  itest_check_eq "${P}$v-whiteout-file" absent "$(probe_value "$out" removed)"
  itest_check_eq "${P}$v-whiteout-dir" absent "$(probe_value "$out" gone_dir)"
  itest_check_eq "${P}$v-opaque-dir" "$IMAGE_EXPECT_OPAQUE_LS" "$(probe_value "$out" opaque)"
  itest_check_eq "${P}$v-dir-listing-no-whiteout-markers" "$IMAGE_EXPECT_DATA_LS" "$(probe_value "$out" data_ls)"
  itest_check_eq "${P}$v-hardlink" "same-inode 2 $IMAGE_EXPECT_LINKED" \
    "$(probe_value "$out" hardlink) $(probe_value "$out" hardlink_nlink) $(probe_value "$out" hard2)"
  itest_check_eq "${P}$v-symlink" "hello.txt $IMAGE_EXPECT_HELLO" \
    "$(probe_value "$out" symlink) $(probe_value "$out" via_symlink)"
  itest_check_eq "${P}$v-deep-path" "$IMAGE_EXPECT_DEEP" "$(probe_value "$out" deep)"
  itest_check_eq "${P}$v-third-layer" "$IMAGE_EXPECT_LAYER3" "$(probe_value "$out" layer3)"
  itest_check_eq "${P}$v-container-writable" written "$(probe_value "$out" rw)"

  ITEST_CURRENT=${P}snapshots-$v
  itest_check_eq "${P}$v-snapshot-ls-chain" "$(printf '%s\n' "${CHAIN[@]}" | sort)" "$(snapshots_of "$CTR_NAMESPACE")"
done
CTR_NAMESPACE=$NS_BASE-gzip

ITEST_CURRENT=${P}snapshot-commands
itest_check "${P}zsnap-root-has-snapshot-dirs" test "$(zsnap_dir_count)" -ge 6
itest_check_eq "${P}containerd-overlayfs-unused" 0 \
  "$(find "$CONTAINERD_ROOT/io.containerd.snapshotter.v1.overlayfs/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"

info=$(itest_ctr snapshot --snapshotter zsnap info "${CHAIN[2]}" 2>&1)
itest_check_eq "${P}snapshot-info" "${CHAIN[2]} ${CHAIN[1]} Committed" \
  "$(jq -r '"\(.Name) \(.Parent) \(.Kind)"' <<<"$info" 2>/dev/null || echo "$info")"
info=$(itest_ctr snapshot --snapshotter zsnap info "${CHAIN[0]}" 2>&1)
itest_check_eq "${P}snapshot-info-base" "${CHAIN[0]}  Committed" \
  "$(jq -r '"\(.Name) \(.Parent // "") \(.Kind)"' <<<"$info" 2>/dev/null || echo "$info")"
itest_check_fails "${P}snapshot-info-missing" itest_ctr snapshot --snapshotter zsnap info no-such-snapshot

# usage -b: KEY SIZE INODES; the rootfs layer holds a few MB and dozens of inodes.
usage=$(itest_ctr snapshot --snapshotter zsnap usage -b "${CHAIN[0]}" 2>&1 | awk 'NR == 2 {print $2, $3}')
itest_check_match "${P}snapshot-usage-base" '^[0-9]{6,} [0-9]{2,}$' "$usage"
usage=$(itest_ctr snapshot --snapshotter zsnap usage -b "${CHAIN[2]}" 2>&1 | awk 'NR == 2 {print $2, $3}')
itest_check_match "${P}snapshot-usage-top" '^[0-9]+ [0-9]+$' "$usage"

# An active snapshot on top, its mounts, and removal order.
itest_check "${P}snapshot-prepare" itest_ctr snapshot --snapshotter zsnap prepare itest-active "${CHAIN[2]}"
mounts=$(itest_ctr snapshot --snapshotter zsnap mounts /mnt itest-active 2>&1)
itest_check_match "${P}snapshot-mounts-overlay" "^mount -t overlay .*lowerdir=$ZSNAP_ROOT/" "$mounts"
info=$(itest_ctr snapshot --snapshotter zsnap info itest-active 2>&1)
itest_check_eq "${P}snapshot-info-active" "Active ${CHAIN[2]}" "$(jq -r '"\(.Kind) \(.Parent)"' <<<"$info" 2>/dev/null || echo "$info")"
itest_check_fails "${P}snapshot-rm-parent-with-children" itest_ctr snapshot --snapshotter zsnap rm "${CHAIN[1]}"
itest_check_fails "${P}snapshot-rm-parent-of-active" itest_ctr snapshot --snapshotter zsnap rm "${CHAIN[2]}"
itest_check "${P}snapshot-rm-still-listed" grep -qx "${CHAIN[1]}" <(snapshots_of "$CTR_NAMESPACE")
itest_check "${P}snapshot-rm-active" itest_ctr snapshot --snapshotter zsnap rm itest-active
itest_check_fails "${P}snapshot-rm-missing" itest_ctr snapshot --snapshotter zsnap rm itest-active
itest_check_eq "${P}snapshot-ls-after-rm" "$(printf '%s\n' "${CHAIN[@]}" | sort)" "$(snapshots_of "$CTR_NAMESPACE")"

# Image removal + synchronous GC: the gzip namespace's snapshots go, the zstd ones stay; then
# the zstd image goes too and zsnap must be empty.
ITEST_CURRENT=${P}gc
all_gone() { [[ -z $(snapshots_of "$1") ]]; }
itest_check "${P}image-rm-gzip" itest_ctr image rm --sync "${REF[gzip]}"
if itest_wait_for 30 "gzip snapshots to be collected" all_gone "$NS_BASE-gzip"; then
  itest_pass "${P}gc-removes-gzip-snapshots"
else
  itest_fail "${P}gc-removes-gzip-snapshots" "left: $(snapshots_of "$NS_BASE-gzip" | tr '\n' ' ')"
fi
itest_check_eq "${P}gc-keeps-other-namespace" "$(printf '%s\n' "${CHAIN[@]}" | sort)" "$(snapshots_of "$NS_BASE-zstd")"
out=$(CTR_NAMESPACE=$NS_BASE-zstd itest_ctr run --rm --snapshotter zsnap "${REF[zstd]}" after-gc cat /data/layer3.txt 2>&1)
itest_check_eq "${P}run-after-other-namespace-gc" "$IMAGE_EXPECT_LAYER3" "$out"

CTR_NAMESPACE=$NS_BASE-zstd
itest_check "${P}image-rm-zstd" itest_ctr image rm --sync "${REF[zstd]}"
if itest_wait_for 30 "zstd snapshots to be collected" all_gone "$NS_BASE-zstd"; then
  itest_pass "${P}gc-removes-zstd-snapshots"
else
  itest_fail "${P}gc-removes-zstd-snapshots" "left: $(snapshots_of "$NS_BASE-zstd" | tr '\n' ' ')"
fi
zsnap_empty() { [[ $(zsnap_dir_count) == 0 ]]; }
if itest_wait_for 30 "zsnap's snapshots/ dir to empty" zsnap_empty; then
  itest_pass "${P}zsnap-root-snapshots-empty"
else
  itest_fail "${P}zsnap-root-snapshots-empty" "left: $(find "$ZSNAP_ROOT/snapshots" -mindepth 1 -maxdepth 1 -printf '%f ')"
fi
itest_check "${P}zsnap-still-running" zsnap_running

itest_report
