#!/usr/bin/env bash
# zsnap against a hostile registry (hostile/hostile_registry.py: wrong JSON types, huge and
# endless bodies, chunked abuse, slow-loris, redirect chains and loops, presigned and
# cross-host redirects with auth, lying token servers, a 20k-layer manifest), issue 11:
#   prepare  each scenario straight through the Prepare path (tools/snapctl prepare with the
#            labels containerd's CRI unpacker sends), with a client deadline: zsnap answers
#            (ALREADY_EXISTS where the registry is usable, fallback mounts otherwise), stops
#            fetching soon after the caller gave up, and stays responsive;
#   cri      each scenario as a CRI pull through real containerd with zsnap as its snapshotter,
#            then again with containerd's own overlayfs: the pull ends the same way (success or
#            failure) both times - zsnap never makes a pull fail or hang that native would not;
#            where the registry is usable zsnap provides every layer itself;
#   after    zsnap never died, its peak RSS stayed under 256 MiB, nothing is left in staging,
#            threads and fds are back near their idle count, and no credential or presigned
#            signature reached zsnap's log, its state, or a request to a host it does not
#            belong to; no header was injected.
# Needs: ZSNAP_BIN, root, overlayfs; containerd, runc, python3, skopeo, jq, curl, go.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # tests/integration; this suite waits in hostile/ until it passes on main
source "$here/lib/all.sh"

itest_init hostile
itest_require_cmd python3 jq curl go skopeo
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"

ITEST_CURRENT=setup
bin=$ITEST_DIR/bin
out=$(bash "$here/tools/build.sh" "$bin" 2>&1) || itest_die "building tests/integration/tools failed: $out"
snapctl() { "$bin/snapctl" -address "$ZSNAP_SOCKET" "$@"; }

SECRET_USER=hostile-user
SECRET_PASS=hostile-secret-7f3a
SECRET="$SECRET_USER:$SECRET_PASS"
SECRET_B64=$(printf '%s' "$SECRET" | base64 -w0)
SIG=PRESIGNED-SIG-9c2e

