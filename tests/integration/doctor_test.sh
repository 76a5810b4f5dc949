#!/usr/bin/env bash
# Issue 6, acceptance 4: `zsnap doctor` on a broken and on a good node.
#
# Broken: zsnap runs, but containerd's config (a node-like base config, CRI on) has no zsnap
# and containerd is not running: doctor must exit 1, FAIL the proxy-plugin check with the
# `zsnap config containerd --merge ...` fix and FAIL the containerd socket. The suggested fix
# is then run verbatim, containerd (Debian's 1.6.20) started with the result, and doctor must
# pass every check (OK; no WARN, no FAIL), in text and in --json. Finally zsnap is stopped and
# doctor must FAIL zsnap/socket again.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/all.sh"

itest_init doctor
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
itest_require_cmd jq ctr

ITEST_CURRENT=setup
zsnap_start || itest_die "zsnap did not start"
CONTAINERD_ROOT=$ITEST_DIR/containerd-root
CONTAINERD_STATE=$ITEST_DIR/containerd-state
CONTAINERD_ADDRESS=$ITEST_SOCK_DIR/containerd.sock
mkdir -p "$ITEST_DIR/containerd-opt"
cconf=$ITEST_DIR/node-containerd.toml  # the "node" file; containerd_start copies it
containerd_write_base_config "$cconf" 2

doctor() {
  "$ZSNAP_BIN" doctor --config "$ZSNAP_CONFIG" --containerd-config "$cconf" \
    --containerd-address "$CONTAINERD_ADDRESS" "$@"
}

# ---- broken: containerd not wired (and not running) --------------------------------------
ITEST_CURRENT=broken
rc=0
out=$(doctor 2>&1) || rc=$?
echo "$out" | sed 's/^/    /' >&2
itest_check_eq "broken: doctor exits 1" 1 "$rc"
itest_check_match "broken: FAIL for the missing proxy plugin" \
  "^FAIL  containerd/config-proxy-plugin: .*no \[proxy_plugins\] entry for zsnap's socket $ZSNAP_SOCKET" "$out"
itest_check_match "broken: FAIL for the containerd socket" '^FAIL  containerd/socket: ' "$out"
itest_check_match "broken: ctr not run against a missing socket" '^SKIP  containerd/plugin: ' "$out"
itest_check_match "broken: zsnap itself OK" '^OK    zsnap/socket: ' "$out"
fix=$(grep -A1 '^FAIL  containerd/config-proxy-plugin' <<<"$out" | sed -n 's/^ *fix: //p' | sed 's/, then systemctl restart containerd$//')
itest_check_match "broken: the fix is a zsnap config containerd --merge command" \
  "^zsnap config containerd --merge $cconf --containerd-version 1.7 --address $ZSNAP_SOCKET --root $ZSNAP_ROOT\$" "$fix"

# ---- apply the suggested fix verbatim, start containerd ------------------------------------
ITEST_CURRENT=fix
read -ra fix_argv <<<"$fix"
itest_check "apply the suggested fix" "$ZSNAP_BIN" "${fix_argv[@]:1}"
keep_config() { cp "$cconf" "$1"; }
CONTAINERD_CONFIG_WRITER=keep_config
containerd_start || itest_die "containerd did not start with the fixed config"

# ---- good ----------------------------------------------------------------------------------
ITEST_CURRENT=good
rc=0
out=$(doctor 2>&1) || rc=$?
echo "$out" | sed 's/^/    /' >&2
itest_check_eq "good: doctor exits 0" 0 "$rc"
itest_check_eq "good: no FAIL or WARN lines" "" "$(grep -E '^(FAIL|WARN)' <<<"$out")"
for c in kernel/overlayfs root/overlay-mount root/xattr-trusted userxattr zsnap/socket \
  containerd/config-proxy-plugin containerd/config-cri-snapshotter \
  containerd/config-cri-annotations containerd/socket containerd/plugin; do
  itest_check_match "good: OK $c" "^OK    $c: " "$out"
done
json=$(doctor --json 2>/dev/null)
itest_check_eq "good: --json ok" true "$(jq -r .ok <<<"$json")"
itest_check_eq "good: --json has no FAIL" 0 "$(jq '[.checks[] | select(.status == "FAIL")] | length' <<<"$json")"

# ---- zsnap down ----------------------------------------------------------------------------
ITEST_CURRENT=zsnap-down
zsnap_stop
rc=0
out=$(doctor 2>&1) || rc=$?
itest_check_eq "zsnap down: doctor exits 1" 1 "$rc"
itest_check_match "zsnap down: FAIL zsnap/socket with a fix" \
  '^FAIL  zsnap/socket: cannot connect' "$out"

itest_report
