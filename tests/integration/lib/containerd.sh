# Start and stop a private containerd with zsnap as [proxy_plugins.zsnap]. Needs lib/common.sh
# (and a running zsnap from lib/zsnap.sh, or ZSNAP_SOCKET/ZSNAP_ROOT set by the caller).
#
# Inputs (environment, all optional):
#   CONTAINERD_BIN_DIR         dir holding containerd, ctr, containerd-shim-runc-v2 (default /usr/bin)
#   CONTAINERD_CONFIG_VERSION  2 (containerd 1.6/1.7) or 3 (2.x); default: from `containerd --version`
#   CONTAINERD_RUNC_DIR        dir with a runc to put first on containerd's PATH (default: none)
#   CONTAINERD_WITH_CRI        1 = keep the CRI plugin (its gRPC services answer on
#                              CONTAINERD_ADDRESS; containerd_start then also waits for it);
#                              default off
#   CONTAINERD_CRI_SNAPSHOTTER the snapshotter CRI pulls unpack into (default zsnap; e.g.
#                              overlayfs for containerd's own)
#   CONTAINERD_CRI_REGISTRY_CONFIG_PATH  CRI's registry config_path: a hosts dir in certs.d
#                              layout (<host[:port]>/hosts.toml), read on every pull (default
#                              $ITEST_DIR/containerd-certs.d); containerd_cri_registry_http
#                              adds a plain-HTTP host to it
#   CONTAINERD_EXTRA_TOML      text appended to the generated config.toml
#   CONTAINERD_CONFIG_WRITER   function called as WRITER FILE VERSION to write the config instead
#                              of containerd_write_config (it must use the paths below)
#   CTR_NAMESPACE              containerd namespace ctr uses (default itest-<pid>)
# containerd_start sets (and exports):
#   CONTAINERD_ADDRESS  its gRPC socket      CONTAINERD_ROOT / CONTAINERD_STATE  its dirs
#   CONTAINERD_CONFIG   its config.toml      CONTAINERD_LOG  its log        CONTAINERD_PID
#   CONTAINERD_CRI_SNAPSHOTTER, CONTAINERD_CRI_REGISTRY_CONFIG_PATH (with CONTAINERD_WITH_CRI)
# containerd_start may be called again after containerd_stop (same root and state, config
# rewritten from the variables), e.g. to switch CONTAINERD_CRI_SNAPSHOTTER.
# Everything is private: root, state, grpc/ttrpc/debug sockets, opt dir, CRI's CNI conf dir
# (which it would otherwise create as /etc/cni/net.d); no metrics listener.
# Shims are found by their -address argument (this containerd's socket) and stopped with it.

if [[ -n ${ZSNAP_ITEST_CONTAINERD_SH:-} ]]; then return 0; fi
ZSNAP_ITEST_CONTAINERD_SH=1

# containerd_version [BIN_DIR]: print the version of BIN_DIR/containerd, e.g. 1.6.20.
containerd_version() {
  local dir=${1:-}
  dir=${dir:-${CONTAINERD_BIN_DIR:-/usr/bin}}
  "$dir/containerd" --version | grep -oE '[^a-z~+ ]*v?[0-9]+\.[0-9]+\.[0-9]+' | head -n1 | sed 's/^v//'
}

# containerd_default_config_version [BIN_DIR]: 2 for containerd 1.x, 3 for 2.x.
containerd_default_config_version() {
  local v
  v=$(containerd_version "${1:-}") || return 1
  if [[ $v == 1.* ]]; then echo 2; else echo 3; fi
}

# containerd_platform: the OCI platform string of this host, e.g. linux/amd64.
containerd_platform() {
  local arch
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  case $arch in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
  esac
  echo "linux/$arch"
}

