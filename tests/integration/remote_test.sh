#!/usr/bin/env bash
# The remote-snapshotter path end to end, as kubelet drives it: a private containerd with its
# CRI plugin (snapshotter zsnap, disable_snapshot_annotations = false), `zsnap pull
# --cri-endpoint`, a real docker-registry on 127.0.0.1 with access logging.
#   remote     a three-layer image (gzip, zstd and plain tar layers; whiteouts, an opaque dir,
#              hard links): zsnap fetches and commits every layer, containerd fetches no layer
#              (its content store holds the manifest and config only; the registry saw one GET
#              per layer blob, all zsnap's), the container runs, nothing is left in staging;
#   native     the same image pulled again into containerd's own overlayfs (CRI snapshotter
#              switched): every layer and the merged rootfs are identical to zsnap's (treediff:
#              content, type, mode, owner, xattrs, whiteouts, opaque markers, links, mtimes);
#   fallback   zsnap's registry view broken four ways - a dead server, 404 (blob missing), a blob
#              corrupted in storage, 401 (credentials containerd has and zsnap does not) - each
#              time zsnap logs the reason and hands the layer back, and the pull still succeeds;
#              with the credentials in its docker config.json zsnap serves the layers again;
#              a mirror that is down is skipped and zsnap still serves the layers;
#   tls        a registry with a certificate from a private CA named by hosts.toml (ca = ...):
#              zsnap serves every layer;
#   shared     two images sharing their two base layers pulled at once: each blob fetched once,
#              no error, nothing staged afterwards;
#   transfer   (containerd 2.1+) `ctr image pull` through the transfer service (the proxy
#              plugin's enable_remote_snapshot_annotations export + the transfer unpack_config
#              entry): zsnap commits every layer, no layer blob reaches containerd's content
#              store, the container runs;
#   namespaces (containerd 2.1+) the image pulled at once by CRI into k8s.io and by a transfer
#              pull into a second namespace: one GET per blob, every layer committed once and
#              found present by the other namespace, no error, nothing staged;
#   cri-transfer (containerd 2.1+) CRI with disable_snapshot_annotations at its default, so it
#              pulls through the transfer service itself: zsnap still provides every layer;
#   kill       zsnap killed with SIGKILL mid-pull (a large layer), restarted: the next pull
#              ends with a correct image, and after rmi + GC nothing of zsnap's is left.
# CONTAINERD_BIN_DIR / CONTAINERD_CONFIG_VERSION select another containerd (default /usr/bin =
# Debian 12's 1.6.20); remote_versions_test.sh runs this for 1.7.24 and 2.1.9
# (REMOTE_TEST_SUFFIX names the scratch dir).
# Needs: ZSNAP_BIN, root, overlayfs; containerd, runc, docker-registry, skopeo, jq, go (treediff).
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"

itest_init "remote${REMOTE_TEST_SUFFIX:-}"
itest_require_cmd skopeo jq curl gzip zstd tar sha256sum unshare go
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
CONTAINERD_BIN_DIR=${CONTAINERD_BIN_DIR:-/usr/bin}
[[ -x $CONTAINERD_BIN_DIR/containerd ]] || itest_die "no containerd in $CONTAINERD_BIN_DIR"
CONTAINERD_VERSION=$(containerd_version "$CONTAINERD_BIN_DIR")
# containerd_at_least X.Y: the containerd under test is X.Y or newer.
containerd_at_least() { [[ $(printf '%s\n' "$1" "$CONTAINERD_VERSION" | sort -V | head -n1) == "$1" ]]; }
export CONTAINERD_WITH_CRI=1
export CONTAINERD_CRI_REGISTRY_CONFIG_PATH=$ITEST_DIR/containerd-certs.d
export REGISTRY_ACCESSLOG=1
# zsnap reads its own hosts tree: the same as containerd's unless a phase breaks it on purpose.
ZSNAP_HOSTS=$ITEST_DIR/zsnap-certs.d
mkdir -p "$ZSNAP_HOSTS" "$CONTAINERD_CRI_REGISTRY_CONFIG_PATH"

ITEST_CURRENT=setup
TREEDIFF_DIR=${ZSNAP_BUILD_DIR:-$ITEST_DIR}/difftools
if [[ ! -x $TREEDIFF_DIR/treediff ]]; then
  "$ZSNAP_SOURCE_DIR/tests/tools/refapply/build.sh" "$TREEDIFF_DIR" >"$ITEST_DIR/treediff-build.log" 2>&1 ||
    itest_die "building treediff failed (log: $ITEST_DIR/treediff-build.log)"
fi
TREEDIFF=$TREEDIFF_DIR/treediff

ZSNAP_EXTRA="[remote]
hosts_dir = \"$ZSNAP_HOSTS\"
max_attempts = 2
connect_timeout_s = 5"
zsnap_start "" "$ZSNAP_EXTRA" || itest_die "zsnap did not start (log: $ZSNAP_LOG)"
registry_start || itest_die "docker-registry did not start"
containerd_start || itest_die "containerd with CRI did not start (log: $CONTAINERD_LOG)"

