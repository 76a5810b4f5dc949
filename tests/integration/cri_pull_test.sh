#!/usr/bin/env bash
# `zsnap pull --cri-endpoint` drives containerd's CRI plugin the way kubelet does
# (runtime.v1.ImageService/PullImage), against a private containerd with CRI on
# (lib/containerd.sh CONTAINERD_WITH_CRI=1, registry hosts via its config_path):
#   * the three-layer test image (lib/image.sh, gzip) pushed to a private docker-registry is
#     pulled with CRI's snapshotter set to zsnap: exit 0, the image ID containerd returns is
#     the image's config digest, the image is in `ctr -n k8s.io images ls`, its layers are
#     zsnap snapshots (none in containerd's overlayfs), and `ctr -n k8s.io run --snapshotter
#     zsnap` sees the files; text and --json output, both endpoint spellings;
#   * a missing tag fails with exit 1 and a message naming it;
#   * `zsnap rmi` removes the image (twice: idempotent) and containerd's GC then removes
#     zsnap's snapshots;
#   * after a containerd restart with CONTAINERD_CRI_SNAPSHOTTER=overlayfs the same pull works
#     with containerd's native snapshotter and zsnap gets no snapshots.
#   * --creds travel as the CRI AuthConfig: against the registry behind htpasswd basic auth a
#     pull without or with wrong credentials exits 1 (401), with the right ones succeeds.
# CONTAINERD_BIN_DIR / CONTAINERD_CONFIG_VERSION select another containerd (default
# /usr/bin = Debian 12's 1.6.20). CRI logs CNI errors (no CNI config): irrelevant to pulls.
# Needs: ZSNAP_BIN, root, overlayfs; containerd, runc, docker-registry, skopeo, jq, curl.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"

itest_init cri_pull
itest_require_cmd skopeo jq curl gzip tar sha256sum unshare
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
CONTAINERD_BIN_DIR=${CONTAINERD_BIN_DIR:-/usr/bin}
[[ -x $CONTAINERD_BIN_DIR/containerd ]] || itest_die "no containerd in $CONTAINERD_BIN_DIR"
export CONTAINERD_WITH_CRI=1

ITEST_CURRENT=setup
zsnap_start || itest_die "zsnap did not start (log: $ZSNAP_LOG)"
registry_start || itest_die "docker-registry did not start"
containerd_start || itest_die "containerd with CRI did not start (log: $CONTAINERD_LOG)"
itest_pass containerd-cri-plugin-loaded
containerd_cri_registry_http "$REGISTRY_ADDR" || itest_die "cannot write hosts.toml"