# containerd_write_config FILE VERSION: write a private config (version 2 or 3) for the
# containerd_start variables, with [proxy_plugins.zsnap] -> $ZSNAP_SOCKET.
containerd_write_config() {
  local file=$1 version=$2
  local cri_disabled cri_conf=""
  local cri_snapshotter=${CONTAINERD_CRI_SNAPSHOTTER:-zsnap}
  local cri_hosts=${CONTAINERD_CRI_REGISTRY_CONFIG_PATH:-}
  if [[ $version == 2 ]]; then
    cri_disabled='"io.containerd.grpc.v1.cri"'
    if [[ -n ${CONTAINERD_WITH_CRI:-} ]]; then
      cri_disabled=""
      cri_conf="
[plugins.\"io.containerd.grpc.v1.cri\"]
  disable_tcp_service = true
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\"
  enable_selinux = false
[plugins.\"io.containerd.grpc.v1.cri\".cni]
  conf_dir = \"$ITEST_DIR/cni/net.d\"
[plugins.\"io.containerd.grpc.v1.cri\".containerd]
  snapshotter = \"$cri_snapshotter\"
  disable_snapshot_annotations = false"
      [[ -z $cri_hosts ]] || cri_conf+="
[plugins.\"io.containerd.grpc.v1.cri\".registry]
  config_path = \"$cri_hosts\""
    fi
  else
    cri_disabled='"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"'
    if [[ -n ${CONTAINERD_WITH_CRI:-} ]]; then
      cri_disabled=""
      cri_conf="
[plugins.'io.containerd.cri.v1.images']
  snapshotter = \"$cri_snapshotter\"
  disable_snapshot_annotations = false
[plugins.'io.containerd.cri.v1.runtime'.cni]
  conf_dir = \"$ITEST_DIR/cni/net.d\"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\""
      [[ -z $cri_hosts ]] || cri_conf+="
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = \"$cri_hosts\""
    fi
  fi
  # exports: root is honoured from 1.6.32/1.7.16 (CRI image-fs stats); 2.1+ transfer pulls add
  # the cri.* snapshot labels only with enable_remote_snapshot_annotations.
  local exports="
  [proxy_plugins.zsnap.exports]
    root = \"${ZSNAP_ROOT:-}\""
  [[ $version == 2 ]] || exports+="
    enable_remote_snapshot_annotations = \"true\""
  local transfer=""
  if [[ $version != 2 ]]; then
    # 2.x ctr pulls through the transfer service, which unpacks only for listed snapshotters.
    transfer="
[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = \"$(containerd_platform)\"
  snapshotter = \"zsnap\""
  fi
  cat >"$file" <<EOF
version = $version
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
disabled_plugins = [$cri_disabled]

[grpc]
  address = "$CONTAINERD_ADDRESS"
[ttrpc]
  address = "$CONTAINERD_ADDRESS.ttrpc"
[debug]
  address = "$CONTAINERD_ADDRESS.debug"
  level = "debug"
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$ITEST_DIR/containerd-opt"
$transfer
$cri_conf

[proxy_plugins]
  [proxy_plugins.zsnap]
    type = "snapshot"
    address = "$ZSNAP_SOCKET"
$exports
${CONTAINERD_EXTRA_TOML:-}
EOF
}

# containerd_start: write the config and start containerd from $CONTAINERD_BIN_DIR, wait (60 s)
# until `ctr version` answers and the zsnap proxy plugin is loaded, register a stop on exit.
# Returns 1 (log tail on stderr) on failure.
containerd_start() {
  CONTAINERD_BIN_DIR=${CONTAINERD_BIN_DIR:-/usr/bin}
  CONTAINERD_CONFIG_VERSION=${CONTAINERD_CONFIG_VERSION:-$(containerd_default_config_version "$CONTAINERD_BIN_DIR")}
  CTR_NAMESPACE=${CTR_NAMESPACE:-itest-$$}
  CONTAINERD_ROOT=$ITEST_DIR/containerd-root
  CONTAINERD_STATE=$ITEST_DIR/containerd-state
  CONTAINERD_ADDRESS=$ITEST_SOCK_DIR/containerd.sock
  CONTAINERD_CONFIG=$ITEST_DIR/containerd.toml
  CONTAINERD_LOG=$ITEST_DIR/containerd.log
  : "${ZSNAP_SOCKET:?start zsnap (zsnap_start) before containerd}"
  mkdir -p "$CONTAINERD_ROOT" "$CONTAINERD_STATE" "$ITEST_DIR/containerd-opt"
  if [[ -n ${CONTAINERD_WITH_CRI:-} ]]; then
    CONTAINERD_CRI_SNAPSHOTTER=${CONTAINERD_CRI_SNAPSHOTTER:-zsnap}
    CONTAINERD_CRI_REGISTRY_CONFIG_PATH=${CONTAINERD_CRI_REGISTRY_CONFIG_PATH:-$ITEST_DIR/containerd-certs.d}
    mkdir -p "$CONTAINERD_CRI_REGISTRY_CONFIG_PATH"
    export CONTAINERD_CRI_SNAPSHOTTER CONTAINERD_CRI_REGISTRY_CONFIG_PATH
  fi
  "${CONTAINERD_CONFIG_WRITER:-containerd_write_config}" "$CONTAINERD_CONFIG" "$CONTAINERD_CONFIG_VERSION" ||
    return 1
  local path="$CONTAINERD_BIN_DIR:$PATH"
  [[ -z ${CONTAINERD_RUNC_DIR:-} ]] || path="$CONTAINERD_RUNC_DIR:$path"
  PATH=$path "$CONTAINERD_BIN_DIR/containerd" --config "$CONTAINERD_CONFIG" >>"$CONTAINERD_LOG" 2>&1 &
  CONTAINERD_PID=$!
  itest_track_pid "$CONTAINERD_PID"
  export CONTAINERD_BIN_DIR CONTAINERD_CONFIG_VERSION CTR_NAMESPACE CONTAINERD_ROOT \
    CONTAINERD_STATE CONTAINERD_ADDRESS CONTAINERD_CONFIG CONTAINERD_LOG CONTAINERD_PID
  if [[ -z ${ZSNAP_ITEST_CONTAINERD_STOP_REGISTERED:-} ]]; then
    itest_on_exit containerd_stop
    ZSNAP_ITEST_CONTAINERD_STOP_REGISTERED=1
  fi
  if ! itest_wait_for 60 "containerd on $CONTAINERD_ADDRESS" containerd__ready; then
    itest_log "containerd did not come up; log tail:"
    tail -n 40 "$CONTAINERD_LOG" >&2
    return 1
  fi
  itest_log "containerd $(containerd_version) pid $CONTAINERD_PID on $CONTAINERD_ADDRESS (config v$CONTAINERD_CONFIG_VERSION, namespace $CTR_NAMESPACE)"
}

containerd__ready() {
  kill -0 "$CONTAINERD_PID" 2>/dev/null || return 99
  [[ -S $CONTAINERD_ADDRESS ]] || return 1
  itest_ctr version >/dev/null 2>&1 || return 1
  local plugins
  plugins=$(itest_ctr plugins ls 2>/dev/null) || return 1
  grep -E 'io\.containerd\.snapshotter\.v1[[:space:]]+zsnap[[:space:]]' <<<"$plugins" | grep -q ok || return 1
  # With CRI on, its gRPC plugin must have loaded too (it does not on a bad CRI config).
  [[ -z ${CONTAINERD_WITH_CRI:-} ]] ||
    grep -E 'io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]]' <<<"$plugins" | grep -q ok
}

# containerd_cri_registry_http HOST:PORT: let CRI pulls reach the registry HOST:PORT over plain
# HTTP: write $CONTAINERD_CRI_REGISTRY_CONFIG_PATH/HOST:PORT/hosts.toml (read on every pull,
# so this works before or after containerd_start). Needs CONTAINERD_WITH_CRI.
containerd_cri_registry_http() {
  local host=$1
  local dir=${CONTAINERD_CRI_REGISTRY_CONFIG_PATH:-$ITEST_DIR/containerd-certs.d}
  mkdir -p "$dir/$host" || return 1
  cat >"$dir/$host/hosts.toml" <<EOF
server = "http://$host"

[host."http://$host"]
  capabilities = ["pull", "resolve"]
EOF
}

# itest_ctr ARGS...: run this containerd's ctr against the private socket and namespace.
itest_ctr() {
  "${CONTAINERD_BIN_DIR:-/usr/bin}/ctr" --address "$CONTAINERD_ADDRESS" --namespace "$CTR_NAMESPACE" "$@"
}

# containerd_shim_pids: pids of containerd-shim processes serving this containerd.
containerd_shim_pids() {
  local pid cmd
  for pid in $(pgrep -f 'containerd-shim' 2>/dev/null); do
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [[ $cmd == *"-address $CONTAINERD_ADDRESS "* || $cmd == *"-address $CONTAINERD_ADDRESS" ]] && echo "$pid"
  done
  return 0
}

# containerd_stop: stop containerd (SIGTERM, then SIGKILL after 20 s) and every shim (and its
# container processes) it started; remove the runc state of our namespace. Safe to repeat.
containerd_stop() {
  [[ -n ${CONTAINERD_ADDRESS:-} ]] || return 0
  local pid shims ns namespaces=""
  shims=$(containerd_shim_pids)
  # Every namespace the test used (while containerd still answers), for the runc state below.
  if [[ -n ${CONTAINERD_PID:-} ]] && kill -0 "$CONTAINERD_PID" 2>/dev/null; then
    namespaces=$(itest_ctr namespaces ls -q 2>/dev/null)
  fi
  if [[ -n ${CONTAINERD_PID:-} ]]; then
    itest_kill_pid "$CONTAINERD_PID" 20
    CONTAINERD_PID=
  fi
  local c
  for pid in $shims $(containerd_shim_pids); do
    for c in $(itest_descendants "$pid"); do kill -KILL "$c" 2>/dev/null || true; done
    itest_kill_pid "$pid" 5
  done
  # runc keeps per-namespace state under /run/containerd/runc/<ns> (the shim's default root);
  # the namespaces are this test's own (itest-<pid>...).
  for ns in $namespaces ${CTR_NAMESPACE:-}; do
    [[ $ns == itest-* ]] && rm -rf "/run/containerd/runc/$ns"
  done
  return 0
}

# containerd_write_base_config FILE VERSION: a private config (version 2 or 3) for the
# containerd_start variables with the CRI plugin on and *no* zsnap in it — what a node has
# before `zsnap config containerd --merge`. CRI listens on no TCP port (stream server on
# 127.0.0.1, port 0). Use it from a CONTAINERD_CONFIG_WRITER.
containerd_write_base_config() {
  local file=$1 version=$2 cri
  if [[ $version == 2 ]]; then
    cri="[plugins.\"io.containerd.grpc.v1.cri\"]
  disable_tcp_service = true
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\"
  enable_selinux = false
  [plugins.\"io.containerd.grpc.v1.cri\".containerd]
    default_runtime_name = \"runc\""
  else
    cri="[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'"
  fi
  cat >"$file" <<EOC
# containerd for an integration test: private root, state and sockets.
version = $version
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"

[grpc]
  address = "$CONTAINERD_ADDRESS"
[ttrpc]
  address = "$CONTAINERD_ADDRESS.ttrpc"
[debug]
  address = "$CONTAINERD_ADDRESS.debug"
  level = "debug"
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$ITEST_DIR/containerd-opt"
$cri
EOC
}
