# A private Docker distribution registry (Debian's docker-registry) on 127.0.0.1:<free port>,
# plain HTTP, filesystem storage in the scratch dir. Needs lib/common.sh.
#
# Inputs (environment, optional):
#   REGISTRY_HTPASSWD  an htpasswd file (bcrypt entries, see registry_htpasswd): the registry
#                      then wants HTTP basic auth for everything (default: no auth)
#   REGISTRY_ACCESSLOG 1 = log every request to REGISTRY_LOG (e.g. to count blob GETs)
# registry_start may be called again after registry_stop: a new port, the same storage (what
# was pushed is still there), the auth setting re-read.
#
# registry_start sets (and exports):
#   REGISTRY_ADDR  host:port, e.g. 127.0.0.1:41234 (use `ctr image pull --plain-http`)
#   REGISTRY_PID   REGISTRY_LOG   REGISTRY_DIR (storage)

if [[ -n ${ZSNAP_ITEST_REGISTRY_SH:-} ]]; then return 0; fi
ZSNAP_ITEST_REGISTRY_SH=1

REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}

# registry_start: start the registry, wait (30 s) for /v2/ to answer, register a stop on exit.
# Retries with a new port if the chosen one was taken in the meantime.
registry_start() {
  REGISTRY_DIR=$ITEST_DIR/registry
  REGISTRY_LOG=$ITEST_DIR/registry.log
  mkdir -p "$REGISTRY_DIR/storage"
  local attempt port auth=""
  if [[ -n ${REGISTRY_HTPASSWD:-} ]]; then
    auth="auth:
  htpasswd:
    realm: zsnap-itest
    path: $REGISTRY_HTPASSWD"
  fi
  for attempt in 1 2 3; do
    port=$(itest_free_port) || return 1
    REGISTRY_ADDR=127.0.0.1:$port
    cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: $([[ ${REGISTRY_ACCESSLOG:-} == 1 ]] && echo false || echo true)
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
$auth
EOF
    # The registry reads REGISTRY_<SECTION>_<KEY> variables as config overrides: our own
    # exported REGISTRY_LOG (a path) would replace its log section on a restart. Hide them all.
    local -a hide_env=()
    local v
    for v in $(compgen -e); do [[ $v != REGISTRY_* ]] || hide_env+=(-u "$v"); done
    # OTEL/bugsnag etc. are not compiled in; nothing here reaches the network.
    env "${hide_env[@]}" "$REGISTRY_BIN" serve "$REGISTRY_DIR/config.yml" >>"$REGISTRY_LOG" 2>&1 &
    REGISTRY_PID=$!
    itest_track_pid "$REGISTRY_PID"
    export REGISTRY_ADDR REGISTRY_PID REGISTRY_LOG REGISTRY_DIR
    if [[ -z ${ZSNAP_ITEST_REGISTRY_STOP_REGISTERED:-} ]]; then
      itest_on_exit registry_stop
      ZSNAP_ITEST_REGISTRY_STOP_REGISTERED=1
    fi
    if itest_wait_for 30 "registry on $REGISTRY_ADDR" registry__ready; then
      itest_log "registry pid $REGISTRY_PID on $REGISTRY_ADDR"
      return 0
    fi
    registry_stop
    itest_log "registry attempt $attempt failed; log tail:"
    tail -n 10 "$REGISTRY_LOG" >&2
  done
  return 1
}

registry__ready() {
  kill -0 "$REGISTRY_PID" 2>/dev/null || return 99
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "http://$REGISTRY_ADDR/v2/") || return 1
  # With auth on, /v2/ answers 401 until credentials are sent.
  [[ $code == 200 || ($code == 401 && -n ${REGISTRY_HTPASSWD:-}) ]]
}

# registry_htpasswd FILE USER PASSWORD: add USER with a bcrypt hash of PASSWORD (the only
# format docker-registry accepts) to FILE. Low cost: the registry checks it on every request.
registry_htpasswd() {
  local hash
  hash=$(python3 -W ignore -c '
import crypt, sys
print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' "$3") || return 1
  [[ $hash == "\$2"* ]] || return 1
  printf '%s:%s\n' "$2" "$hash" >>"$1"
}

# registry_stop: stop the registry. Safe to repeat.
registry_stop() {
  [[ -n ${REGISTRY_PID:-} ]] || return 0
  itest_kill_pid "$REGISTRY_PID" 10
  REGISTRY_PID=
}

# registry_manifest REPO:TAG: print the (OCI or Docker v2) manifest JSON from the registry.
registry_manifest() {
  local repo=${1%%:*} tag=${1##*:}
  curl -fsS --max-time 10 \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY_ADDR/v2/$repo/manifests/$tag"
}