# zsnap_hosts_same: zsnap sees the registry exactly as containerd does.
zsnap_hosts_same() {
  rm -rf "$ZSNAP_HOSTS"
  cp -a "$CONTAINERD_CRI_REGISTRY_CONFIG_PATH" "$ZSNAP_HOSTS"
}
# zsnap_hosts_toml TEXT: zsnap's hosts.toml for the registry becomes TEXT.
zsnap_hosts_toml() {
  rm -rf "$ZSNAP_HOSTS"
  mkdir -p "$ZSNAP_HOSTS/$REGISTRY_ADDR"
  printf '%s\n' "$1" >"$ZSNAP_HOSTS/$REGISTRY_ADDR/hosts.toml"
}
containerd_cri_registry_http "$REGISTRY_ADDR" || itest_die "cannot write hosts.toml"
zsnap_hosts_same

k8s_ctr() { CTR_NAMESPACE=k8s.io itest_ctr "$@"; }
k8s_run() {
  local image=$1 id=$2
  shift 2
  k8s_ctr run --rm --runc-root "$ITEST_DIR/runc" --snapshotter zsnap "$image" "itest-$$-$id" "$@"
}
snapshots_in() { k8s_ctr snapshot --snapshotter "$1" ls 2>/dev/null | awk 'NR > 1 {print $1}' | sort; }
content_digests() { k8s_ctr content ls -q 2>/dev/null | sort; }
# blob_stored DIGEST: containerd's content store holds the blob (in any namespace).
blob_stored() { [[ -e $CONTAINERD_ROOT/io.containerd.content.v1.content/blobs/sha256/${1#sha256:} ]]; }
staging_entries() { find "$ZSNAP_ROOT/staging" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
zsnap_dir_count() { find "$ZSNAP_ROOT/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
blob_gets() { grep -cE "\"GET /v2/[^ ]*/blobs/$1[ ?]" "$REGISTRY_LOG" 2>/dev/null; }
log_mark() { ZSNAP_LOG_MARK=$(wc -l <"$ZSNAP_LOG"); }
log_since_mark() { tail -n +"$((ZSNAP_LOG_MARK + 1))" "$ZSNAP_LOG"; }

# zsnap_reconnected: after a zsnap restart, wait until containerd's proxy connection works
# again (its gRPC channel backs off after the old socket died; kubelet would simply retry).
# (`snapshot ls` is answered from containerd's own metadata; Prepare reaches zsnap.)
zsnap_reconnected() {
  zsnap_answers() {
    local key=probe-$$-$RANDOM
    k8s_ctr snapshot --snapshotter zsnap prepare "$key" >/dev/null 2>&1 || return 1
    k8s_ctr snapshot --snapshotter zsnap rm "$key" >/dev/null 2>&1
  }
  itest_wait_for 60 "containerd to reach the restarted zsnap" zsnap_answers
}
# pull IMAGE [zsnap pull options]: CRI PullImage through zsnap's CLI; sets RC, OUT, ERR.
pull() {
  local image=$1
  shift
  RC=0
  OUT=$("$ZSNAP_BIN" pull --cri-endpoint "$CONTAINERD_ADDRESS" --timeout 5m "$@" "$image" \
    2>"$ITEST_DIR/pull.err") || RC=$?
  ERR=$(cat "$ITEST_DIR/pull.err")
  ((RC == 0)) || itest_log "pull $image: exit $RC: $ERR"
  return "$RC"
}
# forget IMAGE: remove it through CRI and wait until containerd's GC has removed every
# snapshot in zsnap and containerd's overlayfs (fresh state for the next phase).
forget() {
  "$ZSNAP_BIN" rmi --cri-endpoint "$CONTAINERD_ADDRESS" "$1" >/dev/null 2>&1
  gone() { [[ -z $(snapshots_in zsnap) && -z $(snapshots_in overlayfs) && $(zsnap_dir_count) == 0 ]]; }
  itest_wait_for 60 "GC of $1's snapshots" gone
}
# manifest_of REPO:TAG -> the pushed manifest JSON.
layer_digests() { registry_manifest "$1" | jq -r '.layers[].digest'; }

# --- remote: zsnap fetches every layer ------------------------------------------------------
ITEST_CURRENT=remote
LAYOUT=$ITEST_DIR/oci
image_build_oci "$LAYOUT" v1 mixed || itest_die "could not build the test image"
MANIFEST_DIGEST=$(image_push_raw "$LAYOUT" v1 itest/remote:v1) || itest_die "push failed"
IMAGE=$REGISTRY_ADDR/itest/remote:v1
CONFIG_DIGEST=$(registry_manifest itest/remote:v1 | jq -r .config.digest)
mapfile -t LAYERS < <(layer_digests itest/remote:v1)
mapfile -t CHAIN < <(image_chain_ids "$LAYOUT" v1)
((${#LAYERS[@]} == 3 && ${#CHAIN[@]} == 3)) || itest_die "expected 3 layers"
itest_check_eq mixed-media-types \
  "application/vnd.oci.image.layer.v1.tar+gzip application/vnd.oci.image.layer.v1.tar+zstd application/vnd.oci.image.layer.v1.tar" \
  "$(image_layer_media_types itest/remote:v1 | tr '\n' ' ' | sed 's/ $//')"

log_mark
pull "$IMAGE"
itest_check_eq remote-pull-exit-0 0 "$RC"
itest_check_eq remote-commits-3-layers 3 "$(log_since_mark | grep -c 'remote op=prepare .*committed=true')"
itest_check_eq remote-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
itest_check_eq remote-zsnap-has-the-chain "$(printf '%s\n' "${CHAIN[@]}" | sort)" "$(snapshots_in zsnap)"
CONTENT=$(content_digests)
itest_check content-has-manifest grep -qxF "$MANIFEST_DIGEST" <<<"$CONTENT"
itest_check content-has-config grep -qxF "$CONFIG_DIGEST" <<<"$CONTENT"
for i in 0 1 2; do
  itest_check_fails "content-lacks-layer-$((i + 1))" grep -qxF "${LAYERS[i]}" <<<"$CONTENT"
  itest_check_fails "content-store-no-blob-layer-$((i + 1))" blob_stored "${LAYERS[i]}"
  itest_check_eq "registry-one-get-layer-$((i + 1))" 1 "$(blob_gets "${LAYERS[i]}")"
done
# 2.1+ CRI pulls through the transfer service unless a setting needs the local path;
# disable_snapshot_annotations = false is one (internal/cri/config CheckLocalImagePullConfigs).
if containerd_at_least 2.1; then
  itest_check remote-cri-local-pull-mode grep -q 'Falling back to local image pull mode' "$CONTAINERD_LOG"
fi
itest_check_eq remote-staging-empty 0 "$(staging_entries)"
itest_check_eq remote-run-layer1 "$IMAGE_EXPECT_HELLO" "$(k8s_run "$IMAGE" hello cat /data/hello.txt 2>&1)"
itest_check_eq remote-run-layer3 "$IMAGE_EXPECT_LAYER3" "$(k8s_run "$IMAGE" l3 cat /data/layer3.txt 2>&1)"
itest_check_eq remote-run-ls "$IMAGE_EXPECT_DATA_LS" "$(k8s_run "$IMAGE" ls ls -A /data 2>&1 | tr '\n' ' ' | sed 's/ $//')"
itest_check_eq remote-run-opaque "$IMAGE_EXPECT_OPAQUE_LS" "$(k8s_run "$IMAGE" opq ls -A /data/opaque 2>&1)"
itest_check_eq remote-run-hardlink "$IMAGE_EXPECT_LINKED" "$(k8s_run "$IMAGE" hl cat /data/hard2 2>&1)"

# --- native: the same layers through containerd's own overlayfs ---------------------------
ITEST_CURRENT=native
containerd_stop
CONTAINERD_CRI_SNAPSHOTTER=overlayfs
containerd_start || itest_die "containerd (CRI snapshotter overlayfs) did not restart"
pull "$IMAGE"
itest_check_eq native-pull-exit-0 0 "$RC"
itest_check_eq native-overlayfs-has-the-chain "$(printf '%s\n' "${CHAIN[@]}" | sort)" "$(snapshots_in overlayfs)"
# mount_view SNAPSHOTTER DIR: a read-only view of the top layer mounted on DIR; prints the
# lowerdir list (top layer first).
mount_view() {
  local sn=$1 dir=$2 cmd
  mkdir -p "$dir"
  # One command: ctr's lease ends with it, and containerd 1.7+ may collect the unreferenced
  # view before a second `ctr snapshot mounts` call (the mount itself only needs the layers).
  cmd=$(k8s_ctr snapshot --snapshotter "$sn" view --target "$dir" "view-$sn-$$" "${CHAIN[2]}") ||
    return 1
  eval "$cmd" || return 1
  itest_on_exit "umount '$dir' 2>/dev/null"
  grep -oE 'lowerdir=[^, ]+' <<<"$cmd" | sed 's/^lowerdir=//'
}
ZL=$(mount_view zsnap "$ITEST_DIR/view-zsnap") || itest_fail native-mount-zsnap-view "$ZL"
NL=$(mount_view overlayfs "$ITEST_DIR/view-native") || itest_fail native-mount-native-view "$NL"
IFS=: read -r -a ZLOW <<<"$ZL"
IFS=: read -r -a NLOW <<<"$NL"
if itest_check_eq native-view-3-lowers "3 3" "${#ZLOW[@]} ${#NLOW[@]}"; then
  for i in 0 1 2; do
    if "$TREEDIFF" "${NLOW[i]}" "${ZLOW[i]}" >"$ITEST_DIR/treediff-$i.txt" 2>&1; then
      itest_pass "native-layer-$((3 - i))-identical"
    else
      itest_fail "native-layer-$((3 - i))-identical" "$(tail -n 5 "$ITEST_DIR/treediff-$i.txt")"
    fi
  done
fi
if "$TREEDIFF" "$ITEST_DIR/view-native" "$ITEST_DIR/view-zsnap" >"$ITEST_DIR/treediff-merged.txt" 2>&1; then
  itest_pass native-merged-rootfs-identical
else
  itest_fail native-merged-rootfs-identical "$(tail -n 5 "$ITEST_DIR/treediff-merged.txt")"
fi
umount "$ITEST_DIR/view-zsnap" "$ITEST_DIR/view-native" 2>/dev/null
k8s_ctr snapshot --snapshotter zsnap rm "view-zsnap-$$" >/dev/null 2>&1
k8s_ctr snapshot --snapshotter overlayfs rm "view-overlayfs-$$" >/dev/null 2>&1
forget "$IMAGE" || itest_fail native-forget "snapshots left: $(snapshots_in zsnap) $(snapshots_in overlayfs)"
containerd_stop
CONTAINERD_CRI_SNAPSHOTTER=zsnap
containerd_start || itest_die "containerd (CRI snapshotter zsnap) did not restart"

# --- fallback: zsnap cannot get the layers, containerd can --------------------------------
ITEST_CURRENT=fallback
# fallback_case NAME REASON_REGEX: pull with zsnap's view broken; the pull must succeed, the
# reason must be logged, containerd must have fetched the first layer itself.
fallback_case() {
  local name=$1 want=$2
  log_mark
  pull "$IMAGE" "${FALLBACK_PULL_ARGS[@]}"
  itest_check_eq "fallback-$name-pull-succeeds" 0 "$RC"
  if log_since_mark | grep 'op=fallback' | grep -qE "$want"; then
    itest_pass "fallback-$name-reason-logged"
  else
    itest_fail "fallback-$name-reason-logged" "$(log_since_mark | grep -E 'op=fallback|failed' | head -n 3)"
  fi
  itest_check "fallback-$name-containerd-fetched-layer" grep -qxF "${LAYERS[0]}" <<<"$(content_digests)"
  itest_check_eq "fallback-$name-runs" "$IMAGE_EXPECT_LAYER3" "$(k8s_run "$IMAGE" "fb-$name" cat /data/layer3.txt 2>&1)"
  itest_check_eq "fallback-$name-staging-empty" 0 "$(staging_entries)"
  forget "$IMAGE" || itest_fail "fallback-$name-forget" "snapshots left: $(snapshots_in zsnap)"
}
FALLBACK_PULL_ARGS=()
DEAD_PORT=$(itest_free_port)
zsnap_hosts_toml "server = \"http://127.0.0.1:$DEAD_PORT\""
fallback_case dead-server 'reason=registry.*UNAVAILABLE'

# aux_registry NAME EDIT: a second registry serving a copy of the first one's storage after
# EDIT (a command run with the blob file of layer 1 as its argument); zsnap is pointed at it.
aux_registry() {
  local name=$1 edit=$2 dir=$ITEST_DIR/registry-$1 addr
  cp -a "$REGISTRY_DIR/storage" "$dir"
  local blob=$dir/docker/registry/v2/blobs/sha256/${LAYERS[0]:7:2}/${LAYERS[0]#sha256:}/data
  [[ -f $blob ]] || itest_die "no blob file $blob"
  $edit "$blob"
  addr=127.0.0.1:$(itest_free_port)
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$dir" "$addr" >"$dir.yml"
  env -u REGISTRY_ADDR -u REGISTRY_LOG -u REGISTRY_DIR -u REGISTRY_PID -u REGISTRY_ACCESSLOG \
    -u REGISTRY_HTPASSWD "$REGISTRY_BIN" serve "$dir.yml" >"$dir.log" 2>&1 &
  AUX_PID=$!
  itest_track_pid "$AUX_PID"
  itest_on_exit "kill $AUX_PID 2>/dev/null"
  aux_ready() { curl -sf "http://$addr/v2/" >/dev/null; }
  itest_wait_for 30 "registry $name" aux_ready || itest_die "registry $name did not start"
  zsnap_hosts_toml "server = \"http://$addr\""
}
corrupt_blob() { printf 'corrupt' | dd of="$1" bs=1 seek=100 conv=notrunc status=none; }
aux_registry missing-blob rm
fallback_case 404 'reason=registry.*(NOT_FOUND|404)'
kill "$AUX_PID" 2>/dev/null
aux_registry corrupt corrupt_blob
fallback_case corrupt-blob 'reason=digest.*DATA_LOSS'
kill "$AUX_PID" 2>/dev/null

# Mirrors that are down or lack the image are skipped: zsnap still serves every layer.
zsnap_hosts_toml "server = \"http://$REGISTRY_ADDR\"
[host.\"http://$REGISTRY_ADDR/v2/nowhere\"]
  capabilities = [\"pull\", \"resolve\"]
  override_path = true
[host.\"http://127.0.0.1:$DEAD_PORT\"]
  capabilities = [\"pull\", \"resolve\"]"
log_mark
pull "$IMAGE"
itest_check_eq mirror-down-pull-exit-0 0 "$RC"
itest_check_eq mirror-down-remote-commits 3 "$(log_since_mark | grep -c 'remote op=prepare .*committed=true')"
itest_check_eq mirror-down-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
forget "$IMAGE" || itest_fail mirror-down-forget "snapshots left"
zsnap_hosts_same

# --- shared: two images with a common base, pulled at once -----------------------------------
ITEST_CURRENT=shared
LAYOUT_B=$ITEST_DIR/oci-b
IMAGE_LAYER3_TEXT="layer 3 of b" image_build_oci "$LAYOUT_B" v1 mixed || itest_die "could not build image b"
image_push_raw "$LAYOUT_B" v1 itest/remote-b:v1 >/dev/null || itest_die "push of b failed"
IMAGE_B=$REGISTRY_ADDR/itest/remote-b:v1
mapfile -t LAYERS_B < <(layer_digests itest/remote-b:v1)
itest_check_eq shared-base-layers "${LAYERS[0]} ${LAYERS[1]}" "${LAYERS_B[0]} ${LAYERS_B[1]}"
itest_check shared-top-differs test "${LAYERS[2]}" != "${LAYERS_B[2]}"
declare -A GETS_BEFORE
for d in "${LAYERS[@]}" "${LAYERS_B[2]}"; do GETS_BEFORE[$d]=$(blob_gets "$d"); done
log_mark
pull "$IMAGE" >/dev/null &
PA=$!
pull "$IMAGE_B"
RC_B=$RC
wait "$PA"
RC_A=$?
# (pull in a subshell cannot set RC for us; its exit status is the pull's)
itest_check_eq shared-both-pulls-succeed "0 0" "$RC_A $RC_B"
for d in "${LAYERS[@]}" "${LAYERS_B[2]}"; do
  itest_check_eq "shared-one-get-${d:7:12}" 1 "$(($(blob_gets "$d") - GETS_BEFORE[$d]))"
done
itest_check_eq shared-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
itest_check_eq shared-4-snapshots 4 "$(snapshots_in zsnap | wc -l)"
itest_check_eq shared-staging-empty 0 "$(staging_entries)"
itest_check_eq shared-run-a "$IMAGE_EXPECT_LAYER3" "$(k8s_run "$IMAGE" sa cat /data/layer3.txt 2>&1)"
itest_check_eq shared-run-b "layer 3 of b" "$(k8s_run "$IMAGE_B" sb cat /data/layer3.txt 2>&1)"
"$ZSNAP_BIN" rmi --cri-endpoint "$CONTAINERD_ADDRESS" "$IMAGE_B" >/dev/null 2>&1
forget "$IMAGE" || itest_fail shared-forget "snapshots left: $(snapshots_in zsnap)"

# --- transfer, namespaces (containerd 2.1+): pulls through the transfer service ---------------
# `ctr image pull` of 2.x goes through the transfer service; it sends the cri.* labels only for
# a snapshotter exporting enable_remote_snapshot_annotations = "true" and unpacks only into one
# listed in the transfer plugin's unpack_config (both written by lib/containerd.sh).
if containerd_at_least 2.1; then
  ITEST_CURRENT=transfer
  # Namespaces named itest-* so that containerd_stop removes their runc state.
  XFER_NS=itest-$$-xfer
  OTHER_NS=itest-$$-other
  ns_ctr() {
    local ns=$1
    shift
    CTR_NAMESPACE=$ns itest_ctr "$@"
  }
  # xfer_pull NS: `ctr image pull` of $IMAGE into NS; output in $ITEST_DIR/xfer-pull-NS.out.
  xfer_pull() {
    ns_ctr "$1" image pull --snapshotter zsnap --hosts-dir "$CONTAINERD_CRI_REGISTRY_CONFIG_PATH" \
      "$IMAGE" >"$ITEST_DIR/xfer-pull-$1.out" 2>&1
  }
  ns_snapshots() { ns_ctr "$1" snapshot --snapshotter zsnap ls 2>/dev/null | awk 'NR > 1 {print $1}' | sort; }
  ns_content() { ns_ctr "$1" content ls -q 2>/dev/null | sort; }
  ns_run() {
    local ns=$1 id=$2
    shift 2
    ns_ctr "$ns" run --rm --runc-root "$ITEST_DIR/runc" --snapshotter zsnap "$IMAGE" "itest-$$-$id" "$@"
  }
  # ns_forget NS: remove $IMAGE from NS and wait until GC has removed NS's zsnap snapshots.
  ns_forget() {
    ns_ctr "$1" image rm --sync "$IMAGE" >/dev/null 2>&1
    ns_gone() { [[ -z $(ns_snapshots "$1") ]]; }
    itest_wait_for 60 "GC of $IMAGE in $1" ns_gone "$1"
  }
  note_gets() { for d in "${LAYERS[@]}"; do GETS_BEFORE[$d]=$(blob_gets "$d"); done; }
  # check_image_in NAME NS: NS holds $IMAGE as zsnap's chain, with no layer blob in content.
  check_image_in() {
    local name=$1 ns=$2 content i
    itest_check_eq "$name-zsnap-has-the-chain" "$(printf '%s\n' "${CHAIN[@]}" | sort)" "$(ns_snapshots "$ns")"
    content=$(ns_content "$ns")
    itest_check "$name-content-has-manifest" grep -qxF "$MANIFEST_DIGEST" <<<"$content"
    itest_check "$name-content-has-config" grep -qxF "$CONFIG_DIGEST" <<<"$content"
    for i in 0 1 2; do
      itest_check_fails "$name-content-lacks-layer-$((i + 1))" grep -qxF "${LAYERS[i]}" <<<"$content"
    done
    itest_check_eq "$name-run" "$IMAGE_EXPECT_LAYER3" "$(ns_run "$ns" "$name" cat /data/layer3.txt 2>&1)"
  }
  # zsnap_problems: warning/error lines zsnap logged since log_mark.
  zsnap_problems() { log_since_mark | grep -E '^[^ ]+ (warning|error|critical) ' | head -n 5; }

  log_mark
  note_gets
  if xfer_pull "$XFER_NS"; then
    itest_pass transfer-pull-exit-0
  else
    itest_fail transfer-pull-exit-0 "$(tail -n 5 "$ITEST_DIR/xfer-pull-$XFER_NS.out")"
  fi
  itest_check_eq transfer-commits-3-layers 3 "$(log_since_mark | grep -c 'remote op=prepare .*committed=true')"
  itest_check_eq transfer-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
  check_image_in transfer "$XFER_NS"
  for i in 0 1 2; do
    itest_check_fails "transfer-content-store-no-blob-layer-$((i + 1))" blob_stored "${LAYERS[i]}"
    itest_check_eq "transfer-one-get-layer-$((i + 1))" 1 "$(($(blob_gets "${LAYERS[i]}") - GETS_BEFORE[${LAYERS[i]}]))"
  done
  itest_check_eq transfer-staging-empty 0 "$(staging_entries)"
  ns_forget "$XFER_NS" || itest_fail transfer-forget "snapshots left: $(ns_snapshots "$XFER_NS")"
  itest_check_eq transfer-gc-leaves-nothing 0 "$(zsnap_dir_count)"

  # One image in two namespaces at once: CRI (k8s.io, local pull) and a transfer pull.
  ITEST_CURRENT=namespaces
  log_mark
  note_gets
  xfer_pull "$OTHER_NS" &
  XP=$!
  pull "$IMAGE"
  RC_CRI=$RC
  wait "$XP"
  RC_XFER=$?
  itest_check_eq namespaces-both-pulls-succeed "0 0" "$RC_CRI $RC_XFER" ||
    itest_log "transfer pull: $(tail -n 5 "$ITEST_DIR/xfer-pull-$OTHER_NS.out")"
  for i in 0 1 2; do
    itest_check_eq "namespaces-one-get-layer-$((i + 1))" 1 "$(($(blob_gets "${LAYERS[i]}") - GETS_BEFORE[${LAYERS[i]}]))"
    itest_check_fails "namespaces-content-store-no-blob-layer-$((i + 1))" blob_stored "${LAYERS[i]}"
  done
  # Each layer committed by whichever namespace got there first, found present by the other.
  itest_check_eq namespaces-commits-3-layers 3 "$(log_since_mark | grep -c 'remote op=prepare .*committed=true')"
  itest_check_eq namespaces-3-layers-present 3 "$(log_since_mark | grep -c 'remote op=prepare .*present=true')"
  itest_check_eq namespaces-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
  itest_check_eq namespaces-no-zsnap-warning "" "$(zsnap_problems)"
  itest_check_eq namespaces-one-copy-per-layer 3 "$(zsnap_dir_count)"
  itest_check_eq namespaces-staging-empty 0 "$(staging_entries)"
  check_image_in namespaces-k8s k8s.io
  check_image_in namespaces-other "$OTHER_NS"
  ns_forget "$OTHER_NS" || itest_fail namespaces-forget-other "snapshots left: $(ns_snapshots "$OTHER_NS")"
  forget "$IMAGE" || itest_fail namespaces-forget "snapshots left: $(snapshots_in zsnap) dirs: $(zsnap_dir_count)"

  # CRI through the transfer service: 2.1's own path once no setting forces the local one
  # (disable_snapshot_annotations left at its default); the cri.* labels come from the export.
  ITEST_CURRENT=cri-transfer
  containerd_stop
  CD_MARK=$(wc -l <"$CONTAINERD_LOG")
  CONTAINERD_CRI_TRANSFER_PULL=1 containerd_start || itest_die "containerd (CRI transfer pull) did not restart"
  log_mark
  note_gets
  pull "$IMAGE"
  itest_check_eq cri-transfer-pull-exit-0 0 "$RC"
  itest_check_eq cri-transfer-not-local-pull 0 \
    "$(tail -n +"$((CD_MARK + 1))" "$CONTAINERD_LOG" | grep -c 'Falling back to local image pull mode')"
  itest_check_eq cri-transfer-commits-3-layers 3 "$(log_since_mark | grep -c 'remote op=prepare .*committed=true')"
  itest_check_eq cri-transfer-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
  check_image_in cri-transfer k8s.io
  for i in 0 1 2; do
    itest_check_fails "cri-transfer-content-store-no-blob-layer-$((i + 1))" blob_stored "${LAYERS[i]}"
    itest_check_eq "cri-transfer-one-get-layer-$((i + 1))" 1 "$(($(blob_gets "${LAYERS[i]}") - GETS_BEFORE[${LAYERS[i]}]))"
  done
  itest_check_eq cri-transfer-staging-empty 0 "$(staging_entries)"
  forget "$IMAGE" || itest_fail cri-transfer-forget "snapshots left: $(snapshots_in zsnap) dirs: $(zsnap_dir_count)"
  containerd_stop
  containerd_start || itest_die "containerd (CRI local pull) did not restart"
fi

# --- kill: SIGKILL mid-pull, restart, pull again ----------------------------------------------
ITEST_CURRENT=kill
BIG=$ITEST_DIR/big
mkdir -p "$BIG/rootfs/data"
cp -a "$LAYOUT" "$ITEST_DIR/oci-big"
# A fourth layer of 256 MiB of incompressible data in 64 files, on top of the test image.
for i in $(seq 1 64); do head -c 4M /dev/urandom >"$BIG/rootfs/data/big-$i.bin"; done
(cd "$BIG/rootfs" && tar --create --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime=@1700000000 --format=posix -f "$BIG/layer.tar" data)
BIG_DIFF=sha256:$(sha256sum "$BIG/layer.tar" | cut -d' ' -f1)
gzip -1 -n -c "$BIG/layer.tar" >"$BIG/layer.tar.gz"
read -r BIG_DIGEST BIG_SIZE < <(image__blob "$ITEST_DIR/oci-big" "$BIG/layer.tar.gz")
MF=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "v1") | .digest' \
  "$ITEST_DIR/oci-big/index.json")
MJ=$ITEST_DIR/oci-big/blobs/sha256/${MF#sha256:}
CJ=$ITEST_DIR/oci-big/blobs/sha256/$(jq -r .config.digest "$MJ" | cut -d: -f2)
jq -c --arg d "$BIG_DIFF" '.rootfs.diff_ids += [$d] | .history += [{created_by: "big"}]' "$CJ" >"$BIG/config.json"
read -r CD CS < <(image__blob "$ITEST_DIR/oci-big" "$BIG/config.json")
jq -c --arg cd "$CD" --argjson cs "$CS" --arg ld "$BIG_DIGEST" --argjson ls "$BIG_SIZE" \
  '.config.digest = $cd | .config.size = $cs |
   .layers += [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]' \
  "$MJ" >"$BIG/manifest.json"
read -r MD MS < <(image__blob "$ITEST_DIR/oci-big" "$BIG/manifest.json")
jq -c --arg d "$MD" --argjson s "$MS" '.manifests = [{mediaType: "application/vnd.oci.image.manifest.v1+json",
  digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": "v1"}}]' \
  "$ITEST_DIR/oci-big/index.json" >"$BIG/index.json" && mv "$BIG/index.json" "$ITEST_DIR/oci-big/index.json"
image_push_raw "$ITEST_DIR/oci-big" v1 itest/remote-big:v1 >/dev/null || itest_die "push of the big image failed"
IMAGE_BIG=$REGISTRY_ADDR/itest/remote-big:v1

log_mark
pull "$IMAGE_BIG" >/dev/null 2>&1 &
PULL_PID=$!
big_started() { log_since_mark | grep -q "remote op=prepare .*committed=true"; }
itest_wait_for 60 "the first remote layer of the big image" big_started || itest_fail kill-pull-started "no remote commit"
kill -9 "$ZSNAP_PID"
wait "$PULL_PID"
itest_check kill-interrupted-pull-failed test $? -ne 0
zsnap_start "$ZSNAP_ROOT" "$ZSNAP_EXTRA" || itest_die "zsnap did not restart"
zsnap_reconnected || itest_die "containerd did not reconnect to the restarted zsnap"
itest_check_eq kill-restart-staging-cleared 0 "$(staging_entries)"
pull "$IMAGE_BIG"
itest_check_eq kill-pull-after-restart-exit-0 0 "$RC"
itest_check_eq kill-big-layer-content "$(sha256sum "$BIG/rootfs/data/big-7.bin" | cut -d' ' -f1)" \
  "$(k8s_run "$IMAGE_BIG" big cat /data/big-7.bin 2>&1 | sha256sum | cut -d' ' -f1)"
itest_check_eq kill-base-still-right "$IMAGE_EXPECT_HELLO" "$(k8s_run "$IMAGE_BIG" big2 cat /data/hello.txt 2>&1)"
itest_check_eq kill-staging-empty 0 "$(staging_entries)"
if forget "$IMAGE_BIG"; then
  itest_pass kill-nothing-leaked-after-gc
else
  itest_fail kill-nothing-leaked-after-gc "left: $(snapshots_in zsnap | tr '\n' ' ') dirs: $(zsnap_dir_count)"
fi

# --- TLS: a registry with a certificate from a private CA that hosts.toml names -------------
ITEST_CURRENT=tls
TLS=$ITEST_DIR/tls
mkdir -p "$TLS"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=zsnap-itest-ca \
  -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null || itest_die "openssl CA"
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$TLS/server.key" \
  -out "$TLS/server.csr" 2>/dev/null || itest_die "openssl CSR"
printf 'subjectAltName=IP:127.0.0.1\n' >"$TLS/ext.cnf"
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
  -days 2 -extfile "$TLS/ext.cnf" -out "$TLS/server.pem" 2>/dev/null || itest_die "openssl sign"
TLS_ADDR=127.0.0.1:$(itest_free_port)
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n  tls:\n    certificate: %s\n    key: %s\n' \
  "$REGISTRY_DIR/storage" "$TLS_ADDR" "$TLS/server.pem" "$TLS/server.key" >"$TLS/registry.yml"
env -u REGISTRY_ADDR -u REGISTRY_LOG -u REGISTRY_DIR -u REGISTRY_PID -u REGISTRY_ACCESSLOG \
  "$REGISTRY_BIN" serve "$TLS/registry.yml" >"$TLS/registry.log" 2>&1 &
TLS_PID=$!
itest_track_pid "$TLS_PID"
itest_on_exit "kill $TLS_PID 2>/dev/null"
tls_ready() { curl -sf --cacert "$TLS/ca.pem" "https://$TLS_ADDR/v2/" >/dev/null; }
itest_wait_for 30 "TLS registry" tls_ready || itest_die "TLS registry did not start"
for dir in "$CONTAINERD_CRI_REGISTRY_CONFIG_PATH" "$ZSNAP_HOSTS"; do
  mkdir -p "$dir/$TLS_ADDR"
  printf 'server = "https://%s"\n[host."https://%s"]\n  capabilities = ["pull", "resolve"]\n  ca = "%s"\n' \
    "$TLS_ADDR" "$TLS_ADDR" "$TLS/ca.pem" >"$dir/$TLS_ADDR/hosts.toml"
done
IMAGE_TLS=$TLS_ADDR/itest/remote:v1
log_mark
pull "$IMAGE_TLS"
itest_check_eq tls-pull-exit-0 0 "$RC"
itest_check_eq tls-remote-commits 3 "$(log_since_mark | grep -c 'remote op=prepare .*committed=true')"
itest_check_eq tls-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
itest_check_fails tls-content-lacks-layer-1 grep -qxF "${LAYERS[0]}" <<<"$(content_digests)"
itest_check_eq tls-run "$IMAGE_EXPECT_HELLO" "$(k8s_run "$IMAGE_TLS" tls cat /data/hello.txt 2>&1)"
forget "$IMAGE_TLS" || itest_fail tls-forget "snapshots left: $(snapshots_in zsnap)"
kill "$TLS_PID" 2>/dev/null

# --- 401: credentials containerd has (CRI AuthConfig, as kubelet's pull secrets) and zsnap
# does not: zsnap falls back, the pull succeeds. (Last: the registry moves to a new port.)
ITEST_CURRENT=fallback-401
registry_stop
REGISTRY_HTPASSWD=$ITEST_DIR/htpasswd
registry_htpasswd "$REGISTRY_HTPASSWD" alice 's3cret' || itest_die "cannot hash a password"
registry_start || itest_die "docker-registry with htpasswd did not start"
containerd_cri_registry_http "$REGISTRY_ADDR" || itest_die "cannot write hosts.toml"
zsnap_hosts_same
IMAGE=$REGISTRY_ADDR/itest/remote:v1
FALLBACK_PULL_ARGS=(--creds alice:s3cret)
fallback_case 401 'reason=registry.*(UNAUTHENTICATED|401)'

# The same registry once zsnap has the credentials too (docker config.json "auths"): zsnap
# serves every layer again.
ITEST_CURRENT=basic-auth
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$REGISTRY_ADDR" "$(printf 'alice:s3cret' | base64)" \
  >"$ITEST_DIR/docker-config.json"
zsnap_stop
zsnap_start "$ZSNAP_ROOT" "$ZSNAP_EXTRA
docker_config = \"$ITEST_DIR/docker-config.json\"" || itest_die "zsnap did not restart"
zsnap_reconnected || itest_die "containerd did not reconnect to the restarted zsnap"
log_mark
pull "$IMAGE" --creds alice:s3cret
itest_check_eq basic-auth-pull-exit-0 0 "$RC"
itest_check_eq basic-auth-remote-commits 3 "$(log_since_mark | grep -c 'remote op=prepare .*committed=true')"
itest_check_eq basic-auth-no-fallback 0 "$(log_since_mark | grep -c 'op=fallback')"
CONTENT=$(content_digests)
itest_check_fails basic-auth-content-lacks-layer-1 grep -qxF "${LAYERS[0]}" <<<"$CONTENT"

itest_check zsnap-still-running zsnap_running
itest_report