LAYOUT=$ITEST_DIR/oci
image_build_oci "$LAYOUT" v1 gzip || itest_die "could not build the test image"
image_push "$LAYOUT" v1 itest/cri:v1 >/dev/null || itest_die "skopeo push failed"
IMAGE=$REGISTRY_ADDR/itest/cri:v1
CONFIG_DIGEST=$(registry_manifest itest/cri:v1 | jq -r .config.digest)
[[ $CONFIG_DIGEST == sha256:* ]] || itest_die "no config digest in the pushed manifest"
mapfile -t CHAIN < <(image_chain_ids "$LAYOUT" v1)
((${#CHAIN[@]} == 3)) || itest_die "expected 3 chain ids, got ${#CHAIN[@]}"
CHAIN_SORTED=$(printf '%s\n' "${CHAIN[@]}" | sort)

# k8s_ctr ARGS...: ctr in CRI's namespace. Containers get a private runc root, so nothing
# lands in the host's /run/containerd/runc/k8s.io.
k8s_ctr() { CTR_NAMESPACE=k8s.io itest_ctr "$@"; }
k8s_run() {
  local snapshotter=$1 id=$2
  shift 2
  k8s_ctr run --rm --runc-root "$ITEST_DIR/runc" --snapshotter "$snapshotter" "$IMAGE" \
    "itest-$$-$id" "$@"
}
snapshots_in() { k8s_ctr snapshot --snapshotter "$1" ls 2>/dev/null | awk 'NR > 1 {print $1}' | sort; }
zsnap_dir_count() { find "$ZSNAP_ROOT/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# (grep without -q: an early exit would SIGPIPE ctr and fail the pipeline under pipefail.)
image_listed() { k8s_ctr images ls -q 2>/dev/null | grep -xF "$IMAGE" >/dev/null; }

# zsnap_cri ARGS...: run `zsnap ARGS`; sets OUT, ERR and RC.
zsnap_cri() {
  RC=0
  OUT=$("$ZSNAP_BIN" "$@" 2>"$ITEST_DIR/zsnap-cli.err") || RC=$?
  ERR=$(cat "$ITEST_DIR/zsnap-cli.err")
}

# --- CRI pull into zsnap ------------------------------------------------------------------
ITEST_CURRENT=pull-zsnap
zsnap_cri pull --json --cri-endpoint "$CONTAINERD_ADDRESS" "$IMAGE"
if itest_check_eq pull-zsnap-exit-0 0 "$RC"; then
  itest_log "zsnap pull (CRI snapshotter zsnap): $OUT"
  itest_check_eq pull-zsnap-json-image "$IMAGE" "$(jq -r .image <<<"$OUT")"
  itest_check_eq pull-zsnap-image-ref-is-config-digest "$CONFIG_DIGEST" "$(jq -r .image_ref <<<"$OUT")"
  itest_check_match pull-zsnap-json-wall-s '^[0-9]+(\.[0-9]+)?(e-?[0-9]+)?$' "$(jq -r '.wall_s' <<<"$OUT")"
  itest_check_eq pull-zsnap-json-keys 'image image_ref wall_s' "$(jq -r 'keys | join(" ")' <<<"$OUT")"
else
  itest_log "stderr: $ERR"
  tail -n 30 "$CONTAINERD_LOG" >&2
fi
itest_check k8s-images-ls-lists-image image_listed
itest_check_eq zsnap-has-the-layer-snapshots "$CHAIN_SORTED" "$(snapshots_in zsnap)"
itest_check_eq containerd-overlayfs-unused "" "$(snapshots_in overlayfs)"

ITEST_CURRENT=run-zsnap
itest_check_eq run-zsnap-cat-layer1-file "$IMAGE_EXPECT_HELLO" "$(k8s_run zsnap hello cat /data/hello.txt 2>&1)"
itest_check_eq run-zsnap-cat-layer3-file "$IMAGE_EXPECT_LAYER3" "$(k8s_run zsnap layer3 cat /data/layer3.txt 2>&1)"
itest_check_eq run-zsnap-whiteout "absent" \
  "$(k8s_run zsnap wh sh -c 'test -e /data/removed.txt && echo present || echo absent' 2>&1)"

# The image is there now: a second pull is cheap; text output, unix:// endpoint.
ITEST_CURRENT=pull-text
zsnap_cri pull --cri-endpoint "unix://$CONTAINERD_ADDRESS" --timeout 2m "$IMAGE"
itest_check_eq pull-again-unix-url-exit-0 0 "$RC" || itest_log "stderr: $ERR"
itest_check_match pull-text-image-line "^image +$IMAGE\$" "$(sed -n 1p <<<"$OUT")"
itest_check_eq pull-text-image-ref-line "image_ref  $CONFIG_DIGEST" "$(sed -n 2p <<<"$OUT")"
itest_check_match pull-text-wall-line '^wall +[0-9]+\.[0-9]{3} s$' "$(sed -n 3p <<<"$OUT")"
# Credentials travel as AuthConfig; this registry needs none, so the pull still succeeds.
zsnap_cri pull --cri-endpoint "$CONTAINERD_ADDRESS" --creds itest:secret "$IMAGE"
itest_check_eq pull-with-creds-exit-0 0 "$RC" || itest_log "stderr: $ERR"

# --- errors -----------------------------------------------------------------------------
ITEST_CURRENT=errors
MISSING=$REGISTRY_ADDR/itest/cri:missing
zsnap_cri pull --cri-endpoint "$CONTAINERD_ADDRESS" "$MISSING"
itest_log "missing tag: exit $RC, stderr: $ERR"
itest_check_eq pull-missing-tag-exit-1 1 "$RC"
itest_check_match pull-missing-tag-names-it "^zsnap pull: PullImage $MISSING on $CONTAINERD_ADDRESS: .*itest/cri:missing.*not found" "$ERR"
itest_check_eq pull-missing-tag-no-stdout "" "$OUT"
zsnap_cri pull --cri-endpoint "$ITEST_SOCK_DIR/nothing.sock" "$IMAGE"
itest_check_eq pull-no-runtime-exit-1 1 "$RC"
itest_check_match pull-no-runtime-message "PullImage .* on $ITEST_SOCK_DIR/nothing.sock: .*listening there" "$ERR"
zsnap_cri pull "$IMAGE"
itest_check_eq pull-without-endpoint-exit-2 2 "$RC"

# --- rmi ----------------------------------------------------------------------------------
ITEST_CURRENT=rmi
zsnap_cri rmi --cri-endpoint "$CONTAINERD_ADDRESS" "$IMAGE"
itest_check_eq rmi-exit-0 0 "$RC" || itest_log "stderr: $ERR"
itest_check_eq rmi-output "removed $IMAGE" "$OUT"
itest_check_fails rmi-image-gone image_listed
zsnap_cri rmi --cri-endpoint "$CONTAINERD_ADDRESS" "$IMAGE"
itest_check_eq rmi-again-is-ok 0 "$RC" || itest_log "stderr: $ERR"
no_zsnap_snapshots() { [[ -z $(snapshots_in zsnap) && $(zsnap_dir_count) == 0 ]]; }
if itest_wait_for 30 "containerd GC to remove zsnap's snapshots" no_zsnap_snapshots; then
  itest_pass rmi-gc-removes-zsnap-snapshots
else
  itest_fail rmi-gc-removes-zsnap-snapshots "left: $(snapshots_in zsnap | tr '\n' ' ') dirs: $(zsnap_dir_count)"
fi

# --- the same through containerd's native overlayfs ---------------------------------------
ITEST_CURRENT=pull-overlayfs
containerd_stop
CONTAINERD_CRI_SNAPSHOTTER=overlayfs
containerd_start || itest_die "containerd (CRI snapshotter overlayfs) did not restart (log: $CONTAINERD_LOG)"
zsnap_cri pull --json --cri-endpoint "$CONTAINERD_ADDRESS" "$IMAGE"
if itest_check_eq pull-overlayfs-exit-0 0 "$RC"; then
  itest_log "zsnap pull (CRI snapshotter overlayfs): $OUT"
  itest_check_eq pull-overlayfs-image-ref-is-config-digest "$CONFIG_DIGEST" "$(jq -r .image_ref <<<"$OUT")"
else
  itest_log "stderr: $ERR"
  tail -n 30 "$CONTAINERD_LOG" >&2
fi
itest_check k8s-images-ls-lists-image-overlayfs image_listed
itest_check_eq overlayfs-has-the-layer-snapshots "$CHAIN_SORTED" "$(snapshots_in overlayfs)"
itest_check_eq zsnap-unused-with-overlayfs "0" "$(zsnap_dir_count)"
itest_check_eq run-overlayfs-cat-file "$IMAGE_EXPECT_HELLO" "$(k8s_run overlayfs ovl cat /data/hello.txt 2>&1)"
zsnap_cri rmi --cri-endpoint "$CONTAINERD_ADDRESS" "$IMAGE"
itest_check_eq rmi-overlayfs-exit-0 0 "$RC" || itest_log "stderr: $ERR"

# --- --creds reach the registry through containerd ----------------------------------------
# The same registry storage behind basic auth (a new port, so a new image reference).
ITEST_CURRENT=creds
registry_stop
REGISTRY_HTPASSWD=$ITEST_DIR/htpasswd
registry_htpasswd "$REGISTRY_HTPASSWD" alice 's3cret:pw' || itest_die "cannot hash a password"
registry_start || itest_die "docker-registry with htpasswd did not start"
containerd_cri_registry_http "$REGISTRY_ADDR" || itest_die "cannot write hosts.toml"
IMAGE=$REGISTRY_ADDR/itest/cri:v1
zsnap_cri pull --cri-endpoint "$CONTAINERD_ADDRESS" "$IMAGE"
itest_log "no creds: exit $RC, stderr: $ERR"
itest_check_eq pull-auth-registry-without-creds-exit-1 1 "$RC"
# containerd 1.6 says "401 Unauthorized", 2.x "authorization failed: no basic auth credentials".
itest_check_match pull-auth-registry-without-creds-unauthorized "401 Unauthorized|authorization failed" "$ERR"
zsnap_cri pull --cri-endpoint "$CONTAINERD_ADDRESS" --creds alice:wrong "$IMAGE"
itest_check_eq pull-auth-registry-wrong-creds-exit-1 1 "$RC"
zsnap_cri pull --json --cri-endpoint "$CONTAINERD_ADDRESS" --creds 'alice:s3cret:pw' "$IMAGE"
itest_check_eq pull-auth-registry-with-creds-exit-0 0 "$RC" || itest_log "stderr: $ERR"
itest_check_eq pull-auth-registry-image-ref "$CONFIG_DIGEST" "$(jq -r .image_ref <<<"$OUT" 2>/dev/null)"
itest_check k8s-images-ls-lists-authenticated-pull image_listed

itest_check zsnap-still-running zsnap_running

itest_report