LAYOUT=$ITEST_DIR/oci
image_build_oci "$LAYOUT" v1 mixed || itest_die "could not build the test image"
mapfile -t CHAIN < <(image_chain_ids "$LAYOUT" v1)
MANIFEST_FILE=$LAYOUT/blobs/sha256/$(jq -r '.manifests[0].digest' "$LAYOUT/index.json" | cut -d: -f2)
MANIFEST_DIGEST=$(jq -r '.manifests[0].digest' "$LAYOUT/index.json")
mapfile -t LAYERS < <(jq -r '.layers[].digest' "$MANIFEST_FILE")
((${#LAYERS[@]} == 3 && ${#CHAIN[@]} == 3)) || itest_die "expected a 3-layer image"

HLOG=$ITEST_DIR/hostile-requests.jsonl
: >"$HLOG"
python3 "$here/hostile/hostile_registry.py" --layout "$LAYOUT" --tag v1 \
  --port-file "$ITEST_DIR/hostile.ports" --log "$HLOG" --secret "$SECRET" --sig "$SIG" \
  >"$ITEST_DIR/hostile.out" 2>&1 &
HOSTILE_PID=$!
itest_track_pid "$HOSTILE_PID"
itest_on_exit "kill $HOSTILE_PID 2>/dev/null"
itest_wait_for 30 "the hostile registry" test -s "$ITEST_DIR/hostile.ports" || itest_die "hostile registry did not start"
read -r PORT_A PORT_B <"$ITEST_DIR/hostile.ports"
HOST_A=127.0.0.1:$PORT_A

# zsnap holds the secret for host A only (its own docker config), as a node's would.
DOCKER_CONFIG_FILE=$ITEST_DIR/docker-config.json
jq -n --arg h "$HOST_A" --arg a "$SECRET_B64" '{auths: {($h): {auth: $a}}}' >"$DOCKER_CONFIG_FILE"
export CONTAINERD_WITH_CRI=1
export CONTAINERD_CRI_REGISTRY_CONFIG_PATH=$ITEST_DIR/containerd-certs.d
containerd_cri_registry_http "$HOST_A" || itest_die "cannot write hosts.toml"
zsnap_start "" "[remote]
hosts_dir = \"$CONTAINERD_CRI_REGISTRY_CONFIG_PATH\"
docker_config = \"$DOCKER_CONFIG_FILE\"
max_attempts = 2
connect_timeout_s = 5" || itest_die "zsnap did not start (log: $ZSNAP_LOG)"
containerd_start || itest_die "containerd with CRI did not start (log: $CONTAINERD_LOG)"

proc_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
zsnap_threads() { proc_field "$ZSNAP_PID" Threads; }
zsnap_fds() { find "/proc/$ZSNAP_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
staging_entries() { find "$ZSNAP_ROOT/staging" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
zsnap_requests() { grep -c '"zsnap/' "$HLOG"; }   # zsnap's User-Agent starts with zsnap/
zsnap_registry_conns() {
  ss -Htnp state established "( dport = :$PORT_A or dport = :$PORT_B )" 2>/dev/null |
    grep -c "pid=$ZSNAP_PID,"
}
IDLE_THREADS=$(zsnap_threads)
IDLE_FDS=$(zsnap_fds)
itest_log "zsnap idle: $IDLE_THREADS threads, $IDLE_FDS fds; hostile registry A=$PORT_A B=$PORT_B"

# Scenarios whose registry is usable: containerd pulls them, and so must zsnap's remote path.
SERVED=(ok mediatype-null relative-query presigned cross-host token-expiry)
HOSTILE=(err-code-int err-message-null err-nonobject huge-manifest endless-blob chunk-ext
  endless-trailers slowloris redirect-loop redirect-chain token-crlf token-types layers-20k)
is_served() { [[ " ${SERVED[*]} " == *" $1 "* ]]; }

# labels_for SCENARIO: the Prepare labels containerd's CRI unpacker sends for layer 1.
labels_for() {
  local s=$1 target=${CHAIN[0]} layer=${LAYERS[0]} manifest=$MANIFEST_DIGEST
  # Scenarios that serve their own manifest variant: CRI would label its digest.
  if [[ $s == mediatype-null || $s == layers-20k ]]; then
    manifest=$(curl -s --max-time 20 -D - -o /dev/null "http://$HOST_A/v2/$s/img/manifests/v1" |
      tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}')
  fi
  if [[ $s == layers-20k ]]; then   # the generated manifest's layer 0 (hostile_registry.py)
    target=sha256:$(printf diff0 | sha256sum | cut -d' ' -f1)
    layer=sha256:$(printf layer0 | sha256sum | cut -d' ' -f1)
  fi
  printf '%s\n' "containerd.io/snapshot.ref=$target" \
    "containerd.io/snapshot/cri.image-ref=$HOST_A/$s/img:v1" \
    "containerd.io/snapshot/cri.layer-digest=$layer" \
    "containerd.io/snapshot/cri.manifest-digest=$manifest"
}

alive_and_answering() {
  zsnap_running || return 1
  snapctl -timeout 10s ping >/dev/null 2>&1
}

# --- prepare: every scenario through the Prepare path -----------------------------------------
ITEST_CURRENT=prepare
ZSNAP_EXTRA="[remote]
hosts_dir = \"$CONTAINERD_CRI_REGISTRY_CONFIG_PATH\"
docker_config = \"$DOCKER_CONFIG_FILE\"
max_attempts = 2
connect_timeout_s = 5"
first=1
for s in "${SERVED[@]}" "${HOSTILE[@]}"; do
  # A fresh daemon per scenario: every scenario serves the same layers, and zsnap serves a
  # Prepare from any image it already resolved that has the layer (content-addressed), so an
  # earlier scenario's image would answer for this one.
  if ((first == 0)); then
    zsnap_stop
    zsnap_start "" "$ZSNAP_EXTRA" >/dev/null || itest_die "zsnap did not restart (log: $ZSNAP_LOG)"
  fi
  first=0
  mapfile -t labels < <(labels_for "$s")
  start=$SECONDS
  got=$(snapctl -timeout 30s prepare "hostile-$s-$$" "" "${labels[@]}" 2>&1)
  took=$((SECONDS - start))
  if is_served "$s"; then
    itest_check_eq "prepare-$s-provided" exists "$got"
  else
    # Fallback mounts at once, or the caller's own deadline: never an error of zsnap's own.
    if [[ $got == mounts || $got == *DeadlineExceeded* || $got == *"deadline exceeded"* ]]; then
      itest_pass "prepare-$s-falls-back"
    else
      itest_fail "prepare-$s-falls-back" "$got"
    fi
  fi
  itest_check "prepare-$s-zsnap-alive" alive_and_answering
  # Once the caller gave up, zsnap stops talking to the registry for this pull (soon): no
  # new request for 3 s and no connection left open (a trickling body is one request).
  quiet() {
    local n
    n=$(zsnap_requests)
    sleep 3
    [[ $(zsnap_requests) == "$n" && $(zsnap_registry_conns) == 0 ]]
  }
  itest_check "prepare-$s-stops-fetching" itest_wait_for 60 "zsnap to stop fetching ($s)" quiet
  snapctl wipe >/dev/null 2>&1 || itest_fail "prepare-$s-wipe" "$(snapctl list 2>&1 | head -n 5)"
  itest_log "prepare $s: $got in ${took}s"
done

# --- cri: the same scenarios through containerd, with zsnap and natively ----------------------
ITEST_CURRENT=cri
k8s_ctr() { CTR_NAMESPACE=k8s.io itest_ctr "$@"; }
snapshots_in() { k8s_ctr snapshot --snapshotter "$1" ls 2>/dev/null | awk 'NR > 1 {print $1}' | sort; }
content_blobs() { find "$CONTAINERD_ROOT/io.containerd.content.v1.content/blobs/sha256" -type f 2>/dev/null | wc -l; }
cri_pull() {   # cri_pull SCENARIO -> exit status of the CRI pull
  local s=$1
  local -a creds=()
  [[ $s == cross-host ]] && creds=(--creds "$SECRET")
  "$ZSNAP_BIN" pull --cri-endpoint "$CONTAINERD_ADDRESS" --timeout 20s "${creds[@]}" \
    "$HOST_A/$s/img:v1" >"$ITEST_DIR/pull-$s.out" 2>&1
}
# forget SCENARIO: fresh state for the next case - the image removed, its snapshots collected,
# and containerd's content (blobs and partial ingests, which a later pull would reuse since
# every scenario serves the same layers) deleted.
forget() {
  "$ZSNAP_BIN" rmi --cri-endpoint "$CONTAINERD_ADDRESS" "$HOST_A/$1/img:v1" >/dev/null 2>&1
  local d
  for d in $(k8s_ctr content ls -q 2>/dev/null); do k8s_ctr content rm "$d" >/dev/null 2>&1; done
  rm -rf "$CONTAINERD_ROOT/io.containerd.content.v1.content/ingest/"*
  gone() { [[ -z $(snapshots_in zsnap) && -z $(snapshots_in overlayfs) && $(content_blobs) == 0 ]]; }
  itest_wait_for 60 "GC after $1" gone
}
declare -A RC_ZSNAP RC_NATIVE
for s in "${SERVED[@]}" "${HOSTILE[@]}"; do
  mark=$(wc -l <"$ZSNAP_LOG")
  rc=0
  cri_pull "$s" || rc=$?
  RC_ZSNAP[$s]=$rc
  if is_served "$s"; then
    itest_check_eq "cri-$s-pull-succeeds" 0 "$rc"
    itest_check_eq "cri-$s-zsnap-provides-3" 3 \
      "$(tail -n +"$((mark + 1))" "$ZSNAP_LOG" | grep -c 'remote op=prepare .*committed=true')"
  fi
  itest_check "cri-$s-zsnap-alive" alive_and_answering
  forget "$s" || itest_fail "cri-$s-forget" "left: $(snapshots_in zsnap) / $(content_blobs) blobs"
done
containerd_stop
CONTAINERD_CRI_SNAPSHOTTER=overlayfs
containerd_start || itest_die "containerd (CRI snapshotter overlayfs) did not restart"
for s in "${SERVED[@]}" "${HOSTILE[@]}"; do
  rc=0
  cri_pull "$s" || rc=$?
  RC_NATIVE[$s]=$rc
  itest_check_eq "cri-$s-same-outcome-as-native" "$( ((RC_NATIVE[$s] == 0)) && echo ok || echo fails)" \
    "$( ((RC_ZSNAP[$s] == 0)) && echo ok || echo fails)"
  forget "$s" || itest_fail "cri-$s-native-forget" "left: $(snapshots_in overlayfs)"
done

# --- after: bounded, nothing leaked -------------------------------------------------------------
ITEST_CURRENT=after
itest_check after-zsnap-never-died zsnap_running
hwm=$(proc_field "$ZSNAP_PID" VmHWM)
itest_log "zsnap peak RSS ${hwm} kB"
itest_check "after-peak-rss-under-256MiB(${hwm}kB)" test "${hwm:-999999999}" -lt 262144
settled() {
  (($(staging_entries) == 0 && $(zsnap_threads) <= IDLE_THREADS + 8 && $(zsnap_fds) <= IDLE_FDS + 8))
}
if itest_wait_for 60 "zsnap to settle" settled; then
  itest_pass after-staging-threads-fds-settle
else
  itest_fail after-staging-threads-fds-settle \
    "staging $(staging_entries), threads $(zsnap_threads) (idle $IDLE_THREADS), fds $(zsnap_fds) (idle $IDLE_FDS)"
fi
# No secret in zsnap's log or state (reports, metadata), in any encoding a log would use.
for needle in "$SECRET_PASS" "$SECRET_B64" "$SIG" "b-token"; do
  itest_check_fails "after-no-'${needle:0:8}'-in-zsnap-log" grep -qaF "$needle" "$ZSNAP_LOG"
  itest_check_fails "after-no-'${needle:0:8}'-in-zsnap-state" grep -rqaF "$needle" "$ZSNAP_ROOT"
done
# Host B (the blob store a redirect named) never received host A's credentials from zsnap
# (its User-Agent starts with zsnap/): no Basic header, no password in a token form.
# containerd's CRI sends the pull's --creds to every host when the AuthConfig names no
# server (pkg/cri/server/image_pull.go ParseAuth); that is logged, not zsnap's to fix.
from_b='select(.host == "B") | select(((.headers.Authorization // "") | startswith("Basic")) or .body_has_secret)'
leaked=$(jq -c "$from_b"' | select((.headers["User-Agent"] // "") | startswith("zsnap/"))' "$HLOG" | head -n 3)
itest_check_eq after-no-credentials-to-host-b "" "$leaked"
itest_log "credentials host B got from others (containerd CRI): $(jq -c "$from_b"' | .method + " " + .path' "$HLOG" | sort | uniq -c | tr '\n' ' ')"
injected=$(jq -c 'select(.headers["X-Injected"] != null)' "$HLOG" | head -n 3)
itest_check_eq after-no-injected-header "" "$injected"
itest_report
